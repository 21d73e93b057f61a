"""Compare the sizes of two .tflite models tensor by tensor (e.g. before/after an optimisation).

Tensors are matched by (subgraph, name) when the name is unique in its subgraph in both
models, then the rest by (subgraph, tensor index); what is left is "added" (only in b) or
"removed" (only in a). Only tensors that carry their buffer in the totals are compared
(see `converters.size`).

`SizeDiff.to_dict()` keys (stable; pinned by tests/converters/test_diff.py):
    a, b, raw_bytes, gzip_bytes, coded_bytes, weight_bytes, non_weight_bytes, params, tensors
  each total is `Delta.to_dict()`: a, b, change (b - a), ratio (b / a, None when a is 0)
  tensors[i] (`TensorDiff.to_dict()`):
    status ("same" | "changed" | "added" | "removed"), subgraph, name, matched_by
    ("name" | "index" | None), index_a, index_b, dtype_a, dtype_b, params, raw_bytes, coded_bytes
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
        status=status, subgraph=ref.subgraph, name=(tb or ta).name, matched_by=matched_by,
        index_a=ta.index if ta else None, index_b=tb.index if tb else None,
        dtype_a=ta.dtype if ta else None, dtype_b=tb.dtype if tb else None,
        params=Delta(get(ta, "params"), get(tb, "params")),
        raw_bytes=Delta(get(ta, "raw_bytes"), get(tb, "raw_bytes")),
        coded_bytes=Delta(get(ta, "coded_bytes"), get(tb, "coded_bytes")),
    )


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
    names_a = Counter((t.subgraph, t.name) for t in ta)
    names_b = Counter((t.subgraph, t.name) for t in tb)
    by_name_b = {(t.subgraph, t.name): t for t in tb if names_b[(t.subgraph, t.name)] == 1}
    matches: dict[int, tuple[TensorSize, str]] = {}  # position in ta -> (tensor of b, how)
    used_b: set[int] = set()
    for i, t in enumerate(ta):
        key = (t.subgraph, t.name)
        if t.name and names_a[key] == 1 and key in by_name_b:
            matches[i] = (by_name_b[key], "name")
            used_b.add(id(by_name_b[key]))
    by_index_b = {(t.subgraph, t.index): t for t in tb if id(t) not in used_b}
    for i, t in enumerate(ta):
        if i not in matches:
            other = by_index_b.pop((t.subgraph, t.index), None)
            if other is not None:
                matches[i] = (other, "index")
                used_b.add(id(other))
    rows = [_pair(t, *matches[i]) if i in matches else _pair(t, None, None) for i, t in enumerate(ta)]
    rows += [_pair(None, t, None) for t in tb if id(t) not in used_b]
    return SizeDiff(
        a=ra, b=rb,
        raw_bytes=Delta(ra.raw_bytes, rb.raw_bytes),
        gzip_bytes=Delta(ra.gzip_bytes, rb.gzip_bytes),
        coded_bytes=Delta(ra.coded_bytes, rb.coded_bytes),
        weight_bytes=Delta(ra.weight_bytes, rb.weight_bytes),
        non_weight_bytes=Delta(ra.non_weight_bytes, rb.non_weight_bytes),
        params=Delta(ra.params, rb.params),
        tensors=tuple(rows),
    )
