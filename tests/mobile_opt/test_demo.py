"""The README's main job, end to end on the host (quick mode)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import converters


@pytest.mark.slow
def test_demo_trains_compresses_converts_analyses_and_benchmarks(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mobile_opt.cli", "demo", "--quick", "--runs", "10", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Compression pipeline" in proc.stdout and "Benchmark" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    fp32, compressed = summary["models"]
    # Re-measure the written files independently of the summary.
    measured = converters.analyze(tmp_path / "compressed.tflite")
    assert (measured.raw_bytes, measured.zip_bytes, measured.coded_bytes) == (
        compressed["raw_bytes"], compressed["zip_bytes"], compressed["coded_bytes"])
    # The headline is what ships: .tflite bytes, then zip, then the coded estimate.
    assert summary["compression_ratio"] == summary["ratios"]["raw"] == fp32["raw_bytes"] / compressed["raw_bytes"]
    assert "smaller than fp32 as shipped" in proc.stdout
    # A compressed model measured slower than fp32 comes with its per-op explanation.
    if summary["slowdown"] is not None:
        assert "Slower than fp32 here" in proc.stdout and summary["slowdown"]["changes"]
    assert compressed["coded_bytes"] * 5 < fp32["raw_bytes"]
    assert summary["pipeline"]["stages"][-1]["notes"] == ["QAT scheme: PCQAT"]
    assert all(s["ok"] for s in summary["pipeline"]["stages"]), summary["pipeline"]["stages"]
    assert {b["status"] for b in summary["benchmarks"]} == {"ok"}
    assert all(b["latency"]["p50_us"] > 0 for b in summary["benchmarks"])
    report = (tmp_path / "report.html").read_text()
    assert f"{compressed['coded_bytes']:,} B" in report and "Compression pipeline" in report
    assert "report.html" in proc.stdout
