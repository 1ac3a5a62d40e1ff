"""The record layer against real DTLS 1.3 conversations recorded from wolfSSL 5.9.2.

For every transcript in tests/vectors/wolfssl: derive each epoch's keys from the key log,
split every datagram, open every encrypted record with the receiver's replay window, check
record numbers and content types against the independent decoder's view (`decoded`),
recover exactly the application data, and re-seal every record to the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dtls.iana import CipherSuite, ContentType, HandshakeType
from dtls.record import (
    PLAINTEXT_HEADER_LEN,
    OpenedRecord,
    RecordCipher,
    RecordKind,
    ReplayWindow,
    next_traffic_secret,
    seal_plaintext,
    split_datagram,
)

VECTORS = sorted((Path(__file__).parent / "vectors" / "wolfssl").glob("*.json"))
TYPES = {
    "change_cipher_spec": ContentType.CHANGE_CIPHER_SPEC,
    "alert": ContentType.ALERT,
    "handshake": ContentType.HANDSHAKE,
    "application_data": ContentType.APPLICATION_DATA,
    "ack": ContentType.ACK,
}
# RFC 9147 §6.1: 0 plaintext, 1 0-RTT, 2 handshake, 3 traffic_0, 4 after one KeyUpdate;
# these transcripts never go past epoch 4, so the two header bits name the epoch.
EPOCH_FROM_BITS = {1: 1, 2: 2, 3: 3, 0: 4}
SIDE = {"c2s": "CLIENT", "s2c": "SERVER"}
DTLS_HANDSHAKE_HEADER = 12  # RFC 9147 §5.2: msg_type, length, message_seq, fragment offset/length


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def keylog(lines: list[str]) -> dict[str, dict[str, bytes]]:
    """NSS key log: {client_random: {label: secret}}."""
    out: dict[str, dict[str, bytes]] = {}
    for line in lines:
        label, random, secret = line.split()
        out.setdefault(random.lower(), {})[label] = bytes.fromhex(secret)
    return out


def handshake_body(record: bytes) -> tuple[int, bytes]:
    """(msg_type, fragment) of the first handshake message in a DTLSPlaintext record."""
    body = record[PLAINTEXT_HEADER_LEN:]
    frag_len = int.from_bytes(body[9:12], "big")
    return body[0], body[DTLS_HANDSHAKE_HEADER : DTLS_HANDSHAKE_HEADER + frag_len]


def parse_hello(fragment: bytes) -> tuple[bytes, int | None]:
    """(random, cipher_suite) of a ClientHello or ServerHello (RFC 9147 §5.3, §5.4)."""
    random = fragment[2:34]
    sid_len = fragment[34]
    pos = 35 + sid_len
    if len(fragment) >= pos + 2:
        return random, int.from_bytes(fragment[pos : pos + 2], "big")
    return random, None


def unified_header_len(first: int, cid_len: int) -> int:
    """RFC 9147 §4, Figure 3."""
    return (
        1
        + (cid_len if first & 0x10 else 0)
        + (2 if first & 0x08 else 1)
        + (2 if first & 0x04 else 0)
    )


@dataclass
class Flow:
    """One client source port: its suite, secrets, CID lengths and receive state."""

    suite: int
    secrets: dict[str, bytes]
    cid_len: dict[str, int]
    ciphers: dict[tuple[str, int], RecordCipher] = field(default_factory=dict)
    windows: dict[tuple[str, int], ReplayWindow] = field(default_factory=dict)

    def secret(self, direction: str, epoch: int) -> bytes:
        side = SIDE[direction]
        if epoch == 1:
            return self.secrets["CLIENT_EARLY_TRAFFIC_SECRET"]
        if epoch == 2:
            return self.secrets[f"{side}_HANDSHAKE_TRAFFIC_SECRET"]
        secret = self.secrets[f"{side}_TRAFFIC_SECRET_0"]
        for _ in range(epoch - 3):  # RFC 9846 §7.2
            secret = next_traffic_secret(self.suite, secret)
        return secret

    def cipher(self, direction: str, epoch: int) -> RecordCipher:
        key = (direction, epoch)
        if key not in self.ciphers:
            self.ciphers[key] = RecordCipher.from_secret(self.suite, self.secret(direction, epoch))
            self.windows[key] = ReplayWindow(64)
        return self.ciphers[key]


def flows_of(doc: dict[str, Any]) -> dict[int, Flow]:
    secrets = keylog(doc["keylog"])
    flows: dict[int, Flow] = {}
    hellos: dict[tuple[int, str], tuple[bytes, int | None]] = {}
    for dgram in doc["datagrams"]:
        data = bytes.fromhex(dgram["hex"])
        spans, _ = split_datagram(data)
        for span in spans:
            if span.kind != RecordKind.PLAINTEXT or span.first_byte != ContentType.HANDSHAKE:
                continue
            msg_type, fragment = handshake_body(data[span.offset : span.offset + span.length])
            key = (dgram["flow"], dgram["dir"])
            if msg_type in (HandshakeType.CLIENT_HELLO, HandshakeType.SERVER_HELLO):
                hellos.setdefault(key, parse_hello(fragment))
    for info in doc["decoded"]["flows"]:
        n = info["flow"]
        client_random, _ = hellos[(n, "c2s")]
        _, suite = hellos[(n, "s2c")]  # from the ServerHello (or the HRR: the same suite)
        assert client_random.hex() == info["client_random"]
        assert suite == CipherSuite[info["cipher_suite"]]
        flows[n] = Flow(
            suite=suite,
            secrets=secrets[client_random.hex()],
            # c2s records carry the CID the server receives, s2c the client's
            cid_len={"c2s": info["cid_len_c2s"], "s2c": info["cid_len_s2c"]},
        )
    return flows


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_wolfssl_transcript(path: Path) -> None:
    doc = load(path)
    flows = flows_of(doc)
    expected: dict[int, list[dict[str, Any]]] = {}
    for rec in doc["decoded"]["records"]:
        expected.setdefault(rec["datagram"], []).append(rec)

    app_data: list[tuple[str, bytes]] = []
    opened = resealed = 0
    for index, dgram in enumerate(doc["datagrams"]):
        flow = flows[dgram["flow"]]
        direction = dgram["dir"]
        data = bytes.fromhex(dgram["hex"])
        spans, dropped = split_datagram(data, flow.cid_len[direction])
        assert dropped == 0
        if dgram.get("dropped"):
            # Lost on the way (the relay dropped it): the receiver never saw it, so it
            # must not touch the replay window; it still deprotects.
            for span in spans:
                if span.kind == RecordKind.CIPHERTEXT:
                    epoch = EPOCH_FROM_BITS[span.epoch]
                    record = data[span.offset : span.offset + span.length]
                    sender = RecordCipher.from_secret(flow.suite, flow.secret(direction, epoch))
                    result = sender.open(record, None, cid_len=flow.cid_len[direction])
                    assert isinstance(result, OpenedRecord)
            continue
        records = expected[index]
        assert len(spans) == len(records), f"datagram {index}"
        for span, rec in zip(spans, records, strict=True):
            record = data[span.offset : span.offset + span.length]
            if rec["format"] == "plaintext":
                assert span.kind == RecordKind.PLAINTEXT
                assert (span.epoch, span.seq, span.first_byte) == (
                    rec["epoch"],
                    rec["seq"],
                    TYPES[rec["type"]],
                )
                payload = record[PLAINTEXT_HEADER_LEN:]
                assert len(payload) == rec["len"]
                # wolfSSL may send {254, 255} in the first ClientHello; we always write 253
                resealed_plain = seal_plaintext(span.first_byte, span.seq, payload, span.epoch)
                assert resealed_plain[3:] == record[3:]
                continue

            assert span.kind == RecordKind.CIPHERTEXT
            epoch = EPOCH_FROM_BITS[span.epoch]
            cipher = flow.cipher(direction, epoch)
            window = flow.windows[(direction, epoch)]
            cid_len = flow.cid_len[direction]
            result = cipher.open(record, window, cid_len=cid_len)
            assert isinstance(result, OpenedRecord), f"datagram {index}: {result!r}"
            opened += 1
            assert epoch == rec["epoch"]
            assert result.seq == rec["seq"]
            assert result.content_type == TYPES[rec["type"]]
            assert (16 if span.first_byte & 0x08 else 8) == rec["seq_bits"]
            assert bool(span.first_byte & 0x04) == rec["length_present"]
            plaintext = bytes(result.plaintext)
            if result.content_type == ContentType.APPLICATION_DATA:
                app_data.append((direction, plaintext))
            # A replay of the same record is refused by the receiver's window.
            assert cipher.open(record, window, cid_len=cid_len) == -2

            # Re-seal with the sender's keys, same epoch, number, header form, padding.
            first = span.first_byte
            header_len = unified_header_len(first, cid_len)
            padding = len(record) - header_len - cipher.tag_len - len(plaintext) - 1
            cid = record[1 : 1 + cid_len] if first & 0x10 else None
            if cid is not None:
                assert cid.hex() == rec["cid"]
            sender = RecordCipher.from_secret(flow.suite, flow.secret(direction, epoch))
            again = sender.seal(
                epoch,
                result.seq,
                result.content_type,
                plaintext,
                cid=cid,
                seq16=bool(first & 0x08),
                with_length=bool(first & 0x04),
                padding=padding,
            )
            assert again == record, f"datagram {index}: re-sealed record differs"
            resealed += 1

    assert opened > 0 and resealed == opened
    wanted = [(e["dir"], bytes.fromhex(e["hex"])) for e in doc["expected_app_data"]]
    assert app_data == wanted


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_wolfssl_records_survive_damage(path: Path) -> None:
    """Every truncation of the first encrypted record of each direction, and flips of
    bits across it, are refused with the right code (RFC 9147 §4.5.2) and never crash."""
    doc = load(path)
    flows = flows_of(doc)
    seen: set[tuple[int, str]] = set()
    for dgram in doc["datagrams"]:
        flow = flows[dgram["flow"]]
        direction = dgram["dir"]
        key = (dgram["flow"], direction)
        if key in seen or dgram.get("dropped"):
            continue
        data = bytes.fromhex(dgram["hex"])
        cid_len = flow.cid_len[direction]
        spans, _ = split_datagram(data, cid_len)
        span = next((s for s in spans if s.kind == RecordKind.CIPHERTEXT), None)
        if span is None:
            continue
        seen.add(key)
        record = data[span.offset : span.offset + span.length]
        cipher = RecordCipher.from_secret(
            flow.suite, flow.secret(direction, EPOCH_FROM_BITS[span.epoch])
        )
        assert isinstance(cipher.open(record, None, cid_len=cid_len), OpenedRecord)
        for cut in range(len(record)):
            # wolfSSL sets L: a shorter record has a length beyond the datagram
            assert cipher.open(record[:cut], None, cid_len=cid_len) == -1, cut
        for bit in range(len(record) * 8):
            damaged = bytearray(record)
            damaged[bit // 8] ^= 1 << (bit % 8)
            result = cipher.open(bytes(damaged), None, cid_len=cid_len)
            assert result == damage_verdict(bytes(damaged), cid_len), bit


def damage_verdict(record: bytes, cid_len: int) -> int:
    """What a damaged record must give: MALFORMED (-1) when its header no longer parses
    (RFC 9147 §4: 001 bits, C bit vs the CID we expect, length inside the record, at least
    16 bytes of ciphertext), else AUTH (-3): the AEAD covers everything else."""
    first = record[0]
    if first & 0xE0 != 0x20 or bool(first & 0x10) != (cid_len > 0):
        return -1
    header_len = unified_header_len(first, cid_len)
    if len(record) < header_len:
        return -1
    ct_len = len(record) - header_len
    if first & 0x04:
        length = int.from_bytes(record[header_len - 2 : header_len], "big")
        if length > ct_len:
            return -1
        ct_len = length
    return -1 if ct_len < 16 else -3
