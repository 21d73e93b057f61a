"""adbd's hang-up semantics on the loopback device, and its `shell=` option.

AOSP `packages/modules/adb/daemon/shell_service.cpp`: when the protocol socket dies adbd runs
`kill(pid_, SIGHUP)` on the shell's pid — not its process group — and closes the pipes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp

from device_bench.testing import LoopbackDevice
from device_bench.testing._sandbox import pid_alive
from mobile_opt.errors import InputError

TMP = "/data/local/tmp"
# The shell traps HUP (so we see it arrive and the shell survive it); its background child
# does not, so a signal to the whole group would kill it.
SCRIPT = (
    f"trap 'echo hup > {TMP}/hup' HUP; sleep 60 & echo $! > {TMP}/child; echo $$ > {TMP}/pid; echo ready; "
    f"while [ ! -e {TMP}/release ]; do sleep 0.05; done"
)


def _wait(predicate, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def _read_int(path: Path) -> int:
    _wait(lambda: path.exists() and path.read_text().strip(), f"{path}")
    return int(path.read_text())


def _check_hang_up(device: LoopbackDevice, hang_up) -> None:
    hang_up()
    _wait(lambda: device.device_path(f"{TMP}/hup").exists(), "the shell's HUP trap")
    pid, child = _read_int(device.device_path(f"{TMP}/pid")), _read_int(device.device_path(f"{TMP}/child"))
    assert pid_alive(pid), "the shell was killed, not hung up"
    assert pid_alive(child), "the shell's child got the signal too"
    device.device_path(f"{TMP}/release").touch()
    _wait(lambda: not pid_alive(pid), "the shell to exit once released")
    assert pid_alive(child), "the child did not outlive its shell"
    device.stop()
    _wait(lambda: not pid_alive(child), "the device's power-off to end the child")


def test_real_adb_shell_v2_client_gone(loopback, adb, adb_connected, caplog):
    caplog.set_level(logging.INFO, logger="device_bench.testing._shell")
    client = adb.popen("-s", adb_connected, "shell", SCRIPT)
    _read_int(loopback.device_path(f"{TMP}/pid"))
    _check_hang_up(loopback, lambda: (client.kill(), client.wait(10)))
    assert any("SIGHUP to the shell" in r.getMessage() for r in caplog.records)


def test_raw_shell_connection_drop(loopback):
    client = AdbDeviceTcp(loopback.host, loopback.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    lines = client.streaming_shell(SCRIPT, read_timeout_s=10)
    assert next(lines).strip() == "ready"
    _check_hang_up(loopback, client.close)


def test_hang_up_arrives_when_the_host_runs_under_nohup(loopback):
    # A runner started with `nohup` hands SIGHUP on as ignored; the device's shells must not
    # inherit that, as a phone's adbd never would.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        test_raw_shell_connection_drop(loopback)
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_finished_command_is_not_signalled(loopback):
    # A detached child (its output redirected, so the stream can end) outlives a normal exit.
    client = AdbDeviceTcp(loopback.host, loopback.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    try:
        client.shell(f"sleep 60 > /dev/null 2>&1 < /dev/null & echo $! > {TMP}/child", read_timeout_s=30)
    finally:
        client.close()
    child = _read_int(loopback.device_path(f"{TMP}/child"))
    assert pid_alive(child)
    loopback.stop()
    _wait(lambda: not pid_alive(child), "the device's power-off to end the child")


def _pids_with_arg(arg: str) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and arg.encode() in Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0"):
                pids.append(int(name))
        except OSError:
            continue
    return [p for p in pids if pid_alive(p)]


MKSH = pytest.mark.skipif(not os.access("/bin/mksh", os.X_OK), reason="mksh not installed (apt-get install mksh)")


@MKSH
@pytest.mark.parametrize(
    ("loopback", "execs"), [({}, True), ({"shell": "/bin/sh"}, False)], ids=["default-mksh", "dash"], indirect=["loopback"]
)
def test_a_lone_command_is_hung_up_only_where_the_shell_execs_it(loopback, adb, adb_connected, execs):
    # mksh (Android's shell, the default when installed) execs a lone `sleep`: the SIGHUP
    # reaches it. dash forks it: only dash is hung up and the sleep lives on, orphaned.
    seconds = f"60.{os.getpid()}{int(execs)}"
    client = adb.popen("-s", adb_connected, "shell", f"sleep {seconds}")
    _wait(lambda: _pids_with_arg(seconds), "the sleep to start")
    (sleep,) = _pids_with_arg(seconds)
    shell = int(Path(f"/proc/{sleep}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    client.kill()
    client.wait(10)
    if execs:
        _wait(lambda: not pid_alive(sleep), "the hung-up sleep to exit")
    else:
        _wait(lambda: not pid_alive(shell), "the hung-up dash to exit")
        assert pid_alive(sleep), "dash's child was signalled too"
        loopback.stop()
        _wait(lambda: not pid_alive(sleep), "the device's power-off to end the orphan")


@MKSH
def test_commands_can_run_under_mksh_like_android(tmp_path):
    with LoopbackDevice(tmp_path / "d", auth_keys=None, shell="/bin/mksh") as device:
        client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
        client.connect(read_timeout_s=10)
        try:
            assert "MIRBSD KSH" in client.shell("echo $KSH_VERSION", read_timeout_s=30)
            assert client.shell("cat /sys/class/power_supply/battery/type", read_timeout_s=30).strip() == "Battery"
        finally:
            client.close()


def test_shell_must_be_executable(tmp_path):
    with pytest.raises(InputError, match="shell must be an executable"):
        LoopbackDevice(tmp_path / "d", shell=str(tmp_path / "nosh"))
