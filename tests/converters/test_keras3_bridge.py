"""Keras 3 -> tf_keras bridge: every translated layer computes what Keras 3 computes.

Models are real Keras 3 models (the `keras` package), including keras.applications
networks built with weights=None; the proof compares outputs to 1e-5 absolute.
"""

from __future__ import annotations

import numpy as np
import pytest

import converters
from converters._keras3_rebuild import _HARD_ACTIVATIONS, _SAME_ACTIVATIONS
from converters.keras3_bridge import to_keras3, to_tf_keras
from mobile_opt import _tf
from mobile_opt.errors import UnsupportedModelError

keras = pytest.importorskip("keras")
L = keras.layers


def _randomize_batchnorm(model, seed=0):
    """weights=None leaves BN at mean 0 / var 1; random statistics make the proof non-trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.1, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])


def test_activation_tables_match_the_two_kerases():
    tf, tfk = _tf.tf(), _tf.keras()
    x = tf.constant(np.linspace(-8, 8, 2001, dtype=np.float32)[None])
    for name in _SAME_ACTIVATIONS:
        a = np.asarray(keras.activations.get(name)(x))
        b = np.asarray(tfk.activations.get(name)(x))
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=name)
    # The reason for the rebuild: tf_keras' hard_sigmoid is another function.
    k3 = np.asarray(keras.activations.hard_sigmoid(x))
    assert np.max(np.abs(k3 - np.asarray(tfk.activations.hard_sigmoid(x)))) > 0.05
    for name in _HARD_ACTIVATIONS:
        model = keras.Sequential([keras.Input((2001,)), L.Activation(name)])
        tf_model, proof = to_tf_keras(model, np.asarray(x))
        np.testing.assert_allclose(np.asarray(tf_model(x)), np.asarray(model(x)), atol=1e-6, err_msg=name)


def _hand_made():
    i = keras.Input((16, 16, 3))
    x = L.Rescaling(1 / 127.5, offset=-1)(i)
    x = L.Conv2D(8, 3, padding="same", activation="hard_silu", kernel_regularizer="l2")(x)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Activation("hard_sigmoid")(x) * 2.0 - 0.5  # keras.ops in the graph, as MobileNetV3 has
    x = L.SeparableConv2D(8, 3, activation="swish")(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPooling2D()(x)
    x = L.UpSampling2D()(x)
    y = L.Permute((2, 1, 3))(L.AveragePooling2D(2)(x))
    z = L.Concatenate()([L.GlobalAveragePooling2D()(x), L.GlobalMaxPooling2D()(y)])
    z = L.Add()([L.Dense(16)(z), z])
    z = L.Multiply()([z, L.Dense(16, activation="sigmoid")(z)])
    z = L.Reshape((4, 4))(z)
    z = L.LayerNormalization()(z)
    z = L.Conv1D(4, 2, activation="relu")(z)
    z = L.MaxPooling1D()(z)
    z = L.Dropout(0.3)(L.Flatten()(z))
    return keras.Model(i, L.Softmax()(L.Dense(5)(z)), name="hand_made")


def test_hand_made_model_round_trips_with_proof():
    keras.utils.set_random_seed(1)
    model = _hand_made()
    _randomize_batchnorm(model)
    x = np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    tf_model, proof = to_tf_keras(model, x)
    assert isinstance(tf_model, _tf.keras().Model)
    assert proof.inputs == "user data" and proof.samples == 16 and proof.max_abs_diff <= 1e-5
    assert proof.to_dict()["input_shape"] == [None, 16, 16, 3]
    assert tf_model.get_layer("conv2d").kernel_regularizer is not None  # regularizers survive
    np.testing.assert_allclose(np.asarray(tf_model(x)), np.asarray(model(x)), atol=1e-5)
    back, again = to_keras3(tf_model, model, x)
    assert type(back).__module__.startswith("keras") and again.max_abs_diff <= 1e-5


def test_sequential_with_embedding_and_normalization():
    text = keras.Sequential([keras.Input((12,), dtype="int32"), L.Embedding(50, 8), L.Conv1D(4, 3),
                             L.GlobalAveragePooling1D(), L.Dense(3)])
    tf_model, proof = to_tf_keras(text)
    assert proof.inputs == "random integers" and proof.max_abs_diff <= 1e-5
    # The 1-D pooling twins and a plain ReLU layer (MobileNetV3's), each a layer of its own.
    series = keras.Sequential([keras.Input((16, 3)), L.Conv1D(6, 3), L.ReLU(), L.AveragePooling1D(2),
                               L.Conv1D(4, 3), L.ReLU(max_value=6.0, negative_slope=0.1), L.GlobalMaxPooling1D(),
                               L.Dense(2)])
    tf_model, proof = to_tf_keras(series)
    assert proof.max_abs_diff <= 1e-5
    assert [type(l).__name__ for l in tf_model.layers if "Pool" in type(l).__name__ or type(l).__name__ == "ReLU"] == [
        "ReLU", "AveragePooling1D", "ReLU", "GlobalMaxPooling1D"]
    leaky = [l for l in tf_model.layers if type(l).__name__ == "ReLU"][1].get_config()
    assert float(leaky["negative_slope"]) == pytest.approx(0.1) and float(leaky["max_value"]) == 6.0
    norm = L.Normalization(axis=-1)
    norm.adapt(np.random.default_rng(0).normal(3, 2, (64, 6)).astype("float32"))
    tabular = keras.Sequential([keras.Input((6,)), norm, L.Dense(4, activation="gelu"), L.Dense(2)])
    tf_model, proof = to_tf_keras(tabular)
    assert proof.max_abs_diff <= 1e-5
    np.testing.assert_allclose(tf_model.get_layer(norm.name).get_weights()[0], norm.get_weights()[0])


@pytest.mark.slow  # 8-12 s each alone, more on a loaded machine
@pytest.mark.parametrize("name,build", [
    ("MobileNetV2", lambda: keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                                           classifier_activation=None)),
    ("MobileNetV3Small", lambda: keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None,
                                                                     classifier_activation=None)),
    ("EfficientNetB0", lambda: keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None,
                                                                 classifier_activation=None)),
])
def test_keras_applications_bridge_to_1e5(name, build):
    keras.utils.set_random_seed(0)
    model = build()
    _randomize_batchnorm(model)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    tf_model, proof = to_tf_keras(model, x)
    assert proof.max_abs_diff <= 1e-5
    logits = np.asarray(model(x, training=False))
    assert np.std(logits) > 1e-4  # the outputs compared are not a constant
    assert converters.count_flops(model).total_macs == converters.count_flops(tf_model).total_macs > 0


class _Custom(L.Layer):
    def call(self, x):
        return x * 2


class _Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(2)

    def call(self, x):
        return self.dense(x)


def test_unbridgeable_models_name_each_layer():
    i = keras.Input((8, 8, 3))
    x = _Custom(name="doubler")(i)
    x = L.Conv2DTranspose(4, 3, name="up")(x)
    x = keras.ops.sqrt(x)
    model = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(UnsupportedModelError) as caught:
        to_tf_keras(model)
    message = str(caught.value)
    assert "'doubler' (_Custom) (a custom layer)" in message and "'up' (Conv2DTranspose)" in message
    assert "keras.ops.Sqrt" in message and "3 layer(s)" in message and "tf_keras" in message
    net = _Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="subclassed Keras 3 model"):
        converters.convert(net)
    odd = keras.Sequential([keras.Input((4,)), L.LayerNormalization(rms_scaling=True)])
    with pytest.raises(UnsupportedModelError, match="rms_scaling=True"):
        to_tf_keras(odd)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_convert_and_count_flops_take_keras3_files(tmp_path, suffix):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="hard_silu"), L.Flatten(),
                              L.Dense(3)])
    path = tmp_path / f"k3{suffix}"
    model.save(path)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
    interpreter = converters.make_interpreter(converters.convert(path))
    tflite = converters.convert(model)
    assert converters.count_flops(path).total_macs == converters.count_flops(tflite).total_macs
    runner = interpreter.get_signature_runner()
    (out,) = runner(**{runner.get_input_details().popitem()[0]: x}).values()
    np.testing.assert_allclose(out, np.asarray(model(x)), atol=1e-4)


def test_the_loader_keeps_keras3_and_refuses_what_cannot_bridge(tmp_path):
    """One Keras 3 rule: the file comes back as Keras 3; consumers that need tf_keras bridge it."""
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, name="fc")])
    model.save(tmp_path / "k3.keras")
    loaded = converters.load_keras_model(tmp_path / "k3.keras")
    assert type(loaded).__module__.startswith("keras") and not isinstance(loaded, _tf.keras().Model)
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]
    odd = keras.Sequential([keras.Input((4,)), L.LayerNormalization(rms_scaling=True, name="rms")])
    odd.save(tmp_path / "odd.keras")
    with pytest.raises(UnsupportedModelError, match="rms_scaling=True"):
        converters.load_keras_model(tmp_path / "odd.keras")
