"""Host benchmark vs LiteRT's own Python benchmark on the same model, interleaved.

Measures whether `python -m device_bench.host_benchmark` (the host backend and the loopback
device's benchmark_model) reports the same latency as
`python -m ai_edge_litert.tools.benchmark_litert_model`, and what our timing loop costs.

- ratio: median of our per-repetition medians / median of LiteRT's (goal 0.97–1.03), and
  the median of per-repetition ratios (the two tools run back to back, so each pair sees
  similar host load);
- loop overhead: the cost of one iteration of our timing loop around a no-op call, as a
  fraction of the model's median latency (goal ≤ 1%).

Both tools run as separate processes, alternating which goes first, with the same thread
count, run count and warm-up. The model is a small CNN (tf_keras, converted here).

Usage:
    python bench/harness_overhead.py [--reps 7] [--runs 200] [--threads 1]
Writes bench/results/harness_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "harness_overhead.json"


def build_model(path: Path) -> None:
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((96, 96, 3))
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def ours(model: Path, runs: int, warmup: int, threads: int, tmp: Path) -> float:
    samples = tmp / "samples.txt"
    subprocess.run(
        [sys.executable, "-m", "device_bench.host_benchmark", f"--graph={model}",
         f"--num_runs={runs}", "--min_secs=0", f"--warmup_runs={warmup}", "--warmup_min_secs=0",
         f"--num_threads={threads}", f"--per_run_file_path={samples}"],
        check=True, capture_output=True, timeout=600,
    )
    values = [float(v) for v in samples.read_text().split()]
    return statistics.median(values) / 1000.0  # ms


def litert(model: Path, runs: int, warmup: int, threads: int, tmp: Path) -> float:
    out = tmp / "litert.json"
    subprocess.run(
        [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={model}",
         f"--num_runs={runs}", f"--warmup_runs={warmup}", f"--num_threads={threads}",
         f"--result_json={out}"],
        check=True, capture_output=True, timeout=600,
    )
    return float(json.loads(out.read_text())["latency"]["median_ms"])


def loop_overhead_ns(iterations: int = 200_000) -> float:
    """ns per iteration of host_benchmark's timing loop around a call that does nothing."""
    from device_bench.host_benchmark import _timed_phase

    def noop() -> None:
        return None

    start = time.perf_counter_ns()
    _timed_phase(noop, iterations, 0.0, 600.0, -1.0)
    loop = (time.perf_counter_ns() - start) / iterations
    start = time.perf_counter_ns()
    for _ in range(iterations):
        noop()
    bare = (time.perf_counter_ns() - start) / iterations
    return loop - bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = tmp / "cnn.tflite"
        build_model(model)
        ours_ms, litert_ms = [], []
        for rep in range(args.reps):
            order = (ours, litert) if rep % 2 == 0 else (litert, ours)
            for tool in order:
                value = tool(model, args.runs, args.warmup, args.threads, tmp)
                (ours_ms if tool is ours else litert_ms).append(value)
            print(f"rep {rep + 1}/{args.reps}: ours {ours_ms[-1]:.3f} ms, "
                  f"litert {litert_ms[-1]:.3f} ms", flush=True)
        model_bytes = model.stat().st_size

    ours_median = statistics.median(ours_ms)
    litert_median = statistics.median(litert_ms)
    ratio = ours_median / litert_median
    # Each repetition runs the two tools back to back, so their ratio sees similar host load.
    paired = sorted(o / l for o, l in zip(ours_ms, litert_ms))
    quartiles = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [paired[0]] * 3
    overhead_ns = loop_overhead_ns()
    overhead_fraction = overhead_ns / (ours_median * 1e6)
    result = {
        "what": "host_benchmark median latency vs ai_edge_litert benchmark_litert_model",
        "model": "tf_keras CNN 96x96x3, conv32/64/128 (3x3, same) + maxpool, GAP, dense10 (float32)",
        "model_bytes": model_bytes,
        "threads": args.threads,
        "runs_per_rep": args.runs,
        "warmup_per_rep": args.warmup,
        "reps": args.reps,
        "ours_median_ms_per_rep": ours_ms,
        "litert_median_ms_per_rep": litert_ms,
        "ours_median_ms": ours_median,
        "litert_median_ms": litert_median,
        "ratio": ratio,
        "host_load_average_1m_at_end": os.getloadavg()[0],
        "host_cpus": os.cpu_count(),
        "ratio_within_3pct": abs(ratio - 1) <= 0.03,
        "paired_ratio_median": statistics.median(paired),
        "paired_ratio_iqr": [quartiles[0], quartiles[2]],
        "loop_overhead_ns_per_iteration": overhead_ns,
        "loop_overhead_fraction": overhead_fraction,
        "loop_overhead_within_1pct": overhead_fraction <= 0.01,
        "host": platform.platform(),
        "python": platform.python_version(),
        "note": "medians of per-repetition medians; tools run as separate processes, "
                "alternating order; litert reports medians rounded to 0.01 ms. On a busy host "
                "(see load average) single repetitions swing by 2-3x; only the median of many "
                "repetitions is meaningful there.",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ours {ours_median:.3f} ms, litert {litert_median:.3f} ms, ratio {ratio:.4f} "
          f"(paired median {statistics.median(paired):.4f}, IQR {quartiles[0]:.3f}-{quartiles[2]:.3f}); "
          f"loop overhead {overhead_ns:.0f} ns/iteration = {overhead_fraction * 100:.3f}% "
          f"-> {RESULTS}")


if __name__ == "__main__":
    main()
