"""Canonical Huffman coding of tensor values: sizes, entropy, and a real bitstream codec.

Everything is vectorised with numpy; no Python loop runs per symbol.

* Code lengths come from a two-queue Huffman construction over *runs* of equal counts
  (all symbols that occur c times form one run and are paired in one numpy step), so a
  float tensor with a million distinct values costs a few dozen steps, not a million
  heap operations. Hand-written because no maintained library here builds Huffman codes
  on numpy arrays of this size.
* Float values are coded by their bit patterns (so -0.0, +0.0 and NaNs are kept apart).

Counted codebook (what a decoder needs, JPEG-DHT style), in bits:
    8                        the maximum code length L
  + L * bit_length(K)        how many codes have each length 1..L
  + K * symbol_bits          the K used symbols, in canonical order (length, then value)
The number of coded symbols is not counted here: it is the tensor's element count, already
in the graph (the sparse format counts its own header). A single-symbol alphabet codes every
symbol with 0 bits (the codebook alone decodes it).

Example:
    >>> import numpy as np
    >>> x = np.array([1, 1, 1, 2, 2, 3], dtype=np.int8)
    >>> stream = encode(x)
    >>> bool((decode(stream) == x).all())
    True
    >>> huffman_size(x, symbol_bits=8).payload_bits
    9
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = [
    "HuffmanCode",
    "HuffmanSize",
    "HuffmanStream",
    "code_lengths",
    "codebook_bits",
    "decode",
    "encode",
    "entropy_bits",
    "huffman_size",
    "huffman_size_from_counts",
    "symbol_counts",
]

# Longest code the bitstream decoder reads in one 64-bit window (with 7 bits of shift).
_MAX_DECODE_LENGTH = 56


@dataclass(frozen=True)
class HuffmanSize:
    """Size of the Huffman coding of n symbols (bits unless named bytes)."""

    n: int
    distinct: int
    max_length: int
    payload_bits: int
    codebook_bits: int
    entropy_bits_per_symbol: float

    @property
    def total_bits(self) -> int:
        return self.payload_bits + self.codebook_bits

    @property
    def total_bytes(self) -> int:
        return (self.total_bits + 7) // 8

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "distinct": self.distinct,
            "max_length": self.max_length,
            "payload_bits": self.payload_bits,
            "codebook_bits": self.codebook_bits,
            "total_bits": self.total_bits,
            "total_bytes": self.total_bytes,
            "entropy_bits_per_symbol": self.entropy_bits_per_symbol,
        }


@dataclass(frozen=True)
class HuffmanCode:
    """A canonical code: `symbols` in canonical order (length, then value) and their `lengths`."""

    symbols: np.ndarray
    lengths: np.ndarray

    @property
    def max_length(self) -> int:
        return int(self.lengths.max()) if self.lengths.size else 0

    def codes(self) -> np.ndarray:
        """The code word of each symbol (uint64, right-aligned), canonical assignment."""
        return _canonical_codes(self.lengths)


@dataclass(frozen=True)
class HuffmanStream:
    """An encoded tensor: `data` is the packed bitstream (MSB first) of `n_bits` bits."""

    data: bytes
    n_bits: int
    n_symbols: int
    shape: tuple[int, ...]
    code: HuffmanCode


def _keys(values: np.ndarray) -> np.ndarray:
    """Sortable integer keys: floats by bit pattern, bools as uint8, ints unchanged."""
    flat = np.ascontiguousarray(values).reshape(-1)
    kind = flat.dtype.kind
    if kind in "iu":
        return flat
    if kind == "b":
        return flat.view(np.uint8)
    if flat.dtype.itemsize in (1, 2, 4, 8):  # float16/32/64, bfloat16, float8
        return flat.view(f"u{flat.dtype.itemsize}")
    raise TypeError(f"Huffman coding needs numeric values. Received: dtype={flat.dtype}")


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # np.sort + diff is several times faster than np.unique(return_counts=True) here.
    if keys.size == 0:
        return keys[:0], np.zeros(0, dtype=np.int64)
    s = np.sort(keys, kind="stable" if keys.dtype.itemsize <= 2 else None)
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    counts = np.diff(np.append(starts, s.size))
    return s[starts], counts


def symbol_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (as integer keys: float bit patterns) and how often each occurs."""
    return _unique_counts(_keys(np.asarray(values)))


def entropy_bits(counts: np.ndarray) -> float:
    """Zero-order Shannon entropy in bits per symbol of a histogram `counts`.

    Example:
        >>> entropy_bits(np.array([1, 1]))
        1.0
    """
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    total = counts.sum()
    if counts.size <= 1:
        return 0.0
    p = counts / total
    return float(-(p * np.log2(p)).sum())


def codebook_bits(distinct: int, max_length: int, symbol_bits: int) -> int:
    """Bits of the counted canonical codebook (see module docstring)."""
    return 8 + max_length * max(distinct.bit_length(), 1) + distinct * symbol_bits


class _Run:
    __slots__ = ("weight", "n", "pos", "height", "children", "depth")

    def __init__(self, weight: int, n: int, height: int, children):
        self.weight, self.n, self.pos, self.height = weight, n, 0, height
        self.children = children
        self.depth = None


def _build(run_weights: np.ndarray, run_mults: np.ndarray, want_depths: bool):
    """Two-queue Huffman over runs of equal weights.

    Returns (payload_bits, max_length, leaf_runs, created_runs). The cost of a Huffman code is
    the sum of the weights of its internal nodes; every run's nodes share one subtree shape,
    so one height per run suffices.
    """
    leaves = deque(_Run(int(w), int(m), 0, None) for w, m in zip(run_weights, run_mults))
    leaf_list = list(leaves)
    internal: deque[_Run] = deque()
    created: list[_Run] = []
    remaining = int(np.sum(run_mults))
    cost = 0

    def head() -> _Run:
        while leaves and leaves[0].pos == leaves[0].n:
            leaves.popleft()
        while internal and internal[0].pos == internal[0].n:
            internal.popleft()
        if not internal or (leaves and leaves[0].weight <= internal[0].weight):
            return leaves[0]
        return internal[0]

    while remaining > 1:
        a = head()
        avail = a.n - a.pos
        if avail >= 2:
            k = avail // 2
            node = _Run(2 * a.weight, k, a.height + 1, ("pairs", a, a.pos, k))
            a.pos += 2 * k
            cost += k * node.weight
            remaining -= k
        else:
            ia = a.pos
            a.pos += 1
            b = head()
            ib = b.pos
            b.pos += 1
            node = _Run(a.weight + b.weight, 1, max(a.height, b.height) + 1, ("two", a, ia, b, ib))
            cost += node.weight
            remaining -= 1
        internal.append(node)
        created.append(node)

    if want_depths:
        for run in leaf_list + created:
            run.depth = np.zeros(run.n, dtype=np.int64)
        for node in reversed(created):
            d = node.depth + 1
            if node.children[0] == "pairs":
                _, a, start, k = node.children
                a.depth[start:start + 2 * k] = np.repeat(d, 2)
            else:
                _, a, ia, b, ib = node.children
                a.depth[ia] = d[0]
                b.depth[ib] = d[0]
    max_length = created[-1].height if created else 0
    return cost, max_length, leaf_list


def _runs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct counts and how many symbols have each (the leaf runs)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and counts.max() <= 4 * counts.size + 1024:  # histogram beats a sort
        hist = np.bincount(counts)
        weights = np.flatnonzero(hist)
        return weights, hist[weights]
    return _unique_counts(counts)


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol given its count (same order as `counts`).

    Args:
        counts: positive occurrence counts, one per distinct symbol.

    Returns:
        int64 array of code lengths; a single symbol gets length 0.

    Raises:
        ValueError: a count is not positive.

    Example:
        >>> code_lengths(np.array([5, 1, 1, 2])).tolist()
        [1, 3, 3, 2]
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and counts.min() <= 0:
        raise ValueError(f"Huffman counts must be positive. Received: min count={counts.min()}")
    if counts.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(counts, kind="stable")
    weights, mults = _runs(counts)
    _, _, leaf_runs = _build(weights, mults, want_depths=True)
    lengths = np.empty(counts.size, dtype=np.int64)
    lengths[order] = np.concatenate([r.depth for r in leaf_runs])
    return lengths


def huffman_size_from_counts(counts: np.ndarray, *, symbol_bits: int,
                             runs: tuple[np.ndarray, np.ndarray] | None = None) -> HuffmanSize:
    """Huffman size of a histogram without building the code (sum of internal node weights).

    Args:
        counts: occurrence count of each distinct symbol (zeros are ignored). Not read when
            `runs` is given.
        symbol_bits: bits one symbol value takes in the codebook (4 for int4, 32 for float32).
        runs: optional precomputed (sorted distinct counts, multiplicities) of `counts`, to
            skip a sort.

    Returns:
        A `HuffmanSize`.

    Example:
        >>> huffman_size_from_counts(np.array([1, 1, 2]), symbol_bits=8).payload_bits
        6
    """
    if runs is None:
        counts = np.asarray(counts, dtype=np.int64)
        runs = _runs(counts[counts > 0])
    weights, mults = (np.asarray(r, dtype=np.int64) for r in runs)
    cost, max_length, _ = _build(weights, mults, want_depths=False)
    k = int(mults.sum())
    n = int((weights * mults).sum())
    return HuffmanSize(
        n=n, distinct=k, max_length=max_length, payload_bits=int(cost),
        codebook_bits=codebook_bits(k, max_length, symbol_bits) if k else 0,
        entropy_bits_per_symbol=_entropy_from_runs(weights, mults, n),
    )


def _entropy_from_runs(weights: np.ndarray, mults: np.ndarray, n: int) -> float:
    # H = log2(n) - sum(c log2 c) / n, summed over runs of equal counts c.
    if mults.sum() <= 1:
        return 0.0
    w = weights.astype(np.float64)
    return max(float(np.log2(n) - (mults * w * np.log2(w)).sum() / n), 0.0)


def huffman_size(values: np.ndarray, *, symbol_bits: int) -> HuffmanSize:
    """Size of the canonical Huffman coding of `values` (payload + counted codebook).

    Args:
        values: any numeric array (flattened).
        symbol_bits: bits per symbol in the codebook (the storage width of the dtype).

    Returns:
        A `HuffmanSize` (payload and codebook bits, entropy in bits per symbol).

    Example:
        >>> huffman_size(np.zeros(100, dtype=np.float32), symbol_bits=32).payload_bits
        0
    """
    _, counts = symbol_counts(values)
    return huffman_size_from_counts(counts, symbol_bits=symbol_bits)


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Codes for lengths already sorted in canonical order (nondecreasing length)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return np.zeros(0, dtype=np.uint64)
    max_len = int(lengths.max())
    bl_count = np.bincount(lengths, minlength=max_len + 1)
    bl_count[0] = 0
    first = np.zeros(max_len + 2, dtype=np.uint64)
    code = 0
    for length in range(1, max_len + 1):  # loop over code lengths (<= 56), not symbols
        code = (code + int(bl_count[length - 1])) << 1
        first[length] = code
    group_start = np.concatenate(([0], np.cumsum(bl_count)))[lengths]
    rank = np.arange(lengths.size, dtype=np.int64) - group_start
    return first[lengths] + rank.astype(np.uint64)


def _build_code(values: np.ndarray) -> tuple[HuffmanCode, np.ndarray]:
    """Canonical code for `values` and the canonical symbol index of every value."""
    flat = np.ascontiguousarray(values).reshape(-1)
    keys = _keys(flat)
    uniq_keys, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    lengths = code_lengths(counts)
    order = np.lexsort((uniq_keys, lengths))  # canonical: by length, then by value
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    symbols = uniq_keys[order].view(flat.dtype) if flat.dtype.kind not in "iu" else uniq_keys[order]
    return HuffmanCode(symbols=symbols.astype(flat.dtype, copy=False), lengths=lengths[order]), rank[inverse]


def encode(values: np.ndarray) -> HuffmanStream:
    """Encodes `values` with their own canonical Huffman code into a packed bitstream.

    Args:
        values: numeric array of any shape.

    Returns:
        A `HuffmanStream` (bytes, bit count, element count, shape and the code).

    Example:
        >>> encode(np.array([7, 7, 9], dtype=np.int8)).n_bits
        3
    """
    values = np.asarray(values)
    code, idx = _build_code(values)
    if code.max_length > _MAX_DECODE_LENGTH:
        raise ValueError(f"Huffman code length {code.max_length} exceeds {_MAX_DECODE_LENGTH} bits; "
                         "split the tensor into smaller blocks.")
    lens = code.lengths[idx]
    total = int(lens.sum())
    width = max(code.max_length, 1)
    # Left-align each code word in 64 bits, unpack to a bit matrix and keep the first `len`
    # bits of each row: row-major order of the kept bits is the bitstream. Chunked for memory.
    left = code.codes() << (64 - np.maximum(code.lengths, 1)).astype(np.uint64)
    keep_cols = np.arange(width)
    pieces = []
    for start in range(0, idx.size, 1 << 20):
        part = idx[start:start + (1 << 20)]
        matrix = np.unpackbits(left[part].astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
        pieces.append(matrix[:, :width][keep_cols < lens[start:start + part.size, None]])
    bits = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)
    return HuffmanStream(np.packbits(bits).tobytes(), total, int(values.size), tuple(values.shape), code)


def decode(stream: HuffmanStream) -> np.ndarray:
    """Decodes a `HuffmanStream` back to the original array (vectorised).

    Every bit position is decoded speculatively (the code word that would start there); the
    true chain of code starts is then followed with pointer doubling in blocks of 64 symbols.

    Args:
        stream: the output of `encode`.

    Returns:
        The decoded array, of the original dtype and shape.

    Raises:
        ValueError: the stream is shorter than its code says.
    """
    code, n = stream.code, stream.n_symbols
    if n == 0:
        return code.symbols[:0].reshape(stream.shape)
    if code.max_length == 0:
        return np.full(stream.shape, code.symbols[0], dtype=code.symbols.dtype)
    L = code.max_length
    total = stream.n_bits
    raw = np.frombuffer(stream.data, dtype=np.uint8)
    padded = np.concatenate((raw, np.zeros(9, dtype=np.uint8)))
    # Big-endian 64-bit word starting at every byte, so any L-bit window is one shift away.
    windows8 = np.lib.stride_tricks.sliding_window_view(padded, 8)[: raw.size + 1]
    words = np.ascontiguousarray(windows8).view(">u8").reshape(-1).astype(np.uint64)
    index_t = np.int32 if total < 2**31 - 1 else np.int64
    pos = np.arange(total, dtype=index_t)
    win = (words[pos >> 3] << (pos & 7).astype(np.uint64)) >> np.uint64(64 - L)
    # Canonical codes of length l, left-justified to L bits, occupy [first_l, first_l + count_l).
    lengths_used = np.unique(code.lengths)
    codes = code.codes()
    group_first_idx = np.searchsorted(code.lengths, lengths_used, side="left")
    group_end_idx = np.searchsorted(code.lengths, lengths_used, side="right")
    shift = (L - lengths_used).astype(np.uint64)
    upper = (codes[group_end_idx - 1] + np.uint64(1)) << shift
    if L <= 20:  # small codes: one table lookup per bit position instead of a search
        table = np.searchsorted(upper, np.arange(1 << L, dtype=np.uint64), side="right")
        g = table[win.astype(np.int64)]
    else:
        g = np.searchsorted(upper, win, side="right")
    del upper
    valid = g < lengths_used.size
    g = np.minimum(g, lengths_used.size - 1)
    sym_at = (group_first_idx[g] + ((win >> shift[g]) - codes[group_first_idx[g]]).astype(np.int64))
    del win
    nxt = np.minimum(np.where(valid, pos + lengths_used[g].astype(index_t), total), total)
    nxt = np.append(nxt, index_t(total))  # sentinel: position `total` maps to itself
    del g, pos
    block = 64
    jump = nxt
    for _ in range(6):  # jump = nxt applied 64 times
        jump = jump[jump]
    n_blocks = -(-n // block)
    starts = np.empty(n_blocks, dtype=index_t)
    p = 0
    for i in range(n_blocks):  # one step per 64 symbols
        starts[i] = p
        p = int(jump[p])
    chain = np.empty((n_blocks, block), dtype=index_t)
    chain[:, 0] = starts
    for t in range(1, block):
        chain[:, t] = nxt[chain[:, t - 1]]
    positions = chain.reshape(-1)[:n]
    if positions.max() >= total or not valid[positions].all():
        raise ValueError(f"Huffman stream ends early: {total} bits do not hold {n} symbols.")
    return code.symbols[sym_at[positions]].reshape(stream.shape)
