"""Deep Compression (Han et al., ICLR 2016) on Fashion-MNIST, end to end with mobile-opt.

For LeNet-300-100 and LeNet-5 (`mobile_opt.zoo`), with a fixed seed:
  1. train on the full Fashion-MNIST training set (55,000 images; the last 5,000 are the
     validation split every stage measures itself on);
  2. `--recipe auto` (default): `auto_optimize(model, train, val, AutoSettings(max_accuracy_drop=0.5,
     level=2, size="coded"))` finds the recipe itself: no per-layer setting comes from this file.
     `--recipe hand`: the per-layer recipes below, written by hand after Han et al.,
     `Pipeline([prune({layer: sparsity}), cluster({layer: clusters}), quantize(mode)])`
     (first conv and classifier pruned less, 4-5 bit sharing, PCQAT); kept as the
     comparison row `hand_recipes` of the JSON;
  3. size accounting per ../shared/reference/size_accounting.md with `converters.analyze`:
     fp32 .tflite bytes of the trained model (`converters.convert`, quantization="none") →
     coded bytes of the final int8 .tflite (graph and metadata counted as they are, each
     weight buffer at its smallest of raw / Huffman / CSR + Huffman), ratio = fp32 ÷ coded;
  4. accuracy of the fp32 .tflite and of the final .tflite on the FULL 10,000-image test set
     with LiteRT (`converters.evaluate`).
The stage table gives, after each stage, the accuracy (validation split, Keras for
prune/cluster, LiteRT for the int8 model), overall sparsity, largest number of distinct values
in a kernel, and the coded size of the model as it stands (prune and cluster rows: converted
to fp32 .tflite; quantize row: the final int8 file; code row: coded bytes of the final file).

Goals (issue 12): unaided `auto` reaches >= 53× on both networks (what the hand recipes
reach) with a top-1 drop <= 0.5 pp on the full test set, within 45 minutes wall per network
on 2 cores. Reference: Soft Weight-Sharing (Ullrich et al. 2017) reports 64× (LeNet-300-100)
and 162× (LeNet-5) on MNIST.

Usage:
    python bench/deep_compression.py [--nets lenet_300_100,lenet5] [--out bench/results]
        [--recipe auto|hand] [--level 2] [--search-minutes 38] [--update]
        [--train-epochs N] [--fine-tune-epochs N (hand)]
Writes bench/results/deep_compression.json, deep_compression_<net>.tflite (auto's choice;
`_hand.tflite` for the hand recipe) and deep_compression_<net>_auto.md (auto's report).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from converters import analyze, convert, evaluate, paired_drop
from mobile_opt import _tf
from mobile_opt.clustering import cluster
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.quantization import quantize
from mobile_opt.stage import Stage
from mobile_opt.zoo import lenet5, lenet_300_100

SEED = 0
VAL = 5000  # default validation split (the last images of the training set)
GOALS = {"lenet_300_100": 53.0, "lenet5": 53.0}
SOFT_WEIGHT_SHARING = {"lenet_300_100": 64.0, "lenet5": 162.0}  # Ullrich et al. 2017, MNIST
MAX_DROP_PP = 0.5

# Per-layer settings in the spirit of Han et al. Table 1/2: the big fully-connected layers
# are pruned hardest, the first conv and the classifier least.
RECIPES = {
    "lenet_300_100": {
        "build": lenet_300_100,
        "train_epochs": 10,
        "fine_tune_epochs": 12,
        "sparsity": {"fc1": 0.95, "fc2": 0.9, "fc3": 0.7},
        "clusters": {"fc1": 16, "fc2": 16, "fc3": 32},
        "quantize": "qat_int8",
    },
    "lenet5": {
        "build": lenet5,
        "train_epochs": 8,
        "fine_tune_epochs": 4,
        "sparsity": {"conv1": 0.4, "conv2": 0.88, "fc1": 0.96, "fc2": 0.8},
        "clusters": {"conv1": 32, "conv2": 16, "fc1": 16, "fc2": 32},
        "quantize": "qat_int8",
    },
}


class _Keep(Stage):
    """Runs a stage unchanged and keeps its output model, for the per-stage size column."""

    def __init__(self, inner: Stage):
        self.inner = inner
        self.kind = inner.kind
        self.trains = inner.trains
        self.model = None

    def params(self) -> dict:
        return self.inner.params()

    def apply(self, model, ctx):
        out = self.inner.apply(model, ctx)
        self.model = out.model
        return out


def _coded(tflite: bytes) -> dict:
    report = analyze(tflite)
    return {"raw_bytes": report.raw_bytes, "gzip_bytes": report.gzip_bytes, "coded_bytes": report.coded_bytes}


def _weight_table(tflite: bytes) -> list[dict]:
    """Per-weight-tensor rows of the final file (what the paper's per-layer tables show)."""
    report = analyze(tflite)
    keys = ("name", "dtype", "shape", "params", "raw_bytes", "zero_fraction", "unique_values",
            "entropy_bits_per_weight", "huffman_bytes", "sparse_bytes", "sparse_index_bits",
            "best_encoding", "coded_bytes")
    rows = [{k: t.to_dict()[k] for k in keys} for t in report.counted_tensors]
    rows.append({"name": "(graph, metadata, quantization parameters)", "coded_bytes": report.non_weight_bytes,
                 "raw_bytes": report.non_weight_bytes, "best_encoding": "raw"})
    return rows


def _train(name: str, data, train_epochs: int | None):
    keras = _tf.keras()
    recipe = RECIPES[name]
    (x_train, y_train) = data[0]
    keras.utils.set_random_seed(SEED)
    model = recipe["build"]()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs = train_epochs or recipe["train_epochs"]
    model.fit(x_train, y_train, epochs=epochs, batch_size=128, verbose=0)
    return model, epochs


def run_auto(name: str, data, *, train_epochs: int | None, level: int, search_minutes: float,
             out_dir: Path, work_dir: Path) -> dict:
    """Unaided: only the accuracy budget (and a level / time limit) goes in."""
    import shutil

    from mobile_opt.auto import AutoSettings, auto_optimize

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    started = time.perf_counter()
    model, epochs = _train(name, data, train_epochs)
    train_s = time.perf_counter() - started
    fp32 = convert(model, quantization="none")
    base_eval = evaluate(fp32, (x_test, y_test), per_sample=True)
    fp32_size = _coded(fp32)

    def progress(p):
        if p.last is not None:
            c = p.last
            print(f"  [{name}] trial {c.number} ({p.done}/{p.total}, {p.elapsed_s / 60:.1f} min): "
                  + (c.error if c.error else f"{c.coded_bytes:,} B coded, {c.accuracy_drop_pp:+.2f} pp val, "
                     f"{'feasible' if c.feasible else 'infeasible'}")
                  + (f"; best {p.best.coded_bytes:,} B" if p.best else ""), flush=True)

    t0 = time.perf_counter()
    # The goals are coded figures (issue 12): the search minimises the coded estimate.
    settings = AutoSettings(max_accuracy_drop=MAX_DROP_PP, level=level, timeout_s=search_minutes * 60,
                            size="coded", output_dir=work_dir / name, study_name=f"dc-{name}")
    result = auto_optimize(model, (x_train, y_train), (x_val, y_val), settings, progress=progress)
    search_s = time.perf_counter() - t0
    if result.chosen is None:
        raise SystemExit(f"{name}: auto found no feasible candidate: {result.message}")
    final = result.tflite
    final_eval = evaluate(final, (x_test, y_test), per_sample=True)
    final_size = _coded(final)
    tflite_path = out_dir / f"deep_compression_{name}.tflite"
    tflite_path.write_bytes(final)
    shutil.copyfile(result.files["report"], out_dir / f"deep_compression_{name}_auto.md")
    chosen = result.chosen
    ratio = fp32_size["raw_bytes"] / final_size["coded_bytes"]
    drop, drop_se = paired_drop(base_eval.correct, final_eval.correct)
    return {
        "network": name,
        "recipe_source": f"auto_optimize(max_accuracy_drop={MAX_DROP_PP}, level={level}, size=\"coded\"), unaided",
        "params": int(model.count_params()),
        "train_epochs": epochs,
        "chosen_trial": chosen.number,
        "recipe": chosen.recipe,
        "fp32_tflite_bytes": fp32_size["raw_bytes"],
        "final_tflite_bytes": final_size["raw_bytes"],
        "final_gzip_bytes": final_size["gzip_bytes"],
        "coded_bytes": final_size["coded_bytes"],
        "ratio": ratio,
        "baseline_accuracy": base_eval.accuracy,
        "final_accuracy": final_eval.accuracy,
        "accuracy_drop_pp": drop,
        "accuracy_drop_se_pp": drop_se,
        "accuracy_drop_pp_val_search": chosen.accuracy_drop_pp,
        "accuracy_drop_se_pp_val_search": chosen.accuracy_drop_se_pp,
        "accuracy_measured_on": f"full test set, {base_eval.n_samples} images, LiteRT ({final_eval.interpreter})",
        "train_images": int(len(y_train)), "val_images": int(len(y_val)),
        "goal_ratio": GOALS[name],
        "goal_met": bool(ratio >= GOALS[name] and drop <= MAX_DROP_PP),
        "soft_weight_sharing_ratio": SOFT_WEIGHT_SHARING[name],
        "fraction_of_soft_weight_sharing": ratio / SOFT_WEIGHT_SHARING[name],
        "search": {"message": result.message, "trials": len(result.candidates),
                   "search_minutes_limit": search_minutes,
                   "candidates": [{"number": c.number, "coded_bytes": c.coded_bytes,
                                   "accuracy_drop_pp_val": c.accuracy_drop_pp,
                                   "accuracy_drop_se_pp_val": c.accuracy_drop_se_pp, "feasible": c.feasible,
                                   "seconds": c.seconds, "error": c.error, "recipe": c.recipe}
                                  for c in result.candidates]},
        "stages": list(chosen.stages),
        "weights": _weight_table(final),
        "final_tflite": tflite_path.name,
        "final_tflite_sha256": hashlib.sha256(final).hexdigest(),
        "seconds": {"train": round(train_s, 1), "search": round(search_s, 1),
                    "total": round(time.perf_counter() - started, 1)},
    }


def run_network(name: str, data, *, train_epochs: int | None, fine_tune_epochs: int | None,
                out_dir: Path) -> dict:
    recipe = RECIPES[name]
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    started = time.perf_counter()
    model, epochs = _train(name, data, train_epochs)
    train_s = time.perf_counter() - started

    fp32 = convert(model, quantization="none")
    base_eval = evaluate(fp32, (x_test, y_test))
    fp32_size = _coded(fp32)

    stages = [
        _Keep(prune(recipe["sparsity"], schedule="polynomial", learning_rate=1e-3)),
        _Keep(cluster(recipe["clusters"], learning_rate=1e-4)),
        _Keep(quantize(recipe["quantize"], learning_rate=1e-4)),
    ]
    ft_epochs = fine_tune_epochs or recipe["fine_tune_epochs"]
    t0 = time.perf_counter()
    result = Pipeline(stages).run(model, (x_train, y_train), (x_val, y_val),
                                  fine_tune_epochs=ft_epochs, max_accuracy_drop=MAX_DROP_PP)
    compress_s = time.perf_counter() - t0
    final = result.tflite
    final_eval = evaluate(final, (x_test, y_test))
    final_size = _coded(final)
    tflite_path = out_dir / f"deep_compression_{name}_hand.tflite"
    tflite_path.write_bytes(final)

    table = [{"stage": "baseline (fp32 .tflite)", "accuracy_val": None,
              "accuracy_test_tflite": base_eval.accuracy, "sparsity": 0.0, "max_unique_values": None,
              "bytes": fp32_size["raw_bytes"], "bytes_kind": "fp32 .tflite raw",
              "ratio": 1.0, "seconds": round(train_s, 1)}]
    for keep, report in zip(stages, result.stages):
        if keep.kind == "quantize":
            size, kind = final_size["raw_bytes"], "int8 .tflite raw"
        else:
            size, kind = _coded(convert(keep.model, quantization="none"))["coded_bytes"], "fp32 .tflite coded"
        table.append({
            "stage": keep.kind, "accuracy_val": report.accuracy, "accuracy_source": report.accuracy_source,
            "sparsity": report.sparsity, "max_unique_values": report.max_unique_values,
            "ok": report.ok, "failed_checks": [c.to_dict() for c in report.checks if not c.ok],
            "bytes": size, "bytes_kind": kind, "ratio": fp32_size["raw_bytes"] / size,
            "seconds": round(report.seconds, 1), "notes": list(report.notes),
        })
    table.append({"stage": "code (Huffman + CSR)", "accuracy_test_tflite": final_eval.accuracy,
                  "bytes": final_size["coded_bytes"], "bytes_kind": "int8 .tflite coded",
                  "ratio": fp32_size["raw_bytes"] / final_size["coded_bytes"]})
    ratio = fp32_size["raw_bytes"] / final_size["coded_bytes"]
    drop = (base_eval.accuracy - final_eval.accuracy) * 100
    return {
        "network": name,
        "recipe_source": "hand (RECIPES in bench/deep_compression.py)",
        "params": int(model.count_params()),
        "recipe": {k: v for k, v in recipe.items() if k != "build"} | {"train_epochs": epochs, "fine_tune_epochs": ft_epochs},
        "fp32_tflite_bytes": fp32_size["raw_bytes"],
        "final_tflite_bytes": final_size["raw_bytes"],
        "final_gzip_bytes": final_size["gzip_bytes"],
        "coded_bytes": final_size["coded_bytes"],
        "ratio": ratio,
        "baseline_accuracy": base_eval.accuracy,
        "baseline_accuracy_val_keras": result.baseline_accuracy,
        "final_accuracy": final_eval.accuracy,
        "accuracy_drop_pp": drop,
        "accuracy_measured_on": f"full test set, {base_eval.n_samples} images, LiteRT ({final_eval.interpreter})",
        "train_images": int(len(y_train)), "val_images": int(len(y_val)),
        "goal_ratio": GOALS[name],
        "goal_met": bool(ratio >= GOALS[name] and drop <= MAX_DROP_PP),
        "pipeline_ok": result.ok,
        "stages": table,
        "weights": _weight_table(final),
        "final_tflite": tflite_path.name,
        "final_tflite_sha256": hashlib.sha256(final).hexdigest(),
        "seconds": {"train": round(train_s, 1), "compress": round(compress_s, 1),
                    "total": round(time.perf_counter() - started, 1)},
    }


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _load(val: int = VAL):
    (x, y), (xt, yt) = load_fashion_mnist()
    x = (x / 255.0).astype(np.float32)
    xt = (xt / 255.0).astype(np.float32)
    return (x[:-val], y[:-val]), (x[-val:], y[-val:]), (xt, yt)


def main(argv=None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default="lenet_300_100,lenet5")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--recipe", choices=("auto", "hand"), default="auto")
    parser.add_argument("--level", type=int, default=2, help="auto's level (trials, fine-tuning epochs)")
    parser.add_argument("--search-minutes", type=float, default=38.0,
                        help="auto stops starting trials after this long (the 45-minute goal includes training)")
    parser.add_argument("--train-epochs", type=int, default=None)
    parser.add_argument("--fine-tune-epochs", type=int, default=None, help="hand recipe only")
    parser.add_argument("--val-images", type=int, default=VAL,
                        help="validation split auto judges candidates on (taken from the training set)")
    parser.add_argument("--update", action="store_true",
                        help="Replace only these networks' entries in an existing deep_compression.json.")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _load(args.val_images)
    key = "networks" if args.recipe == "auto" else "hand_recipes"
    results = []
    with tempfile.TemporaryDirectory(prefix="dc-auto-") as work:
        for name in args.nets.split(","):
            t0, cpu0 = time.perf_counter(), _cpu_seconds()
            if args.recipe == "auto":
                r = run_auto(name, data, train_epochs=args.train_epochs, level=args.level,
                             search_minutes=args.search_minutes, out_dir=out_dir, work_dir=Path(work))
            else:
                r = run_network(name, data, train_epochs=args.train_epochs, fine_tune_epochs=args.fine_tune_epochs,
                                out_dir=out_dir)
            r["wall_seconds"] = round(time.perf_counter() - t0, 1)
            r["cpu_seconds"] = round(_cpu_seconds() - cpu0, 1)
            r["load_average_at_end"] = os.getloadavg()
            r["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            r["command"] = " ".join(["python", "bench/deep_compression.py", *(argv if argv is not None else sys.argv[1:])])
            results.append(r)
            print(f"{name} ({args.recipe}): fp32 {r['fp32_tflite_bytes']:,} B -> coded {r['coded_bytes']:,} B "
                  f"(final .tflite {r['final_tflite_bytes']:,} B): {r['ratio']:.1f}x (goal {r['goal_ratio']:.0f}x); "
                  f"top-1 {r['baseline_accuracy']:.4f} -> {r['final_accuracy']:.4f} "
                  f"({r['accuracy_drop_pp']:+.2f} pp drop); goal met: {r['goal_met']}; {r['wall_seconds']:.0f} s wall",
                  flush=True)
    path = out_dir / "deep_compression.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if args.update:
        names = {r["network"] for r in results}
        results = [r for r in previous.get(key, []) if r["network"] not in names] + results
    payload = {
        "benchmark": "deep_compression",
        "dataset": "Fashion-MNIST: the 60,000 training images split into training and validation "
                   "(each network's train_images / val_images; 55,000 / 5,000 by default), test 10,000",
        "seed": SEED,
        "max_accuracy_drop_pp": MAX_DROP_PP,
        "size_accounting": "fp32 = raw bytes of the float32 .tflite; coded = converters.analyze(...).coded_bytes "
                           "of the final .tflite; ratio = fp32 / coded",
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpus": os.cpu_count(), "tensorflow": _tf.tf().__version__},
        # Wall time depends on what else runs on the machine (see each network's
        # load_average_at_end); CPU seconds / cores is what an idle machine needs.
        "networks": previous.get("networks", []) if key != "networks" else results,
        "hand_recipes": previous.get("hand_recipes", []) if key != "hand_recipes" else results,
    }
    for row in payload["networks"]:
        row["within_45_minutes_wall"] = row["wall_seconds"] <= 45 * 60
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
