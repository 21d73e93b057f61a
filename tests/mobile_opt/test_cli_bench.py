"""`mobile-opt bench` on this host and over a direct adb link to the loopback device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from device_bench.results import read_jsonl
from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.cli import cli

QUICK = ["--runs", "3", "--min-secs", "0.1"]



def bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


def test_host_by_default_json_out_plot(tiny_model, tmp_path):
    out, plot = tmp_path / "r.jsonl", tmp_path / "p.png"
    result = bench(str(tiny_model), "--backends", "cpu,gpu", "--threads", "1,2", *QUICK,
                   "--out", str(out), "--plot", str(plot), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["results"]
    assert [(r["backend"], r["threads"], r["status"]) for r in rows] == [
        ("cpu", 1, "ok"), ("cpu", 2, "ok"), ("gpu", 1, "unsupported"), ("gpu", 2, "unsupported")]
    assert all(r["device"]["serial"] == "host" for r in rows)
    assert len(read_jsonl(out)) == 4
    assert plot.read_bytes().startswith(b"\x89PNG")
    latency = rows[0]["latency"]
    assert latency["source"] == "samples" and latency["p90_us"] <= latency["p99_us"]
    assert sum(latency["histogram"]["counts"]) == latency["count"]


def test_op_profiling_on_the_host_joins_measured_time_with_macs(tmp_path):
    """A real profiled run through the CLI: LiteRT's profiler on the host, joined with count_flops."""
    import converters
    from mobile_opt import _tf

    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 8))  # ops of tens of µs: the tiny model's round to 0 µs
    h = keras.layers.Conv2D(32, 3, activation="relu")(inp)
    model = tmp_path / "m.tflite"
    model.write_bytes(converters.convert(keras.Model(inp, keras.layers.Dense(4)(
        keras.layers.GlobalAveragePooling2D()(h)))))
    plot = tmp_path / "p.png"
    result = bench(str(model), *QUICK, "--op-profiling", "--json", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    (costs,) = json.loads(result.output)["op_costs"]
    flops = converters.count_flops(model)
    joined = [o for o in costs["per_op"] if o["matched"]]
    assert [o["tflite_op"] for o in joined] == [l.op for l in flops.layers]
    assert sum(o["macs"] for o in joined) == flops.total_macs
    assert sum(t["time_share"] for t in costs["per_type"]) == pytest.approx(1.0)
    assert costs["time_resolution_ms_per_op"] == 0.001
    assert (tmp_path / "p_ops_0.png").read_bytes().startswith(b"\x89PNG")
    table = bench(str(model), *QUICK, "--op-profiling").output
    assert "Where time goes" in table and "CONV_2D" in table and "joined to their .tflite ops" in table


def test_raw_samples_only_when_asked(tiny_model):
    lean = json.loads(bench(str(tiny_model), *QUICK, "--json").output)["results"][0]
    assert lean["samples_us"] == [] and lean["latency"]["histogram"]["counts"]
    edges = lean["latency"]["histogram"]["edges_us"]
    assert len(edges) == len(lean["latency"]["histogram"]["counts"]) + 1 <= 61
    full = json.loads(bench(str(tiny_model), *QUICK, "--samples", "--json").output)["results"][0]
    assert len(full["samples_us"]) == full["latency"]["count"]


def test_table_says_how_many_runs_and_why(tiny_model):
    result = bench(str(tiny_model), "--runs", "3", "--min-secs", "0")
    assert result.exit_code == 0, result.output
    assert "runs" in result.output and "3 timed runs: --num_runs 3" in result.output
    assert "--min-secs" in bench("--help").output and "BOTH" in bench("--help").output


def test_host_table_and_compare(tiny_model, tmp_path):
    old = tmp_path / "old.jsonl"
    assert bench(str(tiny_model), *QUICK, "--out", str(old), "--json").exit_code == 0
    result = bench(str(tiny_model), *QUICK, "--compare", str(old))
    assert result.exit_code == 0, result.output
    assert "tiny.tflite" in result.output and "ok" in result.output
    assert "Compared with the old results" in result.output


def test_direct_link_to_loopback(tiny_model, tmp_path):
    cache = tmp_path / "cache"
    install(cache)
    with LoopbackDevice(tmp_path / "device", auth_keys=None) as device:
        result = bench(str(tiny_model), "--device", f"direct:{device.serial}",
                       "--backends", "cpu,nnapi", *QUICK, "--cache-dir", str(cache), "--json")
    assert result.exit_code == 0, result.output
    cpu, nnapi = json.loads(result.output)["results"]
    assert cpu["status"] == "ok" and cpu["device"]["transport"] == "direct"
    assert cpu["device"]["abi"] == "arm64-v8a"
    assert nnapi["status"] == "unsupported" and "NNAPI" in nnapi["reason"]


def test_failed_run_exits_1(tiny_model):
    result = bench(str(tiny_model), "--runs", "3", "--min-secs", "30", "--run-timeout", "1", "--json")
    assert result.exit_code == 1
    (row,) = json.loads(result.output)["results"]
    assert row["status"] == "failed" and "timed out after 1 s" in row["reason"]


def test_missing_binary_is_an_error(tiny_model, tmp_path):
    with LoopbackDevice(tmp_path / "device", auth_keys=None) as device:
        result = bench(str(tiny_model), "--device", f"direct:{device.serial}",
                       "--cache-dir", str(tmp_path / "empty"))
    assert result.exit_code == 1
    assert "android_aarch64_benchmark_model failed" in result.output
    assert "mobile-opt tools install --abi arm64-v8a --from FILE" in result.output


@pytest.mark.parametrize(
    "args, message",
    [(["--backends", "tpu"], "backends"),
     (["--threads", "one"], "comma-separated ints"),
     (["--runs", "0"], "--runs"),
     (["--threads", ","], "at least one"),
     (["--energy", "--battery", "a/b"], "battery"),
     (["--cooldown-to", "-100"], "--cooldown-to")],
)
def test_usage_errors_exit_2(tiny_model, args, message):
    result = bench(str(tiny_model), *args)
    assert result.exit_code == 2
    assert message in result.output


def test_missing_model_and_not_a_model(tmp_path):
    assert bench(str(tmp_path / "nope.tflite")).exit_code == 2
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\x00" * 32)
    result = bench(str(bogus))
    assert result.exit_code == 2 and "TFL3" in result.output


def test_console_entry_point(tiny_model):
    proc = subprocess.run([sys.executable, "-m", "mobile_opt.cli", "bench", str(tiny_model),
                           *QUICK, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["status"] == "ok"
