"""What ships: .tflite bytes an app mmaps, APK-zip bytes, coded estimate — side by side, one run.

For LeNet-300-100 on Fashion-MNIST (trained here, seed 0; the last 5,000 training images are
the validation split the recipe measures on):
  (a) fp32 (`converters.convert(model)`),
  (b) the converter's int8 PTQ (200 calibration images, float I/O): what a user does without us,
  (c) ours: `Pipeline([prune_channels(RATIO), quantize("qat_int4")])` — a fifth of the hidden
      units removed (300/100 -> 240/80: XNNPACK's int4 kernels ran an odd input width, 225,
      2.8x slower here, so the widths stay even), then 4-bit QAT of every Dense kernel, stored as real INT4 tensors by
      ai-edge-quantizer; tensor names shortened (`converters.shorten_names`).
For MobileNetV2 (alpha 0.35) it trains the network `bench/real_models.py` trains (same seed, data
and epochs: `bench/_mobilenet.py`) and makes (a), (b) and (c) = the recipe auto chose in
real_models.py's recorded search (`bench/results/real_models.json`: no second 30-minute search),
with `fold_batchnorm()` first: the converter folds each BatchNormalization into the conv before
it, which scaled every channel of auto's clustered kernels differently (8 shared values shipped
as 154 int8 codes); folded first, the file holds the clusters. (d) auto's kept file itself
(no fold), names shortened, sits beside them.

Per file: raw, zip (APK entry) and coded bytes (`converters.analyze`), INT4 tensors as the
flatbuffer stores them, top-1 on the FULL 10,000-image test set (LiteRT) with the paired
standard error of the drop, and host latency (1 thread, interleaved rotated rounds, median of
per-round p50s with a 95% bootstrap interval over rounds; `bench/_rounds.py`; LeNet's runs take
1-4 µs, which whole-µs run times cannot resolve at the median, so its figure is the per-round
mean), on the CPU named.

Goals (issue 21): LeNet-300-100 raw >= 8x smaller than fp32 with INT4 weights, drop <= 0.5 pp,
latency <= 1.05x int8 PTQ; MobileNetV2 coded >= 12x fp32, drop <= 1 pp, latency <= 1.05x PTQ.

Usage:
    python bench/shipped_size.py [--out bench/results] [--ratio 0.2] [--rounds 8]
Writes bench/results/shipped_size.json and shipped_{lenet_300_100,mobilenetv2}_{fp32,int8,ours}.tflite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

import device_bench
import _mobilenet
from _lenet import trained as trained_lenet
from _rounds import interleaved_p50s, machine, median_summary, ratio_summary
from converters import analyze, convert, evaluate, load_tflite, paired_drop, shorten_names
from mobile_opt import Pipeline, _tf, cluster, fold_batchnorm, prune, prune_channels, quantize

SEED = 0
GOALS = {"lenet_300_100": {"raw_vs_fp32": 8.0, "max_drop_pp": 0.5, "latency_vs_int8": 1.05},
         "mobilenetv2": {"coded_vs_fp32": 12.0, "max_drop_pp": 1.0, "latency_vs_int8": 1.05}}


def _sizes(content: bytes) -> dict:
    report = analyze(content)
    int4 = [t for sg in load_tflite(content).subgraphs for t in sg.tensors if t.is_constant and t.dtype == "int4"]
    return {"raw_bytes": report.raw_bytes, "zip_bytes": report.zip_bytes, "coded_bytes": report.coded_bytes,
            "int4_tensors": len(int4), "int4_weights": int(sum(t.num_elements for t in int4))}


def _stage_rows(result) -> list[dict]:
    return [{"kind": s.kind, "params": s.params, "accuracy_val": s.accuracy, "ok": s.ok,
             "failed_checks": [c.name for c in s.checks if not c.ok], "notes": list(s.notes)} for s in result.stages]


def _lenet(epochs: int, ratio: float, qat_epochs: int):
    model, train, val, test = trained_lenet(epochs)
    result = Pipeline([prune_channels(ratio), quantize("qat_int4")]).run(
        model, train, val, fine_tune_epochs=qat_epochs, max_accuracy_drop=GOALS["lenet_300_100"]["max_drop_pp"])
    stages = _stage_rows(result)
    files = {"fp32": convert(model), "int8": convert(model, quantization="int8", representative_data=train[0][:200]),
             "ours": shorten_names(result.tflite)}
    recipe = f"Pipeline([prune_channels({ratio}), quantize('qat_int4')]), {qat_epochs} epochs per stage"
    return files, test, {"train_epochs": epochs, "recipe": recipe, "stages": stages}


def _mobilenetv2(results: Path, epochs: int, fine_tune_epochs: int):
    """fp32 and int8 PTQ of the network bench/real_models.py trains (same seed and data), and
    ours: the recipe auto chose there (real_models.json), with BatchNormalization folded first."""
    keras = _tf.keras()
    keras.utils.set_random_seed(_mobilenet.SEED)
    (x, y), val, test = _mobilenet.load()
    model = _mobilenet.train(x, y, epochs)
    chosen = {s["kind"]: s["params"] for s in json.loads((results / "real_models.json").read_text())["auto"]["stages"]}
    stages = [fold_batchnorm(), prune(chosen["prune"]["sparsity"], schedule="polynomial", learning_rate=1e-3),
              cluster(chosen["cluster"]["clusters"], learning_rate=1e-4), quantize("ptq_int8", per_channel=False)]
    # auto fine-tuned on the first 15,000 training images and judged on the validation split.
    result = Pipeline(stages).run(model, (x[:15000], y[:15000]), val, fine_tune_epochs=fine_tune_epochs,
                                  max_accuracy_drop=GOALS["mobilenetv2"]["max_drop_pp"])
    files = {"fp32": convert(model), "int8": convert(model, quantization="int8", representative_data=x[:200]),
             "ours": shorten_names(result.tflite),
             # auto's own choice as real_models.py kept it (no fold), for the fold's effect side by side.
             "auto": shorten_names((results / "real_models_mobilenetv2_auto.tflite").read_bytes())}
    return files, test, {"train_epochs": epochs, "stages": _stage_rows(result),
                         "recipe": "Pipeline([fold_batchnorm(), prune(auto's sparsities), cluster(auto's clusters), "
                                   f"quantize('ptq_int8', per_channel=False)]), {fine_tune_epochs} epochs per stage, "
                                   "15,000 images; auto's choice from bench/results/real_models.json"}


def _measure(net: str, files: dict, test, out_dir: Path, rounds: int, rng) -> dict:
    paths = {}
    for key, content in files.items():
        paths[key] = out_dir / f"shipped_{net}_{key}.tflite"
        paths[key].write_bytes(content)
    latency = interleaved_p50s(paths, rounds, device_bench.RunSettings(
        runs=200, warmup_runs=10, min_secs=1.0, warmup_min_secs=0.3, run_timeout_s=600))
    # Whole-µs run times cannot resolve LeNet's p50 (1-2 µs): its latency figures are means.
    statistic = "mean" if net == "lenet_300_100" else "p50"
    p50 = latency[f"{statistic}_us_per_round"]
    rows, correct = {}, {}
    for key, content in files.items():
        ev = evaluate(content, test, per_sample=True)
        correct[key] = ev.correct
        lat = median_summary(p50[key], rng)
        rows[key] = {**_sizes(content), "accuracy": ev.accuracy, "accuracy_samples": ev.n_samples,
                     "latency_ms": {"statistic": f"median over rounds of each round's {statistic}",
                                    "median": lat["median"] / 1000, "ci95": [v / 1000 for v in lat["ci95"]],
                                    f"{statistic}_us_per_round": p50[key]},
                     "file": paths[key].name, "sha256": hashlib.sha256(content).hexdigest()}
    drop, se = paired_drop(correct["fp32"], correct["ours"])
    a, b, c = rows["fp32"], rows["int8"], rows["ours"]
    figures = {f"{kind}_vs_fp32": a[f"{kind}_bytes"] / c[f"{kind}_bytes"] for kind in ("raw", "zip", "coded")}
    figures.update({f"{kind}_vs_int8": b[f"{kind}_bytes"] / c[f"{kind}_bytes"] for kind in ("raw", "zip", "coded")})
    figures.update({"drop_pp_vs_fp32": drop, "drop_pp_standard_error": float(se),
                    "latency_ours_over_int8": ratio_summary(p50["ours"], p50["int8"], rng),
                    "latency_int8_over_fp32": ratio_summary(p50["int8"], p50["fp32"], rng)})
    goal = GOALS[net]
    size_key = "raw_vs_fp32" if "raw_vs_fp32" in goal else "coded_vs_fp32"
    met = {size_key: figures[size_key] >= goal[size_key], "drop": drop <= goal["max_drop_pp"],
           "latency": figures["latency_ours_over_int8"]["median"] <= goal["latency_vs_int8"]}
    if net == "lenet_300_100":
        met["int4_weights"] = c["int4_tensors"] > 0
    return {"rows": rows, "figures": figures, "goals": goal, "goals_met": met,
            "load_average_1min_per_round": latency["load_average_1min_per_round"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--epochs", type=int, default=12, help="fp32 training epochs of LeNet-300-100")
    parser.add_argument("--ratio", type=float, default=0.2, help="share of hidden units prune_channels removes")
    parser.add_argument("--qat-epochs", type=int, default=3, help="fine-tuning epochs per stage")
    parser.add_argument("--mobilenet-epochs", type=int, default=5,
                        help="fp32 training epochs of MobileNetV2 (5: as bench/real_models.py's recorded run)")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="MobileNetV2's epochs per stage")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved latency rounds")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = np.random.default_rng(SEED)
    nets = {}
    files, test, about = _lenet(args.epochs, args.ratio, args.qat_epochs)
    nets["lenet_300_100"] = {**about, **_measure("lenet_300_100", files, test, out_dir, args.rounds, rng)}
    files, test, about = _mobilenetv2(out_dir, args.mobilenet_epochs, args.fine_tune_epochs)
    nets["mobilenetv2"] = {**about, **_measure("mobilenetv2", files, test, out_dir, args.rounds, rng)}
    payload = {
        "benchmark": "shipped_size",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python", "bench/shipped_size.py", *(argv if argv is not None else sys.argv[1:])]),
        "sizes": "raw = the .tflite file (what LiteRT mmaps from an APK, stored uncompressed); zip = its APK/zip "
                 "entry deflated (a download); coded = the Deep Compression storage estimate (no runtime loads it)",
        "latency_method": "host backend (LiteRT, XNNPACK), 1 thread, rotated interleaved rounds; median of "
                          "per-round p50s, 95% bootstrap interval over rounds; holds for the CPU in 'machine'",
        "nets": nets,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
    (out_dir / "shipped_size.json").write_text(json.dumps(payload, indent=2, default=str))
    for net, body in nets.items():
        for key, row in body["rows"].items():
            lat = row["latency_ms"]
            print(f"{net:>14} {key:>5}: {row['raw_bytes']:>9,} raw {row['zip_bytes']:>9,} zip "
                  f"{row['coded_bytes']:>9,} coded  int4 tensors {row['int4_tensors']}  top-1 {row['accuracy']:.4f}  "
                  f"{lat['median']:.4f} ms [{lat['ci95'][0]:.4f}, {lat['ci95'][1]:.4f}]")
        print(json.dumps({"figures": body["figures"], "goals_met": body["goals_met"]}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
