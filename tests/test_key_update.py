"""KeyUpdate and its ACK (RFC 9147 §7, §8): after the handshake the two directions' epochs
are apart, an ACK goes in the sender's highest epoch, after a short delay."""

from __future__ import annotations

from typing import Any

import pytest
from loopback import CLIENT_ADDR, SERVER_ADDR, Loopback
from test_connection import exchange, handshake, make_pair

from dtls.connection import Connection
from dtls.errors import ConnectionStateError
from dtls.events import ConnectionClosed, KeyUpdated
from dtls.iana import AlertDescription, ContentType
from dtls.messages import encode_ack


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
