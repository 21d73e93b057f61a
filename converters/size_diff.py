"""Compare the sizes of two .tflite models tensor by tensor (e.g. before/after an optimisation).

Tensors are paired by what justifies it, in this order: "name" (the same name, unique in its
subgraph on both sides, read by the same op type at the same input slot: a reshaped kernel
keeps its name); "graph" (the same input slot of the k-th op of the same type, e.g. the
kernel of the second FULLY_CONNECTED, with the same shape: survives renaming, quantization
and pruning); "index" (only tensors no op reads: the same index, shape and dtype). A pairing no
rule justifies is never made: what is left is "added" (only in b) or "removed" (only in a).
Only tensors that carry their buffer in the totals are compared (see `converters.size`).

`SizeDiff.to_dict()` keys (stable; pinned by tests/converters/test_size_diff.py):
    a, b, raw_bytes, zip_bytes, gzip_bytes, coded_bytes, weight_bytes, non_weight_bytes, params, tensors
  each total is `Delta.to_dict()`: a, b, change (b - a), ratio (b / a, None when a is 0)
  tensors[i] (`TensorDiff.to_dict()`):
    status ("same" | "changed" | "added" | "removed"), subgraph, name (b's, else a's), name_a,
    matched_by ("name" | "graph" | "index" | None), index_a, index_b, dtype_a, dtype_b, params, raw_bytes, coded_bytes
  (params/raw_bytes/coded_bytes are `Delta`s; a missing side is 0)

Example:
    >>> d = diff("fp32.tflite", "int8.tflite")          # doctest: +SKIP
    >>> d.raw_bytes.ratio                               # doctest: +SKIP
    0.26
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from converters.size import SizeReport, TensorSize, analyze
from converters.tflite_model import TFLiteModel

__all__ = ["Delta", "SizeDiff", "TensorDiff", "diff"]


@dataclass(frozen=True)
class Delta:
    """A figure in model a and in model b."""

    a: int
    b: int

    @property
    def change(self) -> int:
        return self.b - self.a

    @property
    def ratio(self) -> float | None:
        return self.b / self.a if self.a else None

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "change": self.change, "ratio": self.ratio}


@dataclass(frozen=True)
class TensorDiff:
    """One matched (or unmatched) constant tensor."""

    status: str
    subgraph: int
    name: str
    name_a: str | None
    matched_by: str | None
    index_a: int | None
    index_b: int | None
    dtype_a: str | None
    dtype_b: str | None
    params: Delta
    raw_bytes: Delta
    coded_bytes: Delta

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "subgraph": self.subgraph,
            "name": self.name,
            "name_a": self.name_a,
            "matched_by": self.matched_by,
            "index_a": self.index_a,
            "index_b": self.index_b,
            "dtype_a": self.dtype_a,
            "dtype_b": self.dtype_b,
            "params": self.params.to_dict(),
            "raw_bytes": self.raw_bytes.to_dict(),
            "coded_bytes": self.coded_bytes.to_dict(),
        }


@dataclass(frozen=True)
class SizeDiff:
    """Totals of both models and per-tensor changes; `a`/`b` are the two SizeReports."""

    a: SizeReport
    b: SizeReport
    raw_bytes: Delta
    zip_bytes: Delta
    gzip_bytes: Delta
    coded_bytes: Delta
    weight_bytes: Delta
    non_weight_bytes: Delta
    params: Delta
    tensors: tuple[TensorDiff, ...]

    @property
    def added(self) -> tuple[TensorDiff, ...]:
        return tuple(t for t in self.tensors if t.status == "added")

    @property
    def removed(self) -> tuple[TensorDiff, ...]:
        return tuple(t for t in self.tensors if t.status == "removed")

    def to_dict(self) -> dict:
        return {
            "a": self.a.source,
            "b": self.b.source,
            "raw_bytes": self.raw_bytes.to_dict(),
            "zip_bytes": self.zip_bytes.to_dict(),
            "gzip_bytes": self.gzip_bytes.to_dict(),
            "coded_bytes": self.coded_bytes.to_dict(),
            "weight_bytes": self.weight_bytes.to_dict(),
            "non_weight_bytes": self.non_weight_bytes.to_dict(),
            "params": self.params.to_dict(),
            "tensors": [t.to_dict() for t in self.tensors],
        }


def _pair(ta: TensorSize | None, tb: TensorSize | None, matched_by: str | None) -> TensorDiff:
    ref = ta if ta is not None else tb
    if ta is None:
        status = "added"
    elif tb is None:
        status = "removed"
    else:
        same = (ta.dtype, ta.shape, ta.raw_bytes, ta.coded_bytes) == (tb.dtype, tb.shape, tb.raw_bytes, tb.coded_bytes)
        status = "same" if same else "changed"

    def get(t, attr):
        return getattr(t, attr) if t is not None else 0

    return TensorDiff(
        status=status, subgraph=ref.subgraph, name=(tb or ta).name,
        name_a=ta.name if ta else None, matched_by=matched_by,
        index_a=ta.index if ta else None, index_b=tb.index if tb else None,
        dtype_a=ta.dtype if ta else None, dtype_b=tb.dtype if tb else None,
        params=Delta(get(ta, "params"), get(tb, "params")),
        raw_bytes=Delta(get(ta, "raw_bytes"), get(tb, "raw_bytes")),
        coded_bytes=Delta(get(ta, "coded_bytes"), get(tb, "coded_bytes")),
    )


# How tensors are paired, most telling first; a key that is not unique on both sides pairs nothing.
def _name_key(t: TensorSize):
    return (t.subgraph, t.name) if t.name else None


def _graph_key(t: TensorSize):
    # The same input slot of the k-th op of the same type (fc1's kernel: FULLY_CONNECTED 0, slot 1),
    # of the same shape: survives renaming, quantization and pruning; a layer inserted before it
    # shifts k, and the shape check then refuses the pair rather than guess.
    return (t.subgraph, t.consumers[0], t.shape) if t.consumers else None


def _index_key(t: TensorSize):
    # Only for tensors no op reads (hand-built or dead): same index, same shape and dtype.
    return None if t.consumers else (t.subgraph, t.index, t.shape, t.dtype)


def _compatible(ta: TensorSize, tb: TensorSize, *, same_rank: bool) -> bool:
    """Read by the same op type at the same input slot when both are read (and of the same rank).

    Converter-made names ("arith.constant", "tfl.pseudo_qconst1") repeat across models for
    unrelated tensors (a Reshape's shape in one, a bias in the other): a name alone is no proof.
    """
    if same_rank and len(ta.shape) != len(tb.shape):
        return False
    if ta.consumers and tb.consumers:
        (op_a, _, slot_a), (op_b, _, slot_b) = ta.consumers[0], tb.consumers[0]
        return (op_a, slot_a) == (op_b, slot_b)
    return True


def _as_report(x, compress_level: int) -> SizeReport:
    return x if isinstance(x, SizeReport) else analyze(x, compress_level=compress_level)


def diff(a: str | Path | bytes | TFLiteModel | SizeReport, b: str | Path | bytes | TFLiteModel | SizeReport,
         *, compress_level: int = 9) -> SizeDiff:
    """Compares two models' sizes: totals and per-tensor deltas (b relative to a).

    Args:
        a: the reference model (path, bytes, `TFLiteModel`, or an existing `SizeReport`).
        b: the model compared against it.
        compress_level: zlib level for gzip sizes when a model must be analysed. Default 9.

    Returns:
        A `SizeDiff`; tensors ordered as in a, then b's additions.

    Raises:
        InputError / ModelFormatError: as `analyze`.

    Example:
        >>> d = diff("fp32.tflite", "pruned.tflite")                       # doctest: +SKIP
        >>> [t.name for t in d.tensors if t.status == "changed"]           # doctest: +SKIP
    """
    ra, rb = _as_report(a, compress_level), _as_report(b, compress_level)
    ta = list(ra.counted_tensors)
    tb = list(rb.counted_tensors)
    matches: dict[int, tuple[TensorSize, str]] = {}  # position in ta -> (tensor of b, how)
    used_b: set[int] = set()
    for how, key in (("name", _name_key), ("graph", _graph_key), ("index", _index_key)):
        left = [(i, t) for i, t in enumerate(ta) if i not in matches]
        right = [t for t in tb if id(t) not in used_b]
        keys_a = Counter(k for _, t in left if (k := key(t)) is not None)
        keys_b = Counter(k for t in right if (k := key(t)) is not None)
        by_key_b = {key(t): t for t in right if key(t) is not None and keys_b[key(t)] == 1}
        for i, t in left:
            k = key(t)
            other = by_key_b.get(k) if k is not None and keys_a[k] == 1 else None
            if other is not None and _compatible(t, other, same_rank=how != "name"):
                matches[i] = (other, how)
                used_b.add(id(other))
    rows = [_pair(t, *matches[i]) if i in matches else _pair(t, None, None) for i, t in enumerate(ta)]
    rows += [_pair(None, t, None) for t in tb if id(t) not in used_b]
    return SizeDiff(
        a=ra, b=rb,
        raw_bytes=Delta(ra.raw_bytes, rb.raw_bytes),
        zip_bytes=Delta(ra.zip_bytes, rb.zip_bytes),
        gzip_bytes=Delta(ra.gzip_bytes, rb.gzip_bytes),
        coded_bytes=Delta(ra.coded_bytes, rb.coded_bytes),
        weight_bytes=Delta(ra.weight_bytes, rb.weight_bytes),
        non_weight_bytes=Delta(ra.non_weight_bytes, rb.non_weight_bytes),
        params=Delta(ra.params, rb.params),
        tensors=tuple(rows),
    )
