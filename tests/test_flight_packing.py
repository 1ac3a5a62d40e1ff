"""How `Connection._transmit` packs a flight into records and datagrams (RFC 9147 §4.3,
§4.4, §5.5): the same datagrams, byte for byte, and the same record bookkeeping as the
plain packing below, for many datagram sizes, flights, partly acknowledged messages and
output already waiting."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dtls.config import Context
from dtls.connection import MIN_FRAGMENT, Connection, SegmentRun
from dtls.iana import CipherSuite, ContentType
from dtls.messages import DTLS_HANDSHAKE_HEADER_LEN, encode_handshake_fragment
from dtls.reliability import OutgoingFlight, OutgoingMessage

SUITE = int(CipherSuite.TLS_AES_128_GCM_SHA256)


def reference_transmit(conn: Any, flight: OutgoingFlight) -> None:
    """Fragments fill the open record while the datagram and the record size limit
    allow; a record closes when it is full or the epoch changes; a fragment smaller than
    MIN_FRAGMENT is not started in the rest of a datagram."""
    body = bytearray()
    carried: list[tuple[int, int, int]] = []
    epoch = -1

    def seal() -> None:
        record, number = conn._records.seal(epoch, ContentType.HANDSHAKE, bytes(body))
        conn._emit(record)
        flight.records[number] = carried.copy()
        body.clear()
        carried.clear()

    out = conn._out
    limit = conn.context.max_datagram_size
    send_room = conn._send_limit - DTLS_HANDSHAKE_HEADER_LEN
    overhead = 0
    for index, message in enumerate(flight.messages):
        if not message.unacked:
            continue
        if message.epoch != epoch:
            if body:
                seal()
            epoch = message.epoch
            overhead = conn._records.overhead(epoch) + DTLS_HANDSHAKE_HEADER_LEN
        data = message.body
        for start, end in message.unacked:
            pos = start
            while True:
                last = out[-1] if out else None
                free = limit - len(last) if last and last.__class__ is not SegmentRun else limit
                room = min(free - overhead, send_room) - len(body)
                if body and room <= 0:
                    seal()
                    continue
                if not body and (room < min(MIN_FRAGMENT, end - pos) or room <= 0):
                    out.append(bytearray())
                    room = min(limit - overhead, send_room)
                take = min(end - pos, room)
                body += encode_handshake_fragment(
                    message.msg_type, len(data), message.message_seq, pos, data[pos : pos + take]
                )
                carried.append((index, pos, pos + take))
                pos += take
                if pos >= end:
                    break
    if body:
        seal()


def connection(mtu: int, send_limit: int | None, cid: bytes | None) -> Connection:
    conn = Connection(Context.client(max_datagram_size=mtu))
    conn._records.install_send(2, SUITE, bytes(range(32)))
    conn._records.install_send(3, SUITE, bytes(range(1, 33)))
    conn._records.send_cid = cid
    if send_limit is not None:
        conn._send_limit = send_limit
    return conn


def flight(sizes: list[tuple[int, int]], acked: dict[int, list[tuple[int, int]]]) -> OutgoingFlight:
    messages = []
    for seq, (epoch, size) in enumerate(sizes):
        message = OutgoingMessage(
            epoch, 11 + seq % 5, seq, bytes((seq + i) % 251 for i in range(size))
        )
        if seq in acked:
            message.unacked = acked[seq]
        messages.append(message)
    return OutgoingFlight(messages, needs_ack=True)


FLIGHTS = [
    ([(0, 90)], {}),
    ([(0, 90), (2, 40), (2, 1500), (2, 80), (2, 36)], {}),
    ([(2, 0)], {}),
    ([(2, 5), (2, 0), (3, 7)], {}),
    ([(2, 3000)], {}),
    ([(2, 700), (2, 700), (2, 700)], {1: []}),
    ([(2, 2000), (2, 60)], {0: [(0, 100), (400, 1500), (1990, 2000)]}),
    ([(0, 200), (2, 1200), (3, 64)], {0: [(10, 20)], 2: [(0, 64)]}),
]
WAITING = [[], [b"x" * 30], [bytearray(b"y" * 200)], [b"z" * 1180]]


@pytest.mark.parametrize(("sizes", "acked"), FLIGHTS)
def test_transmit_packs_as_the_plain_packing(
    sizes: list[tuple[int, int]], acked: dict[int, list[tuple[int, int]]]
) -> None:
    for mtu, send_limit, cid, waiting in itertools.product(
        (256, 300, 577, 1200, 1500), (None, 100, 512), (None, b"cid-1"), WAITING
    ):
        ours, plain = connection(mtu, send_limit, cid), connection(mtu, send_limit, cid)
        ours._out.extend(bytearray(w) if type(w) is bytearray else w for w in waiting)
        plain._out.extend(bytearray(w) if type(w) is bytearray else w for w in waiting)
        sent, expected = flight(sizes, acked), flight(sizes, acked)
        ours._transmit(sent, 0.0)
        reference_transmit(plain, expected)
        where = (mtu, send_limit, cid, waiting)
        assert ours.datagrams_to_send(0.0) == plain.datagrams_to_send(0.0), where
        assert sent.records == expected.records, where
        assert sent.transmissions == 1 and sent.deadline is not None
