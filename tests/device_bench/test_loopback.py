"""LoopbackDevice API, sandbox mapping, concurrency, process cleanup and the `python -m` entry."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from adb_shell.adb_device import AdbDeviceTcp

import device_bench.testing as testing
from device_bench.testing import LoopbackDevice
from device_bench.testing import _packets as pk
from device_bench.testing._sandbox import Sandbox, pid_alive
from mobile_opt.errors import InputError


def test_public_api_is_pinned():
    assert testing.__all__ == [
        "BatteryProfile",
        "BatteryTruth",
        "GaugeModel",
        "LoadTransition",
        "LoopbackDevice",
        "PowerTrace",
        "RailsProfile",
        "RailsTruth",
        "ThermalZone",
        "battery_load",
        "configure_rails",
        "rails_truth",
        "random_gauge",
    ]


def _client(device: LoopbackDevice) -> AdbDeviceTcp:
    client = AdbDeviceTcp(device.host, device.port, default_transport_timeout_s=10)
    client.connect(read_timeout_s=10)
    return client


def _process_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_for_file(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


# --- sandbox -----------------------------------------------------------------------------


def test_device_path_maps_into_root_and_refuses_escape(loopback):
    assert loopback.device_path("/data/local/tmp/x") == loopback.root / "data/local/tmp/x"
    assert loopback.device_path("/data/../../etc/passwd") == loopback.root / "etc/passwd"
    with pytest.raises(InputError, match="absolute"):
        loopback.device_path("data/x")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("cat /sys/class/power_supply/battery/current_now", "cat R/sys/class/power_supply/battery/current_now"),
        ("ls -l /data/local/tmp", "ls -l R/data/local/tmp"),
        ("cd /sdcard && echo x>/data/a", "cd R/sdcard && echo x>R/data/a"),
        ("sh '/system/bin/run.sh' \"/data/m.tflite\"", "sh 'R/system/bin/run.sh' \"R/data/m.tflite\""),
        ("echo /database /dev/null x/data /proc/self", "echo /database /dev/null x/data /proc/self"),
        ("ls /proc/loopback/load", "ls R/proc/loopback/load"),
        ("X=/data/local/tmp f", "X=R/data/local/tmp f"),
    ],
)
def test_command_rewriting(tmp_path, command, expected):
    sandbox = Sandbox(tmp_path)
    assert sandbox.rewrite_command(command) == expected.replace("R/", f"{tmp_path.resolve()}/")


def test_root_with_shell_metacharacters_refused(tmp_path):
    with pytest.raises(InputError, match="metacharacters"):
        LoopbackDevice(tmp_path / "has space")


@pytest.mark.parametrize("port", [5555, 5585, -1, 70000])
def test_reserved_or_invalid_port_refused(tmp_path, port):
    with pytest.raises(InputError, match="5555-5585"):
        LoopbackDevice(tmp_path, port=port)


def test_unparsable_auth_key_refused(tmp_path):
    with pytest.raises(InputError, match="adbkey.pub"):
        LoopbackDevice(tmp_path, auth_keys=["not a key"])


@pytest.mark.parametrize("loopback", [{"props": {"ro.product.model": "Pixel 9", "x.custom": "a b"}}], indirect=True)
def test_props_override_defaults_and_shell_environment(loopback):
    client = _client(loopback)
    try:
        out = client.shell(
            "getprop ro.product.model; getprop x.custom; getprop ro.product.manufacturer; "
            "getprop no.such.prop fallback; echo $HOME; echo $LOOPBACK_ROOT; ls /data/local/tmp/../..",
            read_timeout_s=10,
        )
    finally:
        client.close()
    lines = out.splitlines()
    assert lines[:4] == ["Pixel 9", "a b", "mobile-opt", "fallback"]
    assert lines[4] == str(loopback.device_path("/data/local/tmp"))
    assert lines[5] == str(loopback.root)
    assert "local" in lines[6:]


# --- concurrency and cleanup ---------------------------------------------------------------


def _rendezvous(name: str, parties: int) -> str:
    """A device command that only finishes once `parties` such commands run at the same time."""
    return (
        f"touch /data/local/tmp/here.{name}; n=0; "
        f"while [ $(ls /data/local/tmp | grep -c here) -lt {parties} ] && [ $n -lt 300 ]; "
        "do sleep 0.05; n=$((n+1)); done; "
        f"echo {name} $(ls /data/local/tmp | grep -c here)"
    )


def test_concurrent_connections_and_streams(loopback, adb, adb_connected):
    results: dict[int, str] = {}

    def via_adb_shell(i: int) -> None:
        client = _client(loopback)
        try:
            results[i] = client.shell(_rendezvous(f"conn{i}", 6), read_timeout_s=30).strip()
        finally:
            client.close()

    threads = [threading.Thread(target=via_adb_shell, args=(i,)) for i in range(3)]
    # Several streams over the one real-adb transport at the same time.
    procs = [adb.popen("-s", adb_connected, "shell", _rendezvous(f"stream{i}", 6), stdout=subprocess.PIPE) for i in range(3)]
    for t in threads:
        t.start()
    outs = [p.communicate(timeout=30)[0].decode().strip() for p in procs]
    for t in threads:
        t.join(30)
    # Each command saw all six markers: the six ran concurrently (serially they would time out at 1..5).
    assert outs == ["stream0 6", "stream1 6", "stream2 6"]
    assert results == {0: "conn0 6", 1: "conn1 6", 2: "conn2 6"}


@pytest.mark.parametrize(
    "command",
    [
        "echo $$ > /data/local/tmp/pid; sleep 60 & echo $! > /data/local/tmp/child; sleep 60",
        # The shell itself is gone; its background child keeps the stream open.
        "sleep 60 & echo $! > /data/local/tmp/child; echo $$ > /data/local/tmp/pid",
    ],
)
def test_client_close_hangs_up_the_shell_not_its_children(loopback, adb, adb_connected, command):
    # adbd sends SIGHUP to the shell's pid only: a child outlives it until the device powers off.
    pidfile, childfile = loopback.device_path("/data/local/tmp/pid"), loopback.device_path("/data/local/tmp/child")
    client = adb.popen("-s", adb_connected, "shell", command)
    pid, child = int(_wait_for_file(pidfile)), int(_wait_for_file(childfile))
    client.send_signal(signal.SIGKILL)  # the adb server then CLSEs the stream
    client.wait(10)
    assert _process_gone(pid), "the shell survived the stream close"
    assert pid_alive(child), "the shell's child was signalled too"
    loopback.stop()
    assert _process_gone(child), "the child survived the device's power-off"


def test_connection_drop_hangs_up_the_shell(loopback):
    pidfile = loopback.device_path("/data/local/tmp/pid")
    client = _client(loopback)
    stream = client.streaming_shell("echo $$ > /data/local/tmp/pid; echo started; sleep 60", read_timeout_s=10)
    assert next(stream).strip() == "started"
    pid = int(_wait_for_file(pidfile))
    client.close()
    assert _process_gone(pid)


def test_interactive_shell_refused_exec_out_served(adb, adb_connected):
    interactive = adb("-s", adb_connected, "shell", timeout_s=30)
    assert interactive.returncode == 1 and b"closed" in interactive.stderr
    raw = adb("-s", adb_connected, "exec-out", "echo hi; echo e >&2")
    assert (raw.returncode, raw.stdout) == (0, b"hi\ne\n")  # exec: raw, stderr merged


def test_disconnect_all_then_reconnect(loopback):
    client = _client(loopback)
    loopback.disconnect_all()
    with pytest.raises(OSError):
        client.shell("echo x", read_timeout_s=3)
    client.close()
    again = _client(loopback)
    try:
        assert again.shell("echo back", read_timeout_s=10).strip() == "back"
    finally:
        again.close()


# --- python -m device_bench.testing ----------------------------------------------------------


def test_module_entry_point_serves_until_sigterm(tmp_path, make_adb_shell_key):
    key = make_adb_shell_key()
    (tmp_path / "key.pub").write_text(key.public_key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_bench.testing", "--port", "0", "--root", str(tmp_path / "dev"),
         "--auth-key", str(tmp_path / "key.pub")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        serial = proc.stdout.readline().strip()
        host, port = serial.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        client = AdbDeviceTcp(host, int(port), default_transport_timeout_s=10)
        client.connect(rsa_keys=[key.signer()], read_timeout_s=10)
        assert client.shell("getprop ro.serialno", read_timeout_s=10).strip() == serial
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


# --- raw protocol over a live socket ---------------------------------------------------------


class _RawHost:
    """A bare ADB host speaking packets by hand, to observe what the device sends and when."""

    def __init__(self, device: LoopbackDevice) -> None:
        self.sock = socket.create_connection((device.host, device.port), timeout=5)

    def send(self, packet: pk.Packet) -> None:
        self.sock.sendall(pk.encode_packet(packet))

    def recv(self, timeout_s: float = 5.0) -> pk.Packet | None:
        """The next packet, or None if nothing arrives within `timeout_s`."""
        self.sock.settimeout(timeout_s)
        try:
            header = self._exact(pk.HEADER_SIZE)
        except socket.timeout:
            return None
        parsed = pk.decode_header(header)
        return pk.check_payload(parsed, self._exact(parsed.data_length), version=pk.VERSION_MIN)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data


def test_handshake_agrees_on_the_lower_version_and_maxdata(loopback):
    host = _RawHost(loopback)
    host.send(pk.Packet(pk.CNXN, 0x01000001, 2048, b"host::\0"))
    reply = host.recv()
    assert (reply.command, reply.arg0, reply.arg1) == (pk.CNXN, 0x01000001, 2048)
    assert reply.data == b"device::ro.product.name=loopback;ro.product.model=Loopback;ro.product.device=loopback;features=shell_v2,cmd"
    older = _RawHost(loopback)
    older.send(pk.Packet(pk.CNXN, pk.VERSION_MIN, 64 * 1024 * 1024, b"host::\0"))
    reply = older.recv()
    assert (reply.arg0, reply.arg1) == (pk.VERSION_MIN, pk.MAX_PAYLOAD)


def test_bad_checksum_drops_the_connection(loopback):
    host = _RawHost(loopback)
    raw = bytearray(pk.encode_packet(pk.Packet(pk.CNXN, 0x01000000, 4096, b"host::\0")))
    raw[16] ^= 0xFF
    host.sock.sendall(bytes(raw))
    with pytest.raises((EOFError, ConnectionResetError)):
        host.recv()


def test_one_write_in_flight_per_stream_until_okay(loopback):
    host = _RawHost(loopback)
    host.send(pk.Packet(pk.CNXN, 0x01000001, 4096, b"host::\0"))
    assert host.recv().command == pk.CNXN
    host.send(pk.Packet(pk.OPEN, 7, 0, b"shell:head -c 20000 /dev/zero\0"))
    okay = host.recv()
    assert (okay.command, okay.arg1) == (pk.OKAY, 7)
    first = host.recv()
    assert (first.command, first.arg1, len(first.data)) == (pk.WRTE, 7, 4096)
    assert host.recv(timeout_s=0.5) is None  # no second WRTE before our OKAY
    received = len(first.data)
    while True:
        host.send(pk.Packet(pk.OKAY, 7, okay.arg0))
        packet = host.recv()
        if packet.command == pk.CLSE:
            break
        assert packet.command == pk.WRTE and len(packet.data) <= 4096
        received += len(packet.data)
    assert received == 20000


def test_unknown_service_refused_with_clse(loopback):
    host = _RawHost(loopback)
    host.send(pk.Packet(pk.CNXN, 0x01000001, 4096, b"host::\0"))
    host.recv()
    host.send(pk.Packet(pk.OPEN, 3, 0, b"reverse:forward:tcp:1;tcp:2\0"))
    refusal = host.recv()
    assert (refusal.command, refusal.arg0, refusal.arg1) == (pk.CLSE, 0, 3)
