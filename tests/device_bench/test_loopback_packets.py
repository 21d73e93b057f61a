"""Pure codecs of the loopback device: ADB packets, shell-v2 frames, sync replies, Android keys."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_bench.testing import _packets as p
from device_bench.testing import _shell_protocol as sp
from device_bench.testing import _sync
from device_bench.testing._auth import parse_android_public_key, verify_token_signature

commands = st.sampled_from(sorted(p.COMMANDS))
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
# Generation speed depends on machine load (the suite shares 2 cores); correctness does not.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60)


@relaxed
@given(commands, u32, u32, st.binary(max_size=4096))
def test_packet_round_trip(command, arg0, arg1, data):
    raw = p.encode_packet(p.Packet(command, arg0, arg1, data))
    assert len(raw) == p.HEADER_SIZE + len(data)
    assert p.decode_packet(raw) == p.Packet(command, arg0, arg1, data)


def test_header_layout_matches_the_protocol():
    raw = p.encode_packet(p.Packet(p.WRTE, 7, 9, b"\x01\x02\xff"))
    command, arg0, arg1, length, check, magic = struct.unpack("<6I", raw[:24])
    assert raw[:4] == b"WRTE"
    assert (arg0, arg1, length, check) == (7, 9, 3, 0x102)
    assert magic == command ^ 0xFFFFFFFF


def test_bad_magic_rejected():
    raw = bytearray(p.encode_packet(p.Packet(p.OKAY, 1, 2)))
    raw[20] ^= 0x01
    with pytest.raises(p.PacketError, match="magic"):
        p.decode_header(bytes(raw[:24]))


def test_bad_checksum_rejected_unless_skipping_was_agreed():
    raw = bytearray(p.encode_packet(p.Packet(p.WRTE, 1, 2, b"hello")))
    raw[-1] ^= 0x01  # payload no longer matches data_check
    with pytest.raises(p.PacketError, match="checksum"):
        p.decode_packet(bytes(raw))
    zeroed = bytearray(raw)
    zeroed[16:20] = b"\0\0\0\0"
    with pytest.raises(p.PacketError, match="checksum"):
        p.decode_packet(bytes(zeroed), version=p.VERSION_MIN)
    assert p.decode_packet(bytes(zeroed), version=p.VERSION_SKIP_CHECKSUM).data == bytes(raw[24:])


def test_oversize_and_unknown_command_rejected():
    header = struct.pack("<6I", p.WRTE, 0, 0, p.MAX_PAYLOAD + 1, 0, p.WRTE ^ 0xFFFFFFFF)
    with pytest.raises(p.PacketError, match="maximum"):
        p.decode_header(header)
    bogus = 0x41414141
    with pytest.raises(p.PacketError, match="Unknown"):
        p.decode_header(struct.pack("<6I", bogus, 0, 0, 0, 0, bogus ^ 0xFFFFFFFF))
    with pytest.raises(p.PacketError, match="24 bytes"):
        p.decode_header(b"short")


@relaxed
@given(st.lists(st.tuples(st.integers(0, 5), st.binary(max_size=300)), max_size=8), st.integers(1, 17))
def test_shell_frames_survive_any_packet_split(frames, cut):
    stream = b"".join(sp.encode_frame(i, d) for i, d in frames)
    parser = sp.FrameParser()
    got = []
    for start in range(0, len(stream), cut):
        got += parser.feed(stream[start : start + cut])
    assert got == frames


def test_sync_reply_encodings():
    assert _sync.encode_stat(0o100644, 5, 7) == b"STAT" + struct.pack("<III", 0o100644, 5, 7)
    assert _sync.encode_fail("nope") == b"FAIL\x04\x00\x00\x00nope"
    assert _sync.encode_dent(1, 2, 3, b"ab") == b"DENT" + struct.pack("<IIII", 1, 2, 3, 2) + b"ab"


def test_android_public_key_parses_and_verifies_adb_shell_signatures(make_adb_shell_key):
    key = make_adb_shell_key()
    public = parse_android_public_key(key.public_key.encode() + b"\0")
    token = bytes(range(20))
    signature = key.signer().Sign(token)
    assert verify_token_signature(public, token, signature)
    assert not verify_token_signature(public, bytes(20), signature)
    other = parse_android_public_key(make_adb_shell_key("other").public_key)
    assert not verify_token_signature(other, token, signature)


@pytest.mark.parametrize("text", ["", "!!!not-base64 user@host", "AAAA user@host"])
def test_malformed_public_keys_rejected(text):
    with pytest.raises(ValueError):
        parse_android_public_key(text)
