"""Context.sni_callback: a server picks the context (certificate, ALPN, ...) by the name a
ClientHello asks for (RFC 6066 §3), and clients verify what they get."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from loopback import Loopback

from dtls import errors, sync
from dtls.config import Context
from dtls.connection import Connection
from dtls.events import ConnectionClosed, HandshakeCompleted
from dtls.iana import AlertDescription
from dtls.session import Session

HOST = "127.0.0.1"


def contexts(pki: Any, **settings: Any) -> tuple[Context, Context, list[str | None]]:
    """The listening context (localhost's certificate) choosing the wildcard one for names
    under wild.example; and the names it was asked for."""
    wild = Context.server(alpn_protocols=("wild-proto",))
    wild.load_cert_chain(certdata=pki.wildcard.chain_pem, keydata=pki.wildcard.key_pem)
    asked: list[str | None] = []

    def choose(name: str | None) -> Context | None:
        asked.append(name)
        if name == "refused.example":
            raise errors.ProtocolError("no such name", AlertDescription.UNRECOGNIZED_NAME)
        return wild if name is not None and name.endswith(".wild.example") else None

    listening = Context.server(sni_callback=choose, **settings)
    listening.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return listening, wild, asked


def handshake(pki: Any, server_ctx: Context, name: str | None,
              session: Session | None = None, **client: Any) -> Loopback:
    client_ctx = (Context.client(cadata=pki.ca_pem, **client) if name is not None
                  else Context.client(cadata=pki.ca_pem, check_hostname=False, **client))
    link = Loopback(Connection(client_ctx, server_name=name, session=session),
                    Connection(server_ctx))
    link.start()
    link.run()
    return link


@pytest.mark.parametrize("cookie", ["never", "always"])
def test_each_name_gets_its_certificate_and_the_client_verifies_it(
    pki: Any, cookie: str
) -> None:
    listening, wild, asked = contexts(pki, cookie_mode=cookie)
    link = handshake(pki, listening, "device.wild.example", alpn_protocols=("wild-proto",))
    assert link.events_of("client", HandshakeCompleted)  # verified against *.wild.example
    assert link.client.peer_certificates[0] == pki.wildcard.cert
    assert link.server.context is wild
    assert link.client.selected_alpn_protocol() == "wild-proto"  # the chosen context's ALPN
    # with cookies, the ClientHello after the HelloRetryRequest asks again
    assert asked == ["device.wild.example"] * (2 if cookie == "always" else 1)

    link = handshake(pki, listening, "localhost")
    assert link.events_of("client", HandshakeCompleted)
    assert link.client.peer_certificates[0] == pki.server.cert
    assert link.server.context is listening


def test_a_name_the_callback_does_not_pick_gets_the_listening_certificate(pki: Any) -> None:
    listening, _, asked = contexts(pki, cookie_mode="never")
    link = handshake(pki, listening, "other.example")
    closed = link.events_of("client", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.BAD_CERTIFICATE  # name mismatch
    assert asked == ["other.example"]

    link = handshake(pki, listening, None)  # no SNI at all
    assert link.events_of("client", HandshakeCompleted)
    assert asked[-1] is None and link.client.peer_certificates[0] == pki.server.cert


def test_the_callback_refuses_a_name_with_its_alert(pki: Any) -> None:
    listening, _, _ = contexts(pki, cookie_mode="never")
    link = handshake(pki, listening, "refused.example")
    closed = link.events_of("client", ConnectionClosed)
    assert closed and closed[0].by_peer and closed[0].alert == AlertDescription.UNRECOGNIZED_NAME
    assert not link.events_of("server", HandshakeCompleted)


def test_a_callback_returning_a_client_context_fails_the_handshake(pki: Any) -> None:
    listening = Context.server(cookie_mode="never",
                               sni_callback=lambda name: Context.client(verify=False))
    listening.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    link = handshake(pki, listening, "localhost")
    closed = link.events_of("server", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.INTERNAL_ERROR
    assert not link.events_of("client", HandshakeCompleted)


def test_resumption_uses_the_chosen_contexts_tickets(pki: Any) -> None:
    listening, wild, _ = contexts(pki, cookie_mode="never")
    first = handshake(pki, listening, "a.wild.example")
    session = first.client.session
    assert session is not None
    again = handshake(pki, listening, "a.wild.example", session=session)
    assert again.events_of("client", HandshakeCompleted)[0].resumed
    assert again.server.context is wild


def test_sni_through_the_endpoint_and_a_live_server(pki: Any) -> None:
    listening, _, _ = contexts(pki)  # the endpoint answers with stateless cookies
    with sync.Server((HOST, 0), listening) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        wild_names = (("DNS", "*.wild.example"),)
        server_names = (("DNS", "localhost"), ("DNS", "server.example"),
                        ("IP Address", "127.0.0.1"), ("IP Address", "0:0:0:0:0:0:0:1"))
        for name, cert, names in (("x.wild.example", pki.wildcard.cert, wild_names),
                                  ("localhost", pki.server.cert, server_names)):
            with sync.connect(server.server_address, Context.client(cadata=pki.ca_pem),
                              server_name=name, timeout=10) as conn:
                assert conn.peer_certificates[0] == cert
                peercert = conn.getpeercert()
                assert isinstance(peercert, dict) and peercert["subjectAltName"] == names
        with pytest.raises(errors.DTLSError):
            sync.connect(server.server_address, Context.client(cadata=pki.ca_pem),
                         server_name="refused.example", timeout=10)
