"""Rendering a `device_bench.GateReport` (the rows of `check` and `bench`): a table, and GitHub Actions output."""

from __future__ import annotations

import os

import click

from mobile_opt.cli._common import console

_TEXT = {"ok": "[green]ok[/]", "over": "[bold red]OVER[/]", "regressed": "[bold red]REGRESSED[/]",
         "not testable": "[yellow]not testable[/]", "no match": "[bold red]NO MATCH[/]"}


def print_table(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from device_bench.gate_report import format_value, metric_name, verdict

    table = Table(title=report.title, title_justify="left")
    for col, justify in (("file", "left"), ("metric", "left"), ("actual", "right"), ("limit", "right"),
                         ("status", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in report.results:
        status = _TEXT[verdict(r)]
        if r.note and r.metric != "match":
            status += f" ({escape(r.note)})"
        table.add_row(escape(r.path), metric_name(r.metric), format_value(r.metric, r.actual),
                      format_value(r.metric, r.limit), status)
    console.print(table)
    console.print(f"[green]{report.summary}[/]" if report.ok else f"[bold red]{report.summary}[/]")


def github(report, root: str = ".") -> None:
    """Under GitHub Actions: `::error` annotations on stderr, the table appended to the step summary."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    # On stderr (the runner reads workflow commands from both streams): stdout stays the
    # report itself, e.g. valid JSON for --json / --format json.
    for line in report.annotations(root):
        click.echo(line, err=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(report.to_markdown())
