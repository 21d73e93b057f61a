"""What `auto_optimize` searches over: latency budgets in user units, layer sensitivity, trial → stages.

Sizes are parsed by `converters.budget.parse_size` (one unit table for the whole project).

Kept apart from `auto.py` because these parts are pure (no Optuna study, no files) and are
tested on their own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mobile_opt import _tf
from mobile_opt.errors import ConstraintError
from mobile_opt.layer_selection import LayerSelection

__all__ = ["parse_latency", "sensitivity_scan", "Sensitivity", "suggest_stages",
           "SCAN_SPARSITIES", "CLUSTER_BITS", "QUANT_MODES"]

_TIME_UNITS = {"": 1.0, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}  # a bare number is ms
_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*"

SCAN_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
CLUSTER_BITS = (3, 4, 5, 6)
QUANT_MODES = ("ptq_int8", "qat_int8", "dynamic", "float16")


def parse_latency(value, name: str = "latency_budget") -> float | None:
    """Milliseconds from a number or bare-number string (ms), or a string such as "5ms", "800us", "0.01s".

    Raises:
        ConstraintError: not positive, or an unknown unit.

    Example:
        >>> parse_latency("5ms"), parse_latency("800us"), parse_latency(2), parse_latency("5")
        (5.0, 0.8, 2.0, 5.0)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConstraintError(f"{name} must be milliseconds or a string like '5ms'. Received: {name}={value!r}.")
    if isinstance(value, (int, float)):
        ms = float(value)
    else:
        match = re.fullmatch(_NUMBER, str(value))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _TIME_UNITS:
            raise ConstraintError(
                f"{name} must be a time such as '5ms', '800us' or '0.01s' (a bare number is ms). "
                f"Received: {name}={value!r}."
            )
        ms = float(match.group(1)) * _TIME_UNITS[unit]
    if not ms > 0 or not math.isfinite(ms):
        raise ConstraintError(f"{name} must be greater than 0. Received: {name}={value!r}.")
    return ms


@dataclass(frozen=True)
class Sensitivity:
    """Accuracy drop (pp) of pruning each layer alone, without fine-tuning, per sparsity."""

    baseline_accuracy: float
    drops: dict  # layer -> {sparsity (str) -> drop in pp}
    sizes: dict  # layer -> number of kernel weights

    def to_dict(self) -> dict:
        return {"baseline_accuracy": self.baseline_accuracy, "drops": self.drops, "sizes": self.sizes}

    @classmethod
    def from_dict(cls, data: dict) -> "Sensitivity":
        return cls(data["baseline_accuracy"], data["drops"], data["sizes"])

    def sparsity_for(self, layer: str, threshold_pp: float) -> float:
        """The largest scanned sparsity whose lone drop stays within `threshold_pp` (0 if none)."""
        best = 0.0
        for sparsity, drop in self.drops[layer].items():
            if drop <= threshold_pp:
                best = max(best, float(sparsity))
        return best


def _magnitude_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    k = int(round(kernel.size * sparsity))
    if k == 0:
        return kernel
    threshold = np.partition(np.abs(kernel).reshape(-1), k - 1)[k - 1]
    out = kernel.copy()
    out[np.abs(kernel) <= threshold] = 0
    return out


def sensitivity_scan(model, x, y, *, sparsities=SCAN_SPARSITIES, progress=None) -> Sensitivity:
    """Prunes each weight layer alone (magnitude, no fine-tuning) and measures the accuracy drop.

    This is how Han et al. pick per-layer thresholds: sensitive layers (often the
    first conv and the classifier) get lower sparsity.
    """
    layers = LayerSelection(include="all").select(model, supported=("Dense", "Conv2D", "Conv1D", "DepthwiseConv2D"))
    label = np.asarray(y).reshape(-1) if np.asarray(y).ndim == 1 or np.asarray(y).shape[-1] == 1 else np.argmax(y, -1)

    def acc() -> float:
        pred = model.predict(x, batch_size=512, verbose=0)
        guess = (pred[..., 0] > 0.5).astype(int) if pred.shape[-1] == 1 else pred.argmax(-1)
        return float(np.mean(guess.reshape(-1) == label.astype(int)))

    baseline = acc()
    drops, sizes = {}, {}
    total, done = len(layers) * len(sparsities), 0
    for name in layers:
        layer = model.get_layer(name)
        weights = layer.get_weights()
        sizes[name] = int(weights[0].size)
        drops[name] = {}
        try:
            for s in sparsities:
                layer.set_weights([_magnitude_mask(weights[0], s)] + weights[1:])
                drops[name][str(s)] = round((baseline - acc()) * 100, 3)
                done += 1
                if progress is not None:
                    progress(done, total)
        finally:
            layer.set_weights(weights)
    return Sensitivity(baseline, drops, sizes)


def suggest_stages(trial, sensitivity: Sensitivity, model, *, cluster_layers: list[str]):
    """Asks an Optuna trial for one recipe and returns `(stages, description)`.

    Search space: pruning (none | unstructured with per-layer sparsity from the
    sensitivity scan at a suggested drop threshold | 2:4), weight clustering
    (none | 3-6 bits, per layer when the model has few weight layers), and the
    quantization mode (PTQ int8, QAT int8, dynamic-range, float16).
    """
    from mobile_opt.clustering import cluster
    from mobile_opt.pruning import prune
    from mobile_opt.quantization import quantize

    stages, description = [], {}
    structure = trial.suggest_categorical("prune", ["none", "unstructured", "2:4"])
    if structure == "unstructured":
        threshold = trial.suggest_float("prune_threshold_pp", 0.25, 20.0, log=True)
        per_layer = {name: sensitivity.sparsity_for(name, threshold) for name in sensitivity.drops}
        per_layer = {k: v for k, v in per_layer.items() if v > 0}
        description["sparsity"] = per_layer
        if per_layer:
            stages.append(prune(per_layer, schedule="polynomial", learning_rate=1e-3))
    elif structure == "2:4":
        stages.append(prune(structure="2:4", learning_rate=1e-3))
        description["sparsity"] = "2:4"
    use_cluster = trial.suggest_categorical("cluster", [False, True])
    if use_cluster and cluster_layers:
        if len(cluster_layers) <= 6:
            bits = {name: trial.suggest_categorical(f"cluster_bits[{name}]", list(CLUSTER_BITS)) for name in cluster_layers}
        else:
            b = trial.suggest_categorical("cluster_bits", list(CLUSTER_BITS))
            bits = {name: b for name in cluster_layers}
        stages.append(cluster({k: 2**v for k, v in bits.items()}, learning_rate=1e-4))
        description["cluster_bits"] = bits
    mode = trial.suggest_categorical("quantize", list(QUANT_MODES))
    stages.append(quantize(mode, learning_rate=1e-4))
    description["quantize"] = mode
    return stages, description


def cluster_candidates(model) -> list[str]:
    """Layers worth clustering: Dense/Conv2D kernels big enough for TF-MOT to cluster."""
    keras = _tf.keras()
    names = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) and type(layer).__name__ in ("Dense", "Conv2D"):
            if layer.get_weights() and layer.get_weights()[0].size >= 256:
                names.append(layer.name)
    return names
