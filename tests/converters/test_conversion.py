"""converters.conversion (convert): real tf_keras models through the real TFLite converter and LiteRT."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mobile_opt import _tf
from mobile_opt.datasets import load_fashion_mnist
from mobile_opt.errors import ConversionError, DataError, InputError, ModelFormatError, UnsupportedModelError

from converters.conversion import convert, convert_to_file, is_qat_model
from converters.evaluation import evaluate
from converters.tflite_model import load_tflite
from converters.weight_bits import IntegerWeights

tf = _tf.tf()
keras = _tf.keras()



@pytest.fixture(scope="module")
def fashion():
    (images, labels), _ = load_fashion_mnist()
    x = (images[:3000].astype(np.float32) / 255.0)[..., None]
    y = labels[:3000].astype(np.int64)
    return (x[:2500], y[:2500]), (x[2500:], y[2500:])


@pytest.fixture(scope="module")
def cnn(fashion):
    (x, y), _ = fashion
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def _is_tflite(content: bytes) -> bool:
    return content[4:8] == b"TFL3"


def test_fp32_matches_keras(cnn, fashion):
    content = convert(cnn)
    assert _is_tflite(content)
    result = evaluate(content, fashion[1], keras_model=cnn)
    assert result.accuracy > 0.6
    assert abs(result.accuracy_drop_pp) < 0.5


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_weight_quantization_is_smaller_and_close(cnn, fashion, mode):
    fp32 = convert(cnn)
    content = convert(cnn, quantization=mode)
    assert len(content) < len(fp32)
    result = evaluate(content, fashion[1], keras_model=cnn)
    assert result.input_dtype == "float32"
    assert abs(result.accuracy_drop_pp) < 2.0


@pytest.mark.parametrize("io_dtype", ["float32", "int8", "uint8"])
def test_int8_with_arrays(cnn, fashion, io_dtype):
    (x, _), test = fashion
    content = convert(cnn, quantization="int8", representative_data=x[:100], io_dtype=io_dtype)
    result = evaluate(content, test, keras_model=cnn)
    assert result.input_dtype == io_dtype
    assert result.output_dtype == io_dtype
    assert abs(result.accuracy_drop_pp) < 3.0


def test_per_tensor_int8_has_one_scale_per_weight_tensor_and_a_smaller_graph(cnn, fashion):
    (x, _), test = fashion
    per_channel = convert(cnn, quantization="int8", representative_data=x[:100])
    per_tensor = convert(cnn, quantization="int8", representative_data=x[:100],
                         weights=IntegerWeights(per_channel=False))

    def weight_scales(content):
        return [len(t.quantization.scale) for sg in load_tflite(content).subgraphs for t in sg.tensors
                if t.is_constant and t.dtype == "int8"]

    assert max(weight_scales(per_channel)) > 1  # one per output channel
    assert set(weight_scales(per_tensor)) == {1}
    assert len(per_tensor) < len(per_channel)
    assert evaluate(per_tensor, test).accuracy > 0.6
    with pytest.raises(InputError, match="per_channel=False applies to post-training quantization='int8'"):
        convert(cnn, quantization="dynamic", weights=IntegerWeights(per_channel=False))
    with pytest.raises(InputError, match="per_channel must be True or False"):
        IntegerWeights(per_channel="no")
    with pytest.raises(InputError, match="weights must be a converters.IntegerWeights"):
        convert(cnn, weights={"per_channel": False})


def test_int8_with_dataset_generator_and_xy(cnn, fashion):
    (x, y), test = fashion
    for data in (
        tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16),  # batched (x, y)
        tf.data.Dataset.from_tensor_slices(x[:64]),  # unbatched x
        lambda: ([x[i : i + 1]] for i in range(64)),  # the converter's own convention
        (x[:64], y[:64]),
    ):
        content = convert(cnn, quantization="int8", representative_data=data)
        assert evaluate(content, test).accuracy > 0.6


def test_int8_data_errors(cnn, fashion):
    (x, _), _ = fashion
    with pytest.raises(DataError, match="needs representative_data"):
        convert(cnn, quantization="int8")
    with pytest.raises(DataError, match="no samples"):
        convert(cnn, quantization="int8", representative_data=x[:0])
    with pytest.raises(DataError, match=r"Expected per-sample shape \(28, 28, 1\).*Received.*\(28, 28\)"):
        convert(cnn, quantization="int8", representative_data=x[:10, ..., 0])


def test_argument_errors(cnn):
    with pytest.raises(InputError, match="quantization='int4'"):
        convert(cnn, quantization="int4")
    with pytest.raises(InputError, match="io_dtype='int8'"):
        convert(cnn, quantization="dynamic", io_dtype="int8")
    with pytest.raises(InputError, match="io_dtype='int16'"):
        convert(cnn, io_dtype="int16")
    with pytest.raises(InputError, match="num_calibration_samples"):
        convert(cnn, num_calibration_samples=0)
    with pytest.raises(InputError, match="No model at this path"):
        convert("/nonexistent/model.keras")
    with pytest.raises(UnsupportedModelError, match="Expected a tf_keras or Keras 3 model"):
        convert(object())


def test_keras3_model_is_bridged():
    import keras as keras3

    model = keras3.Sequential([keras3.layers.Input((4,)), keras3.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    tflite = convert(model)
    assert evaluate(tflite, (x, np.asarray(model(x)).argmax(-1))).accuracy == 1.0


def test_paths_keras_h5_savedmodel(cnn, fashion, tmp_path):
    cnn.save(tmp_path / "m.keras")
    cnn.save(tmp_path / "m.h5")
    tf.saved_model.save(cnn, str(tmp_path / "sm"))
    reference = evaluate(convert(cnn), fashion[1]).accuracy
    for path in (tmp_path / "m.keras", tmp_path / "m.h5", tmp_path / "sm"):
        assert evaluate(convert(path), fashion[1]).accuracy == pytest.approx(reference, abs=1e-3)
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    with pytest.raises(ModelFormatError, match="junk.keras"):
        convert(tmp_path / "junk.keras")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match="not a SavedModel"):
        convert(tmp_path / "empty")


def test_qat_model_converts_to_int8_without_data(cnn, fashion):
    (x, y), test = fashion
    base = keras.models.clone_model(cnn)
    base.set_weights(cnn.get_weights())
    qat = _tf.tfmot().quantization.keras.quantize_model(base)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    qat.fit(x[:1000], y[:1000], epochs=1, batch_size=64, verbose=0)
    assert is_qat_model(qat) and not is_qat_model(cnn)
    content = convert(qat, quantization="int8", io_dtype="int8")
    result = evaluate(content, test, keras_model=qat)
    assert result.input_dtype == "int8"
    assert abs(result.accuracy_drop_pp) < 3.0
    with pytest.raises(InputError, match="quantization-aware"):
        convert(qat, quantization="dynamic")


def test_sparsity_on_pruned_weights(cnn, fashion):
    model = keras.models.clone_model(cnn)
    model.set_weights(cnn.get_weights())
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0.0
    dense.set_weights([kernel, bias])
    dense_file = convert(model)
    sparse_file = convert(model, sparsity=True)
    assert len(sparse_file) < len(dense_file)  # fp32 80%-zero FC weights stored sparse
    assert evaluate(sparse_file, fashion[1]).accuracy == pytest.approx(
        evaluate(dense_file, fashion[1]).accuracy, abs=0.01
    )


def _two_of_four_conv() -> keras.Model:
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.layers.Input((8, 8, 8)), keras.layers.Conv2D(16, 3), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    conv = model.layers[0]
    kernel, bias = conv.get_weights()
    kernel[:, :, 0::4, :] = 0.0  # 2 of every 4 input channels zero: the 2:4 pattern
    kernel[:, :, 1::4, :] = 0.0
    conv.set_weights([kernel, bias])
    return model


def test_two_of_four_sparse_model_that_litert_cannot_run_is_an_error():
    model = _two_of_four_conv()
    assert _is_tflite(convert(model, quantization="dynamic"))  # fine without sparsity
    with pytest.raises(ConversionError, match="cannot run.*failed to prepare.*sparsity=True") as info:
        convert(model, quantization="dynamic", sparsity=True)
    assert info.value.__cause__ is not None


def _det_model() -> keras.Model:
    inputs = keras.Input((4,))
    x = keras.layers.Reshape((2, 2))(inputs)
    x = keras.layers.Lambda(lambda t: tf.expand_dims(tf.linalg.det(t), -1))(x)
    return keras.Model(inputs, x)


def test_converter_failure_quotes_converter(caplog):
    with pytest.raises(ConversionError, match="MatrixDeterminant.*neither a custom op nor a flex op") as info:
        convert(_det_model())
    assert info.value.__cause__ is not None
    with caplog.at_level(logging.WARNING, logger="converters.conversion"):
        content = convert(_det_model(), select_tf_ops=True)
    assert _is_tflite(content)
    text = caplog.text
    assert "adds several MB" in text and "NOT verified" in text


def test_convert_to_file_is_atomic(cnn, tmp_path):
    target = tmp_path / "model.tflite"
    assert convert_to_file(cnn, target) == target
    assert _is_tflite(target.read_bytes())
    before = target.read_bytes()
    with pytest.raises(DataError):
        convert_to_file(cnn, target, quantization="int8")
    assert target.read_bytes() == before
    with pytest.raises(ConversionError):
        convert_to_file(_det_model(), tmp_path / "det.tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
    with pytest.raises(InputError, match="directory does not exist"):
        convert_to_file(cnn, tmp_path / "missing" / "m.tflite")
