"""`LoopbackDevice`: an Android device played by this host, reachable over the real ADB protocol."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable

from mobile_opt.errors import InputError

from device_bench.testing import _auth, _shell, _sync
from device_bench.testing._battery import BatteryProfile, BatterySimulator, BatteryTruth
from device_bench.testing._connection import Connection, ConnectionConfig, Stream
from device_bench.testing._rails_sim import RailsSimulator
from device_bench.testing._sandbox import DEFAULT_PROPS, Sandbox
from device_bench.testing.rails import RailsProfile

logger = logging.getLogger(__name__)

USER_KEYS = "user"  # auth_keys default: the keys in ~/.android/adbkey.pub, as the adb client has them
FEATURES = ("shell_v2", "cmd")  # only what is implemented: no stat_v2/ls_v2/sendrecv_v2
_RESERVED_PORTS = range(5555, 5586)  # adb servers probe these for emulators
_ANDROID_SHELL = "/bin/mksh"  # Android's /system/bin/sh is mksh


class LoopbackDevice:
    """A device-side ADB daemon on 127.0.0.1 whose filesystem is a sandbox directory.

    A TEST FIXTURE THAT RUNS A REAL SHELL: `adb shell` commands run on this host (mksh or /bin/sh)
    as the user who started it, so whoever connects (and is authorized) can do what that user
    can. It listens on 127.0.0.1 only; never expose the port (no forwarding, no proxy). By
    default it authorizes only the user's own ADB key (`~/.android/adbkey.pub`).

    Real `adb` (`adb connect 127.0.0.1:<port>`) and `adb-shell` (`AdbDeviceTcp`) talk to it.
    Commands run on this host with `shell -c` (a hung-up stream SIGHUPs the shell only, as
    adbd does); device paths under `/data`, `/sdcard`,
    `/storage`, `/sys/bus/iio`, `/sys/class/power_supply`, `/sys/class/thermal`, `/system` and `/proc/loopback`
    map into `root`:
    in sync requests, and in shell command lines by textual rewriting. Rewriting does not reach
    inside script files, so scripts must receive such paths as arguments. Sync requests whose
    real path (symlinks resolved) leaves `root` are refused.

    Args:
        root: the sandbox directory that plays the device's "/" (created if missing).
        port: TCP port on 127.0.0.1; 0 (default) picks a free one. 5555-5585 are refused.
        props: system properties added to / overriding the defaults (default None).
        auth_keys: the Android-format public keys (`adbkey.pub` contents) accepted; any other
            key stays `unauthorized`. Default: the user's `~/.android/adbkey.pub` (the key the
            adb client signs with); when that file is missing no key is accepted. None: no auth
            at all (`ro.adb.secure=0`), for tests that exercise the protocol, not the auth.
        battery: the simulated fuel gauge; None: no battery files (default BatteryProfile()).
        rails: the ODPM power rails (`device_bench.testing.rails`); None (default): a phone
            without ODPM (no /sys/bus/iio, no dumpsys).
        free_space_bytes: bytes that files under /data and /storage (/sdcard) may grow by; beyond
            it SEND fails with "No space left on device", and a generated `df` reports it
            (default None: unlimited, no `df` of its own).
        shell: the shell commands run under (default None: "/bin/mksh", Android's shell, when
            installed, else "/bin/sh"). mksh, like Android's, execs a lone simple command, so a
            hang-up reaches the command itself; dash forks it and only the shell is hung up.

    Raises:
        InputError: a reserved port, an unparsable key, a root path with shell metacharacters,
            or a shell that is not an executable file.

    Example:
        with LoopbackDevice(tmp_path) as device:
            subprocess.run(["adb", "-P", str(server_port), "connect", device.serial])
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int = 0,
        props: dict[str, str] | None = None,
        auth_keys: list[str] | None | str = USER_KEYS,
        battery: BatteryProfile | None = BatteryProfile(),
        rails: RailsProfile | None = None,
        free_space_bytes: int | None = None,
        shell: str | None = None,
    ) -> None:
        if port in _RESERVED_PORTS or not (0 <= port < 65536):
            raise InputError(
                "LoopbackDevice port must be 0 (ephemeral) or a free port outside 5555-5585, which adb "
                f"servers probe for emulators. Received: port={port}"
            )
        if free_space_bytes is not None and free_space_bytes < 0:
            raise InputError(f"free_space_bytes must be >= 0 or None. Received: free_space_bytes={free_space_bytes}")
        if shell is None:
            shell = _ANDROID_SHELL if os.access(_ANDROID_SHELL, os.X_OK) else "/bin/sh"
        if not (os.path.isfile(shell) and os.access(shell, os.X_OK)):
            raise InputError(
                f"LoopbackDevice shell must be an executable file. Received: shell={shell!r}. "
                "Install it (e.g. apt-get install mksh) or use the default /bin/sh."
            )
        keys = None
        if auth_keys == USER_KEYS:
            auth_keys = _auth.user_public_keys()
        if auth_keys is not None:
            try:
                keys = tuple(_auth.parse_android_public_key(k) for k in auth_keys)
            except ValueError as exc:
                raise InputError(f"auth_keys must be Android ADB public keys (adbkey.pub). {exc}") from exc
        self._sandbox = Sandbox(Path(root))
        self.root = self._sandbox.root
        self.host = "127.0.0.1"
        self.port = port
        self._extra_props = dict(props or {})
        self._keys = keys
        self._battery_profile = battery
        self._rails_profile = rails
        self._rails: RailsSimulator | None = None
        self._free_space_bytes = free_space_bytes
        self._shell_path = shell
        self._procs: list[subprocess.Popen] = []
        self._usage_baseline = 0
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._bytes_left: int | None = None
        self._silent = False
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._battery: BatterySimulator | None = None
        self._stopping = threading.Event()

    @property
    def serial(self) -> str:
        """`"127.0.0.1:<port>"`, the name adb lists the device under."""
        return f"{self.host}:{self.port}"

    @property
    def props(self) -> dict[str, str]:
        """The system properties `getprop` answers."""
        props = dict(DEFAULT_PROPS)
        props["ro.serialno"] = self.serial
        props["ro.adb.secure"] = "0" if self._keys is None else "1"
        props.update(self._extra_props)
        return props

    def start(self) -> "LoopbackDevice":
        """Binds the port, creates the sandbox and starts serving; returns self.

        Raises:
            InputError: the port is taken.
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as exc:
            listener.close()
            raise InputError(f"Cannot listen on {self.host}:{self.port}: {exc.strerror}. Received: port={self.port}") from exc
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._sandbox.create(self.props)
        self._usage_baseline = self._sandbox.usage_bytes()
        if self._free_space_bytes is not None:
            self._sandbox.write_df(self._free_space_bytes, self._usage_baseline)
        if self._battery_profile is not None:
            self._battery = BatterySimulator(self.root, self._battery_profile)
            self._battery.start()
        if self._rails_profile is not None:
            self._rails = RailsSimulator(self.root, self._rails_profile)
            self._rails.start()
        self._config = ConnectionConfig(banner=self._banner(), auth_keys=self._keys)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="loopback-accept", daemon=True)
        self._accept_thread.start()
        logger.info("Loopback device %s serving %s (shell %s)", self.serial, self.root, self._shell_path)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops serving: closes the port and every connection, kills running commands."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout_s)
        with self._lock:
            connections = list(self._connections)
        self.disconnect_all()
        for connection in connections:
            connection.join(timeout_s)
        self._power_off()
        if self._battery is not None:
            self._battery.stop(timeout_s)
        if self._rails is not None:
            self._rails.stop(timeout_s)

    def __enter__(self) -> "LoopbackDevice":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def device_path(self, device_path: str) -> Path:
        """The host path of a device path: "/data/local/tmp/x" -> root/"data/local/tmp/x"."""
        return self._sandbox.device_path(device_path)

    def disconnect_all(self) -> None:
        """Drops every host connection now (the device vanishes; new connections still work)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.drop()

    def disconnect_after_bytes(self, n: int) -> None:
        """Drops the transport once `n` more WRTE payload bytes crossed (either direction)."""
        if n < 0:
            raise InputError(f"disconnect_after_bytes needs n >= 0. Received: n={n}")
        with self._lock:
            self._bytes_left = n

    def go_silent(self) -> None:
        """From now on accept TCP but answer nothing (adb shows "offline"; adb-shell times out)."""
        self._silent = True

    def battery_truth(self) -> BatteryTruth:
        """The ground-truth ledger of the simulated battery.

        Raises:
            InputError: the device was started with `battery=None`, or is not started.
        """
        if self._battery is None:
            raise InputError("This loopback device has no battery. Received: battery=None (or not started)")
        return self._battery.truth()

    def _count_payload(self, n: int) -> bool:
        with self._lock:
            if self._bytes_left is None:
                return False
            self._bytes_left -= n
            if self._bytes_left > 0:
                return False
            self._bytes_left = None
        logger.info("Loopback device %s: byte budget spent, dropping the transport", self.serial)
        self.disconnect_all()
        return True

    def _service(self, name: str) -> Callable[[Stream], None] | None:
        if name == "sync:":
            return lambda stream: _sync.serve_sync(stream, sandbox=self._sandbox, space_left=self._space_left)
        service, sep, command = name.partition(":")
        if not sep:
            return None
        options = service.split(",")
        if options[0] == "exec" and len(options) == 1 and command:
            return self._shell(command, v2=False)
        if options[0] != "shell" or not command:
            return None  # no interactive shell: nothing here plays a terminal
        return self._shell(command, v2="v2" in options[1:])

    def _shell(self, command: str, *, v2: bool) -> Callable[[Stream], None]:
        return lambda stream: _shell.run_command(
            stream, command, sandbox=self._sandbox, serial=self.serial, v2=v2, shell=self._shell_path,
            started=self._track,
        )

    def _track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs = [p for p in self._procs if p.poll() is None or _group_alive(p.pid)]
            self._procs.append(proc)

    def _power_off(self) -> None:
        # Each command is its own session and process group: whatever survived a hang-up
        # (children that outlived their shell) goes down with the device.
        with self._lock:
            procs, self._procs = self._procs, []
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.warning("Loopback device %s: command pid %d did not die on SIGKILL", self.serial, proc.pid)

    def _banner(self) -> bytes:
        props = self.props
        fields = "".join(f"{k}={props[k]};" for k in ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{fields}features={','.join(FEATURES)}".encode()

    def _space_left(self) -> int | None:
        if self._free_space_bytes is None:
            return None
        return max(0, self._free_space_bytes - (self._sandbox.usage_bytes() - self._usage_baseline))

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(sock, self._config, _Hooks(self))
            with self._lock:
                self._connections = [c for c in self._connections if not c.dropped]
                self._connections.append(connection)
            connection.start()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Hooks:
    """The device as its connections see it (keeps these hooks off the public API)."""

    def __init__(self, device: LoopbackDevice) -> None:
        self._device = device

    def count_payload(self, n: int) -> bool:
        return self._device._count_payload(n)

    def silent(self) -> bool:
        return self._device._silent

    def service(self, name: str) -> Callable[[Stream], None] | None:
        return self._device._service(name)
