"""Rich rendering of pipeline results and a progress bar fed by the library's callback."""

from __future__ import annotations

import contextlib

from rich import box
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from converters.keras3_bridge import proof_sentence
from mobile_opt.cli._common import console, stderr_console
from mobile_opt.stage import comparable_figures


def _short_params(params: dict) -> str:
    keep = {k: v for k, v in params.items() if k in ("sparsity", "schedule", "structure", "clusters", "init", "mode")}
    return ", ".join(f"{k}={v}" for k, v in keep.items())


_NARROW = 100  # below this many columns, settings and failed checks move under the table


def pipeline_table(result, width: int | None = None) -> Table:
    """One row per stage: accuracy, drop, measured sparsity/shared values, checks.

    Narrower than `_NARROW` columns the settings and seconds columns are dropped and checks
    shrink to ok/FAILED (`pipeline_notes` lists what they held); numbers are never cut.
    """
    narrow = (width or console.width) < _NARROW
    table = Table(title="Compression pipeline", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # Weight figures come from the .tflite for a quantize stage (what ships), from Keras otherwise;
    # distinct values are counted per output channel, the unit int8 per-channel quantization keeps.
    columns = ["#", "stage"] + ([] if narrow else ["settings"]) + [
        "accuracy", "drop pp", "sparsity", "unique/channel", "checks"] + ([] if narrow else ["s"])
    for col in columns:
        text = col in ("stage", "settings", "checks")
        table.add_column(col, justify="left" if text else "right", no_wrap=not text or col == "stage",
                         overflow="fold")
    table.add_row("", "baseline", *([] if narrow else [""]), f"{result.baseline_accuracy:.4f}", "", "", "", "",
                  *([] if narrow else [""]))
    figures = comparable_figures([s.kernels for s in result.stages])
    for s, (sparsity, unique, on) in zip(result.stages, figures):
        failed = [c for c in s.checks if not c.ok]
        if narrow:
            checks = "[green]ok[/]" if not failed else "[red]FAILED[/]"
        else:
            checks = "[green]all passed[/]" if not failed else "[red]" + "; ".join(
                escape(f"{c.name}: {c.measured} (want {c.expected})") for c in failed) + "[/]"
        table.add_row(
            str(s.index),
            s.kind,
            *([] if narrow else [escape(_short_params(s.params))]),
            f"{s.accuracy:.4f}" + ("*" if s.accuracy_source == "tflite" else ""),
            f"{s.accuracy_drop_pp:+.2f}",
            "" if sparsity is None else f"{sparsity:.1%}" + (" (tflite)" if on == "tflite" else ""),
            "" if unique is None else str(unique),
            checks,
            *([] if narrow else [f"{s.seconds:.1f}"]),
        )
    return table


def pipeline_notes(result, width: int | None = None) -> list[str]:
    """What the table leaves out: the .tflite marker, and on narrow terminals settings and failed checks."""
    narrow = (width or console.width) < _NARROW
    notes = []
    if result.bridge is not None:
        notes.append("  " + proof_sentence(result.bridge.to_dict()))
    if any(s.accuracy_source == "tflite" for s in result.stages):
        notes.append("  * accuracy of the converted .tflite (LiteRT), not of the Keras model")
    if any(s.measured_on == "tflite" for s in result.stages):
        notes.append("  (tflite): weights read from the converted model (what ships), over the layers the "
                     "stage before compressed")
    for s in result.stages:
        if narrow:
            notes.append(f"  stage {s.index} ({s.kind}): {escape(_short_params(s.params))}, {s.seconds:.1f} s")
            notes += [f"  stage {s.index} [red]check failed[/]: "
                      + escape(f"{c.name}: {c.measured} (want {c.expected})") for c in s.checks if not c.ok]
        notes += [f"  stage {s.index} ({s.kind}): {escape(note)}" for note in s.notes]
    return notes


def print_pipeline_result(result) -> None:
    console.print(pipeline_table(result))
    say = lambda text: console.print(text, soft_wrap=True)  # noqa: E731 - keep sentences greppable
    for note in pipeline_notes(result):
        say(note)
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
