"""Shared fixtures for device_bench tests: the loopback device, a private real adb server, keys.

- `loopback`: a started `LoopbackDevice` in tmp_path, without auth (`auth_keys=None`: these
  tests exercise the protocol); parametrise with `indirect=True` and a dict of `LoopbackDevice`
  keyword arguments (`auth_keys`, `battery`, `free_space_bytes`, ...).
- `adb_server`: the port of a private `adb -P PORT nodaemon server` (own HOME, killed at teardown).
- `adb`: the real adb client bound to that server (`adb(...)`, `adb.popen(...)`,
  `adb.wait_for_state(serial, state)`).
- `adb_connected`: `adb connect`s the loopback device and waits until it is listed `device`.
- `adb_server_public_key`: the server's own `adbkey.pub` text (for auth tests with real adb).
- `make_adb_shell_key`: makes an adb-shell RSA key pair in tmp_path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from device_bench import connect
from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import install

ADB = Path("/usr/bin/adb")
ADB_MISSING_REASON = "real adb client not installed at /usr/bin/adb (Debian: apt-get install adb)"
requires_adb = pytest.mark.skipif(not ADB.exists(), reason=ADB_MISSING_REASON)
_ADB_START_TIMEOUT_S = 15.0
_CONNECT_TIMEOUT_S = 20.0


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 outside adb's emulator range 5555-5585."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not 5555 <= port <= 5585:
            return port


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A benchmark-binary cache holding the loopback device's fake `benchmark_model`."""
    install(tmp_path / "cache", abi="arm64-v8a")
    return tmp_path / "cache"


@pytest.fixture
def direct(loopback: LoopbackDevice, tmp_path: Path):
    """The `loopback` device opened over the direct (adb-shell) transport."""
    with connect(f"direct:{loopback.serial}", key_path=tmp_path / "adbkey") as device:
        yield device


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for the whole test.

    The socket is bound but never listen()s, and stays bound until teardown: a connect gets
    ECONNREFUSED, and no other process can start listening there meanwhile.
    """
    held = []
    try:
        while not held or 5555 <= held[-1].getsockname()[1] <= 5585:  # adb's emulator range
            held.append(socket.socket())
            held[-1].bind(("127.0.0.1", 0))
        yield held[-1].getsockname()[1]
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def loopback(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LoopbackDevice]:
    kwargs = {"auth_keys": None, **(getattr(request, "param", None) or {})}
    with LoopbackDevice(tmp_path / "device", **kwargs) as device:
        yield device


@dataclass(frozen=True)
class AdbServer:
    port: int
    home: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout_s: float = 60.0, stdin_bytes: bytes | None = None) -> subprocess.CompletedProcess:
        """Runs `adb -P <port> <args>` to completion; stdin is empty unless `stdin_bytes` is given."""
        return subprocess.run(
            [str(ADB), "-P", str(self.port), *args],
            input=stdin_bytes if stdin_bytes is not None else b"",
            capture_output=True,
            env=self.env,
            timeout=timeout_s,
        )

    def wait_for_state(self, serial: str, state: str, timeout_s: float = 30.0) -> str:
        """Polls `adb devices` until `serial` is listed in `state`; returns that listing."""
        deadline = time.monotonic() + timeout_s
        while True:
            listing = self("devices", timeout_s=10).stdout.decode()
            if f"{serial}\t{state}" in listing:
                return listing
            if time.monotonic() > deadline:
                pytest.fail(f"{serial} not listed as {state!r} within {timeout_s} s. Last listing:\n{listing}")
            time.sleep(0.1)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        """Starts `adb -P <port> <args>` in the background (stdin defaults to /dev/null)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen([str(ADB), "-P", str(self.port), *args], env=self.env, **kwargs)


def _adb_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
    env["HOME"] = str(home)  # the server's key lands in <home>/.android, never the user's
    return env


@pytest.fixture
def _adb_server(tmp_path: Path) -> Iterator[AdbServer]:
    if not ADB.exists():
        pytest.skip(ADB_MISSING_REASON)
    home = tmp_path / "adb-home"
    home.mkdir()
    server = AdbServer(free_port(), home, _adb_env(home))
    log = open(tmp_path / "adb-server.log", "wb")
    proc = subprocess.Popen(
        [str(ADB), "-P", str(server.port), "nodaemon", "server"],
        env=server.env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + _ADB_START_TIMEOUT_S
        # Probe the socket, not `adb devices`: that would fork a daemon if ours is not up yet.
        while True:
            if proc.poll() is not None:
                pytest.fail(f"adb server exited with {proc.returncode}; see {tmp_path / 'adb-server.log'}")
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"adb server did not listen on {server.port} within {_ADB_START_TIMEOUT_S} s")
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture
def adb_server(_adb_server: AdbServer) -> int:
    """The port of a private real adb server (tests pass `-P <port>`; nothing global is set)."""
    return _adb_server.port


@pytest.fixture
def adb(_adb_server: AdbServer) -> AdbServer:
    """The real client bound to `adb_server`: `adb(*args, timeout_s=60, stdin_bytes=None)` runs
    one command; `adb.popen(*args, **popen_kwargs)` starts one in the background."""
    return _adb_server


@pytest.fixture
def adb_server_public_key(_adb_server: AdbServer) -> str:
    """The Android-format public key the private adb server signs with."""
    path = _adb_server.home / ".android" / "adbkey.pub"
    deadline = time.monotonic() + _ADB_START_TIMEOUT_S
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            pytest.fail(f"adb server wrote no key at {path} within {_ADB_START_TIMEOUT_S} s")
        time.sleep(0.05)
    return path.read_text()


@pytest.fixture
def adb_connected(loopback: LoopbackDevice, adb_server: int, adb: AdbServer) -> str:
    """`adb connect`s the loopback device; returns its serial once listed as `device`."""
    result = adb("connect", loopback.serial, timeout_s=30)
    assert b"connected to" in result.stdout, result
    adb.wait_for_state(loopback.serial, "device", _CONNECT_TIMEOUT_S)
    return loopback.serial


@dataclass(frozen=True)
class AdbShellKey:
    private_path: Path
    public_key: str  # Android format, as in adbkey.pub

    def signer(self):
        from adb_shell.auth.sign_pythonrsa import PythonRSASigner

        return PythonRSASigner.FromRSAKeyPath(str(self.private_path))


@pytest.fixture
def make_adb_shell_key(tmp_path: Path) -> Callable[[str], AdbShellKey]:
    """`make_adb_shell_key(name)` generates an adb-shell key pair under tmp_path/keys."""
    from adb_shell.auth.keygen import keygen

    def make(name: str = "adbkey") -> AdbShellKey:
        path = tmp_path / "keys" / name
        path.parent.mkdir(exist_ok=True)
        keygen(str(path))
        return AdbShellKey(path, Path(f"{path}.pub").read_text())

    return make
