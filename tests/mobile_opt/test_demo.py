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
    assert converters.analyze(tmp_path / "compressed.tflite").coded_bytes == compressed["coded_bytes"]
    assert compressed["coded_bytes"] * 5 < fp32["raw_bytes"]
    assert summary["pipeline"]["stages"][-1]["notes"] == ["QAT scheme: PCQAT"]
    assert all(s["ok"] for s in summary["pipeline"]["stages"]), summary["pipeline"]["stages"]
    assert {b["status"] for b in summary["benchmarks"]} == {"ok"}
    assert all(b["latency"]["p50_us"] > 0 for b in summary["benchmarks"])
    report = (tmp_path / "report.html").read_text()
    assert f"{compressed['coded_bytes']:,} B" in report and "Compression pipeline" in report
    assert "report.html" in proc.stdout
