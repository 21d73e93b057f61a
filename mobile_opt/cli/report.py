"""`mobile-opt report`: one self-contained HTML page from the results the other commands wrote."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from mobile_opt.cli._common import console, handle_errors


@click.command()
@click.argument("results", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@handle_errors
def report(results, output) -> None:
    """Write one HTML page (no network needed to view it) from RESULTS.

    RESULTS are any of: bench JSON lines (--out), an optimize summary JSON, analyze --json output,
    auto's pareto.json, demo's summary.json — recognised by their content.
    """
    from mobile_opt._files import check_appendable
    from mobile_opt.report import write_report

    check_appendable(output, what="--output")  # before reading any results
    command = shlex.join(["mobile-opt", "report", *map(str, results), "-o", str(output)])
    path = write_report(list(results), output, command=command)
    console.print(f"Wrote {path} ({path.stat().st_size:,} bytes)", highlight=False)
