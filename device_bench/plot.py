"""Latency distributions as a PNG: one box (or violin) per model × backend × threads.

Whiskers span p5–p95 (runs beyond are dots), the median is labelled on each box, and the
axis turns logarithmic when the slowest run is over 10× the fastest, so outliers cannot
flatten the boxes.

Uses matplotlib's Agg backend (no display needed). Only results with status "ok" and raw
samples are drawn; the others are listed under the plot so nothing disappears silently.

Example:
    plot_latency(read_jsonl(Path("results.jsonl")), Path("latency.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from device_bench.intervals import ms
from device_bench.results import BenchmarkResult
from mobile_opt._lazy import pyplot
from mobile_opt.errors import InputError

__all__ = ["plot_latency"]

_KINDS = ("box", "violin")
_LOG_RATIO = 10.0  # slowest / fastest run beyond which the axis is logarithmic


def _log_axis(data: Sequence[Sequence[float]]) -> bool:
    """True when the slowest run is over `_LOG_RATIO` × the fastest.

    A few slow runs (first touches, a GC, a context switch) squash every box to a line at 0
    on a linear axis; a log axis keeps boxes of 0.05 ms and 50 ms readable side by side.
    """
    low = min(min(d) for d in data)
    high = max(max(d) for d in data)
    return low > 0 and high / low > _LOG_RATIO


def plot_latency(
    results: Sequence[BenchmarkResult], path: Path, *, kind: str = "box", title: str | None = None
) -> Path:
    """Draws the per-run latency distribution of each result and saves it as PNG.

    Args:
        results: benchmark results (those without samples are named in a footnote).
        path: the .png file to write (its directory must exist).
        kind: "box" (default) or "violin".
        title: figure title (default: "Inference latency").

    Returns:
        `path`.

    Raises:
        InputError: unknown `kind`, or no result has samples to draw.
    """
    if kind not in _KINDS:
        raise InputError(f"kind must be one of {_KINDS}. Received: kind={kind!r}")
    drawable = [r for r in results if r.status == "ok" and r.samples_us]
    skipped = [r for r in results if not (r.status == "ok" and r.samples_us)]
    if not drawable:
        raise InputError(
            "nothing to plot: no result has per-run samples "
            f"(statuses: {sorted({r.status for r in results})}). Run `mobile-opt bench` first."
        )
    plt = pyplot()
    labels = [
        f"{Path(r.model_path).name}\n{r.backend} ×{r.threads}"
        + (f"\n{r.device.get('serial')}" if len({str(d.device.get('serial')) for d in drawable}) > 1 else "")
        for r in drawable
    ]
    data = [[s / 1000.0 for s in r.samples_us] for r in drawable]
    log_scale = _log_axis(data)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.7 * len(drawable) + 1.5), 5.0))
    try:
        if kind == "box":
            ax.boxplot(data, whis=(5, 95), showfliers=True, flierprops={"markersize": 2, "alpha": 0.4},
                       medianprops={"color": "tab:red", "linewidth": 1.5})
            what = "box: quartiles, red line: median, whiskers: p5–p95, dots: runs beyond"
        else:
            ax.violinplot(data, showmedians=True)
            what = "violin: density of runs, line: median"
        if log_scale:
            from matplotlib.ticker import FuncFormatter

            ax.set_yscale("log")
            plain = FuncFormatter(lambda value, _pos: f"{value:g}")  # 0.1, 1, 10 rather than 10^-1
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _pos: ""))
        for i, values in enumerate(data, start=1):
            ordered = sorted(values)
            median = ordered[len(ordered) // 2]
            ax.annotate(f"median {ms(median, from_ms=True)} ms\n{len(values)} runs", (i + 0.28, median), fontsize=7,
                        va="center", ha="left")
        ax.set_xlim(0.5, len(labels) + 0.9)  # room for the median labels right of each box
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("latency per inference (ms" + (", log scale)" if log_scale else ")"))
        ax.set_title(title or "Inference latency")
        ax.grid(axis="y", alpha=0.3, which="both" if log_scale else "major")
        note = what
        if skipped:
            note += "\nnot drawn: " + "; ".join(
                f"{Path(r.model_path).name} {r.backend}×{r.threads} ({r.status})" for r in skipped
            )[:200]
        fig.text(0.01, 0.01, note, fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, 0.08 if skipped else 0.05, 1, 1))
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
