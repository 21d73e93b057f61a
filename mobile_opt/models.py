"""Loading, saving and checking the Keras models mobile-opt accepts.

TF-MOT works on Keras 2 (`tf_keras`) Sequential and Functional models only; a
Keras 3 model is bridged to one (`converters.keras3_bridge`), and a subclassed
model is refused here, up front, with the fix spelled out, instead of failing
deep inside TF-MOT.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from converters.conversion import load_keras_model as load_model  # the one loader, public here too
from mobile_opt import _tf
from mobile_opt.errors import InputError, UnsupportedModelError

__all__ = ["bridge_model", "check_model", "load_model", "save_model", "saved_model_format"]

logger = logging.getLogger(__name__)

_KERAS3_FIX = (
    "TF-MOT needs Keras 2 (tf_keras); pass the Keras 3 model to Pipeline.run, auto_optimize or "
    "converters.convert, which bridge it (`bridge_model`), or call `bridge_model(model)` first."
)


def bridge_model(model, sample=None):
    """The tf_keras model to optimize, and the proof of the bridge when `model` is Keras 3.

    A Keras 3 Sequential/functional model is rebuilt in tf_keras and proved to compute
    the same outputs (to 1e-5) on `sample` (default: random inputs); a tf_keras model is
    checked and returned as is, with proof None.

    Raises:
        UnsupportedModelError: what `check_model` refuses, or a Keras 3 model with layers
            the bridge cannot translate (each one named).
    """
    from converters.keras3_bridge import is_keras3_model, to_tf_keras

    if is_keras3_model(model):
        tf_model, proof = to_tf_keras(model, sample)
        check_model(tf_model)
        return tf_model, proof
    check_model(model)
    return model, None


def check_model(model) -> None:
    """Raises `UnsupportedModelError` unless `model` is a tf_keras Sequential/Functional model.

    Args:
        model: the object to check.

    Raises:
        UnsupportedModelError: a Keras 3 model, a subclassed model, or not a model at all.

    Example:
        >>> import tf_keras as keras
        >>> check_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    """
    keras = _tf.keras()
    module = type(model).__module__ or ""
    if not isinstance(model, keras.Model):
        if module.startswith("keras") and not module.startswith("keras.src.legacy"):
            raise UnsupportedModelError(
                f"Received a Keras 3 model ({type(model).__module__}.{type(model).__name__}). "
                + _KERAS3_FIX
            )
        raise UnsupportedModelError(
            f"Expected a tf_keras.Model. Received: model of type {type(model).__name__}."
        )
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(
            f"Model {model.name!r} is a subclassed model ({type(model).__name__}); TF-MOT can "
            "only optimize Sequential and Functional models. Rebuild it with "
            "`keras.Sequential([...])` or the functional API (`keras.Model(inputs, outputs)`)."
        )
    if not model.built:
        raise UnsupportedModelError(
            f"Model {model.name!r} is not built; give its first layer an input shape "
            "(e.g. `keras.Input((28, 28))`) or call it once on data."
        )


def saved_model_format(path: str | Path) -> str:
    """The format `save_model` writes at `path`: "keras", "h5", or "tf" (a SavedModel directory).

    Raises:
        InputError: any other suffix (a SavedModel directory named `out.txt` helps no one).
    """
    suffix = Path(path).suffix
    formats = {".keras": "keras", ".h5": "h5", "": "tf"}
    if suffix not in formats:
        raise InputError(
            "A model is saved as .keras, .h5, or a SavedModel directory (a path without a suffix). "
            f"Received: path={str(path)!r}. Rename it, e.g. to {Path(path).with_suffix('.keras').name!r}."
        )
    return formats[suffix]


def save_model(model, path: str | Path) -> Path:
    """Saves `model` atomically: nothing half-written is left at `path` on failure.

    The format follows the suffix (`saved_model_format`): `.keras`, `.h5`, or a
    SavedModel directory when there is no suffix.

    Returns:
        The path written.

    Raises:
        InputError: the suffix is none of those.
    """
    path = Path(path)
    suffix = "" if saved_model_format(path) == "tf" else path.suffix
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".mobile-opt-", dir=path.parent))
    tmp = tmp_dir / f"model{suffix}"
    from converters.keras3_bridge import is_keras3_model

    try:
        if suffix:
            with warnings.catch_warnings():  # the caller chose the suffix: TF's nudge away from .h5 is noise
                warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
                model.save(tmp)
        elif is_keras3_model(model):
            model.export(str(tmp), verbose=False)  # Keras 3 writes SavedModels with export()
        else:
            model.save(tmp, save_format="tf")
        if path.is_dir() and not suffix:
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("saved %s", path)
    return path
