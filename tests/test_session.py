"""External PSKs, session tickets, resumption and 0-RTT (RFC 9846 §2.2, §2.3, §4.6.1, §8)
between two engines in memory."""

from __future__ import annotations

from typing import Any

import pytest
from loopback import Loopback
from test_connection import exchange, handshake, make_pair

from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.events import (
    ConnectionClosed,
    DataReceived,
    HandshakeCompleted,
    SessionTicketReceived,
)
from dtls.iana import AlertDescription, PskKeyExchangeMode
from dtls.session import ExternalPsk, Session, TicketContents, TicketKeys

PSK = ExternalPsk(b"Client_identity", bytes.fromhex("0123456789abcdef" * 4))


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def psk_pair(modes: tuple[int, ...] = (1,), lookup: Any = None) -> Loopback:
    client = Context.client(verify=False, psk=PSK, psk_key_exchange_modes=modes)
    server = Context.server(
        psk_lookup=lookup or {PSK.identity: PSK}.get,
        psk_key_exchange_modes=modes,
        cookie_mode=CookieMode.NEVER,
    )
    return Loopback(Connection(client), Connection(server))


@pytest.mark.parametrize(
    "modes", [(PskKeyExchangeMode.PSK_DHE_KE,), (PskKeyExchangeMode.PSK_KE,)], ids=str
)
def test_external_psk(modes: tuple[int, ...]) -> None:
    link = psk_pair(modes)
    c, s = handshake(link)
    assert c.peer_certificates == () and not c.resumed and not s.resumed
    assert (c.group is None) == (modes == (PskKeyExchangeMode.PSK_KE,))
    exchange(link, [b"psk protected"])


def test_external_psk_wrong_key_fails_binder() -> None:
    wrong = ExternalPsk(PSK.identity, bytes(32))
    link = psk_pair(lookup={PSK.identity: wrong}.get)
    link.start()
    link.run()
    closed = link.events_of("server", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.DECRYPT_ERROR


def test_unknown_psk_identity_without_certificate_fails() -> None:
    link = psk_pair(lookup=lambda identity: None)
    link.start()
    link.run()
    closed = link.events_of("server", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.HANDSHAKE_FAILURE


def full_then_resume(
    pki: Any,
    clock: Clock,
    *,
    server_settings: dict[str, Any] | None = None,
    client_settings: dict[str, Any] | None = None,
    advance: float = 10.0,
    early: list[bytes] | None = None,
    mangle_ticket: Any = None,
) -> tuple[Loopback, Loopback]:
    server_settings = {"wall_clock": clock, **(server_settings or {})}
    client_settings = {"wall_clock": clock, **(client_settings or {})}
    first = make_pair(pki, server_settings=server_settings, client_settings=client_settings)
    handshake(first)
    tickets = first.events_of("client", SessionTicketReceived)
    assert len(tickets) == 1
    session: Session = tickets[0].session
    if mangle_ticket is not None:
        session.ticket = mangle_ticket(session.ticket)
    clock.now += advance
    second = Loopback(
        Connection(first.client.context, server_name="localhost", session=session),
        Connection(first.server.context),
    )
    for data in early or []:
        second.client.send(data)
    handshake(second)
    return first, second


def test_resumption_with_ticket(pki: Any) -> None:
    clock = Clock()
    first, second = full_then_resume(pki, clock)
    c, s = (
        second.events_of("client", HandshakeCompleted)[0],
        second.events_of("server", HandshakeCompleted)[0],
    )
    assert c.resumed and s.resumed and c.peer_certificates == ()
    # No Certificate on the wire: the server's flight is much smaller than the first time.
    first_flight = sum(len(d.data) for d in first.sent[:3] if d.direction == "s2c")
    second_flight = sum(len(d.data) for d in second.sent[:3] if d.direction == "s2c")
    assert second_flight < first_flight / 2
    exchange(second, [b"resumed"])


def test_resumption_through_cookie_retry(pki: Any) -> None:
    clock = Clock()
    _, second = full_then_resume(pki, clock, server_settings={"cookie_mode": CookieMode.ALWAYS})
    assert second.events_of("client", HandshakeCompleted)[0].resumed
    assert second.sent[1].direction == "s2c" and len(second.sent[1].data) < 200  # the HRR


def test_session_survives_serialisation(pki: Any) -> None:
    clock = Clock()
    first = make_pair(
        pki, server_settings={"wall_clock": clock}, client_settings={"wall_clock": clock}
    )
    handshake(first)
    session = first.events_of("client", SessionTicketReceived)[0].session
    restored = Session.from_bytes(session.to_bytes())
    assert restored == session
    second = Loopback(
        Connection(first.client.context, server_name="localhost", session=restored),
        Connection(first.server.context),
    )
    assert handshake(second)[0].resumed


def test_expired_ticket_falls_back_to_full_handshake(pki: Any) -> None:
    clock = Clock()
    _, second = full_then_resume(pki, clock, server_settings={"ticket_lifetime": 60}, advance=61)
    c = second.events_of("client", HandshakeCompleted)[0]
    assert not c.resumed and c.peer_certificates


@pytest.mark.parametrize("where", [0, 10, -20, -1])
def test_tampered_ticket_falls_back_to_full_handshake(pki: Any, where: int) -> None:
    def flip(ticket: bytes) -> bytes:
        b = bytearray(ticket)
        b[where] ^= 0x40
        return bytes(b)

    clock = Clock()
    _, second = full_then_resume(pki, clock, mangle_ticket=flip)
    c = second.events_of("client", HandshakeCompleted)[0]
    assert not c.resumed and c.peer_certificates


def test_ticket_from_another_server_is_not_accepted(pki: Any) -> None:
    clock = Clock()
    first = make_pair(
        pki, server_settings={"wall_clock": clock}, client_settings={"wall_clock": clock}
    )
    handshake(first)
    session = first.events_of("client", SessionTicketReceived)[0].session
    first.server.context._ticket_keys = TicketKeys()  # a restart with new keys
    second = Loopback(
        Connection(first.client.context, server_name="localhost", session=session),
        Connection(first.server.context),
    )
    assert not handshake(second)[0].resumed


def early_settings() -> tuple[dict[str, Any], dict[str, Any]]:
    return {"max_early_data_size": 4096}, {"early_data": True}


def test_zero_rtt_accepted(pki: Any) -> None:
    clock = Clock()
    server_settings, client_settings = early_settings()
    _, second = full_then_resume(
        pki,
        clock,
        server_settings=server_settings,
        client_settings=client_settings,
        early=[b"A drop of info", b"second early record"],
    )
    c = second.events_of("client", HandshakeCompleted)[0]
    assert c.resumed and c.early_data_accepted
    got = second.events_of("server", DataReceived)
    assert [(e.data, e.early) for e in got] == [
        (b"A drop of info", True),
        (b"second early record", True),
    ]
    # The early data left with the ClientHello, before any answer from the server.
    assert second.sent[0].direction == "c2s"
    exchange(second, [b"after 0-RTT"])


@pytest.mark.parametrize("records", [1, 2, 12])
def test_zero_rtt_with_connection_ids(pki: Any, records: int) -> None:
    # RFC 9147 §9: 0-RTT records carry no CID (it is negotiated by the ServerHello), yet
    # they follow a ClientHello that makes the server expect its CID on records from then.
    clock = Clock()
    server_settings, client_settings = early_settings()
    early = [bytes([i]) * 300 for i in range(records)]  # 12: more than one datagram
    _, second = full_then_resume(
        pki,
        clock,
        server_settings={**server_settings, "connection_id": bytes(range(8))},
        client_settings={**client_settings, "connection_id": b""},
        early=early,
    )
    c = second.events_of("client", HandshakeCompleted)[0]
    assert c.resumed and c.early_data_accepted
    got = second.events_of("server", DataReceived)
    assert [(e.data, e.early) for e in got] == [(d, True) for d in early]
    assert second.server.record_counters.malformed == 0
    exchange(second, [b"after 0-RTT, with CIDs"])


def test_zero_rtt_rejected_never_reaches_the_application(pki: Any) -> None:
    clock = Clock()
    server_settings, client_settings = early_settings()
    first, second = full_then_resume(
        pki,
        clock,
        server_settings=server_settings,
        client_settings=client_settings,
        early=[b"rejected"],
    )
    assert second.events_of("client", HandshakeCompleted)[0].early_data_accepted
    # Now the server stops taking early data: the client is told, the server never sees it.
    first.server.context.max_early_data_size = 0
    session = second.events_of("client", SessionTicketReceived)[0].session
    third = Loopback(
        Connection(first.client.context, server_name="localhost", session=session),
        Connection(first.server.context),
    )
    third.client.send(b"must not arrive")
    c, _ = handshake(third)
    assert c.resumed and not c.early_data_accepted
    assert third.events_of("server", DataReceived) == []
    assert third.server.record_counters.unknown_epoch >= 1


def test_replayed_zero_rtt_client_hello_is_refused(pki: Any) -> None:
    clock = Clock()
    server_settings, client_settings = early_settings()
    _, second = full_then_resume(
        pki,
        clock,
        server_settings=server_settings,
        client_settings=client_settings,
        early=[b"pay 100"],
    )
    assert second.events_of("server", DataReceived)[0].data == b"pay 100"
    # An attacker replays the client's first datagram (ClientHello + 0-RTT) to a new
    # server connection of the same server.
    replay = Connection(second.server.context)
    replay.receive_datagram(second.sent[0].data, ("198.51.100.9", 4444), clock.now)
    while (event := replay.next_event()) is not None:
        assert not isinstance(event, DataReceived)
    assert replay.datagrams_to_send(clock.now)  # it still answers, without 0-RTT
    assert replay.early_data_accepted is False


def test_no_early_data_after_hello_retry(pki: Any) -> None:
    clock = Clock()
    server_settings, client_settings = early_settings()
    server_settings["cookie_mode"] = CookieMode.ALWAYS
    _, second = full_then_resume(
        pki,
        clock,
        server_settings=server_settings,
        client_settings=client_settings,
        early=[b"after retry, not early"],
    )
    c = second.events_of("client", HandshakeCompleted)[0]
    assert c.resumed and not c.early_data_accepted
    got = second.events_of("server", DataReceived)
    assert [(e.data, e.early) for e in got] == [(b"after retry, not early", False)]


def test_client_psk_selection_by_server_name() -> None:
    chosen: list[str | None] = []

    def select(server_name: str | None) -> ExternalPsk | None:
        chosen.append(server_name)
        return PSK if server_name == "sensor-9.example" else None

    client = Context.client(verify=False, psk=select)
    server = Context.server(psk_lookup={PSK.identity: PSK}.get, cookie_mode=CookieMode.NEVER)
    link = Loopback(Connection(client, server_name="sensor-9.example"), Connection(server))
    c, _ = handshake(link)
    assert chosen == ["sensor-9.example"] and c.peer_certificates == ()
    # Another name gets no PSK, and this certificate-less server cannot serve it.
    other = Loopback(Connection(client, server_name="other.example"), Connection(server))
    other.start()
    other.run()
    assert other.events_of("server", ConnectionClosed)[0].alert == (
        AlertDescription.HANDSHAKE_FAILURE
    )


def test_ticket_keys_rotate(pki: Any) -> None:
    clock = Clock()
    settings = {"wall_clock": clock, "ticket_key_rotation": 100.0, "ticket_lifetime": 1000}
    first = make_pair(pki, server_settings=settings, client_settings={"wall_clock": clock})
    handshake(first)
    old = first.events_of("client", SessionTicketReceived)[0].session

    def resume(session: Session) -> bool:
        link = Loopback(
            Connection(first.client.context, server_name="localhost", session=session),
            Connection(first.server.context),
        )
        return bool(handshake(link)[0].resumed)

    keys = first.server.context.ticket_keys()
    clock.now += 150  # past one rotation interval: the next ticket uses a new key
    second = make_pair(pki, client_settings={"wall_clock": clock})
    second.server = Connection(first.server.context)
    handshake(second)
    newer = second.events_of("client", SessionTicketReceived)[0].session
    assert newer.ticket[:4] != old.ticket[:4]  # another key id
    assert resume(old) and resume(newer)  # the previous key still opens
    clock.now += 150
    keys.seal(TicketContents(0x1301, clock.now, 0, 10, 0, bytes(32)))  # rotates again
    assert not resume(old)  # two rotations later the first key is gone


def test_new_session_ticket_ack_is_delayed(pki: Any) -> None:
    # RFC 9147 §7.1: the client ACKs a NewSessionTicket after 1/4 of its retransmit timer,
    # not at once, so that tickets sent back to back can share one ACK (as BoringSSL
    # does, and its runner expects).
    from dtls.events import SessionTicketReceived

    link = make_pair(pki, server_settings={"session_tickets": 2})
    handshake(link)
    assert link.events_of("client", SessionTicketReceived)
    last_ticket = [d for d in link.sent if d.direction == "s2c"][-1]
    after = [d for d in link.sent if d.direction == "c2s" and d.time > last_ticket.time]
    assert len(after) == 1  # the ACK
    arrival = last_ticket.time + link.latency
    delay = after[0].time - arrival
    assert delay == pytest.approx(link.client._rto.value / 4, rel=1e-6)


def test_server_sends_session_tickets_count_in_one_flight(pki: Any) -> None:
    # Context.session_tickets is how many NewSessionTickets the server sends (RFC 9846
    # §4.6.1 allows several); they go as one post-handshake flight, one ACK for all
    # (RFC 9147 §5.8.4). BoGo's runner expects BoringSSL's two.
    link = make_pair(pki, server_settings={"session_tickets": 2})
    handshake(link)
    link.run(until=link.now + 60)
    tickets = link.events_of("client", SessionTicketReceived)
    assert len(tickets) == 2
    assert tickets[0].session.ticket != tickets[1].session.ticket
    assert not link.server._flights  # both acknowledged, nothing left to retransmit
    assert link.server.retransmissions == 0


def test_resumption_secret_derived_once_for_the_tickets_that_come(pki: Any) -> None:
    # RFC 9846 §7.1: the client derives resumption_secret when the first ticket comes,
    # and each ticket's PSK from it (§4.6.1); without tickets it is never derived.
    link = make_pair(pki, server_settings={"session_tickets": 2})
    handshake(link)
    link.run(until=link.now + 60)
    sessions = [e.session for e in link.events_of("client", SessionTicketReceived)]
    assert len(sessions) == 2 and sessions[0].psk != sessions[1].psk
    for session in sessions:
        again = Loopback(
            Connection(link.client.context, server_name="localhost", session=session),
            Connection(link.server.context),
        )
        assert handshake(again)[0].resumed
    quiet = make_pair(pki, server_settings={"session_tickets": 0})
    handshake(quiet)
    quiet.run(until=quiet.now + 60)
    assert not quiet.events_of("client", SessionTicketReceived)
    assert "resumption" not in quiet.client._handshake.secrets
