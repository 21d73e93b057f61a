"""Fuzzing load_tflite / analyze: any bytes either parse or raise ModelFormatError, quickly.

Inputs: random bytes (with and without a valid header), and mutations of a real converted
model (byte flips, 4-byte overwrites with extreme values, truncations), since mutations of a
real file reach deep into the flatbuffer where random bytes never get.
"""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.size import analyze
from converters.tflite_model import load_tflite
from mobile_opt.errors import ModelFormatError

TIME_BOUND_S = 5.0
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _parse_or_format_error(data: bytes) -> None:
    start = time.monotonic()
    try:
        model = load_tflite(data)
        for sg in model.subgraphs:
            for tensor in sg.tensors:
                if tensor.bits_per_element is not None:
                    tensor.data()
        analyze(model, compress_level=1)
    except ModelFormatError as exc:
        assert "<bytes>" in str(exc)
    assert time.monotonic() - start < TIME_BOUND_S


@pytest.fixture(scope="module", params=["fp32_path", "int8_path"])
def real(request) -> bytes:
    # int8 adds quantization parameters (per-channel zero points) to what mutations reach.
    return request.getfixturevalue(request.param).read_bytes()


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    _parse_or_format_error(data)


@FUZZ
@given(st.binary(min_size=0, max_size=2048))
def test_random_bytes_behind_a_valid_header(data):
    _parse_or_format_error(struct.pack("<I", 8) + b"TFL3" + data)


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=16))
def test_byte_flips(real, flips):
    data = bytearray(real)
    for where, value in flips:
        data[int(where * len(data))] = value
    _parse_or_format_error(bytes(data))


@FUZZ
@given(where=st.floats(0, 1, exclude_max=True),
       value=st.sampled_from([0, 1, 4, 0x7F, 0x80, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]))
def test_word_overwrites(real, where, value):
    # Offsets, lengths and vtable entries are 4-byte words: extreme values hit every check.
    data = bytearray(real)
    pos = min(int(where * len(data)) & ~3, len(data) - 4)
    struct.pack_into("<I", data, pos, value)
    _parse_or_format_error(bytes(data))


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncations(real, cut):
    _parse_or_format_error(real[: int(cut * len(real))])
