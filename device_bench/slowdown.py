"""Why a compressed model runs slower than its baseline on this device: per-op-type time.

A smaller model is not always a faster one, and the answer depends on the CPU: XNNPACK's int8
convolutions are fast where the CPU has int8 dot-product instructions (ARMv8.2 dotprod, x86
VNNI) and can be slower than fp32 where it does not (measured on an AVX2-only EPYC,
BENCHMARKS.md). So a slower result is never printed bare: `explain_slowdown` compares the two
models' op-profiled runs (`RunSettings(op_profiling=True)`) type by type, says which op types
took longer and by how much, and what would help.

Example:
    >>> base, cand = benchmark(dev, [fp32, int8], run=RunSettings(op_profiling=True))  # doctest: +SKIP
    >>> explain_slowdown(base, cand).summary()                                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from device_bench.intervals import ms

__all__ = ["OpTypeChange", "Slowdown", "explain_slowdown", "is_slower"]

# SIMD that gives XNNPACK fast int8 kernels (x86 /proc/cpuinfo flags; ARM phones have dotprod
# from ARMv8.2, which every arm64 phone of the last years has).
_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


@dataclass(frozen=True)
class OpTypeChange:
    """One op type's summed per-run time in both models (ms) and the difference."""

    node_type: str
    baseline_ms: float
    candidate_ms: float

    @property
    def delta_ms(self) -> float:
        return self.candidate_ms - self.baseline_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta_ms": self.delta_ms}


@dataclass(frozen=True)
class Slowdown:
    """A measured slowdown of `candidate` against `baseline`, explained per op type."""

    baseline: str
    candidate: str
    ratio: float  # candidate p50 / baseline p50
    device: str
    changes: tuple[OpTypeChange, ...]  # slower op types first
    advice: tuple[str, ...]

    def summary(self) -> str:
        worse = [c for c in self.changes if c.delta_ms > 0][:3]
        where = ", ".join(f"{c.node_type} {ms(c.baseline_ms, from_ms=True)} -> {ms(c.candidate_ms, from_ms=True)} ms"
                          for c in worse)
        text = f"{self.candidate} runs {self.ratio:.2f}x the time of {self.baseline} on {self.device}"
        return text + (f"; slower ops: {where}" if where else "; no op type got slower (per-op rows)") + ". " \
            + " ".join(self.advice)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "candidate": self.candidate, "ratio": self.ratio, "device": self.device,
                "changes": [c.to_dict() for c in self.changes], "advice": list(self.advice),
                "summary": self.summary()}


def is_slower(baseline: Any, candidate: Any) -> bool:
    """Whether the candidate's p50 is above the baseline's with the 95 % intervals apart.

    Without per-run times (a phone's tool) the means' intervals are compared.
    """
    for stat in ("p50", "mean"):
        lo = _interval(candidate, stat)
        hi = _interval(baseline, stat)
        if lo is not None and hi is not None:
            return lo[0] > hi[1]
    return False


def _interval(result: Any, stat: str) -> list | None:
    intervals = (result.latency.intervals_us or {}) if result.latency else {}
    value = intervals.get(stat)
    if value is None or None in value:
        return None
    return value


def explain_slowdown(baseline: Any, candidate: Any) -> Slowdown:
    """Per-op-type time of two op-profiled `BenchmarkResult`s of the same device and backend.

    Raises:
        ValueError: a result without per-op rows (run with `RunSettings(op_profiling=True)`).
    """
    rows = {}
    for name, result in (("baseline", baseline), ("candidate", candidate)):
        run_rows = [r for r in result.op_profile if r.section == "run" and r.avg_ms is not None]
        if not run_rows:
            raise ValueError(f"The {name} result has no per-op rows; benchmark with RunSettings(op_profiling=True).")
        per_type: dict[str, float] = {}
        for r in run_rows:
            per_type[r.node_type] = per_type.get(r.node_type, 0.0) + r.avg_ms
        rows[name] = per_type
    types = set(rows["baseline"]) | set(rows["candidate"])
    changes = sorted((OpTypeChange(t, rows["baseline"].get(t, 0.0), rows["candidate"].get(t, 0.0)) for t in types),
                     key=lambda c: -c.delta_ms)
    device = baseline.device.get("model") or baseline.device.get("serial") or "this device"
    return Slowdown(baseline.model_path, candidate.model_path, candidate.latency.p50_us / baseline.latency.p50_us,
                    f"{device} ({baseline.backend}, {baseline.threads} thread(s))", tuple(changes),
                    tuple(_advice(baseline, candidate)))


def _advice(baseline: Any, candidate: Any) -> list[str]:
    advice = []
    if baseline.device.get("serial") == "host":
        from device_bench._host import cpu_flags

        flags = cpu_flags()
        if not flags & set(_INT8_DOT):
            advice.append("This CPU has no int8 dot-product instructions (VNNI), where XNNPACK's int8 kernels "
                          "can be slower than fp32; ARM phones with dotprod run them faster. Measure on the "
                          "target: mobile-opt bench --device SERIAL.")
    if any(r.node_type.upper() == "DEQUANTIZE" for r in candidate.op_profile):
        advice.append("The model dequantizes weights at run time (weight-only quantization): use full-integer "
                      "int8 (quantize('ptq_int8') or 'qat_int8') to compute in int8.")
    advice.append("For speed rather than size, remove work: prune_channels(0.25) removes filters (fewer MACs).")
    return advice
