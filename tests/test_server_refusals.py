"""A server answers before the cookie: a ClientHello the two sides cannot agree on gets
the alert RFC 9846 §4.1.1 and §6.2 name, in a plaintext epoch-0 record smaller than the
ClientHello (no amplification, RFC 9147 §5.1), rate limited per host and counted by
reason; what does not parse as a ClientHello is still dropped."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_server import SERVER, client_context, server_context

from dtls import errors, sync
from dtls.config import Context
from dtls.connection import Connection, HandshakeState
from dtls.events import AlertReceived, ConnectionClosed
from dtls.iana import AlertDescription, AlertLevel, ContentType, SignatureScheme
from dtls.messages import decode_alert
from dtls.record_py import PLAINTEXT_HEADER_LEN, split_datagram
from dtls.server import REFUSALS_PER_HOST, ServerEndpoint

A = AlertDescription
ADDR = ("198.51.100.30", 5000)


def _rpk_server(pki: Any) -> Context:
    ctx = Context.server(raw_public_key=True)
    ctx.private_key = pki.server.key  # a bare key, no certificate (RFC 7250)
    return ctx


def _psk_only_server(pki: Any) -> Context:
    return Context.server(psk_lookup=lambda identity: None)


Case = tuple[Callable[[Any], Context], dict[str, Any], AlertDescription, str]
CASES: dict[str, Case] = {
    # name: (server context, client settings, alert, reason)
    "no_common_suite": (
        lambda pki: server_context(pki, cipher_suites=("TLS_AES_128_GCM_SHA256",)),
        {"cipher_suites": ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")},
        A.HANDSHAKE_FAILURE, "cipher_suite",
    ),
    "ccm8_turned_off": (
        lambda pki: server_context(pki),
        {"cipher_suites": ("TLS_AES_128_CCM_8_SHA256",)},
        A.INSUFFICIENT_SECURITY, "cipher_suite",
    ),
    "no_common_group": (
        lambda pki: server_context(pki, groups=("x25519", "x25519mlkem768")),
        {"groups": ("secp256r1", "secp384r1")},
        A.HANDSHAKE_FAILURE, "group",
    ),
    "certificate_only_client_raw_key_server": (
        _rpk_server, {}, A.UNSUPPORTED_CERTIFICATE, "authentication",
    ),
    "no_signature_scheme_for_our_key": (
        lambda pki: server_context(pki),
        {"signature_algorithms": (SignatureScheme.ED448,)},
        A.HANDSHAKE_FAILURE, "authentication",
    ),
    "certificate_client_psk_only_server": (
        _psk_only_server, {}, A.HANDSHAKE_FAILURE, "authentication",
    ),
}


def _alerts(datagram: bytes) -> list[tuple[int, int]]:
    spans, _ = split_datagram(datagram)
    return [
        decode_alert(datagram[sp.offset + PLAINTEXT_HEADER_LEN : sp.offset + sp.length])
        for sp in spans
        if sp.first_byte == ContentType.ALERT and sp.epoch == 0
    ]


def _first_flight(client: Connection, now: float = 0.0) -> list[bytes]:
    return [d for d, _ in client.datagrams_to_send(now)]


@pytest.mark.parametrize("case", list(CASES))
def test_disagreement_is_answered_with_the_alert_in_one_round_trip(pki: Any, case: str) -> None:
    make_server, client_settings, alert, reason = CASES[case]
    endpoint = ServerEndpoint(make_server(pki))  # cookie mode "always", the default
    client = Connection(client_context(pki, **client_settings), server_name="localhost")
    client.connect(SERVER, 0.0)
    [hello] = _first_flight(client)
    endpoint.receive_datagram(hello, ADDR, 0.0)
    [(reply, to)] = endpoint.datagrams_to_send(0.0)
    assert to == ADDR
    assert _alerts(reply) == [(AlertLevel.FATAL, alert)]
    assert len(reply) == 15 < len(hello)  # amplification below 1
    assert reply[5:11] == hello[5:11]  # the ClientHello's record number (RFC 9147 §5.1)
    # No state: no connection, no timer.
    assert not endpoint.connections and endpoint.get_timer() is None
    stats = endpoint.stats()
    assert stats.refused() == {r: int(r == reason) for r in stats.refused()}
    assert stats.cookies_sent == 0 and stats.garbage_dropped == 0
    assert stats.handshakes_started == 0 and stats.datagrams_sent == 1
    # The client learns it at once, not by a timeout.
    client.receive_datagram(reply, SERVER, 0.0)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    assert events[0] == AlertReceived(AlertLevel.FATAL, alert)
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert (closed.alert, closed.by_peer, closed.error) == (alert, True, True)
    assert client.state is HandshakeState.CLOSED and client.get_timer() is None


def _dtls12_client_hello() -> bytes:
    """A DTLS 1.2 ClientHello (RFC 6347 §4.2.2): no supported_versions extension."""
    extensions = b"".join(
        struct.pack("!HH", t, len(d)) + d
        for t, d in [
            (10, b"\x00\x04\x00\x1d\x00\x17"),  # supported_groups: x25519, secp256r1
            (11, b"\x01\x00"),  # ec_point_formats: uncompressed
            (13, b"\x00\x04\x04\x03\x08\x04"),  # signature_algorithms
            (23, b""),  # extended_master_secret
        ]
    )
    body = (
        b"\xfe\xfd" + bytes(range(32)) + b"\x00" + b"\x00"  # session_id, cookie: empty
        + b"\x00\x04\xc0\x2b\xc0\x2f" + b"\x01\x00"  # ECDHE-GCM suites, null compression
        + struct.pack("!H", len(extensions)) + extensions
    )
    handshake = struct.pack("!B", 1) + len(body).to_bytes(3, "big") + b"\x00\x00"
    handshake += bytes(3) + len(body).to_bytes(3, "big") + body
    # DTLS 1.0 record version, epoch 0, sequence number 7
    return b"\x16\xfe\xff" + (7).to_bytes(8, "big") + struct.pack("!H", len(handshake)) + handshake


def test_dtls12_client_hello_gets_protocol_version(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    hello = _dtls12_client_hello()
    endpoint.receive_datagram(hello, ADDR, 0.0)
    [(reply, to)] = endpoint.datagrams_to_send(0.0)
    assert to == ADDR and _alerts(reply) == [(AlertLevel.FATAL, A.PROTOCOL_VERSION)]
    assert len(reply) < len(hello)
    assert reply[3:11] == (7).to_bytes(8, "big")  # epoch 0, the ClientHello's sequence number
    stats = endpoint.stats()
    assert stats.refused_protocol_version == 1 and sum(stats.refused().values()) == 1
    assert not endpoint.connections


def test_garbage_is_still_dropped_and_counted(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    hello = _dtls12_client_hello()
    garbage = [
        hello[:40],  # truncated
        hello[:13] + b"\x02" + hello[14:],  # a ServerHello
        hello[:25] + b"\xff" * (len(hello) - 25),  # a body that does not parse
        b"\x16\xfe\xfd" + bytes(10),
    ]
    for data in garbage:
        endpoint.receive_datagram(data, ADDR, 0.0)
    assert endpoint.datagrams_to_send(0.0) == []
    stats = endpoint.stats()
    assert stats.garbage_dropped == len(garbage) and sum(stats.refused().values()) == 0


def test_refusals_are_rate_limited_per_host(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki, cipher_suites=("TLS_AES_128_GCM_SHA256",)))
    ctx = client_context(pki, cipher_suites=("TLS_AES_256_GCM_SHA384",))
    client = Connection(ctx, server_name="localhost")
    client.connect(SERVER, 0.0)
    [hello] = _first_flight(client)
    burst = int(REFUSALS_PER_HOST)
    for port in range(50):  # one host (a spoofed victim, say), many ports, one instant
        endpoint.receive_datagram(hello, ("203.0.113.9", 1000 + port), 1.0)
    endpoint.receive_datagram(hello, ("203.0.113.10", 1000), 1.0)  # another host
    replies = endpoint.datagrams_to_send(1.0)
    assert len(replies) == burst + 1
    assert sum(to[0] == "203.0.113.9" for _, to in replies) == burst
    stats = endpoint.stats()
    assert stats.refused_cipher_suite == 51 and stats.refusals_rate_limited == 50 - burst
    # The bucket refills at REFUSALS_PER_HOST per second.
    for port in range(5):
        endpoint.receive_datagram(hello, ("203.0.113.9", 2000 + port), 1.3)
    assert len(endpoint.datagrams_to_send(1.3)) == 3
    assert endpoint.stats().refusals_rate_limited == 50 - burst + 2
    # Answered bytes stay below received bytes for the flooded host.
    assert stats.bytes_sent < stats.bytes_received


def test_bad_cookie_is_a_refusal_not_a_cookie(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    client = Connection(client_context(pki), server_name="localhost")
    client.connect(SERVER, 0.0)
    for data in _first_flight(client):
        endpoint.receive_datagram(data, ADDR, 0.0)
    [(hrr, _)] = endpoint.datagrams_to_send(0.0)
    client.receive_datagram(hrr, SERVER, 0.0)
    [second] = _first_flight(client)
    endpoint.receive_datagram(second, ("198.51.100.31", 5000), 0.0)  # the cookie is not theirs
    [(reply, _)] = endpoint.datagrams_to_send(0.0)
    assert _alerts(reply) == [(AlertLevel.FATAL, A.ILLEGAL_PARAMETER)]
    stats = endpoint.stats()
    assert stats.cookies_sent == 1 and stats.refused_cookie == 1


def test_blocking_client_is_refused_at_once(pki: Any) -> None:
    """Through real sockets: the client raises the server's alert, not a TimeoutError."""
    server_ctx = server_context(pki, cipher_suites=("TLS_AES_128_GCM_SHA256",))
    with sync.Server(("127.0.0.1", 0), server_ctx, handler=lambda conn: None) as server:
        server._start_background()
        ctx = client_context(pki, cipher_suites=("TLS_CHACHA20_POLY1305_SHA256",))
        started = time.monotonic()
        with pytest.raises(errors.AlertReceived) as raised:
            sync.connect(server.server_address, ctx, server_name="localhost", timeout=30.0)
        assert raised.value.description == A.HANDSHAKE_FAILURE
        print(f"refused after {time.monotonic() - started:.3f} s")
        assert server.stats().refused_cipher_suite == 1


def test_stateful_server_refuses_a_certificate_only_client_with_the_same_alert(
    pki: Any,
) -> None:
    """Without the stateless screen (a Connection of its own), a raw-public-key server
    answers a certificate-only client with unsupported_certificate too (RFC 7250 §4.2)."""
    server_ctx = _rpk_server(pki)
    server_ctx.cookie_mode = "never"
    server = Connection(server_ctx)
    client = Connection(client_context(pki), server_name="localhost")
    client.connect(SERVER, 0.0)
    for hello in _first_flight(client):
        server.receive_datagram(hello, ADDR, 0.0)
    replies = [d for d, _ in server.datagrams_to_send(0.0)]
    assert [a for d in replies for a in _alerts(d)] == [
        (AlertLevel.FATAL, A.UNSUPPORTED_CERTIFICATE)
    ]
    for reply in replies:
        client.receive_datagram(reply, SERVER, 0.0)
    assert client.next_event() == AlertReceived(AlertLevel.FATAL, A.UNSUPPORTED_CERTIFICATE)
