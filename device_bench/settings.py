"""How `benchmark()` runs the tool (`RunSettings`), which tool it runs (`ToolSettings`) and how it
measures energy (`EnergySettings`).

All are frozen and validated on construction, so a bad value fails before any device work.

Example:
    >>> RunSettings(runs=20, min_secs=0.5).runs
    20
    >>> EnergySettings(baseline_s=3).tail_s is None
    True
    >>> ToolSettings(cache_dir="bins").cache_dir
    PosixPath('bins')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobile_opt._checks import check_number
from mobile_opt.errors import InputError

__all__ = ["EnergySettings", "RunSettings", "ToolSettings"]


def _path(value: Any, name: str) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, str) and value:
        return Path(value)
    raise InputError(f"{name} must be a path or None. Received: {name}={value!r}")


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass's field in __post_init__


@dataclass(frozen=True)
class RunSettings:
    """One `benchmark_model` invocation per (model, backend, threads).

    The tool runs at least `runs` timed runs *and* at least `min_secs` seconds of them
    (whichever takes longer), after at least `warmup_runs` warm-up runs and `warmup_min_secs`.

    Args:
        runs: minimum timed runs (`--num_runs`, default 50).
        warmup_runs: minimum warm-up runs (`--warmup_runs`, default 1).
        min_secs: minimum seconds of timed runs (`--min_secs`, default 1.0).
        warmup_min_secs: minimum seconds of warm-up (`--warmup_min_secs`, default 0.5).
        cooldown_s: seconds to rest between runs, against thermal carry-over (default 0).
        cooldown_to_c: before each run, wait (bounded by `cooldown_timeout_s`) until the
            device is below this temperature, °C (default None: do not wait).
        cooldown_timeout_s: the longest wait for `cooldown_to_c` (default 600).
        run_timeout_s: seconds one benchmark invocation may take (default 300).
        op_profiling: ask for per-op timings (`--enable_op_profiling`) (default False).
        keep_samples: keep every timed run's latency in `samples_us` (default False: the
            statistics and a histogram only).

    Raises:
        InputError: a value out of range.
    """

    runs: int = 50
    warmup_runs: int = 1
    min_secs: float = 1.0
    warmup_min_secs: float = 0.5
    cooldown_s: float = 0.0
    cooldown_to_c: float | None = None
    cooldown_timeout_s: float = 600.0
    run_timeout_s: float = 300.0
    op_profiling: bool = False
    keep_samples: bool = False

    def __post_init__(self) -> None:
        check_number("runs", self.runs, at_least=1, integer=True)
        check_number("warmup_runs", self.warmup_runs, at_least=0, integer=True)
        for name in ("min_secs", "warmup_min_secs", "cooldown_s", "cooldown_timeout_s"):
            check_number(name, getattr(self, name), at_least=0)
        check_number("cooldown_to_c", self.cooldown_to_c, at_least=-50, optional=True)
        check_number("run_timeout_s", self.run_timeout_s, above=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EnergySettings:
    """Energy per inference from the battery's fuel gauge.

    Args:
        baseline_s: idle seconds measured right before each run (default 5.0).
        tail_s: seconds sampled after each run, while the gauge still publishes the load
            (default None: 3 s with `current_now`, 12 s with `current_avg`; lengthened by
            itself when the gauge had not settled).
        sample_interval_s: sampling interval (default 0.01).
        battery: the supply's name under /sys/class/power_supply (default None: the one whose
            `type` is Battery).
        battery_dir: the battery's full sysfs path; overrides `battery` (default None).
        settle_timeout_s: the longest wait for the reading to return to idle before a run
            (default 30).
        auto_extend: rerun once with a longer run or tail when the gauge needs it (default True).

    Raises:
        InputError: a value out of range.
    """

    baseline_s: float = 5.0
    tail_s: float | None = None
    sample_interval_s: float = 0.01
    battery: str | None = None
    battery_dir: str | None = None
    settle_timeout_s: float = 30.0
    auto_extend: bool = True

    def __post_init__(self) -> None:
        check_number("baseline_s", self.baseline_s, at_least=0)
        check_number("tail_s", self.tail_s, at_least=0, optional=True)
        check_number("sample_interval_s", self.sample_interval_s, above=0)
        check_number("settle_timeout_s", self.settle_timeout_s, at_least=0)
        if self.battery is not None and (not self.battery or "/" in self.battery):
            raise InputError(
                "battery must be a supply name under /sys/class/power_supply (e.g. 'bms'). "
                f"Received: battery={self.battery!r}"
            )
        if self.battery_dir is not None and not self.battery_dir.startswith("/"):
            raise InputError(
                f"battery_dir must be an absolute sysfs path. Received: battery_dir={self.battery_dir!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ToolSettings:
    """Which `benchmark_model` runs on the device: an explicit build, or the cached one for its ABI.

    Args:
        binary: the device's `benchmark_model` (default None: `<cache_dir>/<abi>/benchmark_model`;
            on the host, `python -m device_bench.host_benchmark`).
        cache_dir: binaries as `<cache_dir>/<abi>/benchmark_model` (default None:
            `default_cache_dir()`).

    Raises:
        InputError: a value that is not a path.
    """

    binary: Path | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("binary", "cache_dir"):
            _set(self, name, _path(getattr(self, name), name))
