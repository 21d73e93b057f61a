"""device_bench.farm: every device at once, sharding, and a device lost mid-run.

The scheduling rules are checked with an injected `run` on stand-in devices (no I/O, ordered
by events); the whole path with three loopback devices over direct adb links, one stopped
while its benchmark is in flight, and through `mobile-opt bench --device A,B,C`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from device_bench import connect
from device_bench.device import DeviceInfo
from device_bench.farm import run_farm
from device_bench.results import BenchmarkResult, read_jsonl, write_jsonl
from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.errors import DeviceDisconnectedError, InputError

_EVENT_TIMEOUT_S = 120


class Standin:
    """Only what the farm asks of a device: a serial and `info()`."""

    def __init__(self, serial, model="Pixel", abi="arm64-v8a"):
        self.serial, self.model, self.abi = serial, model, abi

    def info(self):
        return DeviceInfo(self.serial, "direct", "device", model=self.model, abi=self.abi)


def row(device, model, status="ok"):
    return BenchmarkResult(model_path=str(model), model_sha256="0", model_size_bytes=1,
                           device={"serial": device.serial, "model": device.model}, backend="cpu", threads=1,
                           status=status)


def measured(farm):
    return sorted((r.device["serial"], Path(r.model_path).name) for r in farm.results)


def test_every_device_measures_every_model_by_default():
    devices = [Standin("a"), Standin("b", model="Other")]
    farm = run_farm(devices, ["m1", "m2"], lambda d, ms: [row(d, m) for m in ms])
    assert farm.ok and measured(farm) == [("a", "m1"), ("a", "m2"), ("b", "m1"), ("b", "m2")]


def test_shard_spreads_models_over_devices_of_one_model_and_abi():
    devices = [Standin("a"), Standin("b"), Standin("c", model="Other")]
    seen = {"a": threading.Event(), "b": threading.Event()}

    def run(device, models):
        if device.serial in seen:  # a and b each hold a model before either finishes
            seen[device.serial].set()
            assert all(e.wait(_EVENT_TIMEOUT_S) for e in seen.values())
        return [row(device, m) for m in models]

    farm = run_farm(devices, ["m1", "m2", "m3", "m4"], run, shard=True)
    by_group = {}
    for serial, model in measured(farm):
        by_group.setdefault("Other" if serial == "c" else "Pixel", []).append(model)
    assert sorted(by_group["Pixel"]) == ["m1", "m2", "m3", "m4"]  # each model once per device model
    assert sorted(by_group["Other"]) == ["m1", "m2", "m3", "m4"]
    assert {s for s, _ in measured(farm)} == {"a", "b", "c"}


@pytest.mark.parametrize("retries", [0, 1])
def test_a_lost_device_loses_only_its_in_flight_run_unless_retried(retries):
    devices = [Standin("a"), Standin("b"), Standin("c", model="Other")]
    written = []

    def run(device, models):
        if device.serial == "b":
            raise DeviceDisconnectedError("connection reset", serial="b", step="shell")
        return [row(device, m) for m in models]

    farm = run_farm(devices, ["m1", "m2"], run, retries=retries, on_results=written.extend)
    assert list(farm.lost) == ["b"] and "lost while measuring m1" in farm.lost["b"]
    assert ("a", "m1") in measured(farm) and ("c", "m2") in measured(farm)
    if retries:
        # b's in-flight m1 and its queued m2 moved to a, the other healthy "Pixel".
        assert farm.unrun == () and measured(farm).count(("a", "m1")) == 2
        moved = [r for r in farm.results if r.warnings]
        assert len(moved) == 2 and all("after b was lost" in r.warnings[0] for r in moved)
    else:
        assert [(u[0], u[1]) for u in farm.unrun] == [("b", "m1"), ("b", "m2")]
        assert all(r.device["serial"] != "b" for r in farm.results)
    assert len(written) == len(farm.results)


def test_no_healthy_device_left_gives_up_with_the_reason():
    def run(device, models):
        raise DeviceDisconnectedError("gone", serial=device.serial, step="shell")

    farm = run_farm([Standin("a")], ["m1"], run, retries=3)
    assert farm.results == () and farm.unrun[0][:2] == ("a", "m1") and "no healthy Pixel left" in farm.unrun[0][2]


def test_failed_run_on_a_healthy_device_is_kept_not_moved():
    farm = run_farm([Standin("a"), Standin("b")], ["m1"], lambda d, ms: [row(d, m, "failed") for m in ms],
                    retries=1, alive=lambda d: True)
    assert farm.ok and [r.status for r in farm.results] == ["failed", "failed"]


def test_other_errors_stop_the_farm_and_propagate():
    def run(device, models):
        raise InputError("not a model")

    with pytest.raises(InputError, match="not a model"):
        run_farm([Standin("a"), Standin("b")], ["m1", "m2"], run)
    with pytest.raises(InputError, match="given once"):
        run_farm([Standin("a"), Standin("a")], ["m1"], run)


# --- three loopback devices -----------------------------------------------------------------

@pytest.fixture
def phones(tmp_path):
    install(tmp_path / "cache")
    with LoopbackDevice(tmp_path / "d0", auth_keys=None) as a, LoopbackDevice(tmp_path / "d1", auth_keys=None) as b, \
            LoopbackDevice(tmp_path / "d2", auth_keys=None) as c:
        yield [a, b, c]


@pytest.fixture
def models(tiny_model, tmp_path):
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.tflite")
        shutil.copyfile(tiny_model, paths[-1])
    return paths


def _pushed(phone: LoopbackDevice) -> bool:
    return any(p.stat().st_size > 0 for p in (phone.root / "data/local/tmp/mobile_opt").glob("*/model.tflite"))


@pytest.mark.slow
def test_loopback_farm_survives_a_device_stopped_mid_run(phones, models, tmp_path):
    from device_bench import RunSettings, ToolSettings, benchmark

    victim = phones[1]
    devices = [connect(f"direct:{p.serial}", key_path=tmp_path / "adbkey") for p in phones]
    out = tmp_path / "farm.jsonl"

    def run(device, some):
        # The victim's run lasts 60 s, far longer than it takes to notice it started.
        slow = device.serial == devices[1].serial
        run = RunSettings(runs=3, min_secs=60 if slow else 0.1, run_timeout_s=120)
        return benchmark(device, some, run=run, tool=ToolSettings(cache_dir=tmp_path / "cache"))

    killer = threading.Thread(target=lambda: _wait(lambda: _pushed(victim)) or victim.stop())
    killer.start()
    try:
        farm = run_farm(devices, models, run, retries=1, on_results=lambda rows: write_jsonl(out, rows))
    finally:
        killer.join()
        for device in devices:
            device.close()
    lost = devices[1].serial
    assert list(farm.lost) == [lost] and farm.unrun == ()
    rows = read_jsonl(out)
    assert sorted((r.device["serial"], Path(r.model_path).name) for r in rows) == measured(farm)
    assert all(r.status == "ok" and r.device["serial"] != lost for r in rows)
    # The two healthy devices measured every model, and between them the victim's three too.
    assert len(rows) == 3 * 3 and {r.device["serial"] for r in rows} == {devices[0].serial, devices[2].serial}
    moved = [r for r in rows if r.warnings]
    assert len(moved) == 3 and all(f"after {lost} was lost" in r.warnings[-1] for r in moved)


@pytest.mark.slow
def test_cli_bench_on_a_device_list_with_shard(phones, models, tmp_path):
    from mobile_opt.cli import cli

    out = tmp_path / "r.jsonl"
    serials = ",".join(f"direct:{p.serial}" for p in phones)
    result = CliRunner().invoke(cli, ["bench", *map(str, models), "--device", serials, "--shard", "--runs", "3",
                                      "--min-secs", "0.1", "--cache-dir", str(tmp_path / "cache"),
                                      "--out", str(out), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["results"]
    assert sorted(Path(r["model_path"]).name for r in rows) == ["a.tflite", "b.tflite", "c.tflite"]  # once each
    assert {r["device"]["serial"] for r in rows} <= {f"direct:{p.serial}" for p in phones}
    written = sorted((r.device["serial"], Path(r.model_path).name) for r in read_jsonl(out))
    assert written == sorted((r["device"]["serial"], Path(r["model_path"]).name) for r in rows)


@pytest.mark.slow
def test_cli_shard_with_retries_moves_a_lost_devices_run(phones, models, tmp_path):
    """`bench --device A,B,C --shard --retries 1`: the device unplugged mid-run loses only that
    run, which another device of the same model measures; every model lands in the JSONL once."""
    from mobile_opt.cli import cli

    victim = phones[1]
    killer = threading.Thread(target=lambda: _wait(lambda: _pushed(victim)) or victim.stop())
    killer.start()
    out = tmp_path / "r.jsonl"
    serials = ",".join(f"direct:{p.serial}" for p in phones)
    try:
        # Runs of >= 8 s: the victim is still measuring when its push is noticed (polled every 50 ms).
        result = CliRunner().invoke(cli, ["bench", *map(str, models), "--device", serials, "--shard", "--retries", "1",
                                          "--runs", "3", "--min-secs", "8", "--cache-dir", str(tmp_path / "cache"),
                                          "--out", str(out)], catch_exceptions=False)
    finally:
        killer.join()
    lost = f"direct:{victim.serial}"
    rows = read_jsonl(out)
    assert sorted(Path(r.model_path).name for r in rows) == ["a.tflite", "b.tflite", "c.tflite"], result.output
    assert all(r.status == "ok" and r.device["serial"] != lost for r in rows)
    (moved,) = [r for r in rows if r.warnings]
    assert f"after {lost} was lost" in moved.warnings[-1]
    # Nothing is missing, yet a phone dropped out of the farm: the run says so and exits 1.
    assert result.exit_code == 1 and f"device {lost}" in result.output


def _wait(condition) -> None:
    deadline = time.monotonic() + _EVENT_TIMEOUT_S
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
