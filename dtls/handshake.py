"""Definitions the client and server handshake state machines share (RFC 9846 Appendix A):
states, the kinds of flights a connection keeps, and a PSK under negotiation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import DecodeError
from .iana import CipherSuite
from .session import Session, TicketContents

MAX_PLAINTEXT = 1 << 14  # RFC 9846 §5.1
# Certificate types (RFC 7250 §3)
X509 = 0
RAW_PUBLIC_KEY = 2

Address = Any


class HandshakeState(Enum):
    """RFC 9846 Appendix A, client and server."""

    START = "START"
    WAIT_SH = "WAIT_SH"
    WAIT_EE = "WAIT_EE"
    WAIT_CERT_CR = "WAIT_CERT_CR"
    WAIT_CERT = "WAIT_CERT"
    WAIT_CV = "WAIT_CV"
    WAIT_FINISHED = "WAIT_FINISHED"
    CONNECTED = "CONNECTED"
    CLOSED = "CLOSED"


class FlightKind(Enum):
    HANDSHAKE = "handshake"
    KEY_UPDATE = "key_update"
    NEW_SESSION_TICKET = "new_session_ticket"
    NEW_CONNECTION_ID = "new_connection_id"
    REQUEST_CONNECTION_ID = "request_connection_id"


@dataclass
class PskCandidate:
    """A PSK offered (client) or accepted (server), RFC 9846 §4.2.11."""

    identity: bytes
    key: bytes
    hash_name: str
    external: bool
    obfuscated_age: int = 0
    session: Session | None = None
    ticket: TicketContents | None = None


SUITE_FOR_HASH = {
    "sha256": CipherSuite.TLS_AES_128_GCM_SHA256,
    "sha384": CipherSuite.TLS_AES_256_GCM_SHA384,
}


def binder_key(psk: PskCandidate, crypto: Any) -> bytes:
    schedule = crypto.key_schedule(SUITE_FOR_HASH[psk.hash_name])
    schedule.early_secret(psk.key)
    return schedule.binder_key(psk.external)


def certificate_types(data: bytes) -> list[int]:
    """CertificateType types<1..2^8-1> of a ClientHello (RFC 7250 §4.1)."""
    if len(data) < 2 or data[0] != len(data) - 1:
        raise DecodeError("malformed certificate type list")
    return list(data[1:])
