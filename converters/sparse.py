"""Deep-Compression-style sparse storage: CSR with relative index gaps, Huffman on both streams.

A tensor is flattened; each non-zero element becomes an entry (gap, value), where the gap is
the number of zeros skipped since the previous entry. Gaps are stored in `index_bits` bits:
when more zeros than 2**b - 1 separate two non-zeros, *filler* entries (gap 2**b - 1, value
zero) are inserted, each advancing 2**b positions (Han et al., Deep Compression, ICLR 2016,
section 3). Trailing zeros need no entry: the decoder knows the dense size.

"Zero" means the value that dequantizes to 0.0: 0 for float tensors, the zero point for
quantized ones (per channel when the zero points differ). Floats compare by value, so -0.0
is a zero and decodes as +0.0.

Counted size of one width b (bits):
    header                 8 (b) + 32 (entry count) + 8 (rank) + 32 per dimension
  + values stream          Huffman payload + its codebook (symbol_bits per symbol)
  + gaps stream            Huffman payload + its codebook (b bits per symbol)
(codebook format: `converters.huffman`). `sparse_size` tries every width in `DEFAULT_WIDTHS`
and reports the smallest.

Example:
    >>> import numpy as np
    >>> x = np.array([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 7], dtype=np.int8)
    >>> s = csr_encode(x, index_bits=3)
    >>> s.gaps.tolist(), s.values.tolist(), s.num_fillers
    ([2, 7, 0], [5, 0, 7], 1)
    >>> csr_decode(s).tolist() == x.tolist()
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from converters import huffman

__all__ = ["DEFAULT_WIDTHS", "CSRStream", "SparseSize", "csr_decode", "csr_encode", "sparse_size"]

DEFAULT_WIDTHS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 16)


@dataclass(frozen=True)
class CSRStream:
    """Entries of a CSR encoding: `gaps[i]` zeros precede `values[i]`; fillers included."""

    gaps: np.ndarray
    values: np.ndarray
    index_bits: int
    shape: tuple[int, ...]
    num_fillers: int
    zero: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SparseSize:
    """Size of the best CSR + Huffman encoding (bits unless named bytes)."""

    index_bits: int
    num_entries: int
    num_fillers: int
    header_bits: int
    value_bits: int
    value_codebook_bits: int
    gap_bits: int
    gap_codebook_bits: int
    bytes_by_index_bits: dict[int, int]

    @property
    def total_bits(self) -> int:
        return (self.header_bits + self.value_bits + self.value_codebook_bits
                + self.gap_bits + self.gap_codebook_bits)

    @property
    def total_bytes(self) -> int:
        return (self.total_bits + 7) // 8

    def to_dict(self) -> dict:
        return {
            "index_bits": self.index_bits,
            "num_entries": self.num_entries,
            "num_fillers": self.num_fillers,
            "header_bits": self.header_bits,
            "value_bits": self.value_bits,
            "value_codebook_bits": self.value_codebook_bits,
            "gap_bits": self.gap_bits,
            "gap_codebook_bits": self.gap_codebook_bits,
            "total_bits": self.total_bits,
            "total_bytes": self.total_bytes,
            "bytes_by_index_bits": {str(k): v for k, v in self.bytes_by_index_bits.items()},
        }


def _check_width(index_bits: int) -> None:
    if not isinstance(index_bits, (int, np.integer)) or not 1 <= index_bits <= 32:
        raise ValueError(f"index_bits must be an integer in 1..32. Received: index_bits={index_bits!r}")


def _zero_mask(values: np.ndarray, zero) -> tuple[np.ndarray, np.ndarray]:
    zero_full = np.broadcast_to(np.asarray(zero, dtype=values.dtype), values.shape)
    return (values == zero_full).reshape(-1), zero_full


def _gaps(is_zero: np.ndarray) -> np.ndarray:
    """Zeros skipped before each non-zero (int64)."""
    nz = np.flatnonzero(~is_zero)
    return np.diff(nz, prepend=-1) - 1


def csr_encode(values: np.ndarray, *, zero=0, index_bits: int = 4) -> CSRStream:
    """Encodes a tensor as CSR entries with relative gaps of `index_bits` bits (fillers inserted).

    Args:
        values: dense tensor (any shape; flattened in C order).
        zero: the value that counts as zero (scalar, or broadcastable: per-channel zero points).
            Default 0.
        index_bits: bits per stored gap. Default 4.

    Returns:
        A `CSRStream`.

    Raises:
        ValueError: `index_bits` is not in 1..32.
    """
    _check_width(index_bits)
    values = np.asarray(values)
    is_zero, zero_full = _zero_mask(values, zero)
    flat = values.reshape(-1)
    nz = np.flatnonzero(~is_zero)
    gaps = np.diff(nz, prepend=-1) - 1
    step = 1 << index_bits
    fillers = gaps >> index_bits
    per_entry = fillers + 1
    total = int(per_entry.sum())
    group_start = np.cumsum(per_entry) - per_entry
    j = np.arange(total, dtype=np.int64) - np.repeat(group_start, per_entry) + 1
    prev = np.repeat(np.concatenate(([-1], nz))[:-1], per_entry)
    is_filler = j <= np.repeat(fillers, per_entry)
    pos = np.where(is_filler, prev + j * step, np.repeat(nz, per_entry))
    stored = np.where(is_filler, zero_full.reshape(-1)[pos], flat[pos]) if total else flat[:0]
    return CSRStream(
        gaps=(np.diff(pos, prepend=-1) - 1).astype(np.uint32),
        values=stored.astype(values.dtype, copy=False),
        index_bits=int(index_bits),
        shape=tuple(values.shape),
        num_fillers=int(fillers.sum()),
        zero=np.asarray(zero, dtype=values.dtype),
    )


def csr_decode(stream: CSRStream) -> np.ndarray:
    """Rebuilds the dense tensor from a `CSRStream` (zeros filled with the stream's zero)."""
    dense = np.array(np.broadcast_to(stream.zero, stream.shape)).reshape(-1)
    positions = np.cumsum(stream.gaps.astype(np.int64) + 1) - 1
    dense[positions] = stream.values
    return dense.reshape(stream.shape)


def _header_bits(rank: int) -> int:
    return 8 + 32 + 8 + 32 * rank


def sparse_size(values: np.ndarray, *, symbol_bits: int, zero=0,
                index_bits: tuple[int, ...] = DEFAULT_WIDTHS,
                dense_counts: tuple[np.ndarray, np.ndarray] | None = None) -> SparseSize:
    """Size of the best CSR + Huffman encoding of `values` over the candidate index widths.

    Args:
        values: dense tensor.
        symbol_bits: bits of one value in the values codebook (8 for int8, 32 for float32...).
        zero: value that counts as zero (scalar or per-channel array). Default 0.
        index_bits: gap widths to try. Default `DEFAULT_WIDTHS` (1..8 and 16).
        dense_counts: optional `huffman.symbol_counts(values)`, reused to skip a sort when
            `zero` is a scalar.

    Returns:
        The `SparseSize` of the smallest width (ties: the narrower width), with the total
        bytes of every width tried in `bytes_by_index_bits`.

    Raises:
        ValueError: `index_bits` is empty or holds a width outside 1..32.

    Example:
        >>> sparse_size(np.array([0, 0, 0, 3], dtype=np.int8), symbol_bits=8).num_entries
        1
    """
    if not index_bits:
        raise ValueError("index_bits must name at least one width. Received: index_bits=()")
    for b in index_bits:
        _check_width(b)
    values = np.asarray(values)
    is_zero, zero_full = _zero_mask(values, zero)
    n_zeros = int(is_zero.sum())
    # A tensor without zeros has one entry of gap 0 per element: skip building the gaps.
    gaps = _gaps(is_zero) if n_zeros else None
    scalar_zero = np.ndim(zero) == 0 or np.all(zero_full == zero_full.reshape(-1)[:1])
    if scalar_zero:
        keys, counts = dense_counts if dense_counts is not None else huffman.symbol_counts(values)
        zero_value = zero_full.reshape(-1)[0] if values.size else np.zeros((), values.dtype)
        is_zero_key = (keys.view(values.dtype) if values.dtype.kind not in "iu" else keys) == zero_value
        nonzero_counts = counts[~is_zero_key]
        nonzero_runs = huffman._runs(nonzero_counts)
    else:
        nonzero_keys = huffman._keys(values.reshape(-1)[~is_zero])
    rank = values.ndim
    # Work on the histogram of gaps (distinct gap, count): its size is bounded by the largest
    # gap, so the per-width loop is cheap even for dense tensors with millions of entries.
    if gaps is None:
        hist = np.array([values.size], dtype=np.int64) if values.size else np.zeros(0, np.int64)
    else:
        hist = np.bincount(gaps) if gaps.size else np.zeros(0, np.int64)
    gap_values = np.flatnonzero(hist)
    gap_mults = hist[gap_values]
    best = None
    by_width: dict[int, int] = {}
    for b in index_bits:
        n_fill = int((gap_mults * (gap_values >> b)).sum())
        top = (1 << b) - 1
        gap_counts = np.bincount(gap_values & top, weights=gap_mults).astype(np.int64)
        if n_fill:
            if top < gap_counts.size:
                gap_counts[top] += n_fill
            else:
                gap_counts = np.append(gap_counts, n_fill)
        gap_size = huffman.huffman_size_from_counts(gap_counts, symbol_bits=b)
        if scalar_zero:
            value_counts = np.append(nonzero_counts, n_fill) if n_fill else nonzero_counts
            runs = _add_to_runs(nonzero_runs, n_fill) if n_fill else nonzero_runs
            value_size = huffman.huffman_size_from_counts(value_counts, symbol_bits=symbol_bits, runs=runs)
        else:
            filler_pos = _filler_positions(is_zero, gaps, b) if gaps is not None else np.zeros(0, np.int64)
            filler_keys = huffman._keys(zero_full.reshape(-1)[filler_pos])
            _, value_counts = huffman._unique_counts(np.concatenate((nonzero_keys, filler_keys)))
            value_size = huffman.huffman_size_from_counts(value_counts, symbol_bits=symbol_bits)
        size = SparseSize(
            index_bits=int(b), num_entries=int(values.size) - n_zeros + n_fill, num_fillers=n_fill,
            header_bits=_header_bits(rank),
            value_bits=value_size.payload_bits, value_codebook_bits=value_size.codebook_bits,
            gap_bits=gap_size.payload_bits, gap_codebook_bits=gap_size.codebook_bits,
            bytes_by_index_bits={},
        )
        by_width[int(b)] = size.total_bytes
        if best is None or size.total_bits < best.total_bits:
            best = size
    return SparseSize(**{**best.__dict__, "bytes_by_index_bits": by_width})


def _add_to_runs(runs: tuple[np.ndarray, np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Adds one symbol of `count` occurrences to sorted (weights, multiplicities) runs."""
    weights, mults = runs
    i = int(np.searchsorted(weights, count))
    if i < weights.size and weights[i] == count:
        mults = mults.copy()
        mults[i] += 1
        return weights, mults
    return np.insert(weights, i, count), np.insert(mults, i, 1)


def _filler_positions(is_zero: np.ndarray, gaps: np.ndarray, index_bits: int) -> np.ndarray:
    nz = np.flatnonzero(~is_zero)
    prev = np.concatenate(([-1], nz))[:-1]
    fillers = gaps >> index_bits
    j = np.arange(int(fillers.sum())) - np.repeat(np.cumsum(fillers) - fillers, fillers) + 1
    return np.repeat(prev, fillers) + j * (1 << index_bits)
