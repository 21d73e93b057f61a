"""Speed of `converters.analyze` on a 14 MB fp32 MobileNetV2 .tflite, pinned to ONE core.

Goal: < 2 s per analysis, including Huffman/sparse sizing of every weight tensor and zlib
level 9 of the whole file. The model is tf_keras.applications.MobileNetV2(weights=None)
converted to fp32 with TFLiteConverter (no optimisation). The process is pinned to CPU 0
(`os.sched_setaffinity`) and BLAS/OpenMP pools are limited to one thread before numpy is
imported. One warm-up run, then `--repeats` timed runs; reported: wall-clock median, min,
max and all samples (`time.perf_counter`), plus the process CPU time of each run (on a
shared host the CPU time shows the work when other processes take the core; the host's
1-minute load average is recorded). zlib level 9 alone is timed the same way, since it is
a fixed share of the total. No outliers are dropped.

Also reported, per weight tensor with >= 100k values: Huffman payload bits / (entropy x n)
(goal <= 1.02) and the same with the counted codebook included.

Usage:
    python bench/analyze_speed.py [--repeats 5] [--model existing.tflite]
                                  [--out bench/results/analyze_speed.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _build_model(path: Path) -> None:
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def _timed(fn, repeats: int) -> dict:
    fn()  # warm-up (page cache, lazy imports)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"median_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall), "samples_s": wall,
            "cpu_median_s": statistics.median(cpu), "cpu_samples_s": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", type=Path, help="analyse this .tflite instead of building MobileNetV2")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "analyze_speed.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or Path(tmp) / "mobilenet_v2_fp32.tflite"
        if args.model is None:
            _build_model(path)
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # pin after TF is done

        from converters import huffman
        from converters.size import analyze
        from converters.tflite_model import load_tflite

        raw = path.read_bytes()
        analysis = _timed(lambda: analyze(path), args.repeats)
        gzip_only = _timed(lambda: zlib.compress(raw, 9), args.repeats)
        report = analyze(path)

        model = load_tflite(raw)
        tensors = []
        for t in model.subgraphs[0].tensors:
            if t.is_constant and t.num_elements >= 100_000:
                size = huffman.huffman_size(t.data(), symbol_bits=t.bits_per_element)
                bound = size.entropy_bits_per_symbol * size.n
                tensors.append({
                    "name": t.name.split(";")[-1], "shape": list(t.shape), "n": size.n,
                    "distinct": size.distinct, "entropy_bits_per_weight": size.entropy_bits_per_symbol,
                    "huffman_bits_per_weight": size.payload_bits / size.n,
                    "payload_over_entropy": size.payload_bits / bound if bound else None,
                    "with_codebook_over_entropy": size.total_bits / bound if bound else None,
                })

    result = {
        "what": "converters.analyze on fp32 MobileNetV2 (weights=None), one CPU core",
        "model_bytes": len(raw),
        "model_sha256": hashlib.sha256(raw).hexdigest(),
        "repeats": args.repeats,
        "warmup_runs": 1,
        "timing": "wall clock (perf_counter) of analyze(path): parse + per-tensor Huffman/sparse + zlib -9",
        "affinity": sorted(os.sched_getaffinity(0)),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
                 "load_avg_1m": os.getloadavg()[0]},
        "analyze": analysis,
        "zlib_level9_only": gzip_only,
        "goal_s": 2.0,
        "meets_goal_wall": analysis["median_s"] < 2.0,
        "meets_goal_cpu": analysis["cpu_median_s"] < 2.0,
        "report": {k: v for k, v in report.to_dict().items() if k not in ("tensors", "op_types", "subgraphs")},
        "large_tensors": tensors,
        "max_payload_over_entropy": max((t["payload_over_entropy"] for t in tensors), default=None),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"analyze: median {analysis['median_s']:.3f} s (min {analysis['min_s']:.3f}, max {analysis['max_s']:.3f}) "
          f"over {args.repeats} runs on 1 core, CPU {analysis['cpu_median_s']:.3f} s; "
          f"zlib -9 alone: median {gzip_only['median_s']:.3f} s (CPU {gzip_only['cpu_median_s']:.3f} s); "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(f"model {len(raw):,} B; coded {report.coded_bytes:,} B; gzip {report.gzip_bytes:,} B")
    print(f"Huffman payload / entropy bound, tensors >= 100k values: max {result['max_payload_over_entropy']:.4f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
