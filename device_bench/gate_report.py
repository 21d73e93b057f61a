"""CI reports of gate rows: JUnit XML, GitHub workflow-command annotations, a Markdown summary.

One home for what `mobile-opt check` (size/MAC budgets, `max_p50_ms`) and `mobile-opt bench`
(latency/energy regressions, output gates) report, and for `BenchReport`. A row is any object
read like a `converters.budget.BudgetResult`: `path`, `pattern`, `metric`, `limit`, `actual`,
`ok`, `note`, `describe()`, and optionally `status` ("regressed", "over", "not testable").

Example:
    >>> report = GateReport(())
    >>> report.ok, report.summary
    (True, 'all budgets held')
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from device_bench.intervals import ms

__all__ = ["GateReport", "METRIC_NAMES", "format_value", "metric_name", "verdict"]

METRIC_NAMES = {"raw_bytes": "raw", "zip_bytes": "zip", "gzip_bytes": "gzip", "coded_bytes": "coded (estimate)",
                "macs": "MACs", "match": "match", "p50_latency": "p50", "energy": "energy",
                "energy_rails": "energy (rails)", "output_diff": "max |output diff|", "accuracy_drop": "accuracy drop", "delegation": "ops on CPU"}
_FAILURE_TYPES = {"output_diff": "OutputMismatch", "accuracy_drop": "AccuracyDrop", "delegation": "PartialDelegation"}
_MARKDOWN = {"ok": "✅ ok", "over": "❌ over", "regressed": "❌ regressed", "not testable": "⚠️ not testable",
             "no match": "❌ no file matches"}


def verdict(row: Any) -> str:
    """"ok", "over", "regressed", "not testable" or "no match" (a budget glob matched no file)."""
    status = getattr(row, "status", None)
    if status in ("regressed", "over", "not testable"):
        return status
    return "ok" if row.ok else "no match" if row.metric == "match" else "over"


def metric_name(metric: str) -> str:
    """A row's metric as the tables say it; rail gates (`energy_rail:<RAIL>`) by their rail."""
    if metric.startswith("energy_rail:"):
        return f"energy ({metric.partition(':')[2]} rail)"
    return METRIC_NAMES[metric]


def format_value(metric: str, value: float | None) -> str:
    """A row's `actual` or `limit` in its unit (µs shown as ms, J as mJ, bytes with B)."""
    if value is None:
        return "—"
    if metric == "p50_latency":
        return f"{ms(value)} ms"
    if metric.startswith("energy"):
        return f"{value * 1000:,.3f} mJ"
    if metric == "output_diff":
        return f"{value:.4g}"
    if metric == "accuracy_drop":
        return f"{value:.2f} pp"
    if metric == "delegation":
        return f"{int(value)} ops"
    return f"{value:,}" if metric == "macs" else f"{value:,} B"


@dataclass(frozen=True)
class GateReport:
    """Gate rows with the words their reports use.

    Args:
        results: the rows (budget, regression, latency-budget or output-gate results).
        title: the report's title (default "mobile-opt budgets").
        kind: the JUnit classname prefix (default "budget").
        annotation: the title of each GitHub annotation (default "mobile-opt budget").
        words: the summary when all held / before the count of failures.
    """

    results: tuple
    title: str = "mobile-opt budgets"
    kind: str = "budget"
    annotation: str = "mobile-opt budget"
    words: tuple[str, str] = ("all budgets held", "budget check(s) failed")

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> tuple:
        return tuple(r for r in self.results if not r.ok)

    @property
    def summary(self) -> str:
        """One line: "all budgets held", or "2 budget check(s) failed"."""
        return self.words[0] if self.ok else f"{len(self.failures)} {self.words[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "title": self.title, "results": [r.to_dict() for r in self.results]}

    def to_junit(self) -> str:
        """JUnit XML: one testcase per (path, metric); CI systems render failures from it."""
        failures = len(self.failures)
        skipped = sum(getattr(r, "status", None) == "not testable" for r in self.results)
        suites = ET.Element("testsuites", name="mobile-opt check", tests=str(len(self.results)),
                            failures=str(failures))
        suite = ET.SubElement(suites, "testsuite", name=self.title, tests=str(len(self.results)),
                              failures=str(failures), errors="0", skipped=str(skipped))
        for r in self.results:
            status = getattr(r, "status", None)
            where = f" {r.pattern}" if status else ""
            case = ET.SubElement(suite, "testcase", classname=f"{self.kind}.{r.path}",
                                 name=metric_name(r.metric) + where, file=r.path)
            if not r.ok:
                failure_type = _FAILURE_TYPES.get(r.metric) if status == "over" else None
                failure_type = failure_type or ("BudgetExceeded" if status != "regressed" else (
                    "EnergyRegression" if r.metric.startswith("energy") else "LatencyRegression"))
                ET.SubElement(case, "failure", message=r.describe(), type=failure_type).text = r.describe()
            elif status == "not testable":
                ET.SubElement(case, "skipped", message=r.describe())
            elif r.note:
                ET.SubElement(case, "system-out").text = r.note
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode")

    def to_markdown(self) -> str:
        """A Markdown table (for $GITHUB_STEP_SUMMARY)."""
        lines = [f"### {self.title}", "", "| file | metric | actual | limit | status |", "|---|---|---:|---:|---|"]
        for r in self.results:
            lines.append(f"| `{r.path}` | {metric_name(r.metric)} | {format_value(r.metric, r.actual)} | "
                         f"{format_value(r.metric, r.limit)} | {_MARKDOWN[verdict(r)]} |")
        return "\n".join(lines) + "\n\n"

    def annotations(self, root: str | os.PathLike = ".", workspace: str | None = None) -> list[str]:
        """One GitHub `::error` workflow command per failed row.

        Args:
            root: the directory the rows' paths are relative to (default ".").
            workspace: the repository root annotations are relative to (default
                $GITHUB_WORKSPACE, else git's top level, else the working directory).
        """
        # GitHub attaches an annotation to a file only by its path from the repository root.
        top = workspace or _workspace()
        lines = []
        for r in self.failures:
            path = os.path.relpath(os.path.join(os.path.abspath(root), r.path), top).replace(os.sep, "/")
            lines.append(f"::error file={_escape_property(path)},title={_escape_property(self.annotation)}::"
                         f"{_escape_data(r.describe())}")
        return lines


def _escape_data(text: str) -> str:
    # GitHub workflow-command escaping (actions/toolkit `escapeData` / `escapeProperty`).
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _workspace() -> str:
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace:
        return workspace
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    return top or os.getcwd()
