"""Kernels on the int4 grid ai-edge-quantizer writes, so the .tflite holds exactly them.

The quantizer stores a symmetric int4 kernel as codes in [-8, 7] times scale = max|w| / 7
(per output channel, or per tensor). A kernel whose values already are such multiples
converts with no loss; two stages put kernels there:

* `cluster(16, int4_grid=True)` keeps its centroids on that grid while it fine-tunes
  (`GridCentroids`), so the network learns around the grid and int4 adds no loss;
* after any other clustering, `on_grid` moves each channel's <= 16 centroids to the nearest
  grid point (the largest stays exact; the move is reported, and accuracy is measured after);
* `qat_int4` trains with TF-MOT's n-bit fake quantization, 4-bit per output channel,
  narrow range: its grid is max|w| / 7 too, so `fake_quantized` is the kernel that ships.

`grid_diff` then proves it on the converted file: stored codes x scales == the kernel.
"""

from __future__ import annotations

import numpy as np

from mobile_opt import _tf
from mobile_opt.errors import UnsupportedModelError
from mobile_opt.measure import kernel_arrays
from mobile_opt.stage import clone

__all__ = ["LEVELS", "GridCentroids", "fake_quantized", "grid_diff", "grid_ready", "int4_qat_config", "odd_width_notes",
           "off_grid", "on_grid"]

LEVELS = 7  # symmetric int4 as ai-edge-quantizer writes it: scale = max|w| / 7


def off_grid(kernel: np.ndarray, out_axis: int, *, per_channel: bool) -> float:
    """Largest distance of a kernel's values from the int4 grid, in units of the scale."""
    codes = kernel / _scale(kernel, out_axis, per_channel)
    return float(np.max(np.abs(codes - np.round(codes)))) if kernel.size else 0.0


def grid_ready(kernel: np.ndarray, out_axis: int) -> bool:
    """At most 16 values per output channel: what int4 can hold with no further loss."""
    rows = np.moveaxis(kernel, out_axis, 0).reshape(kernel.shape[out_axis], -1)
    return max(len(np.unique(r)) for r in rows) <= 16


def _scale(kernel: np.ndarray, out_axis: int, per_channel: bool) -> np.ndarray:
    axes = tuple(a for a in range(kernel.ndim) if a != out_axis) if per_channel else None
    bound = np.max(np.abs(kernel), axis=axes, keepdims=True)
    return np.where(bound > 0, bound / LEVELS, 1.0).astype(np.float32)


def _snapped(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (np.clip(np.round(values / scale), -8, LEVELS) * scale).astype(values.dtype)


def GridCentroids():
    """A callback that puts TF-MOT's cluster centroids on the int4 grid after every step.

    The grid is the quantizer's: scale = max|centroid| / 7 over each centroid row (one row
    per tensor, or per channel with `cluster_per_channel`), so the largest centroid, which
    is the kernel's max|w|, stays where it is and the .tflite's scale is the same one.
    """
    keras = _tf.keras()

    class _GridCentroids(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._vars = [v for v in self.model.weights if "cluster_centroids" in v.name]
            self.on_train_batch_end(-1)

        def on_train_batch_end(self, batch, logs=None):
            for var in self._vars:  # (clusters,) per tensor, or (channels, clusters)
                values = var.numpy()
                var.assign(_snapped(values, _scale(values, 0, per_channel=values.ndim > 1)))

    return _GridCentroids()


def on_grid(model, int4: set[str], *, per_channel: bool):
    """A copy whose clustered int4 kernels lie on the quantizer's grid.

    Returns the copy and, per layer moved, the largest move in units of the layer's scale.
    """
    copy = clone(model)
    moved = {}
    for name, (kernel, _, out_axis) in kernel_arrays(copy).items():
        if name not in int4 or "/" in name or not grid_ready(kernel, out_axis):
            continue
        scale = _scale(kernel, out_axis, per_channel)
        snapped = _snapped(kernel, scale)
        moved[name] = float(np.max(np.abs(snapped - kernel) / scale))
        copy.get_layer(name).kernel.assign(snapped)
    return copy, moved


def int4_qat_config():
    """TF-MOT's n-bit config for a Dense/Conv kernel at 4 bits, one scale per output channel.

    TF-MOT's own n-bit registry uses one scale per tensor; per channel is what the
    quantizer writes by default and costs int4 less accuracy.
    """
    tfmot = _tf.tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (
        default_n_bit_quantize_registry as registry,
    )

    class Int4KernelConfig(registry.DefaultNBitQuantizeConfig):
        def __init__(self, weight_attrs=("kernel",), activation_attrs=("activation",), quantize_output=False,
                     num_bits_weight=4, num_bits_activation=8):
            super().__init__(list(weight_attrs), list(activation_attrs), quantize_output,
                             num_bits_weight, num_bits_activation)
            self.weight_quantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer(
                num_bits=num_bits_weight, per_axis=True, symmetric=True, narrow_range=True)

    return Int4KernelConfig


def fake_quantized(float_model, qat_model, layers: set[str]):
    """A copy of `float_model` with the QAT model's trained weights, int4 kernels as they run.

    The copy computes what the QAT model computes at inference, without its wrappers, so it
    converts like any float model and its int4 kernels are exactly on the grid.
    """
    copy = clone(float_model)
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        if inner is None or inner.name not in {l.name for l in copy.layers}:
            continue
        # QAT's wrapper holds the kernel itself (the inner layer sees its quantized tensor):
        # weights are matched by their own names ("fc1/kernel:0" -> "kernel").
        values = {}
        for weight, quantizer, quantizer_vars in getattr(wrapper, "_weight_vars", ()):
            kept = quantizer(weight, training=False, weights=quantizer_vars) if inner.name in layers else weight
            values[_attr(weight)] = np.asarray(kept)
        values.update({_attr(w): w.numpy() for w in inner.weights if _attr(w) not in values})
        target = copy.get_layer(inner.name)
        try:
            target.set_weights([values[_attr(w)] for w in target.weights])
        except (KeyError, ValueError) as exc:  # a layer QAT rebuilt (Conv+BN folding) has other weights
            raise UnsupportedModelError(
                f"qat_int4 cannot map QAT's layer {inner.name!r} back to the model ({exc}). "
                "Use quantize('int4_fc') (post-training) for this model."
            ) from exc
    return copy


def odd_width_notes(tflite: bytes) -> list[str]:
    """A note when an int4 kernel's rows (its input width) have an odd length.

    Measured on the host (bench/shipped_size.py, BENCHMARKS.md): XNNPACK ran LeNet's
    FULLY_CONNECTED layers 2.8x slower with input width 225 than with 240; the rows of an odd
    width do not end on a byte, which XNNPACK's packed int4 kernels pay for.
    """
    import converters

    odd = [(t.name, t.shape[-1]) for sg in converters.load_tflite(tflite).subgraphs for t in sg.tensors
           if t.is_constant and t.dtype == "int4" and len(t.shape) >= 2 and t.shape[-1] % 2]
    if not odd:
        return []
    return ["int4 kernel(s) with an odd input width (" + ", ".join(f"{n}: {w}" for n, w in odd)
            + "): XNNPACK ran such layers up to 2.8x slower than even widths (BENCHMARKS.md); keep the "
            "layer before each an even width (e.g. a prune_channels ratio that leaves even counts)"]


def _attr(weight) -> str:
    return weight.name.split("/")[-1].split(":")[0]


def grid_diff(tensor, kernel: np.ndarray, in_axis: int, out_axis: int) -> float:
    """Largest |stored code x scale - Keras kernel|, in units of the channel's scale."""
    q = tensor.quantization
    codes = tensor.data().astype(np.float64)
    scale = np.asarray(q.scale, dtype=np.float64)
    shape = [1] * codes.ndim
    if scale.size > 1:
        shape[q.quantized_dimension] = scale.size
    scale = scale.reshape(shape)
    # Keras (..., in, out) -> TFLite (out, ..., in); depthwise (h, w, in, m) -> (1, h, w, in*m).
    if in_axis == out_axis:
        keras_layout = kernel.reshape((1,) + kernel.shape[:2] + (-1,))
    else:
        keras_layout = np.moveaxis(kernel, out_axis, 0)
    return float(np.max(np.abs(codes * scale - keras_layout.astype(np.float64)) / scale))
