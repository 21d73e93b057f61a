"""diff(): per-tensor matching (name, then index), added/removed tensors, total deltas."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from converters.size_diff import diff
from converters.size import analyze

T = schema.TensorType


def test_fp32_vs_int8(fp32_path, int8_path):
    a, b = analyze(fp32_path), analyze(int8_path)
    d = diff(a, b)
    assert d.raw_bytes.a == a.raw_bytes and d.raw_bytes.b == b.raw_bytes
    assert d.raw_bytes.change == b.raw_bytes - a.raw_bytes < 0
    assert d.gzip_bytes.change == b.gzip_bytes - a.gzip_bytes
    assert (d.zip_bytes.a, d.zip_bytes.b) == (a.zip_bytes, b.zip_bytes)
    assert d.coded_bytes.ratio == pytest.approx(b.coded_bytes / a.coded_bytes)
    assert d.params.a == a.params and d.params.b == b.params
    dense = next(t for t in d.tensors if t.dtype_a == "float32" and t.raw_bytes.a == 16_000)
    assert dense.status == "changed" and dense.dtype_b == "int8"
    assert dense.raw_bytes.b == 4_000 and dense.params.change == 0
    # Every counted tensor of both sides appears exactly once.
    assert sum(t.index_a is not None for t in d.tensors) == len(a.counted_tensors)
    assert sum(t.index_b is not None for t in d.tensors) == len(b.counted_tensors)


def test_same_model_has_no_changes(fp32_path):
    d = diff(fp32_path, fp32_path.read_bytes())
    assert {t.status for t in d.tensors} == {"same"}
    assert all(t.matched_by == "name" for t in d.tensors)
    assert d.raw_bytes.change == 0 and d.raw_bytes.ratio == 1.0


def test_added_removed_and_index_fallback(hand_built):
    w = np.ones(8, np.float32).tobytes()
    a = hand_built([{"name": "in", "type": T.FLOAT32, "shape": [8]},
                    {"name": "kept", "type": T.FLOAT32, "shape": [8], "data": w},
                    {"name": "", "type": T.FLOAT32, "shape": [8], "data": w},
                    {"name": "gone", "type": T.FLOAT32, "shape": [8], "data": w}])
    b = hand_built([{"name": "in", "type": T.FLOAT32, "shape": [8]},
                    {"name": "kept", "type": T.FLOAT32, "shape": [4, 4], "data": np.zeros(16, np.float32).tobytes()},
                    {"name": "", "type": T.FLOAT32, "shape": [8], "data": w},
                    {"name": "new", "type": T.FLOAT32, "shape": [2], "data": np.ones(2, np.float32).tobytes()},
                    {"name": "new2", "type": T.FLOAT32, "shape": [2], "data": np.ones(2, np.float32).tobytes()}])
    d = diff(a, b)
    rows = {(t.name, t.status, t.matched_by) for t in d.tensors}
    assert ("kept", "changed", "name") in rows
    assert ("", "same", "index") in rows          # unnamed, read by no op: same index, shape, dtype
    # Index 3 is "gone" [8] in a and "new" [2] in b: nothing justifies pairing them.
    assert ("gone", "removed", None) in rows and ("new", "added", None) in rows
    assert ("new2", "added", None) in rows
    assert [t.name for t in d.added] == ["new", "new2"] and [t.name for t in d.removed] == ["gone"]
    kept = next(t for t in d.tensors if t.name == "kept")
    assert kept.params.change == 8 and kept.raw_bytes.change == 32


def test_to_dict_keys_are_pinned(fp32_path, dynamic_path):
    out = diff(fp32_path, dynamic_path).to_dict()
    json.dumps(out)
    assert list(out) == ["a", "b", "raw_bytes", "zip_bytes", "gzip_bytes", "coded_bytes", "weight_bytes",
                         "non_weight_bytes", "params", "tensors"]
    assert list(out["raw_bytes"]) == ["a", "b", "change", "ratio"]
    assert list(out["tensors"][0]) == ["status", "subgraph", "name", "name_a", "matched_by", "index_a", "index_b",
                                       "dtype_a", "dtype_b", "params", "raw_bytes", "coded_bytes"]


def _tflite(layer_names, extra_dense=False, quantize=False):
    from mobile_opt import _tf

    tf, keras = _tf.tf(), _tf.keras()
    keras.utils.set_random_seed(0)
    conv, fc = layer_names
    layers = [keras.Input((12, 12, 1)), keras.layers.Conv2D(8, 3, name=conv), keras.layers.Flatten()]
    layers += [keras.layers.Dense(16, name="extra")] if extra_dense else []
    layers += [keras.layers.Dense(4, name=fc)]
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Sequential(layers))
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 kernels
    return converter.convert()


def test_renamed_tensors_pair_by_their_place_in_the_graph():
    """Names differ: fc1's kernel pairs with the other dense kernel, never with a conv bias."""
    d = diff(_tflite(("conv1", "fc1")), _tflite(("features", "logits"), quantize=True))
    paired = [t for t in d.tensors if t.status in ("same", "changed")]
    assert paired and {t.matched_by for t in paired} == {"graph"}
    kernels = {(t.name_a, t.name) for t in paired if t.params.a == 8 * 10 * 10 * 4}
    assert len(kernels) == 1
    (name_a, name_b), = kernels
    assert "fc1" in name_a and "logits" in name_b
    for t in paired:
        assert t.params.change == 0  # same layer, same parameter count: shapes agree
    assert not d.added and not d.removed


def test_a_tensor_with_no_justified_partner_is_listed_unmatched():
    d = diff(_tflite(("conv1", "fc1")), _tflite(("conv1", "fc1"), extra_dense=True))
    assert all(t.matched_by is not None for t in d.tensors if t.status in ("same", "changed"))
    unmatched = [t for t in d.tensors if t.status in ("added", "removed")]
    assert unmatched and all(t.matched_by is None for t in unmatched)
    assert any("extra" in t.name for t in d.added)
    for t in d.tensors:
        if t.status == "changed":  # a pairing is never between tensors of different sizes and layers
            assert t.matched_by == "name" or t.params.change == 0
