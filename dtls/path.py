"""Connection IDs over time and the return routability check (RFC 9147 §9,
draft-ietf-tls-dtls-rrc).

`ConnectionIds` keeps the CIDs we gave the peer and the ones it gave us. `PathChallenge`
is one basic return routability check: a record from a new address is processed, but
the connection moves there only when that address echoes an unpredictable cookie.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .errors import DecodeError

# draft-ietf-tls-dtls-rrc leaves both code points to IANA (TBD1, TBD2); these are the
# values its implementations use meanwhile.
RRC_CONTENT_TYPE = 27
RRC_EXTENSION = 61
# At most this many spare CIDs from the peer are kept (RFC 9147 §9 allows discarding).
MAX_SPARE_CIDS = 8
# Challenges sent before giving up on a new address (the draft's "backup" challenges).
MAX_CHALLENGES = 3


class RrcMessageType(IntEnum):
    PATH_CHALLENGE = 0
    PATH_RESPONSE = 1
    PATH_DROP = 2


def encode_rrc(msg_type: int, cookie: bytes) -> bytes:
    """A return_routability_check message: msg_type and an 8-byte cookie."""
    if len(cookie) != 8:
        raise ValueError("an RRC cookie is 8 bytes")
    return bytes([msg_type]) + cookie


def decode_rrc(data: bytes) -> tuple[int, bytes]:
    if len(data) != 9:
        raise DecodeError("return_routability_check message of the wrong length")
    return data[0], bytes(data[1:])


@dataclass
class PathChallenge:
    """A basic return routability check of `address` (draft-ietf-tls-dtls-rrc §5.1)."""

    address: Any
    cookie: bytes = field(default_factory=lambda: os.urandom(8))
    deadline: float = 0.0
    sent: int = 0
    received: int = 0  # bytes of authentic datagrams from `address`
    bytes_sent: int = 0  # never more than 3x `received` (the RRC draft's anti-amplification)


class ConnectionIds:
    """The CIDs of one connection (RFC 9147 §9): what we receive with (all we issued
    remain valid) and what we send with (the peer's current CID, then its spares)."""

    def __init__(self, local: bytes | None, make: Callable[[], bytes] | None) -> None:
        self.local: list[bytes] = [] if local is None else [local]
        self.peer: bytes | None = None
        self.spare_peer: list[bytes] = []
        self._make = make
        self.request_outstanding = False  # our RequestConnectionId awaits its answer
        self.requests_received = 0

    def new_local(self, count: int) -> list[bytes]:
        """`count` new CIDs of our CID's length (the length parses our records)."""
        length = len(self.local[0])
        cids = []
        while len(cids) < count:
            cid = self._make() if self._make is not None else os.urandom(length)
            if len(cid) != length:
                raise ValueError("a CID generator must keep the negotiated length")
            if cid not in self.local and cid not in cids:
                cids.append(cid)
        self.local.extend(cids)
        return cids

    def add_peer(self, cids: list[bytes], immediate: bool) -> None:
        fresh = [c for c in cids if c != self.peer and c not in self.spare_peer]
        if immediate and fresh:
            self.peer = fresh.pop(0)
        self.spare_peer.extend(fresh)
        del self.spare_peer[MAX_SPARE_CIDS:]

    def next_peer(self) -> bytes | None:
        """Move to the peer's next spare CID (for a new path, RFC 9147 §9)."""
        if self.spare_peer:
            self.peer = self.spare_peer.pop(0)
            return self.peer
        return None
