"""Keras 3 model <-> tf_keras model, proved to be the same function.

TF-MOT only works on Keras 2 (`tf_keras`) models, and most users now write Keras 3.
`to_tf_keras` rebuilds a Keras 3 Sequential/Functional model in tf_keras from its
config (Keras 3's `get_config()` format: `batch_shape`, `DTypePolicy` dicts,
`{"module", "class_name", "config"}` initializers, `inbound_nodes` with
`__keras_tensor__` arguments), copies the weights layer by layer, and then runs
both models on the same inputs: the outputs must agree to `tolerance` (1e-5
absolute) or nothing is returned. `to_keras3` goes back the same way for a
compressed tf_keras model and proves it again.

What differs between the two and is translated here (checked numerically by
tests/converters/test_keras3_bridge.py):
- Keras 3 `hard_sigmoid` is relu6(x + 3) / 6; tf_keras' is clip(0.2x + 0.5): a
  different function under the same name. `hard_sigmoid`, `hard_silu` and
  `hard_swish` are rebuilt from tf_keras layers (Rescaling(1/6, 0.5) -> ReLU(max 1)
  [-> Multiply with x]), which TFLite and TF-MOT understand.
- Settings tf_keras has no counterpart for (`quantization_config`, `lora_rank`,
  `rms_scaling`, `synchronized`, `optional`, ...) are dropped only at their neutral
  value; any other value is refused by name, since dropping it would change the model.

Layering: this module imports only the leaf modules `mobile_opt._tf` / `errors`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from converters._keras3_rebuild import SUPPORTED_LAYERS, check_structure, copy_weights, rebuild
from mobile_opt.errors import ModelFormatError, UnsupportedModelError

__all__ = ["BridgeProof", "SUPPORTED_LAYERS", "is_keras3_model", "load_keras3_file", "proof_sentence", "saved_by_keras3",
           "to_keras3", "to_tf_keras"]

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5

@dataclasses.dataclass(frozen=True)
class BridgeProof:
    """Evidence that two models are the same function.

    Attributes:
        direction: "keras3->tf_keras" or "tf_keras->keras3".
        max_abs_diff: largest absolute difference of the outputs on `samples` inputs.
        tolerance: the bound it had to stay within (absolute).
        inputs: "user data" or "random normal" (or "random integers" for an Embedding input).
        samples: how many inputs were compared.
        input_shape: the model's per-sample input shape (batch dimension first, as None).
        layers: layers in the source model.
        seconds: time to rebuild, copy the weights and compare.
    """

    direction: str
    max_abs_diff: float
    tolerance: float
    inputs: str
    samples: int
    input_shape: tuple
    layers: int
    seconds: float

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data


def proof_sentence(proof: dict) -> str:
    """A `BridgeProof.to_dict()` in one line, for tables and reports."""
    direction = "Keras 3 model bridged to tf_keras" if proof["direction"] == "keras3->tf_keras" else \
        "tf_keras model carried back to Keras 3"
    return (f"{direction} ({proof['layers']} layers): outputs equal to {proof['max_abs_diff']:.1e} "
            f"(tolerance {proof['tolerance']:g}) on {proof['samples']} {proof['inputs']} inputs.")


def is_keras3_model(obj: Any) -> bool:
    """True for a Keras 3 (`keras` package >= 3) model object, subclassed ones included."""
    keras = sys.modules.get("keras")  # a Keras 3 model exists only once the user imported keras
    return keras is not None and isinstance(obj, getattr(keras, "Model", ()))


def saved_by_keras3(path: str | os.PathLike) -> bool:
    """True when `path` is a .keras or .h5 file whose metadata says Keras 3 wrote it.

    A .keras file is a zip whose `metadata.json` holds `keras_version`; an .h5 file keeps
    it as the root attribute `keras_version` (both Keras write both, with their own version).

    Raises:
        ModelFormatError: a zip whose `metadata.json` cannot be read or is not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        return False
    version = ""
    if zipfile.is_zipfile(p):
        version = str(_keras_metadata(p).get("keras_version", ""))
    elif p.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with contextlib.suppress(OSError), h5py.File(p, "r") as handle:
            raw = handle.attrs.get("keras_version", b"")
            version = raw.decode() if isinstance(raw, bytes) else str(raw)
    return version.split(".")[0] == "3"


def _keras_metadata(path: Path) -> dict:
    """The `metadata.json` of a .keras zip ({} when there is none)."""
    fix = "Save the model again with `model.save(path)` (a .keras file is the zip Keras writes)."
    try:
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" not in archive.namelist():
                return {}
            metadata = json.loads(archive.read("metadata.json"))
    except (OSError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{str(path)!r} is not a readable .keras file: its metadata.json cannot be read "
                               f"as JSON ({exc}). {fix}") from exc
    if not isinstance(metadata, dict):
        raise ModelFormatError(f"{str(path)!r} is not a readable .keras file: its metadata.json holds a "
                               f"{type(metadata).__name__}, not a JSON object. {fix}")
    return metadata


def load_keras3_file(path: str | os.PathLike) -> Any:
    """Loads a model file saved by Keras 3 with Keras 3 itself (not compiled).

    Raises:
        ModelFormatError: Keras 3 cannot read it (e.g. a custom layer it does not know).
    """
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, KeyError... for unreadable files
        raise ModelFormatError(
            f"{str(path)!r} was saved by Keras 3 but Keras 3 cannot load it: {exc}. A custom layer must be "
            "registered (`@keras.saving.register_keras_serializable()`), and is then still not bridgeable."
        ) from exc


def to_tf_keras(model: Any, sample: Any = None, *, tolerance: float = TOLERANCE) -> tuple[Any, BridgeProof]:
    """Rebuilds a Keras 3 Sequential/Functional model in tf_keras and proves it equal.

    Args:
        model: a built Keras 3 `Sequential` or functional `keras.Model`.
        sample: inputs to compare on (an array with a batch axis, e.g. a batch of the
            user's data); default: 8 random inputs of the model's input shape.
        tolerance: largest absolute output difference accepted (default 1e-5).

    Returns:
        `(tf_keras_model, proof)`; layer names are kept.

    Raises:
        UnsupportedModelError: a subclassed model, or layers/settings outside the
            supported set (each one is named), or outputs that differ by more than
            `tolerance`.
    """
    started = time.perf_counter()
    check_structure(model)
    tf_model = rebuild(model)
    copy_weights(model, tf_model)
    proof = _prove(model, tf_model, sample, tolerance, "keras3->tf_keras", started)
    logger.info("bridged Keras 3 model %r to tf_keras: max |diff| %.2e on %d %s input(s)",
                model.name, proof.max_abs_diff, proof.samples, proof.inputs)
    return tf_model, proof


def to_keras3(tf_model: Any, like: Any, sample: Any = None, *, tolerance: float = TOLERANCE) -> tuple[Any, BridgeProof]:
    """A Keras 3 model computing what `tf_model` (a stripped tf_keras model) computes.

    When `tf_model` keeps the layers of `like` (the user's Keras 3 model: pruning and
    clustering change weights only), `like` is cloned and given `tf_model`'s weights, so
    the user's own structure comes back. Otherwise (low-rank factorisation adds layers)
    Keras 3 rebuilds it from the tf_keras config with its own legacy-format reader.

    Raises:
        UnsupportedModelError: the model still holds TF-MOT wrappers, or Keras 3 cannot
            rebuild it, or the outputs differ by more than `tolerance`.
    """
    import keras

    started = time.perf_counter()
    wrapped = sorted({type(l).__name__ for l in tf_model.submodules if "Quantize" in type(l).__name__
                      or type(l).__name__ in ("PruneLowMagnitude", "ClusterWeights")})
    if wrapped:
        raise UnsupportedModelError(
            f"The model still holds TF-MOT training wrappers ({', '.join(wrapped)}), which have no Keras 3 "
            "form. A quantization-aware model ships as its .tflite (result.tflite); strip pruning/"
            "clustering first (result.model is already stripped)."
        )
    weights = {l.name: l.get_weights() for l in tf_model.layers if l.weights}
    target = {l.name: [w.shape for w in l.get_weights()] for l in like.layers if l.weights}
    same = target.keys() == weights.keys() and all(
        [tuple(s) for s in target[n]] == [w.shape for w in weights[n]] for n in target)
    if same:
        k3 = keras.models.clone_model(like)
        for layer in k3.layers:
            if layer.name in weights:
                layer.set_weights(weights[layer.name])
    else:
        # Keras 3 reads Keras 2 .h5 files (its legacy_h5_format), architecture and weights.
        with tempfile.TemporaryDirectory(prefix="mobile-opt-bridge-") as tmp:
            path = Path(tmp) / "model.h5"
            try:
                with warnings.catch_warnings():  # "HDF5 is legacy": this file lives for one load
                    warnings.simplefilter("ignore")
                    tf_model.save(path)
                k3 = keras.saving.load_model(path, compile=False)
            except Exception as exc:  # Keras raises ValueError, TypeError, KeyError...
                raise UnsupportedModelError(
                    f"Keras 3 cannot rebuild the compressed model {tf_model.name!r} from tf_keras: "
                    f"{str(exc)[:300]}. Use result.model (tf_keras) or the .tflite."
                ) from exc
    proof = _prove(tf_model, k3, sample, tolerance, "tf_keras->keras3", started)
    return k3, proof


# ---------------------------------------------------------------------- proof


def _inputs_for(model: Any, sample: Any) -> tuple[list[np.ndarray], str]:
    if sample is not None:
        arrays = list(sample) if isinstance(sample, (list, tuple)) else [sample]
        return [np.asarray(a) for a in arrays], "user data"
    rng = np.random.default_rng(0)
    arrays, kind = [], "random normal"
    embedding_inputs = _embedding_inputs(model)
    for i, tensor in enumerate(model.inputs):
        shape = tuple(8 if d is None else int(d) for d in (None, *tuple(tensor.shape)[1:]))
        if i in embedding_inputs or "int" in str(tensor.dtype):
            dtype = np.float32 if "float" in str(tensor.dtype) else np.int32
            arrays.append(rng.integers(0, embedding_inputs.get(i, 2), size=shape).astype(dtype))
            kind = "random integers"
        else:
            arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays, kind


def _embedding_inputs(model: Any) -> dict[int, int]:
    """Index of each model input that feeds an Embedding directly -> its vocabulary size."""
    found = {}
    for layer in model.layers:
        if type(layer).__name__ != "Embedding":
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            for t in getattr(node, "input_tensors", []) or []:
                for i, inp in enumerate(model.inputs):
                    if t is inp:
                        found[i] = int(layer.input_dim)
        if not found and model.inputs and model.layers[0] is layer:  # Sequential
            found[0] = int(layer.input_dim)
    return found


def _prove(source: Any, target: Any, sample: Any, tolerance: float, direction: str, started: float) -> BridgeProof:
    arrays, kind = _inputs_for(source, sample)
    feed = arrays[0] if len(arrays) == 1 else arrays
    with warnings.catch_warnings():  # Keras 3 notes a one-input model read from .h5 expects a list
        warnings.simplefilter("ignore")
        a = _as_list(source(feed, training=False))
        b = _as_list(target(feed, training=False))
    diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
               for x, y in zip(a, b))
    if len(a) != len(b) or not diff <= tolerance:
        raise UnsupportedModelError(
            f"The rebuilt model ({direction}) is not the same function as {source.name!r}: outputs differ by "
            f"up to {diff:.3g} on {len(arrays[0])} {kind} input(s), over the {tolerance:g} tolerance. Nothing was "
            "optimized. Please report this model's config; meanwhile build it with `import tf_keras as keras`."
        )
    return BridgeProof(direction, diff, tolerance, kind, len(arrays[0]),
                       (None, *tuple(source.inputs[0].shape)[1:]), len(source.layers),
                       time.perf_counter() - started)


def _as_list(value: Any) -> list:
    return [np.asarray(v) for v in value] if isinstance(value, (list, tuple)) else [np.asarray(value)]
