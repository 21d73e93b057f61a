"""Sub-byte weights LiteRT executes: int4/int8 per layer, written by ai-edge-quantizer.

TFLite's own converter writes int8 weights only. Google's `ai-edge-quantizer` (the field's
library for LiteRT; we do not write our own quantizer) stores real INT4 tensors, two
values per byte, which XNNPACK runs for FULLY_CONNECTED. Here a float .tflite is quantized
full-integer (int8 activations, calibrated) with int8 weights everywhere except the layers
asked to be int4, and the result is proved by reading the flatbuffer: every such layer's
kernel must be stored as int4 (`get_tensor_details` reports int4 as int8, so it cannot tell).

The quantizer's policy decides which ops take int4 weights (FULLY_CONNECTED and CONV_2D in
0.10); a layer on any other op is refused up front, named with its op. Which layers should be
int4 is a latency question as much as a size one: XNNPACK runs int4 FULLY_CONNECTED but not
int4 CONV_2D (builtin kernels, slower), so that choice is measured, not assumed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mobile_opt.errors import ConversionError, DependencyError, InputError, UnsupportedModelError

from converters.tflite_model import TFLiteModel, load_tflite

__all__ = ["BITS", "IntegerWeights", "WeightLayer", "int4_layers", "int4_ops", "quantize_weight_bits", "weight_layers"]

logger = logging.getLogger(__name__)

BITS = (4, 8)
# Ops whose constant weight is what a layer's bits mean (input 1 is the kernel).
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")


@dataclass(frozen=True)
class WeightLayer:
    """One op with a constant kernel in a float .tflite, named after the Keras layer."""

    layer: str
    op_type: str
    output_name: str
    kernel_name: str


def _layer_pattern(layer: str) -> re.Pattern:
    # The converter names tensors "model/<layer>/MatMul;model/<layer>/Relu": a layer is a
    # whole path component (so "fc1" does not match "fc10").
    return re.compile(rf"(^|[/;])(quant_)?{re.escape(layer)}(/|;|$)")


def weight_layers(model: TFLiteModel, layers: Mapping[str, int] | None = None) -> list[WeightLayer]:
    """The weight ops of a float .tflite; with `layers`, the one each named layer runs as.

    Raises:
        InputError: a name in `layers` matches no weight op of the model.
    """
    sg = model.subgraphs[0]
    ops = []
    for op in sg.operators:
        if op.opcode not in _WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] < 0 or not op.outputs:
            continue
        out, kernel = sg.tensors[op.outputs[0]], sg.tensors[op.inputs[1]]
        if kernel.is_constant:
            ops.append((op.opcode, out.name or "", kernel.name or ""))
    if layers is None:
        return [WeightLayer(k.split("/")[-2] if k.count("/") >= 1 else k, t, o, k) for t, o, k in ops]
    found, missing = [], []
    for layer in layers:
        pattern = _layer_pattern(layer)
        hits = [(t, o, k) for t, o, k in ops if pattern.search(k) or pattern.search(o)]
        if hits:
            found.extend(WeightLayer(layer, t, o, k) for t, o, k in hits)
        else:
            missing.append(layer)
    if missing:
        raise InputError(
            f"weight_bits names {len(missing)} layer(s) with no weight op in the model: {missing}. "
            f"Name Dense/Conv layers of the model (their kernels are: {sorted({k for _, _, k in ops})[:12]})."
        )
    return found


def int4_ops() -> set[str]:
    """The op types ai-edge-quantizer's policy gives int4 kernels with int8 activations."""
    from ai_edge_quantizer import default_policy

    per_config = json.loads(default_policy.DEFAULT_JSON_POLICY)["ops_per_config"]
    return set(per_config.get("static_wi4_ai8", ())) - {"INPUT", "OUTPUT"}


@dataclass(frozen=True)
class IntegerWeights:
    """How `convert` stores full-integer ("int8", "int4_fc") kernels.

    Args:
        per_channel: one scale per output channel (default True, the converter's default).
            False: one scale per tensor, which costs accuracy on convolutions but drops 12
            bytes of scale and zero point per channel, and keeps clustered weights at one
            int8 code per cluster ("int8" only; a QAT model's scheme decides for itself).
        weight_bits: `{layer name: 4 or 8}` kernel bits per layer (default None: 8 bits, or
            4 on every FULLY_CONNECTED for "int4_fc"). int4 is available where
            ai-edge-quantizer's policy has it (FULLY_CONNECTED, CONV_2D); the result is
            checked to store every such kernel as INT4.

    Raises:
        InputError: per_channel not a bool; weight_bits not layer names to 4 or 8.

    Example:
        >>> IntegerWeights(weight_bits={"fc1": 4}).weight_bits
        {'fc1': 4}
    """

    per_channel: bool = True
    weight_bits: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.per_channel, bool):
            raise InputError(f"per_channel must be True or False. Received: per_channel={self.per_channel!r}")
        if self.weight_bits is not None:
            _check_bits(self.weight_bits)
            object.__setattr__(self, "weight_bits", dict(self.weight_bits))


def _check_bits(weight_bits: Mapping[str, int]) -> None:
    if not isinstance(weight_bits, Mapping):
        raise InputError(
            f"weight_bits must map layer names to 4 or 8, e.g. {{'fc1': 4}}. Received: {weight_bits!r}"
        )
    for layer, bits in weight_bits.items():
        if not isinstance(layer, str) or not layer:
            raise InputError(f"weight_bits keys must be layer names. Received: {layer!r}")
        if isinstance(bits, bool) or bits not in BITS:
            raise InputError(
                f"Layer {layer!r}: weight bits must be 4 or 8 (the widths LiteRT runs with int8 "
                f"activations). Received: {bits!r}"
            )


def int4_layers(model: TFLiteModel, *, all_fully_connected: bool,
                weight_bits: Mapping[str, int]) -> dict[str, WeightLayer]:
    """`{output tensor name: layer}` of the ops to store in int4, checked against the policy.

    Raises:
        InputError: bits outside {4, 8}, an unknown layer, or int4 on an op the quantizer's
            policy refuses (the layer and its op are named).
    """
    _check_bits(weight_bits)
    chosen: dict[str, WeightLayer] = {}
    if all_fully_connected:
        chosen = {w.output_name: w for w in weight_layers(model) if w.op_type == "FULLY_CONNECTED"}
    named = weight_layers(model, weight_bits)
    for w in named:
        if weight_bits[w.layer] == 4:
            chosen[w.output_name] = w
        else:
            chosen.pop(w.output_name, None)
    allowed = int4_ops()
    refused = [w for w in chosen.values() if w.op_type not in allowed]
    if refused:
        raise InputError(
            "int4 weights are not available for "
            + "; ".join(f"layer {w.layer!r} (runs as {w.op_type})" for w in refused)
            + f": ai-edge-quantizer's policy takes int4 weights on {sorted(allowed)} only. "
            "Give these layers 8 bits (weight_bits={...: 8})."
        )
    return chosen


def quantize_weight_bits(float_tflite: bytes, int4: Mapping[str, WeightLayer], samples: list[np.ndarray],
                         *, per_channel: bool) -> bytes:
    """Full-integer quantization with int4 kernels on the ops in `int4` (by output tensor name).

    Args:
        float_tflite: the float32 model from the converter.
        int4: from `int4_layers`.
        samples: calibration inputs, each shaped (1, *input_shape).
        per_channel: one weight scale per output channel (True) or per tensor.

    Raises:
        DependencyError: ai-edge-quantizer is not installed.
        ConversionError: the quantizer failed, or a layer asked for int4 is not stored as int4.
    """
    try:
        from ai_edge_quantizer import algorithm_manager, qtyping, quantizer
    except ImportError as exc:
        raise DependencyError(
            "int4 weights need ai-edge-quantizer: pip install 'ai-edge-quantizer>=0.10'"
        ) from exc
    from converters.interpreter import make_interpreter

    granularity = qtyping.QuantGranularity.CHANNELWISE if per_channel else qtyping.QuantGranularity.TENSORWISE
    signatures = make_interpreter(float_tflite).get_signature_list()
    if len(signatures) != 1 or len(next(iter(signatures.values()))["inputs"]) != 1:
        raise UnsupportedModelError(
            f"int4 quantization supports single-signature, single-input models. Received: {signatures}"
        )
    (key, signature), = signatures.items()
    input_name = signature["inputs"][0]
    q = quantizer.Quantizer(bytearray(float_tflite))
    q.add_static_config(".*", "*", 8, 8, weight_granularity=granularity)
    # Float32 model inputs/outputs, as the converter's int8 mode gives by default: the policy
    # would otherwise make them int8 when the first/last op is quantized.
    for boundary in ("INPUT", "OUTPUT"):
        q.update_quantization_recipe(".*", boundary, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    for output_name, layer in int4.items():
        # The quantizer's op scope is its output tensor names, each followed by ";".
        q.add_static_config(f"^{re.escape(output_name)};$", layer.op_type, 8, 4, weight_granularity=granularity)
    try:
        # The quantizer prints progress bars and a size report to stdout/stderr: not for users.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibration = q.calibrate({key: [{input_name: s} for s in samples]}, num_threads=1)
            result = q.quantize(calibration, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ConversionError(f"ai-edge-quantizer failed: {str(exc)[:800]}") from exc
    content = bytes(result.quantized_model)
    _check_int4_stored(content, int4)
    logger.info("Quantized with ai-edge-quantizer: %d op(s) with int4 kernels, %d bytes", len(int4), len(content))
    return content


def _check_int4_stored(content: bytes, int4: Mapping[str, WeightLayer]) -> None:
    """Every layer asked for int4 has its kernel stored as INT4 in the flatbuffer."""
    model = load_tflite(content)
    stored = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcode in _WEIGHT_OPS and op.outputs and len(op.inputs) > 1 and op.inputs[1] >= 0:
                stored[sg.tensors[op.outputs[0]].name] = sg.tensors[op.inputs[1]].dtype
    wrong = {w.layer: stored.get(name, "missing") for name, w in int4.items() if stored.get(name) != "int4"}
    if wrong:
        raise ConversionError(
            f"ai-edge-quantizer did not store these kernels as int4: {wrong} (layer: dtype in the .tflite)."
        )
