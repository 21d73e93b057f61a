"""The report's figures: matplotlib (Agg) drawn into PNG bytes, one colour per model.

Axes turn logarithmic when the values span more than a decade. Each function takes plain
dicts as the result files hold them, so files from older and newer versions both draw.
The Pareto figure is `_auto_report`'s own, fed the auto JSON.
"""

from __future__ import annotations

import io
import math
from types import SimpleNamespace
from typing import Sequence

from mobile_opt._lazy import pyplot

__all__ = ["colours", "energy_png", "rails_png", "latency_png", "ops_png", "pareto_png", "size_png", "stages_png"]

_DECADE = 10.0


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=96)
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def _log_x(ax) -> None:
    """Log x axis with plain tick labels (0.1, 1, 10, not 10^-1)."""
    import matplotlib.ticker

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) > 1 and max(positive) / min(positive) > _DECADE


def colours(models: Sequence[str]) -> dict[str, str]:
    """A stable colour per model name (matplotlib's tab10 cycle, in first-seen order)."""
    names = list(dict.fromkeys(models))
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def stages_png(stages: Sequence[dict], title: str, baseline: float | None = None) -> bytes:
    """Accuracy after each stage (line, baseline dashed) and sparsity (bars) of one run."""
    plt = pyplot()
    labels = [f"{s.get('index', i)}: {s.get('kind')}" for i, s in enumerate(stages)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = range(len(stages))
    sparsity = [(s.get("sparsity") or 0.0) * 100 for s in stages]
    ax.bar(x, sparsity, color="0.8", label="sparsity (%)")
    ax.set_ylabel("sparsity (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(list(x), labels)
    acc_ax = ax.twinx()
    accuracy = [s.get("accuracy") for s in stages]
    acc_ax.plot([i for i, a in zip(x, accuracy) if a is not None],
                [a * 100 for a in accuracy if a is not None], "o-", color="C3", label="accuracy (%)")
    shown = [a * 100 for a in accuracy if a is not None]
    if baseline is not None:
        acc_ax.axhline(baseline * 100, color="C3", ls="--", lw=1, label="baseline accuracy")
        shown.append(baseline * 100)
    if shown:  # at least ±2 pp around the values, so a 0.1 pp wiggle does not look like a cliff
        middle, half = (max(shown) + min(shown)) / 2, max((max(shown) - min(shown)) / 2 + 0.5, 2.0)
        acc_ax.set_ylim(middle - half, middle + half)
    acc_ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + acc_ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left", fontsize=8)
    return _png(fig)


def size_png(report: dict, top: int = 10) -> bytes:
    """Raw vs coded bytes per op type (plus graph overhead) and for the largest tensors."""
    plt = pyplot()
    ops = list(report.get("op_types", ()))
    tensors = sorted((t for t in report.get("tensors", ()) if not t.get("shared_buffer")),
                     key=lambda t: -t["raw_bytes"])[:top]
    rows_ops = [(o["op_type"], o["raw_bytes"], o["coded_bytes"]) for o in ops]
    rows_ops.append(("(graph overhead)", report["non_weight_bytes"], report["non_weight_bytes"]))
    rows_t = [(_short(t["name"]), t["raw_bytes"], t["coded_bytes"]) for t in tensors]
    fig, axes = plt.subplots(2, 1, figsize=(8, 1.6 + 0.28 * (len(rows_ops) + len(rows_t)) + 1.2),
                             gridspec_kw={"height_ratios": [len(rows_ops) + 1.5, max(len(rows_t), 1) + 1.5]})
    for ax, rows, title in ((axes[0], rows_ops, "per op type"), (axes[1], rows_t, f"largest {len(rows_t)} tensors")):
        y = range(len(rows))
        ax.barh([i - 0.2 for i in y], [r[1] for r in rows], height=0.4, color="C7", label="raw (shipped)")
        ax.barh([i + 0.2 for i in y], [r[2] for r in rows], height=0.4, color="C0", label="coded (estimate)")
        ax.set_yticks(list(y), [r[0] for r in rows], fontsize=8)
        ax.invert_yaxis()
        if _spans_decades([v for r in rows for v in r[1:]]):
            _log_x(ax)
            ax.set_xlabel("bytes (log)")
        else:
            ax.set_xlabel("bytes")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def latency_png(rows: Sequence[dict], colour: dict[str, str]) -> bytes:
    """One line per (model, backend, threads, device): the run distribution and p50/p90/p99.

    `rows` items: label, model, latency (the result's dict), samples_us (may be empty).
    The distribution is the stored histogram, or one made from raw samples on log bins.
    """
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.75 * len(rows)))
    values = []
    for i, row in enumerate(rows):
        lat, y = row["latency"], len(rows) - 1 - i
        edges, counts = _distribution(lat, row.get("samples_us") or ())
        c = colour[row["model"]]
        if edges is not None and max(counts, default=0) > 0:
            top = max(counts)
            heights = [0.7 * n / top for n in counts]
            ax.stairs(np.array(heights) + y, np.array(edges) / 1000, baseline=y, fill=True, color=c, alpha=0.35)
            values += [edges[0], edges[-1]]
        for key, marker, size in (("p50_us", "o", 60), ("p90_us", "|", 160), ("p99_us", "x", 50)):
            if lat.get(key) is not None:
                ax.scatter([lat[key] / 1000], [y], marker=marker, s=size, color=c, zorder=3)
                values.append(lat[key])
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8)
    ax.set_ylim(-0.3, len(rows) + 0.2)
    if _spans_decades(values):
        _log_x(ax)
        ax.set_xlabel("latency per inference (ms, log)")
    else:
        ax.set_xlabel("latency per inference (ms)")
    handles = [plt.Line2D([], [], color="k", marker=m, ls="", label=n)
               for m, n in (("o", "p50"), ("|", "p90"), ("x", "p99"))]
    handles += [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.35, label=m) for m, c in colour.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.grid(axis="x", alpha=0.3, which="both")
    return _png(fig)


def _distribution(latency: dict, samples: Sequence[float]):
    hist = latency.get("histogram")
    if hist and hist.get("edges_us") and hist.get("counts"):
        return list(hist["edges_us"]), list(hist["counts"])
    if samples:
        import numpy as np

        low, high = math.log10(max(min(samples), 1e-3)), math.log10(max(max(samples), 1e-3))
        edges = np.logspace(low, high + 1e-9, min(40, max(len(samples) // 2, 5)) + 1)
        counts, edges = np.histogram(samples, bins=edges)
        return list(edges), list(counts)
    return None, []


def energy_png(rows: Sequence[dict], colour: dict[str, str]) -> bytes:
    """Energy per inference (mJ) per measured run: spread as error bar, bound as a band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.5 * len(rows)))
    values = []
    for i, row in enumerate(rows):
        e, y = row["energy"], len(rows) - 1 - i
        mj = e["energy_per_inference_j"] * 1000
        spread = (e.get("energy_per_inference_spread_j") or 0) * 1000
        bound = (e.get("energy_per_inference_bound_j") or 0) * 1000
        c = colour[row["model"]]
        ax.barh([y], [2 * bound], left=[mj - bound], height=0.5, color=c, alpha=0.2)
        ax.errorbar([mj], [y], xerr=[[spread], [spread]], fmt="o", color=c, capsize=4)
        values += [mj, max(mj - bound, mj / 100), mj + bound]
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8)
    if _spans_decades(values):
        _log_x(ax)
    ax.set_xlabel("energy per inference (mJ); bar = ±spread, band = ±bound")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def rails_png(rows: Sequence[dict]) -> bytes:
    """Energy per inference per rail (mJ), one stacked bar per run; the line is the sum's bound."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.5 * len(rows)))
    names = list(dict.fromkeys(n for row in rows for n in row["rails"]["per_rail"]))
    palette = plt.get_cmap("tab20")
    for i, row in enumerate(rows):
        y, left = len(rows) - 1 - i, 0.0
        for k, name in enumerate(names):
            rail = row["rails"]["per_rail"].get(name)
            # A rail at idle reads a little below zero as often as above: it adds nothing here.
            mj = max(rail["energy_per_inference_j"] * 1000, 0.0) if rail else 0.0
            ax.barh([y], [mj], left=[left], height=0.5, color=palette(k % 20),
                    label=name if i == 0 else None)
            left += mj
        total = row["rails"]["energy_per_inference_j"] * 1000
        bound = row["rails"]["energy_per_inference_bound_j"] * 1000
        ax.errorbar([total], [y], xerr=[[bound], [bound]], fmt="|", color="black", capsize=4)
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel("energy per inference above idle (mJ), stacked by rail; line = sum ± bound")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def ops_png(rows: Sequence[dict], colour: dict[str, str]) -> bytes:
    """Per-op time (ms) against MACs, log-log, one colour per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = [r for r in rows if r["model"] == model]
        ax.scatter([r["macs"] for r in pts], [r["ms"] for r in pts], color=colour[model], label=model)
        for r in pts:
            ax.annotate(r["op"], (r["macs"], r["ms"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per inference (log)")
    ax.set_ylabel("time per inference (ms, log)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def pareto_png(auto: dict) -> bytes:
    """`_auto_report`'s Pareto figure (the searched size vs accuracy drop, chosen point ringed)."""
    from mobile_opt._auto_choice import Constraints
    from mobile_opt._auto_report import _plot

    def candidate(data: dict) -> SimpleNamespace:
        return SimpleNamespace(**{k: data.get(k) for k in (
            "number", "raw_bytes", "zip_bytes", "coded_bytes", "accuracy_drop_pp", "latency_ms", "error")})

    chosen = auto.get("chosen")
    result = SimpleNamespace(
        candidates=[candidate(c) for c in auto.get("candidates", ())],
        pareto=auto.get("pareto", ()),
        chosen=candidate(chosen) if chosen else None,
        constraints=Constraints.from_dict(auto["constraints"]),
        study_name=auto.get("study_name", "auto"),
    )
    buffer = io.BytesIO()
    _plot(result, buffer)
    return buffer.getvalue()


def _short(name: str, limit: int = 48) -> str:
    name = name.split(";")[-1]  # TFLite fuses op names with ';' — the last part names the weight
    return name if len(name) <= limit else "…" + name[-(limit - 1):]

