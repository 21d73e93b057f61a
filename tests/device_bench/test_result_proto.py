"""LiteRT's binary BenchmarkResult, decoded from bytes laid out by hand from its .proto."""

from __future__ import annotations

import struct

import pytest

from device_bench.result_proto import ToolResult, decode, encode, read_result_file


def _key(field: int, wire: int) -> bytes:
    return bytes([(field << 3) | wire])


def _float(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


def _varint(field: int, value: int) -> bytes:
    out, v = bytearray(_key(field, 0)), value
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _message(field: int, body: bytes) -> bytes:
    return _key(field, 2) + bytes([len(body)]) + body


# tflite/tools/benchmark/proto/benchmark_result.proto: BenchmarkResult.latency_metrics = 2
# (avg_ms 1, min_ms 2, max_ms 3, stddev_ms 4, median_ms 5, p5_ms 6, p95_ms 7, init_ms 8,
# first_inference_ms 9, average_warm_up_ms 10), memory_metrics = 3 (init_footprint_kb 1,
# overall_footprint_kb 2, peak_mem_mb 3), misc_metrics = 4 (model_size_mb 1, num_runs 2,
# num_warmup_runs 3, model_throughput_in_mb_per_sec 4).
LITERT_BYTES = (
    _message(2, _float(1, 1.5) + _float(2, 1.0) + _float(3, 4.0) + _float(4, 0.25)
             + _float(5, 1.25) + _float(6, 1.125) + _float(7, 2.5) + _float(8, 12.0)
             + _float(9, 3.0) + _float(10, 1.75))
    + _message(3, _varint(1, 2048) + _varint(2, 4096) + _float(3, 9.5))
    + _message(4, _float(1, 0.5) + _varint(2, 5548) + _varint(3, 2557) + _float(4, 100.0))
)


def test_hand_laid_bytes_decode_field_by_field():
    result = decode(LITERT_BYTES)
    assert (result.avg_ms, result.min_ms, result.max_ms, result.stddev_ms) == (1.5, 1.0, 4.0, 0.25)
    assert (result.median_ms, result.p5_ms, result.p95_ms) == (1.25, 1.125, 2.5)
    assert (result.init_ms, result.first_inference_ms, result.average_warm_up_ms) == (12.0, 3.0, 1.75)
    assert (result.init_footprint_kb, result.overall_footprint_kb, result.peak_mem_mb) == (2048, 4096, 9.5)
    assert (result.num_runs, result.num_warmup_runs) == (5548, 2557)
    assert result.name is None  # unset stays None, never 0


def test_encode_is_the_same_wire_format():
    assert decode(encode(decode(LITERT_BYTES))) == decode(LITERT_BYTES)
    assert encode(ToolResult(avg_ms=1.5)) == _message(2, _float(1, 1.5))


def test_result_file_formats():
    assert read_result_file(LITERT_BYTES)[0].num_runs == 5548
    assert read_result_file(b"1000.5\n1200\n") == (None, [1000.5, 1200.0])
    assert read_result_file(b"") == (None, None)
    assert read_result_file(b"\xff\xfe garbage") == (None, None)
    with pytest.raises(ValueError, match="not a BenchmarkResult"):
        decode(b"\x0a\x05ab")  # a name but no latency
