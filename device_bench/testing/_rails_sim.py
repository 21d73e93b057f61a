"""The live ODPM of a loopback device: a thread that feeds `_odpm.Meter` the real clocks.

It polls the load markers (`_battery.active_loads`) every `POLL_S`, so the truth steps are
sharp; each step goes to the ledger `rails.RAILS_TRUTH`. Every `refresh_ms` it refreshes the
meter and rewrites `energy_value` and the HAL dump from that one snapshot. It also applies the
configuration `rails.configure_rails` writes, then acknowledges it in the ledger.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

from device_bench.testing import _odpm
from device_bench.testing._battery import POLL_S, active_loads
from device_bench.testing._sandbox import IIO_ROOT, LOAD_DIR
from device_bench.testing.rails import RAILS_CONFIG, RAILS_TRUTH, RailsProfile

logger = logging.getLogger(__name__)

DEVICE_NAMES = ("s2mpg10-odpm", "s2mpg11-odpm")
POWERSTATS_SERVICE = "android.hardware.power.stats.IPowerStats/default"
_HAL_DUMP = Path("proc/loopback/rails/powerstats.txt")
_DENIED_FLAG = Path("proc/loopback/rails/denied")
# The Pixel HAL's meter consumers (device/google/gs101 powerstats: createMeterConsumer).
_CONSUMERS = (("CPUCL0", "S4M_VDD_CPUCL0"), ("CPUCL1", "S3M_VDD_CPUCL1"), ("CPUCL2", "S2M_VDD_CPUCL2"),
              ("GPU", "S2S_VDD_G3D"), ("TPU", "S10M_VDD_TPU"))
# Pixel 6 rails `available_rails` lists besides the channels' own (the driver lists every DT rail).
_AVAILABLE = (
    (("BUCK6M", "S6M_VDD_CPUCL2_M", "CPU(BIG)"), ("BUCK7M", "S7M_VDD_INT_M", "INT"),
     ("BUCK8M", "S8M_LLDO2", "LDO"), ("BUCK9M", "S9M_LLDO3", "LDO"),
     ("LDO12M", "L12M_VDD_CPUCL0_M", "CPU(LITTLE)"), ("VSEN_C1", "PPVAR_VSYS_PWR_DISP", "Display")),
    (("BUCK1S", "S1S_VDD_CAM", "Multimedia"), ("BUCK3S", "S3S_LLDO1", "LDO"),
     ("BUCK8S", "S8S_VDD_G3D_L2", "GPU"), ("LDO1S", "L1S_VDD_G3D_M", "GPU"),
     ("VSEN_C4", "VSYS_PWR_WLAN_BT", "WLAN-BT"), ("VSEN_C5", "VSEN_C5_NC", "Spare"),
     ("VSEN_C6", "VSEN_C6_NC", "Spare")),
)


def _boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class RailsSimulator:
    """Keeps one sandbox's ODPM files following the true rail power."""

    def __init__(self, root: Path, profile: RailsProfile) -> None:
        self._root = root
        self._profile = profile
        self._rails = sorted(profile.rails, key=lambda r: (r.device, r.channel))
        self._devices = sorted({r.device for r in self._rails})
        self._load_dir = root / LOAD_DIR
        self._ledger = root / RAILS_TRUTH
        self._config = root / RAILS_CONFIG
        self._config_mtime = 0
        self._loads: frozenset[str] = frozenset()
        self._offsets = {r.schematic: 0 for r in self._rails}  # what "backwards" took off
        self._meter: _odpm.Meter | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback-rails", daemon=True)

    def start(self) -> None:
        """Writes every file once (readable on return) and starts the update thread."""
        self._config.unlink(missing_ok=True)
        self._ledger.parent.mkdir(parents=True, exist_ok=True)
        t_mono, t_boot = time.monotonic(), _boot_ns()
        self._meter = _odpm.Meter([_odpm.MeterRail(r.schematic, r.lsb_nw) for r in self._rails], t_boot,
                                  self._power(frozenset()))
        self._ledger.write_text(json.dumps({"event": "profile", "profile": self._profile.to_dict()}) + "\n")
        self._log_step(t_mono, t_boot)
        self._install_tools()
        self._write_static()
        self._write_snapshot()
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _power(self, loads: frozenset[str]) -> dict[str, float]:
        return {r.schematic: r.power_uw(loads) for r in self._rails}

    def _log_step(self, t_mono: float, t_boot: int) -> None:
        meter = self._meter
        record = {"event": "power", "t_monotonic": t_mono, "t_boot_ns": t_boot, "loads": sorted(self._loads),
                  "power_uw": meter.power_uw, "energy_uws": meter.truth_at(t_boot)}
        with open(self._ledger, "a", encoding="utf-8") as ledger:
            ledger.write(json.dumps(record) + "\n")

    def _run(self) -> None:
        period_ns = self._profile.refresh_ms * 1_000_000
        next_refresh = self._meter.last_poll_ns + period_ns
        while not self._stop.wait(POLL_S):
            loads = active_loads(self._load_dir)
            t_mono, t_boot = time.monotonic(), _boot_ns()
            if loads != self._loads:
                self._loads = loads
                self._meter.set_power(t_boot, self._power(loads))
                self._log_step(t_mono, t_boot)
            if self._apply_config():
                continue
            if t_boot >= next_refresh:
                self._meter.refresh(t_boot)
                self._write_snapshot()
                next_refresh = t_boot + period_ns

    def _apply_config(self) -> bool:
        try:
            mtime = self._config.stat().st_mtime_ns
            if mtime == self._config_mtime:
                return False
            config = json.loads(self._config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        self._config_mtime = mtime
        seq = config.pop("seq")
        new = replace(self._profile, **config)
        already = (self._profile.fault, self._profile.fault_rail) == ("backwards", new.fault_rail)
        if new.fault == "backwards" and not already:
            shown = self._meter.counters[new.fault_rail] - self._offsets[new.fault_rail]
            self._offsets[new.fault_rail] += shown // 2
        self._profile = new
        self._write_static()
        self._write_snapshot()
        with open(self._ledger, "a", encoding="utf-8") as ledger:
            ledger.write(json.dumps({"event": "config", "seq": seq, **config, "t_monotonic": time.monotonic()}) + "\n")
        logger.info("Loopback rails: access %s, fault %s on %s", new.access, new.fault, new.fault_rail)
        return True

    def _dir(self, device: int) -> Path:
        return self._root / IIO_ROOT / f"iio:device{device}"

    def _write(self, path: Path, text: str) -> None:
        # Atomic replace: a concurrent `cat` never sees a half-written value.
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f".{path.name}.tmp"
        temp.write_text(text, encoding="utf-8")
        if path.parent.name.startswith("iio:device"):
            temp.chmod(0o000 if self._profile.access == "denied" else 0o444)
        os.replace(temp, path)

    def _write_static(self) -> None:
        flag = self._root / _DENIED_FLAG
        flag.parent.mkdir(parents=True, exist_ok=True)
        if self._profile.access == "denied":
            flag.touch()
        else:
            flag.unlink(missing_ok=True)
        for device in self._devices:
            rails = [r for r in self._rails if r.device == device]
            metered = [(r.regulator, r.schematic, r.subsys) for r in rails]
            available = list(_AVAILABLE[device]) + [m for m in metered if m not in _AVAILABLE[device]]
            available.sort(key=lambda rail: (not rail[0].startswith("BUCK"), rail[0].startswith("VSEN")))
            self._write(self._dir(device) / "name", f"{DEVICE_NAMES[device]}\n")
            self._write(self._dir(device) / "sampling_rate", _odpm.sampling_rate_text())
            self._write(self._dir(device) / "enabled_rails",
                        _odpm.enabled_rails_text([(r.channel, r.schematic, r.subsys) for r in rails]))
            self._write(self._dir(device) / "available_rails", _odpm.available_rails_text(available))

    def _write_snapshot(self) -> None:
        meter, profile = self._meter, self._profile
        shown = {name: value - self._offsets[name] for name, value in meter.counters.items()}
        t_ms = meter.last_poll_ns // 1_000_000
        for device in self._devices:
            readings = [(r.channel, r.schematic, shown[r.schematic]) for r in self._rails if r.device == device]
            self._write(self._dir(device) / "energy_value",
                        _odpm.energy_value_text(t_ms, readings, profile.fault, profile.fault_rail))
        consumers = [(name, shown[rail]) for name, rail in _CONSUMERS if rail in shown]
        channels = [(r.schematic, r.subsys, shown[r.schematic]) for r in self._rails]
        self._write(self._root / _HAL_DUMP,
                    _odpm.powerstats_dump_text(channels, consumers, profile.fault, profile.fault_rail))

    def _install_tools(self) -> None:
        """`dumpsys` for the HAL, and a `cat` that honours the "denied" access."""
        host_cat = shutil.which("cat", path="/usr/bin:/bin") or "cat"
        bin_dir = self._root / "system/bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        dumpsys = (
            "#!/bin/sh\n"
            "# Generated by device_bench.testing (loopback ODPM): only the PowerStats HAL is served.\n"
            'case "$1" in\n'
            f"  {POWERSTATS_SERVICE}) exec {shlex.quote(host_cat)} \"$LOOPBACK_ROOT/{_HAL_DUMP}\" ;;\n"
            f"  -l) printf 'Currently running services:\\n  %s\\n' {POWERSTATS_SERVICE} ;;\n"
            "  *) echo \"Can't find service: $1\" >&2 ;;\n"
            "esac\n"
        )
        cat = (
            "#!/bin/sh\n"
            "# Generated by device_bench.testing (loopback ODPM): the host's cat, except that while\n"
            "# the rails are denied the ODPM files answer as SELinux makes them answer adb's shell\n"
            "# (mode 000 alone does not stop a root host).\n"
            f'if [ ! -e "$LOOPBACK_ROOT/{_DENIED_FLAG}" ] || [ $# -eq 0 ]; then exec {shlex.quote(host_cat)} "$@"; fi\n'
            "status=0\n"
            'for arg in "$@"; do\n'
            '  case "$arg" in /*) path=$arg ;; *) path="$PWD/$arg" ;; esac\n'
            '  case "$path" in\n'
            f'    "$LOOPBACK_ROOT/{IIO_ROOT}/"*)\n'
            '      echo "cat: ${path#$LOOPBACK_ROOT}: Permission denied" >&2; status=1 ;;\n'
            f'    *) {shlex.quote(host_cat)} "$arg" || status=1 ;;\n'
            "  esac\n"
            "done\n"
            "exit $status\n"
        )
        for name, script in (("dumpsys", dumpsys), ("cat", cat)):
            (bin_dir / name).write_text(script, encoding="utf-8")
            (bin_dir / name).chmod(0o755)
