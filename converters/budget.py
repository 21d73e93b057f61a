"""Size and compute budgets for .tflite files, checked in CI (`mobile-opt check`).

A budget is a glob pattern with limits on the raw (the .tflite as shipped, what LiteRT
mmaps), zip (deflated as an APK entry: what a download costs), gzip and coded (an estimate
no runtime loads) sizes (`converters.size.analyze`, see size_accounting.md) and on MACs
(`converters.flops`). Budgets live in pyproject.toml:

    [[tool.mobile-opt.budget]]
    path = "models/*.tflite"      # glob, relative to the pyproject's directory; ** recurses
    max_raw = "1MB"
    max_zip = "800KB"
    max_gzip = "600KB"
    max_coded = "50KB"
    max_macs = "1.2M"
    max_p50_ms = { "Pixel 7" = 12.0, "*" = 20 }   # median latency per device model

Sizes: a number with an optional unit, B, KB/MB/GB or K/M/G (powers of 1000) or KiB/MiB/GiB
(powers of 1024), case-insensitive: "50KB" = "50k" = 50,000, "1.5MiB" = 1,572,864, "200000".
`parse_size` is the one size parser of the project (`mobile-opt auto --size-budget` uses it too).
MAC counts: a number with an optional K/M/G (powers of 1000) suffix. A glob that
matches no file is a failure, never a silent pass. `max_p50_ms` (a number for every device
model, or a table from `ro.product.model` to milliseconds, "*" for the others) is checked
against benchmark results by `mobile-opt check --results` (`device_bench.latency_budget`).

`BudgetReport.to_dict()` keys: {"ok", "results": [{"path", "pattern", "metric", "limit",
"actual", "ok", "note"}]}; metric is "raw_bytes", "zip_bytes", "gzip_bytes", "coded_bytes", "macs" or
"match" (the glob matched nothing; limit and actual are None).
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import os
import re
from pathlib import Path
from typing import Any, Callable

from mobile_opt._checks import check_number
from mobile_opt._files import read_toml
from mobile_opt.errors import BudgetExceeded, InputError

__all__ = [
    "Budget",
    "BudgetReport",
    "BudgetResult",
    "check_budgets",
    "load_budgets",
    "parse_count",
    "parse_size",
]

# The one size-unit table (`mobile_opt.auto` parses its size budget with `parse_size` too).
_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1000, "m": 1000**2, "g": 1000**3,
}
_COUNT_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}
_NUMBER = re.compile(r"^\s*(\d*\.?\d+(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")
# TOML key -> Budget field
_CONFIG_KEYS = {
    "max_raw": "max_raw_bytes",
    "max_zip": "max_zip_bytes",
    "max_gzip": "max_gzip_bytes",
    "max_coded": "max_coded_bytes",
    "max_macs": "max_macs",
}
_METRIC_OF_FIELD = {
    "max_raw_bytes": "raw_bytes",
    "max_zip_bytes": "zip_bytes",
    "max_gzip_bytes": "gzip_bytes",
    "max_coded_bytes": "coded_bytes",
    "max_macs": "macs",
}


def _parse(value: Any, units: dict[str, int], what: str, example: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number. Received: {what}={value!r}")
    if isinstance(value, int):
        number, factor = value, 1
    elif isinstance(value, str):
        match = _NUMBER.match(value.replace("_", "").replace(",", ""))
        if not match:
            raise InputError(f"Cannot read {what}; expected e.g. {example}. Received: {what}={value!r}")
        unit = match.group(2).lower()
        if unit not in units:
            raise InputError(
                f"Unknown unit {match.group(2)!r} in {what}; use one of "
                f"{', '.join(u for u in _display_units(units))}. Received: {what}={value!r}"
            )
        number, factor = float(match.group(1)), units[unit]
    else:
        raise InputError(f"{what} must be a number or a string like {example}. Received: {what}={value!r}")
    result = int(number * factor)
    if result <= 0:
        raise InputError(f"{what} must be positive. Received: {what}={value!r}")
    return result


def _display_units(units: dict[str, int]) -> list[str]:
    names = {"b": "B", "kb": "KB", "mb": "MB", "gb": "GB", "kib": "KiB", "mib": "MiB", "gib": "GiB",
             "k": "K", "m": "M", "g": "G"}
    return [names[u] for u in units if u]


def parse_size(value: str | int, what: str = "size") -> int:
    """Bytes from "50KB" or "50k" (1000-based), "1.5MiB" (1024-based), "200000" or an int.

    Raises:
        InputError: unreadable, unknown unit, or not positive.

    Example:
        >>> parse_size("1.5MiB"), parse_size("50KB"), parse_size("200000")
        (1572864, 50000, 200000)
    """
    return _parse(value, _SIZE_UNITS, what, '"50KB", "50k", "1.5MiB" or "200000"')


def parse_count(value: str | int, what: str = "count") -> int:
    """An operation count from "1.2M", "500K", "3G", "1_000_000" or an int (K/M/G = 1000-based).

    Example:
        >>> parse_count("1.2M"), parse_count("500k"), parse_count(7)
        (1200000, 500000, 7)
    """
    return _parse(value, _COUNT_UNITS, what, '"1.2M", "500K" or "1000000"')


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits for the .tflite files matching `pattern` (a glob). At least one limit is set.

    Example:
        >>> Budget("models/*.tflite", max_coded_bytes=parse_size("50KB")).max_coded_bytes
        50000
    """

    pattern: str
    max_raw_bytes: int | None = None
    max_zip_bytes: int | None = None
    max_gzip_bytes: int | None = None
    max_coded_bytes: int | None = None
    max_macs: int | None = None
    max_p50_ms: tuple[tuple[str, float], ...] = ()  # (device model or "*", ms)

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern.strip():
            raise InputError(f"A budget needs a path glob. Received: pattern={self.pattern!r}")
        limits = self.limits()
        if not limits and not self.max_p50_ms:
            raise InputError(
                f"The budget for {self.pattern!r} sets no limit; give at least one of "
                "max_raw, max_zip, max_gzip, max_coded, max_macs, max_p50_ms."
            )
        for model, ms in self.max_p50_ms:
            check_number(f"max_p50_ms[{model!r}]", ms, above=0, hint="(milliseconds)")
        for field, value in limits.items():
            check_number(field, value, above=0, integer=True)

    def limits(self) -> dict[str, int]:
        """{field name: limit} of the limits that are set."""
        return {
            f: getattr(self, f) for f in _METRIC_OF_FIELD if getattr(self, f) is not None
        }

    @classmethod
    def from_config(cls, entry: dict[str, Any], where: str = "budget") -> Budget:
        """A budget from one `[[tool.mobile-opt.budget]]` table (sizes/counts as strings or ints).

        Raises:
            InputError: a missing `path`, an unknown key (with a close match), a bad value.
        """
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be a table. Received: {entry!r}")
        allowed = ["path", *_CONFIG_KEYS, "max_p50_ms"]
        for key in entry:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise InputError(f"Unknown key {key!r} in {where}; allowed: {', '.join(allowed)}.{hint}")
        if "path" not in entry:
            raise InputError(f"{where} has no `path` (a glob such as \"models/*.tflite\").")
        kwargs: dict[str, int] = {}
        for key, field in _CONFIG_KEYS.items():
            if key in entry:
                parse = parse_count if key == "max_macs" else parse_size
                kwargs[field] = parse(entry[key], f"{where}.{key}")
        p50 = entry.get("max_p50_ms", {})
        p50 = p50 if isinstance(p50, dict) else {"*": p50}
        return cls(pattern=entry["path"], max_p50_ms=tuple((str(k), v) for k, v in p50.items()), **kwargs)


@dataclasses.dataclass(frozen=True)
class BudgetResult:
    """One (file, metric) check. For metric "match" (glob matched nothing) limit/actual are None."""

    path: str
    pattern: str
    metric: str
    limit: int | None
    actual: int | None
    ok: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: path, pattern, metric, limit, actual, ok, note."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line saying what was checked and how it went (used by the CLI and errors)."""
        if self.metric == "match":
            return f"{self.pattern}: no file matches this budget's glob"
        unit = "" if self.metric == "macs" else " B"
        name = {"raw_bytes": "raw size", "zip_bytes": "zip size", "gzip_bytes": "gzip size",
                "coded_bytes": "coded size (estimate)", "macs": "MACs"}[
            self.metric
        ]
        relation = "<=" if self.ok else ">"
        text = f"{self.path}: {name} {self.actual:,}{unit} {relation} {self.limit:,}{unit}"
        return f"{text} ({self.note})" if self.note else text


@dataclasses.dataclass(frozen=True)
class BudgetReport:
    """Every check of `check_budgets`; `ok` is True when all held."""

    results: tuple[BudgetResult, ...]
    ok: bool

    @property
    def failures(self) -> tuple[BudgetResult, ...]:
        """The checks that did not hold."""
        return tuple(r for r in self.results if not r.ok)

    def raise_for_failures(self) -> None:
        """Raises BudgetExceeded naming every failed check (for use in tests / scripts).

        Example:
            >>> check_budgets(load_budgets("pyproject.toml")).raise_for_failures()  # doctest: +SKIP
        """
        if self.failures:
            lines = "; ".join(r.describe() for r in self.failures)
            raise BudgetExceeded(f"{len(self.failures)} budget check(s) failed: {lines}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: {"ok", "results": [BudgetResult.to_dict()]}."""
        return {"ok": self.ok, "results": [r.to_dict() for r in self.results]}


def load_budgets(pyproject_path: str | os.PathLike = "pyproject.toml") -> list[Budget]:
    """Reads the budgets under `[[tool.mobile-opt.budget]]` of a pyproject.toml.

    Args:
        pyproject_path: the TOML file (default "pyproject.toml"). Budget globs are relative
            to its directory when checked with `check_budgets(..., root=<that directory>)`.

    Returns:
        The budgets, in file order.

    Raises:
        InputError: the file is missing or not TOML, has no budgets, or a budget is invalid.

    Example:
        >>> budgets = load_budgets("pyproject.toml")  # doctest: +SKIP
    """
    path = Path(pyproject_path)
    config = read_toml(path, what="Config file", name="pyproject_path")
    section = config.get("tool", {}).get("mobile-opt", {})
    entries = section.get("budget") if isinstance(section, dict) else None
    if not entries:
        raise InputError(
            f"No budgets in {str(path)!r}. Add e.g.\n[[tool.mobile-opt.budget]]\n"
            'path = "models/*.tflite"\nmax_raw = "200KB"'
        )
    if isinstance(entries, dict):
        entries = [entries]  # [tool.mobile-opt.budget] written as a single table
    return [Budget.from_config(e, f"tool.mobile-opt.budget[{i}]") for i, e in enumerate(entries)]


def check_budgets(
    budgets: list[Budget],
    root: str | os.PathLike = ".",
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BudgetReport:
    """Checks every file matching each budget's glob against its limits.

    Args:
        budgets: the budgets (e.g. from `load_budgets`).
        root: directory relative globs are resolved from (default "."); reported paths are
            relative to it.
        progress: optional callback `progress(done, total)` after each budget.

    Returns:
        BudgetReport; a glob matching no file gives a failed "match" result.

    Raises:
        InputError: no budgets, or root is not a directory.
        ModelFormatError: a matched file is not a valid .tflite model.

    Example:
        >>> report = check_budgets([Budget("m.tflite", max_raw_bytes=100_000)])  # doctest: +SKIP
        >>> report.ok  # doctest: +SKIP
        True
    """
    from converters.flops import count_flops
    from converters.size import analyze

    if not budgets:
        raise InputError("check_budgets needs at least one Budget. Received: budgets=[]")
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"root must be a directory. Received: root={str(root)!r}")
    sizes: dict[Path, Any] = {}
    macs: dict[Path, Any] = {}
    results: list[BudgetResult] = []
    for done, budget in enumerate(budgets, 1):
        files = _match(base, budget.pattern)
        if not files:
            results.append(BudgetResult(budget.pattern, budget.pattern, "match", None, None, False,
                                        "no file matches this glob"))
        for file in files:
            shown = _shown(file, base)
            for field, limit in budget.limits().items():
                metric = _METRIC_OF_FIELD[field]
                note = ""
                if metric == "macs":
                    if file not in macs:
                        macs[file] = count_flops(file)
                    report = macs[file]
                    actual = report.total_macs
                    if report.unknown_ops:
                        note = f"lower bound: {len(report.unknown_ops)} op(s) not counted: " + ", ".join(
                            report.unknown_ops[:3])
                else:
                    if file not in sizes:
                        sizes[file] = analyze(file)
                    actual = getattr(sizes[file], metric)
                results.append(BudgetResult(shown, budget.pattern, metric, limit, actual, actual <= limit, note))
        if progress is not None:
            progress(done, len(budgets))
    return BudgetReport(results=tuple(results), ok=all(r.ok for r in results))


def _match(base: Path, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
    return sorted(Path(p) for p in glob.glob(full, recursive=True) if os.path.isfile(p))


def _shown(file: Path, base: Path) -> str:
    try:
        return file.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(file)
