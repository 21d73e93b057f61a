"""Per-layer sensitivity: the accuracy drop of pruning each layer alone, as Han et al. scan it.

`auto_optimize` runs the scan once per study (stored with it); `SearchSpace` turns it into
per-layer sparsity, cluster bits and channel shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_opt.layer_selection import LayerSelection

__all__ = ["Sensitivity", "sensitivity_scan", "SCAN_SPARSITIES"]

SCAN_SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
_SCAN_IMAGES = 12_000  # forward-pass images per sparsity level of the scan, over all layers


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

    def drop_at(self, layer: str, sparsity: float) -> float:
        """The lone drop at `sparsity`, linearly interpolated between scanned sparsities."""
        points = sorted((float(k), v) for k, v in self.drops[layer].items())
        xs, ys = [0.0] + [p[0] for p in points], [0.0] + [p[1] for p in points]
        return float(np.interp(sparsity, xs, ys))

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
    # Not DepthwiseConv2D: TF-MOT 0.8.1's pruning left every depthwise kernel of MobileNetV2
    # dense (the prune stage's check measured 0% sparsity), and they hold few weights.
    layers = LayerSelection(include="all").select(model, supported=("Dense", "Conv2D", "Conv1D"))
    # Every layer × sparsity is one forward pass: a network with many layers is scanned on
    # fewer images (at least 300) and at fewer sparsities, so the scan stays a small part
    # of the search.
    n = min(2000, max(300, _SCAN_IMAGES // max(1, len(layers))))
    x, y = x[:n], y[:n]
    if len(layers) > 12:
        sparsities = tuple(s for s in sparsities if s in (0.5, 0.8, 0.95)) or sparsities
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
