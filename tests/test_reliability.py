"""Flights, reassembly, ACKs and retransmission (RFC 9147 §5.5, §5.8, §7), alone and
between two engines over a lossy in-memory network."""

from __future__ import annotations

import itertools
import random
import tracemalloc
from typing import Any

import pytest
from loopback import Loopback, Sent
from test_connection import exchange, make_pair

from dtls.errors import IllegalParameter, RecordOverflow
from dtls.events import ConnectionClosed, HandshakeCompleted
from dtls.messages import HandshakeFragment
from dtls.reliability import (
    MAX_MESSAGE_PIECES,
    FragmentResult,
    HandshakeReassembler,
    OutgoingFlight,
    OutgoingMessage,
    RetransmitTimer,
)


def fragments(msg_type: int, seq: int, body: bytes, cuts: list[int]) -> list[HandshakeFragment]:
    edges = [0, *cuts, len(body)]
    return [
        HandshakeFragment(msg_type, len(body), seq, a, b - a, body[a:b])
        for a, b in itertools.pairwise(edges)
    ]


# ---- reassembly ----
def test_reassembly_out_of_order_overlapping_duplicate() -> None:
    body = bytes(range(200))
    r = HandshakeReassembler(65536, 262144)
    pieces = fragments(11, 0, body, [50, 120])
    overlap = HandshakeFragment(11, 200, 0, 40, 60, body[40:100])
    for frag in [pieces[2], overlap, pieces[2], pieces[0]]:
        assert r.add(frag, 2) == FragmentResult.ACCEPTED
        assert r.pop() is None
    assert r.add(pieces[1], 2) == FragmentResult.ACCEPTED
    message = r.pop()
    assert message is not None and message.body == body and message.msg_type == 11
    assert r.pop() is None
    assert r.add(pieces[0], 2) == FragmentResult.OLD


def test_reassembly_delivers_in_message_seq_order() -> None:
    r = HandshakeReassembler(65536, 262144)
    r.add(HandshakeFragment(15, 3, 1, 0, 3, b"abc"), 2)
    assert r.pop() is None and r.has_future()
    r.add(HandshakeFragment(11, 2, 0, 0, 2, b"xy"), 2)
    assert [r.pop().body, r.pop().body] == [b"xy", b"abc"]  # type: ignore[union-attr]


def test_reassembly_limits() -> None:
    r = HandshakeReassembler(1000, 1500)
    with pytest.raises(RecordOverflow):
        r.add(HandshakeFragment(11, 1001, 0, 0, 1, b"a"), 2)
    assert r.add(HandshakeFragment(11, 1000, 0, 0, 1000, bytes(1000)), 2) == FragmentResult.ACCEPTED
    # Over the connection budget (the bytes held): dropped, not buffered.
    assert r.add(HandshakeFragment(11, 1000, 1, 0, 501, bytes(501)), 2) == FragmentResult.DROPPED
    assert r.buffered == 1000
    assert r.add(HandshakeFragment(11, 1000, 1, 0, 500, bytes(500)), 2) == FragmentResult.ACCEPTED
    assert r.buffered == 1500
    # A duplicate adds nothing, so it fits; a byte more does not.
    assert r.add(HandshakeFragment(11, 1000, 1, 0, 500, bytes(500)), 2) == FragmentResult.ACCEPTED
    assert r.add(HandshakeFragment(11, 1000, 1, 0, 501, bytes(501)), 2) == FragmentResult.DROPPED
    assert r.buffered == 1500
    assert r.add(HandshakeFragment(11, 5, 99, 0, 1, b"a"), 2) == FragmentResult.DROPPED
    with pytest.raises(IllegalParameter):
        r.add(HandshakeFragment(15, 1000, 0, 1, 1, b"b"), 2)


def test_reassembly_holds_the_bytes_received_not_the_length_claimed() -> None:
    # RFC 9147 §5.5: a fragment claims its message's length; only what arrived is kept.
    r = HandshakeReassembler(65536, 262144)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert r.add(HandshakeFragment(1, 65536, 0, 0, 0, b""), 0) == FragmentResult.ACCEPTED
        far = HandshakeFragment(1, 65536, 0, 60000, 10, bytes(10))
        assert r.add(far, 0) == FragmentResult.ACCEPTED
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert r.buffered == 10
    assert held < 2048, held  # a 64 KB buffer before: the claimed length
    assert r.pop() is None


def test_reassembly_of_pieces_in_any_order() -> None:
    rng = random.Random(5)
    body = rng.randbytes(5000)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, 5000), 12))
        pieces = fragments(11, 0, body, cuts)
        pieces += [
            HandshakeFragment(11, 5000, 0, a, b - a, body[a:b])
            for a, b in (sorted(rng.sample(range(5000), 2)) for _ in range(5))
        ]
        rng.shuffle(pieces)
        r = HandshakeReassembler(65536, 262144)
        for frag in pieces:
            assert r.add(frag, 2) == FragmentResult.ACCEPTED
            assert r.buffered <= 5000
        assert r.buffered == 5000
        message = r.pop()
        assert message is not None and message.body == body and r.buffered == 0


def test_reassembly_bounds_the_gaps_of_one_message() -> None:
    # One byte in every other position: a piece each, up to MAX_MESSAGE_PIECES; then a
    # fragment that would start another is dropped (not acknowledged), one that joins is not.
    r = HandshakeReassembler(65536, 262144)
    for i in range(MAX_MESSAGE_PIECES):
        assert r.add(HandshakeFragment(11, 1000, 0, 2 * i, 1, b"x"), 2) == FragmentResult.ACCEPTED
    assert r.add(HandshakeFragment(11, 1000, 0, 500, 1, b"x"), 2) == FragmentResult.DROPPED
    assert r.add(HandshakeFragment(11, 1000, 0, 1, 1, b"y"), 2) == FragmentResult.ACCEPTED
    assert r.buffered == MAX_MESSAGE_PIECES + 1
    body = bytes(1000)
    assert r.add(HandshakeFragment(11, 1000, 0, 0, 1000, body), 2) == FragmentResult.ACCEPTED
    message = r.pop()
    assert message is not None and message.body == b"xyx" + b"\0x" * 30 + bytes(937)


# ---- flights ----
def test_flight_ack_tracking() -> None:
    flight = OutgoingFlight(
        [OutgoingMessage(2, 11, 0, b"x" * 100), OutgoingMessage(2, 20, 1, b"y" * 32)],
        needs_ack=True,
    )
    flight.record_sent((2, 0), 0, 0, 60)
    flight.record_sent((2, 1), 0, 60, 100)
    flight.record_sent((2, 2), 1, 0, 32)
    assert flight.on_ack([(2, 1)])
    assert list(flight.unacked_ranges()) == [(0, 0, 60), (1, 0, 32)]
    assert not flight.on_ack([(2, 1), (3, 7)])
    assert flight.on_ack([(2, 0), (2, 2)]) and flight.acknowledged


def test_retransmit_timer_schedule() -> None:
    timer = RetransmitTimer(1.0, 60.0)
    values = []
    for _ in range(8):
        values.append(timer.value)
        timer.back_off()
    assert values == [1, 2, 4, 8, 16, 32, 60, 60]  # RFC 9147 §5.8.2
    timer.measured(0.2)
    assert timer.value == pytest.approx(0.3)


# ---- loss, reordering, duplication between engines ----
def baseline(pki: Any) -> list[Sent]:
    link = make_pair(pki)
    link.start()
    link.run()
    assert link.events_of("client", HandshakeCompleted)
    return [s for s in link.sent if s.time < 1.0]


def drop_first_sending(indices: set[int]) -> Any:
    def rule(sent: Sent) -> list[bytes]:
        return [] if sent.index in indices else [sent.data]

    return rule


def complete_and_exchange(link: Loopback) -> None:
    link.start()
    link.run(until=300)
    assert link.events_of("client", HandshakeCompleted), link.client_events
    assert link.events_of("server", HandshakeCompleted), link.server_events
    assert not link.events_of("client", ConnectionClosed)
    exchange(link, [b"after loss", b"z" * 700])


def test_dropped_client_hello_follows_timer_schedule(pki: Any) -> None:
    link = make_pair(pki, latency=0.01)
    link.filter = drop_first_sending({0, 1})  # the ClientHello and its first resend
    complete_and_exchange(link)
    hellos = [s.time for s in link.sent if s.direction == "c2s"][:3]
    assert hellos == pytest.approx([0.0, 1.0, 3.0])  # initial 1 s, then doubled
    assert link.client.retransmissions == 2


def test_drop_each_datagram_in_turn(pki: Any) -> None:
    count = len(baseline(pki))
    assert count >= 4
    for index in range(count):
        link = make_pair(pki)
        link.filter = drop_first_sending({index})
        complete_and_exchange(link)
        resent = link.client.retransmissions + link.server.retransmissions
        assert 1 <= resent <= 3, (index, resent)


def test_drop_every_pair(pki: Any) -> None:
    count = len(baseline(pki))
    for pair in itertools.combinations(range(count), 2):
        link = make_pair(pki)
        link.filter = drop_first_sending(set(pair))
        complete_and_exchange(link)


def test_duplicated_and_reordered_flights(pki: Any) -> None:
    rng = random.Random(7)
    for _ in range(20):
        link = make_pair(pki)

        def mangle(sent: Sent) -> list[bytes]:
            if rng.random() < 0.3:
                return [sent.data, sent.data]
            return [sent.data]

        link.filter = mangle
        link.jitter = 0.05  # reorders datagrams within 50 ms
        complete_and_exchange(link)


def test_random_loss(pki: Any) -> None:
    rng = random.Random(11)
    for _ in range(30):
        link = make_pair(pki)
        link.filter = lambda sent: [] if rng.random() < 0.2 else [sent.data]
        link.start()
        link.run(until=600)
        # With 20 % loss either the handshake completes or a side gives up cleanly.
        done = link.events_of("client", HandshakeCompleted)
        closed = link.events_of("client", ConnectionClosed)
        assert done or closed


def _split_plaintext_records(datagram: bytes, first_seq: int) -> list[bytes]:
    """The datagram's epoch-0 handshake records re-sent as one-byte fragments, each in a
    record of its own (the peer BoGo's SplitHandshakeRecords plays)."""
    from dtls.messages import decode_handshake_fragments, encode_handshake_fragment

    out, pos, seq = [], 0, first_seq
    while pos + 13 <= len(datagram) and datagram[pos] == 22:
        length = int.from_bytes(datagram[pos + 11 : pos + 13], "big")
        for f in decode_handshake_fragments(datagram[pos + 13 : pos + 13 + length]):
            for i in range(f.fragment_length):
                body = encode_handshake_fragment(
                    f.msg_type,
                    f.length,
                    f.message_seq,
                    f.fragment_offset + i,
                    f.fragment[i : i + 1],
                )
                header = b"\x16\xfe\xfd\x00\x00" + seq.to_bytes(6, "big")
                out.append(header + len(body).to_bytes(2, "big") + body)
                seq += 1
        pos += 13 + length
    return out


def test_ack_of_many_records_fits_one_datagram(pki: Any, monkeypatch: Any) -> None:
    # RFC 9147 §7: an ACK names as many records as fit, favouring the most recent; a
    # ServerHello in ~100 one-byte records must not make an ACK larger than a datagram.
    import dtls.connection as connection

    acked: list[list[tuple[int, int]]] = []
    real_encode_ack = connection.encode_ack

    def encode_ack(numbers: Any) -> bytes:
        acked.append(list(numbers))
        return real_encode_ack(numbers)

    monkeypatch.setattr(connection, "encode_ack", encode_ack)
    link = make_pair(pki)
    client, server = link.client, link.server
    client.connect(None, 0.0)
    for d, _ in client.datagrams_to_send(0.0):
        server.receive_datagram(d, None, 0.0)
    flight = [d for d, _ in server.datagrams_to_send(0.0)]
    records = _split_plaintext_records(flight[0], first_seq=0)
    assert len(records) > 64
    for r in records:
        client.receive_datagram(r, None, 0.0)
    # the encrypted rest of the flight is lost: the ACK timer fires
    timer = client.get_timer()
    assert timer is not None
    client.handle_timer(timer)
    sent = [d for d, _ in client.datagrams_to_send(timer)]
    assert sent and all(len(d) <= client.context.max_datagram_size for d in sent)
    assert acked and acked[-1] == [(0, s) for s in range(len(records))][-len(acked[-1]) :]
    assert 10 < len(acked[-1]) <= connection.MAX_ACK_RECORDS
    for d in sent:
        server.receive_datagram(d, None, timer)
    assert not [e for e in link.server_events if isinstance(e, ConnectionClosed)]


def test_duplicate_within_the_flight_being_received_is_not_acked(
    pki: Any, monkeypatch: Any
) -> None:
    # RFC 9147 §7.1: the server's flight is acknowledged by the client's answer; a copy of
    # its ServerHello arriving while the rest of the flight is on its way is no disruption
    # and draws no ACK of its own (BoGo's DTLS-Replay: the peer then sees an ACK before
    # the Finished it waits for).
    import dtls.connection as connection

    acked: list[list[tuple[int, int]]] = []
    real_encode_ack = connection.encode_ack
    monkeypatch.setattr(
        connection,
        "encode_ack",
        lambda numbers: acked.append(list(numbers)) or real_encode_ack(numbers),
    )
    link = make_pair(pki)
    client, server = link.client, link.server
    client.connect(None, 0.0)
    for d, _ in client.datagrams_to_send(0.0):
        server.receive_datagram(d, None, 0.0)
    flight = [d for d, _ in server.datagrams_to_send(0.0)]
    sent = []
    for d in [flight[0], flight[0], *flight[1:]]:  # each datagram as it comes, one twice
        client.receive_datagram(d, None, 0.0)
        sent += [d for d, _ in client.datagrams_to_send(0.0)]
    assert acked == []
    assert sent  # the client's Finished, which acknowledges the whole flight
    for d in sent:
        server.receive_datagram(d, None, 0.0)
    assert link.server.handshake_complete
