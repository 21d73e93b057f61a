"""Latency and energy regression gates: is the new run slower than the old, beyond noise?

Pure statistics on `BenchmarkResult`s (no I/O). Results are paired by (model file name,
device model, backend, threads); the runs of one pair on several devices of the same model
are pooled. A pair *regressed* when both hold:

- its median latency grew by more than `threshold` (e.g. 0.05 for 5 %), and
- that growth is statistically significant: a one-sided Mann–Whitney U test (scipy) that the
  new runs are slower than the old runs scaled by (1 + threshold), at level `alpha`.

Testing against the scaled baseline (not against "no change") is what keeps noise from
failing a build: a real 3 % drift on a 5 % gate never fails, however many runs there are,
and a pair whose true change is exactly the threshold fails with probability ≤ `alpha`.
The test treats the runs of one invocation as exchangeable: drift *between* invocations
(thermal state, other load on the device) is invisible to it, so set the threshold above the
device's run-to-run drift of the median (a few % on a quiet phone; measure yours).

Latency comes from the raw per-run samples when a result has them (`samples_us`), else from
the binned latency histogram (`latency.histogram = {"edges_us", "counts"}`): each run is then
represented by its bin's geometric centre, so the test runs on tied values (scipy's tie
correction applies) and the median is known to one bin's width. Results of the real LiteRT
tool have neither (its result proto keeps count, mean, std and percentiles only): they are
gated by Welch's t-test on those statistics, the medians moving past the threshold too. A
pair with none of these is "not testable" — reported as such, never passed off as a test.

Energy per inference has no per-run samples; each figure carries a worst-case bound
(`energy_per_inference_bound_j`, proved honest in tests/device_bench/test_energy_honesty.py).
It regresses only when even the new figure's lowest value exceeds the old figure's highest
value × (1 + threshold); a figure without a bound (not measured) is not testable. The power
rails (`device_bench.rails`) are gated the same way: their sum and each rail.

Example:
    >>> old = [1000.0 + i for i in range(60)]
    >>> new = [2000.0 + i for i in range(60)]
    >>> r = compare_latency(old, new, threshold=0.05)
    >>> r.regressed, round(r.ratio, 2)
    (True, 1.97)
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from device_bench.intervals import ms
from mobile_opt.errors import InputError

__all__ = [
    "LatencyTest",
    "RegressionCheck",
    "RegressionReport",
    "check_regressions",
    "latency_values",
    "median_interval",
    "parse_threshold",
    "compare_latency",
]

DEFAULT_ALPHA = 0.01
_BOOTSTRAP_RESAMPLES = 1000
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_threshold(value: str | float, what: str = "--fail-on-regression") -> float:
    """A relative threshold from "5%", "5" (both 5 %) or a float fraction (0.05).

    Raises:
        InputError: unreadable or not positive.

    Example:
        >>> parse_threshold("5%"), parse_threshold("12.5"), parse_threshold(0.05)
        (0.05, 0.125, 0.05)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        fraction = float(value)
    else:
        match = _PERCENT.match(str(value))
        if not match:
            raise InputError(f"Cannot read {what}; expected a percentage such as \"5%\". "
                             f"Received: {what}={value!r}")
        fraction = float(match.group(1)) / 100.0
    if not 0 < fraction < 10:
        raise InputError(f"{what} must be a positive percentage below 1000%. Received: {what}={value!r}")
    return fraction


def _histogram_values(histogram: Any) -> np.ndarray | None:
    """Each run of a binned histogram as its bin's geometric centre (arithmetic if an edge is 0)."""
    if histogram is None:
        return None
    get = histogram.get if isinstance(histogram, dict) else lambda k: getattr(histogram, k, None)
    edges, counts = get("edges_us"), get("counts")
    if not edges or not counts or len(edges) != len(counts) + 1:
        return None
    lo, hi = np.asarray(edges[:-1], float), np.asarray(edges[1:], float)
    centres = np.where(lo > 0, np.sqrt(np.clip(lo, 0, None) * hi), (lo + hi) / 2)
    values = np.repeat(centres, np.asarray(counts, int))
    return values if values.size else None


def latency_values(result: Any) -> tuple[np.ndarray, str] | None:
    """(per-run latencies in µs, "samples" | "histogram") of an ok result, or None if it has neither."""
    if result.status != "ok":
        return None
    if result.samples_us:
        return np.asarray(result.samples_us, float), "samples"
    # Results written without --samples carry a log-binned histogram instead of raw samples.
    values = _histogram_values(getattr(result.latency, "histogram", None))
    return (values, "histogram") if values is not None else None


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median from order statistics (binomial, n ≥ 1).

    With few runs the interval is the whole sample range (the widest honest answer).

    Example:
        >>> median_interval(list(range(1, 101)))
        (40.0, 61.0)
    """
    from device_bench.intervals import quantile_interval

    ordered = np.sort(np.asarray(values, float))
    if ordered.size == 0:
        raise InputError("median_interval needs at least one value. Received: values=[]")
    low, high = quantile_interval(ordered, 0.5, confidence)
    return (float(ordered[0]) if low is None else low), (float(ordered[-1]) if high is None else high)


@dataclass(frozen=True)
class LatencyTest:
    """One latency comparison: medians (µs), their ratio with a 95 % bootstrap interval, the
    one-sided Mann–Whitney p-value against the baseline scaled by (1 + threshold)."""

    old_median_us: float
    new_median_us: float
    ratio: float
    ratio_low: float
    ratio_high: float
    p_value: float
    threshold: float
    alpha: float
    n_old: int
    n_new: int
    regressed: bool
    testable: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _can_reach(alpha: float, n_old: int, n_new: int) -> bool:
    """Whether Mann–Whitney's smallest one-sided p-value, 1 / C(n_old + n_new, n_old), is < alpha."""
    return math.comb(n_old + n_new, n_old) > 1 / alpha  # int vs float compares exactly


def _bootstrap_medians(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # In chunks: tens of thousands of runs × resamples would not fit in memory at once.
    chunk = max(1, 4_000_000 // values.size)
    return np.concatenate([
        np.median(rng.choice(values, (min(chunk, _BOOTSTRAP_RESAMPLES - i), values.size)), axis=1)
        for i in range(0, _BOOTSTRAP_RESAMPLES, chunk)
    ])


def compare_latency(old: Sequence[float], new: Sequence[float], *, threshold: float,
                 alpha: float = DEFAULT_ALPHA, seed: int = 0) -> LatencyTest:
    """Is `new` slower than `old` by more than `threshold`, beyond noise?

    Args:
        old, new: per-run latencies (µs) of the baseline and the candidate.
        threshold: relative slowdown allowed (0.05 = 5 %).
        alpha: significance level of the one-sided test (default 0.01).
        seed: seed of the bootstrap that gives the ratio's interval (default 0).

    Returns:
        LatencyTest; `testable` is False when the samples are too few for the test to ever
        reach `alpha` (then `regressed` is False and `reason` says so).
    """
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(old, float), np.asarray(new, float)
    if a.size == 0 or b.size == 0:
        raise InputError(f"compare_latency needs samples on both sides. Received: n_old={a.size}, n_new={b.size}")
    old_median, new_median = float(np.median(a)), float(np.median(b))
    ratio = new_median / old_median if old_median > 0 else math.inf
    rng = np.random.default_rng(seed)
    boot_a, boot_b = _bootstrap_medians(a, rng), _bootstrap_medians(b, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = np.percentile(boot_b / boot_a, [2.5, 97.5])
    common = dict(old_median_us=old_median, new_median_us=new_median, ratio=ratio,
                  ratio_low=float(low), ratio_high=float(high), threshold=threshold, alpha=alpha,
                  n_old=int(a.size), n_new=int(b.size))
    if not _can_reach(alpha, a.size, b.size):
        return LatencyTest(p_value=1.0, regressed=False, testable=False,
                           reason=f"too few runs ({a.size} old, {b.size} new) to reach p < {alpha}",
                           **common)
    p = float(mannwhitneyu(b, a * (1 + threshold), alternative="greater").pvalue)
    return LatencyTest(p_value=p, regressed=bool(ratio > 1 + threshold and p < alpha),
                       testable=True, **common)


@dataclass(frozen=True)
class RegressionCheck:
    """One (model, device model, backend, threads, metric) gate; read like a `BudgetResult`.

    metric: "p50_latency" (µs), "energy" (the battery's J per inference), "energy_rails" (the
    sum of the power rails) or "energy_rail:<NAME>" (one rail). `limit` is the old value
    × (1 + threshold), `actual` the new value; status is "ok", "regressed" or "not testable"
    (`ok` is False only for "regressed"). `note` carries the ratio, its interval and the p-value.
    Latency budgets (`device_bench.latency_budget`) use the same rows with no `old`: status
    "ok", "over" or "not testable", `limit` the budget in µs.
    """

    path: str
    pattern: str
    metric: str
    limit: float | None
    actual: float | None
    ok: bool
    status: str
    note: str = ""
    old: float | None = None
    ratio: float | None = None
    p_value: float | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line: what was compared and the verdict (used by every output format)."""
        what = {"p50_latency": "median latency", "energy": "energy per inference",
                "energy_rails": "energy per inference (rails)"}.get(
            self.metric, f"energy per inference ({self.metric.partition(':')[2]} rail)")
        head = f"{self.path} [{self.pattern}]: {what}"
        if self.status == "not testable":
            return f"{head} not testable ({self.note})"
        if self.status == "over" or (self.old is None and self.status == "ok"):
            relation = ">" if self.status == "over" else "<="  # a budget (no baseline)
            return f"{head} {ms(self.actual)} ms {relation} {ms(self.limit)} ms ({self.note})"
        verdict = "regressed" if self.status == "regressed" else "no significant regression"
        return f"{head} {verdict} ({self.note})"


@dataclass(frozen=True)
class RegressionReport:
    """Every gate of `check_regressions`; `ok` is False when any pair regressed."""

    results: tuple[RegressionCheck, ...]
    ok: bool
    threshold: float
    alpha: float

    @property
    def failures(self) -> tuple[RegressionCheck, ...]:
        return tuple(r for r in self.results if not r.ok)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: {"ok", "threshold", "alpha", "results": [RegressionCheck.to_dict()]}."""
        return {"ok": self.ok, "threshold": self.threshold, "alpha": self.alpha,
                "results": [r.to_dict() for r in self.results]}


def _pair_key(result: Any) -> tuple[str, str, str, int]:
    return (Path(result.model_path).name, str(result.device.get("model")), result.backend, result.threads)


def _pooled_latency(results: list) -> tuple[np.ndarray, str] | None:
    got = [v for v in (latency_values(r) for r in results) if v is not None]
    if not got:
        return None
    source = "samples" if all(s == "samples" for _, s in got) else "histogram"
    return np.concatenate([v for v, _ in got]), source


def summary_stats(results: list) -> Any | None:
    """The latency statistics of the last ok run that has count, mean, std and median."""
    for r in reversed(results):
        lat = r.latency
        if r.status == "ok" and lat is not None and lat.count and lat.count > 1 and None not in (
                lat.mean_us, lat.std_us, lat.p50_us):
            return lat
    return None


def _summary_check(name: str, where: str, a: Any, b: Any, threshold: float, alpha: float) -> RegressionCheck:
    """Gate from the tool's own statistics (LiteRT's result proto keeps no per-run times).

    Welch's t-test that the new mean exceeds the old mean × (1 + threshold), from count, mean
    and std; the medians must have moved past the threshold too.
    """
    from scipy.stats import ttest_ind_from_stats

    scale = 1 + threshold
    test = ttest_ind_from_stats(b.mean_us, b.std_us, b.count, a.mean_us * scale, a.std_us * scale, a.count,
                                equal_var=False, alternative="greater")
    p = float(test.pvalue) if math.isfinite(test.pvalue) else 1.0
    ratio = b.p50_us / a.p50_us
    regressed = ratio > scale and p < alpha
    note = (f"×{ratio:.3f} (medians), p={p:.2g} vs +{threshold:.0%}, n={a.count}/{b.count}: Welch's t-test "
            "on the tool's mean/std (no per-run times in its result)")
    return RegressionCheck(name, where, "p50_latency", a.p50_us * scale, b.p50_us, not regressed,
                           "regressed" if regressed else "ok", note, old=a.p50_us, ratio=ratio, p_value=p,
                           source="summary")


def _latency_check(name: str, where: str, old: list, new: list, threshold: float, alpha: float) -> RegressionCheck:
    a, b = _pooled_latency(old), _pooled_latency(new)
    if (a is None or b is None) and summary_stats(old) is not None and summary_stats(new) is not None:
        return _summary_check(name, where, summary_stats(old), summary_stats(new), threshold, alpha)
    if a is None or b is None:
        side = "baseline" if a is None else "new results"
        has_ok = any(r.status == "ok" for r in (old if a is None else new))
        why = (f"the {side} have neither raw samples nor a latency histogram" if has_ok
               else f"no successful run in the {side}")
        return RegressionCheck(name, where, "p50_latency", None, None, True, "not testable", why)
    test = compare_latency(a[0], b[0], threshold=threshold, alpha=alpha)
    source = "samples" if a[1] == b[1] == "samples" else "histogram"
    if not test.testable:
        return RegressionCheck(name, where, "p50_latency", test.old_median_us * (1 + threshold),
                               test.new_median_us, True, "not testable", test.reason,
                               old=test.old_median_us, ratio=test.ratio, source=source)
    note = (f"×{test.ratio:.3f} [95% {test.ratio_low:.3f}–{test.ratio_high:.3f}], "
            f"p={test.p_value:.2g} vs +{threshold:.0%}, n={test.n_old}/{test.n_new}"
            + (", binned" if source == "histogram" else ""))
    status = "regressed" if test.regressed else "ok"
    return RegressionCheck(name, where, "p50_latency", test.old_median_us * (1 + threshold),
                           test.new_median_us, not test.regressed, status, note,
                           old=test.old_median_us, ratio=test.ratio, p_value=test.p_value, source=source)


def _battery_figure(energy) -> tuple[float | None, float | None]:
    return energy.energy_per_inference_j, energy.energy_per_inference_bound_j


def _rail_figure(rail: str | None):
    """The rails' sum (rail None) or one rail's figure of an energy block."""
    def figure(energy) -> tuple[float | None, float | None]:
        rails = energy.rails
        if rails is None:
            return None, None
        if rail is None:
            return rails.energy_per_inference_j, rails.energy_per_inference_bound_j
        one = rails.per_rail.get(rail)
        return (one.energy_per_inference_j, one.energy_per_inference_bound_j) if one else (None, None)
    return figure


def _energy_of(results: list, figure=_battery_figure) -> tuple[float, float] | None:
    """(energy per inference, its stated bound) of the last run that measured it."""
    for r in reversed(results):
        if r.status == "ok" and r.energy is not None:
            value, bound = figure(r.energy)
            if value is not None and bound is not None:
                return value, bound
    return None


def _energy_check(name: str, where: str, old: list, new: list, threshold: float,
                  metric: str = "energy", figure=_battery_figure) -> RegressionCheck | None:
    if not any(r.energy is not None for r in [*old, *new]):
        return None  # energy was not asked for: nothing to gate
    a, b = _energy_of(old, figure), _energy_of(new, figure)
    if a is None or b is None or a[0] <= 0:
        side = "baseline" if a is None or a[0] <= 0 else "new results"
        return RegressionCheck(name, where, metric, None, None, True, "not testable",
                               f"the {side} have no measured energy per inference with a bound")
    limit = (a[0] + a[1]) * (1 + threshold)
    ratio = b[0] / a[0]
    # Worst-case bounds, not standard errors: beyond them the change is not the gauge's doing.
    regressed = b[0] - b[1] > limit
    note = (f"×{ratio:.3f}; new {b[0]:.3g} ± {b[1]:.2g} J vs old {a[0]:.3g} ± {a[1]:.2g} J "
            f"+{threshold:.0%} (regressed only beyond both stated bounds)")
    return RegressionCheck(name, where, metric, limit, b[0], not regressed,
                           "regressed" if regressed else "ok", note, old=a[0], ratio=ratio)


def _rail_checks(name: str, where: str, old: list, new: list, threshold: float) -> list[RegressionCheck]:
    """The rails' sum and each rail, gated like the battery figure, where either side's phone has rails."""
    rails = [r.energy.rails for r in [*old, *new] if r.energy is not None and r.energy.rails is not None
             and r.energy.rails.sources]
    if not rails:
        return []
    names = list(dict.fromkeys(n for x in rails for n in x.per_rail))
    return [_energy_check(name, where, old, new, threshold, metric, _rail_figure(rail))
            for metric, rail in [("energy_rails", None), *((f"energy_rail:{n}", n) for n in names)]]


def check_regressions(old: Sequence[Any], new: Sequence[Any], *, threshold: float,
                      alpha: float = DEFAULT_ALPHA) -> RegressionReport:
    """Gates every (model, device model, backend, threads) pair of `new` against `old`.

    Args:
        old, new: `BenchmarkResult`s (e.g. `read_jsonl(baseline)` and this run's results).
        threshold: relative slowdown allowed (0.05 = 5 %), for latency and energy alike.
        alpha: significance level (default 0.01).

    Returns:
        RegressionReport; pairs only in `old` are not gated (a model removed is not slower),
        pairs only in `new` are "not testable" (no baseline).

    Example:
        report = check_regressions(read_jsonl(Path("baseline.jsonl")), results, threshold=0.05)
    """
    old_by: dict[tuple, list] = {}
    new_by: dict[tuple, list] = {}
    for r in old:
        old_by.setdefault(_pair_key(r), []).append(r)
    for r in new:
        new_by.setdefault(_pair_key(r), []).append(r)
    checks: list[RegressionCheck] = []
    for key, runs in new_by.items():
        name, where = key[0], f"{key[1]} {key[2]}×{key[3]}"
        base = old_by.get(key, [])
        if not base:
            checks.append(RegressionCheck(name, where, "p50_latency", None, None, True, "not testable",
                                          "no baseline result for this model, device model, backend and threads"))
            continue
        checks.append(_latency_check(name, where, base, runs, threshold, alpha))
        energy = _energy_check(name, where, base, runs, threshold)
        if energy is not None:
            checks.append(energy)
        checks.extend(_rail_checks(name, where, base, runs, threshold))
    return RegressionReport(tuple(checks), all(c.ok for c in checks), threshold, alpha)
