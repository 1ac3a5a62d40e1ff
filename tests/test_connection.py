"""Client and server engines against each other in memory, on a virtual clock."""

from __future__ import annotations

import gc
import ssl
import weakref
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from loopback import Loopback

from dtls.config import Context, CookieMode
from dtls.connection import Connection, HandshakeState
from dtls.errors import ConnectionStateError
from dtls.events import (
    AlertReceived,
    ConnectionClosed,
    DataReceived,
    HandshakeCompleted,
    KeyUpdated,
)
from dtls.iana import AlertDescription, CipherSuite, NamedGroup
from dtls.record import split_datagram

ALL_SUITES = list(CipherSuite)
GROUPS = [NamedGroup.X25519, NamedGroup.SECP256R1, NamedGroup.SECP384R1]
CERT_KINDS = ["server", "server_p384", "server_ed25519", "server_rsa"]


def make_pair(
    pki: Any,
    *,
    cert: str = "server",
    server_name: str = "localhost",
    client_settings: dict[str, Any] | None = None,
    server_settings: dict[str, Any] | None = None,
    mutual: bool = False,
    latency: float = 0.01,
) -> Loopback:
    cred = getattr(pki, cert)
    client_settings = dict(client_settings or {})
    server_settings = dict(server_settings or {})
    server_settings.setdefault("cookie_mode", CookieMode.NEVER)
    client = Context.client(cadata=pki.ca_pem, **client_settings)
    server = Context.server(**server_settings)
    server.load_cert_chain(certdata=cred.chain_pem, keydata=cred.key_pem)
    if mutual:
        client.load_cert_chain(certdata=pki.client.chain_pem, keydata=pki.client.key_pem)
        server.load_verify_locations(cadata=pki.ca_pem)
        server.request_client_certificate = True
        server.verify_mode = ssl.CERT_REQUIRED
    link = Loopback(
        Connection(client, server_name=server_name), Connection(server), latency=latency
    )
    return link


def handshake(
    link: Loopback, until: float = 600.0
) -> tuple[HandshakeCompleted, HandshakeCompleted]:
    link.start()
    link.run(until=until)
    c = link.events_of("client", HandshakeCompleted)
    s = link.events_of("server", HandshakeCompleted)
    assert c and s, (link.client_events, link.server_events)
    return c[0], s[0]


def exchange(link: Loopback, messages: list[bytes]) -> None:
    """Send each message both ways and check every byte arrived, in order, once."""
    before_c = len(link.events_of("client", DataReceived))
    before_s = len(link.events_of("server", DataReceived))
    for m in messages:
        link.client.send(m)
        link.server.send(m[::-1])
    link.run(until=link.now + 600)
    got_s = [e.data for e in link.events_of("server", DataReceived)[before_s:]]
    got_c = [e.data for e in link.events_of("client", DataReceived)[before_c:]]
    assert got_s == messages
    assert got_c == [m[::-1] for m in messages]


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_handshake_every_suite_and_group(pki: Any, suite: CipherSuite, group: NamedGroup) -> None:
    link = make_pair(
        pki,
        client_settings={"cipher_suites": (suite,), "groups": (group,)},
        server_settings={"cipher_suites": tuple(ALL_SUITES)},
    )
    c, s = handshake(link)
    assert c.cipher_suite == s.cipher_suite == suite.name
    assert c.group == s.group == group.name.lower()
    assert c.version == "DTLSv1.3"
    assert c.peer_certificates[0] == pki.server.cert
    assert link.client.retransmissions == 0 and link.server.retransmissions == 0
    exchange(link, [b"hello", b"x" * 1000, b""])


@pytest.mark.parametrize("cert", CERT_KINDS)
def test_handshake_every_certificate_type(pki: Any, cert: str) -> None:
    link = make_pair(pki, cert=cert)
    c, _ = handshake(link)
    assert c.peer_certificates[0] == getattr(pki, cert).cert
    exchange(link, [b"ping"])


def test_mutual_authentication(pki: Any) -> None:
    link = make_pair(pki, mutual=True)
    c, s = handshake(link)
    assert s.peer_certificates[0] == pki.client.cert
    assert c.peer_certificates[0] == pki.server.cert
    exchange(link, [b"both sides proved who they are"])


def test_client_without_certificate_when_required(pki: Any) -> None:
    link = make_pair(pki, mutual=True)
    link.client.context.certificate_chain = []
    link.client.context.private_key = None
    link.start()
    link.run()
    closed = link.events_of("server", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.CERTIFICATE_REQUIRED
    alerts = link.events_of("client", AlertReceived)
    assert alerts and alerts[0].description == AlertDescription.CERTIFICATE_REQUIRED


def test_group_mismatch_hello_retry(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"groups": (NamedGroup.X25519, NamedGroup.SECP384R1)},
        server_settings={"groups": (NamedGroup.SECP384R1,)},
    )
    c, s = handshake(link)
    assert c.group == s.group == "secp384r1"
    # ClientHello, HRR, ClientHello again, then the server flight.
    assert [d.direction for d in link.sent[:3]] == ["c2s", "s2c", "c2s"]
    exchange(link, [b"after retry"])


def test_cookie_hello_retry(pki: Any) -> None:
    link = make_pair(pki, server_settings={"cookie_mode": CookieMode.ALWAYS})
    c, _ = handshake(link)
    assert c.group == "x25519"
    first_hrr = link.sent[1]
    assert first_hrr.direction == "s2c" and len(first_hrr.data) < 3 * len(link.sent[0].data)
    exchange(link, [b"cookie checked"])


def test_alpn(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"alpn_protocols": ("coap", "h3")},
        server_settings={"alpn_protocols": ("h3", "coap")},
    )
    c, s = handshake(link)
    assert c.alpn_protocol == s.alpn_protocol == "h3"


def test_alpn_mismatch(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"alpn_protocols": ("coap",)},
        server_settings={"alpn_protocols": ("h3",)},
    )
    link.start()
    link.run()
    assert link.events_of("server", ConnectionClosed)[0].alert == (
        AlertDescription.NO_APPLICATION_PROTOCOL
    )


@pytest.mark.parametrize("initiator", ["client", "server"])
@pytest.mark.parametrize("request_peer", [True, False])
def test_key_update(pki: Any, initiator: str, request_peer: bool) -> None:
    link = make_pair(pki)
    handshake(link)
    exchange(link, [b"before"])
    conn = link.client if initiator == "client" else link.server
    other = "server" if initiator == "client" else "client"
    conn.update_keys(request_peer_update=request_peer)
    exchange(link, [b"during"])
    link.run(until=link.now + 10)
    assert conn.send_epoch == 4
    peer = link.server if initiator == "client" else link.client
    assert peer.send_epoch == (4 if request_peer else 3)
    updates = link.events_of(other, KeyUpdated)
    assert KeyUpdated("receive", 4) in updates
    exchange(link, [b"after", b"y" * 500])
    conn.update_keys()
    link.run(until=link.now + 10)
    assert conn.send_epoch == 5
    exchange(link, [b"and again"])


def test_close_notify(pki: Any) -> None:
    link = make_pair(pki)
    handshake(link)
    link.client.close()
    link.run()
    closed_s = link.events_of("server", ConnectionClosed)
    closed_c = link.events_of("client", ConnectionClosed)
    assert closed_s[0].by_peer and closed_s[0].alert == AlertDescription.CLOSE_NOTIFY
    assert not closed_s[0].error
    assert closed_c[0].reason == "closed" and not closed_c[0].error
    assert link.server.state is HandshakeState.CLOSED
    with pytest.raises(ConnectionStateError):
        link.client.send(b"too late")


def test_exporter_agrees(pki: Any) -> None:
    link = make_pair(pki)
    handshake(link)
    a = link.client.export_keying_material("EXTRACTOR-dtls_srtp", b"", 60)
    b = link.server.export_keying_material("EXTRACTOR-dtls_srtp", b"", 60)
    assert a == b and len(a) == 60
    assert a != link.client.export_keying_material("other label", b"", 60)


def test_keylog_lines_agree(pki: Any) -> None:
    client_lines: list[str] = []
    server_lines: list[str] = []
    link = make_pair(
        pki,
        client_settings={"keylog": client_lines.append},
        server_settings={"keylog": server_lines.append},
    )
    handshake(link)
    labels = [line.split()[0] for line in client_lines]
    assert labels == [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    ]
    assert sorted(client_lines) == sorted(server_lines)


def test_small_mtu_fragments_certificate(pki: Any) -> None:
    link = make_pair(
        pki,
        cert="server_rsa",
        client_settings={"max_datagram_size": 256},
        server_settings={"max_datagram_size": 256},
    )
    handshake(link)
    assert all(len(d.data) <= 256 for d in link.sent)
    assert sum(1 for d in link.sent if d.direction == "s2c") >= 6
    exchange(link, [b"small"])


def test_data_sent_before_handshake_is_delivered(pki: Any) -> None:
    link = make_pair(pki)
    link.client.send(b"queued early")
    handshake(link)
    assert [e.data for e in link.events_of("server", DataReceived)] == [b"queued early"]


@pytest.mark.parametrize(
    ("client_cid", "server_cid"),
    [(b"CLI-cid1", b"SRV-cid-8"), (b"", b"\x01" * 255), (b"\x07", b""), (b"", b"")],
)
def test_connection_ids(pki: Any, client_cid: bytes, server_cid: bytes) -> None:
    link = make_pair(
        pki,
        client_settings={"connection_id": client_cid},
        server_settings={"connection_id": server_cid},
    )
    handshake(link)
    assert link.client.peer_cid == server_cid and link.server.peer_cid == client_cid
    exchange(link, [b"with connection ids", b"q" * 300])
    # Encrypted records to each side carry that side's CID; plaintext ones none (§9).
    for sent in link.sent:
        first = sent.data[0]
        if first & 0xE0 != 0x20:
            continue
        cid = server_cid if sent.direction == "c2s" else client_cid
        assert bool(first & 0x10) == bool(cid)
        if cid:
            assert sent.data[1 : 1 + len(cid)] == cid


def test_connection_id_offered_to_server_without_one(pki: Any) -> None:
    link = make_pair(pki, client_settings={"connection_id": b"abcd"})
    handshake(link)
    assert link.server.local_cid == b"" and link.client.peer_cid == b""
    exchange(link, [b"server sends with our CID"])


@pytest.mark.parametrize("cookie", [CookieMode.ALWAYS, CookieMode.NEVER])
def test_post_quantum_hybrid_group(pki: Any, cookie: str) -> None:
    # X25519MLKEM768's 1216-byte share does not fit a 1200-byte datagram with the rest of
    # the ClientHello: the first ClientHello carries no share, the HRR picks the group and
    # the second ClientHello is fragmented (draft-ietf-tls-ecdhe-mlkem, RFC 9147 §5.5).
    link = make_pair(
        pki,
        client_settings={"groups": (NamedGroup.X25519MLKEM768,)},
        server_settings={"cookie_mode": cookie},
    )
    c, s = handshake(link)
    assert c.group == s.group == "x25519mlkem768"
    assert all(len(d.data) <= 1200 for d in link.sent)
    hellos = [d for d in link.sent[:4] if d.direction == "c2s"]
    assert len(hellos[0].data) < 400 and len(hellos) >= 3  # small CH1; CH2 in two datagrams
    exchange(link, [b"quantum-safe"])


def test_stateless_server_checks_cookie_of_fragmented_client_hello(pki: Any) -> None:
    from dtls.handshake_server import respond_statelessly

    link = make_pair(
        pki,
        client_settings={"groups": (NamedGroup.X25519MLKEM768,)},
        server_settings={"cookie_mode": CookieMode.ALWAYS},
    )
    ctx = link.server.context
    handshake(link)
    first, _hrr, part1, part2 = (d.data for d in link.sent[:4])
    assert respond_statelessly(ctx, first, ("192.0.2.1", 5000)).action == "retry"
    assert respond_statelessly(ctx, part1, ("192.0.2.1", 5000)).action == "accept"
    # The same fragment from another address, or the second fragment alone: not accepted,
    # handed back to be reassembled (and answered when complete) by the caller.
    other = respond_statelessly(ctx, part1, ("203.0.113.5", 5000))
    alone = respond_statelessly(ctx, part2, ("192.0.2.1", 5000))
    assert other.action == alone.action == "fragment"
    assert [f.fragment_offset == 0 for _, f in other.fragments] == [True]
    assert [f.fragment_offset > 0 for _, f in alone.fragments] == [True]


def test_record_size_limit_negotiated_and_enforced(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"record_size_limit": 256},
        server_settings={"record_size_limit": 512},
    )
    handshake(link)
    # Each side sends at most what the other accepts (RFC 8449 §4: limit minus the type).
    with pytest.raises(ValueError):
        link.server.send(b"x" * 256)
    with pytest.raises(ValueError):
        link.client.send(b"x" * 512)
    exchange(link, [b"y" * 255])
    # The server's handshake flight already respected the client's limit.
    s2c = [d for d in link.sent if d.direction == "s2c"]
    assert len(s2c) >= 4


def test_record_over_the_limit_is_record_overflow(pki: Any) -> None:
    link = make_pair(pki, client_settings={"record_size_limit": 128})
    handshake(link)
    link.server._send_limit = 1000  # a server that ignores the client's limit
    link.server.send(b"z" * 500)
    link.run()
    closed = link.events_of("client", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.RECORD_OVERFLOW


def test_confidentiality_limit_triggers_key_update(pki: Any) -> None:
    link = make_pair(pki, client_settings={"confidentiality_limit": 40})
    handshake(link)
    for i in range(60):
        link.client.send(b"%d" % i)
        if i % 10 == 9:
            link.run(until=link.now + 5)
    link.run(until=link.now + 5)
    assert link.client.send_epoch >= 4  # moved on before 40 records in one key
    got = [e.data for e in link.events_of("server", DataReceived)]
    assert got == [b"%d" % i for i in range(60)]


def test_integrity_limit_closes_the_connection(pki: Any) -> None:
    link = make_pair(pki, server_settings={"integrity_limit": 8})
    handshake(link)
    link.client.send(b"genuine")
    record = link.client.datagrams_to_send(link.now)[0][0]
    forged = record[:-1] + bytes([record[-1] ^ 1])
    for _ in range(8):
        link.server.receive_datagram(forged, ("192.0.2.1", 5000), link.now)
    closed = [e for e in iter(link.server.next_event, None) if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.BAD_RECORD_MAC
    assert link.server.record_counters.failed_authentication == 8


def test_keylog_file_and_environment(pki: Any, tmp_path: Any, monkeypatch: Any) -> None:
    path = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    link = make_pair(pki)
    assert link.client.context.keylog_filename == str(path)
    handshake(link)
    lines = path.read_text().splitlines()
    # Both ends append to the same file: every secret twice, under one client random.
    assert len(lines) == 10 and len({line.split()[1] for line in lines}) == 1
    monkeypatch.delenv("SSLKEYLOGFILE")
    assert make_pair(pki).client.context.keylog is None  # off unless asked for


def test_keepalive_and_idle_timeout(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"keepalive_interval": 15.0},
        server_settings={"idle_timeout": 40.0},
    )
    handshake(link)
    start = link.now
    link.run(until=start + 100)
    # The client kept the server from timing out by sending every 15 s of silence.
    assert link.client.keepalives_sent >= 6
    assert link.server.state is HandshakeState.CONNECTED
    # Once the client stops, the server gives up after 40 s of silence.
    link.client.context.keepalive_interval = None
    link.run(until=start + 200)
    closed = link.events_of("server", ConnectionClosed)
    assert closed and closed[0].reason.startswith("idle timeout")
    last_heard = max(d.time for d in link.sent if d.direction == "c2s") + link.latency
    assert link.now == pytest.approx(last_heard + 40.0)


def test_stats(pki: Any) -> None:
    link = make_pair(pki, latency=0.05)
    handshake(link)
    exchange(link, [b"a" * 100, b"b" * 200])
    stats = link.server.stats()
    assert stats.state == "CONNECTED" and stats.send_epoch == 3
    assert stats.handshake_seconds == pytest.approx(0.1, abs=0.011)  # 1 RTT on the server
    assert stats.records_opened >= 3 and stats.bytes_opened > 300
    # Two data records and the ACK of the NewSessionTicket, in epoch 3.
    assert stats.receive_epochs[-1] == 3 and stats.replay_window_next == 3
    replay = [d for d in link.sent if d.direction == "c2s"][-1]
    link.server.receive_datagram(replay.data, ("192.0.2.1", 5000), link.now)
    records_in_it = len(split_datagram(replay.data, 0)[0])
    assert link.server.stats().dropped_replayed == records_in_it >= 1


def test_dtls_srtp(pki: Any) -> None:
    from dtls.srtp import SrtpProfile

    link = make_pair(
        pki,
        client_settings={
            "srtp_profiles": (
                SrtpProfile.SRTP_AEAD_AES_128_GCM,
                SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80,
            )
        },
        server_settings={
            "srtp_profiles": (
                SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80,
                SrtpProfile.SRTP_AEAD_AES_128_GCM,
            )
        },
    )
    handshake(link)
    assert link.client.srtp_profile == link.server.srtp_profile == 0x0001  # server's choice
    keys = link.client.srtp_keys()
    assert keys == link.server.srtp_keys()
    assert (len(keys.client_key), len(keys.client_salt)) == (16, 14)
    material = link.client.export_keying_material(b"EXTRACTOR-dtls_srtp", b"", 60)
    assert keys.client_key + keys.server_key + keys.client_salt + keys.server_salt == material


def test_dtls_srtp_without_common_profile(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"srtp_profiles": (0x0007,)},
        server_settings={"srtp_profiles": (0x0001,)},
    )
    handshake(link)
    assert link.client.srtp_profile is None and link.server.srtp_profile is None
    with pytest.raises(ConnectionStateError):
        link.client.srtp_keys()


def rpk_contexts(pki: Any, *, mutual: bool = False) -> Loopback:
    server = Context.server(cookie_mode=CookieMode.NEVER, raw_public_key=True)
    server.private_key = pki.server.key  # no certificate at all: a bare key (RFC 7250)
    client = Context.client(verify=False, raw_public_key=mutual)
    client.pin_public_key(
        pki.server.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    if mutual:
        client.private_key = pki.client.key
        server.request_client_certificate = True
        server.verify_mode = ssl.CERT_REQUIRED
        server.pin_public_key(
            pki.client.key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return Loopback(Connection(client, server_name="device-17"), Connection(server))


@pytest.mark.parametrize("mutual", [False, True])
def test_raw_public_keys(pki: Any, mutual: bool) -> None:
    link = rpk_contexts(pki, mutual=mutual)
    c, s = handshake(link)
    assert c.peer_certificates == s.peer_certificates == ()
    assert link.client.peer_public_key in (link.client.context.pinned_public_keys)
    if mutual:
        assert link.server.peer_public_key == link.server.context.pinned_public_keys[0]
    exchange(link, [b"authenticated by pinned keys"])


def test_raw_public_key_not_pinned_is_rejected(pki: Any) -> None:
    link = rpk_contexts(pki)
    other = pki.client.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    link.client.context.pinned_public_keys = (other,)
    link.start()
    link.run()
    closed = link.events_of("client", ConnectionClosed)
    assert closed and closed[0].alert == AlertDescription.BAD_CERTIFICATE


def test_data_received_is_the_dataclass_event() -> None:
    """`data_received` (the receive path's constructor) makes the same event as the class."""
    from dataclasses import FrozenInstanceError, asdict

    from dtls.events import data_received

    event = data_received(b"payload")
    assert event == DataReceived(b"payload") and event.__class__ is DataReceived
    assert (event.data, event.early) == (b"payload", False)
    assert asdict(event) == {"data": b"payload", "early": False}
    assert repr(event) == "DataReceived(data=b'payload', early=False)"
    with pytest.raises(FrozenInstanceError):
        event.data = b"other"  # type: ignore[misc]


def test_flight_fragments_of_one_epoch_share_records(pki: Any) -> None:
    # RFC 9147 §4.4: a record may carry several handshake fragments. The server's
    # EncryptedExtensions, Certificate, CertificateVerify and Finished (epoch 2) go in one
    # record per datagram, each record filled before a new datagram starts (BoringSSL's
    # runner checks both).
    link = make_pair(pki, cert="server_rsa")
    handshake(link)
    first_flight = [d for d in link.sent if d.direction == "s2c"][:3]
    encrypted: list[int] = []
    for sent in first_flight:
        spans, dropped = split_datagram(sent.data)
        assert dropped == 0
        assert len(sent.data) <= 1200
        ciphertexts = [s for s in spans if s.first_byte & 0xE0 == 0x20]
        encrypted.append(len(ciphertexts))
    # the flight is larger than one datagram: every datagram of it is one epoch-2 record,
    # and every one but the last is full to within a handshake fragment header
    assert encrypted[:2] == [1, 1]
    assert all(len(d.data) > 1200 - 13 for d in first_flight[:1])
    exchange(link, [b"after"])


def test_dropped_connections_are_freed_without_the_cycle_collector(pki: Any) -> None:
    """A connection's parts (handshake, connection-ID updates) hold it weakly: dropping an
    established connection frees it and its record keys at once, by reference count."""
    link = make_pair(pki)
    handshake(link)
    exchange(link, [b"ping"])
    refs = [weakref.ref(link.client), weakref.ref(link.server)]
    gc.disable()
    try:
        del link
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()
