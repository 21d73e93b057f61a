"""Faster, not only smaller: MobileNetV2 on Fashion-MNIST, four ways, host latency and accuracy in one run.

1. train `tf_keras.applications.MobileNetV2(alpha, weights=None)` on Fashion-MNIST resized
   to SIZE×SIZE with 3 channels (the last 5,000 training images are the validation split);
2. make four .tflite models:
   - fp32: `converters.convert(model)`;
   - ptq_int8: the converter's default full-integer PTQ (what a user does without us);
   - channel_int8: `Pipeline([prune_channels(RATIO), quantize("ptq_int8")])`;
   - sparse_fp32: `Pipeline([prune(SPARSITY, policy="xnnpack")])` (1x1 convs, sparse encoding);
3. accuracy of each on the FULL 10,000-image test set with LiteRT (`converters.evaluate`);
4. latency on this host with 1 thread (`device_bench.connect()` + `device_bench.benchmark`, the
   host backend), INTERLEAVED: ROUNDS rounds, each benchmarking every model once, in an order
   rotated per round. Ratios are taken per round (same load for both sides) and summarised by
   their median and a 95% bootstrap interval over rounds; absolute ms depend on the load.
   A control pair (a net in XNNPACK's sparse pattern, dense vs 80%-sparse 1x1 convs, random
   weights) says whether this runtime takes the sparse path at all.

Goals: channel_int8 >= 1.5x faster than ptq_int8 with <= 1 pp accuracy drop vs fp32; the
ptq_int8 / fp32 and sparse_fp32 / fp32 speed ratios reported.

Usage:
    python bench/latency.py [--size 48] [--alpha 0.35] [--train-samples 20000] [--epochs 4]
        [--fine-tune-epochs 2] [--ratio 0.5] [--sparsity 0.8] [--rounds 8] [--runs 200] [--out bench/results]
Writes bench/results/latency.json and bench/results/latency_{fp32,ptq_int8,channel_int8,sparse_fp32}.tflite.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import converters
import device_bench
from _rounds import interleaved_p50s, machine, ratio_summary
from mobile_opt import _tf
from mobile_opt.channel_pruning import prune_channels, tflite_kernel_elements
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.pipeline import Pipeline
from mobile_opt.pruning import prune
from mobile_opt.quantization import quantize

SEED = 0
VAL = 5000
MODELS = ("fp32", "ptq_int8", "channel_int8", "sparse_fp32")
GOAL_SPEEDUP = 1.5
MAX_DROP_PP = 1.0


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    tf = _tf.tf()
    out = tf.image.resize(x[..., None].astype(np.float32) / 255.0, (size, size)).numpy()
    return np.repeat(out, 3, axis=-1)


def _load(size: int, train_samples: int):
    (x, y), (xt, yt) = load_fashion_mnist()
    x, y = x[:train_samples + VAL], y[:train_samples + VAL]
    x = _resize(x, size)
    return (x[:-VAL], y[:-VAL]), (x[-VAL:], y[-VAL:]), (_resize(xt, size), yt)


def _control_pair(tmp: Path) -> dict[str, Path]:
    """Dense and sparse .tflite of a small net inside XNNPACK's sparse pattern (TF-MOT's check passes)."""
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(SEED)
    inp = keras.Input((97, 97, 3))
    h = layers.ReLU()(layers.Conv2D(16, 3, strides=2)(layers.ZeroPadding2D(((1, 1), (1, 1)))(inp)))
    for i in range(4):
        h = layers.ReLU()(layers.Conv2D(128, 1)(h))
        h = layers.ReLU()(layers.DepthwiseConv2D(3, padding="same")(h))
        h = layers.Conv2D(16 if i < 3 else 64, 1)(h)
    model = keras.Model(inp, layers.Dense(10)(layers.GlobalAveragePooling2D()(h)))
    _tf.tfmot().sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
    paths = {"control_dense": tmp / "control_dense.tflite", "control_sparse": tmp / "control_sparse.tflite"}
    paths["control_dense"].write_bytes(converters.convert(model))
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and layer.kernel_size == (1, 1):
            weights = layer.get_weights()
            kernel = weights[0]
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0
            layer.set_weights(weights)
    paths["control_sparse"].write_bytes(converters.convert(model, sparsity=True))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--train-samples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=0.5, help="channel pruning ratio")
    parser.add_argument("--sparsity", type=float, default=0.8, help="XNNPACK-policy sparsity")
    parser.add_argument("--sparse-learning-rate", type=float, default=1e-4,
                        help="fine-tuning learning rate of the XNNPACK-policy pruning (prune's default)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras = _tf.keras()
    started, cpu0 = time.perf_counter(), os.times()
    (x, y), (xv, yv), (xt, yt) = _load(args.size, args.train_samples)
    keras.utils.set_random_seed(SEED)
    model = keras.applications.MobileNetV2(input_shape=(args.size, args.size, 3), alpha=args.alpha,
                                           weights=None, classes=10)
    for layer in model.layers:
        # The application's BatchNorm momentum (0.999) needs ~10k steps before its moving
        # statistics settle; a few epochs on 2 cores are far fewer.
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=args.epochs, batch_size=128, validation_data=(xv, yv), verbose=2)
    seconds = {"train": time.perf_counter() - started}

    t0 = time.perf_counter()
    tflite = {"fp32": converters.convert(model),
              "ptq_int8": converters.convert(model, quantization="int8", representative_data=x[:200])}
    channel = Pipeline([prune_channels(args.ratio), quantize("ptq_int8")]).run(
        model, (x, y), (xv, yv), fine_tune_epochs=args.fine_tune_epochs)
    tflite["channel_int8"] = channel.tflite
    seconds["channel_pipeline"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sparse = Pipeline([prune(args.sparsity, schedule="polynomial", policy="xnnpack",
                             learning_rate=args.sparse_learning_rate)]).run(
        model, (x, y), (xv, yv), fine_tune_epochs=args.fine_tune_epochs)
    tflite["sparse_fp32"] = sparse.tflite
    seconds["sparse_pipeline"] = time.perf_counter() - t0

    paths = {}
    for name in MODELS:
        paths[name] = out_dir / f"latency_{name}.tflite"
        paths[name].write_bytes(tflite[name])
    t0 = time.perf_counter()
    accuracy = {name: converters.evaluate(tflite[name], (xt, yt)).accuracy for name in MODELS}
    seconds["evaluate"] = time.perf_counter() - t0
    print("accuracy (test, LiteRT): " + ", ".join(f"{n} {a:.4f}" for n, a in accuracy.items()), flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        control = _control_pair(Path(tmp))
        latency = interleaved_p50s({**paths, **control}, args.rounds,
                                   device_bench.RunSettings(runs=args.runs, warmup_runs=20, min_secs=1.0))
    seconds["latency"] = time.perf_counter() - t0
    p50 = latency["p50_us_per_round"]
    rng = np.random.default_rng(SEED)
    speedups = {  # > 1: the second model is faster
        "ptq_int8_vs_fp32": ratio_summary(p50["fp32"], p50["ptq_int8"], rng),
        "channel_int8_vs_ptq_int8": ratio_summary(p50["ptq_int8"], p50["channel_int8"], rng),
        "channel_int8_vs_fp32": ratio_summary(p50["fp32"], p50["channel_int8"], rng),
        "sparse_fp32_vs_fp32": ratio_summary(p50["fp32"], p50["sparse_fp32"], rng),
        "control_sparse_vs_control_dense": ratio_summary(p50["control_dense"], p50["control_sparse"], rng),
    }
    drop_pp = (accuracy["fp32"] - accuracy["channel_int8"]) * 100
    cpu1 = os.times()
    payload = {
        "benchmark": "latency",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/latency.py", *(argv if argv is not None else sys.argv[1:])]),
        "model": f"tf_keras MobileNetV2 alpha={args.alpha}, {args.size}x{args.size}x3, weights=None, 10 classes",
        "dataset": f"Fashion-MNIST resized to {args.size}x{args.size}x3: train {len(x):,}, val {len(xv):,}, "
                   f"test {len(xt):,} (accuracy on the full test set with LiteRT)",
        # The output folder relative to the repo, so the record names no path of this machine.
        "settings": {**vars(args), "out": os.path.relpath(args.out, Path(__file__).parent.parent)},
        "accuracy": accuracy,
        "channel_int8_drop_pp_vs_fp32": drop_pp,
        "latency_p50_us_median": {n: float(np.median(v)) for n, v in p50.items()},
        "speedups": speedups,
        "goal": {"channel_int8_vs_ptq_int8_speedup": GOAL_SPEEDUP, "max_drop_pp": MAX_DROP_PP,
                 "met": bool(speedups["channel_int8_vs_ptq_int8"]["median"] >= GOAL_SPEEDUP
                             and drop_pp <= MAX_DROP_PP)},
        # Dense conv/FC kernel weights (sparse_fp32's kernels sit behind DENSIFY: see sparse_tensors).
        "kernel_weights_in_tflite": {n: tflite_kernel_elements(tflite[n]) for n in MODELS if n != "sparse_fp32"},
        "bytes": {n: len(tflite[n]) for n in MODELS},
        "sha256": {n: hashlib.sha256(tflite[n]).hexdigest() for n in MODELS},
        "sparse_tensors": {n: sum(t.sparsity is not None for t in converters.load_tflite(tflite[n]).subgraphs[0].tensors)
                           for n in MODELS},
        "stages": {"channel_int8": [s.to_dict() for s in channel.stages],
                   "sparse_fp32": [s.to_dict() for s in sparse.stages]},
        "latency": latency,
        "latency_method": f"device_bench host backend (LiteRT Python interpreter, XNNPACK default delegate), "
                          f"1 thread, >= {args.runs} timed runs and >= 1 s per model per round, {args.rounds} "
                          "interleaved rounds with rotated order; p50 per round",
        "machine": machine(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()} | {
            "total_wall": round(time.perf_counter() - started, 1),
            "total_cpu": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system
                               + cpu1.children_user + cpu1.children_system
                               - cpu0.children_user - cpu0.children_system, 1)},
    }
    path = out_dir / "latency.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    for key, s in speedups.items():
        print(f"{key}: {s['median']:.2f}x (95% CI {s['ci95'][0]:.2f}-{s['ci95'][1]:.2f})")
    print(f"channel_int8 accuracy drop vs fp32: {drop_pp:+.2f} pp; goal met: {payload['goal']['met']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
