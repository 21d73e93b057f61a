"""Quantization stages: post-training (int8, dynamic, float16) and quantization-aware training.

After pruning and/or clustering, QAT uses TF-MOT's collaborative schemes so
the earlier work survives: prune → QAT is PQAT, cluster → QAT is CQAT,
prune → cluster → QAT is PCQAT. Every quantize stage converts the model to
.tflite and checks, on the converted weights, that sparsity and shared values
really survived, and measures accuracy with LiteRT.

Example:
    >>> quantize("qat_int8").params()["mode"]
    'qat_int8'
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from typing import Mapping, Sequence

import numpy as np

from mobile_opt import _int4, _stage_options as options, _tf
from mobile_opt._checks import check_number
from mobile_opt._compat_tfmot import output_quantize_config, qat_uncovered
from mobile_opt.errors import RecipeError, UnsupportedModelError
from mobile_opt.measure import kernel_arrays, kernel_shapes, stats_of
from mobile_opt.stage import Check, Stage, StageContext, StageOutput, clone, stage_builder

__all__ = ["QuantizeStage", "quantize", "shipped_kernels", "MODES"]

logger = logging.getLogger(__name__)

MODES = ("ptq_int8", "int4_fc", "dynamic", "float16", "qat_int8", "qat_int4")
_CONVERTER_MODE = {"ptq_int8": "int8", "int4_fc": "int4_fc", "dynamic": "dynamic", "float16": "float16",
                   "qat_int8": "int8", "qat_int4": "int4_fc"}
_INT4_MODES = ("int4_fc", "qat_int4")
_OUTPUT_ONLY_LAYERS = ("Rescaling", "Normalization")
_WEIGHT_DTYPE = {"ptq_int8": "int8", "int4_fc": "int8", "dynamic": "int8", "float16": "float16", "qat_int8": "int8",
                 "qat_int4": "int8"}
# The layer types that run as FULLY_CONNECTED, which the int4 modes store in int4.
_FC_LAYERS = ("Dense",)
# The TFLite op each Keras layer type with a kernel becomes.
_KERAS_OP = {"Dense": "FULLY_CONNECTED", "Conv2D": "CONV_2D", "Conv1D": "CONV_2D",
             "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "SeparableConv2D": "DEPTHWISE_CONV_2D",
             "Conv2DTranspose": "TRANSPOSE_CONV", "Embedding": "GATHER"}


class QuantizeStage(Stage):
    """Quantization, post-training or aware-training; always the last stage.

    Args:
        mode: "ptq_int8" (full-integer with representative data taken from the
            training data), "dynamic" (int8 weights, float activations),
            "float16" (float16 weights), "qat_int8" (quantization-aware
            fine-tuning, then full-integer conversion; after prune/cluster it
            uses PQAT/CQAT/PCQAT to preserve their work), or "int4_fc" (like
            "ptq_int8", with int4 kernels on Dense layers, which XNNPACK runs in int4), or
            "qat_int4" (Dense kernels fine-tuned with 4-bit fake quantization, then
            converted like "int4_fc": the trained grid is the one stored, so nothing is lost
            in conversion; not after prune/cluster, which TF-MOT's n-bit QAT does not keep).
        skip_layers: layer names QAT leaves in float (for layers it cannot
            quantize); default none.
        io_dtype: model input/output type for int8 modes: "float32" (default),
            "int8" or "uint8".
        learning_rate: QAT fine-tuning learning rate when no optimizer is
            given (default 1e-4).
        representative_samples: calibration samples for int8 (default 200).
        per_channel: "ptq_int8" and "int4_fc": False gives every weight tensor (int8 and
            int4 alike) one scale instead of one per output channel (smaller graph, clusters
            stay one code each, and `cluster(int4_grid=True)`'s values are stored exactly;
            costs accuracy on convolutions). Default True.
        bits: `{layer: 4 or 8}` kernel bits per layer for "ptq_int8" / "int4_fc" (default
            none: the mode's). After clustering, a layer going int4 whose channels hold at most
            16 values is put on the int4 grid first, and the check proves the .tflite stores
            exactly those values.

    Returns:
        A `QuantizeStage` for `Pipeline`.

    Raises:
        RecipeError: an unknown mode or io_dtype.

    Example:
        >>> quantize("ptq_int8", io_dtype="int8").params()["io_dtype"]
        'int8'
    """

    kind = "quantize"

    def __init__(
        self,
        mode: str,
        *,
        skip_layers: Sequence[str] = (),
        io_dtype: str = "float32",
        learning_rate: float = 1e-4,
        representative_samples: int = 200,
        per_channel: bool = True,
        bits: Mapping[str, int] | None = None,
    ):
        if mode not in MODES:
            raise RecipeError(f"mode must be one of {MODES}. Received: mode={mode!r}.")
        if io_dtype not in ("float32", "int8", "uint8"):
            raise RecipeError(f"io_dtype must be float32, int8 or uint8. Received: io_dtype={io_dtype!r}.")
        if io_dtype != "float32" and mode not in ("ptq_int8", "qat_int8"):
            raise RecipeError(f"Integer model I/O needs an int8 mode. Received: mode={mode!r}, io_dtype={io_dtype!r}.")
        if bits is not None:
            if mode not in ("ptq_int8",) + _INT4_MODES:
                raise RecipeError(f"bits is for mode 'ptq_int8', 'int4_fc' or 'qat_int4'. Received: mode={mode!r}.")
            if not isinstance(bits, Mapping) or not all(isinstance(k, str) for k in bits):
                raise RecipeError(f"bits must map layer names to 4 or 8, e.g. {{fc1 = 4}}. Received: bits={bits!r}.")
            wrong = {k: v for k, v in bits.items() if isinstance(v, bool) or v not in (4, 8)}
            if wrong:
                raise RecipeError(f"Kernel bits must be 4 or 8 (what LiteRT runs with int8 activations). "
                                  f"Received for layer(s): {wrong}.")
        if not per_channel and mode not in ("ptq_int8", "int4_fc"):
            raise RecipeError(f"per_channel=False is for mode='ptq_int8' (QAT's scheme sets its own scales). "
                              f"Received: mode={mode!r}.")
        check_number("representative_samples", representative_samples, at_least=1, integer=True, error=RecipeError)
        self.mode = mode
        self.skip_layers = tuple(skip_layers)
        self.io_dtype = io_dtype
        self.learning_rate = options.learning_rate(learning_rate)
        self.representative_samples = representative_samples
        self.per_channel = per_channel
        self.bits = dict(bits or {})

    @property
    def trains(self) -> bool:  # type: ignore[override]
        return self.mode in ("qat_int8", "qat_int4")

    def check_order(self, kinds_before: Sequence[str]) -> None:
        kept = [k for k in kinds_before if k in ("prune", "cluster")]
        if self.mode == "qat_int4" and kept:
            raise RecipeError(
                f"quantize('qat_int4') cannot follow {kept[0]!r}: TF-MOT's n-bit QAT has no scheme that keeps "
                "zeros or clusters. After prune/cluster use quantize('int4_fc'), which stores clustered "
                "kernels on the int4 grid.")

    def params(self) -> dict:
        return {
            "mode": self.mode,
            "skip_layers": list(self.skip_layers),
            "io_dtype": self.io_dtype,
            "learning_rate": self.learning_rate,
            "representative_samples": self.representative_samples,
            "per_channel": self.per_channel,
            "bits": dict(self.bits),
        }

    def scheme_name(self, kinds_before: Sequence[str]) -> str:
        """The TF-MOT scheme QAT uses after `kinds_before`: default, PQAT, CQAT or PCQAT."""
        if "cluster" in kinds_before:
            return "PCQAT" if "prune" in kinds_before else "CQAT"
        return "PQAT" if "prune" in kinds_before else "default"

    def _qat_model(self, model, ctx: StageContext, int4: set[str] = frozenset()):
        keras, tfmot = _tf.keras(), _tf.tfmot()
        qk = tfmot.quantization.keras
        unknown = [n for n in self.skip_layers if n not in {l.name for l in model.layers}]
        if unknown:
            raise RecipeError(f"skip_layers names no layer of the model. Received: {unknown}.")
        output_only = _output_only(model)
        inputs = {l.name for l in model.layers if type(l).__name__ == "InputLayer"}
        uncovered = set(qat_unsupported(model, self.skip_layers))
        bad = [l for l in model.layers if l.name in uncovered]
        if bad:
            names = ", ".join(f"{l.name!r} ({type(l).__name__})" for l in bad)
            raise UnsupportedModelError(
                f"QAT cannot quantize layer(s) {names}. Leave them in float with "
                f"quantize('qat_int8', skip_layers={[l.name for l in bad]!r}), or use "
                "quantize('ptq_int8') instead."
            )
        base = clone(model)
        int4_config = _int4.int4_qat_config() if int4 else None

        def config(layer):
            if layer.name in int4:
                return int4_config()
            return output_quantize_config() if layer.name in output_only else None

        annotated = keras.models.clone_model(
            base,
            clone_function=lambda l: l if l.name in set(self.skip_layers) | inputs
            else qk.quantize_annotate_layer(l, config(l)),
        )
        if int4:
            with qk.quantize_scope({"Int4KernelConfig": int4_config}), _tfmot_notices_as_debug():
                return qk.quantize_apply(annotated, qk.experimental.default_n_bit.DefaultNBitQuantizeScheme())
        scheme = {
            "default": lambda: qk.default_8bit.Default8BitQuantizeScheme(),
            "PQAT": lambda: qk.collab_opts.Default8BitPrunePreserveQuantizeScheme(),
            "CQAT": lambda: tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
            "PCQAT": lambda: tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
        }[self.scheme_name(ctx.kinds_before())]()
        with qk.quantize_scope(), _tfmot_notices_as_debug(), warnings.catch_warnings():
            # CQAT/PCQAT warn for every layer that holds more distinct values than centroids,
            # i.e. one never clustered (a low-rank factor, a skipped layer): nothing to preserve.
            warnings.filterwarnings("ignore", message="No clustering performed on layer")
            return qk.quantize_apply(annotated, scheme)

    def apply(self, model, ctx: StageContext) -> StageOutput:
        import converters

        notes = []
        if self.mode == "qat_int8":
            scheme = self.scheme_name(ctx.kinds_before())
            notes.append(f"QAT scheme: {scheme}")
            out_model = self._qat_model(model, ctx)
            # PCQAT/CQAT log "Gradients do not exist for ...kernel" every step: the clustered
            # kernels are deliberately frozen (only centroids train), so the warning is noise.
            callbacks = [_PinZeroCentroids()] if scheme == "PCQAT" else []
            with _quiet_tf_warnings(), _tfmot_notices_as_debug():
                ctx.fine_tune(out_model, learning_rate=self.learning_rate, callbacks=callbacks,
                              label=f"QAT ({scheme})")
        else:
            out_model = model
        int4 = self._int4_layers(model)
        on_grid: set[str] = set()
        if self.mode == "qat_int4":
            notes.append("QAT scheme: n-bit (4-bit kernels per channel on " + ", ".join(sorted(int4)) + ")")
            qat = self._qat_model(model, ctx, int4)
            with _quiet_tf_warnings(), _tfmot_notices_as_debug():
                ctx.fine_tune(qat, learning_rate=self.learning_rate, label="QAT (int4)")
            out_model, on_grid = _int4.fake_quantized(model, qat, int4), int4
        elif int4 and "cluster" in ctx.kinds_before():
            out_model, moved = _int4.on_grid(out_model, int4, per_channel=self.per_channel)
            on_grid = set(moved)
            if moved:
                notes.append("clustered kernels put on the int4 grid (largest move, in scales): "
                             + ", ".join(f"{k} {v:.3f}" for k, v in moved.items()))
        # A QAT model carries its own ranges; calibration data is for post-training int8 only.
        post_training = self.mode in ("ptq_int8", "int4_fc", "qat_int4")
        representative = ctx.train.features(self.representative_samples) if post_training else None
        tflite = converters.convert(
            out_model,
            quantization=_CONVERTER_MODE[self.mode],
            representative_data=representative,
            io_dtype=self.io_dtype,
            weights=converters.IntegerWeights(per_channel=self.per_channel, weight_bits=self.bits or None),
        )
        evaluation = converters.evaluate(tflite, ctx.val.dataset)
        notes.extend(_int4.odd_width_notes(tflite))
        checks, kernels = self._verify(tflite, out_model if int4 else model, ctx, int4, on_grid)
        return StageOutput(out_model, tuple(checks), kernels, tuple(notes), tflite=tflite,
                           accuracy=evaluation.accuracy)

    def check_model(self, model) -> None:
        """Every layer in `bits` exists, and those set to 4 run as an op that takes int4 kernels."""
        from converters.weight_bits import int4_ops

        types = {l.name: type(l).__name__ for l in model.layers}
        unknown = sorted(set(self.bits) - set(types))
        if unknown:
            raise RecipeError(f"bits names no layer of the model: {unknown}. Its layers with kernels: "
                              f"{sorted(n for n in kernel_shapes(model) if '/' not in n)}.")
        allowed = int4_ops()
        refused = {n: _KERAS_OP.get(types[n], types[n]) for n, b in self.bits.items()
                   if b == 4 and _KERAS_OP.get(types[n]) not in allowed}
        if refused:
            raise UnsupportedModelError(
                "int4 kernels are not available for "
                + "; ".join(f"layer {n!r} ({types[n]}, runs as {op})" for n, op in refused.items())
                + f": ai-edge-quantizer takes int4 on {sorted(allowed)} only. Give these layers 8 bits.")

    def _int4_layers(self, model) -> set[str]:
        """The layers whose kernels this stage stores in int4."""
        fc = {l.name for l in model.layers if type(l).__name__ in _FC_LAYERS} if self.mode in _INT4_MODES else set()
        return (fc | {k for k, v in self.bits.items() if v == 4}) - {k for k, v in self.bits.items() if v == 8}

    def _verify(self, tflite: bytes, keras_model, ctx: StageContext, int4: set[str] = frozenset(),
                on_grid: set[str] = frozenset()):
        """Checks the converted weights: their dtype, and that earlier sparsity/sharing survived."""
        previous = ctx.previous[-1].kernels if ctx.previous else {}
        arrays = {k: v[0] for k, v in kernel_arrays(keras_model).items() if k in on_grid}
        checks, kernels = [], {}
        for name, shape, in_axis, out_axis, tensor in _matched_kernels(tflite, keras_model):
            data = tensor.data()
            zero = 0
            if tensor.quantization is not None and np.size(tensor.quantization.zero_point):
                zp = np.asarray(tensor.quantization.zero_point)
                zero = int(zp.flat[0]) if np.all(zp == zp.flat[0]) else 0
            t_in, t_out = _tflite_axes(len(shape), in_axis, out_axis)
            st = stats_of(name, data, in_axis=t_in, out_axis=t_out, zero=zero)
            kernels[name] = {**st.to_dict(), "dtype": tensor.dtype}
            expected_dtype = "int4" if name in int4 else _WEIGHT_DTYPE[self.mode]
            if name in arrays:
                # The runtime's weights are the returned model's: codes x scales == the kernel.
                diff = _int4.grid_diff(tensor, arrays[name], in_axis, out_axis)
                what = "trained grid" if self.mode == "qat_int4" else "centroids"
                checks.append(Check(f"int4 = {what}[{name}]", "max |.tflite - kernel| <= 1e-6 scale",
                                    f"{diff:.2g} scale", diff <= 1e-6))
            # The converter keeps tiny tensors float in dynamic-range mode (< 1024 weights).
            if not (self.mode == "dynamic" and int(np.prod(shape)) < 1024):
                checks.append(Check(f"dtype[{name}]", expected_dtype, tensor.dtype, tensor.dtype == expected_dtype))
            if not self.per_channel:
                scales = np.size(tensor.quantization.scale) if tensor.quantization is not None else 0
                checks.append(Check(f"per-tensor scale[{name}]", "1", str(scales), scales == 1))
            prior = previous.get(name)
            if prior is None:
                continue
            if prior["sparsity"] > 0.05:
                checks.append(Check(f"sparsity kept[{name}]", f">= {prior['sparsity']:.4f}",
                                    f"{st.sparsity:.4f}", st.sparsity >= prior["sparsity"] - 1.0 / st.size - 1e-6))
            if "cluster" in ctx.kinds_before() and prior["unique_values"] <= 256:
                limit = prior["max_unique_per_channel"]
                checks.append(Check(f"clusters kept[{name}]", f"unique values per channel <= {limit}",
                                    str(st.max_unique_per_channel), st.max_unique_per_channel <= limit))
        return checks, kernels


def _output_only(model) -> set[str]:
    # Rescaling/Normalization (preprocessing, and the bridge's form of Keras 3 `x * c + d` ops)
    # are affine maps TF-MOT's registry lacks: they get its output-only config, so their output
    # is int8 like an activation's.
    return {l.name for l in model.layers if type(l).__name__ in _OUTPUT_ONLY_LAYERS}


def qat_unsupported(model, skip_layers: Sequence[str] = ()) -> list[str]:
    """Layers `quantize("qat_int8", skip_layers=...)` cannot wrap: neither TF-MOT's Conv+BN
    folding nor its registry covers them (pass them as `skip_layers` to leave them in float)."""
    output_only = _output_only(model)
    annotated = {l.name: output_quantize_config() if l.name in output_only else None
                 for l in model.layers if l.name not in set(skip_layers) and type(l).__name__ != "InputLayer"}
    return qat_uncovered(model, annotated)


def _matched_kernels(tflite: bytes, keras_model):
    """(name, Keras kernel, in_axis, out_axis, .tflite tensor) for each kernel found in the .tflite."""
    import converters

    parsed = converters.load_tflite(tflite)
    tensors = [t for sg in parsed.subgraphs for t in sg.tensors if t.is_constant and len(t.shape) >= 2]
    used: set[int] = set()
    for name, (shape, in_axis, out_axis) in kernel_shapes(keras_model).items():
        tensor = _find_tflite_kernel(tensors, shape, in_axis, out_axis, used, name)
        if tensor is not None:
            used.add(id(tensor))
            yield name, shape, in_axis, out_axis, tensor


def shipped_kernels(tflite: bytes, keras_model) -> dict:
    """`{layer: kernel}` as stored in the .tflite: int8 integers for an int8 model, in TFLite's layout.

    After QAT the Keras model holds TF-MOT's float shadow weights (training state, not
    what ships); these are the weights the app runs, read from the flatbuffer.
    """
    return {name: tensor.data() for name, _, _, _, tensor in _matched_kernels(tflite, keras_model)}


def _tflite_axes(ndim: int, in_axis: int, out_axis: int) -> tuple[int, int]:
    # TFLite stores Dense as (out, in), Conv as (out, h, w, in), DepthwiseConv as (1, h, w, in*mult).
    if in_axis == out_axis:
        return ndim - 1, ndim - 1
    return ndim - 1, 0


def _find_tflite_kernel(tensors, keras_shape, in_axis, out_axis, used, layer_name: str):
    ndim = len(keras_shape)
    if in_axis == out_axis:  # depthwise (h, w, in, mult) -> (1, h, w, in*mult)
        want = (1, keras_shape[0], keras_shape[1], keras_shape[2] * keras_shape[3])
    else:
        want = (keras_shape[out_axis],) + tuple(keras_shape[:ndim - 2]) + (keras_shape[in_axis],)
    fits = [t for t in tensors if tuple(t.shape) == want and id(t) not in used]
    # Same-shaped kernels (MobileNet's repeated blocks) are told apart by the converter's tensor
    # names ("model/block_7_expand/Conv2D", "...;model/quant_block_7_expand/..."); graph order
    # is the fallback, as it need not follow the Keras layer order.
    named = re.compile(rf"(^|[/;])(quant_)?{re.escape(layer_name)}(/|;|$)")
    return next((t for t in fits if named.search(t.name or "")), fits[0] if fits else None)


def _PinZeroCentroids():
    """Keeps PCQAT's zero centroids at exactly zero while fine-tuning.

    With TF-MOT 0.8.1, PCQAT trains the zero centroid of Conv2D kernels like any
    other, so every pruned weight drifts to a non-zero value and the sparsity
    is lost (measured here: conv 75% -> 0-58% zeros after one epoch). Resetting
    those centroids after each step restores the promise of the scheme.
    """
    keras = _tf.keras()

    class PinZeroCentroids(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._pinned = []
            for var in self.model.weights:
                if "cluster_centroids" in var.name:
                    values = var.numpy()
                    if np.any(values == 0):
                        self._pinned.append((var, values == 0))

        def on_train_batch_end(self, batch, logs=None):
            for var, zero in self._pinned:
                values = var.numpy()
                if np.any(values[zero] != 0):
                    values[zero] = 0
                    var.assign(values)

    return PinZeroCentroids()


@contextlib.contextmanager
def _tfmot_notices_as_debug():
    """Demotes TF-MOT's root-logger notices to our debug log while it runs.

    The collaborative schemes warn "Input layer does not contain zero weights, so
    apply CQAT instead." for every layer that was not pruned (e.g. the first conv we
    skip on purpose); the stage's own checks report what really matters.
    """

    class Demote(logging.Filter):
        def filter(self, record):
            if record.name == "root" and "apply CQAT instead" in record.getMessage():
                logger.debug("TF-MOT: %s", record.getMessage())
                return False
            return True

    demote = Demote()
    root = logging.getLogger()
    root.addFilter(demote)
    try:
        yield
    finally:
        root.removeFilter(demote)


class _quiet_tf_warnings:
    def __enter__(self):
        self._logger = _tf.tf().get_logger()
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


quantize = stage_builder(QuantizeStage, "quantize")
