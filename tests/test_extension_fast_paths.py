"""The fast extension decoders (`dtls.extensions.FAST_DECODERS`) against the Reader
decoders they shortcut, which stay the reference: on well-formed extension data both give
the same value; on every truncation and every one-byte change the fast one either gives
the reference's value or declines (None), so that the reference reports the error."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from dtls import extensions as ext
from dtls.errors import DecodeError, IllegalParameter
from dtls.extensions import FAST_DECODERS, KeyShareEntry, Reader

# (reference decoder, well-formed extension_data), from the encoders
_SAMPLES: list[tuple[Callable[[Reader], Any], bytes]] = [
    (ext._d_uint16_list, ext._e_uint16_list([0x001D, 0x0017])),
    (ext._d_uint16_list, ext._e_uint16_list([0x0403, 0x0804, 0x0503, 0x0805, 0x0806])),
    (ext._d_versions, ext._e_versions([0xFEFC])),
    (ext._d_versions, ext._e_versions([0xFEFC, 0xFEFD])),
    (ext._d_uint16, b"\xfe\xfc"),
    (ext._d_empty, b""),
    (ext._d_psk_modes, ext.vec8(bytes([1]))),
    (ext._d_psk_modes, ext.vec8(bytes([0, 1]))),
    (ext._d_key_share_entry, ext._e_key_share_entry(KeyShareEntry(0x1D, bytes(range(32))))),
    (ext._d_client_shares, ext._e_client_shares([])),
    (ext._d_client_shares, ext._e_client_shares([KeyShareEntry(0x1D, b"\x07" * 32)])),
    (
        ext._d_client_shares,
        ext._e_client_shares([KeyShareEntry(0x1D, b"\x01" * 32), KeyShareEntry(23, b"\x04" * 65)]),
    ),
    (ext._d_server_name, ext._e_server_name("localhost")),
    (ext._d_server_name, ext._e_server_name("a")),
]


def _reference(decoder: Callable[[Reader], Any], data: bytes) -> tuple[str, Any]:
    """What decode_extensions makes of `data` through the Reader decoder."""
    r = Reader(data)
    try:
        value = decoder(r)
        r.expect_end("extension")
    except (DecodeError, IllegalParameter) as e:
        return "error", type(e)
    return "value", value


def _check(decoder: Callable[[Reader], Any], data: bytes, *, well_formed: bool) -> None:
    fast = FAST_DECODERS[decoder]
    padded = b"\xaa\xbb" + data + b"\xcc"  # the fast path reads data[pos:end] of a block
    got = fast(padded, 2, 2 + len(data))
    kind, expected = _reference(decoder, data)
    if well_formed:
        assert kind == "value" and got is not None
    if got is not None:
        assert kind == "value" and got == expected


def test_every_fast_decoder_is_sampled() -> None:
    assert {d for d, _ in _SAMPLES} == set(FAST_DECODERS)


@pytest.mark.parametrize(("decoder", "data"), _SAMPLES)
def test_fast_decoder_agrees_on_well_formed(decoder: Callable[[Reader], Any], data: bytes) -> None:
    _check(decoder, data, well_formed=True)


@pytest.mark.parametrize(("decoder", "data"), _SAMPLES)
def test_fast_decoder_declines_or_agrees_on_malformed(
    decoder: Callable[[Reader], Any], data: bytes
) -> None:
    for cut in range(len(data)):  # every truncation
        _check(decoder, data[:cut], well_formed=False)
    _check(decoder, data + b"\x00", well_formed=False)  # a trailing byte
    for i in range(len(data)):  # every byte changed, to a few values
        for value in {0, 1, 0x7F, 0x80, 0xFF, data[i] ^ 1, (data[i] + 1) & 0xFF}:
            changed = data[:i] + bytes([value]) + data[i + 1 :]
            _check(decoder, changed, well_formed=False)


def test_fast_decoders_on_random_data() -> None:
    rng = random.Random(9147)
    for decoder in FAST_DECODERS:
        for _ in range(2000):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
            _check(decoder, data, well_formed=False)


def test_non_ascii_server_name_is_left_to_the_reference() -> None:
    data = bytearray(ext._e_server_name("localhost"))
    data[-1] = 0xE9
    assert FAST_DECODERS[ext._d_server_name](bytes(data), 0, len(data)) is None
    assert _reference(ext._d_server_name, bytes(data)) == ("error", IllegalParameter)
