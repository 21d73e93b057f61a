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
    assert ("", "same", "index") in rows          # unnamed: matched by position
    assert ("new", "changed", "index") in rows    # index 3 of a ("gone") vs index 3 of b
    assert ("new2", "added", None) in rows
    assert [t.name for t in d.added] == ["new2"] and d.removed == ()
    kept = next(t for t in d.tensors if t.name == "kept")
    assert kept.params.change == 8 and kept.raw_bytes.change == 32


def test_to_dict_keys_are_pinned(fp32_path, dynamic_path):
    out = diff(fp32_path, dynamic_path).to_dict()
    json.dumps(out)
    assert list(out) == ["a", "b", "raw_bytes", "gzip_bytes", "coded_bytes", "weight_bytes",
                         "non_weight_bytes", "params", "tensors"]
    assert list(out["raw_bytes"]) == ["a", "b", "change", "ratio"]
    assert list(out["tensors"][0]) == ["status", "subgraph", "name", "matched_by", "index_a", "index_b",
                                       "dtype_a", "dtype_b", "params", "raw_bytes", "coded_bytes"]
