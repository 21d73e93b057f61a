"""The sandbox directory that plays the loopback device's "/".

Device paths map to `<root>/<path>`. Sync requests map every absolute path this way. Shell
command lines are rewritten textually, but only for the fixed prefixes in `MAPPED_PREFIXES`
(so `cat /sys/class/power_supply/battery/current_now` reads the simulated file while `/proc/self`
or `/dev/null` stay the host's). Rewriting does not reach inside script files: a script that
needs a device path must receive it as an argument.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import stat
from pathlib import Path

from mobile_opt.errors import InputError

MAPPED_PREFIXES = (
    "/data",
    "/sdcard",
    "/storage",
    "/sys/bus/iio",
    "/sys/class/power_supply",
    "/sys/class/thermal",
    "/system",
    "/proc/loopback",
)
POWER_SUPPLY_ROOT = "sys/class/power_supply"
THERMAL_ROOT = "sys/class/thermal"
IIO_ROOT = "sys/bus/iio/devices"
LOAD_DIR = "proc/loopback/load"
TRUTH_FILE = "proc/loopback/truth.jsonl"
DEVICE_HOME = "/data/local/tmp"
QUOTA_DIRS = ("data", "storage")  # the writable partitions (/sdcard links into /storage)

# A prefix counts only at a word start and when followed by "/" or a shell delimiter, so
# "/database" or "x/data" are left alone.
_PREFIX_RE = re.compile(
    r"(?<![\w./-])("
    + "|".join(re.escape(p) for p in sorted(MAPPED_PREFIXES, key=len, reverse=True))
    + r")(?=$|[/\s'\";|&()<>`,:=])"
)
_SAFE_ROOT_RE = re.compile(r"^[\w./+@-]+$")

DEFAULT_PROPS = {
    "ro.product.model": "Loopback",
    "ro.product.manufacturer": "mobile-opt",
    "ro.product.device": "loopback",
    "ro.product.name": "loopback",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a",
    "ro.build.version.sdk": "34",
    "ro.build.version.release": "14",
}


class Sandbox:
    """Maps device paths and command lines onto a host directory."""

    def __init__(self, root: Path) -> None:
        root = Path(root).resolve()
        if not _SAFE_ROOT_RE.match(str(root)):
            raise InputError(
                "The loopback sandbox root must be a path without spaces or shell metacharacters "
                f"(command lines are rewritten textually). Received: root={str(root)!r}. "
                "Use a plain directory such as pytest's tmp_path."
            )
        self.root = root

    def device_path(self, device_path: str) -> Path:
        """Maps an absolute device path to its host path; refuses escapes via "..".

        Raises:
            InputError: not absolute.
        """
        if not device_path.startswith("/"):
            raise InputError(
                f"Expected an absolute device path (starting with '/'). Received: device_path={device_path!r}"
            )
        normal = posixpath.normpath(device_path).lstrip("/")
        return self.root / normal if normal not in ("", ".") else self.root

    def rewrite_command(self, command: str) -> str:
        """Rewrites mapped device paths in a shell command line to sandbox paths."""
        return _PREFIX_RE.sub(lambda m: f"{self.root}{m.group(1)}", command)

    def environment(self, serial: str) -> dict[str, str]:
        """The environment of device commands (host env is not inherited, like a device)."""
        env = {
            "PATH": f"{self.root}/system/bin:{self.root}/system/xbin:/usr/bin:/bin",
            "HOME": str(self.device_path(DEVICE_HOME)),
            "TMPDIR": str(self.device_path(DEVICE_HOME)),
            "ANDROID_ROOT": str(self.root / "system"),
            "ANDROID_DATA": str(self.root / "data"),
            "EXTERNAL_STORAGE": str(self.root / "sdcard"),
            "ANDROID_SERIAL": serial,
            "LOOPBACK_ROOT": str(self.root),
            "LANG": "C.UTF-8",
            # Device-side Python helpers (battery_load, fake benchmark) import this package.
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        return env

    def create(self, props: dict[str, str]) -> None:
        """Creates the directory layout and the generated `getprop` tool."""
        for sub in ("data/local/tmp", "storage/emulated/0", "system/bin", "system/xbin", LOAD_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        sdcard = self.root / "sdcard"
        if not sdcard.exists() and not sdcard.is_symlink():
            sdcard.symlink_to("storage/emulated/0")
        getprop = self.root / "system/bin/getprop"
        getprop.write_text(getprop_script(props))
        getprop.chmod(0o755)


    def usage_bytes(self) -> int:
        """Bytes of regular files on the writable partitions (`QUOTA_DIRS`), what quotas count."""
        total = 0
        for top in QUOTA_DIRS:
            for dirpath, _, filenames in os.walk(self.root / top):
                for name in filenames:
                    try:
                        st = os.lstat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total

    def write_df(self, quota_bytes: int, baseline_bytes: int) -> None:
        """Generates a `df` that reports /data with `quota_bytes` of space, like the SEND quota."""
        dirs = " ".join(shlex.quote(str(self.root / top)) for top in QUOTA_DIRS)
        script = (
            "#!/bin/sh\n"
            "# Generated by device_bench.testing: the loopback /data and its quota, 1K blocks.\n"
            f"find {dirs} -type f -printf '%s\\n' 2>/dev/null | "
            f"awk -v base={baseline_bytes} -v total={quota_bytes} '\n"
            "{ s += $1 }\n"
            "END {\n"
            "  used = s - base; if (used < 0) used = 0\n"
            "  avail = total - used; if (avail < 0) avail = 0\n"
            "  pct = total > 0 ? int(used * 100 / total) : 100\n"
            '  print "Filesystem          1K-blocks    Used Available Use% Mounted on"\n'
            '  printf "/dev/block/loopback %9d %7d %9d %3d%% /data\\n", total / 1024, used / 1024, avail / 1024, pct\n'
            "}'\n"
        )
        path = self.root / "system/bin/df"
        path.write_text(script)
        path.chmod(0o755)


def getprop_script(props: dict[str, str]) -> str:
    """A POSIX sh `getprop`: `getprop NAME [DEFAULT]` prints one value, plain `getprop` all."""
    listing = "".join(f"[{name}]: [{value}]\n" for name, value in sorted(props.items()))
    cases = "".join(
        f"  {shlex.quote(name)}) printf '%s\\n' {shlex.quote(value)} ;;\n"
        for name, value in sorted(props.items())
    )
    return (
        "#!/bin/sh\n"
        "# Generated by device_bench.testing (loopback device): answers from its props table.\n"
        'if [ $# -eq 0 ]; then\n'
        f"  printf '%s' {shlex.quote(listing)}\n"
        "  exit 0\n"
        "fi\n"
        'case "$1" in\n'
        f"{cases}"
        "  *) printf '%s\\n' \"${2:-}\" ;;\n"
        "esac\n"
    )


def pid_alive(pid: int) -> bool:
    """True if `pid` names a live (not zombie) process on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
