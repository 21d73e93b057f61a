"""Rich rendering of pipeline results and a progress bar fed by the library's callback."""

from __future__ import annotations

import contextlib

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from converters.keras3_bridge import proof_sentence
from mobile_opt.cli._common import console, stderr_console
from mobile_opt.stage import comparable_figures


def _short_params(params: dict, sep: str = ", ") -> str:
    keep = {k: v for k, v in params.items() if k in ("sparsity", "schedule", "structure", "clusters", "init", "mode")}
    return sep.join(f"{k}={v}" for k, v in keep.items())


_NARROW = 100  # below this many columns, settings and seconds move under the table
_MAX_WIDTH = 100  # the table never grows past this, however wide the terminal (or a pipe's 160)


def pipeline_table(result, width: int | None = None) -> Table:
    """One row per stage: accuracy, drop, measured sparsity/shared values, whether its checks held.

    Narrower than `_NARROW` columns the settings and seconds columns are dropped
    (`pipeline_notes` lists them); numbers are never cut. Failed checks are counted here,
    summarised in one line by `failed_checks_line`, and listed in full in the JSON summary.
    """
    narrow = (width or console.width) < _NARROW
    table = Table(title="Compression pipeline", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)  # box separator + one space: 2 between columns
    # Weight figures come from the .tflite for a quantize stage (what ships), from Keras otherwise;
    # distinct values are counted per output channel, the unit int8 per-channel quantization keeps.
    columns = ["#", "stage"] + ([] if narrow else ["settings"]) + [
        "accuracy", "drop pp", "sparsity", "unique/channel", "checks"] + ([] if narrow else ["s"])
    for col in columns:
        table.add_column(col, justify="left" if col in ("stage", "settings", "checks") else "right",
                         no_wrap=col != "settings", overflow="fold")
    table.add_row("", "baseline", *([] if narrow else [""]), f"{result.baseline_accuracy:.4f}", "", "", "", "",
                  *([] if narrow else [""]))
    figures = comparable_figures([s.kernels for s in result.stages])
    for s, (sparsity, unique, on) in zip(result.stages, figures):
        failed = sum(1 for c in s.checks if not c.ok)
        table.add_row(
            str(s.index),
            s.kind,
            *([] if narrow else [escape(_short_params(s.params, sep="\n"))]),  # one per line: fits 100
            f"{s.accuracy:.4f}" + ("*" if s.accuracy_source == "tflite" else ""),
            f"{s.accuracy_drop_pp:+.2f}",
            "" if sparsity is None else f"{sparsity:.1%}" + (" (tflite)" if on == "tflite" else ""),
            "" if unique is None else str(unique),
            "[green]ok[/]" if not failed else f"[red]{failed} FAILED[/]",
            *([] if narrow else [f"{s.seconds:.1f}"]),
        )
    return table


def failed_checks_line(result, summary: str | None = None) -> str | None:
    """One line for all failed checks of the run: how many per stage, the first one's name, and
    where the full list is (None when every check held)."""
    failed = [(s, c) for s in result.stages for c in s.checks if not c.ok]
    if not failed:
        return None
    counts = {}
    for s, _ in failed:
        counts[s.index, s.kind] = counts.get((s.index, s.kind), 0) + 1
    per_stage = ", ".join(f"stage {i} {kind}: {n}" for (i, kind), n in counts.items())
    where = f"the full list is in {summary}" if summary else "--json lists them all"
    return (f"  [red]{len(failed)} check(s) failed[/] ({per_stage}; first "
            + escape(f"{failed[0][1].name}): {where}"))


def pipeline_notes(result, width: int | None = None, summary: str | None = None) -> list[str]:
    """What the table leaves out: the .tflite marker, failed checks in one line, stage notes,
    and on narrow terminals the settings."""
    narrow = (width or console.width) < _NARROW
    notes = []
    if result.bridge is not None:
        notes.append("  " + proof_sentence(result.bridge.to_dict()))
    if any(s.accuracy_source == "tflite" for s in result.stages):
        notes.append("  * accuracy of the converted .tflite (LiteRT), not of the Keras model")
    if any(s.measured_on == "tflite" for s in result.stages):
        notes.append("  (tflite): weights read from the converted model (what ships), over the layers the "
                     "stage before compressed")
    failed = failed_checks_line(result, summary)
    if failed is not None:
        notes.append(failed)
    for s in result.stages:
        if narrow:
            notes.append(f"  stage {s.index} ({s.kind}): {escape(_short_params(s.params))}, {s.seconds:.1f} s")
        notes += [f"  stage {s.index} ({s.kind}): {escape(note)}" for note in s.notes]
    return notes


def print_pipeline_result(result, summary: str | None = None, out: Console | None = None) -> None:
    """The table (at most `_MAX_WIDTH` columns), its notes and the accuracy sentence, on `out`
    (default: stdout); `summary` is the JSON file that lists every check."""
    out = out or console
    out.print(pipeline_table(result, width=out.width), width=min(out.width, _MAX_WIDTH))
    say = lambda text: out.print(text, soft_wrap=True)  # noqa: E731 - keep sentences greppable
    for note in pipeline_notes(result, width=out.width, summary=summary):
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
