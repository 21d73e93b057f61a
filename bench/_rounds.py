"""Interleaved host latency rounds, shared by the benches that compare models' speed.

Every round benchmarks each model once (host backend, 1 thread), in an order rotated per
round: a model always measured in one position would carry that position's cache and CPU
frequency state. Ratios are taken per round (both sides under the same load) and summarised by
their median and a 95% bootstrap interval over rounds, so the interval includes the
round-to-round (process-to-process) spread, which pooled per-run samples would hide.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np

import device_bench
from device_bench._host import cpu_flags


def interleaved_p50s(paths: dict[str, Path], rounds: int, run: "device_bench.RunSettings") -> dict:
    """`{"p50_us_per_round": {name: [...]}, "mean_us_per_round": {...}, "load_average_1min_per_round": [...]}`.

    The tool's per-run times are whole microseconds, so a model of a few µs has a p50 that can
    only be 1, 2, 3... µs; its mean (of the unrounded runs) is what resolves such a model.
    """
    names = list(paths)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    means: dict[str, list[float]] = {n: [] for n in names}
    load: list[float] = []
    with device_bench.connect() as host:
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            results = device_bench.benchmark(host, [paths[n] for n in order], threads=(1,), run=run)
            for name, result in zip(order, results):
                if result.status != "ok":
                    raise RuntimeError(f"{name}: benchmark {result.status}: {result.reason}")
                p50s[name].append(result.latency.p50_us)
                means[name].append(result.latency.mean_us)
            load.append(os.getloadavg()[0])
            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {p50s[n][-1]:.0f} us" for n in names), flush=True)
    return {"p50_us_per_round": p50s, "mean_us_per_round": means, "load_average_1min_per_round": load}


def ratio_summary(numer: list[float], denom: list[float], rng) -> dict:
    """Per-round ratios numer/denom: median and a 95% bootstrap interval of the median over rounds."""
    ratios = np.asarray(numer) / np.asarray(denom)
    boot = np.median(rng.choice(ratios, size=(2000, len(ratios)), replace=True), axis=1)
    return {"median": float(np.median(ratios)), "ci95": [float(np.percentile(boot, 2.5)),
                                                         float(np.percentile(boot, 97.5))],
            "per_round": [round(float(r), 4) for r in ratios]}


def median_summary(values: list[float], rng) -> dict:
    """Median of per-round values and a 95% bootstrap interval over rounds."""
    values = np.asarray(values, float)
    boot = np.median(rng.choice(values, size=(2000, len(values)), replace=True), axis=1)
    return {"median": float(np.median(values)), "ci95": [float(np.percentile(boot, 2.5)),
                                                         float(np.percentile(boot, 97.5))]}


# SIMD extensions that decide XNNPACK's kernels on x86: int8 runs fastest with VNNI/AMX, and
# without them can be slower than fp32, so a latency record names the ones this CPU has.
_SIMD = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def machine() -> dict:
    """Where a bench ran: OS, Python, CPUs, the CPU model and its SIMD extensions, TensorFlow."""
    from mobile_opt import _tf

    cpu: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            cpu.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: platform's name only
        pass
    flags = cpu_flags()
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "cpu_model": cpu.get("model name", platform.processor()), "simd": [f for f in _SIMD if f in flags],
            "tensorflow": _tf.tf().__version__, "load_average_at_end": os.getloadavg()}
