"""Rich rendering of pipeline results and a progress bar fed by the library's callback."""

from __future__ import annotations

import contextlib

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mobile_opt.cli._common import console, stderr_console


def _short_params(params: dict) -> str:
    keep = {k: v for k, v in params.items() if k in ("sparsity", "schedule", "structure", "clusters", "init", "mode")}
    return ", ".join(f"{k}={v}" for k, v in keep.items())


def pipeline_table(result) -> Table:
    """One row per stage: accuracy, drop, measured sparsity/shared values, checks."""
    table = Table(title="Compression pipeline", title_justify="left",
                  caption="(tflite): read from the converted model, what ships, over the layers the stage "
                          "before compressed", caption_justify="left")
    # Weight figures come from the .tflite for a quantize stage (what ships), from Keras otherwise;
    # distinct values are counted per output channel, the unit int8 per-channel quantization keeps.
    for col in ("#", "stage", "settings", "accuracy", "Δ pp", "sparsity", "unique/channel", "checks", "s"):
        table.add_column(col, justify="right" if col not in ("stage", "settings", "checks") else "left")
    table.add_row("", "baseline", "", f"{result.baseline_accuracy:.4f}", "", "", "", "", "")
    compared = None  # a .tflite row counts over the kernels the stage before it measured, to compare
    for s in result.stages:
        layers = compared if s.measured_on == "tflite" else None
        compared = set(s.kernels) or compared
        sparsity, unique = s.sparsity_of(layers), s.max_unique_per_channel_of(layers)
        failed = [c for c in s.checks if not c.ok]
        checks = "[green]all passed[/]" if not failed else "[red]" + "; ".join(
            f"{c.name}: {c.measured} (want {c.expected})" for c in failed) + "[/]"
        table.add_row(
            str(s.index),
            s.kind,
            _short_params(s.params),
            f"{s.accuracy:.4f}" + (" (tflite)" if s.accuracy_source == "tflite" else ""),
            f"{s.accuracy_drop_pp:+.2f}",
            "" if sparsity is None else f"{sparsity:.1%}" + (" (tflite)" if s.measured_on == "tflite" else ""),
            "" if unique is None else str(unique),
            checks,
            f"{s.seconds:.1f}",
        )
    return table


def print_pipeline_result(result) -> None:
    console.print(pipeline_table(result))
    say = lambda text: console.print(text, soft_wrap=True)  # noqa: E731 - keep sentences greppable
    for s in result.stages:
        for note in s.notes:
            say(f"  stage {s.index} ({s.kind}): {note}")
    if result.tolerance_held is None:
        say(f"Accuracy change: {-result.accuracy_drop_pp:+.2f} pp (no tolerance set).")
    elif result.tolerance_held:
        say(f"[green]Accuracy drop {result.accuracy_drop_pp:.2f} pp is within the "
            f"{result.max_accuracy_drop} pp tolerance.[/]")
    else:
        say(f"[red]Accuracy drop {result.accuracy_drop_pp:.2f} pp EXCEEDS the "
            f"{result.max_accuracy_drop} pp tolerance.[/]")


@contextlib.contextmanager
def epoch_progress(enabled: bool = True):
    """Yields a `progress(done, total, label)` callback drawing a bar on stderr (or None)."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
                  TimeElapsedColumn(), console=stderr_console, transient=True) as bar:
        task = bar.add_task("fine-tuning", total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield update
