"""KeyUpdate and its ACK (RFC 9147 §7, §8): after the handshake the two directions' epochs
are apart, an ACK goes in the sender's highest epoch, after a short delay."""

from __future__ import annotations

from typing import Any

import pytest
from loopback import CLIENT_ADDR, SERVER_ADDR, Loopback
from test_connection import exchange, handshake, make_pair

from dtls.connection import Connection, HandshakeState
from dtls.errors import ConnectionStateError
from dtls.events import ConnectionClosed, KeyUpdated
from dtls.handshake import FlightKind
from dtls.iana import AlertDescription, ContentType, HandshakeType
from dtls.messages import (
    KeyUpdate,
    NewSessionTicket,
    encode_ack,
    encode_handshake_body,
    encode_handshake_fragment,
)


def _sides(link: Loopback, initiator: str) -> tuple[Connection, Connection, str]:
    if initiator == "client":
        return link.client, link.server, "server"
    return link.server, link.client, "client"


@pytest.mark.parametrize("initiator", ["client", "server"])
def test_one_side_updates_keys_while_the_other_never_does(pki: Any, initiator: str) -> None:
    """The peer ACKs our epoch-4, -5, ... KeyUpdates from its epoch 3 (RFC 9147 §7: "the
    highest available sending epoch"), and we accept those ACKs."""
    link = make_pair(pki)
    handshake(link)
    conn, peer, other = _sides(link, initiator)
    exchange(link, [b"before"])
    for n in range(1, 5):
        conn.update_keys(request_peer_update=False)
        link.run(until=link.now + 10)
        assert conn.send_epoch == 3 + n
        assert peer.send_epoch == 3
        assert KeyUpdated("receive", 3 + n) in link.events_of(other, KeyUpdated)
        exchange(link, [b"during %d" % n, b"x" * 700])
    assert not link.events_of("client", ConnectionClosed)
    assert not link.events_of("server", ConnectionClosed)
    assert conn.stats().receive_epochs[-1] == 3
    assert peer.stats().receive_epochs[-1] == 7
    assert conn.retransmissions == 0  # every ACK arrived and was accepted


def test_key_update_ack_waits_a_quarter_of_the_retransmit_timer(pki: Any) -> None:
    """RFC 9147 §7: post-handshake records are ACKed "potentially subject to some delay";
    ours is 1/4 of the retransmit timer, as for NewSessionTickets."""
    link = make_pair(pki)
    handshake(link)
    exchange(link, [b"settle"])
    link.run(until=link.now + 10)
    client, server = link.client, link.server
    now = link.now
    client.update_keys(request_peer_update=False)
    out = client.datagrams_to_send(now)
    assert len(out) == 1
    server.receive_datagram(out[0][0], CLIENT_ADDR, now)
    assert KeyUpdated("receive", 4) in _events(server)
    assert server.datagrams_to_send(now) == []  # not at once
    timer = server.get_timer()
    assert timer == pytest.approx(now + server._rto.value / 4)
    server.handle_timer(timer - 1e-6)
    assert server.datagrams_to_send(timer - 1e-6) == []
    server.handle_timer(timer)
    (ack, _), = server.datagrams_to_send(timer)
    client.receive_datagram(ack, SERVER_ADDR, timer)
    assert client.send_epoch == 4
    assert client.retransmissions == 0


def _events(conn: Connection) -> list[Any]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def test_ack_of_a_record_never_sent_is_refused(pki: Any) -> None:
    """After the handshake an ACK may name records above its own epoch, but only ones we
    sent: an epoch we never reached, or a sequence number not yet used, is
    illegal_parameter."""
    for number in [(9, 0), (3, 10_000)]:
        link = make_pair(pki)
        handshake(link)
        exchange(link, [b"x"])
        link.run(until=link.now + 10)
        record, _ = link.server._records.seal(3, ContentType.ACK, encode_ack([number]))
        link.client.receive_datagram(record, SERVER_ADDR, link.now)
        closed = [e for e in _events(link.client) if isinstance(e, ConnectionClosed)]
        assert closed and closed[0].alert == AlertDescription.ILLEGAL_PARAMETER, number


def test_ack_in_a_lower_epoch_is_refused_during_the_handshake(pki: Any) -> None:
    """RFC 9147 §7: during the handshake an ACK's epoch is at least that of the records it
    acknowledges: a plaintext ACK naming the server's epoch-2 record, arriving while the
    server waits for the client's Finished, is illegal_parameter."""
    link = make_pair(pki)
    injected: list[str] = []

    def inject(sent: Any) -> list[bytes]:
        if sent.direction == "s2c" and 2 in link.server._records.send_epochs and not injected:
            injected.append(link.server.state.value)
            record, _ = link.client._records.seal(0, ContentType.ACK, encode_ack([(2, 0)]))
            link.server.receive_datagram(record, CLIENT_ADDR, link.now)
            return []
        return [sent.data]

    link.filter = inject
    link.start()
    link.run(until=5)
    assert injected and injected[0] != "connected"
    closed = [e for e in link.server_events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.ILLEGAL_PARAMETER


def test_message_seq_exhausted(pki: Any) -> None:
    """RFC 9147 §5.2: message_seq has 16 bits. Past 0xffff `update_keys` refuses, and a
    peer's update_requested is ignored (§8: "SHOULD instead ignore" it) rather than
    raising out of the engine."""
    link = make_pair(pki)
    handshake(link)
    exchange(link, [b"x"])
    link.server._next_message_seq = 0x10000  # as after 65536 handshake messages
    with pytest.raises(ConnectionStateError):
        link.server.update_keys()
    link.client.update_keys(request_peer_update=True)
    link.run(until=link.now + 10)
    assert link.client.send_epoch == 4
    assert link.server.send_epoch == 3
    exchange(link, [b"still flowing"])
    assert not link.events_of("server", ConnectionClosed)


def test_key_update_waits_until_earlier_flights_are_acknowledged(pki: Any) -> None:
    """RFC 9147 §8: new keys only once "the KeyUpdate and all preceding messages have been
    acknowledged": a KeyUpdate asked for while the client's Finished is unacknowledged
    goes once it is, and its ACK then moves the client to epoch 4."""
    link = make_pair(pki)
    seen: dict[str, Any] = {}

    def lose_server_acks(sent: Any) -> list[bytes]:
        if link.client.state is HandshakeState.CONNECTED and "asked" not in seen:
            link.client.update_keys(request_peer_update=False)
            seen["asked"] = link.now
        flights = link.client._flights
        if "asked" in seen and "started" not in seen and FlightKind.KEY_UPDATE in flights:
            seen["started"] = FlightKind.HANDSHAKE not in flights
        if sent.direction == "s2c" and link.server.state is HandshakeState.CONNECTED:
            # the ACK of the client's Finished is lost, for a while
            return [] if link.now < 2.0 else [sent.data]
        return [sent.data]

    link.filter = lose_server_acks
    link.start()
    link.run(until=30)
    assert seen["asked"] < 2.0
    assert seen["started"] is True  # not before the Finished flight was acknowledged
    assert link.client.send_epoch == 4
    assert KeyUpdated("receive", 4) in link.events_of("server", KeyUpdated)
    assert not link.events_of("client", ConnectionClosed)


def test_post_handshake_message_after_a_key_update_in_its_epoch(pki: Any) -> None:
    """RFC 9147 §8: "A KeyUpdate message terminates the post-handshake stream in an epoch";
    a NewSessionTicket after it in the same epoch is unexpected_message."""
    link = make_pair(pki)
    handshake(link)
    exchange(link, [b"x"])
    link.run(until=link.now + 10)
    server = link.server
    seq = server._next_message_seq
    update = encode_handshake_body(KeyUpdate(0))
    ticket = encode_handshake_body(NewSessionTicket(3600, 0, b"n", b"ticket", None))
    body = encode_handshake_fragment(
        HandshakeType.KEY_UPDATE, len(update), seq, 0, update
    ) + encode_handshake_fragment(HandshakeType.NEW_SESSION_TICKET, len(ticket), seq + 1, 0, ticket)
    record, _ = server._records.seal(3, ContentType.HANDSHAKE, body)
    link.client.receive_datagram(record, SERVER_ADDR, link.now)
    closed = [e for e in _events(link.client) if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.UNEXPECTED_MESSAGE


def test_send_blocked_until_the_key_update_is_acknowledged(pki: Any) -> None:
    """RFC 9147 §4.5.3: at 3/4 of the confidentiality limit a KeyUpdate goes; at the limit
    `send` refuses (`send_blocked`) until its ACK, which comes after the ACK delay."""
    link = make_pair(pki, client_settings={"confidentiality_limit": 8})
    handshake(link)
    client = link.client
    for i in range(8 - client._records.send_epochs[3].next_seq):
        client.send(b"%d" % i)
    assert client.send_blocked
    with pytest.raises(ConnectionStateError):
        client.send(b"over the limit")
    link.run(until=link.now + 10)
    assert not client.send_blocked
    assert client.send_epoch == 4
    client.send(b"under the new keys")
