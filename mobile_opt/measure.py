"""Measuring what compression did to a model's weights (sparsity, shared values, 2:4).

Every stage verifies its promise with these numbers, taken from the weights
themselves rather than from TF-MOT's bookkeeping, because TF-MOT has known
cases where preservation silently fails (tfmot.md: PCQAT on 1x1 convs, CQAT on
ResNet-50).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["KernelStats", "kernel_stats", "kernel_arrays", "kernel_shapes", "stats_of", "is_m_by_n"]

# Attribute names of the weight tensors compression acts on, per layer type.
_KERNEL_ATTRS = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclass(frozen=True)
class KernelStats:
    """Measured facts about one weight tensor.

    `zero_value` is what counts as "zero": 0.0 for float weights, the
    zero-point for quantized ones.
    """

    name: str
    shape: tuple[int, ...]
    size: int
    zeros: int
    sparsity: float
    unique_values: int
    max_unique_per_channel: int
    is_2_4: bool

    def to_dict(self) -> dict:
        return asdict(self)


def is_m_by_n(values: np.ndarray, axis: int, m: int = 2, n: int = 4, zero=0) -> bool:
    """True when every run of `n` consecutive values along `axis` holds at least `m` zeros.

    A trailing partial block must hold at least `m - (n - len)` zeros, as in TF-MOT's
    padded mask.
    """
    moved = np.moveaxis(values, axis, -1)
    length = moved.shape[-1]
    pad = (-length) % n
    nonzero = moved != zero
    if pad:
        nonzero = np.concatenate([nonzero, np.zeros(moved.shape[:-1] + (pad,), bool)], axis=-1)
    blocks = nonzero.reshape(-1, n)
    return bool(np.all(blocks.sum(axis=1) <= n - m))


def stats_of(name: str, values: np.ndarray, *, in_axis: int, out_axis: int, zero=0) -> KernelStats:
    """Measures one weight array. `in_axis`/`out_axis` locate input and output channels."""
    values = np.asarray(values)
    zeros = int(np.count_nonzero(values == zero))
    per_channel = np.moveaxis(values, out_axis, 0).reshape(values.shape[out_axis], -1)
    max_unique = max((len(np.unique(row)) for row in per_channel), default=0)
    return KernelStats(
        name=name,
        shape=tuple(int(d) for d in values.shape),
        size=int(values.size),
        zeros=zeros,
        sparsity=zeros / values.size if values.size else 0.0,
        unique_values=int(len(np.unique(values))),
        max_unique_per_channel=int(max_unique),
        is_2_4=is_m_by_n(values, in_axis, zero=zero),
    )


def _inner_layer(layer):
    # QAT wraps layers (QuantizeWrapperV2.layer); pruning/clustering wrappers are stripped first.
    return getattr(layer, "layer", layer)


def kernel_arrays(model) -> dict[str, tuple[np.ndarray, int, int]]:
    """Returns `{layer_name: (kernel, in_axis, out_axis)}` for each layer with a kernel.

    Dense kernels are `(in, out)`, Conv kernels `(h, w, in, out)`; a
    DepthwiseConv2D's `(h, w, in, multiplier)` has its channels on axis 2.
    """
    return {name: (np.asarray(var.numpy()), in_axis, out_axis)
            for name, var, in_axis, out_axis in _kernels(model)}


def kernel_shapes(model) -> dict[str, tuple[tuple[int, ...], int, int]]:
    """Like `kernel_arrays`, shapes only: also for a PCQAT model, whose kernels are symbolic."""
    return {name: (tuple(int(d) for d in var.shape), in_axis, out_axis)
            for name, var, in_axis, out_axis in _kernels(model)}


def _kernels(model):
    for layer in model.layers:
        inner = _inner_layer(layer)
        for attr in _KERNEL_ATTRS:
            var = getattr(inner, attr, None)
            if var is None:
                continue
            # The wrapped layer's own name: QAT's wrapper is called "quant_<name>".
            name = inner.name if attr == "kernel" else f"{inner.name}/{attr}"
            ndim = len(var.shape)
            yield name, var, ndim - 2, (ndim - 2 if attr == "depthwise_kernel" else ndim - 1)


def kernel_stats(model, layers: list[str] | None = None) -> dict[str, KernelStats]:
    """Measures every kernel of `model` (or only those of `layers`).

    Example:
        >>> import tf_keras as keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
        >>> kernel_stats(m)["d"].shape
        (4, 2)
    """
    out = {}
    for name, (values, in_axis, out_axis) in kernel_arrays(model).items():
        if layers is not None and name.split("/")[0] not in layers:
            continue
        out[name] = stats_of(name, values, in_axis=in_axis, out_axis=out_axis)
    return out
