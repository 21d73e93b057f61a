"""load_tflite on real converter output (fp32, float16, dynamic, int8, external buffers,
several subgraphs) and on hand-built / damaged flatbuffers."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from converters.tflite_model import TFLiteModel, load_tflite
from mobile_opt.errors import InputError, ModelFormatError

T = schema.TensorType


def _constants(model: TFLiteModel, subgraph: int = 0):
    return [t for t in model.subgraphs[subgraph].tensors if t.is_constant]


def _by_shape(model: TFLiteModel, shape):
    found = [t for t in _constants(model) if t.shape == tuple(shape)]
    assert len(found) == 1, [(t.name, t.shape) for t in _constants(model)]
    return found[0]


def test_fp32_weights_match_keras(cnn, fp32_path):
    model = load_tflite(fp32_path)
    conv_k, conv_b, dense_k, dense_b = cnn.get_weights()
    assert model.file_size == fp32_path.stat().st_size
    assert model.version == 3
    assert len(model.subgraphs) == 1
    # TFLite stores conv kernels OHWI and dense kernels (out, in).
    conv = _by_shape(model, (4, 3, 3, 1))
    np.testing.assert_array_equal(conv.data(), conv_k.transpose(3, 0, 1, 2))
    dense = _by_shape(model, (10, 400))
    np.testing.assert_array_equal(dense.data(), dense_k.T)
    np.testing.assert_array_equal(_by_shape(model, (10,)).data(), dense_b)
    np.testing.assert_array_equal(_by_shape(model, (4,)).data(), conv_b)
    assert dense.dtype == "float32" and dense.nbytes == 10 * 400 * 4
    assert dense.quantization is None and dense.sparsity is None and not dense.is_variable
    inputs = model.subgraphs[0].inputs
    assert model.subgraphs[0].tensors[inputs[0]].shape == (1, 12, 12, 1)
    assert model.subgraphs[0].tensors[inputs[0]].data() is None


def test_operators_and_options(fp32_path):
    model = load_tflite(fp32_path)
    ops = model.subgraphs[0].operators
    kinds = [op.opcode for op in ops]
    assert "CONV_2D" in kinds and "FULLY_CONNECTED" in kinds
    conv = ops[kinds.index("CONV_2D")]
    assert conv.options["padding"] == "VALID"
    assert conv.options["stride_w"] == 1 and conv.options["stride_h"] == 1
    assert conv.options["fused_activation_function"] == "RELU"
    assert conv.options["dilation_w_factor"] == 1
    fc = ops[kinds.index("FULLY_CONNECTED")]
    assert fc.options["fused_activation_function"] == "NONE"
    assert fc.options["weights_format"] == "DEFAULT"
    tensors = model.subgraphs[0].tensors
    assert tensors[conv.inputs[1]].shape == (4, 3, 3, 1)
    sig = model.signature_defs[0]
    assert sig.signature_key == "serving_default"
    assert set(sig.inputs.values()) == set(model.subgraphs[0].inputs)
    assert any(m.name == "min_runtime_version" for m in model.metadata)


def test_bytes_and_path_parse_alike(fp32_path):
    a = load_tflite(fp32_path)
    b = load_tflite(fp32_path.read_bytes())
    assert [t.name for t in a.subgraphs[0].tensors] == [t.name for t in b.subgraphs[0].tensors]
    assert a.buffers_info == b.buffers_info
    assert b.source == "<bytes>" and a.source == str(fp32_path)


def test_int8_quantization(cnn, int8_path):
    model = load_tflite(int8_path)
    conv_k = cnn.get_weights()[0].transpose(3, 0, 1, 2)
    conv = _by_shape(model, (4, 3, 3, 1))
    assert conv.dtype == "int8"
    q = conv.quantization
    assert q.quantized_dimension == 0 and q.scale.shape == (4,)
    assert (q.zero_point == 0).all()  # int8 weights are symmetric
    dequant = (conv.data().astype(np.float32) - q.zero_point.reshape(-1, 1, 1, 1)) * q.scale.reshape(-1, 1, 1, 1)
    assert np.abs(dequant - conv_k).max() <= q.scale.max() / 2 + 1e-7
    tensors = model.subgraphs[0].tensors
    inp = tensors[model.subgraphs[0].inputs[0]]
    assert inp.dtype == "int8" and inp.quantization.zero_point.size == 1
    assert -128 <= int(inp.quantization.zero_point[0]) <= 127
    bias = _by_shape(model, (10,))
    assert bias.dtype == "int32"


def test_float16_and_dynamic(cnn, float16_path, dynamic_path):
    f16 = load_tflite(float16_path)
    dense = _by_shape(f16, (10, 400))
    assert dense.dtype == "float16" and dense.nbytes == 10 * 400 * 2
    np.testing.assert_allclose(dense.data().astype(np.float32), cnn.get_weights()[2].T, rtol=1e-3, atol=1e-4)
    assert "DEQUANTIZE" in {op.opcode for op in f16.subgraphs[0].operators}
    dyn = load_tflite(dynamic_path)
    assert _by_shape(dyn, (10, 400)).dtype == "int8"


def test_external_buffers(fp32_path, external_path):
    ext = load_tflite(external_path)
    external = [b for b in ext.buffers_info if b.external]
    assert external, "converter did not write external buffers"
    for b in external:
        assert b.offset + b.size <= ext.file_size
    ref = load_tflite(fp32_path)
    dense = _by_shape(ext, (10, 400))
    assert dense._buffer.external
    np.testing.assert_array_equal(dense.data(), _by_shape(ref, (10, 400)).data())


def test_multiple_subgraphs(multi_subgraph_path):
    model = load_tflite(multi_subgraph_path)
    assert len(model.subgraphs) >= 3
    main_ops = {op.opcode: op for op in model.subgraphs[0].operators}
    assert "IF" in main_ops and "WHILE" in main_ops
    if_opts = main_ops["IF"].options
    for key in ("then_subgraph_index", "else_subgraph_index"):
        assert 0 < if_opts[key] < len(model.subgraphs)
    weights = [t for sg in model.subgraphs for t in sg.tensors if t.is_constant and t.shape == (4, 4)]
    assert len(weights) == 1
    expected = np.arange(16, dtype=np.float32).reshape(4, 4)
    # The converter may store the matmul constant transposed (as a FULLY_CONNECTED weight).
    assert np.array_equal(weights[0].data(), expected) or np.array_equal(weights[0].data(), expected.T)


def test_int4_unpacked_two_per_byte(hand_built):
    values = np.array([-8, -1, 0, 1, 7, 3, -5], dtype=np.int8)  # odd count: last byte half used
    nibbles = (values & 0x0F).astype(np.uint8)
    packed = np.zeros(4, dtype=np.uint8)
    packed[:] = nibbles[0::2][:4]
    packed[:3] |= nibbles[1::2] << 4  # low nibble first
    raw = hand_built([
        {"name": "in", "type": T.FLOAT32, "shape": [1, 7]},
        {"name": "w4", "type": T.INT4, "shape": [7], "data": packed.tobytes(),
         "scale": [0.5], "zero_point": [0]},
    ])
    model = load_tflite(raw)
    t = model.subgraphs[0].tensors[1]
    assert t.dtype == "int4" and t.nbytes == 4 and t.bits_per_element == 4
    np.testing.assert_array_equal(t.data(), values)
    assert model.description == "hand-built"


def test_custom_op_and_unknown_builtin(hand_built):
    raw = hand_built(
        [{"name": "in", "type": T.FLOAT32, "shape": [2]}, {"name": "out", "type": T.FLOAT32, "shape": [2]}],
        operators=[{"opcode_index": 0, "inputs": [0], "outputs": [1]},
                   {"opcode_index": 1, "inputs": [1, -1], "outputs": [1]}],
        opcodes=[(schema.BuiltinOperator.CUSTOM, "MyFancyOp"), (250, None)],
    )
    model = load_tflite(raw)
    assert model.operator_codes == ("CUSTOM:MyFancyOp", "BUILTIN_250")
    assert model.subgraphs[0].operators[1].inputs == (1, -1)


@pytest.mark.parametrize("bad_tensor, message", [
    ({"name": "w", "type": 99, "shape": [2], "data": b"\0" * 8}, "tensor type code 99"),
    ({"name": "w", "type": T.FLOAT32, "shape": [2**31 - 1, 2**31 - 1, 2**31 - 1], "data": b"\0" * 8}, "needs"),
    ({"name": "w", "type": T.FLOAT32, "shape": [3], "data": b"\0" * 8}, "needs 12 bytes"),
    ({"name": "w", "type": T.FLOAT32, "shape": [-1, 2], "data": b"\0" * 8}, "unknown dimensions"),
])
def test_bad_tensors_are_format_errors(hand_built, bad_tensor, message):
    raw = hand_built([{"name": "in", "type": T.FLOAT32, "shape": [2]}, bad_tensor])
    with pytest.raises(ModelFormatError, match=message):
        load_tflite(raw)


def test_operator_index_out_of_range(hand_built):
    raw = hand_built([{"name": "in", "type": T.FLOAT32, "shape": [2]}],
                     operators=[{"opcode_index": 0, "inputs": [0, 7], "outputs": [0]}],
                     opcodes=[(schema.BuiltinOperator.ADD, None)])
    with pytest.raises(ModelFormatError, match="refers to tensor 7"):
        load_tflite(raw)


def _patched_external(path, offset: int, size: int) -> bytes:
    raw = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(bytes(raw), 0)
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.Offset() > 1:
            tab = buf._tab
            struct.pack_into("<Q", raw, tab.Pos + tab.Offset(6), offset)
            struct.pack_into("<Q", raw, tab.Pos + tab.Offset(8), size)
            return bytes(raw)
    raise AssertionError("no external buffer to patch")


def test_external_buffer_outside_file(external_path):
    with pytest.raises(ModelFormatError, match="past the end"):
        load_tflite(_patched_external(external_path, offset=10**12, size=64))
    with pytest.raises(ModelFormatError, match="past the end"):
        load_tflite(_patched_external(external_path, offset=100, size=2**40))


def test_huge_vector_length_is_rejected_fast(fp32_path):
    raw = bytearray(fp32_path.read_bytes())
    sub = schema.Model.GetRootAs(bytes(raw), 0).Subgraphs(0)
    tab = sub._tab
    vector_at = tab.Pos + tab.Offset(4)  # field 0: tensors
    length_at = vector_at + struct.unpack_from("<I", raw, vector_at)[0]
    struct.pack_into("<I", raw, length_at, 0x7FFFFFFF)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="declares 2147483647 elements"):
            load_tflite(bytes(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(raw) + 2**20  # refused from the header: nothing sized by the claimed length


@pytest.mark.parametrize("data, message", [
    (b"", "0 bytes long"),
    (b"\x10\x00\x00\x00TFL", "too short"),
    (b"\x10\x00\x00\x00XXXX" + b"\0" * 64, "file identifier"),
    (b"\xff\xff\xff\x00TFL3" + b"\0" * 64, "root table offset"),
])
def test_garbage_headers(data, message):
    with pytest.raises(ModelFormatError, match=message):
        load_tflite(data)


def test_truncated_file_names_the_file(fp32_path, tmp_path):
    path = tmp_path / "cut.tflite"
    path.write_bytes(fp32_path.read_bytes()[:2000])
    with pytest.raises(ModelFormatError, match="cut.tflite"):
        load_tflite(path)


def test_path_problems_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found") as missing:
        load_tflite(tmp_path / "nope.tflite")
    assert not isinstance(missing.value, ModelFormatError)
    with pytest.raises(InputError, match="directory"):
        load_tflite(tmp_path)
    with pytest.raises(InputError, match="Received: source=int"):
        load_tflite(42)
