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
