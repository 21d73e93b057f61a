"""Keras 3 -> tf_keras bridge: time to rebuild and prove, and the proof's figure, per network.

For MobileNetV2 (alpha 0.35), MobileNetV3Small and EfficientNetB0 from Keras 3's
keras.applications (weights=None, logits, BatchNorm statistics randomised so the
outputs are not trivial), the bridge rebuilds the model in tf_keras, copies the
weights and compares outputs on a batch; recorded: wall time of `to_tf_keras`
(median, min, max of --repeats), side by side with the time Keras 3 takes to build the
same network (the ratio is what to compare on a loaded machine), the load average, and
the max absolute output difference (must be <= 1e-5).

    python bench/keras3_bridge.py [--size 64] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from mobile_opt import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from converters.keras3_bridge import to_tf_keras

RESULTS = Path(__file__).with_name("results") / "keras3_bridge.json"


def networks(size: int):
    import keras

    apps = keras.applications
    shape = (size, size, 3)
    return {
        "MobileNetV2(alpha=0.35)": lambda: apps.MobileNetV2(input_shape=shape, alpha=0.35, weights=None,
                                                            classifier_activation=None),
        "MobileNetV3Small": lambda: apps.MobileNetV3Small(input_shape=shape, weights=None, classifier_activation=None),
        "EfficientNetB0": lambda: apps.EfficientNetB0(input_shape=shape, weights=None, classifier_activation=None),
    }


def randomize_batchnorm(model, rng) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("float32"), rng.normal(0, 0.1, b.shape).astype("float32"),
                               rng.normal(0, 0.1, m.shape).astype("float32"), rng.uniform(0.5, 1.5, v.shape).astype("float32")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import keras

    rows = []
    for name, build in networks(args.size).items():
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        model = build()
        randomize_batchnorm(model, rng)
        x = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
        times, builds, diffs = [], [], []
        for _ in range(args.repeats):  # alternate: load on a shared machine hits both
            started = time.perf_counter()
            build()
            builds.append(time.perf_counter() - started)
            started = time.perf_counter()
            _, proof = to_tf_keras(model, x)
            times.append(time.perf_counter() - started)
            diffs.append(proof.max_abs_diff)
        ratios = [t / b for t, b in zip(times, builds)]
        rows.append({"network": name, "layers": len(model.layers), "params": int(model.count_params()),
                     "bridge_s_median": statistics.median(times), "bridge_s_min": min(times),
                     "bridge_s_max": max(times), "keras3_build_s_median": statistics.median(builds),
                     "bridge_over_build_median": statistics.median(ratios), "bridge_over_build_min": min(ratios),
                     "bridge_over_build_max": max(ratios), "max_abs_diff": max(diffs), "tolerance": 1e-5})
        print(f"{name:24s} {rows[-1]['layers']:4d} layers  bridge {statistics.median(times):6.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}, n={args.repeats}); Keras 3 build "
              f"{statistics.median(builds):.2f} s; bridge/build {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})  max |diff| {max(diffs):.2e}")
    RESULTS.parent.mkdir(exist_ok=True)
    load = os.getloadavg()
    print(f"load average (1/5/15 min) at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    RESULTS.write_text(json.dumps({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                   "machine": platform.platform(), "cpus": os.cpu_count(), "load_average": load,
                                   "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
