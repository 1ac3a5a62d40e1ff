"""This library's crypto against real wolfSSL 5.9.2 DTLS 1.3 conversations.

A passive check of each recorded conversation (tests/vectors/wolfssl, see
interop/wolfssl/README.md), with the engine's own parts only: every record is split and
opened by `dtls.record` with keys from the key log (tests/wolfssl_vectors.py); every
handshake message is reassembled by `dtls.reliability.HandshakeReassembler` (one per
direction), decoded and re-encoded by `dtls.messages`, hashed into
`dtls.keyschedule.Transcript`; both CertificateVerify signatures and both Finished values
are checked with `dtls.crypto` and `dtls.keyschedule`; certificate chains with
`dtls.crypto.verify_certificate_chain`. The application traffic secrets cannot be derived
without the (EC)DHE secret, so the key log's CLIENT/SERVER_TRAFFIC_SECRET_0 are checked by
opening every epoch-3 record with them (and epoch 4 with their "traffic upd" successors).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from wolfssl_vectors import (
    CREDS,
    SCENARIOS,
    TYPE_NAMES,
    Record,
    flow_hellos,
    keylog_secrets,
    load,
    open_records,
)

from dtls import crypto
from dtls.errors import BadCertificate, CertificateExpired, DecryptError, UnknownCA
from dtls.iana import CipherSuite, ContentType, HandshakeType, SignatureScheme
from dtls.keyschedule import (
    KeySchedule,
    Transcript,
    compute_binder,
    finished_verify_data,
    suite_hash_name,
)
from dtls.messages import (
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    decode_ack,
    decode_alert,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_handshake_body,
    handshake_type,
    transcript_bytes,
    truncated_client_hello,
)
from dtls.record import OpenError, RecordCipher, ReplayWindow, split_datagram
from dtls.reliability import FragmentResult, HandshakeReassembler

HT = HandshakeType
# The scenarios the brief names, with full certificate handshakes; the PSK ones follow.
CERTIFICATE_SCENARIOS = [
    "basic",
    "hrr_cookie",
    "chacha",
    "aes256",
    "ccm",
    "mtls",
    "keyupdate",
    "fragmented",
    "loss",
    "cid",
]
PSK_SCENARIOS = ["psk", "resumption", "early_data"]
assert sorted(CERTIFICATE_SCENARIOS + PSK_SCENARIOS) == SCENARIOS

_CONTENT_NAMES = {
    "handshake": ContentType.HANDSHAKE,
    "application_data": ContentType.APPLICATION_DATA,
    "alert": ContentType.ALERT,
    "ack": ContentType.ACK,
}
_POST_HANDSHAKE = (HT.NEW_SESSION_TICKET, HT.KEY_UPDATE)


# --- walking one conversation -----------------------------------------------------------------


@dataclass
class Flow:
    """One handshake (one client socket) as a passive observer reconstructs it."""

    client_random: str
    transcript: Transcript = field(default_factory=Transcript)
    oracle: list[bytes] = field(default_factory=list)  # the same bytes, for plain hashlib
    hash_name: str | None = None
    reassemblers: dict[str, HandshakeReassembler] = field(default_factory=dict)
    bodies: dict[tuple[str, int], bytes] = field(default_factory=dict)
    handshake: list[tuple[str, Any]] = field(default_factory=list)  # (dir, message)
    post_handshake: list[tuple[str, Any, int]] = field(default_factory=list)  # + epoch
    leaf: dict[str, x509.Certificate] = field(default_factory=dict)  # dir -> end entity
    chains: dict[str, list[bytes]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)  # signatures and MACs that verified
    retransmitted: list[tuple[str, int]] = field(default_factory=list)

    def oracle_digest(self) -> bytes:
        assert self.hash_name is not None
        return hashlib.new(self.hash_name, b"".join(self.oracle)).digest()


@dataclass
class Conversation:
    vec: dict[str, Any]
    records: list[Record]
    flows: dict[int, Flow]


def _handle(
    flow: Flow,
    direction: str,
    msg_type: int,
    body: bytes,
    epoch: int,
    secrets: dict[tuple[str, str], bytes],
) -> None:
    msg = decode_handshake_body(msg_type, body)
    assert encode_handshake_body(msg) == body, "re-encoding changed the bytes"
    assert handshake_type(msg) == msg_type
    if msg_type in _POST_HANDSHAKE:
        # RFC 9147 §6.1: post-handshake messages only under application keys, after both
        # Finished messages; they are not part of the handshake transcript
        assert epoch >= 3
        assert {"s2c Finished", "c2s Finished"} <= set(flow.checked)
        flow.post_handshake.append((direction, msg, epoch))
        return
    # RFC 9147 §6.1: hellos in epoch 0, everything else of the handshake in epoch 2
    assert epoch == (0 if msg_type in (HT.CLIENT_HELLO, HT.SERVER_HELLO) else 2)
    entry = transcript_bytes(msg_type, body)
    if isinstance(msg, ServerHello):
        flow.hash_name = suite_hash_name(msg.cipher_suite)
        flow.transcript.set_hash(flow.hash_name)
        if msg.is_hello_retry_request:
            # RFC 9846 §4.4.1: ClientHello1 is replaced by message_hash(Hash(ClientHello1))
            flow.transcript.restart_after_hello_retry()
            ch1_hash = hashlib.new(flow.hash_name, b"".join(flow.oracle)).digest()
            flow.oracle = [bytes([254, 0, 0, len(ch1_hash)]) + ch1_hash]
    elif isinstance(msg, Certificate):
        if msg.entries:
            flow.chains[direction] = [e.data for e in msg.entries]
            flow.leaf[direction] = x509.load_der_x509_certificate(msg.entries[0].data)
    elif isinstance(msg, CertificateVerify):
        # RFC 9846 §4.4.3: signed over Transcript-Hash(Handshake Context, Certificate)
        content = crypto.certificate_verify_content(direction == "s2c", flow.transcript.digest())
        crypto.verify_signature(flow.leaf[direction], msg.algorithm, msg.signature, content)
        flow.checked.append(f"{direction} CertificateVerify")
    elif isinstance(msg, Finished):
        # RFC 9846 §4.4.4: the base key is the sender's handshake traffic secret
        side = "SERVER" if direction == "s2c" else "CLIENT"
        base_key = secrets[(flow.client_random, f"{side}_HANDSHAKE_TRAFFIC_SECRET")]
        assert flow.hash_name is not None
        expected = finished_verify_data(flow.hash_name, base_key, flow.transcript.digest())
        assert msg.verify_data == expected, f"{direction} Finished does not verify"
        flow.checked.append(f"{direction} Finished")
    flow.transcript.add(entry)
    flow.oracle.append(entry)
    if flow.hash_name is not None:
        assert flow.transcript.digest() == flow.oracle_digest()
    flow.handshake.append((direction, msg))


def walk(name: str) -> Conversation:
    """Open, reassemble, decode and verify one conversation, in wire order."""
    vec = load(name)
    records = open_records(vec)
    secrets = keylog_secrets(vec)
    hellos = flow_hellos(vec)
    flows: dict[int, Flow] = {}
    for rec in records:
        if rec.content_type != ContentType.HANDSHAKE:
            continue
        flow = flows.setdefault(rec.flow, Flow(hellos[rec.flow].client_random.hex()))
        ra = flow.reassemblers.setdefault(
            rec.direction, HandshakeReassembler(max_message_size=1 << 16, max_buffered=1 << 18)
        )
        for fragment in decode_handshake_fragments(rec.payload):
            result = ra.add(fragment, rec.epoch)
            if result == FragmentResult.OLD:
                # RFC 9147 §5.5: a retransmission must not change a byte
                body = flow.bodies[(rec.direction, fragment.message_seq)]
                start = fragment.fragment_offset
                assert body[start : start + fragment.fragment_length] == fragment.fragment
                flow.retransmitted.append((rec.direction, fragment.message_seq))
            else:
                assert result == FragmentResult.ACCEPTED
        while (message := ra.pop()) is not None:
            flow.bodies[(rec.direction, message.message_seq)] = message.body
            _handle(flow, rec.direction, message.msg_type, message.body, message.epoch, secrets)
    for direction_flows in flows.values():
        for ra in direction_flows.reassemblers.values():
            assert not ra.has_partial() and not ra.has_future(), "a message stayed incomplete"
    return Conversation(vec, records, flows)


_CACHE: dict[str, Conversation] = {}


def conversation(name: str) -> Conversation:
    if name not in _CACHE:
        _CACHE[name] = walk(name)
    return _CACHE[name]


def _short(direction: str, msg: Any) -> str:
    name = type(msg).__name__
    if isinstance(msg, ServerHello) and msg.is_hello_retry_request:
        name = "HelloRetryRequest"
    return f"{direction} {name}"


def expected_handshake(flow: dict[str, Any], mutual: bool) -> list[str]:
    """The handshake messages of RFC 9846 §2 for this kind of flow (DTLS: no
    EndOfEarlyData, RFC 9147 §5.6)."""
    out = ["c2s ClientHello"]
    if flow["hrr"]:
        out += ["s2c HelloRetryRequest", "c2s ClientHello"]
    out += ["s2c ServerHello", "s2c EncryptedExtensions"]
    if mutual:
        out += ["s2c CertificateRequest"]
    if not flow["offered_psk"]:
        out += ["s2c Certificate", "s2c CertificateVerify"]
    out += ["s2c Finished"]
    if mutual:
        out += ["c2s Certificate", "c2s CertificateVerify"]
    return [*out, "c2s Finished"]


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_handshake_transcript_signatures_and_finished(name: str) -> None:
    conv = conversation(name)
    decoded_flows = {f["flow"]: f for f in conv.vec["decoded"]["flows"]}
    assert conv.flows.keys() == decoded_flows.keys()
    for number, flow in conv.flows.items():
        info = decoded_flows[number]
        mutual = name == "mtls"
        assert [_short(d, m) for d, m in flow.handshake] == expected_handshake(info, mutual)
        assert flow.client_random == info["client_random"]
        sh = next(
            m
            for _, m in flow.handshake
            if isinstance(m, ServerHello) and not m.is_hello_retry_request
        )
        assert CipherSuite(sh.cipher_suite).name == info["cipher_suite"]
        wanted = ["s2c Finished", "c2s Finished"]
        if not info["offered_psk"]:
            wanted.append("s2c CertificateVerify")
        if mutual:
            wanted.append("c2s CertificateVerify")
        assert sorted(flow.checked) == sorted(wanted)
        # the transcript hash fits the suite (RFC 9846 §4.4.1)
        assert flow.hash_name == ("sha384" if info["cipher_suite"].endswith("SHA384") else "sha256")


@pytest.mark.parametrize("name", SCENARIOS)
def test_records_are_what_the_checker_saw(name: str) -> None:
    """Epochs and sequence numbers reconstructed by the record layer, content types,
    handshake fragments, ACKs and alerts, record by record."""
    conv = conversation(name)
    expected = [r for r in conv.vec["decoded"]["records"] if not r.get("dropped")]
    assert len(conv.records) == len(expected)
    for rec, info in zip(conv.records, expected, strict=True):
        where = f"datagram {rec.datagram}"
        assert (rec.datagram, rec.direction, rec.flow) == (
            info["datagram"],
            info["dir"],
            info["flow"],
        ), where
        assert rec.kind.name.lower() == info["format"], where
        assert (rec.epoch, rec.seq) == (info["epoch"], info["seq"]), where
        assert rec.content_type == _CONTENT_NAMES[info["type"]], where
        if rec.content_type == ContentType.HANDSHAKE:
            fragments = [
                (f.msg_type, f.message_seq, f.fragment_offset, f.fragment_length, f.length)
                for f in decode_handshake_fragments(rec.payload)
            ]
            assert fragments == [
                (TYPE_NAMES[h["type"]], h["msg_seq"], h["frag_off"], h["frag_len"], h["length"])
                for h in info["handshake"]
            ], where
        elif rec.content_type == ContentType.ACK:
            assert [list(n) for n in decode_ack(rec.payload)] == info["ack"], where
        elif rec.content_type == ContentType.ALERT:
            assert list(decode_alert(rec.payload)) == info["alert"], where


@pytest.mark.parametrize("name", SCENARIOS)
def test_application_data_is_recovered(name: str) -> None:
    conv = conversation(name)
    got = [
        (r.direction, r.payload.hex())
        for r in conv.records
        if r.content_type == ContentType.APPLICATION_DATA
    ]
    assert got == [(e["dir"], e["hex"]) for e in conv.vec["expected_app_data"]]
    # every conversation ends with close_notify both ways, under application keys
    alerts = [
        (r.direction, decode_alert(r.payload), r.epoch)
        for r in conv.records
        if r.content_type == ContentType.ALERT
    ]
    assert sorted(d for d, _, _ in alerts[-2:]) == ["c2s", "s2c"]
    assert all(a == (1, 0) and e >= 3 for _, a, e in alerts)


@pytest.mark.parametrize("name", SCENARIOS)
def test_application_keys_follow_finished(name: str) -> None:
    """RFC 9846 §4.4.4, RFC 9147 §6.1: a side sends under its application traffic secret
    only after its Finished; 0-RTT data (epoch 1) only from the client, before it."""
    conv = conversation(name)
    for number in conv.flows:
        records = [r for r in conv.records if r.flow == number]
        for direction in ("c2s", "s2c"):
            mine = [r for r in records if r.direction == direction]
            finished_at = next(
                i
                for i, r in enumerate(mine)
                if r.content_type == ContentType.HANDSHAKE
                and any(f.msg_type == HT.FINISHED for f in decode_handshake_fragments(r.payload))
            )
            assert all(r.epoch < 3 for r in mine[:finished_at])
            assert all(
                r.epoch >= 3 or r.content_type == ContentType.ACK
                for r in mine[finished_at + 1 :]
                if r.epoch != 2
            )
            early = [r for r in mine if r.epoch == 1]
            assert all(r.content_type == ContentType.APPLICATION_DATA for r in early)
            if direction == "s2c":
                assert not early


@pytest.mark.parametrize("name", SCENARIOS)
def test_acks_name_handshake_records_the_peer_received(name: str) -> None:
    """RFC 9147 §7: an ACK lists records of the peer's that carried handshake messages
    and had arrived; and no epoch above the ACK record's own (§7.2 allows the same or
    lower)."""
    conv = conversation(name)
    seen: dict[tuple[int, str], dict[tuple[int, int], int]] = {}
    acks = 0
    for rec in conv.records:
        seen.setdefault((rec.flow, rec.direction), {})[(rec.epoch, rec.seq)] = rec.content_type
        if rec.content_type != ContentType.ACK:
            continue
        acks += 1
        peer = "s2c" if rec.direction == "c2s" else "c2s"
        received = seen.get((rec.flow, peer), {})
        numbers = decode_ack(rec.payload)
        assert numbers, "an empty ACK"
        for number in numbers:
            assert received.get(number) == ContentType.HANDSHAKE, (rec.datagram, number)
            assert number[0] <= rec.epoch
    assert acks >= 2


def test_loss_ack_and_selective_retransmission() -> None:
    """`loss`: the relay dropped the datagram with EncryptedExtensions; the client ACKs
    what it got and the server resends only EncryptedExtensions, in a new record."""
    conv = conversation("loss")
    acks = [
        (r.direction, decode_ack(r.payload))
        for r in conv.records
        if r.content_type == ContentType.ACK
    ]
    assert acks[0] == ("c2s", [(0, 0), (2, 1), (2, 2), (2, 3)])
    # the dropped datagram, opened with the same keys, held EE in record (2, 0)
    vec = load("loss")
    dropped = [d for d in vec["datagrams"] if d.get("dropped")]
    assert len(dropped) == 1
    secrets = keylog_secrets(vec)
    hellos = flow_hellos(vec)[0]
    secret = secrets[(hellos.client_random.hex(), "SERVER_HANDSHAKE_TRAFFIC_SECRET")]
    data = bytes.fromhex(dropped[0]["hex"])
    [span], rest = split_datagram(data)
    assert rest == 0
    opened = RecordCipher.from_secret(hellos.cipher_suite, secret).open(
        data[span.offset : span.offset + span.length], ReplayWindow(64)
    )
    assert not isinstance(opened, OpenError)
    assert opened.seq == 0
    [lost] = decode_handshake_fragments(bytes(opened.plaintext))
    assert lost.msg_type == HT.ENCRYPTED_EXTENSIONS
    resent = [
        r
        for r in conv.records
        if r.direction == "s2c"
        and r.epoch == 2
        and any(
            f.msg_type == HT.ENCRYPTED_EXTENSIONS for f in decode_handshake_fragments(r.payload)
        )
    ]
    assert [(r.epoch, r.seq) for r in resent] == [(2, 4)]
    assert decode_handshake_fragments(resent[0].payload) == [lost]
    # nothing else of the flight was sent twice
    assert conv.flows[0].retransmitted == []


def test_fragmented_certificate_is_reassembled() -> None:
    conv = conversation("fragmented")
    pieces = [
        (f.fragment_offset, f.fragment_length)
        for r in conv.records
        if r.direction == "s2c" and r.content_type == ContentType.HANDSHAKE
        for f in decode_handshake_fragments(r.payload)
        if f.msg_type == HT.CERTIFICATE
    ]
    assert len(pieces) == 3 and pieces[0][0] == 0
    cert = next(m for d, m in conv.flows[0].handshake if isinstance(m, Certificate))
    assert sum(n for _, n in pieces) == len(encode_handshake_body(cert))
    # the same certificate as in the unfragmented conversation
    basic = next(
        m for d, m in conversation("basic").flows[0].handshake if isinstance(m, Certificate)
    )
    assert cert == basic


def test_key_update_epochs() -> None:
    """RFC 9147 §8: each side's KeyUpdate is acknowledged before it sends in epoch 4;
    the epoch-4 keys ("traffic upd" of the key log's secret) open what follows."""
    conv = conversation("keyupdate")
    [flow] = conv.flows.values()
    updates = [
        (d, m.request_update, e) for d, m, e in flow.post_handshake if isinstance(m, KeyUpdate)
    ]
    assert updates == [("c2s", 1, 3), ("s2c", 0, 3)]
    assert flow.retransmitted == [("s2c", 6)]  # the server resent its KeyUpdate
    for direction in ("c2s", "s2c"):
        peer = "s2c" if direction == "c2s" else "c2s"
        update_records = {
            (r.epoch, r.seq)
            for r in conv.records
            if r.direction == direction
            and r.content_type == ContentType.HANDSHAKE
            and any(f.msg_type == HT.KEY_UPDATE for f in decode_handshake_fragments(r.payload))
        }
        first_new = next(
            i for i, r in enumerate(conv.records) if r.direction == direction and r.epoch == 4
        )
        acked = {
            n
            for r in conv.records[:first_new]
            if r.direction == peer and r.content_type == ContentType.ACK
            for n in decode_ack(r.payload)
        }
        assert update_records & acked, direction
        assert all(r.epoch == 4 for r in conv.records[first_new:] if r.direction == direction)


def test_connection_ids_in_record_headers() -> None:
    """RFC 9146 / RFC 9147 §9: each encrypted record carries the CID its receiver chose;
    plaintext records carry none."""
    conv = conversation("cid")
    cids = conv.vec["cid"]
    for rec in conv.records:
        if rec.epoch == 0:
            assert rec.cid == b""
        elif rec.direction == "c2s":
            assert rec.cid == bytes.fromhex(cids["server_cid_hex"]) == b"SRV-cid-8"
        else:
            assert rec.cid == bytes.fromhex(cids["client_cid_hex"]) == b"CLI-cid1"


def test_early_data_and_resumption_flows() -> None:
    conv = conversation("early_data")
    zero_rtt = [r for r in conv.records if r.epoch == 1]
    assert [(r.flow, r.direction, r.payload) for r in zero_rtt] == [(1, "c2s", b"A drop of info")]
    ch = conv.flows[1].handshake[0][1]
    assert isinstance(ch, ClientHello) and ch.early_data and ch.pre_shared_key is not None
    ee = next(m for _, m in conv.flows[1].handshake if isinstance(m, EncryptedExtensions))
    assert ee.early_data  # accepted
    # a resumed handshake authenticates with the PSK: no Certificate (RFC 9846 §2.2)
    for name in ("resumption", "early_data"):
        flows = conversation(name).flows
        assert any(isinstance(m, Certificate) for _, m in flows[0].handshake)
        assert not any(isinstance(m, Certificate) for _, m in flows[1].handshake)
        sh = next(m for _, m in flows[1].handshake if isinstance(m, ServerHello))
        assert sh.pre_shared_key == 0
        tickets = [m for _, m, _ in flows[0].post_handshake if isinstance(m, NewSessionTicket)]
        assert tickets and tickets[0].ticket in [
            i.identity for i in flows[1].handshake[0][1].pre_shared_key.identities
        ]


def test_external_psk_binder_with_our_key_schedule() -> None:
    """RFC 9846 §4.2.11.2: binder = Finished with the "ext binder" key over
    Truncate(ClientHello)."""
    vec = load("psk")
    flow = conversation("psk").flows[0]
    ch = flow.handshake[0][1]
    assert isinstance(ch, ClientHello) and ch.pre_shared_key is not None
    sh = flow.handshake[1][1]
    schedule = KeySchedule(sh.cipher_suite)
    schedule.early_secret(bytes.fromhex(vec["psk"]["key_hex"]))
    binder_key = schedule.binder_key(external=True)
    truncated = truncated_client_hello(encode_handshake_body(ch))
    digest = hashlib.new(schedule.hash_name, truncated).digest()
    assert compute_binder(schedule.hash_name, binder_key, digest) == ch.pre_shared_key.binders[0]
    assert (
        compute_binder(schedule.hash_name, schedule.binder_key(external=False), digest)
        != (ch.pre_shared_key.binders[0])
    )


def _when_valid(*certs: x509.Certificate) -> datetime.datetime:
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    assert start < end
    return start + (end - start) / 2


@pytest.mark.parametrize("name", [*CERTIFICATE_SCENARIOS, "resumption", "early_data"])
def test_server_certificate_chain(name: str) -> None:
    flow = conversation(name).flows[0]
    chain = flow.chains["s2c"]
    trust = crypto.TrustStore(cafile=CREDS / "ca-ecc-cert.pem")
    ca = trust.certificates[0]
    when = _when_valid(flow.leaf["s2c"], ca)
    path = crypto.verify_certificate_chain(
        chain, trust, server_name="www.wolfssl.com", is_server_cert=True, when=when
    )
    assert path[0] == flow.leaf["s2c"] and path[-1] == ca
    assert flow.leaf["s2c"] == x509.load_pem_x509_certificate(
        (CREDS / "server-ecc.pem").read_bytes()
    )
    with pytest.raises(BadCertificate):
        crypto.verify_certificate_chain(
            chain, trust, server_name="www.example.com", is_server_cert=True, when=when
        )
    with pytest.raises(CertificateExpired):
        crypto.verify_certificate_chain(
            chain,
            trust,
            server_name="www.wolfssl.com",
            is_server_cert=True,
            when=flow.leaf["s2c"].not_valid_after_utc + datetime.timedelta(days=1),
        )
    with pytest.raises(UnknownCA):
        crypto.verify_certificate_chain(
            chain,
            crypto.TrustStore(cafile=CREDS / "client-ecc-cert.pem"),
            server_name="www.wolfssl.com",
            is_server_cert=True,
            when=when,
        )


def test_mtls_client_certificate() -> None:
    conv = conversation("mtls")
    flow = conv.flows[0]
    cr = next(m for _, m in flow.handshake if isinstance(m, CertificateRequest))
    assert cr.context == b"" and cr.signature_algorithms
    client_cv = [m for d, m in flow.handshake if d == "c2s" and isinstance(m, CertificateVerify)]
    assert [cv.algorithm for cv in client_cv] == [SignatureScheme.ECDSA_SECP256R1_SHA256]
    assert client_cv[0].algorithm in cr.signature_algorithms
    pem = conv.vec["client_cert_pem"].encode()
    trust = crypto.TrustStore(cadata=pem)  # self-signed, trusted directly by the server
    leaf = flow.leaf["c2s"]
    assert leaf == x509.load_pem_x509_certificate(pem)
    path = crypto.verify_certificate_chain(
        flow.chains["c2s"], trust, server_name=None, is_server_cert=False, when=_when_valid(leaf)
    )
    assert path == [leaf]


# --- the checks can fail ---------------------------------------------------------------------


def test_a_flipped_bit_does_not_open() -> None:
    vec = load("basic")
    hellos = flow_hellos(vec)[0]
    secret = keylog_secrets(vec)[(hellos.client_random.hex(), "CLIENT_TRAFFIC_SECRET_0")]
    cipher = RecordCipher.from_secret(hellos.cipher_suite, secret)
    app = next(
        r
        for r in open_records(vec)
        if r.direction == "c2s" and r.content_type == ContentType.APPLICATION_DATA
    )
    data = bytearray.fromhex(vec["datagrams"][app.datagram]["hex"])
    [span], _ = split_datagram(bytes(data))
    assert span.length == len(data)
    assert not isinstance(cipher.open(bytes(data), ReplayWindow(64)), OpenError)
    data[-1] ^= 1
    assert cipher.open(bytes(data), ReplayWindow(64)) == OpenError.AUTH
    with pytest.raises(AssertionError, match="did not open"):
        vec["datagrams"][app.datagram]["hex"] = data.hex()
        open_records(vec)


def test_wrong_secret_or_transcript_is_caught() -> None:
    vec = load("basic")
    flow = conversation("basic").flows[0]
    secrets = keylog_secrets(vec)
    random = flow.client_random
    server_finished = next(m for d, m in flow.handshake if d == "s2c" and isinstance(m, Finished))
    # the transcript through CertificateVerify and the server's secret give its Finished;
    # the client's secret does not
    transcript = Transcript("sha256")
    for _, m in flow.handshake[:-2]:
        transcript.add(transcript_bytes(handshake_type(m), encode_handshake_body(m)))
    right = secrets[(random, "SERVER_HANDSHAKE_TRAFFIC_SECRET")]
    assert finished_verify_data("sha256", right, transcript.digest()) == (
        server_finished.verify_data
    )
    wrong = secrets[(random, "CLIENT_HANDSHAKE_TRAFFIC_SECRET")]
    assert finished_verify_data("sha256", wrong, transcript.digest()) != (
        server_finished.verify_data
    )
    # the CertificateVerify covers the transcript through Certificate, as a server
    cv = next(m for d, m in flow.handshake if isinstance(m, CertificateVerify))
    through_certificate = Transcript("sha256")
    for _, m in flow.handshake[:4]:
        through_certificate.add(transcript_bytes(handshake_type(m), encode_handshake_body(m)))
    digest = through_certificate.digest()
    leaf = flow.leaf["s2c"]
    content = crypto.certificate_verify_content(True, digest)
    crypto.verify_signature(leaf, cv.algorithm, cv.signature, content)
    with pytest.raises(DecryptError):
        crypto.verify_signature(
            leaf, cv.algorithm, cv.signature, crypto.certificate_verify_content(False, digest)
        )
    with pytest.raises(DecryptError):
        crypto.verify_signature(
            leaf,
            cv.algorithm,
            cv.signature,
            crypto.certificate_verify_content(True, transcript.digest()),
        )
