"""`run_benchmarks` (the library behind `mobile-opt bench`) on this host and the loopback device,
and the bad inputs it refuses before any benchmark runs (issue 22)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from converters.budget import Budget
from device_bench import (
    BenchSettings,
    GateSettings,
    OutputCheckSettings,
    ReportFiles,
    RunSettings,
    ToolSettings,
    read_jsonl,
    run_benchmarks,
)
from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.cli import cli
from mobile_opt.errors import InputError, ModelFormatError, UnsupportedModelError

QUICK = RunSettings(runs=3, min_secs=0)


def test_host_results_files_and_progress(tiny_model, tmp_path):
    files = ReportFiles(jsonl=tmp_path / "r.jsonl", plot=tmp_path / "p.png")
    seen = []
    report = run_benchmarks([tiny_model], BenchSettings(threads=(1, 2), run=QUICK, files=files),
                            progress=lambda done, total: seen.append((done, total)))
    assert report.ok and seen == [(1, 1)]
    assert [(r.backend, r.threads, r.status) for r in report.results] == [("cpu", 1, "ok"), ("cpu", 2, "ok")]
    assert report.gates is None and report.comparisons is None and report.output_checks is None
    # The JSONL written as results came is what the report says, line for line.
    assert files.jsonl.read_text() == report.to_jsonl()
    assert [r.to_dict() for r in read_jsonl(files.jsonl)] == report.to_dict()["results"]
    assert report.plot == files.plot and files.plot.read_bytes().startswith(b"\x89PNG")
    assert report.to_dict().keys() == {"results"}  # no gate, comparison or lost device to report
    json.dumps(report.to_dict())


def test_latency_budgets_gate_on_the_host(tiny_model, tmp_path):
    """max_p50_ms budgets checked on the new results, reported in every CI format."""
    budgets = (Budget(pattern="*.tflite", max_p50_ms=(("*", 1e-6),)), Budget(pattern="*.tflite", max_p50_ms=(("*", 1e6),)))
    junit = tmp_path / "gates.xml"
    # The host's runs take µs: the median's interval lies far above a 1 ns budget, far below 1000 s.
    settings = BenchSettings(run=RunSettings(runs=20, min_secs=0), gates=GateSettings(latency_budgets=budgets),
                             files=ReportFiles(junit=junit))
    report = run_benchmarks([tiny_model], settings)
    (result,) = report.results
    assert result.status == "ok"
    over, held = report.latency_budgets
    assert (over.status, held.status) == ("over", "ok") and over.actual > over.limit == 1e-6 * 1000
    assert not report.ok and report.gates.title == "mobile-opt latency gates"
    assert report.gates.summary == "1 latency gate(s) failed"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1" and len(suite.findall("testcase")) == 2
    assert junit.read_text() == report.to_junit() + "\n"
    (annotation,) = report.annotations()
    assert annotation.startswith("::error file=") and "title=mobile-opt latency::tiny.tflite" in annotation
    assert report.to_dict()["latency_budgets"]["ok"] is False


def test_output_checks_with_data_and_a_gate(tiny_model):
    x = np.random.default_rng(0).random((8, 12, 12, 1), dtype=np.float32)
    outputs = OutputCheckSettings(data={tiny_model: (x, None)}, samples=8, max_output_diff=0.0)
    report = run_benchmarks([tiny_model], BenchSettings(run=QUICK, outputs=outputs))
    (check,) = report.output_checks
    assert check.inputs == "user data" and check.samples == 8 and check.backends[0].bit_exact
    assert report.ok and report.gates.title == "mobile-opt output gates" and report.gates.ok
    assert report.to_dict()["output_gates"]["ok"] is True
    with pytest.raises(InputError, match="no \\(inputs, labels\\) for"):
        run_benchmarks([tiny_model], BenchSettings(run=QUICK, outputs=OutputCheckSettings(data={})))


def test_baseline_comparison(tiny_model, tmp_path):
    old = tmp_path / "old.jsonl"
    first = run_benchmarks([tiny_model], BenchSettings(run=QUICK, files=ReportFiles(jsonl=old)))
    report = run_benchmarks([tiny_model], BenchSettings(run=QUICK, gates=GateSettings(baseline=old)))
    (comparison,) = report.comparisons
    assert comparison.old_p50_us == first.results[0].latency.p50_us
    assert comparison.new_p50_us == report.results[0].latency.p50_us
    assert report.gates is None  # a comparison alone gates nothing


@pytest.mark.parametrize("make, message", [
    (lambda: GateSettings(max_regression="5%"), "give baseline= too"),
    (lambda: GateSettings(baseline="b.jsonl", max_regression="five"), "max_regression='five'"),
    (lambda: GateSettings(latency_budgets=(Budget(pattern="*", max_raw_bytes=1),)), "max_p50_ms"),
    (lambda: OutputCheckSettings(max_output_diff=float("nan")), "max_output_diff"),
    (lambda: OutputCheckSettings(samples=0), "samples"),
    (lambda: BenchSettings(backends=("tpu",)), "backends"),
    (lambda: BenchSettings(threads=(0,)), "threads"),
    (lambda: BenchSettings(devices=" , "), "devices"),
    (lambda: BenchSettings(retries=-1), "retries"),
    (lambda: BenchSettings(tool="benchmark_model"), "tool must be a ToolSettings"),
    (lambda: ToolSettings(binary=""), "Received: binary=''"),
    (lambda: BenchSettings(files=ReportFiles(junit="g.xml")), "none is set"),
])
def test_settings_are_validated_on_construction(make, message):
    with pytest.raises(InputError, match=message):
        make()


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """The input fits LiteRT's int32 element count (46340² < 2**31), but joined with itself it does not."""
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    inputs = keras.Input((46340, 46340))
    x = keras.layers.Concatenate(axis=1)([inputs, inputs])
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t[:, :1, :3])(x))
    path = tmp_path_factory.mktemp("big") / "big.tflite"
    # TFLiteConverter itself: converters.convert rightly refuses a model LiteRT cannot run.
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _bench(*args):
    return CliRunner().invoke(cli, ["bench", *map(str, args)], catch_exceptions=False)


def test_a_corrupt_model_exits_2_before_any_run_and_leaves_no_file(tiny_model, tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])  # 'TFL3', then cut off
    with pytest.raises(ModelFormatError, match="corrupt.tflite is not a valid .tflite model"):
        run_benchmarks([corrupt], BenchSettings(files=ReportFiles(jsonl=tmp_path / "lib.jsonl")))
    result = _bench(corrupt, "--runs", "3", "--out", tmp_path / "r.jsonl", "--plot", tmp_path / "p.png")
    assert result.exit_code == 2, result.output
    assert "corrupt.tflite" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.tflite"]
    # With --check-outputs DATA the model is checked before the data is read: exit 2 too.
    checked = _bench(corrupt, "--runs", "3", "--check-outputs", "fashion-mnist", "--out", tmp_path / "r.jsonl")
    assert checked.exit_code == 2 and "corrupt.tflite is not a valid .tflite model" in checked.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.tflite"]


def test_a_shape_that_overflows_names_the_tensor(overflowing, tmp_path):
    with pytest.raises(UnsupportedModelError, match=r"tensor \d+ '[^']*concat[^']*' has shape "
                                                    r"\[1, 92680, 46340\]: 4,294,791,200 elements"):
        run_benchmarks([overflowing])
    result = _bench(overflowing, "--out", tmp_path / "r.jsonl")
    assert result.exit_code == 2 and "[1, 92680, 46340]" in result.output and "concat" in result.output
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("option", ["--out", "--plot", "--junit"])
def test_every_output_is_checked_writable_before_benchmarking(tiny_model, tmp_path, option):
    from device_bench.testing.fake_benchmark_model import runs

    cache = tmp_path / "cache"
    install(cache)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-file").write_bytes(b"x")
    bad = out / "a-file" / "report.out"  # below a regular file: no one can create it
    paths = {"--out": out / "r.jsonl", "--plot": out / "p.png", "--junit": out / "g.xml", option: bad}
    gate = ["--check-outputs", "random", "--check-samples", "2", "--max-output-diff", "1"]
    with LoopbackDevice(tmp_path / "device", auth_keys=None) as device:
        result = _bench(tiny_model, "--device", f"direct:{device.serial}", "--cache-dir", cache, "--runs", "3",
                        *gate, *(str(a) for pair in paths.items() for a in pair))
        assert runs(device.root) == []  # the fake tool's own log: it never ran
    assert result.exit_code == 2, result.output
    assert str(bad) in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a-file"]
