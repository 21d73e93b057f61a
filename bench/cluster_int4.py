"""Clusters -> int4: what int4 adds to a clustered LeNet-300-100, snapped after vs trained on the grid.

In ONE run, seed 0, LeNet-300-100 trained on Fashion-MNIST (the last 5,000 training images are
the validation split the stages fine-tune against), then fc1 and fc2 clustered to 16 values
two ways, each fine-tuned the same number of epochs:
  snapped:  `cluster(16)`, then each channel's centroids moved onto the int4 grid after training
            (`_int4.on_grid`, what `quantize("int4_fc")` does after a plain cluster stage), stored
            with one int4 scale per channel;
  on grid:  `cluster(16, int4_grid=True)`: the centroids are put on the grid after every step
            while clustering trains; stored with one int4 scale per tensor.
For each: the clustered float model as an fp32 .tflite and the int4 .tflite (fc1/fc2 in int4,
the classifier in int8, int8 activations), top-1 on the FULL 10,000-image test set (LiteRT),
the drop int4 adds (paired, with its standard error) and the largest |stored code x scale -
clustered kernel| in scales.

Goal (issue 21): a layer clustered to <= 16 values ships as int4 with no further loss.

Usage:
    python bench/cluster_int4.py [--out bench/results] [--epochs 12] [--cluster-epochs 3]
Writes bench/results/cluster_int4.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from _lenet import SEED, trained
from _rounds import machine
from converters import IntegerWeights, convert, evaluate, load_tflite, paired_drop
from mobile_opt import Pipeline, _int4, _tf, cluster

CLUSTERED = ("fc1", "fc2")


def _largest_move(tflite: bytes, model) -> float:
    """Largest |code x scale - kernel| over the clustered kernels, in units of their scale."""
    tensors = [t for sg in load_tflite(tflite).subgraphs for t in sg.tensors if t.is_constant and t.dtype == "int4"]
    worst = 0.0
    for name in CLUSTERED:
        kernel = model.get_layer(name).kernel.numpy()
        tensor = next(t for t in tensors if tuple(t.shape) == kernel.T.shape)
        worst = max(worst, _int4.grid_diff(tensor, kernel, 0, 1))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--epochs", type=int, default=12, help="fp32 training epochs")
    parser.add_argument("--cluster-epochs", type=int, default=3, help="fine-tuning epochs of the cluster stage")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    keras = _tf.keras()
    model, train, val, (xt, yt) = trained(args.epochs)
    bits = {"fc1": 4, "fc2": 4, "fc3": 8}
    rows = {}
    for label, grid, per_channel in (("snapped", False, True), ("on grid", True, False)):
        keras.utils.set_random_seed(SEED)
        stage = cluster({n: 16 for n in CLUSTERED}, int4_grid=grid)
        clustered = Pipeline([stage]).run(model, train, val, fine_tune_epochs=args.cluster_epochs).model
        stored = _int4.on_grid(clustered, set(CLUSTERED), per_channel=True)[0] if not grid else clustered
        int4 = convert(stored, quantization="int4_fc", representative_data=train[0][:200],
                       weights=IntegerWeights(per_channel=per_channel, weight_bits=bits))
        before = evaluate(convert(clustered), (xt, yt), per_sample=True)
        after = evaluate(int4, (xt, yt), per_sample=True)
        drop, se = paired_drop(before.correct, after.correct)
        rows[label] = {"cluster": stage.params(), "int4_scales": "per channel" if per_channel else "per tensor",
                       "clustered_fp32_top1": before.accuracy, "int4_top1": after.accuracy,
                       "int4_adds_drop_pp": drop, "standard_error_pp": se,
                       "largest_move_scales": _largest_move(int4, clustered)}
        print(f"{label:>8}: clustered {before.accuracy:.4f} -> int4 {after.accuracy:.4f} "
              f"({drop:+.2f} ± {se:.2f} pp), largest move {rows[label]['largest_move_scales']:.3g} scales", flush=True)
    payload = {"benchmark": "cluster_int4", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": " ".join(["python", "bench/cluster_int4.py", *(argv if argv is not None else sys.argv[1:])]),
               "model": "LeNet-300-100 (mobile_opt.zoo), Fashion-MNIST", "train_epochs": args.epochs,
               "cluster_epochs": args.cluster_epochs, "rows": rows,
               "seconds": round(time.perf_counter() - started, 1), "machine": machine()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster_int4.json").write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
