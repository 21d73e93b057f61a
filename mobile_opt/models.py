"""Loading, saving and checking the Keras models mobile-opt accepts.

TF-MOT works on Keras 2 (`tf_keras`) Sequential and Functional models only; a
Keras 3 or subclassed model is refused here, up front, with the fix spelled out,
instead of failing deep inside TF-MOT.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from mobile_opt import _tf
from mobile_opt.errors import InputError, ModelFormatError, UnsupportedModelError

__all__ = ["check_model", "load_model", "save_model", "saved_model_format"]

logger = logging.getLogger(__name__)

_KERAS3_FIX = (
    "mobile-opt uses TF-MOT, which needs Keras 2. Build the model with "
    "`import tf_keras as keras` (pip package tf-keras), or set TF_USE_LEGACY_KERAS=1 "
    "before importing TensorFlow and use `tf.keras`; a saved Keras 3 model can be "
    "rebuilt from its code and its weights loaded with `model.load_weights(...)`."
)


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


def load_model(path: str | Path):
    """Loads a tf_keras model from `.keras`, `.h5` or a SavedModel directory.

    Args:
        path: the model file or directory.

    Returns:
        The model, not compiled (TF-MOT wrappers in the file are understood).

    Raises:
        InputError: the path does not exist.
        ModelFormatError: it is not a model tf_keras can read.
        UnsupportedModelError: the loaded model cannot be optimized.
    """
    import converters

    path = Path(path)
    if path.is_file() and path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelFormatError(
            f"{path} is not a Keras model: expected a .keras or .h5 file or a SavedModel "
            f"directory (a .tflite goes to `mobile-opt analyze`). Received: suffix={path.suffix!r}."
        )
    model = converters.load_keras_model(path)
    check_model(model)
    return model


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
    try:
        if suffix:
            model.save(tmp)
        else:
            model.save(tmp, save_format="tf")
        if path.is_dir() and not suffix:
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("saved %s", path)
    return path
