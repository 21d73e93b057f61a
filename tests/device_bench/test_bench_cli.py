"""`mobile-opt bench` end to end through a private real adb server and the loopback device(s)."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

import pytest

from device_bench.results import read_jsonl
from device_bench.testing import BatteryProfile, LoopbackDevice
from device_bench.testing.gauge import GaugeModel
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.cli import cli



def bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    "loopback", [{"battery": BatteryProfile(gauge=GaugeModel(refresh_period_s=0.05, noise_ua=2000.0))}],
    indirect=True,
)
def test_adb_server_json_jsonl_and_energy(loopback, adb_connected, adb_server, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    install(cache)
    out = tmp_path / "results.jsonl"
    t0 = time.monotonic()
    result = bench(str(tiny_model), "--device", adb_connected, "--adb-port", str(adb_server),
                   "--backends", "cpu,gpu,nnapi", "--threads", "1", "--runs", "50",
                   "--min-secs", "2.5", "--energy", "--baseline", "1", "--out", str(out),
                   "--cache-dir", str(cache), "--json")
    t1 = time.monotonic()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cpu, gpu, nnapi = data["results"]
    assert cpu["status"] == "ok" and cpu["device"]["transport"] == "adb-server"
    # The tool's binary result proto: p5/median/p95 measured, p90/p99 said to be missing.
    latency = cpu["latency"]
    assert latency["source"] == "result_proto" and latency["count"] >= 50
    assert latency["p5_us"] <= latency["p50_us"] <= latency["p95_us"]
    assert latency["p90_us"] is None and "p90/p99" in latency["unavailable"]
    assert cpu["samples_us"] == []
    assert "timed runs" in cpu["measurement"]["runs_limited_by"]
    assert gpu["status"] == nnapi["status"] == "unsupported"
    assert "GPU acceleration is unsupported" in gpu["reason"]
    energy = cpu["energy"]
    assert energy["reason"] is None, energy["reason"]
    truth = loopback.battery_truth().excess_energy_j(t0, t1) / energy["inferences"]
    error = abs(energy["energy_per_inference_j"] - truth)
    assert error <= energy["energy_per_inference_bound_j"], (error / truth, energy)
    assert energy["current_unit"] == "uA" and energy["discharge_sign"] == -1
    assert [r.to_dict() for r in read_jsonl(out)] == data["results"]


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


def test_battery_flag_names_the_supply(loopback, adb_connected, adb_server, tiny_model, tmp_path):
    cache = tmp_path / "cache"
    install(cache)
    common = [str(tiny_model), "--device", adb_connected, "--adb-port", str(adb_server), "--runs", "3",
              "--min-secs", "0.1", "--energy", "--baseline", "1", "--cache-dir", str(cache)]
    result = bench(*common, "--battery", "nosuch")
    assert result.exit_code == 0, result.output
    assert "energy not measured" in result.output and "nosuch" in result.output
    named = json.loads(bench(*common, "--battery", "battery", "--json").output)["results"][0]
    assert named["energy"]["battery_dir"] == "/sys/class/power_supply/battery"
