"""converters.interpreter: runtime fallbacks and the "does LiteRT run it" check, on real models."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.errors import ConversionError, InputError

from converters.interpreter import check_runs, make_interpreter

tf = _tf.tf()
keras = _tf.keras()


@pytest.fixture(scope="module")
def small_tflite() -> bytes:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((6,)), keras.layers.Dense(3)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_bytes_and_path_use_ai_edge_litert(small_tflite, tmp_path, caplog):
    path = tmp_path / "m.tflite"
    path.write_bytes(small_tflite)
    with caplog.at_level(logging.INFO, logger="converters.interpreter"):
        for source in (small_tflite, path, str(path)):
            interp = make_interpreter(source, num_threads=1)
            assert interp.runtime_name == "ai_edge_litert"
            interp.allocate_tensors()
            assert list(interp.get_input_details()[0]["shape"]) == [1, 6]
    assert "Using the ai_edge_litert LiteRT interpreter" in caplog.text


def test_falls_back_when_litert_is_missing(small_tflite, monkeypatch, caplog):
    # None in sys.modules makes `import ai_edge_litert.interpreter` raise ImportError;
    # tflite_runtime is not installed here, so TensorFlow's interpreter is the next one.
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with caplog.at_level(logging.INFO, logger="converters.interpreter"):
        interp = make_interpreter(small_tflite)
    assert interp.runtime_name == "tensorflow"
    assert "Using the tensorflow LiteRT interpreter" in caplog.text
    assert check_runs(small_tflite) == "tensorflow"


def test_prefer_tensorflow(small_tflite):
    assert make_interpreter(small_tflite, prefer_tensorflow=True).runtime_name == "tensorflow"


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        make_interpreter(tmp_path / "missing.tflite")
    with pytest.raises(InputError, match="Received: model of type int"):
        make_interpreter(3)
    with pytest.raises(InputError, match="num_threads=0"):
        make_interpreter(b"x", num_threads=0)
    with pytest.raises(ConversionError, match="cannot load the model") as info:
        make_interpreter(b"\x00" * 64)
    assert info.value.__cause__ is not None


def test_check_runs_catches_xnnpack_failing_to_prepare():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.layers.Input((8, 8, 8)), keras.layers.Conv2D(16, 3)])
    kernel, bias = model.layers[0].get_weights()
    kernel[:, :, 0::4, :] = 0.0  # 2:4 along input channels
    kernel[:, :, 1::4, :] = 0.0
    model.layers[0].set_weights([kernel, bias])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    content = converter.convert()
    with pytest.raises(ConversionError, match="cannot run this model.*failed to prepare"):
        check_runs(content)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    assert check_runs(converter.convert()) == "ai_edge_litert"


def test_check_runs_invokes_the_model(small_tflite):
    assert check_runs(small_tflite) == "ai_edge_litert"
    interp = make_interpreter(small_tflite)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], np.ones((1, 6), np.float32))
    interp.invoke()
    assert interp.get_tensor(interp.get_output_details()[0]["index"]).shape == (1, 3)
