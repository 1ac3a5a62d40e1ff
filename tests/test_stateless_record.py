"""The stateless path reads a datagram that is one DTLSPlaintext record from its header,
without `split_datagram` (RFC 9147 §4.1): what it answers must be what the split gives,
for the record as sent and with its header damaged; and the cookie MAC's address bytes,
kept for the last address object asked, follow the address."""

from __future__ import annotations

import pytest

from dtls import cookie as cookie_module
from dtls.config import Context
from dtls.connection import Connection
from dtls.crypto import self_signed_certificate
from dtls.handshake_server import respond_statelessly
from dtls.record_py import PLAINTEXT_HEADER_LEN, split_datagram

ADDR = ("192.0.2.1", 5000)


@pytest.fixture(scope="module")
def server() -> Context:
    cert, key = self_signed_certificate(["localhost"])
    ctx = Context.server()
    ctx.load_cert_chain(certdata=cert, keydata=key)
    return ctx


def _client_hello() -> bytes:
    client = Connection(Context.client(verify=False))
    client.connect(("192.0.2.2", 4433), 0.0)
    return bytes(client.datagrams_to_send(0.0)[0][0])


def _with(data: bytes, index: int, value: int) -> bytes:
    out = bytearray(data)
    out[index] = value
    return bytes(out)


def test_one_record_datagram_is_answered_as_the_split_reads_it(server: Context) -> None:
    record = _client_hello()
    spans, dropped = split_datagram(record)
    assert len(spans) == 1 and dropped == 0  # the datagram is one plaintext record
    answer = respond_statelessly(server, record, ADDR)
    assert answer.action == "retry" and answer.datagram is not None
    # the HelloRetryRequest mirrors the ClientHello's record sequence number (RFC 9147 §5.1)
    hrr_spans, _ = split_datagram(answer.datagram)
    assert hrr_spans[0].seq == spans[0].seq == int.from_bytes(record[5:11], "big")
    renumbered = record[:5] + (7).to_bytes(6, "big") + record[11:]
    hrr_spans, _ = split_datagram(respond_statelessly(server, renumbered, ADDR).datagram or b"")
    assert hrr_spans[0].seq == 7


@pytest.mark.parametrize("epoch", [1, 0x100, 0xFFFF])
def test_one_record_datagram_in_another_epoch_is_dropped(server: Context, epoch: int) -> None:
    record = _client_hello()
    moved = record[:3] + epoch.to_bytes(2, "big") + record[5:]
    assert respond_statelessly(server, moved, ADDR).action == "drop"


def test_header_lengths_that_do_not_fill_the_datagram(server: Context) -> None:
    record = _client_hello()
    # a byte after the record: split into the record and one dropped byte, still answered
    assert respond_statelessly(server, record + b"\x00", ADDR).action == "retry"
    # a length past the datagram, or short of it (the rest is no record): as the split
    length = len(record) - PLAINTEXT_HEADER_LEN
    for wrong in (length + 1, length - 1, 0xFFFF):
        damaged = record[:11] + wrong.to_bytes(2, "big") + record[13:]
        spans, _ = split_datagram(damaged)
        expected = "drop" if not spans or spans[0].length != len(record) else "retry"
        assert respond_statelessly(server, damaged, ADDR).action == expected, wrong
    # not a handshake record
    assert respond_statelessly(server, _with(record, 0, 21), ADDR).action == "drop"


def test_cookie_address_bytes_follow_the_address() -> None:
    first, second = ("192.0.2.1", 5000), ("192.0.2.1", 5001)
    assert cookie_module._address_bytes(first) == repr(first).encode()
    assert cookie_module._address_bytes(second) == repr(second).encode()
    assert cookie_module._address_bytes(first) == repr(first).encode()
    equal = ("192.0.2.1", 5000)  # an equal address, another object
    assert cookie_module._address_bytes(equal) == repr(equal).encode()
