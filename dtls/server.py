"""`ServerEndpoint`: many DTLS 1.3 connections behind one UDP socket, sans-I/O.

Like `Connection`, the endpoint takes datagrams and the time and gives datagrams, a timer
and events; a front-end (`dtls.aio`, `dtls.sync`, `dtls.sim`) owns the socket and the clock.

- Demultiplexing: a datagram whose first record carries a connection ID (RFC 9147 §9) is
  routed by it (the endpoint gives every connection its own CIDs, of one fixed length);
  any other datagram by the peer's address. A known CID from a new address reaches its
  connection, which moves there only after a return routability check
  (draft-ietf-tls-dtls-rrc); meanwhile the endpoint sends an unverified address at most
  three times what it received from it.
- No state for unproven addresses: a ClientHello from an address without a connection is
  answered by `respond_statelessly` (a cookie HelloRetryRequest, RFC 9147 §5.1), or
  refused with a fatal alert when the two sides cannot agree (RFC 9846 §4.1.1; rate
  limited per host, counted by reason), or dropped; a `Connection` is made only for a
  ClientHello the endpoint accepts.
- Limits: connections, handshakes in progress, new handshakes per second per host,
  handshake and idle timeouts. Closed, failed and expired connections are forgotten.
- Garbage is dropped and counted (RFC 9147 §4.5.2); nothing a peer sends raises.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import Context, CookieMode
from .connection import Connection
from .events import (
    ConnectionClosed,
    ConnectionIdsIssued,
    ConnectionIdsRetired,
    Event,
    HandshakeCompleted,
    PeerAddressChanged,
)
from .handshake import MAX_PLAINTEXT, HandshakeState
from .handshake_server import (
    Refusal,
    StatelessResponse,
    client_hello_record,
    respond_statelessly,
)
from .iana import AlertDescription
from .messages import DTLS_HANDSHAKE_HEADER_LEN, HandshakeFragment
from .record_py import Buffer
from .reliability import PartialMessage
from .stats import format_fields

logger = logging.getLogger("dtls.server")  # refusals, drops and removals; never a secret

__all__ = [
    "ConnectionAccepted",
    "ConnectionEvent",
    "ConnectionRemoved",
    "EndpointEvent",
    "EndpointStats",
    "HandshakeFailed",
    "ServerEndpoint",
    "close_error",
]

Address = Any
Route = Hashable

_HANDSHAKE = 22  # ContentType.handshake, the first byte of a DTLSPlaintext record
_CLIENT_HELLO = 1
# DTLSPlaintext header (13) + handshake header (12) + legacy_version (2): then the random
_RANDOM_OFFSET = 13 + 12 + 2
# Stateless replies waiting for `datagrams_to_send`, at most (the rest are dropped).
MAX_STATELESS_BACKLOG = 4096
# RFC 9147 §4: a unified header (001xxxxx) with the C bit (0x10): a CID follows the first byte
_CID_HEADER_MASK = 0xF0
_CID_HEADER = 0x30
# draft-ietf-tls-dtls-rrc §2: the anti-amplification limit, x bytes received
AMPLIFICATION_FACTOR = 3
# Unverified addresses tracked per connection (the oldest is forgotten: sends there stop).
MAX_UNVERIFIED_ADDRESSES = 4
# Tries of the CID generator for a CID no live connection uses.
_CID_ATTEMPTS = 64
# Stateless alerts (a refused ClientHello) per second to one host, and hosts remembered:
# an alert is smaller than the ClientHello it answers, and this bounds what a spoofed
# source can make us send to its victim.
REFUSALS_PER_HOST = 10.0
REFUSAL_HOSTS = 4096
# First ClientHellos arriving in fragments from addresses without a connection, held for
# reassembly (RFC 9147 §5.5) before the cookie: at most this many at once (one per
# address), this many bytes in all (the bytes received), for this many seconds; the
# oldest is evicted first. A ClientHello claiming more than fits in one record is not kept.
MAX_PARTIAL_CLIENT_HELLOS = 256
MAX_PARTIAL_CLIENT_HELLO_BYTES = 256 * 1024
PARTIAL_CLIENT_HELLO_LIFETIME = 2.0
MAX_FRAGMENTED_CLIENT_HELLO = MAX_PLAINTEXT - DTLS_HANDSHAKE_HEADER_LEN


# ---- events ----


@dataclass(frozen=True)
class EndpointEvent:
    """Base class of the events `ServerEndpoint.next_event()` returns."""


@dataclass(frozen=True)
class ConnectionAccepted(EndpointEvent):
    """A ClientHello was accepted and a `Connection` made for it; its handshake runs."""

    connection: Connection
    address: Address


@dataclass(frozen=True)
class ConnectionEvent(EndpointEvent):
    """An event of one connection (HandshakeCompleted, DataReceived, ...)."""

    connection: Connection
    event: Event


@dataclass(frozen=True)
class HandshakeFailed(EndpointEvent):
    """A handshake that got past the cookie failed (just before its `ConnectionRemoved`):
    `alert` is the fatal alert either side sent (RFC 9846 §6.2), None for a timeout;
    `reason` says what went wrong, `by_peer` whether the client sent the alert."""

    connection: Connection
    address: Address
    alert: AlertDescription | int | None
    reason: str
    by_peer: bool = False


@dataclass(frozen=True)
class ConnectionRemoved(EndpointEvent):
    """The endpoint forgot a connection: the last event about it."""

    connection: Connection
    reason: str  # "closed", "failed", "handshake timeout", "idle timeout", "replaced", "shutdown"


@dataclass(frozen=True)
class EndpointStats:
    """Counters since the endpoint was made, and the current population."""

    datagrams_received: int = 0
    bytes_received: int = 0
    datagrams_sent: int = 0
    bytes_sent: int = 0
    #: datagrams for no connection that were not an acceptable ClientHello
    garbage_dropped: int = 0
    #: stateless cookie HelloRetryRequests sent (RFC 9147 §5.1)
    cookies_sent: int = 0
    #: ClientHellos refused before the cookie with a fatal alert, by reason (see
    #: `refused`): not DTLS 1.3 (protocol_version), no cipher suite, group, certificate
    #: type or signature scheme in common (handshake_failure, insufficient_security,
    #: unsupported_certificate), a malformed one, a bad cookie (illegal_parameter)
    refused_protocol_version: int = 0
    refused_cipher_suite: int = 0
    refused_group: int = 0
    refused_authentication: int = 0
    refused_client_hello: int = 0
    refused_cookie: int = 0
    #: of those, the ones whose alert was not sent: over the per-host alert rate
    refusals_rate_limited: int = 0
    handshakes_started: int = 0
    handshakes_completed: int = 0
    handshakes_failed: int = 0
    handshakes_timed_out: int = 0
    #: established connections that ended (by either side, or an idle timeout)
    connections_closed: int = 0
    idle_timeouts: int = 0
    #: associations replaced by a new handshake from the same address (RFC 9147 §6)
    connections_replaced: int = 0
    #: ClientHellos dropped because max_connections / max_handshakes was reached
    refused_connection_limit: int = 0
    refused_handshake_limit: int = 0
    #: ClientHellos dropped by the per-host rate limit
    rate_limited: int = 0
    #: stateless replies dropped because `datagrams_to_send` was not called
    backlog_dropped: int = 0
    #: fragments of first ClientHellos held for reassembly before the cookie; partial
    #: ClientHellos evicted (over the budget, or a newer one from the address) or expired;
    #: ClientHellos reassembled (then answered as an unfragmented one)
    client_hello_fragments_buffered: int = 0
    partial_client_hellos_evicted: int = 0
    partial_client_hellos_expired: int = 0
    client_hellos_reassembled: int = 0
    #: datagrams routed by their connection ID (RFC 9147 §9)
    datagrams_routed_by_cid: int = 0
    #: datagrams with a CID no live connection has (no state is made for them)
    unknown_cid_dropped: int = 0
    #: connections that moved to a new peer address after a return routability check
    address_changes: int = 0
    #: datagrams to an unverified address dropped by the anti-amplification limit
    amplification_dropped: int = 0
    connections_active: int = 0
    handshakes_active: int = 0
    #: partial first ClientHellos held now, and their bytes
    partial_client_hellos: int = 0
    partial_client_hello_bytes: int = 0
    #: the front-end's receive buffer pool (dtls.aio servers): slabs in use, the most at
    #: once, and datagrams that found no free slab
    pool_in_use: int = 0
    pool_peak: int = 0
    pool_misses: int = 0
    #: the record layers of every connection the endpoint has had, live and gone: records
    #: and bytes, and records dropped by reason (RFC 9147 §4.5.2)
    records_sealed: int = 0
    bytes_sealed: int = 0
    records_opened: int = 0
    bytes_opened: int = 0
    dropped_malformed: int = 0
    dropped_replayed: int = 0
    dropped_failed_authentication: int = 0
    dropped_unknown_epoch: int = 0
    #: flights retransmitted (RFC 9147 §5.8)
    retransmissions: int = 0
    #: summed over completed handshakes: divide by handshakes_completed for the mean
    handshake_seconds_total: float = 0.0

    def __str__(self) -> str:
        return format_fields(self)

    def refused(self) -> dict[str, int]:
        """ClientHellos refused before the cookie, by `dtls.handshake_server.Refusal`."""
        return {reason: getattr(self, f"refused_{reason}") for reason in Refusal.ALL}


# EndpointStats fields summed from the connections (the record layer's counter names)
_RECORD_TOTALS = {
    "records_sealed": "records_sealed",
    "bytes_sealed": "bytes_sealed",
    "records_opened": "records_opened",
    "bytes_opened": "bytes_opened",
    "dropped_malformed": "malformed",
    "dropped_replayed": "replayed",
    "dropped_failed_authentication": "failed_authentication",
    "dropped_unknown_epoch": "unknown_epoch",
}
_CONNECTION_TOTALS = (*_RECORD_TOTALS, "retransmissions", "handshake_seconds_total")
_COUNTERS = tuple(
    f.name for f in dataclasses.fields(EndpointStats)
    if f.name not in ("connections_active", "handshakes_active", "partial_client_hellos",
                      "partial_client_hello_bytes", *_CONNECTION_TOTALS)
)


def _add_connection(totals: dict[str, float], conn: Connection) -> None:
    """Add one connection's record counters, retransmissions and handshake time."""
    counters = conn.record_counters
    for name, counter in _RECORD_TOTALS.items():
        totals[name] += getattr(counters, counter)
    totals["retransmissions"] += conn.retransmissions
    started, done = conn.handshake_started, conn.handshake_completed_at
    if started is not None and done is not None:
        totals["handshake_seconds_total"] += done - started


def close_error(closed: ConnectionClosed) -> Exception:
    """The exception a front-end raises for a connection that ended this way: a
    `dtls.errors` exception for alerts, TimeoutError when the peer stopped answering,
    `dtls.errors.ConnectionStateError` after an orderly close (RFC 9846 §6)."""
    if not closed.error:
        return errors.ConnectionStateError(f"connection closed: {closed.reason}")
    if closed.alert is None:
        return TimeoutError(closed.reason)
    if closed.by_peer:
        return errors.AlertReceived(closed.alert)
    return errors.error_for_alert(closed.alert, closed.reason)


def _handshake_failed(
    conn: Connection, closed: ConnectionClosed | None, reason: str
) -> HandshakeFailed:
    alert: AlertDescription | int | None = None
    if closed is not None and closed.alert is not None:
        try:
            alert = AlertDescription(closed.alert)
        except ValueError:
            alert = closed.alert
    why = closed.reason if closed is not None and closed.alert is not None else reason
    by_peer = closed is not None and closed.by_peer
    return HandshakeFailed(conn, conn.peer_address, alert, why, by_peer)


# ---- helpers ----


class _Peer:
    """What the endpoint keeps for one connection."""

    __slots__ = (
        "cid_source", "cids", "client_random", "connection", "created", "established",
        "last_received", "pending", "removal_reason", "route", "timer_id", "timer_when",
        "unverified",
    )

    def __init__(self, connection: Connection, route: Route, now: float,
                 client_random: bytes | None) -> None:
        self.connection = connection
        self.route = route
        self.created = now
        self.last_received = now
        self.established = False
        self.pending = False  # has output or events to collect
        self.removal_reason: str | None = None
        self.client_random = client_random
        self.timer_id = 0  # the id of this peer's live entry in the timer heap, 0: none
        self.timer_when = 0.0
        self.cids: list[bytes] = []  # the CIDs routed to this connection
        self.cid_source: _CidSource | None = None
        # bytes [received, sent] per address other than the connection's peer_address
        self.unverified: dict[Address, list[int]] = {}


class _CidSource:
    """One connection's CID generator (RFC 9147 §9): its first CID, then fresh ones from
    the endpoint (for NewConnectionId), each routed to the connection as it is made."""

    __slots__ = ("endpoint", "first", "peer")

    def __init__(self, endpoint: ServerEndpoint, first: bytes) -> None:
        self.endpoint = endpoint
        self.first: bytes | None = first
        self.peer: _Peer | None = None  # None once the connection is gone

    def __call__(self) -> bytes:
        if self.first is not None:
            cid, self.first = self.first, None
            return cid
        cid = self.endpoint._new_cid()
        if self.peer is not None:
            self.endpoint._add_cids(self.peer, (cid,))
        return cid


class _RateLimit:
    """A token bucket per host: `rate` new handshakes per second, bursts of max(1, rate).

    Only hosts that started a handshake have a bucket; full buckets carry no information
    and are pruned, so the table stays small (and bounded by `max_hosts`)."""

    def __init__(self, rate: float, max_hosts: int) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.max_hosts = max_hosts
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, host: Hashable, now: float) -> bool:
        tokens, last = self._buckets.get(host, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[host] = (tokens, now)
            return False
        if host not in self._buckets and len(self._buckets) >= self.max_hosts:
            self._prune(now)
        self._buckets[host] = (tokens - 1.0, now)
        return True

    def _prune(self, now: float) -> None:
        full = [h for h, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for host in full:
            del self._buckets[host]
        while len(self._buckets) >= self.max_hosts:  # still full: forget the oldest
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


class _PartialClientHello:
    __slots__ = ("created", "message", "message_seq", "record_seq")

    def __init__(self, frag: HandshakeFragment, record_seq: int, now: float) -> None:
        self.created = now
        self.message_seq = frag.message_seq
        self.record_seq = record_seq
        self.message = PartialMessage(frag.msg_type, frag.length, 0)


class _PartialClientHellos:
    """First ClientHellos in fragments from addresses not proven yet (RFC 9147 §5.1,
    §5.5): one per address, within a global budget of count and bytes held (never more
    than were received), each for `lifetime` seconds; the oldest goes first. Spoofed
    fragments can only evict each other: the memory they take stays within the budget."""

    def __init__(self, counts: dict[str, int], max_count: int, max_bytes: int,
                 lifetime: float) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.lifetime = lifetime
        self.held = 0  # bytes of all partial ClientHellos
        self._counts = counts
        self._partial: dict[Address, _PartialClientHello] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._partial)

    def add(self, addr: Address, record_seq: int, frag: HandshakeFragment,
            now: float) -> bytes | None:
        """Keep the fragment; the whole ClientHello in one record once it is complete."""
        counts = self._counts
        self._expire(now)
        partial = self._partial.get(addr)
        if partial is not None and (
            partial.message_seq != frag.message_seq or partial.message.length != frag.length
        ):
            self._evict(addr)  # a new ClientHello from the address replaces the old one
            partial = None
        if partial is None:
            if not 0 < frag.length <= min(MAX_FRAGMENTED_CLIENT_HELLO, self.max_bytes):
                return None
            while len(self._partial) >= self.max_count:
                self._evict(next(iter(self._partial)))
            partial = self._partial[addr] = _PartialClientHello(frag, record_seq, now)
        message = partial.message
        new = message.new_bytes(frag.fragment_offset, len(frag.fragment))
        while self.held + new > self.max_bytes:
            oldest = next(iter(self._partial))
            if oldest == addr:  # only this one is left, and it is within the budget
                break
            self._evict(oldest)
        added = message.add(frag.fragment_offset, frag.fragment)
        if added is None:
            return None  # too many gaps: the client sends this fragment again
        self.held += added
        partial.record_seq = max(partial.record_seq, record_seq)
        counts["client_hello_fragments_buffered"] += 1
        if not message.complete:
            return None
        del self._partial[addr]
        self.held -= message.received
        counts["client_hellos_reassembled"] += 1
        return client_hello_record(partial.record_seq, partial.message_seq, message.body)

    def discard(self, addr: Address) -> None:
        """Forget the address's partial ClientHello (a connection has its place now)."""
        partial = self._partial.pop(addr, None)
        if partial is not None:
            self.held -= partial.message.received

    def _evict(self, addr: Address) -> None:
        self.discard(addr)
        self._counts["partial_client_hellos_evicted"] += 1

    def _expire(self, now: float) -> None:
        partial = self._partial
        while partial:
            addr, oldest = next(iter(partial.items()))
            if now < oldest.created + self.lifetime:
                return
            self.discard(addr)
            self._counts["partial_client_hellos_expired"] += 1


class _ConnectionsView(Mapping[Route, Connection]):
    """A read-only view of the endpoint's connections by route."""

    def __init__(self, routes: dict[Route, _Peer]) -> None:
        self._routes = routes

    def __getitem__(self, route: Route) -> Connection:
        return self._routes[route].connection

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


def _client_hello_random(data: bytes) -> bytes | None:
    """The random of an epoch-0 ClientHello that opens `data`, else None. Header fields
    only (RFC 9147 §4, §5.2), no full parse: this runs on datagrams to live connections."""
    if len(data) < _RANDOM_OFFSET + 32 or data[0] != _HANDSHAKE:
        return None
    if data[3:5] != b"\x00\x00" or data[13] != _CLIENT_HELLO:
        return None
    if data[19:22] != b"\x00\x00\x00":  # fragment_offset: the first fragment holds the random
        return None
    return bytes(data[_RANDOM_OFFSET : _RANDOM_OFFSET + 32])


def _host(addr: Address) -> Hashable:
    host: Hashable = addr[0] if isinstance(addr, tuple) and addr else addr
    return host


# ---- the endpoint ----


class ServerEndpoint:
    """Many server connections behind one socket (see the module docstring).

    Feed it every datagram the socket receives with `receive_datagram`, send what
    `datagrams_to_send` returns, call `handle_timer` at `get_timer`, and read
    `next_event`. After calling `send`, `update_keys` or `close` on one of its
    connections, call `mark_pending(connection)` so that the next `datagrams_to_send`
    collects its output and `get_timer` sees its timer. Read a connection's events from
    the endpoint, not from the connection.

    With `cid_length` > 0 (or a `cid_generator`), every connection receives with its own
    connection IDs of that length (RFC 9147 §9), unique among the live connections:
    random bytes, or what `cid_generator` returns (say, a worker or host id in the first
    byte, so that a load balancer or processes sharing a port can route by CID). Without
    `cid_generator`, a callable `context.connection_id` is used as one. Without a
    length, the generator's output sets it.
    """

    def __init__(
        self,
        context: Context,
        *,
        max_connections: int = 10_000,
        max_handshakes: int = 1_000,
        rate_limit_per_address: float | None = None,
        handshake_timeout: float = 30.0,
        idle_timeout: float | None = 300.0,
        cookie_mode: str | None = None,
        cookie_threshold: int | None = None,
        cid_length: int = 0,
        cid_generator: Callable[[], bytes] | None = None,
    ) -> None:
        if context.is_client:
            raise ValueError("ServerEndpoint needs a server context")
        context.check()
        mode = cookie_mode if cookie_mode is not None else context.cookie_mode
        if mode not in (CookieMode.ALWAYS, CookieMode.NEVER, CookieMode.AUTO):
            raise ValueError(f"unknown cookie mode {mode!r}")
        if max_connections < 1 or max_handshakes < 1:
            raise ValueError("max_connections and max_handshakes must be at least 1")
        if cid_generator is None and callable(context.connection_id):
            cid_generator = context.connection_id
        if cid_generator is not None:  # one sample: its length, checked here not later
            sample = len(cid_generator())
            if sample == 0 or cid_length not in (0, sample):
                raise ValueError(f"the CID generator made {sample} bytes (cid_length {cid_length})")
            cid_length = sample
        if not 0 <= cid_length <= 255:  # RFC 9146 §3: opaque cid<0..2^8-1>
            raise ValueError("cid_length must be 0 to 255")
        #: the length of every CID the endpoint gives out (0: route by address only)
        self.cid_length = cid_length
        self._cid_generator = cid_generator
        self.context = context
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.cookie_mode = mode
        #: with cookie_mode "auto": cookies are required once this many handshakes run
        self.cookie_threshold = (
            cookie_threshold if cookie_threshold is not None else max(1, max_handshakes // 4)
        )
        self._rate = (
            _RateLimit(rate_limit_per_address, max_hosts=max(1024, 2 * max_handshakes))
            if rate_limit_per_address else None
        )
        self._refusal_rate = _RateLimit(REFUSALS_PER_HOST, max_hosts=REFUSAL_HOSTS)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._partial_hellos = _PartialClientHellos(
            self._counts, MAX_PARTIAL_CLIENT_HELLOS, MAX_PARTIAL_CLIENT_HELLO_BYTES,
            PARTIAL_CLIENT_HELLO_LIFETIME,
        )
        self._routes: dict[Route, _Peer] = {}  # by the peer's address
        self._by_cid: dict[bytes, _Peer] = {}  # by each CID a connection gave its peer
        self._peers: dict[Connection, _Peer] = {}
        self._handshaking = 0
        self._pending: list[_Peer] = []
        self._outbox: list[tuple[bytes, Address]] = []
        self._stateless_queued = 0
        self._events: deque[EndpointEvent] = deque()
        self._timers: list[tuple[float, int, _Peer]] = []
        self._timer_ids = itertools.count(1)
        # _CONNECTION_TOTALS of the connections already removed
        self._removed_totals: dict[str, float] = dict.fromkeys(_CONNECTION_TOTALS, 0)
        self._closed = False

    # ---- public API ----
    @property
    def connections(self) -> Mapping[Route, Connection]:
        """The live connections by route (the peer's address)."""
        return _ConnectionsView(self._routes)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> EndpointStats:
        """The endpoint's counters, and the record-layer totals of its connections (a
        pass over the live ones)."""
        totals = dict(self._removed_totals)
        for conn in self._peers:
            _add_connection(totals, conn)
        return EndpointStats(
            **self._counts,
            connections_active=len(self._peers),
            handshakes_active=self._handshaking,
            partial_client_hellos=len(self._partial_hellos),
            partial_client_hello_bytes=self._partial_hellos.held,
            **totals,  # type: ignore[arg-type]
        )

    def cookies_required(self) -> bool:
        """Whether a ClientHello must carry a valid cookie now (RFC 9147 §5.1)."""
        if self.cookie_mode == CookieMode.ALWAYS:
            return True
        if self.cookie_mode == CookieMode.NEVER:
            return False
        return self._handshaking >= self.cookie_threshold

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Route one datagram to its connection, or answer it statelessly. Never raises
        for anything in `data`."""
        counts = self._counts
        counts["datagrams_received"] += 1
        counts["bytes_received"] += len(data)
        if self._closed:
            counts["garbage_dropped"] += 1
            return
        cid = self._cid_of(data)
        if cid is not None:
            # RFC 9147 §9: the CID, not the address, names the connection.
            peer = self._by_cid.get(cid)
            if peer is None:
                counts["unknown_cid_dropped"] += 1
                return
            counts["datagrams_routed_by_cid"] += 1
            self._deliver(peer, data, addr, now)
            return
        peer = self._routes.get(addr)
        if peer is None:
            self._receive_unrouted(data, addr, now)
            return
        random = _client_hello_random(data) if data and data[0] == _HANDSHAKE else None
        if random is not None and random != peer.client_random:
            if peer.client_random is not None:
                self._receive_new_association(peer, data, addr, now)
                return
            peer.client_random = random  # the connection began with a later fragment
        self._deliver(peer, data, addr, now)

    def receive_datagrams(self, datagrams: Iterable[tuple[Buffer, Address]], now: float) -> None:
        """`receive_datagram` for each datagram, in order; consecutive datagrams for one
        established connection from its own address are handed to it together
        (`Connection.receive_datagrams`: their records open in one C call)."""
        run: list[tuple[Buffer, Address]] = []
        run_peer: _Peer | None = None
        for data, addr in datagrams:
            peer = self._established_route(data, addr)
            if peer is not None and peer is run_peer:
                run.append((data, addr))
                continue
            if run_peer is not None:
                self._deliver_run(run_peer, run, now)
            if peer is not None:
                run, run_peer = [(data, addr)], peer
            else:
                run, run_peer = [], None
                self.receive_datagram(bytes(data), addr, now)  # a view: what it keeps owns
        if run_peer is not None:
            self._deliver_run(run_peer, run, now)

    def _established_route(self, data: Buffer, addr: Address) -> _Peer | None:
        """The peer of a record-layer datagram from an established connection's own
        address (what `receive_datagram` would `_deliver` there as it is), else None."""
        if self._closed or not data or data[0] & 0xE0 != 0x20:
            return None  # not a DTLSCiphertext record (RFC 9147 §4.1)
        cid = self._cid_of(data)
        peer = self._routes.get(addr) if cid is None else self._by_cid.get(cid)
        if peer is None or peer.connection.peer_address != addr:
            return None
        return peer

    def _cid_of(self, data: Buffer) -> bytes | None:
        """The connection ID a datagram's first record carries (RFC 9147 §9), or None."""
        cid_length = self.cid_length
        if cid_length and len(data) > cid_length and data[0] & _CID_HEADER_MASK == _CID_HEADER:
            return bytes(data[1 : 1 + cid_length])
        return None

    def _deliver_run(self, peer: _Peer, run: list[tuple[Buffer, Address]], now: float) -> None:
        counts = self._counts
        counts["datagrams_received"] += len(run)
        size = routed = 0
        for data, _ in run:  # a plain loop: most runs are one datagram
            size += len(data)
            if self.cid_length and self._cid_of(data) is not None:
                routed += 1
        counts["bytes_received"] += size
        counts["datagrams_routed_by_cid"] += routed
        peer.last_received = now
        peer.connection.receive_datagrams(run, now)
        self._service(peer, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Everything ready for the network: stateless replies and every connection's."""
        out: list[tuple[bytes, Address]] = []
        pending, self._pending = self._pending, []
        for peer in pending:
            peer.pending = False
            if self._peers.get(peer.connection) is not peer:
                continue
            out.extend(self._limit_amplification(peer, peer.connection.datagrams_to_send(now)))
            self._service(peer, now, collected=True)
        if self._outbox:
            out.extend(self._outbox)
            self._outbox = []
            self._stateless_queued = 0
        counts = self._counts
        counts["datagrams_sent"] += len(out)
        size = 0
        for data, _ in out:
            size += len(data)
        counts["bytes_sent"] += size
        return out

    def mark_pending(self, connection: Connection) -> None:
        """Collect `connection`'s output, events and timer at the next `datagrams_to_send`
        (call it after `send`, `update_keys` or `close` on one of the endpoint's connections)."""
        peer = self._peers.get(connection)
        if peer is not None and not peer.pending:
            peer.pending = True
            self._pending.append(peer)

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called, or None."""
        if self._pending:
            self._schedule_pending()
        timers = self._timers
        while timers:
            when, timer_id, peer = timers[0]
            if peer.timer_id == timer_id and self._peers.get(peer.connection) is peer:
                return when
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`: retransmissions, handshake and idle timeouts."""
        if self._pending:
            self._schedule_pending()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, timer_id, peer = heapq.heappop(timers)
            if peer.timer_id != timer_id or self._peers.get(peer.connection) is not peer:
                continue
            peer.timer_id = 0
            conn = peer.connection
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
            if conn.state is not HandshakeState.CLOSED:
                if not peer.established:
                    if now >= peer.created + self.handshake_timeout:
                        peer.removal_reason = "handshake timeout"
                        conn.close()
                elif self.idle_timeout is not None and (
                    now >= peer.last_received + self.idle_timeout
                ):
                    peer.removal_reason = "idle timeout"
                    conn.close()
            self._service(peer, now)

    def next_event(self) -> EndpointEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> None:
        """Send close_notify on every connection and forget them all; later datagrams
        are dropped. The close_notify records come out of the next `datagrams_to_send`."""
        self._closed = True
        for peer in list(self._peers.values()):
            peer.removal_reason = "shutdown"
            peer.connection.close()
            self._service(peer, now)

    # ---- routing ----
    def _deliver(self, peer: _Peer, data: bytes, addr: Address, now: float) -> None:
        conn = peer.connection
        peer.last_received = now
        if addr == conn.peer_address:
            conn.receive_datagram(data, addr, now)
        else:
            # draft-ietf-tls-dtls-rrc §2: what an unverified address sent counts towards
            # the anti-amplification limit, except records that were discarded.
            opened = conn.record_counters.records_opened
            conn.receive_datagram(data, addr, now)
            if conn.record_counters.records_opened > opened:
                self._credit(peer, addr, len(data))
        self._service(peer, now)

    def _credit(self, peer: _Peer, addr: Address, size: int) -> None:
        budget = peer.unverified.get(addr)
        if budget is None:
            if len(peer.unverified) >= MAX_UNVERIFIED_ADDRESSES:
                del peer.unverified[next(iter(peer.unverified))]
            budget = peer.unverified[addr] = [0, 0]
        budget[0] += size

    def _limit_amplification(
        self, peer: _Peer, out: list[tuple[bytes, Address]]
    ) -> list[tuple[bytes, Address]]:
        """Drop what would exceed the anti-amplification limit towards an address that
        is not the connection's verified peer address (draft-ietf-tls-dtls-rrc §2, §5)."""
        current = peer.connection.peer_address
        for _, to in out:
            if to != current:
                break
        else:
            return out  # all to the verified address (or nothing)
        kept = []
        for data, to in out:
            if to != current:
                budget = peer.unverified.get(to)
                if budget is None or budget[1] + len(data) > AMPLIFICATION_FACTOR * budget[0]:
                    self._counts["amplification_dropped"] += 1
                    continue
                budget[1] += len(data)
            kept.append((data, to))
        return kept

    def _new_cid(self) -> bytes:
        """A CID no live connection has, of the endpoint's length (RFC 9147 §9)."""
        generator = self._cid_generator
        for _ in range(_CID_ATTEMPTS):
            cid = generator() if generator is not None else os.urandom(self.cid_length)
            if len(cid) != self.cid_length:
                raise ValueError(f"the CID generator made {len(cid)} bytes, not {self.cid_length}")
            if cid not in self._by_cid:
                return cid
        raise RuntimeError("the CID generator made no unused CID")

    def _add_cids(self, peer: _Peer, cids: Iterable[bytes]) -> None:
        for cid in cids:
            if cid and self._by_cid.setdefault(cid, peer) is peer and cid not in peer.cids:
                peer.cids.append(cid)

    def _drop_cids(self, peer: _Peer, cids: Iterable[bytes] | None = None) -> None:
        """Forget `cids` (default: all) of this peer's routes."""
        for cid in list(peer.cids if cids is None else cids):
            if self._by_cid.get(cid) is peer:
                del self._by_cid[cid]
            if cid in peer.cids:
                peer.cids.remove(cid)

    def _moved(self, peer: _Peer, new: Address) -> None:
        """The peer answered a return routability check from `new` (draft-ietf-tls-dtls-rrc
        §5.1): datagrams without a CID from there are its now."""
        self._counts["address_changes"] += 1
        if self._routes.get(peer.route) is peer:
            del self._routes[peer.route]
        peer.route = new
        self._routes[new] = peer
        peer.unverified.pop(new, None)

    def _receive_unrouted(self, data: bytes, addr: Address, now: float) -> None:
        counts = self._counts
        if not data or data[0] != _HANDSHAKE:
            counts["garbage_dropped"] += 1  # only a ClientHello may open a connection
            return
        if len(self._peers) >= self.max_connections:
            counts["refused_connection_limit"] += 1
            return
        if self._handshaking >= self.max_handshakes:
            counts["refused_handshake_limit"] += 1
            return
        require = self.cookies_required()
        response = respond_statelessly(self.context, data, addr, require_cookie=require)
        if response.action == "fragment":
            complete = None
            buffered = counts["client_hello_fragments_buffered"]
            for record_seq, frag in response.fragments:
                complete = self._partial_hellos.add(addr, record_seq, frag, now) or complete
            if complete is None:
                if counts["client_hello_fragments_buffered"] == buffered:
                    counts["garbage_dropped"] += 1  # nothing kept (RFC 9147 §4.5.2)
                return
            # RFC 9147 §5.1: answered (or accepted) as the ClientHello in one record.
            data = complete
            response = respond_statelessly(self.context, data, addr, require_cookie=True)
        if response.action == "accept":
            self._partial_hellos.discard(addr)
            self._accept(data, addr, addr, now, require)
        elif not self._answer_statelessly(response, addr, now):
            counts["garbage_dropped"] += 1
            logger.debug("%s: datagram dropped: not a ClientHello we can answer", addr)

    def _receive_new_association(
        self, peer: _Peer, data: bytes, addr: Address, now: float
    ) -> None:
        """An epoch-0 ClientHello from the address of a live connection (RFC 9147 §6):
        the old association goes only once the client proved it is reachable there, by
        returning a cookie. Until then the ClientHello is answered statelessly."""
        response = respond_statelessly(self.context, data, addr, require_cookie=True)
        if response.action != "accept":
            # Only a returned cookie proves the address: keep the old association (a
            # plaintext alert does not touch it: RFC 9147 §4.5.2, it has keys).
            if not self._answer_statelessly(response, addr, now):
                self._counts["garbage_dropped"] += 1
            return
        old = peer.connection
        peer.removal_reason = "replaced"
        old.close()
        old.datagrams_to_send(now)  # its close_notify is for a client that moved on
        self._service(peer, now)
        self._accept(data, addr, peer.route, now, require_cookie=True)

    def _answer_statelessly(self, response: StatelessResponse, addr: Address, now: float) -> bool:
        """Send a cookie HelloRetryRequest, or the alert refusing a ClientHello (rate
        limited per host); False for a datagram to drop."""
        counts = self._counts
        if response.action == "retry" and response.datagram is not None:
            if self._send_stateless(response.datagram, addr):
                counts["cookies_sent"] += 1
            return True
        if response.action == "reject" and response.datagram is not None:
            counts[f"refused_{response.reason or Refusal.CLIENT_HELLO}"] += 1
            if not self._refusal_rate.allow(_host(addr), now):
                counts["refusals_rate_limited"] += 1
            else:
                self._send_stateless(response.datagram, addr)
            return True
        return False

    def _send_stateless(self, datagram: bytes, addr: Address) -> bool:
        if self._stateless_queued >= MAX_STATELESS_BACKLOG:
            self._counts["backlog_dropped"] += 1
            return False
        self._stateless_queued += 1
        self._outbox.append((datagram, addr))
        return True

    def _accept(
        self, data: bytes, addr: Address, route: Route, now: float, require_cookie: bool
    ) -> None:
        counts = self._counts
        if len(self._peers) >= self.max_connections:
            counts["refused_connection_limit"] += 1
            return
        if self._handshaking >= self.max_handshakes:
            counts["refused_handshake_limit"] += 1
            return
        if self._rate is not None and not self._rate.allow(_host(addr), now):
            counts["rate_limited"] += 1
            return
        source = None
        if self.cid_length:
            try:
                source = _CidSource(self, self._new_cid())
            except RuntimeError:
                counts["refused_connection_limit"] += 1  # the generator's CIDs are all in use
                return
        # The endpoint has decided about cookies; the connection must not ask again.
        conn = Connection(
            self.context, peer_address=addr, require_cookie=require_cookie,
            connection_id=source,  # a generator, see _CidSource
        )
        peer = _Peer(conn, route, now, _client_hello_random(data))
        if source is not None:
            source.peer = peer
            peer.cid_source = source
            self._add_cids(peer, conn.local_cids)
        self._routes[route] = peer
        self._peers[conn] = peer
        self._handshaking += 1
        counts["handshakes_started"] += 1
        self._events.append(ConnectionAccepted(conn, addr))
        conn.receive_datagram(data, addr, now)
        self._service(peer, now)

    # ---- per-connection bookkeeping ----
    def _service(self, peer: _Peer, now: float, *, collected: bool = False) -> None:
        """After any engine call: move its events out, note progress, reschedule, and
        forget the connection once it closed. Unless its output was just `collected`,
        it is collected by the next `datagrams_to_send`."""
        conn = peer.connection
        closed: ConnectionClosed | None = None
        events = self._events
        while (event := conn.next_event()) is not None:
            if isinstance(event, HandshakeCompleted) and not peer.established:
                peer.established = True
                self._handshaking -= 1
                self._counts["handshakes_completed"] += 1
                if conn.peer_cid is None:
                    self._drop_cids(peer)  # the client did not negotiate CIDs (RFC 9146 §3)
            elif isinstance(event, ConnectionIdsIssued):
                self._add_cids(peer, event.cids)
            elif isinstance(event, ConnectionIdsRetired):
                self._drop_cids(peer, event.cids)
            elif isinstance(event, PeerAddressChanged):
                self._moved(peer, event.new)
            elif isinstance(event, ConnectionClosed):
                closed = event
            events.append(ConnectionEvent(conn, event))
        if conn.state is HandshakeState.CLOSED:
            self._remove(peer, closed, now)
            return
        if collected:
            self._schedule(peer)
        elif not peer.pending:
            # Its timer is worked out when its output is collected (the flight it sends
            # may move it), or before get_timer / handle_timer if that comes first.
            peer.pending = True
            self._pending.append(peer)

    def _schedule_pending(self) -> None:
        for peer in self._pending:
            if self._peers.get(peer.connection) is peer:
                self._schedule(peer)

    def _schedule(self, peer: _Peer) -> None:
        when = peer.connection.get_timer()
        if not peer.established:
            limit: float | None = peer.created + self.handshake_timeout
        elif self.idle_timeout is not None:
            limit = peer.last_received + self.idle_timeout
        else:
            limit = None
        if limit is not None and (when is None or limit < when):
            when = limit
        # A live entry at or before `when` is kept: when it fires early the deadline is
        # worked out again. So an idle timeout pushed back by traffic costs no heap
        # entry per datagram; only an earlier deadline adds one.
        if when is None or (peer.timer_id and peer.timer_when <= when):
            return
        peer.timer_id = next(self._timer_ids)
        peer.timer_when = when
        heapq.heappush(self._timers, (when, peer.timer_id, peer))
        if len(self._timers) > 2 * len(self._peers) + 64:
            self._compact_timers()

    def _compact_timers(self) -> None:
        self._timers = [
            e for e in self._timers
            if e[2].timer_id == e[1] and self._peers.get(e[2].connection) is e[2]
        ]
        heapq.heapify(self._timers)

    def _remove(self, peer: _Peer, closed: ConnectionClosed | None, now: float) -> None:
        conn = peer.connection
        if self._peers.get(conn) is not peer:
            return
        reason = peer.removal_reason
        counts = self._counts
        if peer.established:
            counts["connections_closed"] += 1
            if reason == "idle timeout":
                counts["idle_timeouts"] += 1
        else:
            self._handshaking -= 1
            timed_out = reason == "handshake timeout" or (
                closed is not None and closed.error and closed.alert is None
            )
            if timed_out:
                counts["handshakes_timed_out"] += 1
                reason = reason or "handshake timeout"
            else:
                counts["handshakes_failed"] += 1
        if reason == "replaced":
            counts["connections_replaced"] += 1
        if reason is None:
            reason = "failed" if closed is not None and closed.error else "closed"
        if not peer.established and reason in ("failed", "handshake timeout"):
            self._events.append(_handshake_failed(conn, closed, reason))
        # The last words (close_notify, a fatal alert) still go out, unless replaced.
        final = self._limit_amplification(peer, conn.datagrams_to_send(now))
        if reason != "replaced":
            self._outbox.extend(final)
        del self._peers[conn]
        _add_connection(self._removed_totals, conn)
        if self._routes.get(peer.route) is peer:
            del self._routes[peer.route]
        self._drop_cids(peer)
        if peer.cid_source is not None:
            peer.cid_source.peer = None  # later CIDs route nowhere; no reference cycle
        peer.timer_id = 0
        logger.log(logging.INFO if reason == "handshake timeout" else logging.DEBUG,
                   "%s: connection removed (%s)", peer.route, reason)
        self._events.append(ConnectionRemoved(conn, reason))
