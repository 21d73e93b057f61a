"""`mobile-opt bench` end to end through a private real adb server and the loopback device(s)."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from device_bench.results import read_jsonl
from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.cli import cli



def bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


def test_adb_server_json_jsonl_plot_and_energy(loopback, adb_connected, adb_server, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    install(cache)
    out, plot = tmp_path / "results.jsonl", tmp_path / "latency.png"
    t0 = time.monotonic()
    result = bench(str(tiny_model), "--device", adb_connected, "--adb-port", str(adb_server),
                   "--backends", "cpu,gpu,nnapi", "--threads", "1", "--runs", "5",
                   "--min-secs", "2.5", "--energy", "--baseline", "1", "--out", str(out),
                   "--plot", str(plot), "--cache-dir", str(cache), "--json")
    t1 = time.monotonic()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cpu, gpu, nnapi = data["results"]
    assert cpu["status"] == "ok" and cpu["device"]["transport"] == "adb-server"
    assert cpu["latency"]["count"] == len(cpu["samples_us"]) >= 5
    assert gpu["status"] == nnapi["status"] == "unsupported"
    assert "GPU acceleration is unsupported" in gpu["reason"]
    energy = cpu["energy"]
    truth = loopback.battery_truth().excess_energy_j(t0, t1) / energy["inferences"]
    # 2% of the truth, widened only by the bound the result itself reports (starved sampler).
    error = abs(energy["energy_per_inference_j"] - truth)
    assert error <= 0.02 * truth + energy["energy_per_inference_bound_j"], (error / truth, energy["warnings"])
    assert energy["current_unit"] == "uA" and energy["discharge_sign"] == -1
    assert [r.to_dict() for r in read_jsonl(out)] == data["results"]
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_table_and_compare(loopback, adb_connected, adb_server, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    install(cache)
    common = [str(tiny_model), "--device", adb_connected, "--adb-port", str(adb_server),
              "--runs", "3", "--min-secs", "0.1", "--cache-dir", str(cache)]
    old = tmp_path / "old.jsonl"
    assert bench(*common, "--out", str(old), "--json").exit_code == 0
    result = bench(*common, "--backends", "cpu,gpu", "--compare", str(old))
    assert result.exit_code == 0, result.output
    assert "Benchmark" in result.output and "unsupported" in result.output
    assert "Compared with the old results" in result.output
    assert "GPU acceleration is unsupported on this platform." in result.output


def test_all_devices_concurrently(loopback, adb_connected, adb, adb_server, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    install(cache)
    with LoopbackDevice(tmp_path / "second", auth_keys=None) as second:
        assert b"connected" in adb("connect", second.serial, timeout_s=30).stdout
        adb.wait_for_state(second.serial, "device", 20)
        result = bench(str(tiny_model), "--device", "all", "--adb-port", str(adb_server),
                       "--runs", "3", "--min-secs", "1", "--cache-dir", str(cache), "--json")
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)["results"]
        assert {r["device"]["serial"] for r in rows} == {loopback.serial, second.serial}
        assert all(r["status"] == "ok" for r in rows)
        # Concurrent: the two one-second runs overlapped in time.
        (a, b) = sorted(rows, key=lambda r: r["measurement"]["started_at"])
        assert b["measurement"]["started_at"] < a["measurement"]["finished_at"]


def test_unknown_serial_is_an_error(adb_server, tiny_model):
    result = bench(str(tiny_model), "--device", "nosuch:1234", "--adb-port", str(adb_server))
    assert result.exit_code == 1
    assert "nosuch:1234" in result.output
