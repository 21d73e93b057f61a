"""PNG chart of where a model's bytes go: per op type and per largest tensor, raw vs coded.

matplotlib is imported only when a chart is drawn, with the non-interactive Agg backend
(works without a display, e.g. in CI).

Example:
    >>> plot_size(analyze("model.tflite"), "size.png")          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from converters.size import SizeReport
from mobile_opt._lazy import pyplot
from mobile_opt.errors import InputError

__all__ = ["plot_size"]


def plot_size(report: SizeReport, path: str | Path, *, top: int = 20) -> Path:
    """Draws raw and coded bytes per op type and for the `top` largest tensors into a PNG.

    Args:
        report: a `SizeReport` from `analyze`.
        path: output .png path (parent directory must exist).
        top: number of tensors in the per-tensor panel. Default 20.

    Returns:
        The path written.

    Raises:
        InputError: `top` < 1, or the directory of `path` does not exist.
        DependencyError: matplotlib is not installed.
    """
    if not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer. Received: top={top!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"Cannot write the plot: directory {str(path.parent)!r} does not exist. "
                         f"Received: path={str(path)!r}")
    plt = pyplot()

    ops = list(report.op_types)
    tensors = sorted(report.counted_tensors, key=lambda t: -t.raw_bytes)[:top]
    fig, (ax_ops, ax_t) = plt.subplots(
        2, 1, figsize=(10, 3 + 0.3 * (len(ops) + len(tensors))),
        gridspec_kw={"height_ratios": [max(len(ops), 1) + 2, max(len(tensors), 1) + 2]},
    )
    try:
        _bars(ax_ops, [o.op_type for o in ops] + ["(graph overhead)"],
              [o.raw_bytes for o in ops] + [report.non_weight_bytes],
              [o.coded_bytes for o in ops] + [report.non_weight_bytes])
        ax_ops.set_title(f"{Path(report.source).name}: raw {report.raw_bytes:,} B (shipped), zip "
                         f"{report.zip_bytes:,} B, coded {report.coded_bytes:,} B (estimate)")
        _bars(ax_t, [_short(t.name) for t in tensors], [t.raw_bytes for t in tensors],
              [t.coded_bytes for t in tensors])
        ax_t.set_title(f"Largest {len(tensors)} weight tensors")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _bars(ax, labels: list[str], raw: list[int], coded: list[int]) -> None:
    y = range(len(labels))
    ax.barh([i - 0.2 for i in y], raw, height=0.4, label="raw (shipped)")
    ax.barh([i + 0.2 for i in y], coded, height=0.4, label="coded (estimate)")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("bytes")
    ax.legend(loc="lower right")


def _short(name: str, limit: int = 50) -> str:
    # TFLite fuses op names with ';' — the last part names the weight.
    name = name.split(";")[-1]
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
