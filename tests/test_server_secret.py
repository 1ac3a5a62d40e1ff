"""Cookie and ticket keys derived from one shared secret by time period
(dtls.server_secret): endpoints sharing it accept each other's cookies and tickets."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from loopback import Loopback
from test_connection import handshake, make_pair
from test_handshake_errors import plaintext_messages
from test_session import Clock

from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.errors import ConfigurationError
from dtls.events import DataReceived, HandshakeCompleted, SessionTicketReceived
from dtls.handshake_server import respond_statelessly
from dtls.messages import ServerHello
from dtls.server_secret import COOKIE_LABEL, TICKET_LABEL, ServerSecret
from dtls.session import Session, TicketContents

SERVER = ("192.0.2.2", 4433)
CLIENT = ("198.51.100.7", 40000)


def server_context(pki: Any, secret: ServerSecret, clock: Clock, **settings: Any) -> Context:
    ctx = Context.server(shared_secret=secret, wall_clock=clock, **settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


def second_client_hello(pki: Any, issuer: Context, now: float) -> bytes:
    """The ClientHello that returns the cookie `issuer` put in its HelloRetryRequest."""
    client = Connection(Context.client(cadata=pki.ca_pem), server_name="localhost")
    client.connect(SERVER, now)
    (first, _), = client.datagrams_to_send(now)
    retry = respond_statelessly(issuer, first, CLIENT)
    assert retry.action == "retry" and retry.datagram is not None
    client.receive_datagram(retry.datagram, SERVER, now)
    (second, _), = client.datagrams_to_send(now)
    return second


def test_derivation_is_labelled_and_deterministic() -> None:
    master = bytes(range(32))
    a, b = ServerSecret(master), ServerSecret(master)
    assert a.key(COOKIE_LABEL, 7, 32) == b.key(COOKIE_LABEL, 7, 32)
    assert a.key(COOKIE_LABEL, 7, 32) != a.key(COOKIE_LABEL, 8, 32)
    assert a.key(COOKIE_LABEL, 7, 16) != a.key(TICKET_LABEL, 7, 16)
    assert a.key(COOKIE_LABEL, 7, 32) != ServerSecret(bytes(32)).key(COOKIE_LABEL, 7, 32)
    with pytest.raises(ConfigurationError):
        ServerSecret(bytes(16))


def test_cookie_from_one_endpoint_accepted_by_another_with_the_secret(pki: Any) -> None:
    clock, secret = Clock(), ServerSecret.generate()
    a = server_context(pki, secret, clock)
    b = server_context(pki, secret, clock)
    stranger = server_context(pki, ServerSecret.generate(), clock)
    hello = second_client_hello(pki, a, 5.0)
    assert respond_statelessly(b, hello, CLIENT).action == "accept"
    # Another secret: an invalid cookie, answered with illegal_parameter (RFC 9147 §5.1).
    assert respond_statelessly(stranger, hello, CLIENT).action == "reject"


def test_cookie_keys_rotate_with_one_period_of_overlap(pki: Any) -> None:
    clock, secret = Clock(), ServerSecret.generate()
    a = server_context(pki, secret, clock, cookie_lifetime=60.0)
    b = server_context(pki, secret, clock, cookie_lifetime=60.0)
    clock.now = 60.0 * 30_000_000 + 59.0  # the last second of a period
    hello = second_client_hello(pki, a, 5.0)
    sealing_key = a.cookie_secrets()[0]
    clock.now += 2.0  # the next wall-clock period: the previous key still opens
    assert b.cookie_secrets()[1] == sealing_key
    assert respond_statelessly(b, hello, CLIENT).action == "accept"
    clock.now += 60.0  # two periods on: the key is gone (and the cookie past its lifetime)
    assert sealing_key not in b.cookie_secrets()
    assert respond_statelessly(b, hello, CLIENT).action == "reject"


def _retry_then_answer(pki: Any, issuer: Context, issuer_now: float, other: Context,
                       other_now: float) -> list[Any]:
    """The messages `other` answers with, at its monotonic time `other_now`, to the second
    ClientHello carrying the cookie `issuer` sent at its own `issuer_now`."""
    client = Connection(Context.client(cadata=pki.ca_pem), server_name="localhost")
    client.connect(SERVER, 0.0)
    (first, _), = client.datagrams_to_send(0.0)
    a = Connection(issuer)
    a.receive_datagram(first, CLIENT, issuer_now)
    (retry, _), = a.datagrams_to_send(issuer_now)
    assert isinstance(plaintext_messages([retry])[0][1], ServerHello)  # the HelloRetryRequest
    client.receive_datagram(retry, SERVER, 0.1)
    (second, _), = client.datagrams_to_send(0.1)
    b = Connection(other)
    b.receive_datagram(second, CLIENT, other_now)
    return [m for _, m in plaintext_messages([d for d, _ in b.datagrams_to_send(other_now)])]


@pytest.mark.parametrize("issuer_first", [True, False], ids=["a_issues", "b_issues"])
def test_fleet_hosts_with_different_monotonic_clocks_accept_each_others_cookies(
    pki: Any, issuer_first: bool
) -> None:
    """Two hosts of a fleet share the secret and the wall clock (NTP), not the monotonic
    clock (its origin is each host's boot): a day apart here. Cookies carry wall-clock
    time, so each host accepts the other's (RFC 9147 §5.1)."""
    clock, secret = Clock(), ServerSecret.generate()
    hosts = [
        (server_context(pki, secret, clock, cookie_mode=CookieMode.ALWAYS), 5.0),
        (server_context(pki, secret, clock, cookie_mode=CookieMode.ALWAYS), 5.0 + 86_400.0),
    ]
    (issuer, issuer_now), (other, other_now) = hosts if issuer_first else hosts[::-1]
    answer = _retry_then_answer(pki, issuer, issuer_now, other, other_now + 1.0)
    assert answer and isinstance(answer[0], ServerHello)
    assert not answer[0].is_hello_retry_request  # the cookie was accepted: the handshake goes on


def resume_on(pki: Any, session: Session, server: Context, early: bytes | None = None) -> Loopback:
    clock = server.wall_clock
    client = Context.client(cadata=pki.ca_pem, wall_clock=clock, early_data=early is not None)
    link = Loopback(Connection(client, server_name="localhost", session=session),
                    Connection(server))
    if early is not None:
        link.client.send(early)
    handshake(link)
    return link


def first_session(pki: Any, secret: ServerSecret, clock: Clock, **settings: Any) -> Session:
    first = make_pair(
        pki,
        server_settings={"shared_secret": secret, "wall_clock": clock, **settings},
        client_settings={"wall_clock": clock, "early_data": True},
    )
    handshake(first)
    session: Session = first.events_of("client", SessionTicketReceived)[0].session
    return session


def test_ticket_from_one_endpoint_resumes_on_another_with_the_secret(pki: Any) -> None:
    clock, secret = Clock(), ServerSecret.generate()
    session = first_session(pki, secret, clock)
    clock.now += 10
    link = resume_on(pki, session, server_context(pki, secret, clock))
    assert link.events_of("server", HandshakeCompleted)[0].resumed
    other = resume_on(pki, session, server_context(pki, ServerSecret.generate(), clock))
    assert not other.events_of("server", HandshakeCompleted)[0].resumed


def test_ticket_keys_rotate_with_one_period_of_overlap(pki: Any) -> None:
    clock, secret = Clock(), ServerSecret.generate()
    clock.now = 100.0 * 18_000_000 + 99.0  # the last second of a period
    session = first_session(pki, secret, clock, ticket_key_rotation=100.0, ticket_lifetime=1000)
    server = server_context(pki, secret, clock, ticket_key_rotation=100.0)
    clock.now += 2.0  # the next period
    assert resume_on(pki, session, server).events_of("server", HandshakeCompleted)[0].resumed
    clock.now += 100.0  # two periods after it was sealed
    assert not resume_on(pki, session, server).events_of("server", HandshakeCompleted)[0].resumed


def test_ticket_names_its_issuer_and_only_the_issuer_accepts_early_data(pki: Any) -> None:
    clock, secret = Clock(), ServerSecret.generate()
    settings: dict[str, Any] = {"max_early_data_size": 4096, "cookie_mode": CookieMode.NEVER}
    issuer = server_context(pki, secret, clock, **settings)
    issuer.ticket_keys().issuer = b"\x01\x00"
    contents = TicketContents(0x1301, clock.now, 0, 10, 0, bytes(32))
    assert issuer.ticket_keys().open(issuer.ticket_keys().seal(contents)).issuer == b"\x01\x00"

    first = make_pair(pki, client_settings={"wall_clock": clock, "early_data": True})
    first.server = Connection(issuer)
    handshake(first)
    session = first.events_of("client", SessionTicketReceived)[0].session
    clock.now += 1
    elsewhere = server_context(pki, secret, clock, **settings)
    elsewhere.ticket_keys().issuer = b"\x01\x01"  # another worker of the same host
    link = resume_on(pki, session, elsewhere, early=b"early")
    done = link.events_of("server", HandshakeCompleted)[0]
    assert done.resumed and not done.early_data_accepted
    assert link.events_of("server", DataReceived) == []
    # The application has the refused data back and sends it as 1-RTT (RFC 9846 §4.2.10).
    assert link.client.early_data_rejected == [b"early"]
    link.client.send(link.client.early_data_rejected.pop())
    link.run()
    assert [(e.data, e.early) for e in link.events_of("server", DataReceived)] == [
        (b"early", False)
    ]
    again = resume_on(pki, session, issuer, early=b"early")  # the issuer: 0-RTT
    assert again.events_of("server", HandshakeCompleted)[0].early_data_accepted
    assert [(e.data, e.early) for e in again.events_of("server", DataReceived)] == [
        (b"early", True)
    ]


def test_secrets_file_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    made = ServerSecret.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ServerSecret.from_file(path)
    assert made.key(COOKIE_LABEL, 1, 32) == again.key(COOKIE_LABEL, 1, 32)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError):
        ServerSecret.from_file(path)
    path.write_text("not hex")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigurationError):
        ServerSecret.from_file(path)
