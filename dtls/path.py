"""Connection IDs over time and the return routability check (RFC 9147 §9,
draft-ietf-tls-dtls-rrc).

`ConnectionIds` keeps the CIDs we gave the peer and the ones it gave us. `PathChallenge`
is one basic return routability check: a record from a new address is processed, but
the connection moves there only when that address echoes an unpredictable cookie.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from .errors import (
    ConnectionStateError,
    DecodeError,
    TooManyCidsRequested,
    UnexpectedMessage,
)
from .events import (
    ConnectionIdsIssued,
    ConnectionIdsRetired,
    Event,
)
from .handshake import (
    Address,
    FlightKind,
    HandshakeState,
)
from .messages import (
    HandshakeMessage,
    NewConnectionId,
    RequestConnectionId,
    decode_handshake_body,
)
from .record_layer import InboundRecord, RecordLayer
from .record_py import Buffer
from .reliability import ReceivedMessage, RetransmitTimer

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

    __slots__ = (
        "_make", "in_use", "local", "peer", "request_outstanding", "requests_received",
        "spare_peer",
    )  # fmt: skip

    def __init__(self, local: bytes | None, make: Callable[[], bytes] | None) -> None:
        self.local: list[bytes] = [] if local is None else [local]
        self.peer: bytes | None = None
        self.spare_peer: list[bytes] = []
        self._make = make
        self.request_outstanding = False  # our RequestConnectionId awaits its answer
        self.in_use: bytes = local or b""  # the CID the peer's records carry now
        self.requests_received = 0

    def new_local(self, count: int) -> list[bytes]:
        """`count` new CIDs of our CID's length (the length parses our records)."""
        length = len(self.local[0])
        cids: list[bytes] = []
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

    def retire_before(self, cid: bytes) -> list[bytes]:
        """The peer uses `cid`: CIDs issued before it are superseded (RFC 9147 §9 has the
        peer use them in order) and retired. Returns the retired ones."""
        self.in_use = cid
        if cid not in self.local:
            return []
        index = self.local.index(cid)
        retired, self.local = self.local[:index], self.local[index:]
        return retired

    def next_peer(self) -> bytes | None:
        """Move to the peer's next spare CID (for a new path, RFC 9147 §9)."""
        if self.spare_peer:
            self.peer = self.spare_peer.pop(0)
            return self.peer
        return None


class CidConnection(Protocol):
    """What connection-ID updates and path validation may ask of their connection: its
    state, post-handshake flights and ACKs (RFC 9147 §5.8.4), records (§4), events."""

    _records: RecordLayer
    _rto: RetransmitTimer
    _app_send_epoch: int

    @property
    def state(self) -> HandshakeState: ...
    def _awaiting_ack(self, kind: FlightKind) -> bool: ...
    def _message_seq_room(self, count: int) -> bool: ...
    def _send_post_handshake(self, kind: FlightKind, *messages: HandshakeMessage) -> None: ...
    def _queue_event(self, event: Event) -> None: ...
    def _path_validated(self, addr: Address) -> None: ...


class ConnectionIdUpdates:
    """NewConnectionId, RequestConnectionId and address changes of one connection
    (RFC 9147 §9, draft-ietf-tls-dtls-rrc). It owns the CIDs, whether the return
    routability check was negotiated, the check under way and the probes it sends."""

    __slots__ = ("_conn", "challenge", "cids", "probes", "rrc")

    def __init__(self, connection: CidConnection, cids: ConnectionIds) -> None:
        self._conn = connection
        self.cids = cids
        self.rrc = False  # return routability check negotiated (draft-ietf-tls-dtls-rrc)
        self.challenge: PathChallenge | None = None
        #: RRC records to send, each to its own address (not the peer's)
        self.probes: list[tuple[bytes, Address]] = []

    def issue_connection_ids(self, count: int, *, immediate: bool = False) -> list[bytes]:
        """Give the peer `count` new CIDs to send to us with (RFC 9147 §9 NewConnectionId);
        all our CIDs stay valid. With `immediate` the peer switches to the first."""
        self._check_cids_negotiated()
        if not self.local_cid:
            raise ConnectionStateError("we receive a zero-length CID: nothing to issue")
        if self._conn._awaiting_ack(FlightKind.NEW_CONNECTION_ID):
            raise ConnectionStateError("a NewConnectionId is still unacknowledged")
        cids = self.cids.new_local(count)
        usage = 0 if immediate else 1  # cid_immediate / cid_spare
        self._conn._send_post_handshake(FlightKind.NEW_CONNECTION_ID, NewConnectionId(cids, usage))
        self._conn._queue_event(ConnectionIdsIssued(tuple(cids)))
        return cids

    def request_connection_ids(self, count: int) -> None:
        """Ask the peer for `count` spare CIDs (RFC 9147 §9 RequestConnectionId)."""
        self._check_cids_negotiated()
        if not self.peer_cid:
            raise ConnectionStateError("the peer receives a zero-length CID")
        if self.cids.request_outstanding:
            raise ConnectionStateError("an earlier RequestConnectionId is unfulfilled")
        self.cids.request_outstanding = True
        self._conn._send_post_handshake(
            FlightKind.REQUEST_CONNECTION_ID, RequestConnectionId(count)
        )

    def use_next_peer_cid(self) -> bytes | None:
        """Send with the peer's next spare CID, e.g. after our address changed (§9)."""
        cid = self.cids.next_peer()
        if cid is not None:
            self._conn._records.send_cid = cid or None
        return cid

    @property
    def local_cid(self) -> bytes | None:
        """The connection ID we receive with (RFC 9147 §9), None if not negotiated."""
        return self.cids.local[0] if self.cids.local else None

    @property
    def local_cids(self) -> tuple[bytes, ...]:
        """Every CID we gave the peer; records may carry any of them."""
        return tuple(self.cids.local)

    @property
    def peer_cid(self) -> bytes | None:
        """The connection ID our records to the peer carry."""
        return self.cids.peer

    def negotiated(self, peer_cid: bytes | None, rrc: bool) -> None:
        """The hellos' outcome (RFC 9146 §3). Both offered connection_id: from epoch 2 on,
        records to the peer carry its CID and records to us carry ours (possibly empty);
        a zero-length CID is not sent (RFC 9147 §9). Else records carry no CID."""
        self.rrc = rrc
        if peer_cid is None:
            self.cids.local = []
            return
        self.cids.local = self.cids.local[:1] or [b""]
        self.cids.peer = peer_cid
        self._conn._records.send_cid = peer_cid or None
        self._conn._records.receive_cid_len = len(self.local_cid or b"")

    def _check_cids_negotiated(self) -> None:
        if self._conn.state is not HandshakeState.CONNECTED:
            raise ConnectionStateError("connection IDs change only after the handshake")
        if self.peer_cid is None:
            raise ConnectionStateError("connection IDs were not negotiated")

    def receive_new_connection_id(self, message: ReceivedMessage, now: float) -> None:
        update = decode_handshake_body(message.msg_type, message.body)
        assert isinstance(update, NewConnectionId)
        if self.peer_cid is None or not self.peer_cid:
            raise UnexpectedMessage("NewConnectionId without a CID to replace")  # §9
        self.cids.add_peer(update.cids, immediate=update.usage == 0)
        self._conn._records.send_cid = self.cids.peer or None
        self.cids.request_outstanding = False

    def receive_request_connection_id(self, message: ReceivedMessage, now: float) -> None:
        request = decode_handshake_body(message.msg_type, message.body)
        assert isinstance(request, RequestConnectionId)
        if not self.local_cid:
            raise UnexpectedMessage("RequestConnectionId while we receive no CID")  # §9
        self.cids.requests_received += 1
        if self.cids.requests_received > 16:
            raise TooManyCidsRequested("too many RequestConnectionId messages")
        conn = self._conn
        if not conn._awaiting_ack(FlightKind.NEW_CONNECTION_ID) and conn._message_seq_room(1):
            self.issue_connection_ids(min(request.num_cids, 4))

    def peer_switched_cid(self, cid: bytes) -> None:
        """The peer's records carry one of our newer CIDs: the older ones retire."""
        retired = self.cids.retire_before(cid)
        if retired:
            self._conn._queue_event(ConnectionIdsRetired(tuple(retired)))

    def on_new_address(self, addr: Address, data: Buffer, now: float) -> None:
        """Authentic records from another address: the connection moves there only after
        a return routability check answers from it (draft-ietf-tls-dtls-rrc §5.1)."""
        if not self.rrc or self._conn.state is not HandshakeState.CONNECTED:
            return
        challenge = self.challenge
        if challenge is None or challenge.address != addr:
            challenge = self.challenge = PathChallenge(addr)
            challenge.received = len(data)
            self.send_path_challenge(challenge, now)

    def send_path_challenge(self, challenge: PathChallenge, now: float) -> None:
        if challenge.sent >= MAX_CHALLENGES:
            self.challenge = None  # the new address never answered: stay
            return
        challenge.sent += 1
        challenge.deadline = now + max(self._conn._rto.value, 1.0)  # the draft's T
        message = encode_rrc(RrcMessageType.PATH_CHALLENGE, challenge.cookie)
        size = self._conn._records.overhead(self._conn._app_send_epoch) + len(message)
        if challenge.bytes_sent + size > 3 * challenge.received:
            return  # never more than 3x what the address sent us (the RRC draft §6)
        record, _ = self._conn._records.seal(self._conn._app_send_epoch, RRC_CONTENT_TYPE, message)
        challenge.bytes_sent += len(record)
        self.probes.append((record, challenge.address))

    def receive_rrc(self, record: InboundRecord, addr: Address, now: float) -> None:
        try:
            msg_type, cookie = decode_rrc(record.payload)
        except DecodeError:
            return
        if msg_type == RrcMessageType.PATH_CHALLENGE:
            # Answer at once, to the address the challenge came from (§5.4).
            answer = encode_rrc(RrcMessageType.PATH_RESPONSE, cookie)
            sealed, _ = self._conn._records.seal(
                self._conn._app_send_epoch, RRC_CONTENT_TYPE, answer
            )
            self.probes.append((sealed, addr))
            return
        challenge = self.challenge
        if (
            msg_type == RrcMessageType.PATH_RESPONSE
            and challenge is not None
            and addr == challenge.address
            and hmac.compare_digest(cookie, challenge.cookie)
        ):
            self.challenge = None
            self._conn._path_validated(addr)
