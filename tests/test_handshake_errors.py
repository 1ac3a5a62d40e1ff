"""Bad peers: every way a handshake can go wrong ends with the alert RFC 9846 §6.2 names.

For each case the side that detects the problem must emit one `ConnectionClosed` event
(error=True, alert=<that alert>), send that alert to its peer (which reports
`AlertReceived` and `ConnectionClosed` when it can read it), stop (no timer), and never
raise out of `receive_datagram`. Records that fail at the record layer (garbage,
truncated, replayed, unauthentic) are dropped and counted instead (RFC 9147 §4.5.2).

Hostile peers are the real engine with a hook on what it sends (`Hostile`), or messages
built with `dtls.messages` and sealed with `dtls.record.seal_plaintext` (`craft_*`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import CLIENT_ADDR, SERVER_ADDR, Loopback, Sent
from test_connection import make_pair
from test_session import Clock

from dtls import crypto
from dtls.config import Context, CookieMode
from dtls.connection import Connection, HandshakeState
from dtls.events import AlertReceived, ConnectionClosed, DataReceived, HandshakeCompleted
from dtls.iana import (
    DTLS13_VERSION,
    AlertDescription,
    AlertLevel,
    CipherSuite,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    SignatureScheme,
)
from dtls.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    KeyShareEntry,
    NewSessionTicket,
    ServerHello,
    decode_alert,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_handshake_body,
    encode_handshake_fragment,
    handshake_type,
)
from dtls.record import (
    PLAINTEXT_HEADER_LEN,
    OpenedRecord,
    RecordCipher,
    RecordKind,
    seal_plaintext,
    split_datagram,
)
from dtls.reliability import OutgoingFlight, OutgoingMessage

A = AlertDescription
HT = HandshakeType
FATAL = AlertLevel.FATAL


# --- hostile peers ------------------------------------------------------------------------------


class Hostile(Connection):
    """The real engine, with hooks on what it sends.

    rewrite: each handshake message object before it is encoded (and hashed);
    reflight: the messages of each flight, after encoding (drop, reorder, insert; the
    message_seq values are renumbered so that the peer processes them in the new order);
    after_flight: called after each flight went out;
    on_emit: each record as it is put into a datagram: returns the records to send instead.
    """

    rewrite: Callable[[Any], Any] | None = None
    reflight: Callable[[list[OutgoingMessage]], list[OutgoingMessage]] | None = None
    after_flight: Callable[[Hostile], None] | None = None
    on_emit: Callable[[Hostile, bytes], list[bytes]] | None = None

    def _emit(self, record: bytes) -> None:
        records = [record] if self.on_emit is None else self.on_emit(self, record)
        for r in records:
            super()._emit(r)

    def _handshake_message(self, epoch: int, message: Any) -> OutgoingMessage:
        if self.rewrite is not None:
            message = self.rewrite(message)
        return super()._handshake_message(epoch, message)

    def _start_flight(self, flight: OutgoingFlight, now: float) -> None:
        if self.reflight is not None:
            messages = self.reflight(list(flight.messages))
            first = min(m.message_seq for m in flight.messages)
            renumbered = [
                OutgoingMessage(m.epoch, m.msg_type, first + i, m.body)
                for i, m in enumerate(messages)
            ]
            self._next_message_seq = first + len(renumbered)
            flight = OutgoingFlight(renumbered, needs_ack=flight.needs_ack)
        super()._start_flight(flight, now)
        if self.after_flight is not None:
            self.after_flight(self)


def hostile_pair(pki: Any, side: str, **kwargs: Any) -> Loopback:
    """make_pair(pki, ...) with `side` ("client" or "server") replaced by a Hostile engine;
    the hooks are the keyword arguments rewrite, reflight, after_flight and on_emit."""
    hooks = {
        k: kwargs.pop(k) for k in ("rewrite", "reflight", "after_flight", "on_emit") if k in kwargs
    }
    link = make_pair(pki, **kwargs)
    honest = getattr(link, side)
    hostile = Hostile(honest.context, server_name=honest.server_name)
    for name, hook in hooks.items():
        setattr(hostile, name, hook)
    setattr(link, side, hostile)
    return link


def rewrite_only(cls: type, edit: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A rewrite hook that edits the messages of one class."""

    def rewrite(message: Any) -> Any:
        return edit(message) if isinstance(message, cls) else message

    return rewrite


def flip(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --- what an engine did --------------------------------------------------------------------------


def drain(conn: Connection) -> list[Any]:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def alerts_in(conn: Connection, datagrams: list[bytes]) -> list[tuple[int, int]]:
    """The alerts in datagrams `conn` sent: plaintext ones directly, encrypted ones with the
    keys of `conn`'s own sending epochs (the test reads the engine's state for that)."""
    out = []
    for data in datagrams:
        spans, _ = split_datagram(data)
        for span in spans:
            record = data[span.offset : span.offset + span.length]
            if span.kind == RecordKind.PLAINTEXT:
                if span.first_byte == ContentType.ALERT:
                    out.append(decode_alert(record[PLAINTEXT_HEADER_LEN:]))
                continue
            for epoch, state in conn._records.send_epochs.items():
                if epoch & 3 != span.epoch or state.cipher is None:
                    continue
                opened = RecordCipher.from_secret(state.cipher.suite, state.secret).open(
                    record, None, next_seq=0
                )
                if isinstance(opened, OpenedRecord) and opened.content_type == ContentType.ALERT:
                    out.append(decode_alert(bytes(opened.plaintext)))
    return out


def assert_closed_with(events: list[Any], conn: Connection, alert: int) -> None:
    """`conn` detected the problem: one ConnectionClosed(error, alert), no timer left."""
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(closed) == 1, events
    assert (closed[0].alert, closed[0].error, closed[0].by_peer) == (alert, True, False), (
        closed[0],
        A(alert).name,
    )
    assert not [e for e in events if isinstance(e, AlertReceived)]
    assert conn.state is HandshakeState.CLOSED
    assert conn.get_timer() is None


def assert_aborted(
    link: Loopback,
    detector: str,
    alert: int,
    *,
    peer_hears: bool = True,
    after_handshake: bool = False,
) -> None:
    """The `detector` side closed with `alert`, sent it, and its peer heard it; unless
    `after_handshake`, the detector never reported a completed handshake."""
    mine, theirs = (
        (link.client_events, link.server_events)
        if detector == "client"
        else (link.server_events, link.client_events)
    )
    conn = getattr(link, detector)
    assert_closed_with(mine, conn, alert)
    completed = [e for e in mine if isinstance(e, HandshakeCompleted)]
    assert bool(completed) == after_handshake
    sent = [s.data for s in link.sent if s.direction == ("c2s" if detector == "client" else "s2c")]
    assert (FATAL, alert) in alerts_in(conn, sent)
    if peer_hears:
        assert [e for e in theirs if isinstance(e, AlertReceived)] == [AlertReceived(FATAL, alert)]
        closed = [e for e in theirs if isinstance(e, ConnectionClosed)]
        assert len(closed) == 1 and (closed[0].alert, closed[0].error, closed[0].by_peer) == (
            alert,
            True,
            True,
        ), closed
        peer = link.server if detector == "client" else link.client
        assert peer.state is HandshakeState.CLOSED


def run(link: Loopback) -> Loopback:
    link.start()
    link.run()
    return link


# --- crafted hellos ----------------------------------------------------------------------------


def plaintext_handshake(message: Any, message_seq: int = 0, record_seq: int = 0) -> bytes:
    """One epoch-0 record carrying `message` whole (RFC 9147 §4, §5.2)."""
    body = encode_handshake_body(message)
    fragment = encode_handshake_fragment(handshake_type(message), len(body), message_seq, 0, body)
    return seal_plaintext(ContentType.HANDSHAKE, record_seq, fragment)


def plaintext_messages(datagrams: list[bytes]) -> list[tuple[int, Any]]:
    """(message_seq, decoded message) of each whole epoch-0 handshake message."""
    out = []
    for data in datagrams:
        spans, _ = split_datagram(data)
        for span in spans:
            if span.kind != RecordKind.PLAINTEXT or span.first_byte != ContentType.HANDSHAKE:
                continue
            payload = data[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length]
            for f in decode_handshake_fragments(payload):
                assert f.fragment_length == f.length
                out.append((f.message_seq, decode_handshake_body(f.msg_type, f.fragment)))
    return out


def craft_client_hello(**changes: Any) -> ClientHello:
    """A valid DTLS 1.3 ClientHello (X25519 share, the default suites), then `changes`."""
    share = crypto.generate_key_share(NamedGroup.X25519)
    hello = ClientHello(
        random=os.urandom(32),
        cipher_suites=[CipherSuite.TLS_AES_128_GCM_SHA256, CipherSuite.TLS_AES_256_GCM_SHA384],
        supported_versions=[DTLS13_VERSION],
        supported_groups=[NamedGroup.X25519, NamedGroup.SECP256R1],
        key_share=[KeyShareEntry(NamedGroup.X25519, share.public_bytes)],
        signature_algorithms=[SignatureScheme.ECDSA_SECP256R1_SHA256, SignatureScheme.ED25519],
        server_name="localhost",
    )
    return dataclasses.replace(hello, **changes)


def fresh_server(pki: Any, **settings: Any) -> Connection:
    settings.setdefault("cookie_mode", CookieMode.NEVER)
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.server.key_pem)
    return Connection(ctx)


def server_receives(
    server: Connection, datagram: bytes, addr: Any = CLIENT_ADDR, now: float = 0.0
) -> tuple[list[Any], list[bytes]]:
    server.receive_datagram(datagram, addr, now)
    return drain(server), [d for d, _ in server.datagrams_to_send(now)]


def started_client(pki: Any, **settings: Any) -> tuple[Connection, ClientHello]:
    client = Connection(Context.client(cadata=pki.ca_pem, **settings), server_name="localhost")
    client.connect(SERVER_ADDR, 0.0)
    [(seq, hello)] = plaintext_messages([d for d, _ in client.datagrams_to_send(0.0)])
    assert seq == 0 and isinstance(hello, ClientHello)
    return client, hello


def craft_server_hello(hello: ClientHello, **changes: Any) -> ServerHello:
    """A valid ServerHello for `hello` (its first suite and key share), then `changes`."""
    share = hello.key_share[0]
    server_share, _ = crypto.server_key_share(share.group, share.key_exchange)
    sh = ServerHello(
        random=os.urandom(32),
        cipher_suite=hello.cipher_suites[0],
        legacy_session_id_echo=b"",
        supported_versions=DTLS13_VERSION,
        key_share=KeyShareEntry(share.group, server_share),
    )
    return dataclasses.replace(sh, **changes)


def craft_hello_retry(hello: ClientHello, **changes: Any) -> ServerHello:
    hrr = ServerHello(
        random=HELLO_RETRY_REQUEST_RANDOM,
        cipher_suite=hello.cipher_suites[0],
        supported_versions=DTLS13_VERSION,
        cookie=b"cookie-" + os.urandom(16),
    )
    return dataclasses.replace(hrr, **changes)


def client_receives(
    client: Connection, datagram: bytes, now: float = 0.1
) -> tuple[list[Any], list[bytes]]:
    client.receive_datagram(datagram, SERVER_ADDR, now)
    return drain(client), [d for d, _ in client.datagrams_to_send(now)]


def assert_rejects(conn: Connection, events: list[Any], sent: list[bytes], alert: int) -> None:
    assert_closed_with(events, conn, alert)
    assert alerts_in(conn, sent) == [(FATAL, alert)]


# =================================================================================================
# Controls: the crafted messages are acceptable as they are
# =================================================================================================


def test_crafted_client_hello_is_answered(pki: Any) -> None:
    server = fresh_server(pki)
    events, sent = server_receives(server, plaintext_handshake(craft_client_hello()))
    assert events == [] and server.state is HandshakeState.WAIT_FINISHED
    assert isinstance(plaintext_messages(sent)[0][1], ServerHello)
    assert alerts_in(server, sent) == []


def test_crafted_server_hello_is_accepted(pki: Any) -> None:
    client, hello = started_client(pki)
    events, sent = client_receives(client, plaintext_handshake(craft_server_hello(hello)))
    assert events == [] and sent == [] and client.state is HandshakeState.WAIT_EE


def test_crafted_hello_retry_is_answered(pki: Any) -> None:
    client, hello = started_client(pki)
    hrr = craft_hello_retry(hello)
    events, sent = client_receives(client, plaintext_handshake(hrr))
    assert events == []
    [(seq, second)] = plaintext_messages(sent)
    assert seq == 1 and second.cookie == hrr.cookie


def test_honest_pair_completes(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", rewrite=lambda m: m, reflight=lambda ms: ms))
    assert link.events_of("client", HandshakeCompleted)
    assert link.events_of("server", HandshakeCompleted)
    assert not link.events_of("client", ConnectionClosed)


# =================================================================================================
# Finished and CertificateVerify that do not verify: decrypt_error (RFC 9846 §4.4.3, §4.4.4)
# =================================================================================================


def _bad_finished(m: Finished) -> Finished:
    return Finished(flip(m.verify_data, 5))


def _bad_signature(m: CertificateVerify) -> CertificateVerify:
    return CertificateVerify(m.algorithm, flip(m.signature))


def test_server_finished_wrong(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", rewrite=rewrite_only(Finished, _bad_finished)))
    assert_aborted(link, "client", A.DECRYPT_ERROR)
    assert not link.events_of("client", HandshakeCompleted)


def test_client_finished_wrong(pki: Any) -> None:
    link = run(hostile_pair(pki, "client", rewrite=rewrite_only(Finished, _bad_finished)))
    assert_aborted(link, "server", A.DECRYPT_ERROR)
    assert not link.events_of("server", HandshakeCompleted)


def test_client_finished_wrong_mutual(pki: Any) -> None:
    link = run(
        hostile_pair(pki, "client", mutual=True, rewrite=rewrite_only(Finished, _bad_finished))
    )
    assert_aborted(link, "server", A.DECRYPT_ERROR)


@pytest.mark.parametrize("cert", ["server", "server_p384", "server_ed25519", "server_rsa"])
def test_server_certificate_verify_bad_signature(pki: Any, cert: str) -> None:
    link = run(
        hostile_pair(
            pki, "server", cert=cert, rewrite=rewrite_only(CertificateVerify, _bad_signature)
        )
    )
    assert_aborted(link, "client", A.DECRYPT_ERROR)


def test_server_certificate_verify_over_wrong_transcript(pki: Any) -> None:
    """A valid signature, but by a client-side context string (RFC 9846 §4.4.3)."""

    def sign_as_client(m: CertificateVerify) -> CertificateVerify:
        return CertificateVerify(
            m.algorithm,
            crypto.sign(
                pki.server.key, m.algorithm, crypto.certificate_verify_content(False, bytes(32))
            ),
        )

    link = run(hostile_pair(pki, "server", rewrite=rewrite_only(CertificateVerify, sign_as_client)))
    assert_aborted(link, "client", A.DECRYPT_ERROR)


def test_client_certificate_verify_bad_signature(pki: Any) -> None:
    link = run(
        hostile_pair(
            pki, "client", mutual=True, rewrite=rewrite_only(CertificateVerify, _bad_signature)
        )
    )
    assert_aborted(link, "server", A.DECRYPT_ERROR)


def test_certificate_verify_with_scheme_not_offered(pki: Any) -> None:
    """RFC 9846 §4.4.3: the scheme must be one the peer offered: illegal_parameter."""
    link = hostile_pair(
        pki,
        "server",
        client_settings={
            "signature_algorithms": (
                SignatureScheme.ED25519,
                SignatureScheme.ECDSA_SECP256R1_SHA256,
            )
        },
        rewrite=rewrite_only(
            CertificateVerify,
            lambda m: CertificateVerify(SignatureScheme.ECDSA_SECP384R1_SHA384, m.signature),
        ),
    )
    assert_aborted(run(link), "client", A.ILLEGAL_PARAMETER)


def test_certificate_verify_with_scheme_not_fitting_the_key(pki: Any) -> None:
    """An offered scheme (Ed25519) with an ECDSA P-256 key: illegal_parameter."""
    link = hostile_pair(
        pki,
        "server",
        rewrite=rewrite_only(
            CertificateVerify, lambda m: CertificateVerify(SignatureScheme.ED25519, m.signature)
        ),
    )
    assert_aborted(run(link), "client", A.ILLEGAL_PARAMETER)


# =================================================================================================
# Certificates (RFC 9846 §4.4.2.4, §6.2)
# =================================================================================================


def test_unknown_ca(pki: Any) -> None:
    assert_aborted(run(make_pair(pki, cert="unknown_ca")), "client", A.UNKNOWN_CA)


def test_client_certificate_from_unknown_ca(pki: Any) -> None:
    link = make_pair(pki, mutual=True)
    link.server.context.load_verify_locations(cadata=pki.other_root.cert_pem)
    assert_aborted(run(link), "server", A.UNKNOWN_CA)


def test_wrong_hostname(pki: Any) -> None:
    """§6.2 names no alert for a name mismatch: bad_certificate (what OpenSSL sends) or
    certificate_unknown ("some other issue ... rendering it unacceptable") both fit."""
    link = run(make_pair(pki, server_name="wrong.example"))
    [closed] = link.events_of("client", ConnectionClosed)
    assert closed.alert in (A.BAD_CERTIFICATE, A.CERTIFICATE_UNKNOWN)
    assert_aborted(link, "client", closed.alert)


def test_wrong_ip_address(pki: Any) -> None:
    link = run(make_pair(pki, server_name="192.0.2.99"))
    [closed] = link.events_of("client", ConnectionClosed)
    assert closed.alert in (A.BAD_CERTIFICATE, A.CERTIFICATE_UNKNOWN)
    assert_aborted(link, "client", closed.alert)


@pytest.mark.parametrize("cert", ["expired", "not_yet_valid"])
def test_certificate_outside_validity(pki: Any, cert: str) -> None:
    assert_aborted(run(make_pair(pki, cert=cert)), "client", A.CERTIFICATE_EXPIRED)


@pytest.mark.parametrize("days", [-400, 4000])
def test_certificate_time_outside_validity(pki: Any, days: int) -> None:
    """The verifier's clock (`Context.certificate_time`) before or after the chain's validity."""
    link = make_pair(pki)
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    link.client.context.certificate_time = lambda: when
    assert_aborted(run(link), "client", A.CERTIFICATE_EXPIRED)


def test_client_certificate_expired(pki: Any) -> None:
    link = make_pair(pki, mutual=True)
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=4000)
    link.server.context.certificate_time = lambda: when
    assert_aborted(run(link), "server", A.CERTIFICATE_EXPIRED)


def test_client_certificate_required_but_absent(pki: Any) -> None:
    link = make_pair(pki, mutual=True)
    link.client.context.certificate_chain = []
    link.client.context.private_key = None
    assert_aborted(run(link), "server", A.CERTIFICATE_REQUIRED)


def test_server_sends_empty_certificate(pki: Any) -> None:
    """RFC 9846 §4.4.2.4: an empty server Certificate is a decode_error."""
    link = hostile_pair(
        pki, "server", rewrite=rewrite_only(Certificate, lambda m: Certificate(m.context, []))
    )
    assert_aborted(run(link), "client", A.DECODE_ERROR)


def test_server_certificate_is_garbage(pki: Any) -> None:
    """A certificate that does not parse is corrupt: bad_certificate."""
    link = hostile_pair(
        pki,
        "server",
        rewrite=rewrite_only(
            Certificate,
            lambda m: Certificate(m.context, [CertificateEntry(b"\x30\x03\x02\x01\x00")]),
        ),
    )
    assert_aborted(run(link), "client", A.BAD_CERTIFICATE)


def test_server_certificate_with_request_context(pki: Any) -> None:
    """RFC 9846 §4.4.2: certificate_request_context SHALL be empty for server
    authentication; a value that breaks that rule is illegal_parameter (§6)."""
    link = hostile_pair(
        pki, "server", rewrite=rewrite_only(Certificate, lambda m: Certificate(b"\x01", m.entries))
    )
    assert_aborted(run(link), "client", A.ILLEGAL_PARAMETER)


# =================================================================================================
# Negotiation, checked by the server on a crafted ClientHello (RFC 9846 §4.1.1, §4.1.2, §9.2)
# =================================================================================================

CLIENT_HELLO_CASES = {
    # RFC 9846 §4.2.1: DTLS 1.3 not among supported_versions
    "dtls12_only": ({"supported_versions": [0xFEFD]}, A.PROTOCOL_VERSION),
    "tls13_not_dtls13": ({"supported_versions": [0x0304]}, A.PROTOCOL_VERSION),
    "no_supported_versions": ({"supported_versions": None}, A.PROTOCOL_VERSION),
    # RFC 9846 §4.1.1: no overlap in suites or groups
    "no_common_suite": (
        {"cipher_suites": [CipherSuite.TLS_AES_128_CCM_SHA256, 0xC02B]},
        A.HANDSHAKE_FAILURE,
    ),
    "no_common_group": (
        {"supported_groups": [0x0100], "key_share": [KeyShareEntry(0x0100, os.urandom(256))]},
        A.HANDSHAKE_FAILURE,
    ),
    # RFC 9846 §9.2: mandatory extensions
    "no_signature_algorithms": ({"signature_algorithms": None}, A.MISSING_EXTENSION),
    "no_key_share": ({"key_share": None}, A.MISSING_EXTENSION),
    "no_supported_groups": ({"supported_groups": None}, A.MISSING_EXTENSION),
    "neither_groups_nor_shares": (
        {"supported_groups": None, "key_share": None},
        A.MISSING_EXTENSION,
    ),
    # RFC 9147 §5.3: legacy_cookie must be empty
    "legacy_cookie": ({"legacy_cookie": b"\x01" * 8}, A.ILLEGAL_PARAMETER),
    # RFC 9846 §4.1.2: compression must be exactly [null]
    "compression": ({"legacy_compression_methods": b"\x01"}, A.ILLEGAL_PARAMETER),
    "compression_extra": ({"legacy_compression_methods": b"\x00\x01"}, A.ILLEGAL_PARAMETER),
}


@pytest.mark.parametrize("case", sorted(CLIENT_HELLO_CASES))
@pytest.mark.parametrize("cookie_mode", [CookieMode.NEVER, CookieMode.ALWAYS])
def test_server_rejects_client_hello(pki: Any, case: str, cookie_mode: str) -> None:
    changes, alert = CLIENT_HELLO_CASES[case]
    server = fresh_server(pki, cookie_mode=cookie_mode)
    events, sent = server_receives(server, plaintext_handshake(craft_client_hello(**changes)))
    assert_rejects(server, events, sent, alert)


def test_server_rejects_invalid_share(pki: Any) -> None:
    """RFC 9846 §4.2.8.2: an X25519 share of the wrong length is illegal_parameter. (With a
    cookie exchange first the share is only looked at in the second ClientHello.)"""
    server = fresh_server(pki)
    hello = craft_client_hello(key_share=[KeyShareEntry(NamedGroup.X25519, b"\x01" * 31)])
    events, sent = server_receives(server, plaintext_handshake(hello))
    assert_rejects(server, events, sent, A.ILLEGAL_PARAMETER)


def test_server_rejects_wrong_legacy_version(pki: Any) -> None:
    server = fresh_server(pki)
    events, sent = server_receives(
        server, plaintext_handshake(craft_client_hello(legacy_version=0xFEFF))
    )
    assert_rejects(server, events, sent, A.PROTOCOL_VERSION)


def test_no_common_suite_between_engines(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"cipher_suites": (CipherSuite.TLS_AES_128_GCM_SHA256,)},
        server_settings={"cipher_suites": (CipherSuite.TLS_CHACHA20_POLY1305_SHA256,)},
    )
    assert_aborted(run(link), "server", A.HANDSHAKE_FAILURE)


def test_no_common_group_between_engines(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"groups": (NamedGroup.X25519,)},
        server_settings={"groups": (NamedGroup.SECP384R1,)},
    )
    assert_aborted(run(link), "server", A.HANDSHAKE_FAILURE)


def test_server_does_not_echo_legacy_session_id(pki: Any) -> None:
    server = fresh_server(pki)
    _, sent = server_receives(
        server, plaintext_handshake(craft_client_hello(legacy_session_id=b"\x42" * 32))
    )
    [(_, sh)] = plaintext_messages(sent)[:1]
    assert sh.legacy_session_id_echo == b""


# =================================================================================================
# The client checks the ServerHello and HelloRetryRequest (RFC 9846 §4.1.3, §4.1.4, §4.2)
# =================================================================================================


def _sh(**changes: Any) -> Callable[[ClientHello], ServerHello]:
    return lambda hello: craft_server_hello(hello, **changes)


SERVER_HELLO_CASES: dict[str, tuple[Callable[[ClientHello], ServerHello], int]] = {
    # RFC 9846 §4.1.3: a suite the client did not offer
    "suite_not_offered": (
        _sh(cipher_suite=CipherSuite.TLS_AES_128_CCM_SHA256),
        A.ILLEGAL_PARAMETER,
    ),
    "compression": (_sh(legacy_compression_method=1), A.ILLEGAL_PARAMETER),
    # RFC 9147 §5.4: legacy_session_id_echo must be empty
    "session_id_echo": (_sh(legacy_session_id_echo=b"\x01" * 32), A.ILLEGAL_PARAMETER),
    # RFC 9846 §4.2.1 / Appendix D.1: no supported_versions = (D)TLS 1.2 chosen
    "no_supported_versions": (_sh(supported_versions=None), A.PROTOCOL_VERSION),
    # RFC 9846 §4.2.8: a group the client sent no share for
    "share_for_other_group": (
        lambda h: craft_server_hello(
            h,
            key_share=KeyShareEntry(
                NamedGroup.SECP256R1, crypto.generate_key_share(NamedGroup.SECP256R1).public_bytes
            ),
        ),
        A.ILLEGAL_PARAMETER,
    ),
    # RFC 9846 §9.2: without PSK, key_share is mandatory
    "no_key_share": (_sh(key_share=None), A.MISSING_EXTENSION),
    # RFC 9846 §4.2.11: a PSK the client never offered
    "psk_not_offered": (_sh(pre_shared_key=0), A.ILLEGAL_PARAMETER),
}


@pytest.mark.parametrize("case", sorted(SERVER_HELLO_CASES))
def test_client_rejects_server_hello(pki: Any, case: str) -> None:
    make, alert = SERVER_HELLO_CASES[case]
    client, hello = started_client(pki, cipher_suites=(CipherSuite.TLS_AES_128_GCM_SHA256,))
    events, sent = client_receives(client, plaintext_handshake(make(hello)))
    assert_rejects(client, events, sent, alert)


def test_client_rejects_server_hello_selecting_dtls12_in_extension(pki: Any) -> None:
    client, hello = started_client(pki)
    events, sent = client_receives(
        client, plaintext_handshake(craft_server_hello(hello, supported_versions=0xFEFD))
    )
    assert_rejects(client, events, sent, A.ILLEGAL_PARAMETER)


def test_client_ignores_server_hello_legacy_version(pki: Any) -> None:
    # RFC 9846 §4.2.1: with supported_versions present, clients MUST ignore legacy_version.
    client, hello = started_client(pki)
    events, _ = client_receives(
        client, plaintext_handshake(craft_server_hello(hello, legacy_version=0xFEFF))
    )
    assert not [e for e in events if isinstance(e, ConnectionClosed)]
    assert client.state is HandshakeState.WAIT_EE


@pytest.mark.parametrize("group", [NamedGroup.X25519, NamedGroup.SECP256R1])
def test_client_rejects_invalid_server_share(pki: Any, group: NamedGroup) -> None:
    """RFC 9846 §4.2.8.2, §7.4.2: a point off the curve, or an X25519 share giving the
    all-zero secret, is semantically invalid: illegal_parameter (§6)."""
    client, hello = started_client(pki, groups=(group,))
    bad = bytes(32) if group == NamedGroup.X25519 else b"\x04" + b"\x01" * 64
    events, sent = client_receives(
        client, plaintext_handshake(craft_server_hello(hello, key_share=KeyShareEntry(group, bad)))
    )
    assert_rejects(client, events, sent, A.ILLEGAL_PARAMETER)


def test_client_rejects_unsolicited_connection_id(pki: Any) -> None:
    """RFC 9846 §4.2: an extension response the client did not request."""
    client, hello = started_client(pki)
    assert hello.connection_id is None
    events, sent = client_receives(
        client, plaintext_handshake(craft_server_hello(hello, connection_id=b"cid"))
    )
    assert_rejects(client, events, sent, A.UNSUPPORTED_EXTENSION)


def test_client_rejects_unknown_server_hello_extension(pki: Any) -> None:
    client, hello = started_client(pki)
    events, sent = client_receives(
        client, plaintext_handshake(craft_server_hello(hello, other_extensions=[(0x7A7A, b"")]))
    )
    assert_rejects(client, events, sent, A.UNSUPPORTED_EXTENSION)


def test_client_rejects_hello_retry_extension_in_server_hello(pki: Any) -> None:
    """RFC 9846 §4.2: a known extension in a message it is not specified for."""
    client, hello = started_client(pki)
    sh = craft_server_hello(hello)
    body = bytearray(encode_handshake_body(sh))
    cookie_ext = struct.pack(">HHH", ExtensionType.COOKIE, 4, 2) + b"ab"
    # grow the extension block by the cookie extension
    ext_len_at = 2 + 32 + 1 + len(sh.legacy_session_id_echo) + 2 + 1
    (n,) = struct.unpack_from(">H", body, ext_len_at)
    struct.pack_into(">H", body, ext_len_at, n + len(cookie_ext))
    body += cookie_ext
    fragment = encode_handshake_fragment(HT.SERVER_HELLO, len(body), 0, 0, bytes(body))
    events, sent = client_receives(client, seal_plaintext(ContentType.HANDSHAKE, 0, fragment))
    assert_rejects(client, events, sent, A.ILLEGAL_PARAMETER)


HRR_CASES: dict[str, tuple[dict[str, Any], int]] = {
    # RFC 9846 §4.2.8: the group of a share the client already sent
    "group_already_shared": ({"selected_group": NamedGroup.X25519}, A.ILLEGAL_PARAMETER),
    # RFC 9846 §4.2.8: a group the client did not offer
    "group_not_offered": ({"selected_group": NamedGroup.SECP521R1}, A.ILLEGAL_PARAMETER),
    # RFC 9846 §4.1.4: an HRR that would not change the ClientHello
    "no_change": ({"cookie": None}, A.ILLEGAL_PARAMETER),
    "suite_not_offered": (
        {"cipher_suite": CipherSuite.TLS_AES_128_CCM_SHA256},
        A.ILLEGAL_PARAMETER,
    ),
    "session_id_echo": ({"legacy_session_id_echo": b"\x07" * 32}, A.ILLEGAL_PARAMETER),
    "no_supported_versions": ({"supported_versions": None}, A.PROTOCOL_VERSION),
}


@pytest.mark.parametrize("case", sorted(HRR_CASES))
def test_client_rejects_hello_retry(pki: Any, case: str) -> None:
    changes, alert = HRR_CASES[case]
    client, hello = started_client(
        pki,
        groups=(NamedGroup.X25519, NamedGroup.SECP256R1),
        cipher_suites=(CipherSuite.TLS_AES_128_GCM_SHA256,),
    )
    assert [s.group for s in hello.key_share] == [NamedGroup.X25519]
    events, sent = client_receives(client, plaintext_handshake(craft_hello_retry(hello, **changes)))
    assert_rejects(client, events, sent, alert)


def test_client_rejects_unknown_hello_retry_extension(pki: Any) -> None:
    client, hello = started_client(pki)
    events, sent = client_receives(
        client, plaintext_handshake(craft_hello_retry(hello, other_extensions=[(0x7A7A, b"")]))
    )
    assert_rejects(client, events, sent, A.UNSUPPORTED_EXTENSION)


def _retried_client(pki: Any) -> tuple[Connection, ClientHello, ServerHello]:
    client, hello = started_client(
        pki,
        groups=(NamedGroup.X25519, NamedGroup.SECP256R1),
        cipher_suites=(CipherSuite.TLS_AES_128_GCM_SHA256, CipherSuite.TLS_AES_256_GCM_SHA384),
    )
    hrr = craft_hello_retry(hello, selected_group=NamedGroup.SECP256R1)
    events, sent = client_receives(client, plaintext_handshake(hrr))
    assert events == []
    [(seq, second)] = plaintext_messages(sent)
    assert seq == 1 and [s.group for s in second.key_share] == [NamedGroup.SECP256R1]
    return client, second, hrr


def test_second_hello_retry_request(pki: Any) -> None:
    """RFC 9846 §4.1.4, RFC 9147 §5.1: unexpected_message."""
    client, second, _ = _retried_client(pki)
    events, sent = client_receives(
        client, plaintext_handshake(craft_hello_retry(second), message_seq=1, record_seq=1), 0.2
    )
    assert_rejects(client, events, sent, A.UNEXPECTED_MESSAGE)


def test_server_hello_suite_differs_from_hello_retry(pki: Any) -> None:
    """RFC 9846 §4.1.4: the ServerHello's suite must be the HelloRetryRequest's."""
    client, second, _ = _retried_client(pki)
    sh = craft_server_hello(second, cipher_suite=CipherSuite.TLS_AES_256_GCM_SHA384)
    events, sent = client_receives(client, plaintext_handshake(sh, 1, 1), 0.2)
    assert_rejects(client, events, sent, A.ILLEGAL_PARAMETER)


def test_server_hello_group_differs_from_hello_retry(pki: Any) -> None:
    client, second, _ = _retried_client(pki)
    share = crypto.generate_key_share(NamedGroup.X25519)
    sh = craft_server_hello(second, key_share=KeyShareEntry(NamedGroup.X25519, share.public_bytes))
    events, sent = client_receives(client, plaintext_handshake(sh, 1, 1), 0.2)
    assert_rejects(client, events, sent, A.ILLEGAL_PARAMETER)


def test_server_hello_after_hello_retry_is_accepted(pki: Any) -> None:
    client, second, _ = _retried_client(pki)
    events, sent = client_receives(client, plaintext_handshake(craft_server_hello(second), 1, 1))
    assert events == [] and client.state is HandshakeState.WAIT_EE
    assert alerts_in(client, sent) == []


# =================================================================================================
# Unsolicited extensions from an engine (RFC 9846 §4.2: unsupported_extension)
# =================================================================================================


def _ee(**changes: Any) -> Callable[[Any], Any]:
    return rewrite_only(EncryptedExtensions, lambda m: dataclasses.replace(m, **changes))


def test_unsolicited_early_data_in_encrypted_extensions(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", rewrite=_ee(early_data=True)))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


def test_unsolicited_alpn_in_encrypted_extensions(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", rewrite=_ee(alpn_protocol=b"h3")))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


def test_unknown_extension_in_encrypted_extensions(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", rewrite=_ee(other_extensions=[(0x7A7A, b"x")])))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


def test_unsolicited_server_name_in_encrypted_extensions(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", server_name="127.0.0.1", rewrite=_ee(server_name=True)))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


def test_unsolicited_record_size_limit(pki: Any) -> None:
    link = run(hostile_pair(pki, "server", rewrite=_ee(record_size_limit=512)))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


@pytest.mark.parametrize(
    "extension",
    [
        (ExtensionType.USE_SRTP, bytes.fromhex("0002 0001 00")),  # RFC 5764 §4.1.1
        (ExtensionType.SERVER_CERTIFICATE_TYPE, b"\x02"),  # RFC 7250 §4.2
        (ExtensionType.CLIENT_CERTIFICATE_TYPE, b"\x02"),
    ],
    ids=["use_srtp", "server_certificate_type", "client_certificate_type"],
)
def test_unsolicited_raw_extension_in_encrypted_extensions(
    pki: Any, extension: tuple[int, bytes]
) -> None:
    link = run(hostile_pair(pki, "server", rewrite=_ee(other_extensions=[extension])))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


def test_unsolicited_certificate_entry_extension(pki: Any) -> None:
    def add_ocsp(m: Certificate) -> Certificate:
        first = CertificateEntry(m.entries[0].data, [(ExtensionType.STATUS_REQUEST, b"\x01")])
        return Certificate(m.context, [first, *m.entries[1:]])

    link = run(hostile_pair(pki, "server", rewrite=rewrite_only(Certificate, add_ocsp)))
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION)


def test_unsolicited_connection_id_from_engine(pki: Any) -> None:
    link = run(
        hostile_pair(
            pki,
            "server",
            rewrite=rewrite_only(
                ServerHello,
                lambda m: (
                    m if m.is_hello_retry_request else dataclasses.replace(m, connection_id=b"cid")
                ),
            ),
        )
    )
    # the client rejects the ServerHello before it has keys: its alert is in plaintext,
    # which a server holding handshake keys rightly ignores (RFC 9147 §4.5.2)
    assert_aborted(link, "client", A.UNSUPPORTED_EXTENSION, peer_hears=False)


# =================================================================================================
# Messages out of order (RFC 9846 §4, Appendix A: unexpected_message)
# =================================================================================================


def _without(*types: int) -> Callable[[list[OutgoingMessage]], list[OutgoingMessage]]:
    return lambda messages: [m for m in messages if m.msg_type not in types]


def _order(*types: int) -> Callable[[list[OutgoingMessage]], list[OutgoingMessage]]:
    def reorder(messages: list[OutgoingMessage]) -> list[OutgoingMessage]:
        if messages[0].msg_type == HT.CLIENT_HELLO:
            return messages
        by_type = {m.msg_type: m for m in messages}
        return [by_type[t] for t in types]

    return reorder


SERVER_FLIGHT_CASES = {
    "finished_before_certificate": _without(HT.CERTIFICATE, HT.CERTIFICATE_VERIFY),
    "no_certificate_verify": _without(HT.CERTIFICATE_VERIFY),
    "no_encrypted_extensions": _without(HT.ENCRYPTED_EXTENSIONS),
    "verify_before_certificate": _order(
        HT.SERVER_HELLO, HT.ENCRYPTED_EXTENSIONS, HT.CERTIFICATE_VERIFY, HT.CERTIFICATE, HT.FINISHED
    ),
    "certificate_before_extensions": _order(
        HT.SERVER_HELLO, HT.CERTIFICATE, HT.ENCRYPTED_EXTENSIONS, HT.CERTIFICATE_VERIFY, HT.FINISHED
    ),
}


@pytest.mark.parametrize("case", sorted(SERVER_FLIGHT_CASES))
def test_server_flight_out_of_order(pki: Any, case: str) -> None:
    link = run(hostile_pair(pki, "server", reflight=SERVER_FLIGHT_CASES[case]))
    assert_aborted(link, "client", A.UNEXPECTED_MESSAGE)


def test_server_sends_key_update_inside_handshake(pki: Any) -> None:
    def insert(messages: list[OutgoingMessage]) -> list[OutgoingMessage]:
        if messages[0].msg_type == HT.CLIENT_HELLO:
            return messages
        return [*messages[:2], OutgoingMessage(2, HT.KEY_UPDATE, 0, b"\x00"), *messages[2:]]

    link = run(hostile_pair(pki, "server", reflight=insert))
    assert_aborted(link, "client", A.UNEXPECTED_MESSAGE)


def test_server_sends_application_data_in_handshake_epoch(pki: Any) -> None:
    """RFC 9846 §5.1 / RFC 9147 §6.1: application data only under application keys: a
    record in epoch 2, between EncryptedExtensions and Certificate, is unexpected_message."""
    emitted: list[bytes] = []

    def leak_after_encrypted_extensions(conn: Hostile, record: bytes) -> list[bytes]:
        emitted.append(record)
        if len(emitted) == 2:  # ServerHello (epoch 0), then EncryptedExtensions (epoch 2)
            assert record[0] & 0xE3 == 0x22  # a ciphertext record of epoch 2 (bits 10)
            leaked, _ = conn._records.seal(2, ContentType.APPLICATION_DATA, b"too early")
            return [record, leaked]
        return [record]

    link = run(hostile_pair(pki, "server", on_emit=leak_after_encrypted_extensions))
    assert_aborted(link, "client", A.UNEXPECTED_MESSAGE)


def test_client_skips_certificate_when_requested(pki: Any) -> None:
    """RFC 9846 §4.4.2: a client asked for a certificate sends a Certificate (maybe empty)."""
    link = run(
        hostile_pair(
            pki, "client", mutual=True, reflight=_without(HT.CERTIFICATE, HT.CERTIFICATE_VERIFY)
        )
    )
    assert_aborted(link, "server", A.UNEXPECTED_MESSAGE)


def test_client_sends_certificate_unrequested(pki: Any) -> None:
    def add_certificate(messages: list[OutgoingMessage]) -> list[OutgoingMessage]:
        if messages[-1].msg_type != HT.FINISHED:
            return messages
        cert = Certificate(b"", [CertificateEntry(pki.client.cert_der)])
        body = encode_handshake_body(cert)
        return [OutgoingMessage(2, HT.CERTIFICATE, 0, body), *messages]

    link = run(hostile_pair(pki, "client", reflight=add_certificate))
    assert_aborted(link, "server", A.UNEXPECTED_MESSAGE)


def _connected(pki: Any) -> Loopback:
    link = run(make_pair(pki))
    assert link.events_of("client", HandshakeCompleted)
    assert link.events_of("server", HandshakeCompleted)
    return link


def _send_sealed(link: Loopback, side: str, epoch: int, content_type: int, payload: bytes) -> None:
    """Seal a record with `side`'s own keys and deliver it to its peer."""
    conn = getattr(link, side)
    record, _ = conn._records.seal(epoch, content_type, payload)
    peer = link.server if side == "client" else link.client
    peer.receive_datagram(record, CLIENT_ADDR if side == "client" else SERVER_ADDR, link.now)
    link.run(until=link.now + 600)


def _handshake_fragment(conn: Connection, message: Any) -> bytes:
    body = encode_handshake_body(message)
    seq = conn._next_message_seq
    conn._next_message_seq += 1
    return encode_handshake_fragment(handshake_type(message), len(body), seq, 0, body)


def test_second_client_hello_after_handshake(pki: Any) -> None:
    """RFC 9846 §4.1.2: no renegotiation; a ClientHello at any other time is
    unexpected_message. Here it is authentic: sealed with the client's epoch-3 keys."""
    link = _connected(pki)
    _send_sealed(
        link,
        "client",
        3,
        ContentType.HANDSHAKE,
        _handshake_fragment(link.client, craft_client_hello()),
    )
    assert_aborted(link, "server", A.UNEXPECTED_MESSAGE, after_handshake=True)


def test_new_session_ticket_from_client(pki: Any) -> None:
    """RFC 9846 §4.6.1: only servers send NewSessionTicket."""
    link = _connected(pki)
    ticket = NewSessionTicket(3600, 1, b"n", b"ticket")
    _send_sealed(link, "client", 3, ContentType.HANDSHAKE, _handshake_fragment(link.client, ticket))
    assert_aborted(link, "server", A.UNEXPECTED_MESSAGE, after_handshake=True)


def test_server_hello_after_handshake(pki: Any) -> None:
    link = _connected(pki)
    sh = craft_server_hello(craft_client_hello())
    _send_sealed(link, "server", 3, ContentType.HANDSHAKE, _handshake_fragment(link.server, sh))
    assert_aborted(link, "client", A.UNEXPECTED_MESSAGE, after_handshake=True)


def test_forged_plaintext_client_hello_after_handshake(pki: Any) -> None:
    link = _connected(pki)
    forged = plaintext_handshake(craft_client_hello(), message_seq=2, record_seq=5)
    link.server.receive_datagram(forged, CLIENT_ADDR, link.now)
    link.run(until=link.now + 600)
    assert not link.events_of("server", ConnectionClosed)
    assert link.server.state is HandshakeState.CONNECTED
    link.client.send(b"still there")
    link.run(until=link.now + 600)
    assert [e.data for e in link.events_of("server", DataReceived)] == [b"still there"]


def test_plaintext_client_hello_retransmission_after_handshake(pki: Any) -> None:
    """An epoch-0 ClientHello with an old message_seq is a retransmission: not fatal."""
    link = _connected(pki)
    link.server.receive_datagram(plaintext_handshake(craft_client_hello()), CLIENT_ADDR, link.now)
    link.run(until=link.now + 600)
    assert link.server.state is HandshakeState.CONNECTED
    assert not link.events_of("server", ConnectionClosed)


# =================================================================================================
# Cookies (RFC 9147 §5.1: an invalid cookie is illegal_parameter)
# =================================================================================================


def _tamper_cookie(sent: Sent) -> list[bytes]:
    data = sent.data
    if sent.direction != "c2s":
        return [data]
    spans, _ = split_datagram(data)
    span = spans[0]
    if span.kind != RecordKind.PLAINTEXT or span.first_byte != ContentType.HANDSHAKE:
        return [data]
    [frag] = decode_handshake_fragments(
        data[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length]
    )
    hello = decode_handshake_body(frag.msg_type, frag.fragment)
    if not isinstance(hello, ClientHello) or hello.cookie is None:
        return [data]
    hello.cookie = flip(hello.cookie, 20)
    return [plaintext_handshake(hello, frag.message_seq, span.seq) + data[span.length :]]


def test_tampered_cookie(pki: Any) -> None:
    link = make_pair(pki, server_settings={"cookie_mode": CookieMode.ALWAYS})
    link.filter = _tamper_cookie
    assert_aborted(run(link), "server", A.ILLEGAL_PARAMETER)


def _cookie_exchange(pki: Any, **settings: Any) -> tuple[Context, bytes, bytes]:
    """A server context, the first ClientHello's datagram and the second's (with cookie)."""
    server = fresh_server(pki, cookie_mode=CookieMode.ALWAYS, **settings)
    client, hello = started_client(pki)
    first = plaintext_handshake(hello)
    events, sent = server_receives(server, first)
    assert events == []
    client.receive_datagram(sent[0], SERVER_ADDR, 0.0)
    [second] = [d for d, _ in client.datagrams_to_send(0.0)]
    return server.context, first, second


def test_cookie_exchange_control(pki: Any) -> None:
    ctx, _, second = _cookie_exchange(pki)
    server = Connection(ctx)
    events, sent = server_receives(server, second, CLIENT_ADDR, 1.0)
    assert events == [] and isinstance(plaintext_messages(sent)[0][1], ServerHello)


@pytest.mark.parametrize(
    ("addr", "later"),
    [(("198.51.100.7", 5000), 1.0), (CLIENT_ADDR, 10_000.0)],
    ids=["other_address", "expired"],
)
def test_cookie_not_valid_here_or_now(pki: Any, addr: Any, later: float) -> None:
    """A cookie for another address, or older than `cookie_lifetime` (60 s) on the
    server's wall clock (`Context.wall_clock`), is refused."""
    clock = Clock()
    ctx, _, second = _cookie_exchange(pki, wall_clock=clock)
    clock.now += later
    server = Connection(ctx)
    events, sent = server_receives(server, second, addr, 1.0)
    assert_rejects(server, events, sent, A.ILLEGAL_PARAMETER)


def test_stateless_server_answers_invalid_cookie_with_alert(pki: Any) -> None:
    from dtls.handshake_server import respond_statelessly

    ctx, _, second = _cookie_exchange(pki)
    [(seq, hello)] = plaintext_messages([second])
    hello.cookie = flip(hello.cookie, 20)
    response = respond_statelessly(ctx, plaintext_handshake(hello, seq, 1), CLIENT_ADDR)
    assert response.action != "accept"
    assert response.datagram is not None
    spans, _ = split_datagram(response.datagram)
    alerts = [
        decode_alert(response.datagram[sp.offset + PLAINTEXT_HEADER_LEN : sp.offset + sp.length])
        for sp in spans
        if sp.first_byte == ContentType.ALERT
    ]
    assert alerts == [(FATAL, A.ILLEGAL_PARAMETER)]


def test_stateless_server_accepts_valid_cookie(pki: Any) -> None:
    from dtls.handshake_server import respond_statelessly

    ctx, _, second = _cookie_exchange(pki)
    assert respond_statelessly(ctx, second, CLIENT_ADDR).action == "accept"


# =================================================================================================
# Garbage, truncation and malformed fragments
# =================================================================================================


def _garbage(rng: random.Random, n: int) -> bytes:
    data = bytearray(rng.randbytes(n))
    data[0] = rng.choice([0x00, 0x17, 0x40, 0xFF, 0x2C])  # not a plaintext type we accept
    return bytes(data)


def test_random_datagrams_are_dropped(pki: Any) -> None:
    rng = random.Random(9147)
    link = make_pair(pki)
    link.start()
    # garbage to both sides before, during and after the handshake
    for step in range(40):
        for conn, addr in ((link.server, CLIENT_ADDR), (link.client, SERVER_ADDR)):
            conn.receive_datagram(_garbage(rng, rng.randint(1, 300)), addr, link.now)
        if step % 10 == 0:
            link.run(until=link.now + 0.005)
    link.run()
    assert link.events_of("client", HandshakeCompleted)
    assert link.events_of("server", HandshakeCompleted)
    assert not link.events_of("client", ConnectionClosed)
    assert not link.events_of("server", ConnectionClosed)
    for conn in (link.client, link.server):
        c = conn.record_counters
        assert c.malformed + c.unknown_epoch + c.failed_authentication >= 40


def test_garbage_to_fresh_server_is_silent(pki: Any) -> None:
    server = fresh_server(pki)
    rng = random.Random(1)
    for _ in range(50):
        events, sent = server_receives(server, _garbage(rng, rng.randint(0, 200)))
        assert events == [] and sent == []
    assert server.state is HandshakeState.START
    events, sent = server_receives(server, plaintext_handshake(craft_client_hello()))
    assert events == [] and sent  # still able to answer a real ClientHello


def test_truncated_plaintext_record_is_dropped(pki: Any) -> None:
    server = fresh_server(pki)
    datagram = plaintext_handshake(craft_client_hello())
    for cut in (1, 5, 12, PLAINTEXT_HEADER_LEN, len(datagram) // 2, len(datagram) - 1):
        events, sent = server_receives(server, datagram[:cut])
        assert events == [] and sent == []
    assert server.record_counters.malformed >= 4
    events, sent = server_receives(server, datagram)
    assert events == [] and sent


def test_truncated_encrypted_record_is_dropped(pki: Any) -> None:
    link = _connected(pki)
    link.client.send(b"x" * 100)
    [(datagram, _)] = link.client.datagrams_to_send(link.now)
    before = link.server.record_counters.malformed
    for cut in (1, 3, 10, len(datagram) - 1):
        link.server.receive_datagram(datagram[:cut], CLIENT_ADDR, link.now)
    assert link.server.record_counters.malformed - before == 4
    assert link.server.state is HandshakeState.CONNECTED and not drain(link.server)
    link.server.receive_datagram(datagram, CLIENT_ADDR, link.now)
    assert drain(link.server) == [DataReceived(b"x" * 100)]


def _raw_fragment(
    msg_type: int, length: int, seq: int, offset: int, frag_len: int, data: bytes
) -> bytes:
    """A handshake header with any values (encode_handshake_fragment refuses bad ones)."""
    return (
        struct.pack(
            ">IHHI", (msg_type << 24) | length, seq, offset >> 8, ((offset & 0xFF) << 24) | frag_len
        )
        + data
    )


@pytest.mark.parametrize("case", ["beyond_message", "beyond_record", "short_header"])
def test_malformed_fragment_to_server(pki: Any, case: str) -> None:
    """RFC 9147 §5.2, RFC 9846 §6: a fragment that overruns its message or its record is a
    message that cannot be parsed: decode_error."""
    body = encode_handshake_body(craft_client_hello())
    n = len(body)
    fragment = {
        "beyond_message": _raw_fragment(HT.CLIENT_HELLO, n - 10, 0, 0, n, body),
        "beyond_record": _raw_fragment(HT.CLIENT_HELLO, n, 0, 0, n, body[: n - 10]),
        "short_header": _raw_fragment(HT.CLIENT_HELLO, n, 0, 0, n, body)[:9],
    }[case]
    server = fresh_server(pki)
    events, sent = server_receives(server, seal_plaintext(ContentType.HANDSHAKE, 0, fragment))
    assert_rejects(server, events, sent, A.DECODE_ERROR)


def test_malformed_fragment_from_authentic_peer(pki: Any) -> None:
    link = _connected(pki)
    seq = link.client._next_message_seq
    _send_sealed(
        link,
        "client",
        3,
        ContentType.HANDSHAKE,
        _raw_fragment(HT.KEY_UPDATE, 1, seq, 1, 1, b"\x00"),
    )
    assert_aborted(link, "server", A.DECODE_ERROR, after_handshake=True)


def test_malformed_ack_from_authentic_peer(pki: Any) -> None:
    link = _connected(pki)
    _send_sealed(link, "client", 3, ContentType.ACK, b"\x00\x10" + bytes(8))
    assert_aborted(link, "server", A.DECODE_ERROR, after_handshake=True)


def test_malformed_alert_from_authentic_peer(pki: Any) -> None:
    link = _connected(pki)
    _send_sealed(link, "server", 3, ContentType.ALERT, b"\x02")
    assert_aborted(link, "client", A.DECODE_ERROR, after_handshake=True)


@pytest.mark.parametrize(
    "content_type",
    [0x33, ContentType.CHANGE_CIPHER_SPEC, ContentType.HEARTBEAT, ContentType.TLS12_CID],
)
def test_unknown_content_type_from_authentic_peer(pki: Any, content_type: int) -> None:
    """An authentic record of a content type DTLS 1.3 does not use. RFC 9147 §4.5.2 lists
    an invalid inner content type among the records to discard (SHOULD silently, MAY with
    an alert); RFC 9846 §5 names unexpected_message for the alert. Either is conformant:
    the connection survives, or it ends with unexpected_message."""
    link = _connected(pki)
    _send_sealed(link, "client", 3, content_type, b"?")
    if link.server.state is HandshakeState.CLOSED:
        assert_aborted(link, "server", A.UNEXPECTED_MESSAGE, after_handshake=True)
    else:
        assert not link.events_of("server", ConnectionClosed)
        link.client.send(b"still up")
        link.run(until=link.now + 60)
        assert link.events_of("server", DataReceived)[-1] == DataReceived(b"still up")


# =================================================================================================
# Replayed and unauthentic records: dropped and counted (RFC 9147 §4.5.1, §4.5.2)
# =================================================================================================


def test_replayed_records_are_dropped_and_counted(pki: Any) -> None:
    link = _connected(pki)
    link.client.send(b"once")
    [(datagram, _)] = link.client.datagrams_to_send(link.now)
    before = link.server.record_counters.replayed
    for _ in range(3):
        link.server.receive_datagram(datagram, CLIENT_ADDR, link.now)
    assert link.server.record_counters.replayed - before == 2
    assert drain(link.server) == [DataReceived(b"once")]
    assert link.server.state is HandshakeState.CONNECTED


def test_replayed_handshake_datagrams_are_not_fatal(pki: Any) -> None:
    """Every datagram of a handshake delivered twice: duplicates are dropped or treated
    as retransmissions, never fatal."""
    link = make_pair(pki)
    link.filter = lambda sent: [sent.data, sent.data]
    run(link)
    assert len(link.events_of("client", HandshakeCompleted)) == 1
    assert len(link.events_of("server", HandshakeCompleted)) == 1
    assert not link.events_of("client", ConnectionClosed)
    assert not link.events_of("server", ConnectionClosed)
    replayed = link.client.record_counters.replayed + link.server.record_counters.replayed
    assert replayed >= 1


def test_unauthentic_records_are_dropped_and_counted(pki: Any) -> None:
    link = _connected(pki)
    link.client.send(b"genuine")
    [(datagram, _)] = link.client.datagrams_to_send(link.now)
    before = link.server.record_counters.failed_authentication
    for index in (-1, -17, len(datagram) // 2):
        link.server.receive_datagram(flip(datagram, index), CLIENT_ADDR, link.now)
    assert link.server.record_counters.failed_authentication - before == 3
    assert drain(link.server) == []
    # the window was not advanced by the forgeries (RFC 9147 §4.5.1)
    link.server.receive_datagram(datagram, CLIENT_ADDR, link.now)
    assert drain(link.server) == [DataReceived(b"genuine")]


def test_unauthentic_handshake_record_is_recovered_by_retransmission(pki: Any) -> None:
    """A corrupted record of the server's encrypted flight is dropped, not fatal; the
    flight is resent and the handshake completes."""
    corrupted: list[int] = []

    def corrupt_first_encrypted(sent: Sent) -> list[bytes]:
        if sent.direction == "s2c" and not corrupted and sent.data[0] & 0xE0 == 0x20:
            corrupted.append(sent.index)
            return [flip(sent.data)]
        spans, _ = split_datagram(sent.data)
        if (
            sent.direction == "s2c"
            and not corrupted
            and len(spans) > 1
            and spans[1].kind == RecordKind.CIPHERTEXT
        ):
            corrupted.append(sent.index)
            return [flip(sent.data)]
        return [sent.data]

    link = make_pair(pki)
    link.filter = corrupt_first_encrypted
    run(link)
    assert corrupted
    assert link.events_of("client", HandshakeCompleted)
    assert link.events_of("server", HandshakeCompleted)
    assert link.client.record_counters.failed_authentication >= 1
    assert link.server.retransmissions >= 1


def test_record_for_unknown_epoch_is_dropped_and_counted(pki: Any) -> None:
    link = _connected(pki)
    link.client.send(b"epoch")
    [(datagram, _)] = link.client.datagrams_to_send(link.now)
    wrong = bytes([(datagram[0] & ~0x03) | 0x01]) + datagram[1:]  # epoch bits 01: no keys
    before = link.server.record_counters.unknown_epoch
    link.server.receive_datagram(wrong, CLIENT_ADDR, link.now)
    assert link.server.record_counters.unknown_epoch - before == 1
    assert drain(link.server) == []
    assert link.server.state is HandshakeState.CONNECTED


def test_plaintext_alert_after_keys_is_ignored(pki: Any) -> None:
    """A forged epoch-0 fatal alert once keys exist is not authentic (RFC 9147 §4.5.2)."""
    link = _connected(pki)
    link.client.receive_datagram(
        seal_plaintext(ContentType.ALERT, 9, bytes([FATAL, A.HANDSHAKE_FAILURE])),
        SERVER_ADDR,
        link.now,
    )
    assert drain(link.client) == []
    assert link.client.state is HandshakeState.CONNECTED


# =================================================================================================
# Fuzzing: mutated real datagrams (task 3)
# =================================================================================================

MUTATIONS = ["flip", "truncate", "extend", "overwrite", "duplicate_record", "zero"]


def _mutate(data: bytes, kind: str, position: int, value: int) -> bytes:
    if not data:
        return bytes([value])
    at = position % len(data)
    out = bytearray(data)
    if kind == "flip":
        out[at] ^= 1 << (value % 8)
    elif kind == "truncate":
        del out[at:]
    elif kind == "extend":
        out += bytes([value]) * (1 + value % 40)
    elif kind == "overwrite":
        out[at] = value
    elif kind == "duplicate_record":
        out += data[at:]
    else:  # zero a run of bytes
        out[at : at + 1 + value % 16] = bytes(len(out[at : at + 1 + value % 16]))
    return bytes(out)


FAST_TIMERS = {
    "initial_retransmit_timeout": 0.2,
    "max_retransmit_timeout": 1.0,
    "max_retransmissions": 3,
}


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    index=st.integers(0, 6),  # a handshake has 6 (7 with client auth) datagrams
    kind=st.sampled_from(MUTATIONS),
    position=st.integers(0, 2000),
    value=st.integers(0, 255),
    mutual=st.booleans(),
    keep_original=st.booleans(),
)
def test_fuzz_mutated_handshake_datagrams(
    pki: Any,
    index: int,
    kind: str,
    position: int,
    value: int,
    mutual: bool,
    keep_original: bool,
) -> None:
    """One datagram of a real handshake is mutated on its way (replaced, or followed by
    the mutated copy when `keep_original`). Nothing escapes
    receive_datagram (Loopback would raise), and each engine either completes (and then
    exchanges data), or closes: with an alert that is not internal_error (the engine's
    last resort for its own bugs), or by timing out — a changed hello gives the two sides
    different keys, and records that do not authenticate are dropped silently (RFC 9147
    §4.5.2), so the handshake cannot finish and cannot tell why. A side that received
    part of the peer's next flight waits for the rest without a timer of its own (RFC 9147
    §5.8.1, state machine: receiving the next flight leaves WAITING); it may be left
    waiting only when its peer has closed."""
    link = make_pair(
        pki, mutual=mutual, client_settings=dict(FAST_TIMERS), server_settings=dict(FAST_TIMERS)
    )

    def mutate(sent: Sent) -> list[bytes]:
        if sent.index == index:
            mutated = _mutate(sent.data, kind, position, value)
            return [sent.data, mutated] if keep_original else [mutated]
        return [sent.data]

    link.filter = mutate
    run(link)
    connected = []
    for side in ("client", "server"):
        conn = getattr(link, side)
        peer = link.server if side == "client" else link.client
        events = link.client_events if side == "client" else link.server_events
        closed = [e for e in events if isinstance(e, ConnectionClosed)]
        assert len(closed) <= 1
        for event in closed:
            assert event.error, (side, event)
            if event.alert is None:
                assert "timed out" in event.reason, (side, event)
            else:
                assert event.alert != A.INTERNAL_ERROR, (side, event)
        if closed:
            assert conn.state is HandshakeState.CLOSED
        elif conn.state is HandshakeState.CONNECTED:
            assert [e for e in events if isinstance(e, HandshakeCompleted)]
            connected.append(conn)
        else:
            assert peer.state is HandshakeState.CLOSED, (side, conn.state)
            assert conn.get_timer() is None
    if len(connected) == 2:
        link.filter = None
        link.client.send(b"after the storm")
        link.run(until=link.now + 60)
        assert link.events_of("server", DataReceived)[-1] == DataReceived(b"after the storm")


def test_hello_verify_request_is_answered_with_protocol_version(pki: Any) -> None:
    # A DTLS 1.2 server answers a ClientHello with HelloVerifyRequest (RFC 6347 §4.2.1),
    # which DTLS 1.3 does not have (RFC 9147 §5.1): the versions do not meet, and the
    # alert says so (protocol_version), rather than unexpected_message.
    client = Connection(Context.client(cadata=pki.ca_pem), server_name="localhost")
    client.connect(SERVER_ADDR, 0.0)
    client.datagrams_to_send(0.0)
    body = b"\xfe\xfd" + bytes([8]) + b"cookie!!"  # server_version, cookie<0..255>
    fragment = bytes([3]) + struct.pack(">I", len(body))[1:] + b"\x00\x00" + b"\x00\x00\x00"
    fragment += struct.pack(">I", len(body))[1:] + body
    record = b"\x16\xfe\xff" + bytes(8) + struct.pack(">H", len(fragment)) + fragment
    client.receive_datagram(record, SERVER_ADDR, 0.0)
    closed = [e for e in iter(client.next_event, None) if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.PROTOCOL_VERSION
    alerts = [d for d, _ in client.datagrams_to_send(0.0)]
    assert alerts and alerts[0][0] == 21 and alerts[0][-2:] == bytes([2, 70])
