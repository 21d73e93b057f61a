"""Pipeline overhead: our prune → cluster → QAT (PCQAT) vs the same steps written by hand with TF-MOT.

Both sides do what an expert's script does: fine-tune each stage with the
same data, epochs, optimizer and batch size, strip wrappers, measure validation
accuracy after every stage, and convert the QAT model to an int8 .tflite. Ours
additionally verifies every stage (kernel statistics, parsing the .tflite) and
measures the final accuracy with LiteRT; that is the overhead measured here.
Runs alternate (ours, plain, ours, …) so drift on a noisy machine hits both.

Goal: ours / plain <= 1.10 in median wall time.

    python bench/pipeline_overhead.py [--repeats 3] [--samples 10000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from mobile_opt import Pipeline, _tf, cluster, prune, quantize, zoo
from mobile_opt.datasets import load_dataset

RESULTS = Path(__file__).with_name("results") / "pipeline_overhead.json"


def trained_model(train):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = zoo.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*train, epochs=2, batch_size=128, verbose=0)
    return model


def ours(model, train, val, epochs):
    result = Pipeline([prune(0.8), cluster(16), quantize("qat_int8")]).run(
        model, train, val, fine_tune_epochs=epochs, batch_size=128)
    assert all(s.ok for s in result.stages)
    return result.tflite


def plain_tfmot(model, train, val, epochs):
    """What a careful user writes with TF-MOT alone (no verification)."""
    tf, keras, tfmot = _tf.tf(), _tf.keras(), _tf.tfmot()
    from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster as exp_cluster

    x, y = train
    steps = int(np.ceil(len(x) / 128)) * epochs
    selected = {"fc1", "fc2"}

    def fit(m, callbacks=()):
        m.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x, y, epochs=epochs, batch_size=128, callbacks=list(callbacks), verbose=0)

    base = keras.models.clone_model(model)
    base.set_weights(model.get_weights())
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.8, begin_step=0, frequency=max(1, steps // 20))
    pruned = keras.models.clone_model(base, clone_function=lambda l: tfmot.sparsity.keras.prune_low_magnitude(
        l, pruning_schedule=schedule) if l.name in selected else l)
    fit(pruned, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    stripped.evaluate(*val, verbose=0)

    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    clustered = keras.models.clone_model(stripped, clone_function=lambda l: exp_cluster.cluster_weights(
        l, number_of_clusters=16, cluster_centroids_init=init, preserve_sparsity=True) if l.name in selected else l)
    fit(clustered)
    clustered = tfmot.clustering.keras.strip_clustering(clustered)
    clustered.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    clustered.evaluate(*val, verbose=0)

    qk = tfmot.quantization.keras
    annotated = qk.quantize_annotate_model(clustered)
    with qk.quantize_scope():
        qat = qk.quantize_apply(annotated, tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(True))
    fit(qat)
    qat.evaluate(*val, verbose=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    train, val = load_dataset(train_samples=args.samples, val_samples=2000)
    model = trained_model(train)
    ours(model, train, val, args.epochs)  # warm-up: graph tracing caches, imports
    plain_tfmot(model, train, val, args.epochs)
    times = {"ours": [], "plain": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("plain", plain_tfmot)):
            started = time.perf_counter()
            fn(model, train, val, args.epochs)
            times[name].append(time.perf_counter() - started)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "pipeline_overhead",
        "date": datetime.date.today().isoformat(),
        "command": f"python bench/pipeline_overhead.py --repeats {args.repeats} --samples {args.samples} --epochs {args.epochs}",
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "model": "LeNet-300-100", "train_samples": args.samples, "epochs_per_stage": args.epochs,
        "samples_s": times, "median_s": med, "ratio": med["ours"] / med["plain"], "goal": "<= 1.10",
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_s", "ratio", "goal")}, indent=2))


if __name__ == "__main__":
    main()
