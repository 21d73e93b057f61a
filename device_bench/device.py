"""One `Device` API over three transports: an adb server, a direct adb-shell link, the host.

`Device` is the contract the benchmark builds on: `shell` (exit code always, stderr separate
where the transport allows), `push`/`pull` (size-checked, never half-written), `stat`,
`getprop`, `remove`, `info`. The three implementations live in `_adb_server.py`,
`_direct.py` and `_host.py`; `connect()` (in `connect.py`) picks one from a serial.

Shared here, above the transports: argument quoting, the exit-code marker for shells that
have none (the legacy `shell:` service), getprop parsing, the battery probe and the size
check after a push.
"""

from __future__ import annotations

import abc
import logging
import os
import re
import shlex
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mobile_opt._files import file_mode
from mobile_opt.errors import (
    DeviceDisconnectedError,
    DeviceError,
    DeviceStorageFullError,
    DeviceTimeoutError,
    InputError,
)

__all__ = ["Device", "DeviceInfo", "RemoteStat", "ShellResult", "quote"]

logger = logging.getLogger(__name__)

# What DeviceUnauthorizedError tells the user, whichever transport met the refusal.
UNAUTHORIZED_HINT = "accept the 'Allow USB debugging?' prompt on the phone, then retry"

Progress = Callable[[int, int], None]

# Where every backend keeps pushed files: the one world-writable place on a stock phone.
DEVICE_TMP = "/data/local/tmp"


def quote(arg: str) -> str:
    """Quotes one argument for a POSIX sh (Android's mksh/toybox sh included).

    Args:
        arg: any string; spaces, quotes, `;`, `$`, backticks and newlines survive.

    Returns:
        The argument as a single sh word.

    Example:
        >>> quote("a b'c")
        "'a b'\\"'\\"'c'"
    """
    return shlex.quote(arg)


def _command_text(command: str | Sequence[str]) -> str:
    if isinstance(command, str):
        if not command.strip():
            raise InputError(
                "shell() needs a command; an empty one would open an interactive shell. "
                f"Received: command={command!r}"
            )
        return command
    args = list(command)
    if not args or not all(isinstance(a, str) for a in args):
        raise InputError(
            "shell() takes a string or a non-empty sequence of strings (quoted one by one). "
            f"Received: command={command!r}"
        )
    return " ".join(quote(a) for a in args)


def _step(command: str) -> str:
    short = command if len(command) <= 80 else command[:77] + "..."
    return f"shell {short}"


@dataclass(frozen=True)
class ShellResult:
    """What a remote command did.

    Attributes:
        exit_code: the command's exit status (also on transports without one: see `Device.shell`).
        stdout: standard output, decoded as UTF-8 (undecodable bytes replaced).
        stderr: standard error; "" on transports that merge it into stdout.
    """

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self, step: str, *, serial: str | None = None) -> ShellResult:
        """Returns self when the command succeeded, else raises.

        Args:
            step: what the command was for, named in the error ("start benchmark").
            serial: the device, named in the error (default None).

        Raises:
            DeviceError: exit code is not 0; the message carries the tail of stderr/stdout.
        """
        if self.exit_code == 0:
            return self
        tail = (self.stderr.strip() or self.stdout.strip())[-800:]
        where = f" on {serial}" if serial else ""
        raise DeviceError(
            f"{step} failed{where} with exit code {self.exit_code}: {tail or '(no output)'}",
            serial=serial,
            step=step,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RemoteStat:
    """`stat` of a remote path: st_mode bits, size in bytes, mtime in seconds since the epoch."""

    mode: int
    size: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return (self.mode & 0o170000) == 0o040000

    @property
    def is_file(self) -> bool:
        return (self.mode & 0o170000) == 0o100000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeviceInfo:
    """One reachable device, as `list_devices()` and `Device.info()` describe it.

    Attributes:
        serial: the serial to pass to `connect()` ("host" for this machine).
        transport: "adb-server", "direct" or "host".
        state: "device" when usable; else the adb state ("offline", "unauthorized", ...).
        model, abi, android_version, sdk: from getprop; None when not known (or not online).
        battery: {"level": int|None, "status": str|None, "powered_by": list[str]|None},
            or None when the device has no readable battery.
        rails: where the power-rail counters (ODPM) are read — IIO directories or ["dumpsys"] —,
            [] when the phone has none; None when not looked for (`list_devices` looks).
    """

    serial: str
    transport: str
    state: str
    model: str | None = None
    abi: str | None = None
    android_version: str | None = None
    sdk: int | None = None
    battery: dict[str, Any] | None = None
    rails: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_getprop(text: str) -> dict[str, str]:
    """Parses plain `getprop` output (`[name]: [value]` lines; values may span lines)."""
    props: dict[str, str] = {}
    for match in re.finditer(r"^\[([^\]]+)\]: \[(.*?)\]$", text, flags=re.M | re.S):
        props[match.group(1)] = match.group(2)
    return props


# Reads the fuel gauge from sysfs in one round trip; absent files print empty values.
# Where sysfs is not readable (some vendors restrict it) `dumpsys battery` answers instead.
# Paths are spelled out (not built from variables) so that sandboxes which rewrite
# device paths in command lines (the loopback device) see them.
_BATTERY_PROBE = (
    "for f in capacity status; do "
    "printf '%s=%s\\n' $f \"$(cat /sys/class/power_supply/battery/$f 2>/dev/null)\"; done; "
    "for s in ac usb wireless; do "
    "printf 'online_%s=%s\\n' $s \"$(cat /sys/class/power_supply/$s/online 2>/dev/null)\"; done; "
    "[ -n \"$(cat /sys/class/power_supply/battery/capacity 2>/dev/null)\" ] || "
    "dumpsys battery 2>/dev/null"
)
# BatteryManager.BATTERY_STATUS_* as `dumpsys battery` prints them.
_DUMPSYS_STATUS = {"1": "Unknown", "2": "Charging", "3": "Discharging", "4": "Not charging",
                   "5": "Full"}


def _parse_battery(text: str) -> dict[str, Any] | None:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    level_text = values.get("capacity", "").strip()
    status = values.get("status", "").strip() or None
    if not level_text and status is None:
        return _parse_dumpsys_battery(text)
    online = [s for s in ("ac", "usb", "wireless") if values.get(f"online_{s}", "").strip() == "1"]
    known = any(values.get(f"online_{s}", "").strip() for s in ("ac", "usb", "wireless"))
    return {
        "level": int(level_text) if level_text.isdigit() else None,
        "status": status,
        "powered_by": online if known else None,
    }


def _parse_dumpsys_battery(text: str) -> dict[str, Any] | None:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields[key.lower()] = value.strip()
    if "level" not in fields:
        return None
    powered = [name for name in ("ac", "usb", "wireless") if fields.get(f"{name} powered") == "true"]
    return {
        "level": _int_or_none(fields.get("level")),
        "status": _DUMPSYS_STATUS.get(fields.get("status", ""), fields.get("status")),
        "powered_by": powered,
    }


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


class _ExitMarker:
    """Gives an exit code to shells that have none (adb's legacy `shell:` service).

    The command runs in a subshell (so its own `exit N` ends only the subshell), then the
    subshell's status is printed after a random token. The token is assembled by printf, so
    the marker never appears literally in the command line.
    """

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self._tail = re.compile(rb"\n__MOPT_EXIT_" + self.token.encode() + rb"__(\d+)\n?$")

    def wrap(self, command: str) -> str:
        return f"({command}\n); printf '\\n__MOPT_EXIT_%s__%d\\n' {self.token} $?"

    def split(self, output: bytes) -> tuple[int, bytes] | None:
        match = self._tail.search(output)
        if match is None:
            return None
        return int(match.group(1)), output[: match.start()]


def _storage_full(message: str) -> bool:
    return "no space left" in message.lower() or "enospc" in message.lower()


class Device(abc.ABC):
    """A device that runs commands and stores files. Use as a context manager.

    Attributes:
        serial: the serial that `connect()` was given (or "host").
        transport: "adb-server", "direct" or "host".

    Example:
        with connect("emulator-5554") as device:
            device.push(Path("model.tflite"), "/data/local/tmp/model.tflite")
            print(device.shell(["ls", "-l", "/data/local/tmp"]).check("list").stdout)
    """

    serial: str
    transport: str

    # --- what each transport implements -------------------------------------------------
    @abc.abstractmethod
    def _run(self, command: str, timeout_s: float, step: str) -> ShellResult:
        """Runs `command` (already a sh command line); raises DeviceTimeoutError on timeout."""

    @abc.abstractmethod
    def _push_file(self, local: Path, remote: str, size: int, deadline: float,
                   progress: Progress | None, step: str) -> None:
        """Sends `local` to `remote`; DeviceStorageFullError / DeviceDisconnectedError."""

    @abc.abstractmethod
    def _pull_file(self, remote: str, sink, deadline: float, progress: Progress | None,
                   total: int, step: str) -> None:
        """Writes the content of `remote` into the binary file object `sink`."""

    @abc.abstractmethod
    def stat(self, remote: str) -> RemoteStat | None:
        """Returns the remote path's mode, size and mtime, or None when it does not exist.

        Raises:
            DeviceDisconnectedError, DeviceTimeoutError: the link failed.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the connection (idempotent)."""

    # --- the shared API ---------------------------------------------------------------------
    def shell(self, command: str | Sequence[str], *, timeout_s: float = 60.0) -> ShellResult:
        """Runs a command on the device and returns its exit code and output.

        A sequence is quoted argument by argument (file names with spaces, quotes, `;`, `$`,
        backticks or newlines are safe); a string is passed to the device's sh as-is.
        The exit code is always real: on the legacy adb shell (direct adb-shell link, or a
        device without `shell_v2`) it is carried by a marker line that is parsed off. Where
        the transport has no separate stderr (those same cases) stderr is merged into
        `stdout` and `stderr` is "".

        Args:
            command: a sh command line, or an argument list.
            timeout_s: seconds before the command is stopped on the device (default 60).

        Returns:
            ShellResult(exit_code, stdout, stderr).

        Raises:
            InputError: empty command or timeout_s <= 0.
            DeviceTimeoutError: it ran longer than timeout_s (the remote command is stopped).
            DeviceDisconnectedError: the link broke while it ran.

        Example:
            device.shell(["cat", "/data/local/tmp/a b.txt"], timeout_s=5).check("read")
        """
        _check_timeout("timeout_s", timeout_s)
        text = _command_text(command)
        return self._run(text, float(timeout_s), _step(text))

    def push(self, local: Path, remote: str, *, timeout_s: float = 300.0,
             progress: Progress | None = None) -> None:
        """Copies a local file to the device and checks the size that arrived.

        Args:
            local: a regular file.
            remote: the full destination path on the device (not a directory); missing
                parent directories are created, as adbd does.
            timeout_s: seconds for the whole transfer (default 300).
            progress: called as progress(bytes_done, bytes_total) while sending (default None).

        Raises:
            InputError: `local` is not a readable file, `remote` is empty or relative.
            DeviceStorageFullError: the device has no space left.
            DeviceDisconnectedError: the link broke (step "push <remote>").
            DeviceTimeoutError: not done within timeout_s.
            DeviceError: the size on the device differs from the local size afterwards.

        Example:
            device.push(Path("m.tflite"), "/data/local/tmp/m.tflite", progress=print)
        """
        local = Path(local)
        _check_timeout("timeout_s", timeout_s)
        _check_remote(remote)
        if not local.is_file():
            raise InputError(
                f"push() needs an existing local file. Received: local={str(local)!r}. "
                "Check the path (directories are not pushed)."
            )
        size = local.stat().st_size
        step = f"push {remote}"
        start = time.monotonic()
        deadline = start + timeout_s
        self._push_file(local, remote, size, deadline, progress, step)
        remote_stat = self.stat(remote)
        if remote_stat is None or remote_stat.size != size:
            got = "nothing" if remote_stat is None else f"{remote_stat.size} bytes"
            raise DeviceError(
                f"push to {self.serial} incomplete: {remote} holds {got}, expected {size} "
                "bytes. Check free space on the device and retry.",
                serial=self.serial,
                step=step,
            )
        elapsed = time.monotonic() - start
        logger.info("pushed %s -> %s:%s (%d bytes, %.2f s)", local, self.serial, remote, size, elapsed)

    def pull(self, remote: str, local: Path, *, timeout_s: float = 300.0,
             progress: Progress | None = None) -> None:
        """Copies a remote file to `local`; `local` appears only once the copy is complete.

        The data goes to a temporary file beside `local`, renamed over it at the end, so an
        interrupted pull leaves no half-written file.

        Args:
            remote: a file on the device.
            local: the local destination file (its directory must exist).
            timeout_s: seconds for the whole transfer (default 300).
            progress: called as progress(bytes_done, bytes_total) (default None).

        Raises:
            InputError: `remote` empty/relative or local directory missing.
            DeviceError: `remote` does not exist or is not a file.
            DeviceDisconnectedError, DeviceTimeoutError: the transfer failed.

        Example:
            device.pull("/data/local/tmp/result.json", Path("result.json"))
        """
        local = Path(local)
        _check_timeout("timeout_s", timeout_s)
        _check_remote(remote)
        if not local.parent.is_dir() or local.is_dir():
            raise InputError(
                "pull() needs a local file path in an existing directory. "
                f"Received: local={str(local)!r}."
            )
        step = f"pull {remote}"
        deadline = time.monotonic() + timeout_s
        remote_stat = self.stat(remote)
        if remote_stat is None or not remote_stat.is_file:
            what = "does not exist" if remote_stat is None else "is not a regular file"
            raise DeviceError(
                f"cannot pull {remote} from {self.serial}: it {what}.",
                serial=self.serial,
                step=step,
            )
        fd, tmp_name = tempfile.mkstemp(prefix=f".{local.name}.", suffix=".part", dir=local.parent)
        try:
            os.fchmod(fd, file_mode())
            with os.fdopen(fd, "wb") as sink:
                self._pull_file(remote, sink, deadline, progress, remote_stat.size, step)
            got = os.path.getsize(tmp_name)
            if got != remote_stat.size:
                raise DeviceError(
                    f"pull of {remote} from {self.serial} incomplete: {got} of "
                    f"{remote_stat.size} bytes. Retry.",
                    serial=self.serial,
                    step=step,
                )
            os.replace(tmp_name, local)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def getprop(self, name: str | None = None) -> str | dict[str, str]:
        """Reads one system property ("" when unset), or all of them as a dict.

        Args:
            name: property name such as "ro.product.model"; None for all (default None).

        Raises:
            DeviceError: getprop failed on the device.
        """
        if name is not None:
            _check_prop_name(name)
            return self.shell(["getprop", name], timeout_s=15).check(
                f"getprop {name}", serial=self.serial).stdout.strip()
        return self._all_props()

    def _all_props(self) -> dict[str, str]:
        out = self.shell("getprop", timeout_s=15).check("getprop", serial=self.serial).stdout
        return parse_getprop(out)

    def remove(self, remote: str, *, recursive: bool = False) -> None:
        """Deletes a remote file (or a directory tree with recursive=True); missing is fine.

        Raises:
            DeviceError: the device refused (permissions, a directory without recursive).
        """
        _check_remote(remote)
        args = ["rm", "-rf" if recursive else "-f", "--", remote]
        self.shell(args, timeout_s=60).check(f"remove {remote}", serial=self.serial)

    def info(self) -> DeviceInfo:
        """Describes the device: model, ABI, Android version, SDK level, battery.

        Raises:
            DeviceError: the device stopped answering.
        """
        props = self._all_props()
        battery = self.shell(_BATTERY_PROBE, timeout_s=15)
        return DeviceInfo(
            serial=self.serial,
            transport=self.transport,
            state="device",
            model=props.get("ro.product.model") or None,
            abi=props.get("ro.product.cpu.abi") or None,
            android_version=props.get("ro.build.version.release") or None,
            sdk=_int_or_none(props.get("ro.build.version.sdk")),
            battery=_parse_battery(battery.stdout) if battery.ok else None,
        )

    # --- helpers for the transports -----------------------------------------------------------
    def _timeout_error(self, step: str, timeout_s: float) -> DeviceTimeoutError:
        return DeviceTimeoutError(
            f"{self.serial}: '{step}' did not finish within {timeout_s:g} s; it was stopped. "
            "Raise the timeout if the device is just slow.",
            serial=self.serial,
            step=step,
        )

    def _disconnected_error(self, step: str, cause: object) -> DeviceDisconnectedError:
        return DeviceDisconnectedError(
            f"{self.serial}: connection lost during '{step}' ({cause}). Check the cable or "
            "network and that the device is still listed by `mobile-opt devices`, then retry.",
            serial=self.serial,
            step=step,
        )

    def _sync_failure(self, step: str, message: str) -> DeviceError:
        if _storage_full(message):
            return DeviceStorageFullError(
                f"{self.serial}: no space left on the device during '{step}' ({message}). "
                f"Free space (e.g. remove old files in {DEVICE_TMP}) and retry.",
                serial=self.serial,
                step=step,
            )
        return DeviceError(f"{self.serial}: '{step}' failed: {message}", serial=self.serial, step=step)

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(serial={self.serial!r})"


def _check_timeout(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or value <= 0:
        raise InputError(f"{name} must be a positive number of seconds. Received: {name}={value!r}")


def _check_prop_name(name: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-:@]+", name):
        raise InputError(
            "property names look like 'ro.product.model' (letters, digits, '._-:@'). "
            f"Received: name={name!r}"
        )


def _check_remote(remote: str) -> None:
    if not isinstance(remote, str) or not remote.startswith("/") or "\0" in remote:
        raise InputError(
            "remote paths are absolute device paths such as '/data/local/tmp/model.tflite'. "
            f"Received: remote={remote!r}"
        )


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()
