"""What `run_benchmarks` found: results, comparison, gates, output checks, and their CI reports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_bench.gate_report import GateReport

__all__ = ["BenchReport"]


@dataclass(frozen=True)
class BenchReport:
    """Everything one `run_benchmarks` call measured and decided.

    Attributes:
        results: one `BenchmarkResult` per (device, model, backend, threads).
        lost: {serial: why} for devices dropped during the run.
        unrun: (serial it was meant for, model, why) for runs no device could make.
        comparisons: `Comparison`s with the baseline (None without one).
        regression: the `RegressionReport` (None without `GateSettings.max_regression`).
        latency_budgets: `max_p50_ms` rows (`RegressionCheck`; None without budgets).
        output_checks: `OutputCheck`s per device and model (None without output checks).
        output_gates: the `OutputGateReport` (None without an output gate).
        op_costs: (result, per_op, per_type) joins of op-profiled results.
        plot: the latency plot written (None: not asked, or no run to draw).
        op_cost_plots: the per-op-type plots written beside it.
    """

    results: tuple
    lost: dict
    unrun: tuple
    comparisons: tuple | None = None
    regression: Any = None
    latency_budgets: tuple | None = None
    output_checks: tuple | None = None
    output_gates: Any = None
    op_costs: tuple = ()
    plot: Path | None = None
    op_cost_plots: tuple[Path, ...] = ()

    @property
    def gates(self) -> GateReport | None:
        """Every gate's rows in one report (None when no gate was set)."""
        latency = [*(self.regression.results if self.regression is not None else ()),
                   *(self.latency_budgets or ())]
        outputs = list(self.output_gates.results) if self.output_gates is not None else []
        if self.regression is None and self.latency_budgets is None and self.output_gates is None:
            return None
        if self.output_gates is not None and self.regression is None and self.latency_budgets is None:
            return GateReport(tuple(outputs), "mobile-opt output gates", "outputs", "mobile-opt bench",
                              ("all output gates held", "output gate(s) failed"))
        if self.output_gates is not None:
            return GateReport(tuple(latency + outputs), "mobile-opt latency and output gates", "bench",
                              "mobile-opt bench", ("all gates held", "gate(s) failed"))
        words = (("no significant regression", "significant regression(s)") if self.latency_budgets is None
                 else ("all latency gates held", "latency gate(s) failed"))
        return GateReport(tuple(latency), "mobile-opt latency gates", "latency", "mobile-opt latency", words)

    @property
    def ok(self) -> bool:
        """False when a run or an output check failed, a device was lost, a run was not made, or a gate failed."""
        failed_checks = any(b.status == "failed" for c in self.output_checks or () for b in c.backends)
        gates = self.gates
        return (not any(r.status == "failed" for r in self.results) and not self.lost and not self.unrun
                and not failed_checks and (gates is None or gates.ok))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what `mobile-opt bench --json` prints."""
        from device_bench.op_cost import op_costs_json

        data: dict[str, Any] = {"results": [r.to_dict() for r in self.results]}
        if self.comparisons is not None:
            data["comparison"] = [c.to_dict() for c in self.comparisons]
        if self.op_costs:
            data["op_costs"] = op_costs_json(self.op_costs)
        if self.regression is not None:
            data["regression"] = self.regression.to_dict()
        if self.latency_budgets is not None:
            data["latency_budgets"] = {"ok": all(r.ok for r in self.latency_budgets),
                                       "results": [r.to_dict() for r in self.latency_budgets]}
        if self.output_checks is not None:
            data["outputs"] = [c.to_dict() for c in self.output_checks]
        if self.output_gates is not None:
            data["output_gates"] = self.output_gates.to_dict()
        if self.lost or self.unrun:
            data.update(lost=dict(self.lost), unrun=[list(u) for u in self.unrun])
        return data

    def to_jsonl(self) -> str:
        """The results as JSON lines (what `read_jsonl` reads back)."""
        from device_bench.results import jsonl_line

        return "".join(jsonl_line(r) for r in self.results)

    def to_junit(self) -> str:
        """The gates as JUnit XML (a suite without test cases when no gate was set)."""
        return (self.gates or GateReport((), "mobile-opt bench", "bench")).to_junit()

    def annotations(self, root: str = ".") -> list[str]:
        """GitHub `::error` workflow commands, one per failed gate row."""
        return [] if self.gates is None else self.gates.annotations(root)
