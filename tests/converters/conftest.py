"""Real .tflite files for the parser / size tests, converted once per session with TFLiteConverter.

Models are tiny tf_keras graphs; converting all of them takes a few seconds. `hand_built`
writes flatbuffers the converter cannot produce (int4 weights, custom ops, damaged fields)
with the schema's own object API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mobile_opt import _tf


def _convert(model, *, mode: str = "fp32", concrete=None) -> bytes:
    tf = _tf.tf()
    if concrete is not None:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        rng = np.random.default_rng(0)
        shape = (1,) + tuple(model.input_shape[1:])

        def representative():
            for _ in range(8):
                yield [rng.random(shape, dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif mode == "external":
        converter._experimental_use_buffer_offset = True
    return converter.convert()


def make_cnn(seed: int = 0):
    """Conv2D(4, 3x3) -> Flatten -> Dense(10) on 12x12x1 inputs, deterministic weights."""
    keras = _tf.keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.layers.Input((12, 12, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, name="dense"),
    ])
    # Non-zero biases so that they are separate, non-trivial buffers.
    conv_k, conv_b, dense_k, dense_b = model.get_weights()
    model.set_weights([conv_k, np.linspace(0.1, 0.4, 4).astype(np.float32),
                       dense_k, np.linspace(-1, 1, 10).astype(np.float32)])
    return model


@pytest.fixture(scope="session")
def cnn():
    return make_cnn()


@pytest.fixture(scope="session")
def pruned_cnn():
    """The CNN with 80% of the Dense kernel set to exactly 0 (by magnitude)."""
    model = make_cnn()
    weights = model.get_weights()
    kernel = weights[2]
    threshold = np.quantile(np.abs(kernel), 0.8)
    weights[2] = np.where(np.abs(kernel) <= threshold, 0.0, kernel).astype(np.float32)
    model.set_weights(weights)
    return model


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite")


def _write(dir_: Path, name: str, data: bytes) -> Path:
    path = dir_ / name
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def fp32_path(cnn, tflite_dir) -> Path:
    return _write(tflite_dir, "fp32.tflite", _convert(cnn))


@pytest.fixture(scope="session")
def float16_path(cnn, tflite_dir) -> Path:
    return _write(tflite_dir, "float16.tflite", _convert(cnn, mode="float16"))


@pytest.fixture(scope="session")
def dynamic_path(cnn, tflite_dir) -> Path:
    return _write(tflite_dir, "dynamic.tflite", _convert(cnn, mode="dynamic"))


@pytest.fixture(scope="session")
def int8_path(cnn, tflite_dir) -> Path:
    return _write(tflite_dir, "int8.tflite", _convert(cnn, mode="int8"))


@pytest.fixture(scope="session")
def pruned_path(pruned_cnn, tflite_dir) -> Path:
    return _write(tflite_dir, "pruned.tflite", _convert(pruned_cnn))


@pytest.fixture(scope="session")
def external_path(cnn, tflite_dir) -> Path:
    return _write(tflite_dir, "external.tflite", _convert(cnn, mode="external"))


@pytest.fixture(scope="session")
def multi_subgraph_path(tflite_dir) -> Path:
    """tf.cond + tf.while_loop: converts to a main graph plus 4 branch/body subgraphs."""
    tf = _tf.tf()
    weight = np.arange(16, dtype=np.float32).reshape(4, 4)

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def fn(x):
        y = tf.cond(tf.reduce_sum(x) > 0, lambda: tf.matmul(x, tf.constant(weight)), lambda: x * 2.0)
        _, y = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v + 1.0), [tf.constant(0), y])
        return y

    return _write(tflite_dir, "multi.tflite", _convert(fn, concrete=fn.get_concrete_function()))


def build_tflite(tensors: list[dict], operators: list[dict] | None = None,
                 opcodes: list[tuple[int, str | None]] | None = None) -> bytes:
    """Writes a one-subgraph .tflite with the schema's object API.

    tensors: dicts with name, type (schema TensorType int), shape, and optional data (bytes)
    or share_with (index of an earlier tensor whose buffer to reuse), scale / zero_point /
    quantized_dimension. operators: dicts with opcode_index, inputs,
    outputs. opcodes: (builtin code, custom code or None).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT()]
    sub = s.SubGraphT()
    sub.tensors = []
    for i, spec in enumerate(tensors):
        t = s.TensorT()
        t.name = spec["name"]
        t.type = spec["type"]
        t.shape = list(spec["shape"])
        t.buffer = 0
        if "share_with" in spec:  # read the same buffer as an earlier tensor
            t.buffer = sub.tensors[spec["share_with"]].buffer
        elif spec.get("data") is not None:
            buf = s.BufferT()
            buf.data = list(spec["data"])
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1
        if "scale" in spec:
            q = s.QuantizationParametersT()
            q.scale = list(spec["scale"])
            q.zeroPoint = list(spec["zero_point"])
            q.quantizedDimension = spec.get("quantized_dimension", 0)
            t.quantization = q
        sub.tensors.append(t)
    sub.inputs = [0]
    sub.outputs = [len(tensors) - 1]
    sub.operators = []
    for spec in operators or []:
        op = s.OperatorT()
        op.opcodeIndex = spec["opcode_index"]
        op.inputs = list(spec["inputs"])
        op.outputs = list(spec["outputs"])
        sub.operators.append(op)
    sub.name = "main"
    model.subgraphs = [sub]
    model.operatorCodes = []
    for code, custom in opcodes or []:
        oc = s.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.customCode = custom
        model.operatorCodes.append(oc)
    model.description = "hand-built"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def hand_built():
    return build_tflite
