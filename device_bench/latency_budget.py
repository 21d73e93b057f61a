"""Median-latency budgets (`max_p50_ms` in `[[tool.mobile-opt.budget]]`) checked on results.

A budget's glob selects results by model path (relative to the config's directory, or by
file name when the results were measured elsewhere); its `max_p50_ms` names device models
(`ro.product.model`; "*" for any other). The runs of one (model, device model, backend,
threads) are pooled and their median is compared with the limit.

The median carries a 95 % distribution-free interval (order statistics). A budget fails
only when the whole interval is above the limit — noise alone never fails it; a limit
inside the interval passes with a note saying so. A device model named in a budget with no
result is "not testable" (reported, never a silent pass).

Example:
    report = check_latency_budgets(load_budgets("pyproject.toml"), read_jsonl(Path("r.jsonl")))
"""

from __future__ import annotations

import fnmatch
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from device_bench.intervals import ms
from device_bench.regression import RegressionCheck, latency_values, median_interval, summary_stats

__all__ = ["check_latency_budgets"]


def _matches(result: Any, pattern: str, root: Path) -> bool:
    path = Path(result.model_path)
    try:
        shown = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = path.as_posix()
    return fnmatch.fnmatch(shown, pattern) or fnmatch.fnmatch(path.name, os.path.basename(pattern))


def _limit_for(device_model: str, limits: dict[str, float]) -> float | None:
    return limits.get(device_model, limits.get("*"))


def check_latency_budgets(budgets: Sequence[Any], results: Sequence[Any],
                          root: str | os.PathLike = ".") -> list[RegressionCheck]:
    """One check per (budget, model, device model, backend, threads) with a `max_p50_ms`.

    Args:
        budgets: `converters.budget.Budget`s (those without `max_p50_ms` are ignored).
        results: `BenchmarkResult`s (e.g. `read_jsonl(path)`).
        root: directory the globs are relative to (default ".").

    Returns:
        RegressionCheck rows (metric "p50_latency", status "ok", "over" or "not testable");
        `limit` and `actual` in µs.
    """
    base = Path(root)
    checks: list[RegressionCheck] = []
    for budget in budgets:
        limits = dict(budget.max_p50_ms)
        if not limits:
            continue
        groups: dict[tuple, list] = {}
        for r in results:
            model = str(r.device.get("model"))
            if _matches(r, budget.pattern, base) and _limit_for(model, limits) is not None:
                groups.setdefault((Path(r.model_path).name, model, r.backend, r.threads), []).append(r)
        seen_models = {key[1] for key in groups}
        for model in sorted(set(limits) - {"*"} - seen_models):
            checks.append(RegressionCheck(budget.pattern, model, "p50_latency", limits[model] * 1000, None,
                                          True, "not testable", f"no result from a {model!r} matches this budget"))
        if not groups and "*" in limits and len(limits) == 1:
            checks.append(RegressionCheck(budget.pattern, "*", "p50_latency", limits["*"] * 1000, None,
                                          True, "not testable", "no result matches this budget's glob"))
        for (name, model, backend, threads), runs in groups.items():
            where = f"{model} {backend}×{threads}"
            limit_us = _limit_for(model, limits) * 1000
            got = [v for v in (latency_values(r) for r in runs) if v is not None]
            summary = summary_stats(runs)
            if got:
                values = np.concatenate([v for v, _ in got])
                source = "samples" if all(s == "samples" for _, s in got) else "histogram"
                median, n = float(np.median(values)), values.size
                low, high = median_interval(values)
                how = ", binned" if source == "histogram" else ""
            elif summary is not None:
                # The real tool keeps no per-run times: the median's standard error from its std
                # (1.2533 σ/√n, the large-sample value), so the interval is an approximation.
                source, median, n = "summary", summary.p50_us, summary.count
                half = 1.96 * 1.2533 * summary.std_us / math.sqrt(n)
                low, high = median - half, median + half
                how = ", approximate: from the tool's std (no per-run times)"
            else:
                checks.append(RegressionCheck(name, where, "p50_latency", limit_us, None, True, "not testable",
                                              "no successful run with per-run times, a histogram or the "
                                              "tool's statistics"))
                continue
            over = low > limit_us
            note = f"95% {ms(low)}–{ms(high)} ms, n={n}" + how
            if not over and median > limit_us:
                note += "; the limit is inside the interval: within noise"
            checks.append(RegressionCheck(name, where, "p50_latency", limit_us, median, not over,
                                          "over" if over else "ok", note, source=source))
    return checks
