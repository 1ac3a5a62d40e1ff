"""The ServerHello encoder's packed path (`messages._encode_own_server_hello`) against
the general encoder it shortcuts (reached with an explicit extension_order in the
canonical order): the same bytes for every combination of the fields it packs, and the
general encoder's errors for what is out of range."""

from __future__ import annotations

import dataclasses
import itertools
import struct

import pytest

from dtls.extensions import KeyShareEntry
from dtls.messages import ServerHello, decode_handshake_body, encode_handshake
from dtls.messages import _encode_own_server_hello as packed

_CANONICAL = [43, 51, 41, 54]  # SH_EXTENSIONS' order: the general path, same bytes


def _general(m: ServerHello) -> bytes:
    return encode_handshake(dataclasses.replace(m, extension_order=list(_CANONICAL)))[1]


_COMBINATIONS = itertools.product(
    [None, 0xFEFC],  # supported_versions
    [None, KeyShareEntry(0x1D, bytes(range(32))), KeyShareEntry(0x17, b"")],  # key_share
    [None, 0, 3],  # pre_shared_key
    [None, b"", b"\x01" * 8, b"\x02" * 255],  # connection_id
    [b"", b"ab", b"\x03" * 32],  # legacy_session_id_echo
)


def test_packed_server_hello_is_the_general_encoding() -> None:
    for versions, share, psk, cid, echo in _COMBINATIONS:
        m = ServerHello(
            random=bytes(range(32)),
            cipher_suite=0x1302,
            legacy_session_id_echo=echo,
            supported_versions=versions,
            key_share=share,
            pre_shared_key=psk,
            connection_id=cid,
        )
        body = packed(m)
        assert body is not None
        assert body == _general(m) == encode_handshake(m)[1], m
        if share is None or share.key_exchange:  # an empty key_exchange does not decode
            decoded = decode_handshake_body(2, body)
            assert dataclasses.replace(decoded, extension_order=None) == m


@pytest.mark.parametrize(
    "change",
    [
        {"random": bytes(31)},
        {"legacy_session_id_echo": bytes(33)},
        {"connection_id": bytes(256)},
        {"legacy_compression_method": 256},
        {"key_share": KeyShareEntry(0x1D, bytes(0xFFFC))},
    ],
)
def test_out_of_range_fields_raise_as_the_general_encoder(change: dict[str, object]) -> None:
    m = dataclasses.replace(ServerHello(random=bytes(32), cipher_suite=0x1301), **change)
    assert packed(m) is None
    with pytest.raises((ValueError, struct.error)) as general:
        _general(m)
    with pytest.raises(general.type):
        encode_handshake(m)
