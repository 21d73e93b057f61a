"""Where time goes in the latency bench's four models: per-op-type time share vs MACs share.

For each of `bench/results/latency_{fp32,ptq_int8,channel_int8,sparse_fp32}.tflite` (written
by bench/latency.py), ROUNDS rounds in a rotated order of `device_bench.benchmark` on the host
(1 thread, XNNPACK) with op profiling: LiteRT's own profiler, 100 profiled runs per model and
round, joined with `converters.count_flops` per op (`device_bench.op_cost`). Time shares are
within a run, so they hold under load better than absolute ms; each figure is the median over
rounds with its min–max across rounds.

Usage:
    python bench/op_costs.py [--rounds 5] [--results bench/results]
Writes bench/results/latency_op_costs.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import device_bench
from _rounds import machine
from device_bench.op_cost import op_costs_of
from device_bench.settings import RunSettings

MODELS = ("fp32", "ptq_int8", "channel_int8", "sparse_fp32")
TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    results = Path(args.results)
    paths = {m: results / f"latency_{m}.tflite" for m in MODELS}
    seen: dict[str, list] = {m: [] for m in MODELS}  # per model, per round: (per_op, per type by name)
    started = datetime.datetime.now(datetime.timezone.utc)
    with device_bench.connect("host") as host:
        for r in range(args.rounds):
            for m in MODELS[r % len(MODELS):] + MODELS[:r % len(MODELS)]:
                (result,) = device_bench.benchmark(host, [paths[m]], threads=(1,), run=RunSettings(
                    runs=100, min_secs=0, op_profiling=True))
                per_op, per_type = op_costs_of(result)
                seen[m].append((per_op, {t.node_type: t for t in per_type}))
    out = {"command": "python " + " ".join(sys.argv), "started_utc": started.isoformat(timespec="seconds"),
           "rounds": args.rounds, "threads": 1, "kernels": "XNNPACK (LiteRT's default)", "machine": machine(),
           "models": {}}
    lines = ["| model | op type | ops | time share | MACs share | GMAC/s | ms |", "|---|---|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        rows = seen[m][0][0]
        entry = {"rows": len(rows), "joined": sum(o.matched for o in rows),
                 "unjoined": sorted({o.node_type for o in rows if not o.matched}), "per_type": {}}
        for t in TYPES:
            per_round = [by_type[t] for _, by_type in seen[m]]
            figures = {"count": per_round[0].count, "macs": per_round[0].macs,
                       "macs_share": per_round[0].macs_share,
                       "time_share": _spread([p.time_share for p in per_round]),
                       "gmacs_per_s": _spread([p.gmacs_per_s for p in per_round]),
                       "ms": _spread([p.avg_ms for p in per_round])}
            entry["per_type"][t] = figures
            ts, g, ms = figures["time_share"], figures["gmacs_per_s"], figures["ms"]
            lines.append(f"| {m} | {t} | {figures['count']} | {100 * ts['median']:.1f}% "
                         f"({100 * ts['min']:.1f}–{100 * ts['max']:.1f}) | {100 * figures['macs_share']:.1f}% | "
                         f"{g['median']:.1f} ({g['min']:.1f}–{g['max']:.1f}) | {ms['median']:.3f} |")
        out["models"][m] = entry
    (results / "latency_op_costs.json").write_text(json.dumps(out, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
