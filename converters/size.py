"""Where the bytes of a .tflite file go, and how small entropy coding could make it.

Follows ../shared/reference/size_accounting.md:

* raw: the file as written: what an app ships and LiteRT mmaps (APKs store .tflite files
  uncompressed, `noCompress "tflite"`). The headline size.
* zip: the deflated data of the file as a ZIP_DEFLATED zip entry at zlib level 6 (`ZIP_LEVEL`),
  the level Android's APK packager uses for release builds (java.util.zip's default): what
  the file costs in a download where it is compressed. The entry's headers (about 100 B,
  depending on the entry name) are left out, so the figure does not depend on a file name.
* gzip: length of `zlib.compress(file, compress_level)` (level 9 by default, the TF-MOT
  convention).
* weight bytes: the bytes of every buffer a constant tensor reads (constant shape/index
  tensors included), each buffer counted once even when several tensors share it.
  non-weight bytes = raw - weight bytes: graph, tensor metadata, quantization parameters,
  signatures, metadata buffers and alignment padding, counted as they are.
* coded (an estimate: Deep Compression's storage coding, which no runtime loads) = non-weight bytes + for each weight buffer the smallest of raw, Huffman
  (`converters.huffman`, codebook included) and CSR + Huffman (`converters.sparse`,
  codebooks, index width and shape header included).
* entropy: zero-order entropy of each tensor's values (bits/weight); Huffman bits are never
  below it.

Per-op-type totals attribute each weight buffer to ONE operator type: that of the first
operator (in subgraph order, then operator order) that reads it; buffers no operator reads
go to "(unused)". The per-op totals therefore add up to the weight totals. Subgraph totals
attribute a buffer to the first subgraph whose tensor uses it.

`SizeReport.to_dict()` keys (stable; pinned by tests/converters/test_size.py):
    source, raw_bytes, zip_bytes, gzip_bytes, gzip_level, weight_bytes, non_weight_bytes,
    coded_bytes, params, weight_buffers, entropy_bits, huffman_bytes, tensors, op_types,
    subgraphs
  `huffman_bytes` is non-weight bytes + Huffman-or-raw per buffer (no sparse), for comparison.
  tensors[i] (`TensorSize.to_dict()`):
    subgraph, index, name, dtype, shape, buffer_index, shared_buffer, params, raw_bytes,
    zero_fraction, unique_values, entropy_bits_per_weight, huffman_bytes, sparse_bytes,
    sparse_index_bits, best_encoding, coded_bytes, op_type, used_by_ops
  op_types[i] (`OpTypeSize.to_dict()`):
    op_type, op_count, weight_buffers, params, raw_bytes, coded_bytes
  subgraphs[i] (`SubgraphSize.to_dict()`):
    index, name, tensor_count, op_count, weight_buffers, params, raw_bytes, coded_bytes
Figures a tensor cannot have (string tensors have no entropy) are None, never 0.

Example:
    >>> report = analyze("model.tflite")                     # doctest: +SKIP
    >>> report.coded_bytes <= report.raw_bytes               # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import logging
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from converters import huffman, sparse
from converters.tflite_model import Tensor, TFLiteModel, load_tflite
from mobile_opt._checks import check_number
from mobile_opt.errors import InputError, ModelFormatError

__all__ = ["OpTypeSize", "SizeReport", "SubgraphSize", "TensorSize", "analyze", "zip_size"]

log = logging.getLogger(__name__)

# Android's APK packager deflates release builds at java.util.zip's default level (6), debug
# builds at 1; the release level is what a download of a compressed .tflite entry costs.
ZIP_LEVEL = 6

UNUSED = "(unused)"


@dataclass(frozen=True)
class TensorSize:
    """Size figures of one constant tensor (bytes unless named otherwise).

    `shared_buffer` is True when an earlier tensor reads the same buffer: the row repeats
    that tensor's figures and is left out of every total. `op_type` is the op type the buffer
    is attributed to; `used_by_ops` every op type that reads it.
    """

    subgraph: int
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    buffer_index: int
    shared_buffer: bool
    params: int
    raw_bytes: int
    zero_fraction: float | None
    unique_values: int | None
    entropy_bits_per_weight: float | None
    huffman_bytes: int | None
    sparse_bytes: int | None
    sparse_index_bits: int | None
    best_encoding: str
    coded_bytes: int
    op_type: str
    used_by_ops: tuple[str, ...]
    # Where the graph reads this tensor: (op type, its occurrence among ops of that type in the
    # subgraph, input slot), in op order. Lets `diff` pair tensors whose names differ; not in to_dict.
    consumers: tuple[tuple[str, int, int], ...] = ()

    def to_dict(self) -> dict:
        return {
            "subgraph": self.subgraph,
            "index": self.index,
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "buffer_index": self.buffer_index,
            "shared_buffer": self.shared_buffer,
            "params": self.params,
            "raw_bytes": self.raw_bytes,
            "zero_fraction": self.zero_fraction,
            "unique_values": self.unique_values,
            "entropy_bits_per_weight": self.entropy_bits_per_weight,
            "huffman_bytes": self.huffman_bytes,
            "sparse_bytes": self.sparse_bytes,
            "sparse_index_bits": self.sparse_index_bits,
            "best_encoding": self.best_encoding,
            "coded_bytes": self.coded_bytes,
            "op_type": self.op_type,
            "used_by_ops": list(self.used_by_ops),
        }


@dataclass(frozen=True)
class OpTypeSize:
    """Weight bytes attributed to one operator type (see module docstring for the rule)."""

    op_type: str
    op_count: int
    weight_buffers: int
    params: int
    raw_bytes: int
    coded_bytes: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SubgraphSize:
    """Weight bytes attributed to one subgraph."""

    index: int
    name: str
    tensor_count: int
    op_count: int
    weight_buffers: int
    params: int
    raw_bytes: int
    coded_bytes: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SizeReport:
    """Whole-file size figures plus per-tensor, per-op-type and per-subgraph breakdowns."""

    source: str
    raw_bytes: int
    zip_bytes: int
    gzip_bytes: int
    gzip_level: int
    weight_bytes: int
    non_weight_bytes: int
    coded_bytes: int
    huffman_bytes: int
    params: int
    weight_buffers: int
    entropy_bits: float
    tensors: tuple[TensorSize, ...]
    op_types: tuple[OpTypeSize, ...]
    subgraphs: tuple[SubgraphSize, ...]

    @property
    def counted_tensors(self) -> tuple[TensorSize, ...]:
        """The tensors that carry their buffer in the totals (shared repeats left out)."""
        return tuple(t for t in self.tensors if not t.shared_buffer)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "raw_bytes": self.raw_bytes,
            "zip_bytes": self.zip_bytes,
            "gzip_bytes": self.gzip_bytes,
            "gzip_level": self.gzip_level,
            "weight_bytes": self.weight_bytes,
            "non_weight_bytes": self.non_weight_bytes,
            "coded_bytes": self.coded_bytes,
            "huffman_bytes": self.huffman_bytes,
            "params": self.params,
            "weight_buffers": self.weight_buffers,
            "entropy_bits": self.entropy_bits,
            "tensors": [t.to_dict() for t in self.tensors],
            "op_types": [o.to_dict() for o in self.op_types],
            "subgraphs": [s.to_dict() for s in self.subgraphs],
        }


def zip_size(data: bytes) -> int:
    """Bytes of `data` deflated as a zip entry (ZIP_DEFLATED, level `ZIP_LEVEL`), headers left out.

    Example:
        >>> zip_size(bytes(10_000)) < 100
        True
    """
    with zipfile.ZipFile(io.BytesIO(), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as archive:
        archive.writestr("model.tflite", data)
        return archive.getinfo("model.tflite").compress_size


def _zero_of(tensor: Tensor, values: np.ndarray):
    """The stored value that means 0.0: the zero point (per channel if they differ)."""
    q = tensor.quantization
    if values.dtype.kind == "f" or q is None or q.zero_point.size == 0:
        return 0
    zp = q.zero_point
    if zp.size == 1 or np.all(zp == zp[0]):
        return zp[0].astype(values.dtype)
    dim = q.quantized_dimension
    if tensor.sparsity is None and 0 <= dim < values.ndim and values.shape[dim] == zp.size:
        shape = [1] * values.ndim
        shape[dim] = zp.size
        return zp.reshape(shape).astype(values.dtype)
    raise ModelFormatError(
        f"Tensor {tensor.index} {tensor.name!r} has {zp.size} zero points for quantized "
        f"dimension {dim} of shape {tensor.shape}; they do not match. Re-convert the model."
    )


def _analyze_tensor(tensor: Tensor) -> dict:
    """Encodings of one constant tensor's buffer."""
    raw = tensor.nbytes
    values = tensor.data() if tensor.bits_per_element is not None else None
    if values is None or values.size == 0:
        return dict(params=tensor.num_elements, raw_bytes=raw, zero_fraction=None, unique_values=None,
                    entropy_bits_per_weight=None, huffman_bytes=None, sparse_bytes=None,
                    sparse_index_bits=None, best_encoding="raw", coded_bytes=raw)
    bits = tensor.bits_per_element
    keys, counts = huffman.symbol_counts(values)
    huff = huffman.huffman_size_from_counts(counts, symbol_bits=bits)
    zero = _zero_of(tensor, values)
    sp = sparse.sparse_size(values, symbol_bits=bits, zero=zero,
                            dense_counts=(keys, counts) if np.ndim(zero) == 0 else None)
    zero_fraction = float(np.mean(values == zero)) if values.size else 0.0
    options = [("raw", raw), ("huffman", huff.total_bytes), ("sparse", sp.total_bytes)]
    best, coded = min(options, key=lambda o: o[1])  # ties keep the earlier (simpler) encoding
    return dict(params=int(values.size), raw_bytes=raw, zero_fraction=zero_fraction,
                unique_values=huff.distinct, entropy_bits_per_weight=huff.entropy_bits_per_symbol,
                huffman_bytes=huff.total_bytes, sparse_bytes=sp.total_bytes,
                sparse_index_bits=sp.index_bits, best_encoding=best, coded_bytes=coded)


def analyze(source: str | Path | bytes | TFLiteModel, *, compress_level: int = 9,
            progress: Callable[[int, int], None] | None = None) -> SizeReport:
    """Measures raw, zip, gzip and entropy-coded sizes of a .tflite model.

    Args:
        source: path to a .tflite file, its bytes, or a `TFLiteModel` from `load_tflite`.
        compress_level: zlib level for `gzip_bytes`, 0..9. Default 9.
        progress: optional callback `progress(done, total)` after each weight buffer.

    Returns:
        A `SizeReport`.

    Raises:
        InputError: bad `compress_level`, or the path is missing / a directory.
        ModelFormatError: the file is not a valid .tflite model.

    Example:
        Find the tensors worth pruning:

        >>> report = analyze("model.tflite")                               # doctest: +SKIP
        >>> sorted(report.tensors, key=lambda t: -t.raw_bytes)[0].name      # doctest: +SKIP
    """
    check_number("compress_level", compress_level, at_least=0, at_most=9, integer=True, hint="(zlib levels)")
    started = time.perf_counter()
    model = source if isinstance(source, TFLiteModel) else load_tflite(source)

    # Which op types read each buffer; the first reader (subgraph, op order) owns it.
    readers: dict[int, list[str]] = {}
    op_counts: dict[str, int] = {}
    consumers: dict[tuple[int, int], list[tuple[str, int, int]]] = {}  # (subgraph, tensor) -> places
    for s, sg in enumerate(model.subgraphs):
        occurrence: dict[str, int] = {}
        for op in sg.operators:
            op_counts[op.opcode] = op_counts.get(op.opcode, 0) + 1
            nth = occurrence[op.opcode] = occurrence.get(op.opcode, -1) + 1
            for slot, idx in enumerate(op.inputs):
                if idx >= 0:
                    consumers.setdefault((s, idx), []).append((op.opcode, nth, slot))
            for idx in op.inputs:
                if idx >= 0 and sg.tensors[idx].is_constant:
                    users = readers.setdefault(sg.tensors[idx].buffer_index, [])
                    if op.opcode not in users:
                        users.append(op.opcode)

    constants = [(s, t) for s, sg in enumerate(model.subgraphs) for t in sg.tensors if t.is_constant]
    done_buffers: dict[int, dict] = {}
    rows: list[TensorSize] = []
    for done, (s, tensor) in enumerate(constants, start=1):
        shared = tensor.buffer_index in done_buffers
        try:
            figures = done_buffers.get(tensor.buffer_index) or _analyze_tensor(tensor)
        except ModelFormatError as exc:  # name the file, as the parser's own errors do
            raise ModelFormatError(f"{model.source}: {exc}") from exc
        done_buffers.setdefault(tensor.buffer_index, figures)
        users = tuple(readers.get(tensor.buffer_index, ()))
        rows.append(TensorSize(
            subgraph=s, index=tensor.index, name=tensor.name, dtype=tensor.dtype, shape=tensor.shape,
            buffer_index=tensor.buffer_index, shared_buffer=shared,
            op_type=users[0] if users else UNUSED, used_by_ops=users,
            consumers=tuple(consumers.get((s, tensor.index), ())), **figures,
        ))
        if progress is not None:
            progress(done, len(constants))

    counted = [r for r in rows if not r.shared_buffer]
    weight_bytes = sum(r.raw_bytes for r in counted)
    non_weight = model.file_size - weight_bytes
    raw = model.raw_bytes

    by_op: dict[str, list[TensorSize]] = {}
    for r in counted:
        by_op.setdefault(r.op_type, []).append(r)
    op_types = tuple(sorted(
        (OpTypeSize(op_type=k, op_count=op_counts.get(k, 0), weight_buffers=len(v),
                    params=sum(r.params for r in v), raw_bytes=sum(r.raw_bytes for r in v),
                    coded_bytes=sum(r.coded_bytes for r in v)) for k, v in by_op.items()),
        key=lambda o: (-o.raw_bytes, o.op_type),
    ))
    subgraphs = tuple(
        SubgraphSize(
            index=i, name=sg.name, tensor_count=len(sg.tensors), op_count=len(sg.operators),
            weight_buffers=sum(1 for r in counted if r.subgraph == i),
            params=sum(r.params for r in counted if r.subgraph == i),
            raw_bytes=sum(r.raw_bytes for r in counted if r.subgraph == i),
            coded_bytes=sum(r.coded_bytes for r in counted if r.subgraph == i),
        )
        for i, sg in enumerate(model.subgraphs)
    )
    log.debug("analysed %s: %d weight buffers, %d tensors in %.3f s", model.source, len(counted),
              len(rows), time.perf_counter() - started)
    huffman_or_raw = sum(min(r.raw_bytes, r.huffman_bytes if r.huffman_bytes is not None else r.raw_bytes)
                         for r in counted)
    return SizeReport(
        source=model.source,
        raw_bytes=model.file_size,
        zip_bytes=zip_size(raw),
        gzip_bytes=len(zlib.compress(raw, compress_level)),
        gzip_level=compress_level,
        weight_bytes=weight_bytes,
        non_weight_bytes=non_weight,
        coded_bytes=non_weight + sum(r.coded_bytes for r in counted),
        huffman_bytes=non_weight + huffman_or_raw,
        params=sum(r.params for r in counted),
        weight_buffers=len(counted),
        entropy_bits=float(sum(r.entropy_bits_per_weight * r.params for r in counted
                               if r.entropy_bits_per_weight is not None)),
        tensors=tuple(rows),
        op_types=op_types,
        subgraphs=subgraphs,
    )
