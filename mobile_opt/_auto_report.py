"""Files an `auto_optimize` run leaves behind: report.md, pareto.json, pareto.png, the chosen model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from device_bench.intervals import ms
from mobile_opt._auto_choice import SIZES
from mobile_opt._lazy import pyplot
from mobile_opt._provenance import provenance

__all__ = ["recipe_text", "write"]


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def recipe_text(recipe: dict) -> str:
    parts = []
    if recipe.get("channels"):
        parts.append("remove filters " + ", ".join(f"{k} {v:.0%}" for k, v in recipe["channels"].items()))
    if recipe.get("low_rank"):
        parts.append("low-rank " + ", ".join(f"{k} r{v}" for k, v in recipe["low_rank"].items()) + " + distill")
    sparsity = recipe.get("sparsity")
    if isinstance(sparsity, dict) and sparsity:
        parts.append("prune " + ", ".join(f"{k} {v:.0%}" for k, v in sparsity.items()))
    elif sparsity == "2:4":
        parts.append("prune 2:4")
    if recipe.get("fold_batchnorm"):
        parts.append(f"fold {recipe['fold_batchnorm']} BN")
    if recipe.get("cluster_bits"):
        parts.append("cluster " + ", ".join(f"{k} {v}b" for k, v in recipe["cluster_bits"].items()))
    if recipe.get("quantize"):
        parts.append(recipe["quantize"])
    return " → ".join(parts) or "-"


def _row(c, baseline: dict, pareto: set) -> str:
    raw_ratio = baseline["raw_bytes"] / c.raw_bytes if c.raw_bytes else None
    coded_ratio = baseline["raw_bytes"] / c.coded_bytes if c.coded_bytes else None
    return (f"| {c.number} | {recipe_text(c.recipe)} | {_fmt(c.accuracy, 4)} | {_fmt(c.accuracy_drop_pp)} | "
            f"{_fmt(c.raw_bytes)} | {_fmt(raw_ratio, 1)}× | {_fmt(c.zip_bytes)} | {_fmt(c.coded_bytes)} | {_fmt(coded_ratio, 1)}× | "
            f"{_fmt(c.latency_ms, 3)} | "
            f"{'yes' if c.feasible else 'no'} | {'yes' if c.number in pareto else ''} | "
            f"{'yes' if c.checks_ok else 'NO'} |")


def _markdown(result) -> str:
    b, k = result.baseline, result.constraints
    pareto = set(result.pareto)
    lines = [
        f"# mobile-opt auto: study `{result.study_name}`",
        "",
        result.message,
        "",
        "## Constraints",
        "",
        f"- accuracy drop ≤ {k.max_accuracy_drop} pp (top-1 of the .tflite on the validation data, LiteRT)",
        f"- {SIZES[k.size]} ≤ {_fmt(k.size_budget)} B (size measure `{k.size}`: minimised and bounded)"
        if k.size_budget is not None else f"- {SIZES[k.size]}: no budget (size measure `{k.size}`: minimised)",
        f"- latency ≤ {k.latency_budget_ms} ms" if k.latency_budget_ms is not None else "- latency: no budget",
        "",
        "## Baseline (fp32 .tflite of the input model)",
        "",
        f"- accuracy {_fmt(b['accuracy'], 4)}; {_fmt(b['raw_bytes'])} B .tflite as shipped, {_fmt(b['coded_bytes'])} B coded (estimate); "
        f"graph overhead {_fmt(b['graph_overhead_bytes'])} B; latency {ms(b.get('latency_ms'), from_ms=True)} ms; "
        f"{_fmt(b['params'])} parameters",
        "",
    ]
    if result.stopped:
        lines += [f"**Stopped early:** {result.stopped}", ""]
    shown = result.chosen if result.chosen is not None else (result.closest[0] if result.closest else None)
    if shown is not None:
        title = (f"Chosen model (size measure: {k.size})" if result.chosen is not None
                 else "Closest candidate (does NOT meet the constraints)")
        lines += [f"## {title}: trial {shown.number}", "", f"Recipe: {recipe_text(shown.recipe)}", ""]
        if shown.violations:
            lines += ["Over budget by: " + ", ".join(f"{k_} {_fmt(v)}" for k_, v in shown.violations.items()), ""]
        lines += ["| # | stage | accuracy | source | drop pp | sparsity | max distinct / channel | weights from | ok | s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for i, s in enumerate(shown.stages):
            lines.append(f"| {i} | {s['kind']} | {_fmt(s['accuracy'], 4)} | {s['accuracy_source']} | "
                         f"{_fmt(s['accuracy_drop_pp'])} | {_fmt(s['sparsity'], 4)} | "
                         f"{_fmt(s.get('max_unique_per_channel'))} | {s.get('kernels_measured_on', '-')} | "
                         f"{'yes' if s['ok'] else 'NO'} | {_fmt(s['seconds'], 1)} |")
        lines += ["", "A .tflite row (weights from tflite) counts the layers the stage before it compressed, "
                  "as the converted model ships them."]
        for i, s in enumerate(shown.stages):
            lines.append(f"- stage {i} `{s['kind']}` params: `{json.dumps(s['params'], default=str)}`")
            for check in s["failed_checks"]:
                lines.append(f"  - FAILED check {check['name']}: expected {check['expected']}, measured {check['measured']}")
            for note in s["notes"]:
                lines.append(f"  - note: {note}")
        lines += ["", f"Final: accuracy {_fmt(shown.accuracy, 4)} ({_fmt(shown.accuracy_drop_pp)} pp drop), "
                  f"{_fmt(shown.raw_bytes)} B .tflite as shipped ({b['raw_bytes'] / shown.raw_bytes:.1f}× vs fp32), "
                  f"{_fmt(shown.coded_bytes)} B coded estimate ({b['raw_bytes'] / shown.coded_bytes:.1f}×), "
                  f"latency {ms(shown.latency_ms, from_ms=True)} ms"
                  + (f" ({shown.latency_note})" if shown.latency_note else ""), ""]
    header = ["| trial | recipe | accuracy | drop pp | raw B (shipped) | raw ratio | zip B (download) | coded B (estimate) "
              "| coded ratio | latency ms | feasible | Pareto | checks |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    front = [c for c in result.candidates if c.number in pareto]
    lines += [f"## Pareto front (accuracy drop vs {SIZES[k.size]}" + (" vs latency" if any(
        c.latency_ms is not None for c in front) else "") + ")", ""] + header
    lines += [_row(c, b, pareto) for c in sorted(front, key=k.size_of)]
    lines += ["", "## All candidates", ""] + header
    lines += [_row(c, b, pareto) for c in result.candidates if c.error is None]
    failed = [c for c in result.candidates if c.error is not None]
    if failed:
        lines += ["", "## Failed or stopped-early candidates", ""]
        lines += [f"- trial {c.number} ({recipe_text(c.recipe)}): {c.error}" for c in failed]
    lines += ["", "## Layer sensitivity (drop in pp when pruned alone, no fine-tuning)", ""]
    drops = result.sensitivity["drops"]
    if drops:
        levels = list(next(iter(drops.values())))
        lines += ["| layer | weights | " + " | ".join(f"{float(s):.0%}" for s in levels) + " |",
                  "|---|---|" + "---|" * len(levels)]
        for name, row in drops.items():
            lines.append(f"| {name} | {_fmt(result.sensitivity['sizes'][name])} | "
                         + " | ".join(_fmt(row[s]) for s in levels) + " |")
    return "\n".join(lines) + "\n"


def _plot(result, path: Path) -> None:
    plt = pyplot()
    import matplotlib.ticker

    measured = [c for c in result.candidates if c.error is None]
    pareto = set(result.pareto)
    size_of = result.constraints.size_of  # the measure the search minimised

    def kb(c) -> float:
        return size_of(c) / 1000

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, style in ((False, dict(color="0.6", marker="o", label="candidate")),
                         (True, dict(color="C0", marker="o", label="Pareto front"))):
        pts = [c for c in measured if (c.number in pareto) == group]
        if not pts:
            continue
        ax.scatter([kb(c) for c in pts], [c.accuracy_drop_pp for c in pts], **style)
    front = sorted((c for c in measured if c.number in pareto), key=size_of)
    # A step line: between two front points nothing better than the smaller one is known.
    ax.plot([kb(c) for c in front], [c.accuracy_drop_pp for c in front], color="C0", lw=1,
            drawstyle="steps-post")
    if result.chosen is not None:
        ax.scatter([kb(result.chosen)], [result.chosen.accuracy_drop_pp], s=160,
                   facecolors="none", edgecolors="C3", linewidths=2, label=f"chosen (trial {result.chosen.number})")
    for c in measured:
        label = f"{c.number}" + (f"\n{ms(c.latency_ms, from_ms=True)} ms" if c.latency_ms is not None else "")
        ax.annotate(label, (kb(c), c.accuracy_drop_pp), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.axhline(result.constraints.max_accuracy_drop, color="C3", ls="--", lw=1, label="max drop")
    if result.constraints.size_budget:
        ax.axvline(result.constraints.size_budget / 1000, color="C2", ls="--", lw=1, label="size budget")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax.set_xlabel(f"{SIZES[result.constraints.size]} (KB, log)")
    ax.set_ylabel("accuracy drop (pp)")
    ax.set_title(f"auto_optimize: {result.study_name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result, out_dir: Path) -> dict:
    """Writes report.md, pareto.json, pareto.png and chosen.{tflite,keras}; returns name -> path."""
    out_dir = Path(out_dir)
    files = {}
    if result.tflite is not None:
        files["chosen_tflite"] = out_dir / "chosen.tflite"
        files["chosen_tflite"].write_bytes(result.tflite)
    if result.chosen is not None and result.chosen.keras_path and Path(result.chosen.keras_path).exists():
        files["chosen_keras"] = out_dir / f"chosen{Path(result.chosen.keras_path).suffix}"
        shutil.copyfile(result.chosen.keras_path, files["chosen_keras"])
    elif result.model is not None:
        import converters
        from mobile_opt.models import save_model

        # A QAT model is kept as .h5: TF-MOT 0.8.1's QuantizeLayer does not load back from .keras.
        suffix = ".h5" if converters.is_qat_model(result.model) else ".keras"
        files["chosen_keras"] = save_model(result.model, out_dir / f"chosen{suffix}")
    files["report"] = out_dir / "report.md"
    files["report"].write_text(_markdown(result), encoding="utf-8")
    if any(c.error is None for c in result.candidates):
        files["plot"] = out_dir / "pareto.png"
        _plot(result, files["plot"])
    files["json"] = out_dir / "pareto.json"
    out = {k: str(v) for k, v in files.items()}
    files["json"].write_text(json.dumps({**result.to_dict(), "files": out, "provenance": provenance()}, indent=2, default=str), encoding="utf-8")
    return out
