"""ODPM power rails of the loopback device: a Pixel 6's on-device power monitor, and its truth.

`LoopbackDevice(root, rails=RailsProfile())` gives the device the two IIO devices of a Pixel 6
(GS101): `/sys/bus/iio/devices/iio:device0` (`name` "s2mpg10-odpm", main PMIC) and
`iio:device1` ("s2mpg11-odpm", sub PMIC), 8 metered channels each. `rails=None` (the default)
is a phone without ODPM: no `/sys/bus/iio`, no `dumpsys`.

Files (Pixel kernel driver `drivers/iio/power/odpm.c`, google-modules/raviole-device, mirrored
as CodeLinaro-mirror/la_kernel_google-modules_raviole-device; `*_show` functions):
- `energy_value`: `t=<boot-clock ms of the last refresh>` then one line per channel
  `CH<n>(T=<ms>)[<schematic name>], <cumulative energy, µWs>`, e.g.
  `CH5(T=4738480)[S4M_VDD_CPUCL0], 113447446`. T equals t (the driver starts every channel at 0).
- `enabled_rails`: `CH<n>[<schematic name>]:<subsystem>`, e.g. `CH5[S4M_VDD_CPUCL0]:CPU(LITTLE)`.
- `available_rails`: `<regulator>(<schematic name>):<subsystem>`, e.g. `BUCK4M(S4M_VDD_CPUCL0):CPU(LITTLE)`.
- `sampling_rate`: `1000.000000` (Hz, `%d.%06d`); `name`: `s2mpg10-odpm` / `s2mpg11-odpm`.
Channels (the public Pixel 6 `energy_value` listings): device0 CH0 S10M_VDD_TPU (TPU),
CH1 VSYS_PWR_MODEM, CH2 VSYS_PWR_RFFE, CH3 S2M_VDD_CPUCL2 (CPU(BIG)), CH4 S3M_VDD_CPUCL1
(CPU(MID)), CH5 S4M_VDD_CPUCL0 (CPU(LITTLE)), CH6 S5M_VDD_INT, CH7 S1M_VDD_MIF; device1
CH0 VSYS_PWR_WLAN_BT, CH1 L2S_VDD_AOC_RET, CH2 S9S_VDD_AOC, CH3 S5S_VDDQ_MEM, CH4 S10S_VDD2L,
CH5 S4S_VDD2H_MEM, CH6 S2S_VDD_G3D (GPU), CH7 L9S_GNSS_CORE. `PIXEL6_RAILS` holds them.

Quantisation and refresh, as the driver does it: the PMIC's ADC samples each rail at 1 kHz
and adds `round(P / LSB)` (LSB 1.2–27.9 µW per rail class); the counters are refreshed every
`refresh_ms` (default 100 ms; a real read refreshes at most every 20 ADC counts, and a timer
otherwise). Each refresh converts the counts at the rate `counts / truncated elapsed ms` (the
driver's `odpm_estimate_sampling_frequency`; the configured rate when < 20 counts) and adds the
truncated integer µWs. So one refresh of length L at power P reads `P · floor(L in ms)` µWs
(down to −1 ms · P, the driver's documented ±(1/20)/2 = ±2.5 % at its 20-count minimum), and
a window of n refreshes is low by at most `n · 1 ms · P + n` µWs (≤ 1 % at 100 ms, −0.5 % on
average), plus ±1 ADC sample (1 ms) of each power step, and P itself is read in whole LSBs.
`t=` is the host's CLOCK_BOOTTIME in ms, so the window's true length is the difference of two
`t=` (each truncated to the ms). The counters start at `idle power · 600 s` (measured since
before the device started).

`dumpsys android.hardware.power.stats.IPowerStats/default` prints the same snapshot as the
Pixel PowerStats HAL does (hardware/google/pixel `powerstats/PowerStatsAidl.cpp`,
`PowerStats::dump` → `dumpEnergyMeter`, channel list from `IioEnergyMeterDataProvider.cpp`):
three sections `============= PowerStats HAL 2.0 state residencies ==============` (header
only), `... energy consumers ...` (`%-12s : %14.2f mWs`: CPUCL0/1/2, GPU, TPU) and
`... energy meter ...`, whose rows are `  %32s   %14.2f mWs` of `[<schematic>]:<subsystem>`
and `static_cast<float>(energyUWs) / 1000.0` (float32: the value keeps 24 bits, 0.01 mWs
printed), closed by `========== End of PowerStats HAL 2.0 energy meter ==========`. The
`delta` argument is not simulated. Other services: `Can't find service: <name>` on stderr.

Load (`battery_load(kind)`, which also drives the battery): "cpu" adds power on the CPU cluster
rails (the fake `benchmark_model` on the CPU), "gpu" on S2S_VDD_G3D (`--use_gpu` with a working
GPU, `fake_benchmark_model.configure(gpu="fp16"|"partial")`), "nnapi" on S10M_VDD_TPU
(`--use_nnapi`). The charger (the battery profile) never changes the rails.

Faults and access (`RailsProfile` fields; `configure_rails(root, ...)` changes a live device):
- access "sysfs" (default); "denied": the sysfs files read `Permission denied` (mode 000, and
  the device's `cat` refuses them when the host runs as root), `dumpsys` still works.
- fault "none" (default); for `fault_rail` (default "S4M_VDD_CPUCL0"), in the files and dumpsys:
  "missing_channel" (its line absent, still in `enabled_rails`), "backwards" (its counter drops
  to half when applied and counts on from there), "unknown_unit" (`..., 1234 mJ`; dumpsys `mJ`),
  "unparsable" (its line torn mid-name: `CH5(T=4738480)[S4M_VDD_CP`; dumpsys row without a value).

Truth: `rails_truth(root) -> RailsTruth` reads `<root>/proc/loopback/rails.truth.jsonl`: each
power step (monotonic and boot-clock time, active loads, µW per rail, true cumulative µWs per
rail on the counters' origin) and each configuration change; `energy_uws(rail, t)` gives the
true counter at a monotonic time (before the start: idle power, as measured before), and
`monotonic_from_boot_ms(t)` maps a `t=` onto that clock.

API (`from device_bench.testing import ...`): `LoopbackDevice(root, rails=RailsProfile(...))`,
`RailsProfile(rails=PIXEL6_RAILS, refresh_ms=100, access="sysfs", fault="none",
fault_rail="S4M_VDD_CPUCL0")`, `configure_rails(root, *, access=None, fault=None,
fault_rail=None, timeout_s=5.0) -> RailsProfile` (returns once the files show it),
`rails_truth(root) -> RailsTruth`, `battery_load(kind="cpu")`; `rails.PIXEL6_RAILS` is a tuple
of `rails.Rail(device, channel, regulator, schematic, subsys, lsb_nw, idle_mw, cpu_mw, gpu_mw,
nnapi_mw)` (powers in mW; a load adds its kind's mW to idle). `python -m device_bench.testing
--rails` starts such a device by hand.

Example:
    with LoopbackDevice(tmp_path, rails=RailsProfile()) as device:
        configure_rails(device.root, fault="backwards")
        truth = rails_truth(device.root)
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from mobile_opt.errors import InputError

from device_bench.testing._odpm import FAULTS

__all__ = ["PIXEL6_RAILS", "Rail", "RailStep", "RailsProfile", "RailsTruth", "configure_rails", "rails_truth"]

RAILS_TRUTH = Path("proc/loopback/rails.truth.jsonl")
RAILS_CONFIG = Path("proc/loopback/rails.config.json")
ACCESS = ("sysfs", "denied")
_NAME_RE = re.compile(r"^[A-Z0-9_]+$")
_POLL_S = 0.005


@dataclass(frozen=True)
class Rail:
    """One metered channel: where it is, what it is called, its LSB and its true power.

    Args:
        device: 0 (main PMIC, iio:device0) or 1 (sub PMIC, iio:device1).
        channel: the meter channel, 0–7.
        regulator: the regulator's name in `available_rails` ("BUCK4M", "VSEN_C2", ...).
        schematic: the schematic name in `energy_value` ("S4M_VDD_CPUCL0").
        subsys: the subsystem in `enabled_rails` ("CPU(LITTLE)").
        lsb_nw: power per ADC count, nW (> 0).
        idle_mw: power while idle, mW (>= 0).
        cpu_mw, gpu_mw, nnapi_mw: added power while that load kind runs, mW (default 0.0).
    """

    device: int
    channel: int
    regulator: str
    schematic: str
    subsys: str
    lsb_nw: int
    idle_mw: float
    cpu_mw: float = 0.0
    gpu_mw: float = 0.0
    nnapi_mw: float = 0.0

    def __post_init__(self) -> None:
        if self.device not in (0, 1) or not 0 <= self.channel <= 7 or self.lsb_nw <= 0:
            raise InputError(f"Rail needs device 0 or 1, channel 0-7 and lsb_nw > 0. Received: {self!r}")
        if not (_NAME_RE.match(self.schematic) and _NAME_RE.match(self.regulator)) or not self.subsys:
            raise InputError(f"Rail names must be upper-case identifiers and subsys non-empty. Received: {self!r}")
        if min(self.idle_mw, self.cpu_mw, self.gpu_mw, self.nnapi_mw) < 0:
            raise InputError(f"Rail powers must be >= 0 mW. Received: {self!r}")

    def power_uw(self, loads: frozenset[str]) -> float:
        """The true power with the given load kinds running, µW."""
        mw = self.idle_mw + sum(getattr(self, f"{kind}_mw") for kind in loads)
        return mw * 1000.0


# LSBs: the s2mpg1x rail classes (CMS 6105, CMD 12210, CMT 18315 nW for bucks; 1221 for an
# nLDO; 13953 / 27906 nW for the 10 / 5 mΩ VSYS shunts).
PIXEL6_RAILS = (
    Rail(0, 0, "BUCK10M", "S10M_VDD_TPU", "TPU", 18315, 5.0, cpu_mw=0.0, nnapi_mw=700.0),
    Rail(0, 1, "VSEN_C2", "VSYS_PWR_MODEM", "Modem", 27906, 40.0),
    Rail(0, 2, "VSEN_C3", "VSYS_PWR_RFFE", "Cellular", 27906, 5.0),
    Rail(0, 3, "BUCK2M", "S2M_VDD_CPUCL2", "CPU(BIG)", 18315, 30.0, cpu_mw=1200.0),
    Rail(0, 4, "BUCK3M", "S3M_VDD_CPUCL1", "CPU(MID)", 12210, 25.0, cpu_mw=300.0),
    Rail(0, 5, "BUCK4M", "S4M_VDD_CPUCL0", "CPU(LITTLE)", 6105, 60.0, cpu_mw=150.0, gpu_mw=80.0, nnapi_mw=60.0),
    Rail(0, 6, "BUCK5M", "S5M_VDD_INT", "INT", 18315, 80.0, cpu_mw=60.0, gpu_mw=60.0, nnapi_mw=40.0),
    Rail(0, 7, "BUCK1M", "S1M_VDD_MIF", "MIF", 6105, 70.0, cpu_mw=120.0, gpu_mw=150.0, nnapi_mw=100.0),
    Rail(1, 0, "VSEN_C4", "VSYS_PWR_WLAN_BT", "WLAN-BT", 13953, 20.0),
    Rail(1, 1, "LDO2S", "L2S_VDD_AOC_RET", "AOC", 1221, 2.0),
    Rail(1, 2, "BUCK9S", "S9S_VDD_AOC", "AOC", 6105, 15.0),
    Rail(1, 3, "BUCK5S", "S5S_VDDQ_MEM", "DDR", 6105, 10.0, cpu_mw=20.0, gpu_mw=25.0, nnapi_mw=20.0),
    Rail(1, 4, "BUCK10S", "S10S_VDD2L", "DDR", 6105, 20.0, cpu_mw=30.0, gpu_mw=35.0, nnapi_mw=30.0),
    Rail(1, 5, "BUCK4S", "S4S_VDD2H_MEM", "DDR", 6105, 30.0, cpu_mw=50.0, gpu_mw=60.0, nnapi_mw=50.0),
    Rail(1, 6, "BUCK2S", "S2S_VDD_G3D", "GPU", 18315, 10.0, gpu_mw=900.0),
    Rail(1, 7, "LDO9S", "L9S_GNSS_CORE", "GPS", 1221, 1.0),
)


@dataclass(frozen=True)
class RailsProfile:
    """The loopback device's ODPM: its rails, refresh, access and fault.

    Args:
        rails: the metered channels (default `PIXEL6_RAILS`).
        refresh_ms: how often the counters refresh, 20–5000 ms (default 100).
        access: "sysfs" (default) or "denied" (sysfs reads `Permission denied`; dumpsys works).
        fault: one of "none" (default), "missing_channel", "backwards", "unknown_unit", "unparsable".
        fault_rail: the schematic name the fault hits (default "S4M_VDD_CPUCL0").

    Raises:
        InputError: no rails, a duplicate channel or name, or a value out of range.

    Example:
        >>> RailsProfile(fault="backwards").fault_rail
        'S4M_VDD_CPUCL0'
    """

    rails: tuple[Rail, ...] = PIXEL6_RAILS
    refresh_ms: int = 100
    access: str = "sysfs"
    fault: str = "none"
    fault_rail: str = "S4M_VDD_CPUCL0"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rails", tuple(self.rails))
        slots = [(r.device, r.channel) for r in self.rails]
        names = [r.schematic for r in self.rails]
        if not self.rails or len(set(slots)) != len(slots) or len(set(names)) != len(names):
            raise InputError(f"RailsProfile needs rails with distinct (device, channel) and names. Received: {names}")
        if not 20 <= self.refresh_ms <= 5000:
            raise InputError(f"RailsProfile.refresh_ms must be in [20, 5000]. Received: refresh_ms={self.refresh_ms}")
        _check_access_fault(self.access, self.fault, self.fault_rail, names)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RailsProfile":
        return cls(**{**d, "rails": tuple(Rail(**r) for r in d["rails"])})


def _check_access_fault(access: str, fault: str, fault_rail: str, names: list[str]) -> None:
    if access not in ACCESS:
        raise InputError(f"Rails access must be one of {ACCESS}. Received: access={access!r}")
    if fault not in FAULTS:
        raise InputError(f"Rails fault must be one of {FAULTS}. Received: fault={fault!r}")
    if fault_rail not in names:
        raise InputError(f"fault_rail must name one of the rails {names}. Received: fault_rail={fault_rail!r}")


@dataclass(frozen=True)
class RailStep:
    """The true power from `t_monotonic` on: µW and cumulative µWs (at that instant) per rail."""

    t_monotonic: float
    t_boot_ns: int
    loads: tuple[str, ...]
    power_uw: dict[str, float]
    energy_uws: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RailsTruth:
    """The ODPM ground truth of one loopback device (see the module docstring).

    Args:
        profile: the profile the device started with.
        steps: the power steps, oldest first; the first is the start.
        configs: the configuration changes applied (`configure_rails`), each a dict with
            `seq`, `access`, `fault`, `fault_rail`, `t_monotonic`.
    """

    profile: RailsProfile
    steps: tuple[RailStep, ...]
    configs: tuple[dict, ...] = field(default_factory=tuple)

    def _step(self, t: float) -> RailStep:
        # Before the start the rails drew the first step's (idle) power, as the counters say.
        return ([s for s in self.steps if s.t_monotonic <= t] or [self.steps[0]])[-1]

    def power_uw(self, rail: str, t: float) -> float:
        """The true power of `rail` at monotonic time `t`, µW."""
        return self._step(t).power_uw[self._rail(rail)]

    def energy_uws(self, rail: str, t: float) -> float:
        """The true cumulative energy of `rail` at monotonic time `t`, µWs (the counters' origin)."""
        step = self._step(t)
        name = self._rail(rail)
        return step.energy_uws[name] + step.power_uw[name] * (t - step.t_monotonic)

    def energy_between_uws(self, rail: str, t0: float, t1: float) -> float:
        """∫ P dt of `rail` over [t0, t1] (monotonic), µWs."""
        return self.energy_uws(rail, t1) - self.energy_uws(rail, t0)

    def monotonic_from_boot_ms(self, t_ms: float) -> float:
        """The monotonic time of a boot-clock ms value (an `energy_value` `t=`)."""
        start = self.steps[0]
        return start.t_monotonic + (t_ms * 1e6 - start.t_boot_ns) / 1e9

    def _rail(self, rail: str) -> str:
        if rail not in self.steps[0].power_uw:
            raise InputError(f"Unknown rail. Received: rail={rail!r}; rails: {sorted(self.steps[0].power_uw)}")
        return rail

    def to_dict(self) -> dict:
        return {"profile": self.profile.to_dict(), "steps": [s.to_dict() for s in self.steps],
                "configs": list(self.configs)}


def rails_truth(root: Path) -> RailsTruth:
    """Reads the rails truth ledger of the loopback device whose sandbox is `root`.

    Raises:
        InputError: the device has no rails (no ledger) or the ledger has no profile line.
    """
    path = Path(root) / RAILS_TRUTH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"No rails truth ledger: was the device started with rails? Received: path={path}") from exc
    lines = text.split("\n")[:-1]  # the device may be appending the last line right now
    profile, steps, configs = None, [], []
    for line in lines:
        record = json.loads(line)
        if record["event"] == "profile":
            profile = RailsProfile.from_dict(record["profile"])
        elif record["event"] == "power":
            steps.append(RailStep(record["t_monotonic"], record["t_boot_ns"], tuple(record["loads"]),
                                  record["power_uw"], record["energy_uws"]))
        elif record["event"] == "config":
            configs.append({k: v for k, v in record.items() if k != "event"})
    if profile is None or not steps:
        raise InputError(f"Rails truth ledger has no profile or start line. Received: path={path}")
    return RailsTruth(profile, tuple(steps), tuple(configs))


def configure_rails(root: Path, *, access: str | None = None, fault: str | None = None,
                    fault_rail: str | None = None, timeout_s: float = 5.0) -> RailsProfile:
    """Changes the access or fault of the running loopback device whose sandbox is `root`.

    Returns once the device applied it: its files already show the change.

    Args:
        root: the `LoopbackDevice.root` of a device started with rails.
        access: "sysfs" or "denied" (default None: unchanged).
        fault: one of "none", "missing_channel", "backwards", "unknown_unit", "unparsable"
            (default None: unchanged).
        fault_rail: the rail the fault hits (default None: unchanged).
        timeout_s: how long to wait for the device to apply it (default 5.0).

    Returns:
        The profile now in effect.

    Raises:
        InputError: the device has no rails, a value is unknown, or it was not applied in time.
    """
    truth = rails_truth(root)
    current = replace(truth.profile, **(_last_config(truth)))
    wanted = replace(current, **{k: v for k, v in
                                 {"access": access, "fault": fault, "fault_rail": fault_rail}.items() if v is not None})
    seq = (truth.configs[-1]["seq"] if truth.configs else 0) + 1
    path = Path(root) / RAILS_CONFIG
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps({"seq": seq, "access": wanted.access, "fault": wanted.fault,
                                "fault_rail": wanted.fault_rail}), encoding="utf-8")
    os.replace(temp, path)
    deadline = time.monotonic() + timeout_s
    while not any(c["seq"] == seq for c in rails_truth(root).configs):
        if time.monotonic() > deadline:
            raise InputError(f"The loopback device at {root} did not apply the rails configuration within "
                             f"{timeout_s} s: is it running? Received: timeout_s={timeout_s}")
        time.sleep(_POLL_S)
    return wanted


def _last_config(truth: RailsTruth) -> dict:
    if not truth.configs:
        return {}
    last = truth.configs[-1]
    return {k: last[k] for k in ("access", "fault", "fault_rail")}
