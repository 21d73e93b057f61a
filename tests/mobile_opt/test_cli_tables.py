"""CLI tables stay readable: at most 100 columns however wide the terminal, nothing cut with an
ellipsis at 80, left-out columns listed below, failed checks in one line."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.console import Console

from mobile_opt.cli._pipeline_view import print_pipeline_result
from mobile_opt.pipeline import PipelineResult
from mobile_opt.stage import Check, StageReport


def _result() -> PipelineResult:
    kernels = {"fc1/kernel": {"size": 1000, "zeros": 800, "unique_values": 16, "max_unique_per_channel": 16}}
    stages = (
        StageReport(0, "prune", {"sparsity": 0.8, "schedule": "polynomial", "structure": "unstructured"}, 0.8512,
                    0.31, (Check("sparsity", ">= 0.79", "0.800", True),), kernels, 12.3),
        StageReport(1, "quantize", {"mode": "qat_int8"}, 0.8490, 0.53,
                    (Check("int8 kernels", "all", "3 of [4]", False),), kernels, 4.5, accuracy_source="tflite"),
    )
    return PipelineResult(model=None, stages=stages, baseline_accuracy=0.8543, max_accuracy_drop=1.0)


def _render(width: int, result=None) -> str:
    console = Console(width=width, record=True, color_system=None)
    print_pipeline_result(result or _result(), summary="out/m.keras.json", out=console)
    return console.export_text()


def test_80_columns_cut_nothing_and_list_what_moved():
    text = _render(80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()[:8]) <= 80
    for word in ("accuracy", "sparsity", "unique/channel", "0.8512", "80.0%", "0.8490*", "FAILED"):
        assert word in text
    assert "stage 0 (prune): sparsity=0.8, schedule=polynomial, structure=unstructured, 12.3 s" in text
    assert "1 check(s) failed (stage 1 quantize: 1; first int8 kernels): the full list is in out/m.keras.json" in text
    assert "* accuracy of the converted .tflite" in text


@pytest.mark.parametrize("width", [100, 160, 250])
def test_wide_terminals_keep_settings_in_a_table_of_at_most_100_columns(width):
    # issue 22: at a pipe's 160 columns the table was ~160 wide and its last header was cut.
    many = tuple(Check(f"sparsity[block_{i}_depthwise/depthwise_kernel]", ">= 0.5000", "0.0000", False)
                 for i in range(11))
    result = _result()
    result = PipelineResult(model=None, stages=(replace(result.stages[0], checks=many), result.stages[1]),
                            baseline_accuracy=0.8543, max_accuracy_drop=1.0)
    text = _render(width, result)
    lines = text.splitlines()
    table = lines[:lines.index(next(line for line in lines if line.startswith("  * accuracy")))]
    assert max(len(line.rstrip()) for line in table) <= 100 and "…" not in text
    header = next(line for line in table if "stage" in line and "accuracy" in line)
    assert "settings" in header and header.rstrip().endswith(" s")
    assert "schedule=polynomial" in text and "11 FAILED" in text and "1 FAILED" in text
    # Twelve failed checks, one line; the JSON summary has them all.
    summary = [line for line in lines if "failed" in line]
    assert summary == ["  12 check(s) failed (stage 0 prune: 11, stage 1 quantize: 1; first "
                       "sparsity[block_0_depthwise/depthwise_kernel]): the full list is in out/m.keras.json"]
