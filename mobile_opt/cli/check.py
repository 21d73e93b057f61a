"""`mobile-opt check`: fail CI when a .tflite model grows past its size or MAC budget.

Exit codes: 0 every budget held, 1 a budget was exceeded (or a glob matched nothing),
2 usage or input error (bad option, unit, config, or a file that is not a .tflite).
Under GitHub Actions (GITHUB_ACTIONS=true) failures are also printed as `::error`
annotations and a Markdown table is appended to $GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import click

from mobile_opt.cli._common import console, handle_errors, print_json, stderr_console

_METRIC_NAMES = {"raw_bytes": "raw", "zip_bytes": "zip", "gzip_bytes": "gzip", "coded_bytes": "coded (estimate)", "macs": "MACs", "match": "match",
                 "p50_latency": "p50", "energy": "energy", "energy_rails": "energy (rails)", "output_diff": "max |output diff|",
                 "accuracy_drop": "accuracy drop", "delegation": "ops on CPU"}
_FAILURE_TYPES = {"output_diff": "OutputMismatch", "accuracy_drop": "AccuracyDrop", "delegation": "PartialDelegation"}
# Rows of a latency report (device_bench.regression.RegressionCheck) carry a `status`.
_STATUS_TEXT = {"regressed": ("[bold red]REGRESSED[/]", "❌ regressed"), "over": ("[bold red]OVER[/]", "❌ over"),
                "not testable": ("[yellow]not testable[/]", "⚠️ not testable")}


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--config", "config_path", default="pyproject.toml", show_default=True,
              type=click.Path(dir_okay=False, path_type=str),
              help="pyproject.toml with [[tool.mobile-opt.budget]] tables.")
@click.option("--max-raw", metavar="SIZE",
              help='Raw .tflite size limit (what the APK ships and LiteRT mmaps), e.g. "1MB", "512KiB".')
@click.option("--max-zip", metavar="SIZE", help="Limit on the file deflated as an APK/zip entry (download size).")
@click.option("--max-gzip", metavar="SIZE", help="gzip -9 size limit.")
@click.option("--max-coded", metavar="SIZE", help="Limit on the coded size (an estimate no runtime loads).")
@click.option("--max-macs", metavar="COUNT", help='MAC limit per inference, e.g. "1.2M".')
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text",
              show_default=True, help="Report format.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json (the spelling every command takes).")
@click.option("--output", "output", type=click.Path(dir_okay=False, path_type=str),
              help="Write the report to this file (the text table still goes to the terminal).")
@click.option("--results", "results_path", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Benchmark results (.jsonl) to check against the budgets' max_p50_ms.")
@handle_errors
def check(paths: tuple[str, ...], config_path: str, max_raw: str | None, max_zip: str | None, max_gzip: str | None,
          max_coded: str | None, max_macs: str | None, fmt: str, as_json: bool, output: str | None,
          results_path: str | None) -> None:
    """Check .tflite files against size / MAC budgets.

    With PATHS and --max-* options, the limits apply to those files. With PATHS only, the
    budgets of --config whose glob matches each path apply. Without PATHS, every budget
    of --config is checked (globs relative to the config file's directory).

    \b
    [[tool.mobile-opt.budget]]
    path = "models/*.tflite"
    max_raw = "200KB"
    max_zip = "150KB"
    max_macs = "1.2M"
    max_p50_ms = { "Pixel 7" = 12.0 }   # checked with --results results.jsonl
    """
    from converters.budget import Budget, load_budgets, parse_count, parse_size

    if as_json:
        if fmt not in ("text", "json"):
            raise click.UsageError(f"--json and --format {fmt} contradict each other; give one.")
        fmt = "json"

    flags = {"--max-raw": max_raw, "--max-zip": max_zip, "--max-gzip": max_gzip, "--max-coded": max_coded, "--max-macs": max_macs}
    given = {k: v for k, v in flags.items() if v is not None}
    if given and not paths:
        raise click.UsageError(f"{', '.join(given)} apply to PATHS; give the .tflite files to check.")
    _require_files(paths)
    if given:
        limits = {
            "max_raw_bytes": None if max_raw is None else parse_size(max_raw, "--max-raw"),
            "max_zip_bytes": None if max_zip is None else parse_size(max_zip, "--max-zip"),
            "max_gzip_bytes": None if max_gzip is None else parse_size(max_gzip, "--max-gzip"),
            "max_coded_bytes": None if max_coded is None else parse_size(max_coded, "--max-coded"),
            "max_macs": None if max_macs is None else parse_count(max_macs, "--max-macs"),
        }
        budgets, root = [Budget(pattern=p, **limits) for p in paths], "."
    else:
        if paths and not Path(config_path).is_file():
            raise click.UsageError(
                f"Give limits (--max-raw/--max-zip/--max-gzip/--max-coded/--max-macs) for PATHS, or a --config "
                f"with [[tool.mobile-opt.budget]] tables ({config_path} not found)."
            )
        configured = load_budgets(config_path)
        root = str(Path(config_path).resolve().parent)
        if paths:
            budgets = _budgets_for_paths(paths, configured, root, config_path)
            root = "."
        else:
            budgets = configured
    report = _check_all(budgets, root, results_path)

    rendered = {"text": None, "json": None, "junit": None}
    if fmt == "json":
        rendered["json"] = report.to_dict()
    elif fmt == "junit":
        rendered["junit"] = _junit(report)
    if output is not None:
        _write_output(output, fmt, report, rendered)
        _print_text(report)
    elif fmt == "json":
        print_json(rendered["json"])
    elif fmt == "junit":
        click.echo(rendered["junit"])
    else:
        _print_text(report)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        _github(report, root)
    sys.exit(0 if report.ok else 1)


def _require_files(paths: tuple[str, ...]) -> None:
    """A PATH without glob characters names one file: missing is bad input (exit 2), not NO MATCH."""
    from mobile_opt.errors import InputError

    for path in paths:
        if not any(ch in path for ch in "*?[") and not Path(path).is_file():
            what = ("a directory" if Path(path).is_dir() else "not a regular file (a named pipe, socket or device)"
                    if Path(path).exists() else "missing")
            raise InputError(f"{path!r} is {what}; give .tflite files (or quoted globs). Received: path={path!r}.")


def _check_all(budgets: list, root: str, results_path: str | None) -> Any:
    """Size/MAC budgets on the files, and max_p50_ms on the results when --results is given."""
    from converters.budget import BudgetReport, check_budgets

    sized = [b for b in budgets if b.limits()]
    rows = list(check_budgets(sized, root=root).results) if sized else []
    if results_path is not None:
        from device_bench.latency_budget import check_latency_budgets
        from device_bench.results import read_jsonl

        rows += check_latency_budgets(budgets, read_jsonl(Path(results_path)), root=root)
    elif any(b.max_p50_ms for b in budgets):
        stderr_console.print("[yellow]max_p50_ms budgets not checked: pass --results results.jsonl[/]")
    if not rows:
        raise click.UsageError("Nothing to check: these budgets set only max_p50_ms; pass --results.")
    return BudgetReport(results=tuple(rows), ok=all(r.ok for r in rows))


def _budgets_for_paths(paths: tuple[str, ...], configured: list, root: str, config_path: str) -> list:
    from converters.budget import Budget

    budgets = []
    for path in paths:
        relative = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
        matching = [b for b in configured if fnmatch.fnmatch(relative, b.pattern) or fnmatch.fnmatch(path, b.pattern)]
        if not matching:
            raise click.UsageError(
                f"No budget in {config_path} applies to {path!r} (globs: "
                f"{', '.join(b.pattern for b in configured)}). Add one or pass --max-* limits."
            )
        budgets += [Budget(pattern=path, **b.limits()) for b in matching]
    return budgets


def _metric_name(metric: str) -> str:
    # Rail gates are named by their rail (device_bench.regression, issue 24).
    if metric.startswith("energy_rail:"):
        return f"energy ({metric.partition(':')[2]} rail)"
    return _METRIC_NAMES[metric]


def _fmt_value(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric == "p50_latency":
        return f"{value / 1000:,.3f} ms"
    if metric == "energy" or metric.startswith("energy_rail"):
        return f"{value * 1000:,.3f} mJ"
    if metric == "output_diff":
        return f"{value:.4g}"
    if metric == "accuracy_drop":
        return f"{value:.2f} pp"
    if metric == "delegation":
        return f"{int(value)} ops"
    return f"{value:,}" if metric == "macs" else f"{value:,} B"


def _status(r: Any, markdown: bool = False) -> str:
    status = getattr(r, "status", None)
    if status in _STATUS_TEXT:
        return _STATUS_TEXT[status][markdown]
    if markdown:
        return "✅ ok" if r.ok else "❌ over" if r.metric != "match" else "❌ no file matches"
    return "[green]ok[/]" if r.ok else "[bold red]OVER[/]" if r.metric != "match" else "[bold red]NO MATCH[/]"


def _print_text(report: Any, title: str = "mobile-opt budgets",
                words: tuple[str, str] = ("all budgets held", "budget check(s) failed")) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, justify in (("file", "left"), ("metric", "left"), ("actual", "right"), ("limit", "right"),
                         ("status", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in report.results:
        status = _status(r)
        if r.note and r.metric != "match":
            status += f" ({escape(r.note)})"
        table.add_row(escape(r.path), _metric_name(r.metric), _fmt_value(r.metric, r.actual),
                      _fmt_value(r.metric, r.limit), status)
    console.print(table)
    failed = len(report.failures)
    console.print(f"[green]{words[0]}[/]" if report.ok else f"[bold red]{failed} {words[1]}[/]")


def _junit(report: Any, title: str = "mobile-opt budgets", kind: str = "budget") -> str:
    """JUnit XML: one testcase per (path, metric); CI systems render failures from it."""
    failures = len(report.failures)
    skipped = sum(getattr(r, "status", None) == "not testable" for r in report.results)
    suites = ET.Element("testsuites", name="mobile-opt check", tests=str(len(report.results)),
                        failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=title, tests=str(len(report.results)),
                          failures=str(failures), errors="0", skipped=str(skipped))
    for r in report.results:
        where = f" {r.pattern}" if getattr(r, "status", None) else ""
        case = ET.SubElement(suite, "testcase", classname=f"{kind}.{r.path}",
                             name=_metric_name(r.metric) + where, file=r.path)
        if not r.ok:
            failure_type = _FAILURE_TYPES.get(r.metric) if getattr(r, "status", None) == "over" else None
            failure_type = failure_type or ("BudgetExceeded" if getattr(r, "status", None) != "regressed" else (
                "EnergyRegression" if r.metric.startswith("energy") else "LatencyRegression"))
            failure = ET.SubElement(case, "failure", message=r.describe(), type=failure_type)
            failure.text = r.describe()
        elif getattr(r, "status", None) == "not testable":
            ET.SubElement(case, "skipped", message=r.describe())
        elif r.note:
            ET.SubElement(case, "system-out").text = r.note
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _markdown(report: Any, title: str = "mobile-opt budgets") -> str:
    lines = [f"### {title}", "", "| file | metric | actual | limit | status |",
             "|---|---|---:|---:|---|"]
    for r in report.results:
        status = _status(r, markdown=True)
        lines.append(f"| `{r.path}` | {_metric_name(r.metric)} | {_fmt_value(r.metric, r.actual)} | "
                     f"{_fmt_value(r.metric, r.limit)} | {status} |")
    return "\n".join(lines) + "\n\n"


def _escape_data(text: str) -> str:
    # GitHub workflow-command escaping (actions/toolkit `escapeData` / `escapeProperty`).
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _workspace() -> str:
    """The repository root annotations are relative to: $GITHUB_WORKSPACE, else git's top level."""
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        return workspace
    import subprocess

    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    return top or os.getcwd()


def _github(report: Any, root: str = ".", title: str = "mobile-opt budgets",
            annotation: str = "mobile-opt budget") -> None:
    # GitHub attaches an annotation to a file only by its path from the repository root;
    # report paths are relative to `root` (the config's directory: `ml/` for ml/pyproject.toml).
    workspace = _workspace()
    for r in report.failures:
        path = os.path.relpath(os.path.join(os.path.abspath(root), r.path), workspace).replace(os.sep, "/")
        # On stderr (the runner reads workflow commands from both streams): stdout stays the
        # report itself, e.g. valid JSON for --json / --format json.
        click.echo(f"::error file={_escape_property(path)},title={_escape_property(annotation)}::"
                   f"{_escape_data(r.describe())}", err=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(_markdown(report, title))


def _write_output(output: str, fmt: str, report: Any, rendered: dict) -> None:
    import json

    if fmt == "json":
        text = json.dumps(rendered["json"], indent=2) + "\n"
    elif fmt == "junit":
        text = rendered["junit"] + "\n"
    else:
        text = "\n".join(r.describe() + ("" if r.ok else "  [FAILED]") for r in report.results) + "\n"
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        from mobile_opt.errors import InputError

        raise InputError(f"Cannot write the report to {output!r}: {exc.strerror or exc}") from exc
