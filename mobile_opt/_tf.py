"""Late, quiet import of TensorFlow, tf_keras and TF-MOT.

TF-MOT 0.8.1 needs Keras 2, so `TF_USE_LEGACY_KERAS=1` must be set before
TensorFlow is first imported; doing it here means users need not. TensorFlow's
C++ and absl logs are silenced unless the user set `TF_CPP_MIN_LOG_LEVEL`.
Importing is deferred so that `mobile-opt devices` or `analyze` start fast.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# 3, not 2: benign C++ "errors" (e.g. oneDNN's AVX-512 fallback notice) would still print;
# real failures reach users as Python exceptions either way.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    """Hides what native code (TensorFlow, LiteRT) writes straight to stderr.

    Those lines (oneDNN, missing CUDA drivers, "Created TensorFlow Lite XNNPACK
    delegate") ignore TF_CPP_MIN_LOG_LEVEL, so the only way to spare users
    from them is to point fd 2 elsewhere meanwhile. What was written is
    replayed if the block raises, so no error text is lost. Disabled when the
    user sets TF_CPP_MIN_LOG_LEVEL=0.
    """
    enabled = enabled and os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "0"
    if not enabled:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@functools.cache
def tf():
    """Returns the `tensorflow` module, imported quietly with legacy Keras."""
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        # TensorFlow was told otherwise by the user's environment; TF-MOT would
        # then refuse our tf_keras models with an obscure error.
        logging.getLogger(__name__).warning(
            "TF_USE_LEGACY_KERAS=%s; mobile-opt needs Keras 2 (tf_keras) for TF-MOT.",
            os.environ.get("TF_USE_LEGACY_KERAS"),
        )
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "0"
    with quiet_native_stderr(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf_module

        # Probing devices now makes CUDA's "failed call to cuInit" fire while silenced.
        tf_module.config.list_physical_devices("GPU")
    if quiet:
        tf_module.get_logger().setLevel(logging.ERROR)
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:  # absl ships with TensorFlow; guard only against odd installs
            pass
    return tf_module


@functools.cache
def keras():
    """Returns `tf_keras` (Keras 2), the Keras TF-MOT works with."""
    tf()
    import tf_keras

    return tf_keras


@functools.cache
def tfmot():
    """Returns `tensorflow_model_optimization`."""
    keras()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow_model_optimization as tfmot_module
    return tfmot_module
