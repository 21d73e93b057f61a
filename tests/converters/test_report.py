"""Markdown and table rows from real reports: every figure shown comes from the report."""

from __future__ import annotations

import pytest

from converters.size_diff import diff
from converters.report import (CODED_LABEL, RAW_LABEL, ZIP_LABEL, diff_summary_rows, diff_tensor_rows,
                               op_type_rows, summary_rows, tensor_rows, to_markdown)
from converters.size import analyze


def test_report_rows(pruned_path):
    report = analyze(pruned_path)
    rows = summary_rows(report)
    # What ships leads: raw, then the APK/zip entry, then the coded estimate (labelled as one).
    assert [r["bytes"] for r in rows[:3]] == [f"{report.raw_bytes:,}", f"{report.zip_bytes:,}",
                                              f"{report.coded_bytes:,}"]
    assert "shipped" in rows[0]["measure"] and "zip" in rows[1]["measure"] and "estimate" in rows[2]["measure"]
    summary = {r["measure"]: r for r in rows}
    assert summary["gzip (zlib level 9, the TF-MOT convention)"]["bytes"] == f"{report.gzip_bytes:,}"
    assert [r["op type"] for r in op_type_rows(report)] == [o.op_type for o in report.op_types]
    rows = tensor_rows(report, top=2)
    assert len(rows) == 2
    biggest = max(report.counted_tensors, key=lambda t: t.raw_bytes)
    assert rows[0]["raw"] == f"{biggest.raw_bytes:,}" and rows[0]["best"] == biggest.best_encoding
    assert "sg" not in rows[0]  # one subgraph: no subgraph column
    assert len(tensor_rows(report, top=None)) == len(report.counted_tensors)


def test_markdown_report(pruned_path):
    report = analyze(pruned_path)
    md = to_markdown(report, top=3)
    assert md.startswith(f"## Size of `{report.source}`")
    assert f"| {report.coded_bytes:,} |" in md
    assert "### Weights by op type" in md and "| FULLY_CONNECTED |" in md
    table = md.split("### Largest tensors")[1]
    assert table.count("\n| ") == 1 + 3  # header + 3 rows


def test_markdown_diff(fp32_path, int8_path):
    d = diff(fp32_path, int8_path)
    md = to_markdown(d)
    assert md.startswith("## Size diff")
    assert f"{d.raw_bytes.change:+,}" in md
    assert [r["measure"] for r in diff_summary_rows(d)][:4] == ["raw", "zip", "coded (estimate)", "gzip"]
    rows = diff_tensor_rows(d, top=None)
    assert all(r["status"] != "same" for r in rows)
    changes = [abs(int(r["raw change"].replace(",", ""))) for r in rows]
    assert changes == sorted(changes, reverse=True)


def test_markdown_rejects_other_types():
    with pytest.raises(TypeError, match="SizeReport or SizeDiff"):
        to_markdown({"raw_bytes": 1})
