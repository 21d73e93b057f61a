"""converters.flops: hand-computed MAC/FLOP counts, and Keras and .tflite counts agreeing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.errors import InputError, UnsupportedModelError

from converters.flops import FlopsReport, count_flops
from converters.tflite_model import load_tflite

tf = _tf.tf()
keras = _tf.keras()
L = keras.layers


def _nonzero_biases(model):
    # The converter drops all-zero biases; trained models have none, so fill them.
    rng = np.random.default_rng(0)
    model.set_weights([w if w.ndim > 1 else rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _tflite(model, mode: str = "none") -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        shape = (1, *model.inputs[0].shape[1:])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([np.random.rand(*shape).astype(np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def mnist_cnn():
    """The small MNIST CNN whose count the issue cites: 1,060,400 FLOPs."""
    return _nonzero_biases(keras.Sequential([
        L.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(12, 5, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(100, activation="relu"),
        L.Dense(10),
    ]))


# Hand count of mnist_cnn (per sample):
#   conv1: out 28x28x6, 5x5x1 kernel  -> 28*28*6*25     = 117,600 MACs, params 5*5*1*6+6   =    156
#   pool1: 14x14x6, max                 ->                          0
#   conv2: out 14x14x12, 5x5x6 kernel -> 14*14*12*150   = 352,800 MACs, params 5*5*6*12+12 =  1,812
#   pool2: 7x7x12 = 588, flatten        ->                          0
#   dense: 588 -> 100                   -> 588*100        =  58,800 MACs, params 58,800+100  = 58,900
#   dense: 100 -> 10 (logits)           -> 100*10         =   1,000 MACs, params 1,000+10    =  1,010
#   total 530,200 MACs; FLOPs = 2 x MACs (bias add folded, ReLU/max-pool are comparisons)
#   = 1,060,400 FLOPs; params 61,878.
MNIST_MACS = 117_600 + 352_800 + 58_800 + 1_000
MNIST_PARAMS = 156 + 1_812 + 58_900 + 1_010


def test_mnist_cnn_is_1060400_flops_in_keras_and_every_tflite_flavour():
    assert MNIST_MACS == 530_200 and 2 * MNIST_MACS == 1_060_400
    model = mnist_cnn()
    keras_report = count_flops(model)
    assert (keras_report.total_macs, keras_report.total_flops, keras_report.params) == (
        530_200, 1_060_400, MNIST_PARAMS)
    assert [layer.macs for layer in keras_report.layers] == [117_600, 0, 352_800, 0, 0, 58_800, 1_000]
    for mode in ("none", "float16", "dynamic", "int8"):
        report = count_flops(_tflite(model, mode))
        assert (report.total_macs, report.total_flops, report.params) == (530_200, 1_060_400, MNIST_PARAMS), mode
        assert report.unknown_ops == () and report.complete
        assert report.source == "tflite"


def test_lenet_300_100():
    model = _nonzero_biases(keras.Sequential([
        L.Input((28, 28)), L.Flatten(), L.Dense(300, activation="relu"), L.Dense(100, activation="relu"),
        L.Dense(10, activation="softmax"),
    ]))
    # params: 784*300+300 + 300*100+100 + 100*10+10 = 235,500 + 30,100 + 1,010
    macs = 784 * 300 + 300 * 100 + 100 * 10
    flops = 2 * macs + 4 * 10  # softmax: 4 FLOPs per output element
    for report in (count_flops(model), count_flops(_tflite(model))):
        assert report.params == 266_610
        assert (report.total_macs, report.total_flops) == (266_200, flops) == (macs, 532_440)


def test_depthwise_and_separable():
    depthwise = keras.Sequential([L.Input((16, 16, 8)), L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")])
    # out 16x16x16, 3x3 window per output channel
    separable = keras.Sequential([L.Input((16, 16, 8)), L.SeparableConv2D(12, 3, padding="same")])
    # depthwise 16*16*8*9 = 18,432 + pointwise 16*16*12*8 = 24,576
    for model, macs in ((depthwise, 16 * 16 * 16 * 9), (separable, 18_432 + 24_576)):
        _nonzero_biases(model)
        for report in (count_flops(model), count_flops(_tflite(model))):
            assert (report.total_macs, report.total_flops) == (macs, 2 * macs)
    assert count_flops(_tflite(depthwise)).layers[0].op == "DEPTHWISE_CONV_2D"


def test_pooling_and_elementwise():
    inputs = L.Input((8, 8, 4))
    a = L.AveragePooling2D(2)(inputs)  # 4x4x4 = 64 outputs x 4-element windows = 256
    b = L.MaxPooling2D(2)(inputs)  # comparisons: 0
    added = L.Add()([a, b])  # 64 adds
    mean = L.GlobalAveragePooling2D()(added)  # 64 input elements
    out = L.Dense(3, activation="sigmoid")(mean)  # 12 MACs; sigmoid 3 per element
    model = _nonzero_biases(keras.Model(inputs, out))
    expected_flops = 256 + 0 + 64 + 64 + 2 * 12 + 3 * 3
    keras_report = count_flops(model)
    tflite_report = count_flops(_tflite(model))
    assert keras_report.total_flops == tflite_report.total_flops == expected_flops
    assert keras_report.total_macs == tflite_report.total_macs == 12
    ops = {layer.op: layer.flops for layer in tflite_report.layers}
    assert ops == {"AVERAGE_POOL_2D": 256, "MAX_POOL_2D": 0, "ADD": 64, "MEAN": 64, "FULLY_CONNECTED": 24,
                   "LOGISTIC": 9}


def test_transpose_conv():
    model = _nonzero_biases(keras.Sequential([L.Input((7, 7, 8)), L.Conv2DTranspose(4, 3, strides=2)]))
    macs = 7 * 7 * 8 * 3 * 3 * 4  # every input element scatters into a 3x3x4 patch
    for report in (count_flops(model), count_flops(_tflite(model))):
        assert report.total_macs == macs


def test_batch_matmul_and_unknown_ops():
    a, b = L.Input((3, 4)), L.Input((4, 5))
    product = L.Lambda(lambda t: tf.matmul(t[0], t[1]))([a, b])
    summed = L.Lambda(lambda t: tf.math.cumsum(t, axis=-1))(product)
    model = keras.Model([a, b], summed)
    tflite_report = count_flops(_tflite(model))
    assert tflite_report.total_macs == 3 * 5 * 4
    assert [u.split()[0] for u in tflite_report.unknown_ops] == ["CUMSUM"]
    row = [layer for layer in tflite_report.layers if layer.op == "CUMSUM"][0]
    assert row.flops is None and row.macs is None
    keras_report = count_flops(model)
    assert len(keras_report.unknown_ops) == 2 and all(u.startswith("Lambda") for u in keras_report.unknown_ops)
    assert not keras_report.complete


def test_wrappers_nested_models_and_paths(tmp_path):
    model = mnist_cnn()
    qat = _tf.tfmot().quantization.keras.quantize_model(model)
    assert count_flops(qat).total_flops == 1_060_400
    outer = keras.Sequential([L.Input((28, 28, 1)), model])
    nested = count_flops(outer)
    assert nested.total_flops == 1_060_400 and nested.layers[0].name.startswith(model.name + "/")
    content = _tflite(model)
    (tmp_path / "m.tflite").write_bytes(content)
    model.save(tmp_path / "m.keras")
    assert count_flops(tmp_path / "m.tflite").total_flops == 1_060_400
    assert count_flops(load_tflite(content)).total_flops == 1_060_400
    assert count_flops(str(tmp_path / "m.keras")).total_flops == 1_060_400
    with pytest.raises(InputError, match="No model at this path"):
        count_flops(tmp_path / "missing.tflite")
    with pytest.raises(UnsupportedModelError, match="Received: model of type builtins.int"):
        count_flops(3)

    class Sub(keras.Model):
        def call(self, x):
            return x * 2

    with pytest.raises(UnsupportedModelError, match="subclassed"):
        count_flops(Sub())


def test_to_dict_keys_are_stable_and_json_safe():
    report = count_flops(mnist_cnn())
    assert isinstance(report, FlopsReport)
    d = json.loads(json.dumps(report.to_dict()))
    assert list(d) == ["source", "total_macs", "total_flops", "params", "unknown_ops", "layers"]
    assert list(d["layers"][0]) == ["name", "op", "macs", "flops", "params", "output_shape"]
    assert d["layers"][0]["output_shape"] == [28, 28, 6]
