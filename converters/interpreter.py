"""A LiteRT interpreter from whichever runtime is installed, and a check that a model runs.

Import order: `ai_edge_litert.interpreter` (the maintained LiteRT wheel), then
`tflite_runtime.interpreter` (its older name), then `tf.lite.Interpreter`
(full TensorFlow; the only one with the Flex delegate for SELECT_TF_OPS models).
The one used is logged, and named in results (`runtime_name`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mobile_opt._tf import quiet_native_stderr
from mobile_opt.errors import ConversionError, DependencyError, InputError

__all__ = ["make_interpreter", "check_runs"]

logger = logging.getLogger(__name__)

_RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


def _interpreter_class(prefer_tensorflow: bool) -> tuple[type, str]:
    order = ("tensorflow",) if prefer_tensorflow else _RUNTIMES
    for name in order:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter
            elif name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]
            else:
                from mobile_opt import _tf

                Interpreter = _tf.tf().lite.Interpreter
        except ImportError:
            logger.debug("LiteRT runtime %s is not installed", name)
            continue
        return Interpreter, name
    raise DependencyError(
        "No LiteRT interpreter is installed (tried ai_edge_litert, tflite_runtime, tensorflow). "
        "Install one: pip install ai-edge-litert"
    )


def make_interpreter(
    model: bytes | str | Path,
    num_threads: int | None = None,
    *,
    prefer_tensorflow: bool = False,
) -> Any:
    """Creates a LiteRT interpreter for a .tflite model (tensors not yet allocated).

    Args:
        model: the .tflite flatbuffer as bytes, or a path to a .tflite file.
        num_threads: CPU threads for the interpreter; None (default) lets LiteRT choose.
        prefer_tensorflow: use `tf.lite.Interpreter` (default False): needed for models
            with SELECT_TF_OPS (Flex) ops, which only full TensorFlow can run.

    Returns:
        The interpreter; its runtime's name is in the attribute `runtime_name`
        ("ai_edge_litert", "tflite_runtime" or "tensorflow").

    Raises:
        InputError: `model` is not bytes or an existing file, or num_threads < 1.
        DependencyError: no LiteRT runtime is installed.
        ConversionError: the runtime refuses the model (the runtime's message is kept).

    Example:
        >>> interp = make_interpreter("model.tflite", num_threads=1)  # doctest: +SKIP
        >>> interp.allocate_tensors()  # doctest: +SKIP
    """
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise InputError(f"num_threads must be a positive int or None. Received: num_threads={num_threads!r}")
    if isinstance(model, (bytes, bytearray, memoryview)):
        kwargs = {"model_content": bytes(model)}
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise InputError(f"Expected a .tflite file. Received: model={str(model)!r} (not a file).")
        kwargs = {"model_path": str(path)}
    else:
        raise InputError(
            f"Expected the .tflite model as bytes or a path. Received: model of type {type(model).__name__}"
        )
    cls, name = _interpreter_class(prefer_tensorflow)
    logger.info("Using the %s LiteRT interpreter", name)
    try:
        interpreter = cls(num_threads=num_threads, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(f"LiteRT ({name}) cannot load the model: {_first_lines(str(exc))}") from exc
    interpreter.runtime_name = name
    return interpreter


def check_runs(model: bytes | str | Path, *, prefer_tensorflow: bool = False) -> str:
    """Allocates tensors and runs the model once on zeros, to prove LiteRT can execute it.

    A model can convert but fail to run, e.g. 2:4-sparse weights with EXPERIMENTAL_SPARSITY
    make XNNPACK fail to prepare CONV_2D; such a model must never be shipped as working.

    Args:
        model: .tflite bytes or path.
        prefer_tensorflow: run with `tf.lite.Interpreter` (default False; needed for Flex ops).

    Returns:
        The name of the runtime that ran it.

    Raises:
        ConversionError: LiteRT cannot prepare or invoke the model (its message is kept).

    Example:
        >>> check_runs(open("model.tflite", "rb").read())  # doctest: +SKIP
        'ai_edge_litert'
    """
    interpreter = make_interpreter(model, num_threads=1, prefer_tensorflow=prefer_tensorflow)
    name = interpreter.runtime_name
    try:
        with quiet_native_stderr():
            interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        interpreter.invoke()
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(
            f"LiteRT ({name}) cannot run this model: {_first_lines(str(exc))}. "
            "Do not ship it as working."
        ) from exc
    return name


def _first_lines(message: str, limit: int = 4) -> str:
    """The first meaningful lines of a runtime/converter message (they can run to pages)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " | ".join(lines[:limit]).rstrip(".") if lines else "(no message)"
