"""shorten_names on real converted models: same outputs bit for bit, same signatures, fewer
bytes, and mobile_opt's kernel matching still finds every kernel by its layer name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import converters
from converters import shorten_names
from converters.interpreter import make_interpreter
from mobile_opt import _tf
from mobile_opt.errors import ModelFormatError
from mobile_opt.measure import kernel_shapes
from mobile_opt.quantization import shipped_kernels

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


@pytest.fixture(scope="module")
def keras_model():
    """Conv, depthwise conv (its kernel's layer is the last `;`-part) and two same-shaped Dense
    kernels, which only their names tell apart."""
    keras = _tf.keras()
    keras.utils.set_random_seed(1)
    x = inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc_a")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc_b")(x)
    x = keras.layers.Dense(16, name="fc_c")(x)
    return keras.Model(inputs, x)


@pytest.fixture(scope="module")
def int8_tflite(keras_model) -> bytes:
    rng = np.random.default_rng(0)
    return converters.convert(keras_model, quantization="int8",
                              representative_data=rng.random((16, 8, 8, 2), dtype=np.float32))


def _outputs(tflite: bytes, inputs: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    runner = make_interpreter(tflite).get_signature_runner()
    return [runner(**feed) for feed in inputs]


def _random_feeds(tflite: bytes, count: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    details = make_interpreter(tflite).get_signature_runner().get_input_details()
    return [{k: rng.random(d["shape"], dtype=np.float32).astype(d["dtype"]) for k, d in details.items()}
            for _ in range(count)]


def _check_same_model(original: bytes, short: bytes) -> None:
    assert len(short) < len(original)
    feeds = _random_feeds(original)
    for got, want in zip(_outputs(short, feeds), _outputs(original, feeds)):
        assert list(got) == list(want)
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].tobytes() == want[key].tobytes()
    before, after = make_interpreter(original), make_interpreter(short)
    assert after.get_signature_list() == before.get_signature_list()
    names = [t.name for sg in converters.load_tflite(short).subgraphs for t in sg.tensors]
    assert len(names) == len(set(names))
    for a, b in zip(converters.load_tflite(original).subgraphs, converters.load_tflite(short).subgraphs):
        assert [(t.shape, t.dtype, t.buffer_index) for t in a.tensors] == [
            (t.shape, t.dtype, t.buffer_index) for t in b.tensors]
        kept = set(a.inputs) | set(a.outputs)
        assert [a.tensors[i].name for i in sorted(kept)] == [b.tensors[i].name for i in sorted(kept)]


def test_same_outputs_signatures_and_smaller(int8_tflite):
    _check_same_model(int8_tflite, shorten_names(int8_tflite))


def test_kernel_matching_finds_the_same_tensors(keras_model, int8_tflite):
    short = shorten_names(int8_tflite)
    before, after = shipped_kernels(int8_tflite, keras_model), shipped_kernels(short, keras_model)
    assert set(before) == set(after) and len(before) == 5
    for layer in before:
        assert before[layer].dtype == after[layer].dtype and np.array_equal(before[layer], after[layer])
    # Each layer's name still picks out the same kernel tensors, by name, not by graph order.
    original, shortened = converters.load_tflite(int8_tflite), converters.load_tflite(short)
    matched = set()
    for layer in kernel_shapes(keras_model):
        named = re.compile(rf"(^|[/;])(quant_)?{re.escape(layer)}(/|;|$)")
        hits = [[t.index for t in sg.tensors if t.is_constant and len(t.shape) >= 2 and named.search(t.name)]
                for sg in (original.subgraphs[0], shortened.subgraphs[0])]
        assert hits[0] == hits[1], layer
        if hits[0]:
            matched.add(layer)
    assert {"conv", "fc_a", "fc_b", "fc_c"} <= matched


@pytest.mark.parametrize("name", ["real_models_mobilenetv2_auto.tflite", "deep_compression_lenet_300_100.tflite"])
def test_shipped_models(name):
    original = (RESULTS / name).read_bytes()
    short = shorten_names(original)
    _check_same_model(original, short)


def test_nothing_to_shorten_returns_the_same_bytes(hand_built):
    from ai_edge_litert import schema_py_generated as schema

    raw = hand_built([{"name": "in", "type": schema.TensorType.FLOAT32, "shape": [4]},
                      {"name": "scope/w", "type": schema.TensorType.FLOAT32, "shape": [4], "data": bytes(16)}])
    assert shorten_names(raw) == raw


def test_external_buffers_refused(cnn):
    tf = _tf.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(cnn)
    converter._experimental_use_buffer_offset = True
    with pytest.raises(ModelFormatError, match="after the flatbuffer"):
        shorten_names(converter.convert())


def test_not_a_model():
    with pytest.raises(ModelFormatError):
        shorten_names(b"not a model at all")
