"""int4 / mixed-bit kernels through ai-edge-quantizer, proved by reading the flatbuffer."""

from __future__ import annotations

import numpy as np
import pytest

import converters
from converters.interpreter import make_interpreter
from mobile_opt import _tf
from mobile_opt.errors import InputError


def _model():
    """conv -> depthwise -> 1x1 conv -> pool -> fc1 -> fc2 on 12x12x3, deterministic weights."""
    keras = _tf.keras()
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.Conv2D(16, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, name="fc2")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(0).random((64, 12, 12, 3), dtype=np.float32)


def _kernel_types(content: bytes) -> dict[str, tuple[str, int, int]]:
    """{layer: (stored type, buffer bytes, elements)} read from the flatbuffer's own tables."""
    from ai_edge_litert import schema_py_generated as schema

    fb = schema.Model.GetRootAsModel(content, 0)
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    sg = fb.Subgraphs(0)
    out = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        if op.InputsLength() < 2 or op.Inputs(1) < 0:
            continue
        kernel = sg.Tensors(op.Inputs(1))
        buf = fb.Buffers(kernel.Buffer())
        if buf.DataLength() == 0 and buf.Size() == 0:
            continue
        layer = next((part for part in kernel.Name().decode().split("/") if part in
                      {"conv", "dw", "pw", "fc1", "fc2"}), None)
        if layer:
            out[layer] = (names[kernel.Type()], buf.DataLength() or buf.Size(), int(np.prod(kernel.ShapeAsNumpy())))
    return out


def test_int4_fc_stores_fully_connected_kernels_two_per_byte_and_runs(model, samples):
    content = converters.convert(model, quantization="int4_fc", representative_data=samples)
    kernels = _kernel_types(content)
    for layer in ("fc1", "fc2"):
        stored, nbytes, elements = kernels[layer]
        assert stored == "INT4"
        assert nbytes == (elements + 1) // 2  # two weights per byte: real int4 storage
    assert {kernels[k][0] for k in ("conv", "dw", "pw")} == {"INT8"}
    # LiteRT's tensor details show int4 as int8: why the flatbuffer is read above.
    interpreter = make_interpreter(content)
    assert interpreter.get_input_details()[0]["dtype"] == interpreter.get_output_details()[0]["dtype"] == np.float32
    details = interpreter.get_tensor_details()
    assert all(d["dtype"] == np.int8 for d in details if d["name"].endswith("fc1/MatMul"))
    float_out = make_interpreter(converters.convert(model)).get_signature_runner()
    int4_out = make_interpreter(content).get_signature_runner()
    x = samples[:16]
    # The input's name depends on how many Keras models the process built before: read it.
    (name,) = float_out.get_input_details()
    ref = np.concatenate([next(iter(float_out(**{name: x[i:i + 1]}).values())) for i in range(16)])
    (name,) = int4_out.get_input_details()
    got = np.concatenate([next(iter(int4_out(**{name: x[i:i + 1]}).values())) for i in range(16)])
    # int4 kernels are coarse; the outputs still follow the float model's.
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.9


def test_weight_bits_puts_int4_where_asked_and_int8_elsewhere(model, samples):
    content = converters.convert(model, quantization="int4_fc", representative_data=samples,
                                 weights=converters.IntegerWeights(weight_bits={"pw": 4, "fc2": 8}))
    kernels = _kernel_types(content)
    assert {k: v[0] for k, v in kernels.items()} == {
        "conv": "INT8", "dw": "INT8", "pw": "INT4", "fc1": "INT4", "fc2": "INT8"}
    int8 = converters.convert(model, quantization="int8", representative_data=samples)
    assert len(content) < len(int8)


def test_int4_on_an_op_the_quantizer_refuses_names_the_layer_and_op(model, samples):
    with pytest.raises(InputError, match=r"layer 'dw' \(runs as DEPTHWISE_CONV_2D\).*Give these layers 8 bits"):
        converters.convert(model, quantization="int8", representative_data=samples,
                           weights=converters.IntegerWeights(weight_bits={"dw": 4}))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weight_bits={"fc1": 3}), r"Layer 'fc1': weight bits must be 4 or 8"),
        (dict(weight_bits={"fc1": True}), r"Layer 'fc1': weight bits must be 4 or 8"),
        (dict(weight_bits={"nope": 4}), r"no weight op in the model: \['nope'\]"),
        (dict(weight_bits={"fc1": 4}, quantization="dynamic"), "weight_bits applies to full-integer"),
        (dict(io_dtype="int8"), "int4 weights come with float32 model inputs/outputs"),
    ],
)
def test_bad_weight_bits_are_refused_with_the_field_named(model, samples, kwargs, message):
    kwargs = {"quantization": "int4_fc", "representative_data": samples, **kwargs}
    bits = kwargs.pop("weight_bits", None)
    with pytest.raises(InputError, match=message):
        converters.convert(model, weights=converters.IntegerWeights(weight_bits=bits), **kwargs)
