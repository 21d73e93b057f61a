"""What checking 100 inputs per backend costs next to one benchmark run, on the loopback phone.

Side by side, one run, rounds in alternating order: the wall time of
`device_bench.benchmark(device, [model])` (cpu, 1 thread, 50 runs, the defaults a user gets)
and of `device_bench.check_outputs(device, model, x[:100], y[:100], backends=("cpu",))`, on
LeNet-300-100's int8 .tflite that `bench/shipped_size.py` keeps. Goal (issue 23): the check
costs <= 2x one benchmark run. The ratio is per round; its median and range over rounds are
reported. The loopback phone runs the tool as a Python process, so both sides pay its start.

Usage:
    python bench/output_check_cost.py [--rounds 5]
Writes bench/results/output_check_cost.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import device_bench
from _rounds import machine
from device_bench.testing import LoopbackDevice
from device_bench.testing.fake_benchmark_model import install
from mobile_opt.datasets import load_dataset

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = RESULTS / "shipped_lenet_300_100_int8.tflite"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    _, (x, y) = load_dataset("fashion-mnist", val_samples=100)
    times: dict[str, list[float]] = {"benchmark": [], "check_outputs": []}
    with tempfile.TemporaryDirectory(prefix="output-check-cost-") as work, \
            LoopbackDevice(Path(work) / "device", auth_keys=None) as loop:
        cache = Path(work) / "cache"
        install(cache, abi="arm64-v8a")
        with device_bench.connect(f"direct:127.0.0.1:{loop.port}", key_path=Path(work) / "adbkey") as dev:
            tool = device_bench.ToolSettings(cache_dir=cache)
            jobs = {"benchmark": lambda: device_bench.benchmark(dev, [MODEL], tool=tool),
                    "check_outputs": lambda: device_bench.check_outputs(dev, MODEL, x, y, backends=("cpu",),
                                                                         tool=tool)}
            for r in range(args.rounds):
                for name in (list(jobs) if r % 2 == 0 else list(jobs)[::-1]):
                    start = time.perf_counter()
                    jobs[name]()
                    times[name].append(time.perf_counter() - start)
                print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    ratios = np.asarray(times["check_outputs"]) / np.asarray(times["benchmark"])
    payload = {
        "benchmark": "output_check_cost",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python", "bench/output_check_cost.py", *(argv if argv is not None else sys.argv[1:])]),
        "model": MODEL.name, "inputs": 100, "seconds_per_round": times,
        "ratio_check_over_benchmark": {"median": float(np.median(ratios)), "min": float(ratios.min()),
                                       "max": float(ratios.max()), "per_round": ratios.round(3).tolist()},
        "goal": "<= 2x", "goal_met": bool(np.median(ratios) <= 2.0), "machine": machine(),
    }
    (RESULTS / "output_check_cost.json").write_text(json.dumps(payload, indent=2, default=str))
    print(json.dumps(payload["ratio_check_over_benchmark"], indent=1), "goal met:", payload["goal_met"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
