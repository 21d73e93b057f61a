"""Canonical Huffman: round trips, optimality against an independent heap construction, and
the entropy bounds H*n <= payload <= (H+1)*n."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from converters import huffman

RNG = np.random.default_rng(1234)
CASES = {
    "random_int8": RNG.integers(-128, 128, 20_000).astype(np.int8),
    "skewed_int16": RNG.geometric(0.2, 30_000).astype(np.int16),
    "single_symbol": np.full(1000, 7, dtype=np.int8),
    "two_symbols": np.array([3, -3] * 500 + [3] * 11, dtype=np.int8),
    "int4_range": RNG.integers(-8, 8, 4_001).astype(np.int8),
    "float16": RNG.normal(size=(64, 33)).astype(np.float16),
    "float32": RNG.normal(size=(50, 60)).astype(np.float32),
    "float32_signed_zeros": np.array([0.0, -0.0, 1.5, 0.0, -0.0, 1.5, 2.0], dtype=np.float32),
    "fibonacci_counts": np.repeat(np.arange(25), [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610,
                                                  987, 1597, 2584, 4181, 6765, 10946, 17711, 28657,
                                                  46368, 75025]).astype(np.int32),
    "bool": RNG.random(999) < 0.1,
}


def _heap_cost(counts) -> int:
    """Reference: classic heap Huffman; cost = sum of merged weights."""
    heap = list(map(int, counts))
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip(name):
    values = CASES[name]
    stream = huffman.encode(values)
    decoded = huffman.decode(stream)
    assert decoded.dtype == values.dtype and decoded.shape == values.shape
    # Bit-exact (keeps -0.0 apart from +0.0).
    assert decoded.tobytes() == values.tobytes()
    assert len(stream.data) == (stream.n_bits + 7) // 8


@pytest.mark.parametrize("name", sorted(CASES))
def test_size_matches_stream_and_bounds(name):
    values = CASES[name]
    _, counts = huffman.symbol_counts(values)
    n = values.size
    entropy = huffman.entropy_bits(counts)
    size = huffman.huffman_size(values, symbol_bits=values.dtype.itemsize * 8)
    assert size.payload_bits == huffman.encode(values).n_bits
    assert size.payload_bits == _heap_cost(counts) or counts.size == 1
    assert size.entropy_bits_per_symbol == pytest.approx(entropy, abs=1e-9)
    assert size.payload_bits >= entropy * n - 1e-6 * n
    assert size.payload_bits <= (entropy + 1) * n
    assert size.total_bits <= (entropy + 1) * n + size.codebook_bits
    assert size.codebook_bits == 8 + size.max_length * max(size.distinct.bit_length(), 1) \
        + size.distinct * values.dtype.itemsize * 8


def test_code_lengths_are_optimal_and_complete():
    for k in (2, 3, 17, 300):
        counts = RNG.integers(1, 1000, k)
        lengths = huffman.code_lengths(counts)
        assert int((lengths * counts).sum()) == _heap_cost(counts)
        assert sum(2.0 ** -int(length) for length in lengths) == pytest.approx(1.0)  # Kraft equality


def test_code_lengths_example_and_single_symbol():
    assert huffman.code_lengths(np.array([5, 1, 1, 2])).tolist() == [1, 3, 3, 2]
    assert huffman.code_lengths(np.array([42])).tolist() == [0]
    assert huffman.code_lengths(np.array([], dtype=np.int64)).tolist() == []
    with pytest.raises(ValueError, match="positive"):
        huffman.code_lengths(np.array([3, 0]))


def test_runs_of_equal_counts_match_heap():
    # Many distinct symbols that each occur once or twice: the float-tensor case.
    counts = np.concatenate([np.ones(100_001, dtype=np.int64), np.full(5_000, 2), [7, 7, 900]])
    size = huffman.huffman_size_from_counts(counts, symbol_bits=32)
    assert size.payload_bits == _heap_cost(counts)
    assert size.distinct == counts.size and size.n == int(counts.sum())


def test_canonical_codes_are_prefix_free():
    code = huffman.encode(CASES["skewed_int16"]).code
    words = [format(int(c), f"0{int(l)}b") for c, l in zip(code.codes(), code.lengths)]
    ordered = sorted(words)
    assert all(not b.startswith(a) for a, b in zip(ordered, ordered[1:]))
    assert list(code.lengths) == sorted(code.lengths)  # canonical order: by length


def test_entropy_values():
    assert huffman.entropy_bits(np.array([5])) == 0.0
    assert huffman.entropy_bits(np.array([1, 1, 1, 1])) == pytest.approx(2.0)
    assert huffman.entropy_bits(np.array([3, 1])) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_decode_rejects_short_stream():
    stream = huffman.encode(CASES["random_int8"])
    cut = huffman.HuffmanStream(stream.data[: len(stream.data) // 2], stream.n_bits // 2,
                                stream.n_symbols, stream.shape, stream.code)
    with pytest.raises(ValueError, match="ends early"):
        huffman.decode(cut)


def test_large_float_tensor_against_heap():
    # 300k float32 weights, almost all distinct: the run-based construction stays exact.
    values = RNG.normal(size=300_000).astype(np.float32)
    _, counts = huffman.symbol_counts(values)
    size = huffman.huffman_size(values, symbol_bits=32)
    assert size.payload_bits == _heap_cost(counts)
    assert size.payload_bits <= (size.entropy_bits_per_symbol + 1) * values.size


def test_docstring_examples():
    import doctest

    from converters import sparse

    for module in (huffman, sparse):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0
