"""Fixtures shared across packages."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A real .tflite: a small tf_keras CNN converted by TFLiteConverter."""
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, x)).convert())
    return path


@pytest.fixture(autouse=True)
def _no_tool_downloads(monkeypatch):
    """No test fetches benchmark_model from the internet: the default mirror is a closed port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MOBILE_OPT_TOOLS_URL", f"http://127.0.0.1:{port}/no-downloads-in-tests")
