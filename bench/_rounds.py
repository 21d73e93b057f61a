"""Interleaved host latency rounds, shared by the benches that compare models' speed.

Every round benchmarks each model once (host backend, 1 thread), in an order rotated per
round: a model always measured in one position would carry that position's cache and CPU
frequency state. Ratios are taken per round (both sides under the same load) and summarised by
their median and a 95% bootstrap interval over rounds, so the interval includes the
round-to-round (process-to-process) spread, which pooled per-run samples would hide.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import device_bench


def interleaved_p50s(paths: dict[str, Path], rounds: int, run: "device_bench.RunSettings") -> dict:
    """`{"p50_us_per_round": {name: [p50 of each round]}, "load_average_1min_per_round": [...]}`."""
    names = list(paths)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    load: list[float] = []
    with device_bench.connect() as host:
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            results = device_bench.benchmark(host, [paths[n] for n in order], threads=(1,), run=run)
            for name, result in zip(order, results):
                if result.status != "ok":
                    raise RuntimeError(f"{name}: benchmark {result.status}: {result.reason}")
                p50s[name].append(result.latency.p50_us)
            load.append(os.getloadavg()[0])
            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {p50s[n][-1]:.0f} us" for n in names), flush=True)
    return {"p50_us_per_round": p50s, "load_average_1min_per_round": load}


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
