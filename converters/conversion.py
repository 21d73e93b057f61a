"""Keras (tf_keras) model -> .tflite bytes, with post-training or QAT quantization.

Quantization modes:
  "none"     float32 weights and activations.
  "float16"  float16 weights (dequantized to float32 at run time on CPU).
  "dynamic"  int8 weights, float activations (dynamic-range quantization).
  "int8"     full-integer: int8 weights and activations, calibrated on representative
             data (`io_dtype` may make the model's inputs/outputs int8 or uint8 too).
  "int4_fc"  full-integer with int4 FULLY_CONNECTED kernels (two per byte), int8 elsewhere:
             the FC ops XNNPACK runs in int4 (`IntegerWeights.weight_bits` sets other layers).
Any int4 weight goes through ai-edge-quantizer (`converters.weight_bits`); TFLite's
converter writes int8 only.
A quantization-aware-trained model (TF-MOT QuantizeWrapper / QuantizeLayer inside) is
detected and converted to int8 with `Optimize.DEFAULT` and no representative data.

Every converted model is run once by LiteRT before it is returned (`check_runs`): a model
that converts but cannot run is a `ConversionError`, never a result.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mobile_opt import _tf
from mobile_opt._files import write_atomic
from mobile_opt.errors import (
    ConversionError,
    DataError,
    InputError,
    ModelFormatError,
    UnsupportedModelError,
)

from converters import weight_bits as _weight_bits
from converters.weight_bits import IntegerWeights
from converters.interpreter import check_runs
from converters.keras3_bridge import is_keras3_model, load_keras3_file, saved_by_keras3, to_tf_keras
from converters.tflite_model import load_tflite

__all__ = ["convert", "convert_to_file", "is_qat_model", "load_keras_model", "QUANTIZATION_MODES"]

logger = logging.getLogger(__name__)

QUANTIZATION_MODES = ("none", "float16", "dynamic", "int8", "int4_fc")
_IO_DTYPES = ("float32", "int8", "uint8")
# TF-MOT classes are matched by name: importing TF-MOT's internals to isinstance-check
# them would tie us to its private module layout.
_QAT_CLASSES = {"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"}
_PRUNE_CLASSES = {"PruneLowMagnitude"}
_CLUSTER_CLASSES = {"ClusterWeights", "ClusterWeightsMHA", "ClusterWeightsRNN"}


def convert(
    model: Any,
    *,
    quantization: str = "none",
    representative_data: Any = None,
    io_dtype: str = "float32",
    sparsity: bool = False,
    select_tf_ops: bool = False,
    num_calibration_samples: int = 100,
    weights: IntegerWeights = IntegerWeights(),
) -> bytes:
    """Converts a tf_keras or Keras 3 model (or a saved one) to a .tflite flatbuffer.

    Args:
        model: a `tf_keras.Model`, a Keras 3 Sequential/functional model (bridged to
            tf_keras first and proved equal, see `keras3_bridge`), or a path to a
            `.keras` / `.h5` file or a SavedModel directory.
        quantization: "none" (default), "float16", "dynamic" or "int8" (see module doc).
            A QAT model is always converted to int8; "float16"/"dynamic" are refused for it.
        representative_data: calibration inputs for "int8": an array of samples (axis 0),
            an `(x, y)` tuple, a `tf.data.Dataset` (batched or not, elements `x` or
            `(x, y)`), or a generator / generator function yielding `x` or `[x]`.
            Default None (required for "int8" unless the model is QAT).
        io_dtype: "float32" (default), "int8" or "uint8": the model's input/output type;
            integer types need "int8" quantization or a QAT model.
        sparsity: also apply `Optimize.EXPERIMENTAL_SPARSITY` (default False): sparse
            weights stored in the sparse tensor format.
        select_tf_ops: allow TensorFlow (Flex) ops LiteRT has no builtin for (default False).
            The Flex delegate adds megabytes to the app; a warning is logged.
        num_calibration_samples: at most this many representative samples are used
            (default 100).
        weights: per-channel or per-tensor scales and kernel bits per layer, for "int8" and
            "int4_fc" (default `IntegerWeights()`: per channel, 8 bits, or 4 on every
            FULLY_CONNECTED for "int4_fc").

    Returns:
        The .tflite flatbuffer bytes; LiteRT has run the model once on zeros.

    Raises:
        InputError: a bad argument (unknown mode, io_dtype without integer quantization, ...).
        ModelFormatError: the path is not a loadable Keras model / SavedModel.
        UnsupportedModelError: not a Keras model, or a Keras 3 model that cannot be bridged.
        DataError: representative data missing, empty or not shaped like the model input.
        ConversionError: the converter failed (its own message is quoted), or LiteRT
            cannot run the converted model.

    Example:
        >>> tflite = convert(model, quantization="int8", representative_data=x_train[:200])  # doctest: +SKIP
    """
    if quantization not in QUANTIZATION_MODES:
        raise InputError(
            f"Unknown quantization mode. Expected one of {QUANTIZATION_MODES}. "
            f"Received: quantization={quantization!r}"
        )
    if io_dtype not in _IO_DTYPES:
        raise InputError(f"Expected io_dtype in {_IO_DTYPES}. Received: io_dtype={io_dtype!r}")
    if not isinstance(num_calibration_samples, int) or num_calibration_samples < 1:
        raise InputError(
            "num_calibration_samples must be a positive int. "
            f"Received: num_calibration_samples={num_calibration_samples!r}"
        )
    if not isinstance(weights, IntegerWeights):
        raise InputError(f"weights must be a converters.IntegerWeights(...). Received: weights={weights!r}")
    per_channel, weight_bits = weights.per_channel, weights.weight_bits
    if weight_bits is not None and quantization not in ("int8", "int4_fc"):
        raise InputError(
            "weight_bits applies to full-integer quantization ('int8' or 'int4_fc'). "
            f"Received: quantization={quantization!r}"
        )
    if quantization == "int4_fc" or (weight_bits and 4 in weight_bits.values()):
        return _convert_weight_bits(model, quantization, representative_data, io_dtype=io_dtype,
                                    sparsity=sparsity, per_channel=per_channel, weight_bits=dict(weight_bits or {}),
                                    num_calibration_samples=num_calibration_samples)
    if weight_bits:  # all 8: checked like any request, then the converter's own int8
        _weight_bits.int4_layers(load_tflite(convert(model)), all_fully_connected=False, weight_bits=weight_bits)
    tf = _tf.tf()
    saved_model_dir, keras_model = _resolve_model(model)
    qat = keras_model is not None and is_qat_model(keras_model)
    if qat and quantization in ("float16", "dynamic"):
        raise InputError(
            "The model is quantization-aware trained (it contains TF-MOT quantize wrappers) and "
            "converts to int8 only. Use quantization='int8' or 'none'. "
            f"Received: quantization={quantization!r}"
        )
    integer = qat or quantization == "int8"
    if not per_channel and (qat or quantization != "int8"):
        raise InputError(
            "per_channel=False applies to post-training quantization='int8' only (a QAT model's "
            f"scheme fixes its own scales). Received: quantization={quantization!r}, QAT model: {qat}"
        )
    if io_dtype != "float32" and not integer:
        raise InputError(
            "Integer model inputs/outputs need full-integer quantization: use quantization='int8' "
            f"(or a QAT model). Received: io_dtype={io_dtype!r}, quantization={quantization!r}"
        )
    if keras_model is not None:
        keras_model = _strip_training_wrappers(keras_model)
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))

    optimizations = []
    if qat:
        logger.info("Quantization-aware-trained model detected: converting to int8 with Optimize.DEFAULT")
        optimizations.append(tf.lite.Optimize.DEFAULT)
    elif quantization != "none":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if quantization == "float16" and not qat:
        converter.target_spec.supported_types = [tf.float16]
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "int8" and not qat:
        if representative_data is None:
            raise DataError(
                "quantization='int8' needs representative_data (about 100 typical inputs) to "
                "calibrate activation ranges. Pass e.g. representative_data=x_train[:100]. "
                "Received: representative_data=None"
            )
        input_shape = _input_shape(keras_model)
        samples = _calibration_samples(representative_data, input_shape, num_calibration_samples)
        converter.representative_dataset = lambda: ([s] for s in samples)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # No public switch for it: TFLiteConverter's own (private) per-channel flag.
        converter._experimental_disable_per_channel = not per_channel  # noqa: SLF001
    if sparsity:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if select_tf_ops:
        logger.warning(
            "select_tf_ops=True: TensorFlow (Flex) ops may be used; running them needs the Flex "
            "delegate, which adds several MB to the app binary."
        )
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.optimizations = optimizations
    converter.target_spec.supported_ops = ops
    if io_dtype != "float32":
        converter.inference_input_type = getattr(tf, io_dtype)
        converter.inference_output_type = getattr(tf, io_dtype)

    try:
        # The converter's C++ side prints "fully_quantize: 0, inference_type: 6 ..." and MLIR
        # notes straight to fd 2, past every log level: hidden (replayed if it fails).
        with warnings.catch_warnings(), _tf.quiet_native_stderr():
            # TF warns about input statistics on every full-integer conversion with float I/O or
            # QAT, where none are needed: noise for users.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            content = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise ConversionError(
            f"TFLite conversion failed (quantization={quantization!r}): {_converter_message(exc)}"
        ) from exc
    _check_converted(content, sparsity=sparsity, select_tf_ops=select_tf_ops)
    logger.info(
        "Converted to %d bytes (quantization=%s%s, io=%s)", len(content), quantization, ", QAT" if qat else "", io_dtype
    )
    return content


def _convert_weight_bits(model: Any, quantization: str, representative_data: Any, *, io_dtype: str,
                         sparsity: bool, per_channel: bool, weight_bits: dict[str, int],
                         num_calibration_samples: int) -> bytes:
    """int4/int8 kernels per layer: the float model, quantized by ai-edge-quantizer."""
    if io_dtype != "float32" or sparsity:
        raise InputError(
            "int4 weights come with float32 model inputs/outputs and dense storage. "
            f"Received: io_dtype={io_dtype!r}, sparsity={sparsity!r}"
        )
    if representative_data is None:
        raise DataError(
            f"quantization={quantization!r} needs representative_data (about 100 typical inputs) "
            "to calibrate activation ranges. Received: representative_data=None"
        )
    _, keras_model = _resolve_model(model)
    if keras_model is not None and is_qat_model(keras_model):
        raise InputError(
            "A quantization-aware-trained model converts to int8 only (TF-MOT's 8-bit scheme); "
            "int4 weights are post-training. Convert the model before QAT, or use quantization='int8'."
        )
    float_model = convert(keras_model if keras_model is not None else model)
    int4 = _weight_bits.int4_layers(load_tflite(float_model), all_fully_connected=quantization == "int4_fc",
                                    weight_bits=weight_bits)
    samples = _calibration_samples(representative_data, _input_shape(keras_model), num_calibration_samples)
    content = _weight_bits.quantize_weight_bits(float_model, int4, samples, per_channel=per_channel)
    _check_converted(content, sparsity=False, select_tf_ops=False)
    return content


def _check_converted(content: bytes, *, sparsity: bool, select_tf_ops: bool) -> None:
    try:
        check_runs(content, prefer_tensorflow=select_tf_ops)
    except ConversionError as exc:
        if select_tf_ops and "Select TensorFlow op" in str(exc):
            # pip TensorFlow here has no Flex delegate linked: we cannot run it, so we say
            # it is unverified rather than failing a model an Android app with Flex can run.
            logger.warning(
                "The converted model uses TensorFlow (Flex) ops; it could not be run on this host "
                "(no Flex delegate), so it is NOT verified to run."
            )
            return
        if sparsity:
            raise ConversionError(
                f"The model converted with sparsity=True (EXPERIMENTAL_SPARSITY), but {exc} "
                "XNNPACK cannot run some sparse weight patterns (e.g. 2:4); convert without sparsity=True."
            ) from exc
        raise ConversionError(f"The model converted, but {exc}") from exc


def convert_to_file(model: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Converts like `convert` and writes the .tflite atomically (temp file + rename).

    Args:
        model: as for `convert`.
        path: the .tflite file to write; its directory must exist.
        **kwargs: the keyword arguments of `convert`.

    Returns:
        The written path.

    Raises:
        InputError: the target directory does not exist. Everything `convert` raises;
            on any failure nothing is left at `path` (a previous file there is untouched).

    Example:
        >>> convert_to_file(model, "model_int8.tflite", quantization="dynamic")  # doctest: +SKIP
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(
            f"The output directory does not exist. Received: path={str(path)!r}. Create it first."
        )
    return write_atomic(target, convert(model, **kwargs))


def is_qat_model(model: Any) -> bool:
    """True when the model holds TF-MOT quantization-aware-training layers.

    Example:
        >>> is_qat_model(tfmot.quantization.keras.quantize_model(model))  # doctest: +SKIP
        True
    """
    return any(type(layer).__name__ in _QAT_CLASSES for layer in _all_layers(model))


def load_keras_model(path: str | os.PathLike) -> Any:
    """Loads the model in a `.keras` / `.h5` file or SavedModel directory, not compiled.

    The one loader, with one Keras 3 rule: a file saved by Keras 3 comes back as the Keras 3
    model (its structure checked to be bridgeable, every offending layer named); a consumer
    that needs tf_keras bridges it (`keras3_bridge.to_tf_keras`, which proves the bridge).
    Anything else is loaded by tf_keras, with TF-MOT's pruning, clustering and quantization
    wrappers in scope.

    Raises:
        InputError: the path does not exist.
        ModelFormatError: it exists but is not a Keras model (e.g. a .tflite) or cannot be read.
        UnsupportedModelError: a Keras 3 model the bridge cannot translate.

    Example:
        >>> model = load_keras_model("model.keras")  # doctest: +SKIP
    """
    from converters._keras3_rebuild import check_structure

    from mobile_opt._files import check_not_special

    p = check_not_special(path, what="Model")  # a named pipe would block tf_keras' reader forever
    if not p.exists():
        raise InputError(f"No model at this path. Received: path={str(path)!r}")
    if p.is_file() and p.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise ModelFormatError(
            f"{p} is not a Keras model: expected a .keras or .h5 file or a SavedModel "
            f"directory (a .tflite goes to `mobile-opt analyze`). Received: suffix={p.suffix!r}."
        )
    if saved_by_keras3(p):
        model = load_keras3_file(p)
        check_structure(model)
        return model
    keras = _tf.keras()
    tfmot = _tf.tfmot()
    with contextlib.ExitStack() as stack:
        stack.enter_context(tfmot.quantization.keras.quantize_scope())
        stack.enter_context(tfmot.sparsity.keras.prune_scope())
        stack.enter_context(tfmot.clustering.keras.cluster_scope())
        try:
            return keras.models.load_model(str(p), compile=False)
        # OpError: TF's own readers (e.g. InvalidArgumentError for a .keras zip with no model in it).
        except (OSError, ValueError, TypeError, ImportError, KeyError, _tf.tf().errors.OpError) as exc:
            raise ModelFormatError(
                f"Cannot load a tf_keras model from {str(p)!r}: {_converter_message(exc)}. "
                "Expected a .keras/.h5 file or a SavedModel directory saved with tf_keras or Keras 3."
            ) from exc


def _resolve_model(model: Any) -> tuple[Path | None, Any]:
    """(SavedModel dir, None) for a SavedModel without Keras metadata, else (None, keras model)."""
    keras = _tf.keras()
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if not p.exists():
            raise InputError(f"No model at this path. Received: model={str(model)!r}")
        if p.is_dir() and not (p / "keras_metadata.pb").exists():
            if not (p / "saved_model.pb").exists():
                raise ModelFormatError(
                    f"{str(p)!r} is a directory but not a SavedModel (no saved_model.pb)."
                )
            return p, None
        model = load_keras_model(p)
    if isinstance(model, keras.Model):
        return None, model
    if is_keras3_model(model):
        return None, to_tf_keras(model)[0]
    raise UnsupportedModelError(
        "Expected a tf_keras or Keras 3 model, or a path to a .keras/.h5 file or SavedModel directory. "
        f"Received: model of type {type(model).__name__}"
    )


def _all_layers(model: Any) -> Iterable[Any]:
    # `submodules` walks nested models and wrapped layers too.
    return itertools.chain([model], getattr(model, "submodules", ()))


def _strip_training_wrappers(model: Any) -> Any:
    names = {type(layer).__name__ for layer in _all_layers(model)}
    if names & (_PRUNE_CLASSES | _CLUSTER_CLASSES):
        tfmot = _tf.tfmot()
        if names & _PRUNE_CLASSES:
            logger.info("Stripping pruning wrappers before conversion (strip_pruning)")
            model = tfmot.sparsity.keras.strip_pruning(model)
        if names & _CLUSTER_CLASSES:
            logger.info("Stripping clustering wrappers before conversion (strip_clustering)")
            model = tfmot.clustering.keras.strip_clustering(model)
    return model


def _input_shape(keras_model: Any) -> tuple | None:
    if keras_model is None or not getattr(keras_model, "inputs", None):
        return None
    if len(keras_model.inputs) != 1:
        raise UnsupportedModelError(
            "int8 calibration supports single-input models only. "
            f"Received: a model with {len(keras_model.inputs)} inputs"
        )
    return tuple(keras_model.inputs[0].shape)


def _calibration_samples(data: Any, input_shape: tuple | None, limit: int) -> list[np.ndarray]:
    """Up to `limit` float32 samples shaped (1, *input_shape[1:]), checked against the model."""
    tf = _tf.tf()
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (int, float)):
        data = data[0]  # (x, y)
    if isinstance(data, np.ndarray) or (isinstance(data, list) and data and not callable(data[0])):
        stream = iter(np.asarray(data))
        batched = False
    elif isinstance(data, tf.data.Dataset):
        stream = iter(data.as_numpy_iterator())
        batched = None  # decided from each element's rank
    elif callable(data):
        stream = iter(data())
        batched = None
    elif hasattr(data, "__iter__"):
        stream = iter(data)
        batched = None
    else:
        raise DataError(
            "representative_data must be an array, (x, y), a tf.data.Dataset or a generator. "
            f"Received: representative_data of type {type(data).__name__}"
        )
    want = None if input_shape is None else input_shape[1:]
    samples: list[np.ndarray] = []
    for element in stream:
        if isinstance(element, (tuple, list)):
            element = element[0]  # (x, y) or the converter's [x] convention
        array = np.asarray(element, dtype=np.float32)
        if batched is None and want is not None and array.ndim == len(want) + 1:
            rows = list(array)
        elif batched is None and want is None and array.ndim >= 2 and array.shape[0] != 1:
            rows = list(array)
        else:
            rows = [array[0] if (want is not None and array.ndim == len(want) + 1) else array]
        for row in rows:
            if want is not None and (
                row.ndim != len(want) or any(w is not None and w != r for w, r in zip(want, row.shape))
            ):
                raise DataError(
                    "A representative sample does not match the model input. Expected per-sample "
                    f"shape {tuple(want)}. Received: a sample of shape {row.shape}"
                )
            samples.append(row[np.newaxis])
            if len(samples) >= limit:
                return samples
    if not samples:
        raise DataError(
            "representative_data yielded no samples; int8 calibration needs ~100 typical inputs. "
            "Received: an empty dataset"
        )
    return samples


def _converter_message(exc: BaseException) -> str:
    """The converter's own message, boiled down to its first meaningful lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    chosen = (errors or lines)[:4]
    text = " | ".join(chosen) if chosen else type(exc).__name__
    return text[:1500]
