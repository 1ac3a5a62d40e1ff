"""The sans-I/O DTLS 1.3 connection (RFC 9147).

A `Connection` takes datagrams and the time, and gives datagrams, a timer and events. It
never reads a clock or touches a socket: front-ends (`dtls.aio`, `dtls.sync`, `dtls.sim`)
do. Handshake messages are handled by the client and server state machines of RFC 9846
Appendix A; flights, fragments, ACKs and retransmission follow RFC 9147 §5 and §7.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from .config import Context, CookieMode
from .errors import (
    BadRecordMac,
    ConnectionStateError,
    DTLSError,
    IllegalParameter,
    InternalError,
    ProtocolError,
    RecordOverflow,
    UnexpectedMessage,
)
from .events import (
    AlertReceived,
    ConnectionClosed,
    DataReceived,
    DataReceivedBatch,
    Event,
    HandshakeCompleted,
    KeyUpdated,
    PeerAddressChanged,
    data_received,
)
from .handshake import (
    MAX_PLAINTEXT,
    Address,
    FlightKind,
    HandshakeState,
    type_name,
)
from .handshake_client import ClientHandshake
from .handshake_server import ServerHandshake
from .iana import (
    AlertDescription,
    AlertLevel,
    CipherSuite,
    ContentType,
    HandshakeType,
    KeyUpdateRequest,
    NamedGroup,
    alert_name,
)
from .keyschedule import (
    export_keying_material,
    next_application_traffic_secret,
)
from .messages import (
    DTLS_HANDSHAKE_HEADER_LEN,
    HELLO_RETRY_REQUEST_RANDOM,
    KeyUpdate,
    decode_ack,
    decode_alert,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_ack,
    encode_alert,
    encode_handshake,
    encode_handshake_fragment,
)
from .path import (
    RRC_CONTENT_TYPE,
    ConnectionIds,
    ConnectionIdUpdates,
)
from .peercert import PROTOCOL_VERSION, cipher_triple, peer_certificate
from .record_layer import MAX_SEQUENCE, InboundRecord, RecordLayer
from .record_py import Buffer
from .reliability import (
    FragmentResult,
    HandshakeReassembler,
    OutgoingFlight,
    OutgoingMessage,
    ReceivedMessage,
    RecordNumber,
    RetransmitTimer,
)
from .session import Session
from .srtp import EXPORTER_LABEL as SRTP_EXPORTER_LABEL
from .srtp import SrtpKeys, keying_material_length
from .stats import ConnectionStats

logger = logging.getLogger("dtls.connection")  # events and failures, never a secret

# AEAD limits per key (RFC 9147 §4.5.3, RFC 9846 §5.5): records protected, and records
# failing authentication. CCM_8's 2^7 forgery bound is why it is off by default.
_AEAD_LIMITS: dict[int, tuple[int, int]] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: (23_726_566, 1 << 36),
    CipherSuite.TLS_AES_256_GCM_SHA384: (23_726_566, 1 << 36),
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: ((1 << 48) - 1, 1 << 36),
    CipherSuite.TLS_AES_128_CCM_SHA256: (1 << 23, 11_863_283),
    CipherSuite.TLS_AES_128_CCM_8_SHA256: (1 << 23, 1 << 7),
}
# Application data that arrives before the handshake completes is buffered up to this
# many records (RFC 9147 §5.8.1 allows buffering or discarding).
MAX_EARLY_RECORDS = 32
# A fragment smaller than this is not worth starting in the rest of a datagram.
MIN_FRAGMENT = 64
# An ACK names at most this many records, the most recent (RFC 9147 §7 favours those not
# yet acknowledged), and only as many as fit in one datagram.
MAX_ACK_RECORDS = 32
MAX_MESSAGE_SEQ = 0xFFFF  # RFC 9147 §5.2
ACK_RECORD_NUMBER_LEN = 16


def _fast_send_until(limit: int) -> int:
    """The sequence number from which `send` stops sealing in one call under a
    confidentiality limit: the record after it would reach 3/4 of the limit (a KeyUpdate,
    RFC 9147 §4.5.3), or pass 2^48 - 1 (§4.2.1)."""
    return min(limit * 3 // 4 - 1, MAX_SEQUENCE + 1)


_DEFAULT_CONFIDENTIALITY_LIMIT = 1 << 48
_FAST_SEND_UNTIL = _fast_send_until(_DEFAULT_CONFIDENTIALITY_LIMIT)


_GROUP_NAMES = {int(g): g.name.lower() for g in NamedGroup}
_SUITE_NAMES = {int(s): s.name for s in CipherSuite}


def _group_name(group: int | None) -> str | None:
    if group is None:
        return None
    name = _GROUP_NAMES.get(group)
    return name if name is not None else f"0x{group:04x}"


# ---------------------------------------------------------------------------------------
# Negotiation shared by the connection and the stateless cookie exchange
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------


__all__ = ["Connection", "HandshakeState"]


class SegmentRun:
    """Records `send_segments` sealed back to back at a fixed stride (one per datagram,
    the last may be shorter): an entry of the output that no other record joins."""

    __slots__ = ("data", "stride")

    def __init__(self, data: memoryview, stride: int) -> None:
        self.data = data
        self.stride = stride

    def __len__(self) -> int:
        return len(self.data)

    def datagrams(self) -> list[bytes]:
        whole, stride = self.data.tobytes(), self.stride
        return [whole[i : i + stride] for i in range(0, len(whole), stride)]


class Connection:
    """One DTLS 1.3 association, client or server, as the context says."""

    # Every attribute, as a slot: over 30 of them would not share a keys table in an
    # instance dict, and each access would be a hinted dict look-up (slots: ~1.5k
    # instructions fewer per record sent and received, 1.3 KiB less per connection).
    __slots__ = (
        "__weakref__",
        "_ack_deadline",
        "_ack_pending",
        "_app_send_epoch",
        "_closing_alert_sent",
        "_early_received",
        "_early_records",
        "_events",
        "_fast_send_until",
        "_flights",
        "_handshake",
        "_integrity_limit",
        "_next_message_seq",
        "_out",
        "_path",
        "_pending_app",
        "_post_handshake_queue",
        "_reassembler",
        "_receive_limit",
        "_records",
        "_rto",
        "_sealing_limit",
        "_segment_runs",
        "_send_limit",
        "_unsent",
        "_version_known",
        "context",
        "handshake_completed_at",
        "handshake_started",
        "is_client",
        "keepalives_sent",
        "last_received",
        "last_sent",
        "peer_address",
        "retransmissions",
    )

    def __init__(
        self,
        context: Context,
        *,
        server_name: str | None = None,
        peer_address: Address = None,
        session: Session | None = None,
        require_cookie: bool | None = None,
        connection_id: bytes | Callable[[], bytes] | None = None,
    ) -> None:
        context.check()
        self.context = context
        self.is_client = context.is_client
        self.peer_address = peer_address
        self.retransmissions = 0
        self.keepalives_sent = 0
        self.last_sent = 0.0  # when a datagram last left, and an authentic record arrived
        self.last_received = 0.0
        self.handshake_started: float | None = None
        self.handshake_completed_at: float | None = None

        self._records = RecordLayer(
            context.replay_window, context.epoch_retention, context.record_provider()
        )
        self._events: list[Event] = []  # few at a time: a list is smaller than a deque
        # datagrams being filled (RFC 9147 §4.3), and runs of them from send_segments
        self._out: list[bytes | bytearray | SegmentRun] = []
        self._segment_runs = 0  # how many SegmentRun entries _out holds
        self._rto = RetransmitTimer(
            context.initial_retransmit_timeout, context.max_retransmit_timeout
        )
        self._reassembler = HandshakeReassembler(
            context.max_handshake_message_size, context.max_handshake_buffer
        )
        self._flights: dict[FlightKind, OutgoingFlight] = {}
        self._unsent: list[OutgoingFlight] = []
        # post-handshake flights not yet started, in order (`_start_post_handshake`)
        self._post_handshake_queue: list[tuple[FlightKind, tuple[Any, ...]]] = []
        self._ack_pending: list[RecordNumber] = []
        self._ack_deadline: float | None = None
        self._version_known = False  # RFC 9147 §7: no ACKs before DTLS 1.3 is selected
        self._next_message_seq = 0
        self._app_send_epoch = 0
        self._pending_app: list[bytes] = []
        # record sizes (RFC 8449) and AEAD limits (RFC 9147 §4.5.3), set with the suite
        self._send_limit = MAX_PLAINTEXT
        self._receive_limit = MAX_PLAINTEXT
        # `_confidentiality_limit = 1 << 48`, without the setter's frame per connection
        self._sealing_limit = _DEFAULT_CONFIDENTIALITY_LIMIT
        self._fast_send_until = _FAST_SEND_UNTIL
        self._integrity_limit = 1 << 36
        self._early_records: list[bytes] = []
        self._early_received = 0  # server: 0-RTT bytes received (RFC 9846 §4.2.10)
        self._closing_alert_sent = False

        # the handshake (RFC 9846 Appendix A), with key exchange, signatures and
        # randomness from the record layer's provider (design §6)
        provider = self._records.provider.handshake
        # the parts hold the connection weakly: a dropped connection is freed at once by
        # its reference count, not by the cyclic garbage collector
        me = weakref.proxy(self)
        self._handshake: ClientHandshake | ServerHandshake
        if self.is_client:
            self._handshake = ClientHandshake(me, context, provider, server_name, session)
        else:
            # a ClientHello without a cookie gets a cookie HRR (RFC 9147 §5.1); None
            # follows context.cookie_mode (an endpoint decides "auto" itself)
            if require_cookie is None:
                require_cookie = context.cookie_mode == CookieMode.ALWAYS
            self._handshake = ServerHandshake(
                me, context, provider, require_cookie, server_name, session
            )
        # connection IDs (RFC 9147 §9): the CID we receive with, bytes or a generator
        # (also used for CIDs issued later): this argument (a server endpoint choosing
        # unique ones), else the context's
        cid = connection_id if connection_id is not None else context.connection_id
        if callable(cid):
            self._path = ConnectionIdUpdates(me, ConnectionIds(cid(), cid))
        else:
            self._path = ConnectionIdUpdates(me, ConnectionIds(cid, None))

    # ---- public API ----
    def connect(self, addr: Address, now: float) -> None:
        """Start the handshake (client): sends the first ClientHello."""
        if not self.is_client:
            raise ConnectionStateError("connect() is for clients")
        if self._handshake.state is not HandshakeState.START:
            raise ConnectionStateError("connect() was already called")
        self.peer_address = addr
        self.handshake_started = now
        handshake = self._handshake
        assert isinstance(handshake, ClientHandshake)
        handshake.start(now)

    def receive_datagram(self, data: Buffer, addr: Address, now: float) -> None:
        """Process one datagram. Bad input is dropped and counted, or ends the connection
        with an alert and a `ConnectionClosed` event; it never raises (RFC 9147 §4.5.2)."""
        records = self._records
        receiving = records.app_receive
        opened: Any = None
        if (
            receiving is not None
            and self._handshake.state is _CONNECTED
            and self._path.challenge is None
            and (addr is self.peer_address or addr == self.peer_address)
        ):
            # one record of the application epoch with the CID in use, in one call
            try:
                opened = receiving.opener.open(data, self._receive_limit)  # type: ignore[union-attr]
                if opened.__class__ is bytes:  # counted by the opener (`RecordLayer.counters`)
                    self.last_received = now
                    self._events.append(data_received(opened))
                    # as the general path below (RFC 9147 §4.5.3): only this epoch's
                    # forgeries can ask for anything now, an older epoch's were checked
                    # when they were counted
                    if receiving.failures:
                        self._check_integrity_limit()
                    return
            except Exception as exc:
                self._fail_on(exc)
                return
        if self._handshake.state is _CLOSED:
            return
        if self.peer_address is None:
            self.peer_address = addr
        if self.handshake_started is None:
            self.handshake_started = now
        try:
            inbound = (
                records.open(data, now)
                if opened is None
                else records.app_opened(opened, len(data), now)
            )
            authenticated = self._receive_records(inbound, addr, now)
            if authenticated:
                path = self._path
                if self._records.last_cid != path.cids.in_use:
                    path.peer_switched_cid(self._records.last_cid)
                challenge = path.challenge
                if challenge is not None and addr == challenge.address:
                    challenge.received += len(data)
                if addr != self.peer_address:
                    path.on_new_address(addr, data, now)
            if self._records.failed_authentication():
                self._check_integrity_limit()
        except Exception as exc:
            self._fail_on(exc)

    def receive_datagrams(self, datagrams: Iterable[tuple[Buffer, Address]], now: float) -> None:
        """`receive_datagram` for each datagram, in order, but a run of datagrams from the
        peer that hold only records of an application epoch is opened in one C call and
        its application data comes as one `DataReceivedBatch` event (RFC 9147 §4); drops,
        counters and the other events are those of `receive_datagram`."""
        batch = datagrams if isinstance(datagrams, list | tuple) else list(datagrams)
        if not batch:
            return
        datas, addrs = zip(*batch, strict=True)
        n, i = len(datas), 0
        while i < n:
            addr = addrs[i]
            if not self._takes_runs_from(addr):
                self.receive_datagram(datas[i], addr, now)
                i += 1
                continue
            end = n if addrs.count(addr) == n else i + 1
            while end < n and addrs[end] == addr:
                end += 1
            run = datas[i:end]  # opened in a copy: the views of the event own it
            self._receive_run(memoryview(bytearray().join(run)), list(map(len, run)),
                              run.__getitem__, addr, now)  # fmt: skip
            i = end

    def receive_segments(self, data: Buffer, segment_size: int, addr: Address, now: float) -> None:
        """A UDP_GRO run (`ReceivedDatagram.data` and `.segment_size`): datagrams of
        `segment_size` bytes back to back, the last may be shorter (0: one datagram), as
        `receive_datagrams` of each. A writable buffer is opened in place: the views of
        its `DataReceivedBatch` are then of `data`, valid until the caller reuses it."""
        view = memoryview(data)
        if view.format != "B":
            view = view.cast("B")
        size = len(view)
        seg = segment_size if 0 < segment_size < size else size
        if not size:
            return self.receive_datagram(view, addr, now)
        count = (size - 1) // seg + 1
        if view.readonly or not self._takes_runs_from(addr):
            datagrams = [view[o : o + seg] for o in range(0, size, seg)]
            return self.receive_datagrams([(d, addr) for d in datagrams], now)
        lengths = [seg] * (count - 1) + [size - (count - 1) * seg]
        self._receive_run(view, lengths, lambda k: view[k * seg : (k + 1) * seg], addr, now)
        return None

    def _takes_runs_from(self, addr: Address) -> bool:
        # established, from the peer's address, no return routability check on (RFC 9147 §9)
        return (
            self._handshake.state is _CONNECTED
            and self._path.challenge is None
            and addr == self.peer_address
        )

    def _receive_run(
        self, data: memoryview, lengths: list[int], datagram: Callable[[int], Buffer],
        addr: Address, now: float,
    ) -> None:  # fmt: skip
        """The datagrams of a run from the peer (`lengths` of them back to back in the
        writable `data`; datagram k also as it came, `datagram(k)`, for the general path):
        what `RecordLayer.open_run` takes as one event, then any other record it ended
        with; the datagrams it does not take go to `receive_datagram`."""
        k, offset, n = 0, 0, len(lengths)
        while k < n:
            if not self._takes_runs_from(addr):
                for j in range(k, n):
                    self.receive_datagram(datagram(j), addr, now)
                return
            try:
                records = self._records
                taken, rest, where, last = records.open_run(
                    data[offset:], lengths[k:], self._receive_limit, now
                )
                if where is not None:
                    self._events.append(DataReceivedBatch(*where))
                    self.last_received = now  # authentic records arrived
                if last is not None:
                    self._receive_records((last,), addr, now)
                if (taken or rest) and records.failed_authentication():
                    self._check_integrity_limit()
            except Exception as exc:
                self._fail_on(exc)
                return
            if rest:  # the records after the one just handled, as the general path would
                self.receive_datagram(memoryview(datagram(k + taken))[rest:], addr, now)
                taken += 1
            elif not taken:
                self.receive_datagram(datagram(k), addr, now)
                taken = 1
            offset += sum(lengths[k : k + taken])
            k += taken

    def _receive_records(self, records: Iterable[InboundRecord], addr: Address, now: float) -> bool:
        """Handle deprotected records in order; True if one was authenticated (epoch >= 3)."""
        authenticated = False
        limit, events, handshake = self._receive_limit, self._events, self._handshake
        for record in records:
            epoch, _, content_type, payload = record
            if len(payload) > limit:
                raise RecordOverflow("record larger than the limit")  # RFC 8449, 9846 §5.2
            if epoch >= 3:
                authenticated = True
                if content_type == _APPLICATION_DATA and handshake.state is _CONNECTED:
                    events.append(data_received(payload))  # as _receive_application_data would
                    continue
            self._receive_record(record, now, addr)
            if handshake.state is _CLOSED:
                break
        if authenticated:
            self.last_received = now
        return authenticated

    def _fail_on(self, exc: Exception) -> None:
        """Nothing from the network raises out of the engine (RFC 9147 §4.5.2)."""
        if isinstance(exc, ProtocolError):
            self._fail(exc)
        elif isinstance(exc, DTLSError):
            self._fail(InternalError(str(exc)))
        else:  # a bug must not escape to the front-end either
            self._fail(InternalError(f"internal error: {type(exc).__name__}"))

    def _check_integrity_limit(self) -> None:
        """RFC 9147 §4.5.3: ask for new keys before too many forgeries were tried against
        a key; past the limit, drop an old key or close."""
        epochs = self._records.receive_epochs
        limit = self._integrity_limit
        current = max(epochs) if epochs else None
        for epoch, state in list(epochs.items()):
            if state.failures < limit // 2:
                continue
            if epoch != current:
                if state.failures >= limit:
                    self._records.drop_receive(epoch)
            elif state.failures >= limit:
                raise BadRecordMac("too many records failed authentication")
            elif self._handshake.state is HandshakeState.CONNECTED and epoch >= 3:
                self.update_keys(request_peer_update=True)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Datagrams ready for the network, with their destination."""
        pending: list[Any] = self._out
        if (
            len(pending) == 1
            and self._ack_deadline is None
            and not self._unsent
            and not self._path.probes
        ):
            record = pending[0]
            if record.__class__ is bytes:  # one record, as `send` left it
                pending.clear()  # frees; pop() would realloc the array to 0 bytes (~0.3k)
                self.last_sent = now
                return [(record, self.peer_address)]
        return self._collect_datagrams(now)

    def _collect_datagrams(self, now: float) -> list[tuple[bytes, Address]]:
        """`datagrams_to_send` past its one-record case: a due ACK and waiting flights,
        what the output holds, then path probes (a frame of its own: the one-record case
        makes no closure cell for the comprehension's `addr`)."""
        pending: list[Any] = self._out
        if self._unsent or (self._ack_deadline is not None and now >= self._ack_deadline):
            self._prepare_output(now)
        addr = self.peer_address
        # bytes(a bytes object) copies not; empty ones were started and left unused
        if self._segment_runs:
            self._segment_runs = 0
            pending = [x for d in pending for x in _datagrams_of(d)]
        # records sealed alone are bytes already: only joined ones are copied
        out = [(d if d.__class__ is bytes else bytes(d), addr) for d in pending if d]
        self._out.clear()
        if out:
            self.last_sent = now
        probes = self._path.probes
        if probes:
            out.extend(probes)
            probes.clear()
        return out

    def segments_to_send(self, now: float) -> list[tuple[Buffer, int, Address]]:
        """`datagrams_to_send` for UDP GSO: (data, segment_size, destination) each, for
        `dtls.record.send_segments(sock, data, segment_size, destination)`. What
        `send_segments` sealed comes as it was sealed, one buffer of segment_size-byte
        datagrams (the last may be shorter); any other datagram alone."""
        self._prepare_output(now)
        if not self._segment_runs:
            return [(d, len(d), a) for d, a in self.datagrams_to_send(now)]
        self._segment_runs = 0
        addr = self.peer_address
        out: list[tuple[Buffer, int, Address]] = []
        for entry in self._out:
            if entry.__class__ is SegmentRun:
                run: Any = entry
                out.append((run.data, run.stride, addr))
            elif entry:
                datagram: Any = entry
                out.append((bytes(datagram), len(datagram), addr))
        self._out.clear()
        self.last_sent = now
        probes = self._path.probes
        if probes:
            out += [(d, len(d), a) for d, a in probes]
            probes.clear()
        return out

    def _prepare_output(self, now: float) -> None:
        """A due ACK, and the flights waiting for the time, into the output."""
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._send_ack()
        if self._unsent:
            for flight in self._unsent:
                self._transmit(flight, now)
            self._unsent.clear()

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called, or None."""
        if self._handshake.state is HandshakeState.CLOSED:
            return None
        times = [f.deadline for f in self._flights.values() if f.deadline is not None]
        if self._ack_deadline is not None:
            times.append(self._ack_deadline)
        expiry = self._records.next_expiry()
        if expiry is not None:
            times.append(expiry)
        deadline = self._handshake_deadline()
        if deadline is not None:
            times.append(deadline)
        if self._path.challenge is not None:
            times.append(self._path.challenge.deadline)
        times.extend(t for t in self._liveness_deadlines() if t is not None)
        return min(times) if times else None

    def _liveness_deadlines(self) -> tuple[float | None, float | None]:
        """When to send a keep-alive, and when to give up on a silent peer."""
        if self._handshake.state is not HandshakeState.CONNECTED:
            return None, None
        ctx = self.context
        keepalive = self.last_sent + ctx.keepalive_interval if ctx.keepalive_interval else None
        idle = self.last_received + ctx.idle_timeout if ctx.idle_timeout else None
        return keepalive, idle

    def _handshake_deadline(self) -> float | None:
        if self._handshake.state is HandshakeState.CONNECTED or self.handshake_started is None:
            return None
        return self.handshake_started + self.context.handshake_timeout

    def handle_timer(self, now: float) -> None:
        """Retransmit flights whose timer expired (RFC 9147 §5.8), send delayed ACKs."""
        if self._handshake.state is HandshakeState.CLOSED:
            return
        self._records.expire(now)
        deadline = self._handshake_deadline()
        if deadline is not None and now >= deadline:
            self._close("handshake timed out", error=True)
            return
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._send_ack()
        keepalive, idle = self._liveness_deadlines()
        if idle is not None and now >= idle:
            self._close("idle timeout: nothing received", error=True)
            return
        if keepalive is not None and now >= keepalive:
            # The smallest valid record: an empty ACK (RFC 9147 §7), which keeps NAT
            # bindings open; RFC 6520 heartbeats have no DTLS 1.3 form.
            record, _ = self._records.seal(self._app_send_epoch, ContentType.ACK, encode_ack([]))
            self._emit(record)
            self.keepalives_sent += 1
        challenge = self._path.challenge
        if challenge is not None and now >= challenge.deadline:
            self._path.send_path_challenge(challenge, now)
        for kind, flight in list(self._flights.items()):
            if flight.deadline is None or now < flight.deadline:
                continue
            if flight.timeouts >= self.context.max_retransmissions:
                del self._flights[kind]
                what = "handshake" if kind is FlightKind.HANDSHAKE else kind.value
                self._close(
                    f"{what} timed out: no answer after {flight.timeouts} retransmissions",
                    error=True,
                )
                return
            flight.timeouts += 1
            self._rto.back_off()
            self._retransmit(flight, now)

    def next_event(self) -> Event | None:
        """The next event, or None."""
        events = self._events
        if len(events) == 1:  # clear() frees the array; pop(0) reallocs it to 0 bytes
            event = events[0]
            events.clear()
            return event
        return events.pop(0) if events else None

    @property
    def _confidentiality_limit(self) -> int:
        """Records one key may seal (RFC 9147 §4.5.3)."""
        return self._sealing_limit

    @_confidentiality_limit.setter
    def _confidentiality_limit(self, limit: int) -> None:
        self._sealing_limit = limit
        self._fast_send_until = _fast_send_until(limit)

    def send(self, data: Buffer) -> None:
        """Send one application-data record (RFC 9147 §6). Before the handshake completes
        the data is queued and sent once it does."""
        if self._handshake.state is not _CONNECTED:
            if self._handshake.state is _CLOSED:
                raise ConnectionStateError("connection is closed")
            if len(data) > MAX_PLAINTEXT:
                raise ValueError(f"a record carries at most {MAX_PLAINTEXT} bytes")
            self._pending_app.append(bytes(data))
            return
        sending = self._records.app_send
        if sending is not None and len(data) <= self._send_limit:
            seq = sending.next_seq
            if seq < self._fast_send_until:
                # the application epoch with the CID in use, in one call (RFC 9147 §4)
                sending.next_seq = seq + 1
                record = sending.sealer.seal(seq, data)  # type: ignore[union-attr]  # counted there
                if self._out:
                    self._emit(record)
                else:
                    self._out.append(record)
                return
        if len(data) > self._send_limit:
            if len(data) > MAX_PLAINTEXT:
                raise ValueError(f"a record carries at most {MAX_PLAINTEXT} bytes")
            raise ValueError(f"the peer accepts records of at most {self._send_limit} bytes")
        epoch = self._records.send_epochs[self._app_send_epoch]
        if epoch.next_seq >= self._confidentiality_limit:
            raise ConnectionStateError("AEAD limit reached: waiting for the KeyUpdate's ACK")
        record, _ = self._records.seal(self._app_send_epoch, _APPLICATION_DATA, data)
        self._emit(record)
        if epoch.next_seq >= self._confidentiality_limit * 3 // 4:
            self.update_keys(request_peer_update=False)  # RFC 9147 §4.5.3

    def send_batch(self, messages: Sequence[Buffer]) -> None:
        """`send` for each message, in order; on an established connection the records are
        sealed together, with one C call per ~64 KB (RFC 9147 §4)."""
        epoch = self._records.send_epochs.get(self._app_send_epoch)
        if (
            self._handshake.state is not _CONNECTED
            or epoch is None
            or epoch.next_seq + len(messages) >= self._sealing_limit * 3 // 4
            or (messages and max(map(len, messages)) > self._send_limit)
        ):
            for message in messages:  # errors and limits as `send` has them
                self.send(message)
            return
        if messages:
            sealed = self._records.seal_batch(self._app_send_epoch, _APPLICATION_DATA, messages)
            if min(map(len, sealed)) * 2 > self.context.max_datagram_size:
                # no two of them share a datagram (RFC 9147 §4.3): only the first may join
                # the one being filled
                self._emit(sealed[0])
                self._out += islice(sealed, 1, None)
            else:
                for record in sealed:
                    self._emit(record)

    def send_segments(self, data: Buffer, payload_len: int) -> None:
        """`send_batch` of `data` cut into `payload_len`-byte messages (the last may be
        shorter), sealed straight into one buffer at a fixed stride, one record per
        datagram (`RecordCipher.seal_segments`): `segments_to_send` hands it out as it is,
        for UDP GSO; `datagrams_to_send` as one datagram per record."""
        view = memoryview(data)
        if view.format != "B":
            view = view.cast("B")
        if payload_len <= 0:
            raise ValueError("payload_len must be at least 1")
        count = -(-len(view) // payload_len)
        epoch = self._records.send_epochs.get(self._app_send_epoch)
        if (
            self._handshake.state is not _CONNECTED
            or epoch is None
            or epoch.next_seq + count >= self._sealing_limit * 3 // 4
            or payload_len > self._send_limit
        ):
            messages = [view[i : i + payload_len] for i in range(0, len(view), payload_len)]
            return self.send_batch(messages)  # errors and limits as `send` has them
        if count:
            records, stride = self._records.seal_segments(
                self._app_send_epoch, _APPLICATION_DATA, view, payload_len
            )
            self._out.append(SegmentRun(records, stride))
            self._segment_runs += 1
        return None

    @property
    def send_blocked(self) -> bool:
        """True while `send` refuses: the AEAD confidentiality limit is reached and the
        KeyUpdate's ACK, which moves the send epoch on, has not come (RFC 9147 §4.5.3)."""
        epoch = self._records.send_epochs.get(self._app_send_epoch)
        return (
            self._handshake.state is _CONNECTED
            and epoch is not None
            and epoch.next_seq >= self._confidentiality_limit
        )

    def update_keys(self, request_peer_update: bool = True) -> None:
        """Send a KeyUpdate (RFC 9147 §8); our sending epoch moves on once it is
        acknowledged. A second call while one is outstanding is merged with it."""
        if self._handshake.state is not HandshakeState.CONNECTED:
            raise ConnectionStateError("keys can be updated only on an established connection")
        if self._awaiting_ack(FlightKind.KEY_UPDATE):
            return
        request = (
            KeyUpdateRequest.UPDATE_REQUESTED
            if request_peer_update
            else KeyUpdateRequest.UPDATE_NOT_REQUESTED
        )
        self._send_post_handshake(FlightKind.KEY_UPDATE, KeyUpdate(int(request)))

    def close(self) -> None:
        """Send close_notify and close (RFC 9846 §6.1)."""
        if self._handshake.state is HandshakeState.CLOSED:
            return
        self._send_alert(AlertDescription.CLOSE_NOTIFY)
        self._close("closed")

    def export_keying_material(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """RFC 9846 §7.5 exporter (with the dtls13 label prefix, RFC 9147 §5.9)."""
        handshake = self._handshake
        secret = handshake.secrets.get("exporter")
        if secret is None:
            raise ConnectionStateError("the handshake has not completed")
        if isinstance(label, str):
            label = label.encode()
        return export_keying_material(
            handshake.hash_name,
            secret,
            label,
            context,
            length,
            expand=self._records.provider.handshake.hkdf_expand,
        )

    def srtp_keys(self) -> SrtpKeys:
        """The SRTP master keys and salts exported from this connection (RFC 5764 §4.2)."""
        if self.srtp_profile is None:
            raise ConnectionStateError("no SRTP profile was negotiated")
        material = self.export_keying_material(
            SRTP_EXPORTER_LABEL, b"", keying_material_length(self.srtp_profile)
        )
        return SrtpKeys.from_keying_material(self.srtp_profile, material)

    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters."""
        c = self._records.counters
        epochs = self._records.receive_epochs
        newest = epochs[max(epochs)] if epochs else None
        started, done = self.handshake_started, self.handshake_completed_at
        return ConnectionStats(
            state=self._handshake.state.value,
            records_sealed=c.records_sealed,
            bytes_sealed=c.bytes_sealed,
            records_opened=c.records_opened,
            bytes_opened=c.bytes_opened,
            dropped_malformed=c.malformed,
            dropped_replayed=c.replayed,
            dropped_failed_authentication=c.failed_authentication,
            dropped_unknown_epoch=c.unknown_epoch,
            retransmissions=self.retransmissions,
            keepalives_sent=self.keepalives_sent,
            handshake_seconds=done - started if done is not None and started is not None else None,
            send_epoch=self._app_send_epoch,
            receive_epochs=tuple(sorted(epochs)),
            replay_window_size=self.context.replay_window,
            replay_window_next=newest.window.next_seq if newest is not None else 0,
        )

    # ---- as ssl.SSLSocket shows the negotiated parameters (dtls/peercert.py) ----
    def version(self) -> str | None:
        """ "DTLSv1.3" once the handshake completed, else None."""
        return PROTOCOL_VERSION if self.handshake_completed_at is not None else None

    def cipher(self) -> tuple[str, str, int] | None:
        """(suite name, "DTLSv1.3", secret bits) once the handshake completed, else None."""
        done = self.handshake_completed_at is not None and self.cipher_suite is not None
        return cipher_triple(self.cipher_suite) if done else None  # type: ignore[arg-type]

    def selected_alpn_protocol(self) -> str | None:
        return self.alpn_protocol

    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate as `ssl.SSLSocket.getpeercert()` gives it."""
        if self.handshake_completed_at is None:
            raise ValueError("handshake not done yet")
        verified = self.context.verify_mode != ssl.CERT_NONE
        return peer_certificate(self.peer_certificates, verified, binary_form)

    @property
    def handshake_complete(self) -> bool:
        return self._handshake.state is HandshakeState.CONNECTED

    @property
    def send_epoch(self) -> int:
        return self._app_send_epoch

    @property
    def record_counters(self) -> Any:
        return self._records.counters

    # ---- what the handshake negotiated (owned by `ClientHandshake`/`ServerHandshake`) ----
    @property
    def state(self) -> HandshakeState:
        """Where the handshake is (RFC 9846 Appendix A), or CLOSED."""
        return self._handshake.state

    @property
    def server_name(self) -> str | None:
        return self._handshake.server_name

    @property
    def session(self) -> Session | None:
        """The session to resume with (client): given, or from the latest ticket."""
        return self._handshake.session

    @property
    def cipher_suite(self) -> int | None:
        return self._handshake.cipher_suite

    @property
    def group(self) -> int | None:
        return self._handshake.group

    @property
    def alpn_protocol(self) -> str | None:
        return self._handshake.alpn_protocol

    @property
    def peer_certificates(self) -> tuple[Any, ...]:
        return self._handshake.peer_certificates

    @property
    def peer_public_key(self) -> bytes | None:
        """The peer's raw public key (RFC 7250), when it sent one."""
        return self._handshake.peer_public_key

    @property
    def srtp_profile(self) -> int | None:
        return self._handshake.srtp_profile

    @property
    def resumed(self) -> bool:
        return self._handshake.resumed

    @property
    def early_data_accepted(self) -> bool:
        return self._handshake.early_data_accepted

    @property
    def early_data_rejected(self) -> list[bytes]:
        """Client: 0-RTT data the server refused (RFC 9846 §4.2.10), for the application
        to send again or drop."""
        handshake = self._handshake
        return handshake.early_data_rejected if isinstance(handshake, ClientHandshake) else []

    @early_data_rejected.setter
    def early_data_rejected(self, value: list[bytes]) -> None:
        if isinstance(self._handshake, ClientHandshake):
            self._handshake.early_data_rejected = value

    @property
    def require_cookie(self) -> bool:
        """Server: answer a ClientHello without a cookie with a cookie HRR (RFC 9147 §5.1)."""
        handshake = self._handshake
        return isinstance(handshake, ServerHandshake) and handshake.require_cookie

    @property
    def _client_random(self) -> bytes:
        return self._handshake.client_random

    # ---- connection IDs (owned by `ConnectionIdUpdates`, RFC 9147 §9) ----
    def issue_connection_ids(self, count: int, *, immediate: bool = False) -> list[bytes]:
        """Give the peer `count` new CIDs to send to us with (RFC 9147 §9 NewConnectionId);
        all our CIDs stay valid. With `immediate` the peer switches to the first."""
        return self._path.issue_connection_ids(count, immediate=immediate)

    def request_connection_ids(self, count: int) -> None:
        """Ask the peer for `count` spare CIDs (RFC 9147 §9 RequestConnectionId)."""
        self._path.request_connection_ids(count)

    def use_next_peer_cid(self) -> bytes | None:
        """Send with the peer's next spare CID, e.g. after our address changed (§9)."""
        return self._path.use_next_peer_cid()

    @property
    def local_cid(self) -> bytes | None:
        """The connection ID we receive with (RFC 9147 §9), None if not negotiated."""
        return self._path.local_cid

    @property
    def local_cids(self) -> tuple[bytes, ...]:
        """Every CID we gave the peer; records may carry any of them."""
        return self._path.local_cids

    @property
    def peer_cid(self) -> bytes | None:
        """The connection ID our records to the peer carry."""
        return self._path.peer_cid

    # ---- datagram assembly ----
    def _emit(self, record: bytes) -> None:
        out = self._out
        if out and len(out[-1]) + len(record) <= self.context.max_datagram_size:
            last = out[-1]
            if last.__class__ is bytes:  # a second record joins it: copy once
                out[-1] = last = bytearray(last)
            elif last.__class__ is SegmentRun:  # a run is never joined
                out.append(record)
                return
            last += record  # type: ignore[operator]
        else:
            out.append(record)

    def _room(self) -> int:
        limit = self.context.max_datagram_size
        if not self._out or self._out[-1].__class__ is SegmentRun:
            return limit
        return limit - len(self._out[-1])

    # ---- flights (RFC 9147 §5.8) ----
    def _handshake_message(self, epoch: int, message: Any) -> OutgoingMessage:
        return self._raw_handshake_message(epoch, *encode_handshake(message))

    def _raw_handshake_message(self, epoch: int, msg_type: int, body: bytes) -> OutgoingMessage:
        if msg_type != _SERVER_HELLO or body[2:34] != HELLO_RETRY_REQUEST_RANDOM:
            self._handshake.transcript.add_message(msg_type, body)
        out = OutgoingMessage(epoch, msg_type, self._next_message_seq, body)
        self._next_message_seq += 1
        return out

    def _send_flight(self, messages: list[tuple[int, Any]], now: float, *, needs_ack: bool) -> None:
        """Send our next handshake flight; it replaces (implicitly acknowledges) the
        previous one, and acknowledges the peer's (RFC 9147 §7.1)."""
        flight = OutgoingFlight(
            [self._handshake_message(epoch, m) for epoch, m in messages], needs_ack=needs_ack
        )
        self._start_flight(flight, now)

    def _start_flight(self, flight: OutgoingFlight, now: float) -> None:
        self._flights[_HANDSHAKE_FLIGHT] = flight
        self._ack_pending.clear()
        self._ack_deadline = None
        self._transmit(flight, now)

    def _send_post_handshake(self, kind: FlightKind, *messages: Any) -> None:
        """One post-handshake flight (RFC 9147 §5.8.4) of one message, or of several
        NewSessionTickets sent together, started in turn by `_start_post_handshake`."""
        if not self._message_seq_room(len(messages)):
            raise ConnectionStateError("message_seq is exhausted (RFC 9147 §5.2: 16 bits)")
        self._post_handshake_queue.append((kind, messages))
        self._start_post_handshake()

    def _message_seq_room(self, count: int) -> bool:
        """Whether `count` more handshake messages fit in the 16-bit message_seq."""
        queued = sum(len(messages) for _, messages in self._post_handshake_queue)
        return self._next_message_seq + queued + count <= MAX_MESSAGE_SEQ + 1

    def _start_post_handshake(self) -> None:
        """Start the queued post-handshake flights that may go (RFC 9147 §8): a KeyUpdate
        once every earlier flight is acknowledged, so that its ACK moves us to the new
        epoch ("the KeyUpdate and all preceding messages have been acknowledged"); a
        later message once the KeyUpdate is ("A KeyUpdate message terminates the
        post-handshake stream in an epoch")."""
        queue = self._post_handshake_queue
        while queue and self._handshake.state is _CONNECTED:
            kind, messages = queue[0]
            if _KEY_UPDATE_FLIGHT in self._flights or (
                kind is _KEY_UPDATE_FLIGHT and any(f.needs_ack for f in self._flights.values())
            ):
                return
            del queue[0]
            flight = OutgoingFlight(
                [self._handshake_message(self._app_send_epoch, m) for m in messages],
                needs_ack=True,
            )
            self._flights[kind] = flight
            self._unsent.append(flight)  # sent by datagrams_to_send(now), which knows the time

    def _transmit(self, flight: OutgoingFlight, now: float) -> None:
        # Consecutive fragments of one epoch share a record while the datagram has room
        # (RFC 9147 §4.4 lets a record carry several handshake fragments): fewer records,
        # and no record closed with room a fragment could have used.
        fragments: list[bytes] = []  # the open record's plaintext
        used = 0  # its length
        carried: list[tuple[int, int, int]] = []  # what it carries: (index, start, end)
        epoch = -1
        sent = flight.records  # record number -> what it carried (RFC 9147 §7)
        out = self._out
        limit = self.context.max_datagram_size
        send_room = self._send_limit - DTLS_HANDSHAKE_HEADER_LEN
        overhead = cap = 0
        for index, message in enumerate(flight.messages):
            if not message.unacked:
                continue
            if message.epoch != epoch:
                if fragments:
                    sent[self._send_handshake_record(epoch, fragments)] = carried
                    fragments, used, carried = [], 0, []
                epoch = message.epoch
                overhead = self._records.overhead(epoch) + DTLS_HANDSHAKE_HEADER_LEN
            data = message.body
            size = len(data)
            for start, end in message.unacked:
                pos = start
                while True:
                    if not fragments:
                        # what the open datagram (self._room()) and the record size
                        # limit allow the record about to start
                        last = out[-1] if out else None
                        free = (
                            limit
                            if last is None or last.__class__ is SegmentRun
                            else limit - len(last)
                        )
                        cap = min(free - overhead, send_room)
                        if cap < min(MIN_FRAGMENT, end - pos) or cap <= 0:
                            out.append(bytearray())
                            cap = min(limit - overhead, send_room)
                    room = cap - used
                    if room <= 0:
                        sent[self._send_handshake_record(epoch, fragments)] = carried
                        fragments, used, carried = [], 0, []
                        continue
                    take = end - pos if end - pos < room else room
                    fragments.append(
                        encode_handshake_fragment(
                            message.msg_type, size, message.message_seq, pos, data[pos : pos + take]
                        )
                    )
                    used += DTLS_HANDSHAKE_HEADER_LEN + take
                    carried.append((index, pos, pos + take))
                    pos += take
                    if pos >= end:
                        break
        if fragments:
            sent[self._send_handshake_record(epoch, fragments)] = carried
        flight.transmissions += 1
        flight.last_sent = now
        if flight.first_sent is None:
            flight.first_sent = now
        flight.deadline = now + self._rto.value

    def _send_handshake_record(self, epoch: int, fragments: list[bytes]) -> RecordNumber:
        """One record of handshake fragments into the output; its record number."""
        record, number = self._records.seal(epoch, _HANDSHAKE, b"".join(fragments))
        self._emit(record)
        return number

    def _retransmit(self, flight: OutgoingFlight, now: float) -> None:
        self.retransmissions += 1
        logger.debug("%s: retransmission %d (RFC 9147 §5.8)", self.peer_address, flight.timeouts)
        self._transmit(flight, now)

    def _flight_acknowledged(self, kind: FlightKind, now: float) -> None:
        flight = self._flights.pop(kind, None)
        if flight is None:
            return
        if flight.transmissions == 1 and flight.first_sent is not None:
            self._rto.measured(now - flight.first_sent)  # RFC 9147 §5.8.2
        if kind is _KEY_UPDATE_FLIGHT:
            self._advance_send_epoch()
        elif kind is _HANDSHAKE_FLIGHT and self._handshake.state is _CONNECTED:
            # The server has our Finished: it will not resend its flight, and we will not
            # resend ours; the handshake keys can go (RFC 9147 §5.8.1).
            self._records.drop_send(2)
            self._records.drop_receive(2)
        self._start_post_handshake()

    # ---- ACKs (RFC 9147 §7) ----
    def _to_acknowledge(self, number: RecordNumber) -> None:
        """Add a handshake record to the ACK list, which keeps the latest MAX_ACK_RECORDS
        (RFC 9147 §7): the current flight's during the handshake, after it the latest
        post-handshake records, repeated in every ACK (they "MAY cover more than one
        flight", §7.1) so that a lost ACK costs no retransmission."""
        pending = self._ack_pending
        if number in pending:
            return
        pending.append(number)
        if len(pending) > MAX_ACK_RECORDS:
            del pending[0]

    def _schedule_ack(self, now: float, immediate: bool) -> None:
        """ACK what `_ack_pending` holds at once, or after 1/4 of the retransmit timer."""
        if not self._version_known or not self._ack_pending:
            return
        if immediate:
            self._ack_deadline = now
        elif self._ack_deadline is None:
            self._ack_deadline = now + self._rto.value / 4

    def _send_ack(self) -> None:
        self._ack_deadline = None
        if not self._ack_pending:
            return
        numbers = sorted(self._ack_pending)  # distinct: `_to_acknowledge` keeps them so
        # RFC 9147 §7: the highest available sending epoch, never 1 (early data): 0 when
        # 1 is the highest (a client's before its handshake keys)
        epoch = max(self._records.send_epochs)
        if epoch == 1:
            epoch = 0
        if self._handshake.state is not _CONNECTED:
            # During the handshake an ACK's epoch is at least that of every record it
            # acknowledges; after it the epochs of the two directions are apart.
            numbers = [n for n in numbers if n[0] <= epoch]
            if not numbers:
                return
        room = self.context.max_datagram_size - self._records.overhead(epoch) - 2
        fit = min(MAX_ACK_RECORDS, room // ACK_RECORD_NUMBER_LEN)
        record, _ = self._records.seal(epoch, _ACK, encode_ack(numbers[-fit:] if fit > 0 else []))
        self._emit(record)

    def _receive_ack(self, record: InboundRecord, now: float) -> None:
        if record.epoch == 0 and not self._version_known:
            return  # RFC 9147 §7: ignored until DTLS 1.3 is selected
        numbers = decode_ack(record.payload)
        if self._handshake.state is not _CONNECTED or record.epoch < 3:
            # RFC 9147 §7: during the handshake an ACK's epoch is at least that of
            # every record it acknowledges.
            if numbers and max(numbers)[0] > record.epoch:
                raise IllegalParameter("ACK for an epoch above its own")
        elif any(not self._records.was_sent(number) for number in numbers):
            # After it the peer ACKs in its own highest epoch, which may be below ours
            # (RFC 9147 §7, §8), but never a record we have not sent.
            raise IllegalParameter("ACK for a record never sent")
        for kind, flight in list(self._flights.items()):
            if not flight.on_ack(numbers):
                continue
            if flight.acknowledged:
                self._flight_acknowledged(kind, now)
            else:
                self._retransmit(flight, now)  # RFC 9147 §7.2: resend what is missing

    # ---- inbound records ----
    def _receive_record(self, record: InboundRecord, now: float, addr: Address = None) -> None:
        content_type = record.content_type
        if content_type == _HANDSHAKE:  # a module constant: cheaper than the enum member's
            self._receive_handshake(record, now)
        elif content_type == _APPLICATION_DATA:
            self._receive_application_data(record)
        elif content_type == _ACK:
            self._receive_ack(record, now)
        elif content_type == _ALERT:
            self._receive_alert(record)
        elif content_type == RRC_CONTENT_TYPE and self._path.rrc and record.epoch >= 3:
            self._path.receive_rrc(record, addr, now)
        else:
            raise UnexpectedMessage(f"unexpected record content type {content_type}")

    def _receive_application_data(self, record: InboundRecord) -> None:
        if record.epoch == 1 and not self.is_client:
            # 0-RTT (RFC 9846 §4.2.10): within the ticket's limit, before client Finished.
            self._early_received += len(record.payload)
            if self._early_received > self.context.max_early_data_size:
                raise UnexpectedMessage("more early data than max_early_data_size")
            self._events.append(DataReceived(record.payload, early=True))
            return
        if record.epoch < 3:
            raise UnexpectedMessage("application data before the application epoch")
        if self._handshake.state is HandshakeState.CONNECTED:
            self._events.append(data_received(record.payload))
        elif len(self._early_records) < MAX_EARLY_RECORDS:
            # RFC 9147 §5.8.1: the peer's Finished may still be on its way.
            self._early_records.append(record.payload)

    def _receive_alert(self, record: InboundRecord) -> None:
        if record.epoch == 0 and self._records.receive_epochs:
            return  # a plaintext alert once keys exist is not authentic: drop it
        level, description = decode_alert(record.payload)
        self._events.append(AlertReceived(level, description))
        if description == AlertDescription.CLOSE_NOTIFY:
            if not self._closing_alert_sent:
                self._send_alert(AlertDescription.CLOSE_NOTIFY)
            self._close("peer closed the connection", alert=description, by_peer=True)
        elif description == AlertDescription.USER_CANCELED:
            return  # RFC 9846 §6.1: followed by close_notify
        else:
            # RFC 9846 §6: every other alert is fatal, whatever its level.
            self._close(
                f"peer sent fatal alert {alert_name(description)}",
                alert=description,
                by_peer=True,
                error=True,
            )

    def _receive_handshake(self, record: InboundRecord, now: float) -> None:
        epoch, record_seq, _, payload = record
        fragments = decode_handshake_fragments(payload)
        accepted = old = False
        reassembler = self._reassembler
        handshake = self._handshake
        state = handshake.state
        is_client = self.is_client
        if epoch == 0 and state is not (_WAIT_SH if is_client else _START):
            # Plaintext handshake data after the hellos is unauthenticated: it may only
            # show that the peer retransmits; it never changes our state (RFC 9147 §6).
            if state is not _CONNECTED and any(
                f.message_seq < reassembler.next_receive_seq for f in fragments
            ):
                self._on_retransmission_received(record, now)
            return
        # the server's first flight in: a ClientHello (RFC 9147 §5.1)
        server_start = not is_client and state is _START
        for fragment in fragments:
            msg_type, _, message_seq, _, _, _ = fragment
            if (
                server_start
                and msg_type == _CLIENT_HELLO
                and message_seq != reassembler.next_receive_seq
            ):
                # A ClientHello may open with message_seq 0 or, after a stateless HRR, 1.
                reassembler.restart_at(message_seq)
            result = reassembler.add(fragment, epoch)
            if result == FragmentResult.ACCEPTED:
                accepted = True
                if msg_type == _CLIENT_HELLO and isinstance(handshake, ServerHandshake):
                    handshake.client_hello_record_seq = record_seq
            elif result == FragmentResult.OLD:
                old = True
        if accepted:
            self._to_acknowledge((epoch, record_seq))
        while handshake.state is not _CLOSED:
            message = reassembler.pop()
            if message is None:
                break
            if handshake.state is not _CONNECTED:
                handshake.handle(message, now)  # RFC 9846 Appendix A
            else:
                self._handle_post_handshake_message(message, now)
        if handshake.state is _CLOSED:
            return
        if old:
            self._on_retransmission_received(record, now)
        elif accepted:
            # RFC 9147 §7.1: ACK a gap in a handshake flight at once, a partial flight
            # after a short delay; post-handshake records always after the delay.
            self._schedule_ack(now, immediate=epoch < 3 and reassembler.has_future())

    def _on_retransmission_received(self, record: InboundRecord, now: float) -> None:
        """The peer resent messages we already processed (RFC 9147 §5.8.1): resend our
        answering flight if it is unacknowledged, else acknowledge again."""
        flight = self._flights.get(_HANDSHAKE_FLIGHT)
        if flight is not None and record.epoch < 3 and not _acked_any(flight):
            # Once per retransmitted flight, not once per record of it.
            if flight.last_sent is None or now - flight.last_sent >= self._rto.value / 2:
                self._retransmit(flight, now)
            return
        if self._version_known:
            self._to_acknowledge((record.epoch, record.seq))
            # A duplicate within the flight we are still receiving (ours was implicitly
            # acknowledged by its start) is no disruption: the flight's own delayed ACK,
            # or our answer, covers it (RFC 9147 §7.1). Otherwise ACK at once, but a
            # post-handshake record after the delay, as its first copy.
            receiving = flight is None and self._handshake.state is not _CONNECTED
            self._schedule_ack(now, immediate=not receiving and record.epoch < 3)

    # ---- handshake messages ----
    def _handle_post_handshake_message(self, message: ReceivedMessage, now: float) -> None:
        handshake = self._handshake
        msg_type = message.msg_type
        if message.epoch < 3:
            raise UnexpectedMessage("handshake message in a handshake epoch after completion")
        if message.epoch != max(self._records.receive_epochs):
            # RFC 9147 §8: it follows a KeyUpdate of its epoch, which ended the epoch's
            # post-handshake stream (messages are handled in message_seq order).
            raise UnexpectedMessage("post-handshake message after a KeyUpdate in its epoch")
        handler = self._post_handshake_handlers().get(msg_type)
        if handler is None:
            raise UnexpectedMessage(f"{type_name(msg_type)} in state {handshake.state.value}")
        handler(message, now)

    def _post_handshake_handlers(self) -> dict[int, Callable[[ReceivedMessage, float], None]]:
        handlers: dict[int, Callable[[ReceivedMessage, float], None]] = {
            HandshakeType.KEY_UPDATE: self._receive_key_update,
            HandshakeType.NEW_CONNECTION_ID: self._path.receive_new_connection_id,
            HandshakeType.REQUEST_CONNECTION_ID: self._path.receive_request_connection_id,
        }
        if isinstance(self._handshake, ClientHandshake):
            handlers[HandshakeType.NEW_SESSION_TICKET] = self._handshake.receive_new_session_ticket
        return handlers

    # ---- both sides ----
    def _apply_record_size_limits(self, peer_limit: int) -> None:
        """RFC 8449 §4: the limits count the inner content type, so the content is one
        byte less; ours applies once the peer has seen it."""
        self._send_limit = min(MAX_PLAINTEXT, peer_limit - 1)
        own = self.context.record_size_limit
        if own is not None:
            self._receive_limit = min(MAX_PLAINTEXT, own - 1)

    def _implicit_ack(self, now: float) -> None:
        """The peer's next flight acknowledges ours (RFC 9147 §7.2)."""
        if _HANDSHAKE_FLIGHT in self._flights:
            self._flight_acknowledged(_HANDSHAKE_FLIGHT, now)

    def _version_selected(self) -> None:
        self._version_known = True  # ACKs from now on (RFC 9147 §7)

    def _mirror_numbering(self, message_seq: int, record_seq: int) -> None:
        """Number our messages and plaintext records on from the ClientHello's, as a
        stateless server must (RFC 9147 §5.1)."""
        self._next_message_seq = message_seq
        self._records.send_epochs[0].next_seq = record_seq

    def _negotiate_connection_ids(self, peer_cid: bytes | None, rrc: bool) -> None:
        self._path.negotiated(peer_cid, rrc)

    def _apply_aead_limits(self, suite: int) -> None:
        """RFC 9147 §4.5.3: the suite's limits, unless the context sets its own."""
        confidentiality, integrity = _AEAD_LIMITS[suite]  # IntEnum keys: int lookup
        ctx = self.context
        self._confidentiality_limit = ctx.confidentiality_limit or confidentiality
        self._integrity_limit = ctx.integrity_limit or integrity

    def _start_application_epoch(self, suite: int, secret: bytes) -> None:
        """Application data goes in epoch 3 from now on (RFC 9147 §6.1)."""
        self._records.install_send(3, suite, secret)
        self._app_send_epoch = 3

    def _handshake_completed(self, now: float) -> None:
        logger.debug("%s: handshake complete", self.peer_address)
        self.last_received = self.last_sent = now
        self.handshake_completed_at = now
        handshake = self._handshake
        self._events.append(
            HandshakeCompleted(
                version="DTLSv1.3",
                cipher_suite=_SUITE_NAMES.get(handshake.suite) or CipherSuite(handshake.suite).name,
                group=_group_name(handshake.group),
                alpn_protocol=handshake.alpn_protocol,
                peer_certificates=handshake.peer_certificates,
                resumed=handshake.resumed,
                early_data_accepted=handshake.early_data_accepted,
            )
        )
        pending, self._pending_app = self._pending_app, []
        for data in pending:
            self.send(data)

    def _release_early_records(self) -> None:
        """Application data that arrived before the peer's Finished (RFC 9147 §5.8.1)."""
        for payload in self._early_records:
            self._events.append(data_received(payload))
        self._early_records.clear()

    def _queue_event(self, event: Event) -> None:
        self._events.append(event)

    def _awaiting_ack(self, kind: FlightKind) -> bool:
        return kind in self._flights or any(k is kind for k, _ in self._post_handshake_queue)

    def _path_validated(self, addr: Address) -> None:
        """A return routability check answered from `addr`: the connection moves there
        (draft-ietf-tls-dtls-rrc §5.1)."""
        old, self.peer_address = self.peer_address, addr
        self._events.append(PeerAddressChanged(old, addr))

    # ---- post-handshake (RFC 9147 §5.8.4, §8) ----
    def _receive_key_update(self, message: ReceivedMessage, now: float) -> None:
        update = decode_handshake_body(message.msg_type, message.body)
        assert isinstance(update, KeyUpdate)
        if update.request_update not in (0, 1):
            raise IllegalParameter("invalid KeyUpdate request")
        epoch = message.epoch
        # the newest (`_handle_post_handshake_message`)
        current = self._records.receive_epochs[epoch]
        handshake = self._handshake
        secret = next_application_traffic_secret(
            handshake.hash_name, current.secret, expand=self._records.provider.handshake.hkdf_expand
        )
        self._records.install_receive(epoch + 1, handshake.suite, secret)
        label = "SERVER" if self.is_client else "CLIENT"
        handshake.log_secret(f"{label}_TRAFFIC_SECRET_{epoch - 2}", secret)
        self._events.append(KeyUpdated("receive", epoch + 1))
        if update.request_update == KeyUpdateRequest.UPDATE_REQUESTED and (
            self._awaiting_ack(FlightKind.KEY_UPDATE) or self._message_seq_room(1)
        ):
            # RFC 9147 §8: a request we cannot honour within the limits is ignored
            self.update_keys(request_peer_update=False)

    def _advance_send_epoch(self) -> None:
        epoch = self._app_send_epoch
        handshake = self._handshake
        secret = next_application_traffic_secret(
            handshake.hash_name,
            self._records.send_epochs[epoch].secret,
            expand=self._records.provider.handshake.hkdf_expand,
        )
        self._records.install_send(epoch + 1, handshake.suite, secret)
        self._app_send_epoch = epoch + 1
        # Old keys go once no unacknowledged message needs them for a retransmission
        # (RFC 9147 §4.2.1: retransmissions use the original epoch).
        in_use = {m.epoch for f in self._flights.values() for m in f.messages}
        for old in [e for e in self._records.send_epochs if 3 <= e <= epoch]:
            if old not in in_use:
                self._records.drop_send(old)
        label = "CLIENT" if self.is_client else "SERVER"
        handshake.log_secret(f"{label}_TRAFFIC_SECRET_{epoch - 2}", secret)
        self._events.append(KeyUpdated("send", epoch + 1))

    # ---- alerts and closing ----
    def _send_alert(self, description: int) -> None:
        level = (
            AlertLevel.WARNING
            if description in (AlertDescription.CLOSE_NOTIFY, AlertDescription.USER_CANCELED)
            else AlertLevel.FATAL
        )
        epoch = self._app_send_epoch or max(e for e in self._records.send_epochs if e != 1)
        try:
            record, _ = self._records.seal(
                epoch, ContentType.ALERT, encode_alert(level, description)
            )
        except Exception:  # no keys to send it with: the peer will time out
            return
        self._emit(record)
        self._closing_alert_sent = True

    def _fail(self, error: ProtocolError) -> None:
        self._send_alert(error.alert)
        self._close(str(error), alert=int(error.alert), error=True)

    def _close(
        self, reason: str, *, alert: int | None = None, by_peer: bool = False, error: bool = False
    ) -> None:
        if self._handshake.state is HandshakeState.CLOSED:
            return
        _log_close(self, reason, alert, by_peer, error)
        self._handshake.state = HandshakeState.CLOSED
        self._flights.clear()
        self._post_handshake_queue.clear()
        self._ack_deadline = None
        self._events.append(ConnectionClosed(reason, alert, by_peer, error))


_APPLICATION_DATA = int(ContentType.APPLICATION_DATA)
_CONNECTED = HandshakeState.CONNECTED
_CLOSED = HandshakeState.CLOSED  # module constants: an enum member's lookup costs ~0.2 µs
_START = HandshakeState.START
_WAIT_SH = HandshakeState.WAIT_SH
_CLIENT_HELLO = int(HandshakeType.CLIENT_HELLO)
_HANDSHAKE = int(ContentType.HANDSHAKE)
_ACK = int(ContentType.ACK)
_ALERT = int(ContentType.ALERT)
_SERVER_HELLO = int(HandshakeType.SERVER_HELLO)
_HANDSHAKE_FLIGHT = FlightKind.HANDSHAKE
_KEY_UPDATE_FLIGHT = FlightKind.KEY_UPDATE


def _datagrams_of(entry: bytes | bytearray | SegmentRun) -> Sequence[bytes | bytearray]:
    return entry.datagrams() if isinstance(entry, SegmentRun) else (entry,)


def _acked_any(flight: OutgoingFlight) -> bool:
    return any(m.unacked != [(0, len(m.body))] for m in flight.messages)


def _log_close(
    conn: Connection, reason: str, alert: int | None, by_peer: bool, error: bool
) -> None:
    """A failure at INFO (peer, alert, reason), an orderly close at DEBUG."""
    if not logger.isEnabledFor(logging.INFO if error else logging.DEBUG):
        return
    what = "connection" if conn.handshake_completed_at is not None else "handshake"
    if alert is not None:
        reason = f"{reason} ({alert_name(alert)} {'received' if by_peer else 'sent'})"
    if error:
        logger.info("%s: %s failed: %s", conn.peer_address, what, reason)
    else:
        logger.debug("%s: %s closed: %s", conn.peer_address, what, reason)
