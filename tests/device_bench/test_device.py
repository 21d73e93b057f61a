"""The `Device` contract, run against every backend: host, adb server (real adb + loopback
device), direct adb-shell (loopback device). Plus the pure helpers of device.py."""

from __future__ import annotations

import importlib
import os
import platform
import random
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import device_bench
from device_bench import Device, DeviceInfo, RemoteStat, ShellResult, connect, quote
from device_bench.device import _ExitMarker, _parse_battery, parse_getprop
from mobile_opt.errors import DeviceError, DeviceTimeoutError, InputError

TMP = "/data/local/tmp"
HOSTILE = "a b'c\"d;$(x)&.tflite"
# "adb-server-legacy": the adb-server path forced onto the legacy `shell:` service (what a
# device without shell_v2 gets), to run the exit-marker path through a real adb server.
BACKENDS = ["host", "adb-server", "adb-server-legacy", "direct"]


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Keys default to ~/.android/adbkey: keep every test away from the real one."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def tflite_bytes() -> bytes:
    """A real .tflite: a tiny tf_keras model converted with the TFLite converter."""
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert data[4:8] == b"TFL3"
    return bytes(data)


@pytest.fixture(params=BACKENDS)
def device(request: pytest.FixtureRequest, tmp_path: Path):
    """A connected Device of each backend; the loopback ones carry `.loopback` for checks."""
    if request.param == "host":
        dev = connect("host")
        dev.loopback = None
    else:
        loopback = request.getfixturevalue("loopback")
        if request.param.startswith("adb-server"):
            serial = request.getfixturevalue("adb_connected")
            dev = connect(serial, adb_port=request.getfixturevalue("adb_server"))
            if request.param == "adb-server-legacy":
                dev._shell_v2 = False
        else:
            dev = connect(f"direct:127.0.0.1:{loopback.port}", key_path=tmp_path / "adbkey")
        dev.loopback = loopback
    yield dev
    dev.close()


def test_public_api_is_pinned():
    for name in ("Device", "DeviceInfo", "RemoteStat", "ShellResult", "quote", "connect",
                 "connect_all", "list_devices"):
        assert name in device_bench.__all__
    # The function, not a submodule of the same name, even after every module is imported.
    importlib.import_module("device_bench._connect")
    assert callable(device_bench.connect) and device_bench.connect.__name__ == "connect"


# --- pure helpers ----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=40))
def test_quote_survives_a_real_sh(arg):
    out = subprocess.run(["/bin/sh", "-c", f"printf %s {quote(arg)}"], capture_output=True,
                         timeout=10).stdout
    assert out.decode("utf-8", errors="surrogateescape") == arg


def test_exit_marker_parses_exit_inside_command_with_real_sh():
    marker = _ExitMarker()
    for command, code, text in [("printf abc; exit 7", 7, b"abc"), ("echo hi", 0, b"hi\n"),
                                ("true # trailing comment", 0, b"")]:
        raw = subprocess.run(["/bin/sh", "-c", marker.wrap(command)], capture_output=True,
                             timeout=10).stdout
        assert marker.split(raw) == (code, text)
    # The marker is assembled by printf: an echo of the command line cannot fake it.
    assert f"__MOPT_EXIT_{marker.token}__" not in marker.wrap("x")
    assert marker.split(b"output cut before the marker") is None


def test_shell_result_check_and_to_dict():
    ok = ShellResult(0, "out", "")
    assert ok.check("step") is ok and ok.to_dict() == {"exit_code": 0, "stdout": "out", "stderr": ""}
    with pytest.raises(DeviceError, match=r"run model failed on s1 with exit code 3: boom") as info:
        ShellResult(3, "", "boom\n").check("run model", serial="s1")
    assert info.value.serial == "s1" and info.value.step == "run model"


def test_parse_getprop_and_battery():
    text = "[ro.product.model]: [Pixel 8]\n[ro.build.version.sdk]: [34]\n[multi]: [a\nb]\n"
    assert parse_getprop(text) == {"ro.product.model": "Pixel 8", "ro.build.version.sdk": "34",
                                   "multi": "a\nb"}
    assert _parse_battery("capacity=57\nstatus=Charging\nonline_ac=0\nonline_usb=1\nonline_wireless=\n") == {
        "level": 57, "status": "Charging", "powered_by": ["usb"]}
    empty = "capacity=\nstatus=\nonline_ac=\nonline_usb=\nonline_wireless=\n"
    assert _parse_battery(empty) is None
    dumpsys = ("Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
               "  Wireless powered: false\n  status: 2\n  health: 2\n  level: 81\n  scale: 100\n")
    assert _parse_battery(empty + dumpsys) == {"level": 81, "status": "Charging", "powered_by": ["usb"]}


def test_dataclasses_are_frozen_and_json_safe():
    import json

    info = DeviceInfo("s", "adb-server", "device", battery={"level": 1, "status": None, "powered_by": None})
    json.dumps(info.to_dict())
    with pytest.raises(Exception):
        info.state = "offline"  # type: ignore[misc]
    assert RemoteStat(0o100644, 3, 0).is_file and RemoteStat(0o040755, 0, 0).is_dir


def test_fast_checksum_equals_adb_shells_own():
    from device_bench._compat_adb_shell import fast_checksum as _fast_checksum
    from device_bench._compat_adb_shell import pure_python_checksum as _pure_python_checksum

    rng = random.Random(4)
    for size in (0, 1, 255, 4096, 65537, 1 << 20):
        data = bytes(rng.getrandbits(8) for _ in range(size)) if size < 70000 else os.urandom(size)
        for value in (data, bytearray(data)):
            assert _fast_checksum(value) == _pure_python_checksum(value)
    assert _fast_checksum(b"\xff" * (1 << 20)) == (255 << 20) & 0xFFFFFFFF


# --- the contract on every backend -----------------------------------------------------------

def _legacy_shell(device: Device) -> bool:
    return device.transport == "direct" or getattr(device, "_shell_v2", True) is False


def test_push_pull_tflite_byte_identical(device: Device, tflite_bytes: bytes, tmp_path: Path):
    src = tmp_path / "model.tflite"
    src.write_bytes(tflite_bytes)
    seen: list[tuple[int, int]] = []
    device.push(src, f"{TMP}/model.tflite", progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (len(tflite_bytes), len(tflite_bytes))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    remote = device.stat(f"{TMP}/model.tflite")
    assert remote is not None and remote.is_file and remote.size == len(tflite_bytes)
    back = tmp_path / "back" / "model.tflite"
    back.parent.mkdir()
    device.pull(f"{TMP}/model.tflite", back)
    assert back.read_bytes() == tflite_bytes
    assert os.listdir(back.parent) == ["model.tflite"]  # no temp file left behind
    if device.loopback is not None:
        assert device.loopback.device_path(f"{TMP}/model.tflite").read_bytes() == tflite_bytes


def test_shell_exit_codes_and_output(device: Device):
    assert device.shell("true").exit_code == 0
    assert device.shell("exit 7").exit_code == 7  # `exit` inside the command itself
    result = device.shell("printf abc; exit 5")
    assert (result.exit_code, result.stdout) == (5, "abc")
    assert device.shell(["sh", "-c", "exit 3"]).exit_code == 3
    assert device.shell("echo one; echo two").stdout == "one\ntwo\n"


def test_shell_stderr_separate_or_documented_merge(device: Device):
    result = device.shell("echo out; echo err >&2")
    if _legacy_shell(device):  # merged into stdout, stderr empty (documented)
        assert sorted(result.stdout.split()) == ["err", "out"] and result.stderr == ""
    else:
        assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_getprop(device: Device):
    abi = device.getprop("ro.product.cpu.abi")
    props = device.getprop()
    assert isinstance(props, dict) and props["ro.product.cpu.abi"] == abi
    if device.loopback is not None:
        assert abi == "arm64-v8a" and props["ro.product.model"] == "Loopback"
        assert device.getprop("ro.build.version.sdk") == "34"
    else:
        assert abi == platform.machine()
    assert device.getprop("no.such.property.here") == ""
    with pytest.raises(InputError):
        device.getprop("bad name; reboot")


def test_info(device: Device):
    info = device.info()
    assert info.serial == device.serial and info.transport == device.transport
    assert info.state == "device"
    if device.loopback is not None:
        assert (info.model, info.abi, info.android_version, info.sdk) == ("Loopback", "arm64-v8a", "14", 34)
        level = int(device.loopback.device_path("/sys/class/power_supply/battery/capacity").read_text())
        assert info.battery["level"] == level and info.battery["status"] == "Discharging"
    else:
        assert info.abi == platform.machine() and info.android_version is None


def test_hostile_file_names(device: Device, tmp_path: Path):
    local = tmp_path / HOSTILE
    local.write_bytes(b"hostile payload\n")
    directory = f"{TMP}/dir with space"
    remote = f"{directory}/{HOSTILE}"
    device.shell(["mkdir", "-p", directory]).check("mkdir")
    device.push(local, remote)
    assert device.stat(remote).size == len(b"hostile payload\n")
    listing = device.shell(["ls", "-1", directory]).check("ls").stdout.splitlines()
    assert listing == [HOSTILE]
    assert device.shell(["cat", remote]).check("cat").stdout == "hostile payload\n"
    assert device.shell(["test", "-e", f"{TMP}/x"]).exit_code != 0  # $(x) never ran as a command
    device.remove(remote)
    assert device.stat(remote) is None
    device.remove(directory, recursive=True)
    assert device.stat(directory) is None


def test_push_creates_missing_parent_directories(device: Device, tmp_path: Path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc")
    device.push(src, f"{TMP}/new/sub/f.bin")
    assert device.stat(f"{TMP}/new/sub/f.bin").size == 3 and device.stat(f"{TMP}/new/sub").is_dir


def test_stat_missing_and_directory(device: Device):
    assert device.stat(f"{TMP}/does-not-exist") is None
    assert device.stat(TMP).is_dir


def test_pull_missing_file_raises_and_leaves_nothing(device: Device, tmp_path: Path):
    with pytest.raises(DeviceError, match="does not exist"):
        device.pull(f"{TMP}/nope.bin", tmp_path / "nope.bin")
    assert list(tmp_path.glob("*nope*")) == []


def _alive_with_arg(arg: str) -> bool:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if arg.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    return True
            except OSError:
                continue
    return False


def test_timeout_is_fast_names_device_and_stops_the_command(device: Device):
    seconds = f"30.{uuid.uuid4().int % 10**6:06d}"  # unique argv to find the process by
    start = time.monotonic()
    with pytest.raises(DeviceTimeoutError) as info:
        device.shell(f"sleep {seconds}", timeout_s=1)
    assert time.monotonic() - start < float(seconds)  # cut by the timeout, not run to its end
    assert info.value.serial == device.serial and "sleep" in info.value.step
    assert device.serial in str(info.value) and "1 s" in str(info.value)
    deadline = time.monotonic() + 5
    while _alive_with_arg(seconds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive_with_arg(seconds), "the timed-out command still runs"
    assert device.shell("echo still usable").stdout == "still usable\n"


def test_argument_validation(device: Device, tmp_path: Path):
    with pytest.raises(InputError):
        device.shell("")
    with pytest.raises(InputError):
        device.shell(["echo", "x"], timeout_s=0)
    with pytest.raises(InputError, match="absolute device paths"):
        device.push(tmp_path, "relative/path")
    with pytest.raises(InputError, match="existing local file"):
        device.push(tmp_path / "missing.bin", f"{TMP}/m.bin")


@pytest.mark.parametrize("loopback", [{"battery": None}], indirect=True)
def test_info_without_battery(loopback, tmp_path: Path):
    with connect(f"direct:127.0.0.1:{loopback.port}", key_path=tmp_path / "adbkey") as device:
        info = device.info()
    assert info.battery is None and info.model == "Loopback"
