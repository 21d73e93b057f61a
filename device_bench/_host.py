"""`HostDevice`: this machine behind the `Device` API (serial "host").

Mapping: a work directory (`root`, a fresh temporary directory unless given) stands for
the device's `/data/local/tmp`. Remote paths under `/data/local/tmp` map into `root`;
other absolute paths are host paths as they are. `shell()` runs `/bin/sh -c` with
cwd=`root`, and `/data/local/tmp` in the command line is rewritten to `root` (so commands
written for a phone run unchanged; text inside scripts is not rewritten — pass such paths
as arguments). getprop answers from platform facts: model = CPU model (else host name),
abi = `platform.machine()`; Android-only properties are "".
"""

from __future__ import annotations

import errno
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from device_bench.device import (
    DEVICE_TMP,
    Device,
    DeviceInfo,
    Progress,
    RemoteStat,
    ShellResult,
    _check_prop_name,
    _remaining,
)
from mobile_opt.errors import DeviceError, InputError

HOST_SERIAL = "host"
_CHUNK = 1024 * 1024


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or None
    match = re.search(r"^(?:model name|Hardware|cpu model)\s*:\s*(.+)$", text, flags=re.M)
    return match.group(1).strip() if match else (platform.processor() or None)


def cpu_flags() -> set[str]:
    """This CPU's feature flags (x86 `flags`, ARM `Features` in /proc/cpuinfo); empty if unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    match = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, flags=re.M)
    return set(match.group(1).split()) if match else set()


def _host_battery() -> dict | None:
    supplies = Path("/sys/class/power_supply")
    batteries = sorted(supplies.glob("BAT*")) if supplies.is_dir() else []
    if not batteries:
        return None

    def read(path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None

    level = read(batteries[0] / "capacity")
    online = [p.name for p in supplies.iterdir() if read(p / "online") == "1"]
    return {
        "level": int(level) if level and level.isdigit() else None,
        "status": read(batteries[0] / "status"),
        "powered_by": online,
    }


class HostDevice(Device):
    """This machine as a device. See the module docstring for the path mapping.

    Args:
        root: directory standing for /data/local/tmp (default: a new temporary directory,
            deleted by close()). Its path may contain only letters, digits and `_.-/`
            because it is spliced into command lines.

    Raises:
        InputError: `root` has characters that would need quoting.

    Example:
        with HostDevice() as host:
            host.push(Path("m.tflite"), "/data/local/tmp/m.tflite")
            host.shell(["ls", "/data/local/tmp"]).check("list")
    """

    transport = "host"

    def __init__(self, root: Path | None = None):
        self.serial = HOST_SERIAL
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="mobile-opt-host-")) if root is None else Path(root)
        if not re.fullmatch(r"[A-Za-z0-9_./\-]+", str(self.root.resolve())):
            raise InputError(
                "the host work directory must have a plain path (letters, digits, '_.-/'). "
                f"Received: root={str(root)!r}"
            )
        self.root = self.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, remote: str) -> Path:
        """The host path that stands for the device path `remote`."""
        if remote == DEVICE_TMP or remote.startswith(DEVICE_TMP + "/"):
            return self.root / remote[len(DEVICE_TMP):].lstrip("/")
        return Path(remote)

    def _run(self, command: str, timeout_s: float, step: str) -> ShellResult:
        command = command.replace(DEVICE_TMP, str(self.root))
        env = dict(os.environ, HOME=str(self.root), TMPDIR=str(self.root))
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], cwd=self.root, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise self._timeout_error(step, timeout_s) from exc
        return ShellResult(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode,
                           out.decode(errors="replace"), err.decode(errors="replace"))

    def stat(self, remote: str) -> RemoteStat | None:
        try:
            st = os.stat(self.local_path(remote))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DeviceError(f"host: cannot stat {remote}: {exc}", serial=self.serial,
                              step=f"stat {remote}") from exc
        return RemoteStat(mode=st.st_mode, size=st.st_size, mtime=int(st.st_mtime))

    def _copy(self, src, dst, total: int, deadline: float, progress: Progress | None,
              step: str) -> None:
        timeout_s = _remaining(deadline)
        done = 0
        while chunk := src.read(_CHUNK):
            if _remaining(deadline) <= 0:
                raise self._timeout_error(step, timeout_s)
            dst.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)

    def _push_file(self, local: Path, remote: str, size: int, deadline: float,
                   progress: Progress | None, step: str) -> None:
        target = self.local_path(remote)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)  # as adbd does on SEND
            with open(local, "rb") as src, open(target, "wb") as dst:
                self._copy(src, dst, size, deadline, progress, step)
            shutil.copymode(local, target)
        except OSError as exc:
            target.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise self._sync_failure(step, "No space left on device") from exc
            raise DeviceError(f"host: '{step}' failed: {exc}", serial=self.serial, step=step) from exc

    def _pull_file(self, remote: str, sink, deadline: float, progress: Progress | None,
                   total: int, step: str) -> None:
        try:
            with open(self.local_path(remote), "rb") as src:
                self._copy(src, sink, total, deadline, progress, step)
        except OSError as exc:
            raise DeviceError(f"host: '{step}' failed: {exc}", serial=self.serial, step=step) from exc

    def _all_props(self) -> dict[str, str]:
        return {
            "ro.product.model": _cpu_model() or platform.node(),
            "ro.product.manufacturer": platform.system(),
            "ro.product.device": platform.node(),
            "ro.product.cpu.abi": platform.machine(),
            "ro.serialno": HOST_SERIAL,
        }

    def getprop(self, name: str | None = None) -> str | dict[str, str]:
        """Platform facts in getprop form; unknown (Android-only) names give ""."""
        props = self._all_props()
        if name is None:
            return props
        _check_prop_name(name)
        return props.get(name, "")

    def info(self) -> DeviceInfo:
        props = self._all_props()
        return DeviceInfo(
            serial=self.serial, transport=self.transport, state="device",
            model=props["ro.product.model"], abi=props["ro.product.cpu.abi"],
            android_version=None, sdk=None, battery=_host_battery(),
        )

    def close(self) -> None:
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
