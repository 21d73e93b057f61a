"""converters.evaluation (evaluate): LiteRT accuracy on real Fashion-MNIST, checked against hand-run loops."""

from __future__ import annotations


import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.errors import ConversionError, DataError, InputError

from converters.evaluation import EvaluationResult, evaluate

tf = _tf.tf()
keras = _tf.keras()


@pytest.fixture(scope="module")
def data():
    _, (images, labels) = load_fashion_mnist()
    x = images[:2300].astype(np.float32) / 255.0
    y = labels[:2300].astype(np.int64)
    return (x[:2000], y[:2000]), (x[2000:], y[2000:])


@pytest.fixture(scope="module")
def model(data):
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(32, "relu"),
                          keras.layers.Dense(10)])
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return m


def _convert(model, int8_from=None, io=tf.float32) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8_from is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s[None]] for s in int8_from[:100])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io
        converter.inference_output_type = io
    return converter.convert()


def _per_sample_accuracy(content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: one sample at a time with TensorFlow's own interpreter."""
    interp = tf.lite.Interpreter(model_content=content)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    hits = 0
    for xi, yi in zip(x, y):
        v = xi[None]
        if inp["dtype"] != np.float32:
            v = np.clip(np.round(v / s_in + z_in), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
        interp.set_tensor(inp["index"], v.astype(inp["dtype"]))
        interp.invoke()
        o = interp.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            o = (o - z_out) * s_out
        hits += int(np.argmax(o) == yi)
    return hits / len(x)


def test_fp32_against_hand_loops(model, data):
    _, (x, y) = data
    content = _convert(model)
    result = evaluate(content, (x, y), keras_model=model, batch_size=64)
    assert isinstance(result, EvaluationResult)
    assert result.accuracy == pytest.approx(_per_sample_accuracy(content, x, y))
    keras_acc = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    assert result.keras_accuracy == pytest.approx(keras_acc)
    assert result.accuracy_drop_pp == pytest.approx((keras_acc - result.accuracy) * 100, abs=1e-3)
    assert result.n_samples == 300 and result.interpreter == "ai_edge_litert"
    assert result.to_dict()["input_dtype"] == "float32"


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_integer_io_is_quantized_and_dequantized(model, data, io):
    (x_train, _), (x, y) = data
    content = _convert(model, int8_from=x_train, io=getattr(tf, io))
    result = evaluate(content, (x, y), keras_model=model)
    assert (result.input_dtype, result.output_dtype) == (io, io)
    assert result.accuracy == pytest.approx(_per_sample_accuracy(content, x, y))
    assert abs(result.accuracy_drop_pp) < 3.0


def test_label_forms_batches_and_datasets_agree(model, data):
    _, (x, y) = data
    content = _convert(model)
    reference = evaluate(content, (x, y)).accuracy
    one_hot = np.eye(10, dtype=np.float32)[y]
    variants = [
        evaluate(content, (x, one_hot)),
        evaluate(content, (x, y), batch_size=7),  # remainder batch -> another resize
        evaluate(content, tf.data.Dataset.from_tensor_slices((x, y)).batch(50)),
        evaluate(content, tf.data.Dataset.from_tensor_slices((x[:40], y[:40]))),  # unbatched
    ]
    assert [v.accuracy for v in variants[:3]] == [reference] * 3
    assert variants[3].n_samples == 40
    assert variants[3].accuracy == pytest.approx(evaluate(content, (x[:40], y[:40])).accuracy)


def test_fixed_batch_model_runs_per_sample(data):
    _, (x, y) = data
    keras.utils.set_random_seed(2)
    fixed = keras.Sequential([keras.layers.Input((28, 28), batch_size=1), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    content = _convert(fixed)
    sig = tf.lite.Interpreter(model_content=content).get_input_details()[0]["shape_signature"]
    assert sig[0] == 1  # really a fixed batch
    result = evaluate(content, (x[:50], y[:50]), keras_model=fixed, batch_size=16)
    assert result.accuracy == pytest.approx(_per_sample_accuracy(content, x[:50], y[:50]))
    assert result.accuracy_drop_pp == pytest.approx(0.0, abs=2.0)


def test_data_errors(model, data):
    _, (x, y) = data
    content = _convert(model)
    with pytest.raises(DataError, match=r"Expected per-sample shape \(28, 28\)"):
        evaluate(content, (x.reshape(-1, 784), y))
    with pytest.raises(DataError, match="same number of samples"):
        evaluate(content, (x, y[:5]))
    with pytest.raises(DataError, match="no samples"):
        evaluate(content, (x[:0], y[:0]))
    with pytest.raises(DataError, match=r"\(x, y\) pairs"):
        evaluate(content, tf.data.Dataset.from_tensor_slices(x[:4]).batch(2).map(lambda t: (t,)))
    with pytest.raises(DataError, match="Received: data of type str"):
        evaluate(content, "data")
    with pytest.raises(InputError, match="metric='f1'"):
        evaluate(content, (x, y), metric="f1")
    with pytest.raises(InputError, match="batch_size=0"):
        evaluate(content, (x, y), batch_size=0)


def test_model_litert_cannot_run_is_a_conversion_error():
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.layers.Input((8, 8, 8)), keras.layers.Conv2D(16, 3), keras.layers.Flatten(),
                          keras.layers.Dense(4)])
    kernel, bias = m.layers[0].get_weights()
    kernel[:, :, 0::4, :] = 0.0
    kernel[:, :, 1::4, :] = 0.0
    m.layers[0].set_weights([kernel, bias])
    converter = tf.lite.TFLiteConverter.from_keras_model(m)
    converter.optimizations = [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    content = converter.convert()
    x = np.zeros((4, 8, 8, 8), np.float32)
    with pytest.raises(ConversionError, match="cannot prepare.*must not be shipped"):
        evaluate(content, (x, np.zeros(4, np.int64)))
