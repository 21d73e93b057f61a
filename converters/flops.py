"""FLOPs and MACs of a model, from a .tflite graph or a tf_keras model.

Counting convention (one inference; Keras: per sample; .tflite: per invoke at the shapes
stored in the file, i.e. batch 1 for models converted with a dynamic batch):

- Multiply-accumulate ops (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED,
  BATCH_MATMUL; Keras Dense, Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D,
  Conv2DTranspose): MACs = output elements x kernel elements per output, and
  **FLOPs = 2 x MACs**. The bias add is folded into that figure: an output needs K
  multiplies, K-1 adds to accumulate them and 1 add for the bias, 2K in all.
- Comparisons, selects and data movement are 0 FLOPs: ReLU/ReLU6 (fused or not), max
  pooling, MAXIMUM/MINIMUM, reshape/transpose/concat/pad/slice/gather, QUANTIZE/
  DEQUANTIZE/CAST (conversions, not arithmetic).
- Element-wise arithmetic: FLOPs per output element from `_ELEMENTWISE` (ADD/SUB/MUL/DIV 1,
  LOGISTIC 3 = exp + add + divide, TANH 1, SOFTMAX 4 = subtract max + exp + sum + divide,
  HARD_SWISH 3, ...). Average pooling: window size per output (k*k-1 adds + 1 divide);
  MEAN/global average pooling: one per input element. BatchNormalization (Keras): 2 per
  element (scale and shift); the converter folds it into neighbouring ops, so the .tflite
  count can be lower by up to that much.
- Anything else is **not** counted as zero: it is listed in `FlopsReport.unknown_ops` and its
  row has `macs=None, flops=None`; the totals then cover only the known ops.

With this convention the small MNIST CNN (28x28x1 -> Conv2D(6, 5x5, same, relu) ->
MaxPool 2 -> Conv2D(12, 5x5, same, relu) -> MaxPool 2 -> Flatten -> Dense(100, relu) ->
Dense(10), logits) has 530,200 MACs = 1,060,400 FLOPs (the hand count is in
tests/converters/test_flops.py), from either its Keras model or its .tflite.

`params`: Keras: `count_params()` (includes BatchNorm statistics). .tflite: elements of
the constant weight tensors the ops read (weights, biases, constant float/quantized
operands; not int32 shape/axis constants), each tensor counted once; a weight stored as
float16/int8 behind a DEQUANTIZE op is charged to the op that consumes it.

Schema of `FlopsReport.to_dict()`: {"source", "total_macs", "total_flops", "params",
"unknown_ops": [str], "layers": [{"name", "op", "macs", "flops", "params",
"output_shape"}]}.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from mobile_opt.errors import InputError, UnsupportedModelError

__all__ = ["FlopsReport", "LayerFlops", "count_flops"]


@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """One layer (Keras) or operator (.tflite). `macs`/`flops` are None for an unknown op."""

    name: str
    op: str
    macs: int | None
    flops: int | None
    params: int
    output_shape: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: name, op, macs, flops, params, output_shape (a list)."""
        d = dataclasses.asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


@dataclasses.dataclass(frozen=True)
class FlopsReport:
    """FLOPs/MACs of a whole model; `unknown_ops` lists ops whose cost is not counted."""

    source: str  # "tflite" or "keras"
    total_macs: int
    total_flops: int
    params: int
    layers: tuple[LayerFlops, ...]
    unknown_ops: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when every op was counted (nothing in `unknown_ops`)."""
        return not self.unknown_ops

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the keys listed in the module docstring."""
        return {
            "source": self.source,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "params": self.params,
            "unknown_ops": list(self.unknown_ops),
            "layers": [layer.to_dict() for layer in self.layers],
        }


# FLOPs per output element of element-wise ops (see the module docstring).
_ELEMENTWISE: dict[str, int] = {
    "ADD": 1, "SUB": 1, "MUL": 1, "DIV": 1, "FLOOR_DIV": 1, "FLOOR_MOD": 1, "POW": 1,
    "SQUARED_DIFFERENCE": 2, "SQRT": 1, "RSQRT": 1, "SQUARE": 1, "EXP": 1, "LOG": 1,
    "SIN": 1, "COS": 1, "TANH": 1, "LOGISTIC": 3, "SOFTMAX": 4, "LOG_SOFTMAX": 4,
    "HARD_SWISH": 3, "LEAKY_RELU": 1, "PRELU": 1, "ELU": 2, "GELU": 8,
}
# Comparisons, selects, data movement and type conversions: 0 FLOPs by rule.
_ZERO_OPS = frozenset(
    """RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 MAX_POOL_2D MAXIMUM MINIMUM REDUCE_MAX REDUCE_MIN
    ARG_MAX ARG_MIN QUANTIZE DEQUANTIZE CAST RESHAPE SQUEEZE EXPAND_DIMS TRANSPOSE
    CONCATENATION PAD PADV2 MIRROR_PAD GATHER GATHER_ND SLICE STRIDED_SLICE SPLIT SPLIT_V
    PACK UNPACK SHAPE TILE BROADCAST_TO FILL ZEROS_LIKE ONES_LIKE SELECT SELECT_V2
    LESS LESS_EQUAL GREATER GREATER_EQUAL EQUAL NOT_EQUAL LOGICAL_AND LOGICAL_OR LOGICAL_NOT
    DEPTH_TO_SPACE SPACE_TO_DEPTH BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND RESIZE_NEAREST_NEIGHBOR
    NEG ABS SIGN FLOOR CEIL ROUND RANGE REVERSE_V2 ONE_HOT""".split()
)
# Fused activation functions of TFLite ops: cost per output element.
_FUSED = {"NONE": 0, "RELU": 0, "RELU6": 0, "RELU_N1_TO_1": 0, "TANH": 1, "SIGN_BIT": 0}
_TFMOT_WRAPPERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "PruneLowMagnitude", "ClusterWeights"})
# Keras activation names -> FLOPs per element (None: unknown).
_KERAS_ACTIVATIONS = {
    "linear": 0, "relu": 0, "relu6": 0, "sigmoid": 3, "tanh": 1, "softmax": 4, "log_softmax": 4,
    "hard_sigmoid": 2, "swish": 4, "silu": 4, "elu": 2, "selu": 3, "gelu": 8, "softplus": 2,
    "exponential": 1, "leaky_relu": 1,
}


def count_flops(model: Any) -> FlopsReport:
    """Counts MACs, FLOPs and parameters of a .tflite model or a tf_keras model.

    Args:
        model: .tflite bytes, a path to a .tflite file, a `TFLiteModel` from `load_tflite`,
            a `tf_keras.Model` or Keras 3 Sequential/functional model, or a path to a
            .keras/.h5 file (tf_keras or Keras 3) or SavedModel directory.

    Returns:
        FlopsReport (convention in the module docstring).

    Raises:
        InputError: the path does not exist.
        ModelFormatError: the file is not a valid .tflite / Keras model.
        UnsupportedModelError: not a model (or a subclassed model without layer shapes,
            or a Keras 3 model the bridge cannot translate).

    Example:
        >>> report = count_flops("model.tflite")  # doctest: +SKIP
        >>> report.total_flops, report.unknown_ops  # doctest: +SKIP
        (1060400, ())
    """
    from converters.tflite_model import TFLiteModel, load_tflite

    if isinstance(model, TFLiteModel):
        return _count_tflite(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _count_tflite(load_tflite(bytes(model)))
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise InputError(f"No model at this path. Received: model={str(model)!r}")
        if path.is_file() and path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
            return _count_tflite(load_tflite(path))
        from converters.conversion import load_keras_model

        model = load_keras_model(path)
    from converters.keras3_bridge import is_keras3_model, to_tf_keras
    from mobile_opt import _tf

    if isinstance(model, _tf.keras().Model):
        return _count_keras(model)
    if is_keras3_model(model):  # counted on its proved-equal tf_keras twin
        return _count_keras(to_tf_keras(model)[0])
    raise UnsupportedModelError(
        "count_flops expects .tflite bytes/path, a TFLiteModel or a tf_keras.Model. "
        f"Received: model of type {type(model).__module__}.{type(model).__name__}"
    )


def _report(source: str, layers: list[LayerFlops], params: int, unknown: list[str]) -> FlopsReport:
    return FlopsReport(
        source=source,
        total_macs=sum(layer.macs or 0 for layer in layers),
        total_flops=sum(layer.flops or 0 for layer in layers),
        params=params,
        layers=tuple(layers),
        unknown_ops=tuple(unknown),
    )


# ---------------------------------------------------------------------- .tflite


def _count_tflite(model: Any) -> FlopsReport:
    graph = model.subgraphs[0]
    tensors = graph.tensors
    producer = {out: op for op in graph.operators for out in op.outputs}
    charged: set[int] = set()

    def weight_source(index: int) -> int | None:
        """The constant tensor behind an input, looking through a DEQUANTIZE (fp16/int8 weights)."""
        if index < 0:
            return None
        if tensors[index].is_constant:
            return index
        op = producer.get(index)
        if op is not None and op.opcode == "DEQUANTIZE" and tensors[op.inputs[0]].is_constant:
            return op.inputs[0]
        return None

    def is_weight(index: int) -> bool:
        t = tensors[index]
        return t.dtype.startswith(("float", "bfloat")) or t.quantization is not None

    layers: list[LayerFlops] = []
    unknown: list[str] = []
    for op in graph.operators:
        out = tensors[op.outputs[0]] if op.outputs else None
        out_shape = tuple(out.shape) if out is not None else ()
        out_elems = math.prod(out_shape) if out is not None else 0
        macs, flops = _tflite_cost(op, tensors, out_elems)
        if op.opcode == "DEQUANTIZE" and weight_source(op.outputs[0]) is not None:
            params = 0  # charged to the op that consumes the dequantized weight
        else:
            params = 0
            for i in op.inputs:
                src = weight_source(i)
                if src is not None and src not in charged and is_weight(src):
                    charged.add(src)
                    params += tensors[src].num_elements
        if flops is None:
            unknown.append(f"{op.opcode} ({out.name if out is not None else f'op {op.index}'})")
        layers.append(
            LayerFlops(
                name=out.name if out is not None else f"op_{op.index}",
                op=op.opcode,
                macs=macs,
                flops=flops,
                params=params,
                output_shape=out_shape,
            )
        )
    return _report("tflite", layers, sum(layer.params for layer in layers), unknown)


def _tflite_cost(op: Any, tensors: Any, out_elems: int) -> tuple[int | None, int | None]:
    """(MACs, FLOPs) of one operator; (None, None) when the op is unknown."""
    code = op.opcode
    opts = op.options

    def shape(position: int) -> tuple[int, ...]:
        return tuple(tensors[op.inputs[position]].shape)

    fused = _FUSED.get(str(opts.get("fused_activation_function", "NONE")), 0) * out_elems
    if code == "CONV_2D":
        _, kh, kw, cin = shape(1)
        macs = out_elems * kh * kw * cin
    elif code == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = shape(1)
        macs = out_elems * kh * kw
    elif code == "FULLY_CONNECTED":
        macs = out_elems * shape(1)[-1]
    elif code == "TRANSPOSE_CONV":
        # inputs: output_shape, weights [cout, kh, kw, cin], input; each input element is
        # multiplied into a kh x kw x cout patch of the output.
        cout, kh, kw, _ = shape(1)
        macs = math.prod(shape(2)) * kh * kw * cout
    elif code == "BATCH_MATMUL":
        a = shape(0)
        inner = a[-2] if opts.get("adj_x") else a[-1]
        macs = out_elems * inner
    elif code == "AVERAGE_POOL_2D":
        return 0, out_elems * int(opts.get("filter_width", 1)) * int(opts.get("filter_height", 1)) + fused
    elif code in ("MEAN", "SUM"):
        in_elems = math.prod(shape(0))
        return 0, in_elems if code == "MEAN" else in_elems - out_elems
    elif code in _ELEMENTWISE:
        return 0, _ELEMENTWISE[code] * out_elems + fused
    elif code in _ZERO_OPS:
        return 0, 0
    else:
        return None, None
    return macs, 2 * macs + fused


# ---------------------------------------------------------------------- Keras


def _count_keras(model: Any) -> FlopsReport:
    if not getattr(model, "built", False) or not getattr(model, "_is_graph_network", True):
        raise UnsupportedModelError(
            "count_flops needs a built Sequential or Functional tf_keras model (layer shapes must be "
            f"known). Received: {type(model).__name__} (subclassed or not built). Convert it and "
            "count the .tflite instead."
        )
    layers: list[LayerFlops] = []
    unknown: list[str] = []
    _walk_keras(model, "", layers, unknown)
    return _report("keras", layers, int(model.count_params()), unknown)


def _walk_keras(model: Any, prefix: str, layers: list[LayerFlops], unknown: list[str]) -> None:
    from mobile_opt import _tf

    keras_model_cls = _tf.keras().Model
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if isinstance(layer, keras_model_cls):  # nested model: count its layers
            _walk_keras(layer, f"{prefix}{layer.name}/", layers, unknown)
            continue
        inner = layer
        while kind in _TFMOT_WRAPPERS:
            inner = inner.layer  # TF-MOT wrappers: the wrapped layer does the arithmetic
            kind = type(inner).__name__
        out_shape = _per_sample(layer.output_shape)
        in_shape = layer.input_shape
        macs, flops = _keras_cost(inner, kind, in_shape, out_shape)
        name = f"{prefix}{layer.name}"
        if flops is None:
            unknown.append(f"{kind} ({name})")
        layers.append(LayerFlops(name, kind, macs, flops, int(layer.count_params()), out_shape))


def _per_sample(shape: Any) -> tuple[int | None, ...]:
    if isinstance(shape, list):  # several outputs: report the first
        shape = shape[0]
    return tuple(shape[1:])


def _elems(shape: tuple) -> int:
    return math.prod(d if d is not None else 1 for d in shape)


def _activation_cost(layer: Any) -> int | None:
    activation = getattr(layer, "activation", None)
    # TF-MOT QAT wraps activations (QuantizeAwareActivation); the original is inside.
    while activation is not None and not hasattr(activation, "__name__") and hasattr(activation, "activation"):
        activation = activation.activation
    if activation is None:
        return 0
    return _KERAS_ACTIVATIONS.get(getattr(activation, "__name__", str(activation)))


def _keras_cost(layer: Any, kind: str, in_shape: Any, out_shape: tuple) -> tuple[int | None, int | None]:
    out = _elems(out_shape)
    if kind in ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "DepthwiseConv1D",
                "SeparableConv1D", "SeparableConv2D", "Conv2DTranspose", "Conv1DTranspose"):
        if kind == "Dense":
            macs = out * int(layer.kernel.shape[0])
        elif kind.startswith("Depthwise"):
            macs = out * math.prod(layer.depthwise_kernel.shape[:-2])
        elif kind.startswith("Separable"):
            dk = layer.depthwise_kernel.shape  # (*k, cin, multiplier)
            spatial = math.prod(d for d in out_shape[:-1] if d is not None)
            depthwise = spatial * int(dk[-2]) * int(dk[-1]) * math.prod(dk[:-2])
            macs = depthwise + out * int(dk[-2]) * int(dk[-1])
        elif kind.endswith("Transpose"):
            kernel = layer.kernel.shape  # (*k, filters, cin)
            macs = _elems(_per_sample(in_shape)) * math.prod(kernel[:-2]) * int(kernel[-2])
        else:
            macs = out * math.prod(layer.kernel.shape[:-1])
        act = _activation_cost(layer)
        return (macs, None) if act is None else (macs, 2 * macs + act * out)
    if kind in ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
                "GlobalMaxPooling3D", "Flatten", "Reshape", "Dropout", "SpatialDropout1D",
                "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Permute",
                "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
                "Cropping3D", "UpSampling1D", "UpSampling2D", "RepeatVector", "Concatenate",
                "Maximum", "Minimum", "ReLU", "Identity", "ActivityRegularization", "QuantizeLayer"):
        if kind == "UpSampling2D" and getattr(layer, "interpolation", "nearest") != "nearest":
            return None, None
        if kind == "ReLU" and (layer.negative_slope or layer.threshold):
            return 0, out
        return 0, 0
    if kind in ("AveragePooling1D", "AveragePooling2D", "AveragePooling3D"):
        return 0, out * math.prod(layer.pool_size)
    if kind in ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D"):
        return 0, _elems(_per_sample(in_shape))
    if kind == "BatchNormalization":
        return 0, 2 * out
    if kind in ("Add", "Multiply"):
        return 0, (len(in_shape) - 1) * out
    if kind == "Subtract":
        return 0, out
    if kind == "Average":
        return 0, len(in_shape) * out
    if kind == "Rescaling":
        return 0, out * (2 if layer.offset else 1)
    if kind == "Activation":
        act = _activation_cost(layer)
        return (None, None) if act is None else (0, act * out)
    per_element = {"Softmax": 4, "LeakyReLU": 1, "PReLU": 1, "ELU": 2}.get(kind)
    if per_element is not None:
        return 0, per_element * out
    return None, None
