"""Connection IDs over time and address changes (RFC 9147 §9, draft-ietf-tls-dtls-rrc),
between two engines in memory."""

from __future__ import annotations

from typing import Any

import pytest
from loopback import CLIENT_ADDR, Loopback
from test_connection import exchange, handshake, make_pair

from dtls.errors import ConnectionStateError
from dtls.events import ConnectionIdsIssued, DataReceived, PeerAddressChanged
from dtls.path import RRC_CONTENT_TYPE, RrcMessageType, decode_rrc, encode_rrc

NEW_ADDR = ("198.51.100.77", 6000)


def cid_pair(pki: Any, **client: Any) -> Loopback:
    link = make_pair(
        pki,
        client_settings={"connection_id": b"client-1", **client},
        server_settings={"connection_id": b"srv-0001"},
    )
    handshake(link)
    return link


def test_rrc_codec() -> None:
    assert decode_rrc(encode_rrc(RrcMessageType.PATH_RESPONSE, b"12345678")) == (1, b"12345678")
    with pytest.raises(ValueError):
        encode_rrc(0, b"short")


def test_new_connection_ids_immediate_and_spare(pki: Any) -> None:
    link = cid_pair(pki)
    spare = link.server.issue_connection_ids(2)
    link.run(until=link.now + 5)
    assert ConnectionIdsIssued(tuple(spare)) in link.server_events
    assert link.client.peer_cid == b"srv-0001"  # spares do not replace the current CID
    assert link.client.use_next_peer_cid() == spare[0]
    exchange(link, [b"with a spare CID"])
    assert link.sent[-2].data[1:9] in (spare[0], b"client-1")
    now = link.server.issue_connection_ids(1, immediate=True)
    link.run(until=link.now + 5)
    assert link.client.peer_cid == now[0]
    exchange(link, [b"with the immediate CID"])
    c2s = [d for d in link.sent if d.direction == "c2s"]
    assert c2s[-1].data[1 : 1 + len(now[0])] == now[0]
    # The client went through spare[0] to the immediate CID: the CIDs issued before the one
    # in use retired (see test_old_connection_ids_retire_once_the_peer_moves_on).
    assert link.server.local_cids == tuple(now)


def test_request_connection_ids(pki: Any) -> None:
    link = cid_pair(pki)
    link.client.request_connection_ids(3)
    with pytest.raises(ConnectionStateError):
        link.client.request_connection_ids(1)  # one request at a time (§9)
    link.run(until=link.now + 5)
    issued = [e for e in link.server_events if isinstance(e, ConnectionIdsIssued)]
    assert len(issued) == 1 and len(issued[0].cids) == 3
    assert link.client.use_next_peer_cid() == issued[0].cids[0]
    link.client.request_connection_ids(1)  # fulfilled: may ask again


def test_no_cid_updates_without_negotiation(pki: Any) -> None:
    link = make_pair(pki)
    handshake(link)
    with pytest.raises(ConnectionStateError):
        link.client.request_connection_ids(1)
    with pytest.raises(ConnectionStateError):
        link.server.issue_connection_ids(1)


def test_address_change_moves_only_after_return_routability_check(pki: Any) -> None:
    link = cid_pair(pki)
    assert link.server.peer_address == CLIENT_ADDR
    link.client_addr = NEW_ADDR  # a NAT rebinding: the client's packets come from elsewhere
    link.client.send(b"from the new address")
    link.run(until=link.now + 5)
    # The record was accepted at once ...
    assert link.events_of("server", DataReceived)[-1].data == b"from the new address"
    # ... and the connection moved after the new address echoed the challenge.
    moved = link.events_of("server", PeerAddressChanged)
    assert moved == [PeerAddressChanged(CLIENT_ADDR, NEW_ADDR)]
    challenges = [d for d in link.sent if d.destination == NEW_ADDR and d.direction == "s2c"]
    assert challenges and all(len(d.data) < 3 * 40 for d in challenges[:1])
    exchange(link, [b"both ways on the new path"])


def test_spoofed_address_gets_challenged_but_no_move(pki: Any) -> None:
    link = cid_pair(pki)
    link.client.send(b"genuine")
    datagram = link.client.datagrams_to_send(link.now)[0][0]
    # An on-path attacker replays... no: forwards a copy from its own address first.
    link.server.receive_datagram(datagram, ("203.0.113.66", 1), link.now)
    probes = link.server.datagrams_to_send(link.now)
    assert [addr for _, addr in probes] == [("203.0.113.66", 1)]
    # The attacker cannot answer the encrypted challenge; nothing moves, however long.
    for step in range(1, 10):
        link.server.handle_timer(link.now + step)
        link.server.datagrams_to_send(link.now + step)
    assert link.server.peer_address == CLIENT_ADDR
    assert link.server.get_timer() is None or link.server.get_timer() > link.now + 9


def test_path_challenge_answered_to_its_source(pki: Any) -> None:
    link = cid_pair(pki)
    epoch = link.server.send_epoch
    record, _ = link.server._records.seal(
        epoch, RRC_CONTENT_TYPE, encode_rrc(RrcMessageType.PATH_CHALLENGE, b"abcdefgh")
    )
    link.client.receive_datagram(record, ("192.0.2.99", 1234), link.now)
    out = link.client.datagrams_to_send(link.now)
    assert {addr for _, addr in out} == {("192.0.2.99", 1234)}
    messages = []
    for datagram, _ in out:
        for opened in link.server._records.open(datagram, link.now):
            assert opened.content_type == RRC_CONTENT_TYPE
            messages.append(decode_rrc(opened.payload))
    # The answer, and (the server's address changed too, as the client sees it) the
    # client's own challenge of that address.
    assert (RrcMessageType.PATH_RESPONSE, b"abcdefgh") in messages
    assert [m for m, _ in messages].count(RrcMessageType.PATH_CHALLENGE) == 1


def test_old_connection_ids_retire_once_the_peer_moves_on(pki: Any) -> None:
    from dtls.events import ConnectionIdsRetired

    link = cid_pair(pki)
    new = link.server.issue_connection_ids(2)
    link.run(until=link.now + 5)
    assert link.client.use_next_peer_cid() == new[0]
    exchange(link, [b"on the second CID"])
    # The client sends with new[0]: the server's first CID is superseded (RFC 9147 §9).
    assert ConnectionIdsRetired((b"srv-0001",)) in link.server_events
    assert link.server.local_cids == tuple(new)
    link.client.use_next_peer_cid()
    exchange(link, [b"on the third"])
    assert ConnectionIdsRetired((new[0],)) in link.server_events
    assert link.server.local_cids == (new[1],)
