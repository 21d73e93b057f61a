"""BenchmarkResult records: statistics, JSON round trip, JSON-lines files, comparison."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from device_bench.benchmark_output import OpProfileRow, TimingStats
from device_bench.energy import EnergyResult
from device_bench.results import (
    BenchmarkResult,
    Delegation,
    LatencyStats,
    Measurement,
    compare,
    read_jsonl,
    write_jsonl,
)
from mobile_opt.errors import InputError

DEVICE = {"serial": "127.0.0.1:4000", "transport": "direct", "state": "device", "model": "Loopback",
          "abi": "arm64-v8a", "android_version": "14", "sdk": 34, "battery": None}


def make(samples=(1000.0, 1200.0, 1100.0, 5000.0), *, backend="cpu", threads=1, status="ok",
         model="m.tflite", serial="127.0.0.1:4000", energy_j=None, reason=None):
    ok = status == "ok"
    energy = None
    if energy_j is not None:
        energy = EnergyResult.unavailable("x")
        energy = EnergyResult(**{**energy.to_dict(), "energy_per_inference_j": energy_j, "reason": None,
                                 "warnings": (), "detection": {"sign": "test"}})
    return BenchmarkResult(
        model_path=f"/models/{model}", model_sha256="ab" * 32, model_size_bytes=1234,
        device={**DEVICE, "serial": serial}, backend=backend, threads=threads, status=status,
        reason=reason, init_ms=3.5 if ok else None,
        latency=LatencyStats.from_samples(samples) if ok else None,
        samples_us=tuple(samples) if ok else (),
        delegation=Delegation(delegate="GPU", coverage="partial", kernels=2, ops_on_delegate=5,
                              ops_on_cpu=1, unsupported_ops=(("SQUEEZE", "not supported"),)),
        energy=energy,
        measurement=Measurement(requested_runs=4, requested_warmup_runs=1, min_secs=0.0,
                                warmup_runs_done=1, binary="bm", binary_sha256=None,
                                command="bm --graph=x", started_at="2026-01-01T00:00:00.000+00:00",
                                finished_at="2026-01-01T00:00:01.000+00:00", duration_s=1.0),
        op_profile=(OpProfileRow("run", "Run Order", "CONV_2D", "conv:0", None, 0.4, 0.39, 66.0,
                                 66.0, 0.0, 1),),
        warnings=("w",),
    )


def test_latency_stats_match_numpy():
    rng = np.random.default_rng(0)
    samples = rng.gamma(4.0, 300.0, size=257)
    stats = LatencyStats.from_samples(samples.tolist())
    assert stats.count == 257 and stats.source == "samples"
    for name, q in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99)):
        assert getattr(stats, name) == pytest.approx(np.percentile(samples, q))
    assert stats.mean_us == pytest.approx(samples.mean())
    assert stats.std_us == pytest.approx(samples.std(ddof=1))
    assert (stats.min_us, stats.max_us) == (samples.min(), samples.max())


def test_latency_stats_single_and_empty():
    one = LatencyStats.from_samples([7.0])
    assert one.p99_us == one.p50_us == 7.0 and one.std_us == 0.0
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


def test_round_trip_through_json():
    result = make(energy_j=0.002)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert BenchmarkResult.from_dict(data) == result


def test_non_finite_values_become_null():
    result = make()
    result = BenchmarkResult(**{**result.__dict__, "init_ms": math.nan})
    assert result.to_dict()["init_ms"] is None


def test_status_is_validated():
    with pytest.raises(InputError, match="Received: status='maybe'"):
        make(status="maybe")


def test_jsonl_append_and_read(tmp_path):
    path = tmp_path / "r.jsonl"
    first, second = make(), make(backend="gpu", status="unsupported", reason="no GPU")
    write_jsonl(path, [first])
    write_jsonl(path, [second])
    assert read_jsonl(path) == [first, second]
    write_jsonl(path, [second], append=False)
    assert read_jsonl(path) == [second]


def test_read_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [make()])
    with open(path, "a") as fh:
        fh.write("\n{\"not\": \"a result\"}\n")
    with pytest.raises(InputError, match=r"bad.jsonl:3"):
        read_jsonl(path)
    with pytest.raises(InputError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_compare_pairs_by_model_device_backend_threads():
    old = [make((1000.0, 1000.0, 1000.0), energy_j=0.004), make(threads=4),
           make(model="gone.tflite")]
    new = [make((800.0, 800.0, 800.0), energy_j=0.003),
           make(threads=4, status="failed", reason="lost"), make(model="new.tflite")]
    rows = {(c.model, c.threads): c for c in compare(old, new)}
    faster = rows[("m.tflite", 1)]
    assert faster.old_p50_us == 1000.0 and faster.new_p50_us == 800.0
    assert faster.p50_change_pct == pytest.approx(-20.0)
    assert faster.energy_change_pct == pytest.approx(-25.0)
    broken = rows[("m.tflite", 4)]
    assert broken.new_status == "failed" and broken.new_p50_us is None and broken.p50_change_pct is None
    assert rows[("gone.tflite", 1)].new_status is None
    assert rows[("new.tflite", 1)].old_status is None
    assert len(rows) == 4


def test_compare_latest_duplicate_wins():
    old = [make((1.0, 1.0)), make((2.0, 2.0))]
    (row,) = compare(old, [make((4.0, 4.0))])
    assert row.old_p50_us == 2.0 and row.p50_change_pct == pytest.approx(100.0)


@pytest.mark.parametrize("content,message", [
    (b"[]\n", "expected a JSON object"),
    (b"\x8c\x00TFL3\xff\xfe", "as JSON lines text"),
    (b"\n\n", "holds no result"),
    (b'{"model_path": 3}\n', "is not a benchmark result line"),
])
def test_read_jsonl_refuses_files_that_hold_no_results(tmp_path, content, message):
    path = tmp_path / "old.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_jsonl(path)

def test_histogram_is_log_spaced_nested_and_counts_every_sample():
    rng = np.random.default_rng(1)
    samples = rng.lognormal(mean=7.0, sigma=0.5, size=5000)
    hist = LatencyStats.from_samples(samples.tolist()).histogram
    edges, counts = hist["edges_us"], hist["counts"]
    assert set(hist) == {"edges_us", "counts"}
    assert len(edges) == len(counts) + 1 and 1 < len(counts) <= 60
    assert sum(counts) == 5000 and edges[0] <= samples.min() and samples.max() < edges[-1]
    ratios = [b / a for a, b in zip(edges, edges[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)  # one log step
    # Edges lie on a grid of 10**(k/G): a narrower distribution's edges are on a finer grid
    # that contains this one's, so two runs' counts can be merged to a common grid.
    steps_per_decade = round(1 / math.log10(ratios[0]))
    assert all(abs(math.log10(e) * steps_per_decade - round(math.log10(e) * steps_per_decade)) < 1e-6
               for e in edges)
    tight = LatencyStats.from_samples([1000.0, 1001.0, 1002.0]).histogram
    assert sum(tight["counts"]) == 3 and len(tight["counts"]) >= 1


def test_statistics_from_the_tool_never_invent_p90_p99():
    stats = LatencyStats.from_tool(TimingStats(100, avg_us=1.0, std_us=0.1, min_us=0.5, max_us=2.0,
                                               p5_us=0.6, median_us=1.0, p95_us=1.5), source="result_proto")
    assert stats.p90_us is None and stats.p99_us is None and stats.histogram is None
    assert "p90/p99" in stats.unavailable and "result proto" in stats.unavailable
    assert LatencyStats(**stats.to_dict()) == stats
