"""CSR with relative-index gaps: hand-made filler examples, round trips, and sizes that match
Huffman-coding the actual encoded streams."""

from __future__ import annotations

import numpy as np
import pytest

from converters import huffman, sparse

RNG = np.random.default_rng(7)


def test_hand_made_fillers():
    # 2 zeros, 5, then 8 zeros, 7. Width 3 bits holds gaps up to 7: the gap of 8 needs one
    # filler (a stored zero 8 positions after the 5), then the 7 with gap 0.
    x = np.array([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 7], dtype=np.int8)
    s = sparse.csr_encode(x, index_bits=3)
    assert s.gaps.tolist() == [2, 7, 0]
    assert s.values.tolist() == [5, 0, 7]
    assert s.num_fillers == 1
    np.testing.assert_array_equal(sparse.csr_decode(s), x)


@pytest.mark.parametrize("index_bits, zeros, fillers", [
    (2, 3, 0),    # gap 3 = 2**2 - 1 fits
    (2, 4, 1),    # one more zero needs a filler
    (2, 8, 2),
    (2, 11, 2),   # 11 = 2 * 4 + 3
    (2, 12, 3),
    (1, 5, 2),    # width 1: each filler advances 2 positions
    (8, 300, 1),
])
def test_filler_count(index_bits, zeros, fillers):
    x = np.concatenate([[1], np.zeros(zeros), [2]]).astype(np.float32)
    s = sparse.csr_encode(x, index_bits=index_bits)
    assert s.num_fillers == fillers
    assert len(s.values) == 2 + fillers
    assert s.gaps.max() <= 2 ** index_bits - 1
    np.testing.assert_array_equal(sparse.csr_decode(s), x)
    size = sparse.sparse_size(x, symbol_bits=32, index_bits=(index_bits,))
    assert size.num_fillers == fillers and size.num_entries == 2 + fillers


def test_trailing_and_leading_zeros_and_all_zero():
    x = np.array([0, 0, 0, 4, 0, 0, 0, 0], dtype=np.int16)
    s = sparse.csr_encode(x, index_bits=2)
    assert s.values.tolist() == [4] and s.gaps.tolist() == [3]  # trailing zeros cost nothing
    np.testing.assert_array_equal(sparse.csr_decode(s), x)
    empty = sparse.csr_encode(np.zeros((3, 5), np.float32), index_bits=4)
    assert empty.values.size == 0
    np.testing.assert_array_equal(sparse.csr_decode(empty), np.zeros((3, 5), np.float32))
    size = sparse.sparse_size(np.zeros((3, 5), np.float32), symbol_bits=32)
    assert size.num_entries == 0 and size.total_bits == size.header_bits


@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("index_bits", [1, 3, 5, 8, 16])
def test_round_trip_random(density, index_bits):
    x = RNG.normal(size=(17, 3, 3, 8)).astype(np.float32)
    x[RNG.random(x.shape) >= density] = 0.0
    s = sparse.csr_encode(x, index_bits=index_bits)
    np.testing.assert_array_equal(sparse.csr_decode(s), x)
    # The streams survive Huffman coding too.
    np.testing.assert_array_equal(huffman.decode(huffman.encode(s.gaps)), s.gaps)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(s.values)), s.values)


def test_quantized_zero_point_is_the_zero():
    zp = np.int8(-3)
    x = np.full(40, zp, dtype=np.int8)
    x[[5, 17, 39]] = [10, -100, 0]  # a stored 0 is NOT a zero here
    s = sparse.csr_encode(x, zero=zp, index_bits=4)
    # Gaps 5, 11, 21: only 21 > 15 needs a filler, which stores the zero point.
    assert s.gaps.tolist() == [5, 11, 15, 5]
    assert s.values.tolist() == [10, -100, -3, 0]
    np.testing.assert_array_equal(sparse.csr_decode(s), x)


def test_per_channel_zero_points():
    zp = np.array([[1], [2], [0], [-1]], dtype=np.int8)
    x = np.broadcast_to(zp, (4, 50)).copy()
    x[RNG.random(x.shape) < 0.2] = 5
    for b in (1, 2, 4, 8):
        s = sparse.csr_encode(x, zero=zp, index_bits=b)
        np.testing.assert_array_equal(sparse.csr_decode(s), x)
        size = sparse.sparse_size(x, zero=zp, symbol_bits=8, index_bits=(b,))
        assert size.num_fillers == s.num_fillers
        assert size.value_bits == huffman.huffman_size(s.values, symbol_bits=8).payload_bits


def test_per_channel_zero_points_without_any_zero():
    zp = np.array([[1], [2]], dtype=np.int8)
    x = np.full((2, 30), 9, dtype=np.int8)
    size = sparse.sparse_size(x, zero=zp, symbol_bits=8)
    assert size.num_entries == 60 and size.num_fillers == 0
    np.testing.assert_array_equal(sparse.csr_decode(sparse.csr_encode(x, zero=zp)), x)


def test_negative_zero_counts_as_zero():
    x = np.array([-0.0, 0.0, 1.0, -0.0, 2.0], dtype=np.float32)
    s = sparse.csr_encode(x, index_bits=2)
    assert s.values.tolist() == [1.0, 2.0]
    np.testing.assert_array_equal(sparse.csr_decode(s), x)  # numerically equal


@pytest.mark.parametrize("density", [0.02, 0.2, 0.9])
def test_size_equals_huffman_of_real_streams(density):
    x = RNG.integers(-127, 128, (64, 96)).astype(np.int8)
    x[RNG.random(x.shape) >= density] = 0
    size = sparse.sparse_size(x, symbol_bits=8)
    assert set(size.bytes_by_index_bits) == set(sparse.DEFAULT_WIDTHS)
    assert size.total_bytes == min(size.bytes_by_index_bits.values())
    for b, total_bytes in size.bytes_by_index_bits.items():
        s = sparse.csr_encode(x, index_bits=b)
        hv = huffman.huffman_size(s.values, symbol_bits=8)
        hg = huffman.huffman_size(s.gaps, symbol_bits=b)
        header = 8 + 32 + 8 + 32 * x.ndim
        assert total_bytes == (header + hv.total_bits + hg.total_bits + 7) // 8
        assert hv.payload_bits == huffman.encode(s.values).n_bits


def test_sparse_beats_dense_huffman_when_mostly_zero():
    x = RNG.normal(size=50_000).astype(np.float32)
    x[RNG.random(x.size) >= 0.03] = 0
    sp = sparse.sparse_size(x, symbol_bits=32)
    dense = huffman.huffman_size(x, symbol_bits=32)
    assert sp.total_bytes < dense.total_bytes < x.nbytes


def test_bad_widths():
    with pytest.raises(ValueError, match="index_bits"):
        sparse.csr_encode(np.ones(3), index_bits=0)
    with pytest.raises(ValueError, match="index_bits"):
        sparse.sparse_size(np.ones(3), symbol_bits=32, index_bits=())
    with pytest.raises(ValueError, match="index_bits"):
        sparse.sparse_size(np.ones(3), symbol_bits=32, index_bits=(4, 40))
