"""CLI tables stay readable at 80 columns: nothing cut with an ellipsis, left-out columns listed below."""

from __future__ import annotations

from rich.console import Console

from mobile_opt.cli._pipeline_view import pipeline_notes, pipeline_table
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


def _render(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(pipeline_table(_result(), width=width))
    for note in pipeline_notes(_result(), width=width):
        console.print(note, soft_wrap=True)
    return console.export_text()


def test_80_columns_cut_nothing_and_list_what_moved():
    text = _render(80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()[:8]) <= 80
    for word in ("accuracy", "sparsity", "unique/channel", "0.8512", "80.0%", "0.8490*", "FAILED"):
        assert word in text
    assert "stage 0 (prune): sparsity=0.8, schedule=polynomial, structure=unstructured, 12.3 s" in text
    assert "stage 1 check failed: int8 kernels: 3 of [4] (want all)" in text  # brackets survive rich
    assert "* accuracy of the converted .tflite" in text


def test_wide_terminals_keep_settings_in_the_table():
    text = _render(160)
    assert "…" not in text
    header = next(line for line in text.splitlines() if "stage" in line and "accuracy" in line)
    assert "settings" in header and header.rstrip().endswith("s")
    assert "int8 kernels: 3 of [4] (want all)" in text
