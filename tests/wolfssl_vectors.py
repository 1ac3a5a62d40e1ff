"""The recorded wolfSSL 5.9.2 DTLS 1.3 conversations, opened with this library's record layer.

Vectors: tests/vectors/wolfssl/<scenario>.json (format in interop/wolfssl/README.md). Each
holds every datagram both ways and the client's NSS key log. `open_records()` splits every
datagram with `dtls.record.split_datagram` and opens every encrypted record with
`dtls.record.RecordCipher` (keys from `derive_traffic_keys`, the epoch-4 secret from
`next_traffic_secret`), reconstructing full sequence numbers against one
`dtls.record.ReplayWindow` per flow, direction and epoch — the engine's own hot path, so
a vector that opens here is one the engine opens.

The cipher suite and connection IDs each flow uses come from its (plaintext) hellos,
parsed with `dtls.messages` before any record is opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dtls.iana import ContentType, HandshakeType
from dtls.messages import (
    ClientHello,
    ServerHello,
    decode_handshake_body,
    decode_handshake_fragments,
)
from dtls.record import (
    PLAINTEXT_HEADER_LEN,
    OpenedRecord,
    RecordCipher,
    RecordKind,
    ReplayWindow,
    next_traffic_secret,
    split_datagram,
)
from dtls.reliability import HandshakeReassembler

VECTORS = Path(__file__).parent / "vectors" / "wolfssl"
CREDS = VECTORS / "creds"
SCENARIOS = sorted(p.stem for p in VECTORS.glob("*.json"))

# RFC 9147 §4.2.3 / README "Epochs": the low two epoch bits of a unified header and the
# epoch they stand for in these conversations (none goes past epoch 4).
EPOCH_FROM_BITS = {1: 1, 2: 2, 3: 3, 0: 4}
SECRET_LABELS = {2: "HANDSHAKE_TRAFFIC_SECRET", 3: "TRAFFIC_SECRET_0"}
# the message names of the vectors' "decoded" records
TYPE_NAMES = {
    "client_hello": HandshakeType.CLIENT_HELLO,
    "server_hello": HandshakeType.SERVER_HELLO,
    "hello_retry_request": HandshakeType.SERVER_HELLO,
    "encrypted_extensions": HandshakeType.ENCRYPTED_EXTENSIONS,
    "certificate_request": HandshakeType.CERTIFICATE_REQUEST,
    "certificate": HandshakeType.CERTIFICATE,
    "certificate_verify": HandshakeType.CERTIFICATE_VERIFY,
    "finished": HandshakeType.FINISHED,
    "new_session_ticket": HandshakeType.NEW_SESSION_TICKET,
    "key_update": HandshakeType.KEY_UPDATE,
}


@cache
def _load(name: str) -> str:
    return (VECTORS / f"{name}.json").read_text()


def load(name: str) -> dict[str, Any]:
    """A fresh copy of the parsed vector (callers may modify it)."""
    return json.loads(_load(name))  # type: ignore[no-any-return]


def keylog_secrets(vec: dict[str, Any]) -> dict[tuple[str, str], bytes]:
    """(client_random hex, label) -> secret, from the client's and the server's key log."""
    lines = list(vec["keylog"]) + list(vec.get("keylog_server_side") or [])
    out: dict[tuple[str, str], bytes] = {}
    for line in lines:
        label, random, secret = line.split()
        value = bytes.fromhex(secret)
        assert out.setdefault((random, label), value) == value, "key logs disagree"
    return out


@dataclass(frozen=True)
class FlowHellos:
    """What a flow's plaintext hellos say about its records."""

    client_random: bytes
    cipher_suite: int
    client_cid: bytes | None  # the CID the client receives (in s2c records)
    server_cid: bytes | None  # the CID the server receives (in c2s records)

    def cid_for(self, direction: str) -> bytes:
        cid = self.server_cid if direction == "c2s" else self.client_cid
        # RFC 9146 §3: a CID is used only when both hellos carry the extension
        if self.client_cid is None or self.server_cid is None:
            return b""
        return cid or b""


def _plaintext_handshake(vec: dict[str, Any]) -> Iterator[tuple[int, str, bytes]]:
    for dgram in vec["datagrams"]:
        if dgram.get("dropped"):
            continue
        data = bytes.fromhex(dgram["hex"])
        spans, _ = split_datagram(data, 0)  # CIDs are not known yet: plaintext only
        for span in spans:
            if span.kind != RecordKind.PLAINTEXT:
                break  # a ciphertext record may carry a CID we cannot yet skip
            if span.first_byte == ContentType.HANDSHAKE and span.epoch == 0:
                payload = data[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length]
                yield dgram["flow"], dgram["dir"], payload


def flow_hellos(vec: dict[str, Any]) -> dict[int, FlowHellos]:
    """Each flow's client random, selected suite and connection IDs, from its last
    ClientHello and its ServerHello (not a HelloRetryRequest)."""
    reassemblers: dict[tuple[int, str], HandshakeReassembler] = {}
    client_hellos: dict[int, ClientHello] = {}
    server_hellos: dict[int, ServerHello] = {}
    for flow, direction, payload in _plaintext_handshake(vec):
        ra = reassemblers.setdefault((flow, direction), HandshakeReassembler(1 << 16, 1 << 18))
        for fragment in decode_handshake_fragments(payload):
            ra.add(fragment, 0)
        while (message := ra.pop()) is not None:
            msg = decode_handshake_body(message.msg_type, message.body)
            if message.msg_type == HandshakeType.CLIENT_HELLO:
                assert isinstance(msg, ClientHello)
                client_hellos[flow] = msg
            elif isinstance(msg, ServerHello) and not msg.is_hello_retry_request:
                server_hellos[flow] = msg
    out = {}
    for flow, sh in server_hellos.items():
        ch = client_hellos[flow]
        out[flow] = FlowHellos(ch.random, sh.cipher_suite, ch.connection_id, sh.connection_id)
    return out


@dataclass(frozen=True)
class Record:
    """One record as this library's record layer opened it."""

    datagram: int  # index in vec["datagrams"]
    direction: str  # "c2s" or "s2c"
    flow: int
    kind: RecordKind
    epoch: int  # full epoch (reconstructed from the low bits for ciphertexts)
    seq: int  # full sequence number (reconstructed for ciphertexts, RFC 9147 §4.2.2)
    content_type: int
    payload: bytes
    cid: bytes = b""


class Keys:
    """Traffic secrets from the key log, and one opener per flow, direction and epoch."""

    def __init__(self, vec: dict[str, Any], hellos: dict[int, FlowHellos]) -> None:
        self.secrets = keylog_secrets(vec)
        self.hellos = hellos
        self._openers: dict[tuple[int, str, int], tuple[RecordCipher, ReplayWindow]] = {}

    def secret(self, flow: int, direction: str, epoch: int) -> bytes:
        """The traffic secret of an epoch (RFC 9147 §6.1: 1 early, 2 handshake, 3+
        application; epoch N+1 is "traffic upd" of epoch N, RFC 9846 §7.2)."""
        hello = self.hellos[flow]
        random = hello.client_random.hex()
        side = "CLIENT" if direction == "c2s" else "SERVER"
        if epoch == 1:
            assert direction == "c2s", "only the client sends 0-RTT"
            return self.secrets[(random, "CLIENT_EARLY_TRAFFIC_SECRET")]
        if epoch in SECRET_LABELS:
            return self.secrets[(random, f"{side}_{SECRET_LABELS[epoch]}")]
        return next_traffic_secret(hello.cipher_suite, self.secret(flow, direction, epoch - 1))

    def opener(self, flow: int, direction: str, epoch: int) -> tuple[RecordCipher, ReplayWindow]:
        key = (flow, direction, epoch)
        if key not in self._openers:
            suite = self.hellos[flow].cipher_suite
            self._openers[key] = (
                RecordCipher.from_secret(suite, self.secret(flow, direction, epoch)),
                ReplayWindow(128),
            )
        return self._openers[key]


def open_records(vec: dict[str, Any]) -> list[Record]:
    """Every record of every delivered datagram, in wire order, opened with the record
    layer. AssertionError if any datagram has bytes that are not records, or any record
    fails to open (bad tag, replay, malformed)."""
    hellos = flow_hellos(vec)
    keys = Keys(vec, hellos)
    out: list[Record] = []
    for index, dgram in enumerate(vec["datagrams"]):
        if dgram.get("dropped"):
            continue
        data = bytes.fromhex(dgram["hex"])
        flow, direction = dgram["flow"], dgram["dir"]
        cid = hellos[flow].cid_for(direction) if flow in hellos else b""
        spans, dropped = split_datagram(data, len(cid))
        assert dropped == 0, f"datagram {index}: {dropped} bytes are not records"
        for span in spans:
            record = data[span.offset : span.offset + span.length]
            if span.kind == RecordKind.PLAINTEXT:
                out.append(
                    Record(
                        index,
                        direction,
                        flow,
                        span.kind,
                        span.epoch,
                        span.seq,
                        span.first_byte,
                        record[PLAINTEXT_HEADER_LEN:],
                    )
                )
                continue
            epoch = EPOCH_FROM_BITS[span.epoch]
            cipher, window = keys.opener(flow, direction, epoch)
            opened = cipher.open(record, window, cid_len=len(cid))
            assert isinstance(opened, OpenedRecord), (
                f"datagram {index}: epoch {epoch} record did not open: {opened!r}"
            )
            out.append(
                Record(
                    index,
                    direction,
                    flow,
                    span.kind,
                    epoch,
                    opened.seq,
                    opened.content_type,
                    bytes(opened.plaintext),
                    record[1 : 1 + len(cid)],
                )
            )
    return out
