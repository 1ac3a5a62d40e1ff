"""The ACK (RFC 9147 §7) and handshake-fragment (§5.2, §5.5) codecs' fast paths against
the general formats: the same bytes, the same values, the same errors."""

from __future__ import annotations

import struct

import pytest

from dtls.errors import DecodeError
from dtls.messages import (
    decode_ack,
    decode_handshake_fragments,
    encode_ack,
    encode_handshake_fragment,
)

NUMBERS = [
    [],
    [(2, 0)],
    [(0, 1)],
    [(3, (1 << 48) - 1)],
    [((1 << 64) - 1, (1 << 64) - 1)],
    [(2, 0), (2, 1)],
    [(0, 0), (2, 5), (3, 7)],
    [(3, i) for i in range(32)],
]


def general_ack(numbers: list[tuple[int, int]]) -> bytes:
    """RecordNumber record_numbers<0..2^16-1> as one struct format (RFC 9147 §7)."""
    flat = [v for number in numbers for v in number]
    return struct.pack(f">H{len(flat)}Q", 16 * len(numbers), *flat)


@pytest.mark.parametrize("numbers", NUMBERS)
def test_encode_ack_is_the_general_format(numbers: list[tuple[int, int]]) -> None:
    assert encode_ack(numbers) == general_ack(numbers)
    assert encode_ack(tuple(numbers)) == general_ack(numbers)


@pytest.mark.parametrize("numbers", NUMBERS)
def test_decode_ack_inverts_the_general_format(numbers: list[tuple[int, int]]) -> None:
    body = general_ack(numbers)
    decoded = decode_ack(body)
    assert decoded == numbers
    assert type(decoded) is list and all(type(n) is tuple for n in decoded)
    assert decode_ack(bytearray(body)) == numbers
    assert decode_ack(memoryview(body)) == numbers


def test_encode_ack_refuses_what_the_format_cannot_hold() -> None:
    with pytest.raises(ValueError, match="too many"):
        encode_ack([(3, i) for i in range(4096)])
    for bad in ([(-1, 0)], [(2, 1 << 64)], [(2, 0), (-1, 0)]):
        with pytest.raises(struct.error):
            encode_ack(bad)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00",
        b"\x00\x10",  # claims one record number, holds none
        b"\x00\x10" + bytes(15),
        b"\x00\x10" + bytes(17),
        b"\x00\x08" + bytes(8),  # not a whole RecordNumber
        b"\x00\x20" + bytes(16),
        b"\x00\x00\x00",
        b"\xff\xf0" + bytes(32),
    ],
)
def test_decode_ack_refuses_bad_lengths(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_ack(body)


def test_handshake_fragments_round_trip() -> None:
    body = bytes(range(256)) * 3
    parts = [
        encode_handshake_fragment(11, len(body), 2, 0, body[:300]),
        encode_handshake_fragment(11, len(body), 2, 300, body[300:]),
        encode_handshake_fragment(20, 0, 3, 0, b""),
    ]
    assert parts[0][:12] == struct.pack(">B3sH3s3s", 11, (768).to_bytes(3, "big"), 2,
                                        bytes(3), (300).to_bytes(3, "big"))  # fmt: skip
    fragments = decode_handshake_fragments(b"".join(parts))
    assert [tuple(f) for f in fragments] == [
        (11, 768, 2, 0, 300, body[:300]),
        (11, 768, 2, 300, 468, body[300:]),
        (20, 0, 3, 0, 0, b""),
    ]
