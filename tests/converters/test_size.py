"""analyze() on real converted models: accounting identities, zero fractions, zero points,
shared buffers, subgraphs and the pinned to_dict() schema."""

from __future__ import annotations

import io
import json
import zipfile
import zlib

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from converters.size import SizeReport, analyze
from converters.tflite_model import load_tflite
from mobile_opt.errors import InputError, ModelFormatError

T = schema.TensorType


def _deflated_entry(raw: bytes) -> int:
    """The entry's deflated data, read back from a real archive written at level 6."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("m.tflite", raw)
    with zipfile.ZipFile(buffer) as archive:
        (info,) = archive.infolist()
        assert archive.read(info) == raw
        return info.compress_size


def _check_identities(report: SizeReport, path) -> None:
    raw = path.read_bytes() if hasattr(path, "read_bytes") else path
    counted = report.counted_tensors
    assert report.raw_bytes == len(raw)
    assert report.gzip_bytes == len(zlib.compress(raw, 9))
    assert report.zip_bytes == _deflated_entry(raw)
    assert report.weight_bytes + report.non_weight_bytes == report.raw_bytes
    assert report.weight_bytes == sum(t.raw_bytes for t in counted)
    assert report.coded_bytes == report.non_weight_bytes + sum(t.coded_bytes for t in counted)
    assert report.non_weight_bytes < report.coded_bytes <= report.raw_bytes
    assert report.coded_bytes <= report.huffman_bytes <= report.raw_bytes
    assert sum(o.raw_bytes for o in report.op_types) == report.weight_bytes
    assert sum(o.coded_bytes for o in report.op_types) == sum(t.coded_bytes for t in counted)
    assert sum(s.raw_bytes for s in report.subgraphs) == report.weight_bytes
    for t in counted:
        options = {"raw": t.raw_bytes, "huffman": t.huffman_bytes, "sparse": t.sparse_bytes}
        assert t.coded_bytes == min(v for v in options.values() if v is not None)
        assert options[t.best_encoding] == t.coded_bytes
        if t.huffman_bytes is not None:
            # Huffman payload can never beat the entropy bound.
            assert t.huffman_bytes * 8 >= t.entropy_bits_per_weight * t.params - 1e-6
    entropy = sum(t.entropy_bits_per_weight * t.params for t in counted if t.entropy_bits_per_weight is not None)
    assert report.entropy_bits == pytest.approx(entropy)


@pytest.mark.parametrize("fixture", ["fp32_path", "float16_path", "dynamic_path", "int8_path",
                                     "pruned_path", "external_path", "multi_subgraph_path"])
def test_accounting_identities(request, fixture):
    path = request.getfixturevalue(fixture)
    _check_identities(analyze(path), path)


def test_fp32_tensors_match_keras(cnn, fp32_path):
    report = analyze(fp32_path)
    floats = [t for t in report.counted_tensors if t.dtype == "float32"]
    assert sum(t.params for t in floats) == cnn.count_params()
    assert sorted(t.shape for t in floats) == sorted([(4,), (4, 3, 3, 1), (10,), (10, 400)])
    dense = next(t for t in floats if t.shape == (10, 400))
    assert dense.raw_bytes == 16_000 and dense.op_type == "FULLY_CONNECTED"
    kernel = cnn.get_weights()[2]
    assert dense.zero_fraction == 0.0
    assert dense.unique_values == np.unique(kernel.view(np.uint32)).size
    assert dense.best_encoding == "raw"  # 4000 distinct floats: the codebook alone costs 16 kB
    fc = next(o for o in report.op_types if o.op_type == "FULLY_CONNECTED")
    assert fc.op_count == 1 and fc.params >= 4000


def test_pruned_kernel_zero_fraction_and_sparse_win(pruned_cnn, pruned_path, fp32_path):
    kernel = pruned_cnn.get_weights()[2]
    report = analyze(pruned_path)
    dense = next(t for t in report.counted_tensors if t.shape == (10, 400))
    assert dense.zero_fraction == pytest.approx(float(np.mean(kernel == 0)))
    assert dense.zero_fraction >= 0.79
    assert dense.best_encoding == "sparse"
    assert dense.coded_bytes < 0.4 * dense.raw_bytes
    assert report.coded_bytes < analyze(fp32_path).coded_bytes


def test_int8_zero_point_is_the_zero(hand_built):
    zp = -3
    values = np.full(400, zp, dtype=np.int8)
    values[::10] = np.arange(40) - 20  # includes stored 0s, which are not zeros here
    raw = hand_built([
        {"name": "in", "type": T.INT8, "shape": [1, 400]},
        {"name": "w", "type": T.INT8, "shape": [400], "data": values.tobytes(),
         "scale": [0.1], "zero_point": [zp]},
    ])
    report = analyze(raw)
    w = report.tensors[0]
    assert w.zero_fraction == pytest.approx(float(np.mean(values == zp)))
    assert w.best_encoding in ("sparse", "huffman") and w.coded_bytes < 400
    _check_identities(report, raw)


def test_int8_model_per_channel(int8_path):
    model = load_tflite(int8_path)
    report = analyze(model)
    conv = next(t for t in report.counted_tensors if t.shape == (4, 3, 3, 1))
    data = next(t for t in model.subgraphs[0].tensors if t.shape == (4, 3, 3, 1)).data()
    assert conv.dtype == "int8" and conv.raw_bytes == 36
    assert conv.zero_fraction == pytest.approx(float(np.mean(data == 0)))


def test_shared_buffer_counted_once(hand_built):
    w = np.arange(64, dtype=np.float32)
    raw = hand_built([
        {"name": "in", "type": T.FLOAT32, "shape": [64]},
        {"name": "a", "type": T.FLOAT32, "shape": [64], "data": w.tobytes()},
        {"name": "b", "type": T.FLOAT32, "shape": [64], "share_with": 1},
        {"name": "out", "type": T.FLOAT32, "shape": [64]},
    ], operators=[{"opcode_index": 0, "inputs": [0, 2], "outputs": [3]},
                  {"opcode_index": 1, "inputs": [3, 1], "outputs": [3]}],
        opcodes=[(schema.BuiltinOperator.ADD, None), (schema.BuiltinOperator.MUL, None)])
    report = analyze(raw)
    a, b = report.tensors
    assert (a.shared_buffer, b.shared_buffer) == (False, True)
    assert a.buffer_index == b.buffer_index
    assert report.weight_bytes == 256 and report.weight_buffers == 1 and report.params == 64
    # First reader (op 0, ADD via tensor b) owns the buffer; both op types are listed.
    assert a.op_type == "ADD" and set(a.used_by_ops) == {"ADD", "MUL"}
    assert [o.op_type for o in report.op_types] == ["ADD"]
    _check_identities(report, raw)


def test_int4_and_unused_constant(hand_built):
    packed = bytes([0x21, 0x43, 0x65, 0x07])
    raw = hand_built([
        {"name": "in", "type": T.FLOAT32, "shape": [7]},
        {"name": "w4", "type": T.INT4, "shape": [7], "data": packed, "scale": [1.0], "zero_point": [0]},
    ])
    report = analyze(raw)
    (w4,) = report.tensors
    assert w4.dtype == "int4" and w4.raw_bytes == 4 and w4.params == 7
    assert w4.op_type == "(unused)" and w4.unique_values == 7
    assert report.op_types[0].op_type == "(unused)"


def test_multiple_subgraphs(multi_subgraph_path):
    report = analyze(multi_subgraph_path)
    assert len(report.subgraphs) >= 3
    owner = next(t for t in report.counted_tensors if t.shape == (4, 4))
    assert report.subgraphs[owner.subgraph].raw_bytes >= 64
    assert owner.subgraph > 0 and report.subgraphs[0].name == "main"


def test_float16_symbol_width(float16_path):
    report = analyze(float16_path)
    dense = next(t for t in report.counted_tensors if t.shape == (10, 400))
    assert dense.dtype == "float16" and dense.raw_bytes == 8000


def test_external_buffers_are_weights(fp32_path, external_path):
    ext, ref = analyze(external_path), analyze(fp32_path)
    assert ext.weight_bytes >= ref.weight_bytes - 64  # same weights, possibly fewer padding bytes
    assert ext.params == ref.params


def test_to_dict_keys_are_pinned(fp32_path):
    d = analyze(fp32_path).to_dict()
    json.dumps(d)
    assert list(d) == ["source", "raw_bytes", "zip_bytes", "gzip_bytes", "gzip_level", "weight_bytes", "non_weight_bytes",
                       "coded_bytes", "huffman_bytes", "params", "weight_buffers", "entropy_bits",
                       "tensors", "op_types", "subgraphs"]
    assert list(d["tensors"][0]) == [
        "subgraph", "index", "name", "dtype", "shape", "buffer_index", "shared_buffer", "params",
        "raw_bytes", "zero_fraction", "unique_values", "entropy_bits_per_weight", "huffman_bytes",
        "sparse_bytes", "sparse_index_bits", "best_encoding", "coded_bytes", "op_type", "used_by_ops"]
    assert list(d["op_types"][0]) == ["op_type", "op_count", "weight_buffers", "params", "raw_bytes",
                                      "coded_bytes"]
    assert list(d["subgraphs"][0]) == ["index", "name", "tensor_count", "op_count", "weight_buffers",
                                       "params", "raw_bytes", "coded_bytes"]


def test_progress_and_level(fp32_path):
    calls = []
    report = analyze(fp32_path, compress_level=1, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] == len(report.tensors)
    assert report.gzip_bytes == len(zlib.compress(fp32_path.read_bytes(), 1)) and report.gzip_level == 1


@pytest.mark.parametrize("level", [10, -1, 2.5, True])
def test_bad_compress_level(fp32_path, level):
    with pytest.raises(InputError, match="compress_level"):
        analyze(fp32_path, compress_level=level)


def test_bad_file(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFormatError, match="x.tflite"):
        analyze(bad)
