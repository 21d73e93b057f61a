"""`mobile-opt analyze`: where the bytes of a .tflite model go (raw, zip, coded estimate, gzip)."""

from __future__ import annotations

import click

from mobile_opt.cli._common import console, handle_errors, print_json, stderr_console
from mobile_opt._provenance import provenance


def _table(title: str, rows: list[dict[str, str]]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", show_lines=False)
    if not rows:
        table.add_column("(none)")
        return table
    for col in rows[0]:
        numeric = all(r[col][:1].isdigit() or r[col][:1] in "+-—" for r in rows)
        # Numbers never wrap; long tensor names fold instead.
        table.add_column(col, justify="right" if numeric else "left",
                         no_wrap=numeric, overflow="ellipsis" if numeric else "fold")
    for r in rows:
        table.add_row(*(escape(value) for value in r.values()))  # tensor names may hold brackets
    return table


def _analyze_with_progress(path: str, quiet: bool):
    from converters.size import analyze as analyze_model

    if quiet or not stderr_console.is_terminal:
        return analyze_model(path)
    from rich.progress import Progress

    with Progress(console=stderr_console, transient=True) as bar:
        task = bar.add_task(f"analysing {path}", total=None)
        return analyze_model(path, progress=lambda done, total: bar.update(task, completed=done, total=total))


@click.command("analyze")
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--compare", "other", metavar="OTHER.tflite", type=click.Path(path_type=str),
              help="Compare with a second model (b) and show per-tensor changes.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON to stdout.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the report as Markdown.")
@click.option("--plot", "plot_path", metavar="OUT.png", type=click.Path(dir_okay=False, path_type=str),
              help="Also write a PNG size breakdown per op type and tensor.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many tensors to list.")
@handle_errors
def analyze(model: str, other: str | None, as_json: bool, as_markdown: bool,
            plot_path: str | None, top: int) -> None:
    """Show the sizes of MODEL.tflite: raw, zip, coded (estimate), gzip.

    Raw is the file as shipped (APKs store .tflite uncompressed for LiteRT to mmap); zip is
    its deflated size as an APK entry (what a download costs). Coded is an estimate no
    runtime loads: graph overhead as is + the smallest encoding of each weight buffer (raw,
    Huffman, or CSR with Huffman-coded gaps), codebooks included.
    """
    if as_json and as_markdown:
        raise click.UsageError("Choose one of --json and --markdown.")
    from converters import report as render
    from mobile_opt._files import OutputFiles

    outputs = click.get_current_context().with_resource(OutputFiles())
    if plot_path is not None:
        outputs.reserve(plot_path, what="--plot")  # before the (possibly long) analysis
    quiet = as_json or as_markdown
    result = _analyze_with_progress(model, quiet)
    shown = result
    if other is not None:
        from converters.size_diff import diff

        shown = diff(result, _analyze_with_progress(other, quiet))
    if plot_path is not None:
        from converters.plot import plot_size

        outputs.write_with(plot_path, lambda staged: plot_size(result, staged, top=max(top, 1)))
        outputs.commit()
    if as_json:
        print_json({**shown.to_dict(), "provenance": provenance()})
    elif as_markdown:
        click.echo(render.to_markdown(shown, top=top), nl=False)
    elif other is not None:
        console.print(_table(f"Size diff — a: {result.source}  b: {shown.b.source}",
                             render.diff_summary_rows(shown)))
        console.print(_table(f"Changed tensors (top {top})", render.diff_tensor_rows(shown, top)))
    else:
        console.print(_table(f"Size of {result.source}", render.summary_rows(result)))
        console.print(_table("Weights by op type", render.op_type_rows(result)))
        console.print(_table(f"Largest tensors (top {top})", render.tensor_rows(result, top)))
    if plot_path is not None and not as_json:
        stderr_console.print(f"plot written to {plot_path}", markup=False)
