"""Accuracy of a .tflite model under LiteRT, beside the Keras model it came from.

Every conversion has an accuracy cost; `evaluate` measures it on the same data:
int8/uint8 inputs are quantized and outputs dequantized with the tensors' own
scale/zero_point, and batches run by resizing the input tensor (one sample at a time
when the model's batch size is fixed).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mobile_opt._tf import quiet_native_stderr
from mobile_opt.errors import ConversionError, DataError, InputError

from converters.interpreter import make_interpreter

__all__ = ["EvaluationResult", "evaluate", "paired_drop"]

logger = logging.getLogger(__name__)

_METRICS = ("accuracy",)


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """Accuracy of a .tflite model, and of its Keras source when one was given.

    Attributes:
        accuracy: fraction (0..1) of samples the .tflite model classifies correctly.
        keras_accuracy: the same for the Keras model, or None when none was given.
        accuracy_drop_pp: (keras_accuracy - accuracy) in percentage points, or None.
        n_samples: samples evaluated.
        interpreter: the LiteRT runtime used ("ai_edge_litert", "tflite_runtime", "tensorflow").
        input_dtype: dtype of the model input ("float32", "int8", "uint8", ...).
        output_dtype: dtype of the model output.
        correct: per sample, whether the .tflite model got it right (in data order), kept
            only with `per_sample=True`; for paired comparisons (`paired_drop`), not in to_dict.
    """

    accuracy: float
    keras_accuracy: float | None
    accuracy_drop_pp: float | None
    n_samples: int
    interpreter: str
    input_dtype: str
    output_dtype: str
    correct: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the attribute names as keys (without `correct`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "correct"}


def paired_drop(baseline_correct: np.ndarray, candidate_correct: np.ndarray) -> tuple[float, float]:
    """`(drop_pp, standard_error_pp)` of baseline minus candidate accuracy on the same samples.

    Paired: the error comes from the samples the two models disagree on, so it is far smaller
    than that of two independent accuracies (a 0.5 pp budget on 5,000 samples is ~2 s.e.).
    """
    base, cand = np.asarray(baseline_correct, bool), np.asarray(candidate_correct, bool)
    if base.shape != cand.shape or base.ndim != 1 or len(base) < 2:
        raise InputError("paired_drop needs two equally long per-sample vectors of at least 2 samples. "
                         f"Received: shapes {base.shape} and {cand.shape}")
    diff = base.astype(np.float64) - cand.astype(np.float64)
    return float(diff.mean() * 100), float(diff.std(ddof=1) / np.sqrt(len(diff)) * 100)


def evaluate(
    tflite: bytes | str | Path,
    data: Any,
    *,
    keras_model: Any = None,
    batch_size: int = 256,
    metric: str = "accuracy",
    per_sample: bool = False,
) -> EvaluationResult:
    """Runs a .tflite classifier over labelled data with LiteRT and measures its accuracy.

    Args:
        tflite: .tflite bytes or path.
        data: `(x, y)` arrays, or a `tf.data.Dataset` yielding `(x, y)` (batched or not).
            Labels are class indices or one-hot rows.
        keras_model: the Keras model to compare with on the same data (default None).
        batch_size: samples per interpreter call (default 256).
        metric: "accuracy" (default; top-1, argmax of the output; a single-unit output is
            read as a probability thresholded at 0.5).
        per_sample: keep each sample's right/wrong in `correct` (default False).

    Returns:
        EvaluationResult.

    Raises:
        InputError: a bad argument.
        DataError: data empty, unlabelled, or not shaped like the model input.
        ConversionError: LiteRT cannot run the model (e.g. XNNPACK fails to prepare it).

    Example:
        >>> result = evaluate(tflite_bytes, (x_test, y_test), keras_model=model)  # doctest: +SKIP
        >>> result.accuracy_drop_pp  # doctest: +SKIP
        0.3
    """
    if metric not in _METRICS:
        raise InputError(f"Expected metric in {_METRICS}. Received: metric={metric!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    interpreter = make_interpreter(tflite)
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(
            "evaluate() handles single-input, single-output classifiers. "
            f"Received: a model with {len(inputs)} inputs and {len(outputs)} outputs"
        )
    in_detail, out_detail = inputs[0], outputs[0]
    signature = in_detail.get("shape_signature", in_detail["shape"])
    dynamic_batch = len(signature) > 0 and signature[0] == -1
    fixed_batch = int(in_detail["shape"][0]) if len(in_detail["shape"]) else 1
    allocated_batch = None
    correct = keras_correct = total = 0
    hits = []
    for x, y in _batches(data, batch_size):
        if x.ndim == len(in_detail["shape"]) - 1:  # an unbatched dataset yields single samples
            x, y = x[np.newaxis], y[np.newaxis]
        if x.shape[1:] != tuple(in_detail["shape"][1:]):
            raise DataError(
                "The data does not match the model input. Expected per-sample shape "
                f"{tuple(int(d) for d in in_detail['shape'][1:])}. Received: x of shape {x.shape}"
            )
        labels = _labels(y, len(x))
        if dynamic_batch:
            chunks = [x]
        else:
            if len(x) % fixed_batch:
                raise DataError(
                    f"The model has a fixed batch size of {fixed_batch}; the number of samples "
                    f"must be a multiple of it. Received: {len(x)} samples in a batch"
                )
            chunks = [x[i : i + fixed_batch] for i in range(0, len(x), fixed_batch)]
        predictions = []
        for chunk in chunks:
            if dynamic_batch and allocated_batch != len(chunk):
                interpreter.resize_tensor_input(in_detail["index"], [len(chunk), *in_detail["shape"][1:]])
                allocated_batch = None
            if allocated_batch is None:
                _allocate(interpreter)
                allocated_batch = len(chunk)
            interpreter.set_tensor(in_detail["index"], _quantize(chunk, in_detail))
            try:
                interpreter.invoke()
            except RuntimeError as exc:
                raise ConversionError(
                    f"LiteRT ({interpreter.runtime_name}) failed to run the model: {exc}"
                ) from exc
            predictions.append(_dequantize(interpreter.get_tensor(out_detail["index"]), out_detail))
        right = _classes(np.concatenate(predictions)) == labels
        correct += int(np.sum(right))
        if per_sample:
            hits.append(right)
        if keras_model is not None:
            keras_out = np.asarray(keras_model(x, training=False))
            keras_correct += int(np.sum(_classes(keras_out) == labels))
        total += len(x)
    if total == 0:
        raise DataError("evaluate() got no samples. Received: an empty dataset")
    accuracy = correct / total
    keras_accuracy = keras_correct / total if keras_model is not None else None
    drop = None if keras_accuracy is None else round((keras_accuracy - accuracy) * 100, 4)
    logger.info("Evaluated %d samples: tflite %.4f, keras %s", total, accuracy, keras_accuracy)
    return EvaluationResult(
        accuracy=accuracy,
        keras_accuracy=keras_accuracy,
        accuracy_drop_pp=drop,
        n_samples=total,
        interpreter=interpreter.runtime_name,
        input_dtype=np.dtype(in_detail["dtype"]).name,
        output_dtype=np.dtype(out_detail["dtype"]).name,
        correct=np.concatenate(hits) if per_sample else None,
    )


def _allocate(interpreter: Any) -> None:
    try:
        with quiet_native_stderr():
            interpreter.allocate_tensors()
    except RuntimeError as exc:
        raise ConversionError(
            f"LiteRT ({interpreter.runtime_name}) cannot prepare the model: {exc}. "
            "This model must not be shipped as working."
        ) from exc


def _batches(data: Any, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise DataError(
                f"x and y must have the same number of samples. Received: len(x)={len(x)}, len(y)={len(y)}"
            )
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    from mobile_opt import _tf

    tf = _tf.tf()
    if not isinstance(data, tf.data.Dataset):
        raise DataError(
            "data must be (x, y) arrays or a tf.data.Dataset of (x, y). "
            f"Received: data of type {type(data).__name__}"
        )
    for element in data.as_numpy_iterator():
        if not isinstance(element, tuple) or len(element) < 2:
            raise DataError("The dataset must yield (x, y) pairs. Received: an element without labels")
        yield np.asarray(element[0]), np.asarray(element[1])


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    labels = y.reshape(n)
    return labels.astype(np.int64)


def _classes(out: np.ndarray) -> np.ndarray:
    out = out.reshape(len(out), -1)
    if out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.int64)
    return np.argmax(out, axis=1)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        scale, zero_point = detail["quantization"]
        if scale == 0:
            raise DataError(f"The model input is {dtype.name} without quantization parameters; cannot quantize data.")
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float32) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(out: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind in "iu":
        scale, zero_point = detail["quantization"]
        if scale:
            return (out.astype(np.float32) - zero_point) * scale
    return out.astype(np.float32)
