"""Latency distributions as a PNG: one box (or violin) per model × backend × threads.

Uses matplotlib's Agg backend (no display needed). Only results with status "ok" and raw
samples are drawn; the others are listed under the plot so nothing disappears silently.

Example:
    plot_latency(read_jsonl(Path("results.jsonl")), Path("latency.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from device_bench.results import BenchmarkResult
from mobile_opt.errors import InputError

__all__ = ["plot_latency"]

_KINDS = ("box", "violin")


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{Path(r.model_path).name}\n{r.backend} ×{r.threads}\n{r.device.get('serial')}"
        for r in drawable
    ]
    data = [[s / 1000.0 for s in r.samples_us] for r in drawable]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(drawable) + 1.5), 4.8))
    try:
        if kind == "box":
            ax.boxplot(data, showfliers=True)
        else:
            ax.violinplot(data, showmedians=True)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("latency per inference (ms)")
        ax.set_title(title or "Inference latency")
        ax.grid(axis="y", alpha=0.3)
        if skipped:
            note = "not drawn: " + "; ".join(
                f"{Path(r.model_path).name} {r.backend}×{r.threads} ({r.status})" for r in skipped
            )
            fig.text(0.01, 0.01, note[:200], fontsize=7)
        fig.tight_layout(rect=(0, 0.04 if skipped else 0, 1, 1))
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
