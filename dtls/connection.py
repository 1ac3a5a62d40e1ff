"""The sans-I/O DTLS 1.3 connection (RFC 9147).

A `Connection` takes datagrams and the time, and gives datagrams, a timer and events. It
never reads a clock or touches a socket: front-ends (`dtls.aio`, `dtls.sync`, `dtls.sim`)
do. Handshake messages are handled by the client and server state machines of RFC 9846
Appendix A; flights, fragments, ACKs and retransmission follow RFC 9147 §5 and §7.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import crypto
from .config import Context, CookieMode
from .cookie import make_cookie, open_cookie
from .errors import (
    BadCertificate,
    BadRecordMac,
    CertificateRequired,
    ConnectionStateError,
    DecodeError,
    DecryptError,
    DTLSError,
    HandshakeFailure,
    IllegalParameter,
    InternalError,
    MissingExtension,
    NoApplicationProtocol,
    ProtocolError,
    ProtocolVersionError,
    RecordOverflow,
    TooManyCidsRequested,
    UnexpectedMessage,
    UnsupportedCertificate,
    UnsupportedExtension,
)
from .events import (
    AlertReceived,
    ConnectionClosed,
    ConnectionIdsIssued,
    DataReceived,
    Event,
    HandshakeCompleted,
    KeyUpdated,
    PeerAddressChanged,
    SessionTicketReceived,
)
from .iana import (
    DTLS12_LEGACY_VERSION,
    DTLS13_VERSION,
    AlertDescription,
    AlertLevel,
    CipherSuite,
    ContentType,
    ExtensionType,
    HandshakeType,
    KeyUpdateRequest,
    NamedGroup,
    PskKeyExchangeMode,
)
from .keyschedule import (
    KeySchedule,
    Transcript,
    compute_binder,
    export_keying_material,
    finished_verify_data,
    next_application_traffic_secret,
    resumption_psk,
    suite_hash_name,
)
from .messages import (
    DTLS_HANDSHAKE_HEADER_LEN,
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    Finished,
    KeyShareEntry,
    KeyUpdate,
    NewConnectionId,
    NewSessionTicket,
    OfferedPsks,
    PskIdentity,
    RequestConnectionId,
    ServerHello,
    client_hello_with_binders,
    decode_ack,
    decode_alert,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_ack,
    encode_alert,
    encode_handshake_body,
    encode_handshake_fragment,
    peek_client_hello_cookie,
    transcript_bytes,
    truncated_client_hello,
)
from .path import (
    MAX_CHALLENGES,
    RRC_CONTENT_TYPE,
    RRC_EXTENSION,
    ConnectionIds,
    PathChallenge,
    RrcMessageType,
    decode_rrc,
    encode_rrc,
)
from .record import PLAINTEXT_HEADER_LEN, RecordKind, seal_plaintext, split_datagram
from .record_layer import InboundRecord, RecordLayer
from .reliability import (
    FragmentResult,
    HandshakeReassembler,
    OutgoingFlight,
    OutgoingMessage,
    ReceivedMessage,
    RecordNumber,
    RetransmitTimer,
)
from .session import ExternalPsk, Session, TicketContents
from .srtp import EXPORTER_LABEL as SRTP_EXPORTER_LABEL
from .srtp import (
    SrtpKeys,
    check_server_choice,
    decode_use_srtp,
    encode_use_srtp,
    keying_material_length,
    select_profile,
)
from .stats import ConnectionStats

MAX_PLAINTEXT = 1 << 14  # RFC 9846 §5.1
# Certificate types (RFC 7250 §3)
X509 = 0
RAW_PUBLIC_KEY = 2

# AEAD limits per key (RFC 9147 §4.5.3, RFC 9846 §5.5): records protected, and records
# failing authentication. CCM_8's 2^7 forgery bound is why it is off by default.
_AEAD_LIMITS = {
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


class _Flight(Enum):
    HANDSHAKE = "handshake"
    KEY_UPDATE = "key_update"
    NEW_SESSION_TICKET = "new_session_ticket"
    NEW_CONNECTION_ID = "new_connection_id"
    REQUEST_CONNECTION_ID = "request_connection_id"


@dataclass
class _Psk:
    """A PSK offered (client) or accepted (server), RFC 9846 §4.2.11."""

    identity: bytes
    key: bytes
    hash_name: str
    external: bool
    obfuscated_age: int = 0
    session: Session | None = None
    ticket: TicketContents | None = None


_SUITE_FOR_HASH = {
    "sha256": CipherSuite.TLS_AES_128_GCM_SHA256,
    "sha384": CipherSuite.TLS_AES_256_GCM_SHA384,
}


def _group_name(group: int | None) -> str | None:
    if group is None:
        return None
    try:
        return NamedGroup(group).name.lower()
    except ValueError:
        return f"0x{group:04x}"


# ---------------------------------------------------------------------------------------
# Negotiation shared by the connection and the stateless cookie exchange
# ---------------------------------------------------------------------------------------


def _check_client_hello(ch: ClientHello) -> None:
    """Checks every server makes before anything else (RFC 9147 §5.3, RFC 9846 §4.1.2)."""
    if not ch.supported_versions or DTLS13_VERSION not in ch.supported_versions:
        raise ProtocolVersionError("client does not offer DTLS 1.3")
    if ch.legacy_version != DTLS12_LEGACY_VERSION:
        raise ProtocolVersionError("legacy_version must be DTLS 1.2 (RFC 9147 §5.3)")
    if ch.legacy_cookie:
        raise IllegalParameter("legacy_cookie must be empty in DTLS 1.3")
    if ch.legacy_compression_methods != b"\x00":
        raise IllegalParameter("legacy_compression_methods must be null only")
    if ch.pre_shared_key is not None and ch.psk_key_exchange_modes is None:
        raise MissingExtension("pre_shared_key without psk_key_exchange_modes")  # §4.2.9
    if ch.pre_shared_key is None:
        if ch.signature_algorithms is None:
            raise MissingExtension("signature_algorithms is required without a PSK")
        if ch.supported_groups is None or ch.key_share is None:
            raise MissingExtension("supported_groups and key_share are required without a PSK")


def _select_suite(context: Context, ch: ClientHello, hash_name: str | None = None) -> int:
    """The server's most preferred suite that the client offers (RFC 9846 §4.1.1), with
    `hash_name` when a PSK fixes the hash (§4.2.11)."""
    for suite in context.cipher_suites:
        if suite in ch.cipher_suites and hash_name in (None, suite_hash_name(suite)):
            return int(suite)
    raise HandshakeFailure("no cipher suite in common")


def _select_key_share(context: Context, ch: ClientHello) -> KeyShareEntry | None:
    """The first of the client's shares for a group we accept (RFC 9846 §4.2.8)."""
    offered = ch.supported_groups or []
    for entry in ch.key_share or []:
        if entry.group in context.groups and entry.group in offered:
            return entry
    return None


def _select_retry_group(context: Context, ch: ClientHello) -> int:
    """The group a HelloRetryRequest asks for (RFC 9846 §4.1.4); 0 for none (psk_ke)."""
    if ch.supported_groups is None:
        return 0
    for group in context.groups:
        if group in (ch.supported_groups or []):
            return int(group)
    raise HandshakeFailure("no group in common")


def _hello_retry_request(
    context: Context,
    ch: ClientHello,
    ch_body: bytes,
    addr: Address,
    now: float,
    suite: int,
    group: int,
) -> bytes:
    """A HelloRetryRequest body carrying a stateless cookie (RFC 9147 §5.1)."""
    hash_name = suite_hash_name(suite)
    ch_hash = hashlib.new(hash_name, transcript_bytes(HandshakeType.CLIENT_HELLO, ch_body)).digest()
    cookie = make_cookie(context.cookie_secrets()[0], addr, now, suite, group, ch_hash)
    return _encode_hello_retry(ch, suite, group, cookie)


def _encode_hello_retry(ch: ClientHello, suite: int, group: int, cookie: bytes) -> bytes:
    hrr = ServerHello(
        random=HELLO_RETRY_REQUEST_RANDOM,
        cipher_suite=suite,
        supported_versions=DTLS13_VERSION,
        selected_group=group or None,
        cookie=cookie,
    )
    return encode_handshake_body(hrr)


def _plaintext_handshake_record(
    msg_type: int, message_seq: int, body: bytes, record_seq: int
) -> bytes:
    fragment = encode_handshake_fragment(msg_type, len(body), message_seq, 0, body)
    return seal_plaintext(ContentType.HANDSHAKE, record_seq, fragment)


def _screen_fragmented_client_hello(
    context: Context, frag: Any, addr: Address, now: float, require_cookie: bool
) -> StatelessResponse:
    """A ClientHello too large for one datagram (a post-quantum key share). Without its
    whole body there is no hash for a cookie, so our clients send a first ClientHello that
    fits (an empty key_share) and only the second, with the cookie, is fragmented: its
    first fragment carries the cookie, which proves the address before we keep state."""
    if not require_cookie:
        return StatelessResponse("accept")
    if frag.fragment_offset != 0:
        return StatelessResponse("drop")  # the first fragment, with the cookie, comes first
    cookie = peek_client_hello_cookie(frag.fragment)
    if cookie is not None and open_cookie(
        context.cookie_secrets(), cookie, addr, now, context.cookie_lifetime
    ):
        return StatelessResponse("accept")
    return StatelessResponse("drop")


@dataclass(frozen=True)
class StatelessResponse:
    """What a server does with a datagram from an address it keeps no state for."""

    # "accept": make a connection; "retry": send `datagram` (the HRR); "reject": send
    # `datagram` (an illegal_parameter alert for a bad cookie); "drop"
    action: str
    datagram: bytes | None = None


def respond_statelessly(
    context: Context, data: bytes, addr: Address, now: float, *, require_cookie: bool = True
) -> StatelessResponse:
    """Answer a first ClientHello with a cookie HelloRetryRequest, keeping no state
    (RFC 9147 §5.1). A ClientHello with a valid cookie (or, with require_cookie False, one
    that needs no retry) is accepted: the caller makes a `Connection` and feeds it `data`.
    """
    try:
        spans, _ = split_datagram(data, 0)
    except Exception:  # pragma: no cover - split never raises on bytes
        return StatelessResponse("drop")
    if not spans:
        return StatelessResponse("drop")
    span = spans[0]
    if span.kind != RecordKind.PLAINTEXT or span.first_byte != ContentType.HANDSHAKE or span.epoch:
        return StatelessResponse("drop")
    payload = bytes(data[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length])
    try:
        fragments = decode_handshake_fragments(payload)
        if not fragments:
            return StatelessResponse("drop")
        frag = fragments[0]
        if frag.msg_type != HandshakeType.CLIENT_HELLO:
            return StatelessResponse("drop")
        if frag.fragment_offset != 0 or frag.fragment_length != frag.length:
            return _screen_fragmented_client_hello(context, frag, addr, now, require_cookie)
        ch = decode_handshake_body(HandshakeType.CLIENT_HELLO, frag.fragment)
        assert isinstance(ch, ClientHello)
        _check_client_hello(ch)
        suite = _select_suite(context, ch)
        if ch.cookie is not None:
            contents = open_cookie(
                context.cookie_secrets(), ch.cookie, addr, now, context.cookie_lifetime
            )
            if contents is not None:
                return StatelessResponse("accept")
            # RFC 9147 §5.1: an invalid cookie is answered with illegal_parameter, so the
            # client can start again without one.
            alert = encode_alert(AlertLevel.FATAL, AlertDescription.ILLEGAL_PARAMETER)
            return StatelessResponse("reject", seal_plaintext(ContentType.ALERT, span.seq, alert))
        share = _select_key_share(context, ch)
        if share is not None and not require_cookie:
            return StatelessResponse("accept")
        group = 0 if share is not None else _select_retry_group(context, ch)
        body = _hello_retry_request(context, ch, frag.fragment, addr, now, suite, group)
    except DTLSError:
        # Let a connection answer with the proper alert once the address is proven;
        # until then, stay silent (RFC 9147 §5.1: no state, no amplification).
        return StatelessResponse("drop")
    record = _plaintext_handshake_record(
        HandshakeType.SERVER_HELLO, frag.message_seq, body, span.seq
    )
    return StatelessResponse("retry", record)


# ---------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------


class Connection:
    """One DTLS 1.3 association, client or server, as the context says."""

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
        # server: answer a ClientHello without a cookie with a cookie HRR (RFC 9147 §5.1);
        # None follows context.cookie_mode (an endpoint decides "auto" itself)
        self.require_cookie = (
            context.cookie_mode == CookieMode.ALWAYS if require_cookie is None else require_cookie
        )
        self.context = context
        self.is_client = context.is_client
        self.server_name = server_name
        self.peer_address = peer_address
        self.state = HandshakeState.START
        self.cipher_suite: int | None = None
        self.group: int | None = None
        self.alpn_protocol: str | None = None
        self.peer_certificates: tuple[Any, ...] = ()
        self.retransmissions = 0
        self.srtp_profile: int | None = None
        self.peer_public_key: bytes | None = None  # the peer's raw public key (RFC 7250)
        self._own_certificate_type = X509
        self._peer_certificate_type = X509
        self.keepalives_sent = 0
        self.last_sent = 0.0  # when a datagram last left, and an authentic record arrived
        self.last_received = 0.0
        self.handshake_started: float | None = None
        self.handshake_completed_at: float | None = None

        self._records = RecordLayer(context.replay_window, context.epoch_retention)
        self._events: list[Event] = []  # few at a time: a list is smaller than a deque
        self._out: list[bytearray] = []
        self._rto = RetransmitTimer(
            context.initial_retransmit_timeout, context.max_retransmit_timeout
        )
        self._reassembler = HandshakeReassembler(
            context.max_handshake_message_size, context.max_handshake_buffer
        )
        self._flights: dict[_Flight, OutgoingFlight] = {}
        self._unsent: list[OutgoingFlight] = []
        self._ack_pending: list[RecordNumber] = []
        self._ack_deadline: float | None = None
        self._version_known = False  # RFC 9147 §7: no ACKs before DTLS 1.3 is selected
        self._next_message_seq = 0
        self._transcript = Transcript()
        self._schedule: KeySchedule | None = None
        self._hash_name = ""
        self._client_random = b""
        self._secrets: dict[str, bytes] = {}
        self._app_send_epoch = 0
        self._pending_app: list[bytes] = []
        # record sizes (RFC 8449) and AEAD limits (RFC 9147 §4.5.3), set with the suite
        self._send_limit = MAX_PLAINTEXT
        self._receive_limit = MAX_PLAINTEXT
        self._confidentiality_limit = 1 << 48
        self._integrity_limit = 1 << 36
        self._early_records: list[bytes] = []
        self._closing_alert_sent = False

        # PSK and 0-RTT (RFC 9846 §2.2, §2.3)
        self.session = session
        self.resumed = False
        self.early_data_accepted = False
        self._psk: _Psk | None = None
        self._early_sent: list[bytes] = []
        self._early_received = 0
        self._tickets_sent = 0
        # client
        self._client_hello: ClientHello | None = None
        self._key_shares: dict[int, Any] = {}
        self._retried = False
        self._hrr_suite: int | None = None
        self._certificate_request: CertificateRequest | None = None
        # server
        self._client_hello_record_seq = 0
        self._signature_scheme = 0
        self._peer_leaf: Any = None
        # connection IDs (RFC 9147 §9): what we receive, and what the peer wants
        # the CID we receive with, bytes or a generator (also used for CIDs issued later):
        # this argument (a server endpoint choosing unique ones), else the context's
        # (RFC 9147 §9)
        cid = connection_id if connection_id is not None else context.connection_id
        self._cids = ConnectionIds(cid() if callable(cid) else cid, cid if callable(cid) else None)
        self._rrc = False  # return routability check negotiated (draft-ietf-tls-dtls-rrc)
        self._path_challenge: PathChallenge | None = None
        self._probes: list[tuple[bytes, Address]] = []

    # ---- public API ----
    def connect(self, addr: Address, now: float) -> None:
        """Start the handshake (client): sends the first ClientHello."""
        if not self.is_client:
            raise ConnectionStateError("connect() is for clients")
        if self.state is not HandshakeState.START:
            raise ConnectionStateError("connect() was already called")
        self.peer_address = addr
        self.handshake_started = now
        self._client_random = secrets.token_bytes(32)
        self._psk = self._offered_psk()
        ch = self._build_client_hello()
        self._fit_first_client_hello(ch)
        self._client_hello = ch
        self._start_flight(OutgoingFlight([self._client_hello_message(ch)], needs_ack=False), now)
        if ch.early_data:
            self._send_early_data()
        self.state = HandshakeState.WAIT_SH

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process one datagram. Bad input is dropped and counted, or ends the connection
        with an alert and a `ConnectionClosed` event; it never raises (RFC 9147 §4.5.2)."""
        if self.state is HandshakeState.CLOSED:
            return
        if self.peer_address is None:
            self.peer_address = addr
        if self.handshake_started is None:
            self.handshake_started = now
        try:
            authenticated = False
            for record in self._records.open(data, now):
                if len(record.payload) > self._receive_limit:
                    raise RecordOverflow("record larger than the limit")  # RFC 8449, 9846 §5.2
                authenticated = authenticated or record.epoch >= 3
                self._receive_record(record, now, addr)
                if self.state is HandshakeState.CLOSED:
                    break
            if authenticated:
                self.last_received = now
                challenge = self._path_challenge
                if challenge is not None and addr == challenge.address:
                    challenge.received += len(data)
            if authenticated and addr != self.peer_address:
                self._on_new_address(addr, data, now)
            if self._records.counters.failed_authentication:
                self._check_integrity_limit()
        except ProtocolError as exc:
            self._fail(exc)
        except DTLSError as exc:
            self._fail(InternalError(str(exc)))
        except Exception as exc:  # a bug must not escape to the front-end either
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
            elif self.state is HandshakeState.CONNECTED and epoch >= 3:
                self.update_keys(request_peer_update=True)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Datagrams ready for the network, with their destination."""
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._send_ack()
        for flight in self._unsent:
            self._transmit(flight, now)
        self._unsent.clear()
        out = [(bytes(d), self.peer_address) for d in self._out if d]
        self._out.clear()
        if out:
            self.last_sent = now
        if self._probes:
            out.extend(self._probes)
            self._probes.clear()
        return out

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called, or None."""
        if self.state is HandshakeState.CLOSED:
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
        if self._path_challenge is not None:
            times.append(self._path_challenge.deadline)
        times.extend(t for t in self._liveness_deadlines() if t is not None)
        return min(times) if times else None

    def _liveness_deadlines(self) -> tuple[float | None, float | None]:
        """When to send a keep-alive, and when to give up on a silent peer."""
        if self.state is not HandshakeState.CONNECTED:
            return None, None
        ctx = self.context
        keepalive = self.last_sent + ctx.keepalive_interval if ctx.keepalive_interval else None
        idle = self.last_received + ctx.idle_timeout if ctx.idle_timeout else None
        return keepalive, idle

    def _handshake_deadline(self) -> float | None:
        if self.state is HandshakeState.CONNECTED or self.handshake_started is None:
            return None
        return self.handshake_started + self.context.handshake_timeout

    def handle_timer(self, now: float) -> None:
        """Retransmit flights whose timer expired (RFC 9147 §5.8), send delayed ACKs."""
        if self.state is HandshakeState.CLOSED:
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
        challenge = self._path_challenge
        if challenge is not None and now >= challenge.deadline:
            self._send_path_challenge(challenge, now)
        for kind, flight in list(self._flights.items()):
            if flight.deadline is None or now < flight.deadline:
                continue
            if flight.timeouts >= self.context.max_retransmissions:
                del self._flights[kind]
                what = "handshake" if kind is _Flight.HANDSHAKE else kind.value
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
        return self._events.pop(0) if self._events else None

    def send(self, data: bytes) -> None:
        """Send one application-data record (RFC 9147 §6). Before the handshake completes
        the data is queued and sent once it does."""
        if self.state is HandshakeState.CLOSED:
            raise ConnectionStateError("connection is closed")
        if len(data) > MAX_PLAINTEXT:
            raise ValueError(f"a record carries at most {MAX_PLAINTEXT} bytes")
        if self.state is not HandshakeState.CONNECTED:
            self._pending_app.append(bytes(data))
            return
        if len(data) > self._send_limit:
            raise ValueError(f"the peer accepts records of at most {self._send_limit} bytes")
        epoch = self._records.send_epochs[self._app_send_epoch]
        if epoch.next_seq >= self._confidentiality_limit:
            raise ConnectionStateError("AEAD limit reached: waiting for the KeyUpdate's ACK")
        record, _ = self._records.seal(self._app_send_epoch, ContentType.APPLICATION_DATA, data)
        self._emit(record)
        if epoch.next_seq >= self._confidentiality_limit * 3 // 4:
            self.update_keys(request_peer_update=False)  # RFC 9147 §4.5.3

    def update_keys(self, request_peer_update: bool = True) -> None:
        """Send a KeyUpdate (RFC 9147 §8); our sending epoch moves on once it is
        acknowledged. A second call while one is outstanding is merged with it."""
        if self.state is not HandshakeState.CONNECTED:
            raise ConnectionStateError("keys can be updated only on an established connection")
        if _Flight.KEY_UPDATE in self._flights:
            return
        request = (
            KeyUpdateRequest.UPDATE_REQUESTED
            if request_peer_update
            else KeyUpdateRequest.UPDATE_NOT_REQUESTED
        )
        self._send_post_handshake(_Flight.KEY_UPDATE, KeyUpdate(int(request)))

    def issue_connection_ids(self, count: int, *, immediate: bool = False) -> list[bytes]:
        """Give the peer `count` new CIDs to send to us with (RFC 9147 §9 NewConnectionId);
        all our CIDs stay valid. With `immediate` the peer switches to the first."""
        self._check_cids_negotiated()
        if not self.local_cid:
            raise ConnectionStateError("we receive a zero-length CID: nothing to issue")
        if _Flight.NEW_CONNECTION_ID in self._flights:
            raise ConnectionStateError("a NewConnectionId is still unacknowledged")
        cids = self._cids.new_local(count)
        usage = 0 if immediate else 1  # cid_immediate / cid_spare
        self._send_post_handshake(_Flight.NEW_CONNECTION_ID, NewConnectionId(cids, usage))
        self._events.append(ConnectionIdsIssued(tuple(cids)))
        return cids

    def request_connection_ids(self, count: int) -> None:
        """Ask the peer for `count` spare CIDs (RFC 9147 §9 RequestConnectionId)."""
        self._check_cids_negotiated()
        if not self.peer_cid:
            raise ConnectionStateError("the peer receives a zero-length CID")
        if self._cids.request_outstanding:
            raise ConnectionStateError("an earlier RequestConnectionId is unfulfilled")
        self._cids.request_outstanding = True
        self._send_post_handshake(_Flight.REQUEST_CONNECTION_ID, RequestConnectionId(count))

    def use_next_peer_cid(self) -> bytes | None:
        """Send with the peer's next spare CID, e.g. after our address changed (§9)."""
        cid = self._cids.next_peer()
        if cid is not None:
            self._records.send_cid = cid or None
        return cid

    def close(self) -> None:
        """Send close_notify and close (RFC 9846 §6.1)."""
        if self.state is HandshakeState.CLOSED:
            return
        self._send_alert(AlertDescription.CLOSE_NOTIFY)
        self._close("closed")

    def export_keying_material(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """RFC 9846 §7.5 exporter (with the dtls13 label prefix, RFC 9147 §5.9)."""
        secret = self._secrets.get("exporter")
        if secret is None:
            raise ConnectionStateError("the handshake has not completed")
        if isinstance(label, str):
            label = label.encode()
        return export_keying_material(self._hash_name, secret, label, context, length)

    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters."""
        c = self._records.counters
        epochs = self._records.receive_epochs
        newest = epochs[max(epochs)] if epochs else None
        started, done = self.handshake_started, self.handshake_completed_at
        return ConnectionStats(
            state=self.state.value,
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

    @property
    def handshake_complete(self) -> bool:
        return self.state is HandshakeState.CONNECTED

    @property
    def send_epoch(self) -> int:
        return self._app_send_epoch

    @property
    def record_counters(self) -> Any:
        return self._records.counters

    # ---- datagram assembly ----
    def _emit(self, record: bytes) -> None:
        limit = self.context.max_datagram_size
        if self._out and len(self._out[-1]) + len(record) <= limit:
            self._out[-1] += record
        else:
            self._out.append(bytearray(record))

    def _room(self) -> int:
        limit = self.context.max_datagram_size
        return limit - len(self._out[-1]) if self._out else limit

    # ---- flights (RFC 9147 §5.8) ----
    def _handshake_message(self, epoch: int, message: Any) -> OutgoingMessage:
        return self._raw_handshake_message(
            epoch, _message_type(message), encode_handshake_body(message)
        )

    def _raw_handshake_message(self, epoch: int, msg_type: int, body: bytes) -> OutgoingMessage:
        if msg_type != HandshakeType.SERVER_HELLO or body[2:34] != HELLO_RETRY_REQUEST_RANDOM:
            self._transcript.add(transcript_bytes(msg_type, body))
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
        self._flights[_Flight.HANDSHAKE] = flight
        self._ack_pending.clear()
        self._ack_deadline = None
        self._transmit(flight, now)

    def _send_post_handshake(self, kind: _Flight, message: Any) -> None:
        flight = OutgoingFlight(
            [self._handshake_message(self._app_send_epoch, message)], needs_ack=True
        )
        self._flights[kind] = flight
        self._unsent.append(flight)  # sent by datagrams_to_send(now), which knows the time

    def _transmit(self, flight: OutgoingFlight, now: float) -> None:
        for index, start, end in list(flight.unacked_ranges()):
            message = flight.messages[index]
            overhead = self._records.overhead(message.epoch) + DTLS_HANDSHAKE_HEADER_LEN
            pos = start
            while True:
                room = self._room() - overhead
                if room < min(MIN_FRAGMENT, end - pos) or room <= 0:
                    self._out.append(bytearray())
                    room = self.context.max_datagram_size - overhead
                take = min(end - pos, room, self._send_limit - DTLS_HANDSHAKE_HEADER_LEN)
                fragment = encode_handshake_fragment(
                    message.msg_type,
                    len(message.body),
                    message.message_seq,
                    pos,
                    message.body[pos : pos + take],
                )
                record, number = self._records.seal(message.epoch, ContentType.HANDSHAKE, fragment)
                self._emit(record)
                flight.record_sent(number, index, pos, pos + take)
                pos += take
                if pos >= end:
                    break
        flight.transmissions += 1
        flight.last_sent = now
        if flight.first_sent is None:
            flight.first_sent = now
        flight.deadline = now + self._rto.value

    def _retransmit(self, flight: OutgoingFlight, now: float) -> None:
        self.retransmissions += 1
        self._transmit(flight, now)

    def _flight_acknowledged(self, kind: _Flight, now: float) -> None:
        flight = self._flights.pop(kind, None)
        if flight is None:
            return
        if flight.transmissions == 1 and flight.first_sent is not None:
            self._rto.measured(now - flight.first_sent)  # RFC 9147 §5.8.2
        if kind is _Flight.KEY_UPDATE:
            self._advance_send_epoch()
        elif kind is _Flight.HANDSHAKE and self.state is HandshakeState.CONNECTED:
            # The server has our Finished: it will not resend its flight, and we will not
            # resend ours; the handshake keys can go (RFC 9147 §5.8.1).
            self._records.drop_send(2)
            self._records.drop_receive(2)

    # ---- ACKs (RFC 9147 §7) ----
    def _schedule_ack(self, now: float, immediate: bool) -> None:
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
        numbers = sorted(set(self._ack_pending))
        epoch = max(e for e in self._records.send_epochs if e != 1)
        # Acknowledge only records of epochs we may send in (RFC 9147 §7).
        numbers = [n for n in numbers if n[0] <= epoch]
        record, _ = self._records.seal(epoch, ContentType.ACK, encode_ack(numbers))
        self._emit(record)
        if self.state is HandshakeState.CONNECTED:
            self._ack_pending.clear()

    def _receive_ack(self, record: InboundRecord, now: float) -> None:
        if record.epoch == 0 and not self._version_known:
            return  # RFC 9147 §7: ignored until DTLS 1.3 is selected
        numbers = decode_ack(record.payload)
        if any(epoch > record.epoch for epoch, _ in numbers):
            raise IllegalParameter("ACK for an epoch above its own")  # RFC 9147 §7.2
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
        if content_type == ContentType.HANDSHAKE:
            self._receive_handshake(record, now)
        elif content_type == ContentType.APPLICATION_DATA:
            self._receive_application_data(record)
        elif content_type == ContentType.ACK:
            self._receive_ack(record, now)
        elif content_type == ContentType.ALERT:
            self._receive_alert(record)
        elif content_type == RRC_CONTENT_TYPE and self._rrc and record.epoch >= 3:
            self._receive_rrc(record, addr, now)
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
        if self.state is HandshakeState.CONNECTED:
            self._events.append(DataReceived(record.payload))
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
            try:
                name = AlertDescription(description).name.lower()
            except ValueError:
                name = str(description)
            self._close(
                f"peer sent fatal alert {name}", alert=description, by_peer=True, error=True
            )

    def _receive_handshake(self, record: InboundRecord, now: float) -> None:
        fragments = decode_handshake_fragments(record.payload)
        accepted = old = False
        reassembler = self._reassembler
        if record.epoch == 0 and self.state is not (
            HandshakeState.WAIT_SH if self.is_client else HandshakeState.START
        ):
            # Plaintext handshake data after the hellos is unauthenticated: it may only
            # show that the peer retransmits; it never changes our state (RFC 9147 §6).
            if self.state is not HandshakeState.CONNECTED and any(
                f.message_seq < reassembler.next_receive_seq for f in fragments
            ):
                self._on_retransmission_received(record, now)
            return
        for fragment in fragments:
            if (
                not self.is_client
                and self.state is HandshakeState.START
                and fragment.msg_type == HandshakeType.CLIENT_HELLO
                and fragment.message_seq != reassembler.next_receive_seq
            ):
                # A ClientHello may open with message_seq 0 or, after a stateless HRR, 1.
                reassembler.restart_at(fragment.message_seq)
            result = reassembler.add(fragment, record.epoch)
            if result == FragmentResult.ACCEPTED:
                accepted = True
                if fragment.msg_type == HandshakeType.CLIENT_HELLO:
                    self._client_hello_record_seq = record.seq
            elif result == FragmentResult.OLD:
                old = True
        if accepted:
            self._ack_pending.append((record.epoch, record.seq))
        while self.state is not HandshakeState.CLOSED:
            message = reassembler.pop()
            if message is None:
                break
            self._handle_message(message, now)
        if self.state is HandshakeState.CLOSED:
            return
        if old:
            self._on_retransmission_received(record, now)
        elif accepted:
            # RFC 9147 §7.1: ACK a gap at once, a partial flight after a short delay.
            self._schedule_ack(now, immediate=reassembler.has_future())

    def _on_retransmission_received(self, record: InboundRecord, now: float) -> None:
        """The peer resent messages we already processed (RFC 9147 §5.8.1): resend our
        answering flight if it is unacknowledged, else acknowledge again."""
        flight = self._flights.get(_Flight.HANDSHAKE)
        if flight is not None and record.epoch < 3 and not _acked_any(flight):
            # Once per retransmitted flight, not once per record of it.
            if flight.last_sent is None or now - flight.last_sent >= self._rto.value / 2:
                self._retransmit(flight, now)
            return
        if self._version_known:
            self._ack_pending.append((record.epoch, record.seq))
            self._schedule_ack(now, immediate=True)

    # ---- handshake messages ----
    def _handle_message(self, message: ReceivedMessage, now: float) -> None:
        msg_type = message.msg_type
        state = self.state
        handler: Callable[[ReceivedMessage, float], None] | None = None
        if state is HandshakeState.CONNECTED:
            if message.epoch < 3:
                raise UnexpectedMessage("handshake message in a handshake epoch after completion")
            handler = self._post_handshake_handlers().get(msg_type)
        elif self.is_client:
            handler = {
                (HandshakeState.WAIT_SH, HandshakeType.SERVER_HELLO): self._client_server_hello,
                (
                    HandshakeState.WAIT_EE,
                    HandshakeType.ENCRYPTED_EXTENSIONS,
                ): self._client_encrypted_extensions,
                (
                    HandshakeState.WAIT_CERT_CR,
                    HandshakeType.CERTIFICATE_REQUEST,
                ): self._client_certificate_request,
                (HandshakeState.WAIT_CERT_CR, HandshakeType.CERTIFICATE): self._peer_certificate,
                (HandshakeState.WAIT_CERT, HandshakeType.CERTIFICATE): self._peer_certificate,
                (
                    HandshakeState.WAIT_CV,
                    HandshakeType.CERTIFICATE_VERIFY,
                ): self._peer_certificate_verify,
                (HandshakeState.WAIT_FINISHED, HandshakeType.FINISHED): self._client_finished,
            }.get((state, msg_type))
        else:
            handler = {
                (HandshakeState.START, HandshakeType.CLIENT_HELLO): self._server_client_hello,
                (HandshakeState.WAIT_CERT, HandshakeType.CERTIFICATE): self._peer_certificate,
                (
                    HandshakeState.WAIT_CV,
                    HandshakeType.CERTIFICATE_VERIFY,
                ): self._peer_certificate_verify,
                (HandshakeState.WAIT_FINISHED, HandshakeType.FINISHED): self._server_finished,
            }.get((state, msg_type))
        if handler is None:
            raise UnexpectedMessage(f"{_type_name(msg_type)} in state {state.value}")
        expected_epoch = (
            0 if msg_type in (HandshakeType.CLIENT_HELLO, HandshakeType.SERVER_HELLO) else 2
        )
        if state is not HandshakeState.CONNECTED and message.epoch != expected_epoch:
            raise UnexpectedMessage(f"{_type_name(msg_type)} in epoch {message.epoch}")
        handler(message, now)

    def _post_handshake_handlers(self) -> dict[int, Callable[[ReceivedMessage, float], None]]:
        handlers: dict[int, Callable[[ReceivedMessage, float], None]] = {
            HandshakeType.KEY_UPDATE: self._receive_key_update,
            HandshakeType.NEW_CONNECTION_ID: self._receive_new_connection_id,
            HandshakeType.REQUEST_CONNECTION_ID: self._receive_request_connection_id,
        }
        if self.is_client:
            handlers[HandshakeType.NEW_SESSION_TICKET] = self._receive_new_session_ticket
        return handlers

    def _decode(self, message: ReceivedMessage) -> Any:
        return decode_handshake_body(message.msg_type, message.body)

    def _add_to_transcript(self, message: ReceivedMessage) -> None:
        self._transcript.add(transcript_bytes(message.msg_type, message.body))

    # ---- client ----
    def _build_client_hello(self) -> ClientHello:
        ctx = self.context
        share_groups = ctx.key_share_groups or ctx.groups[:1]
        for group in share_groups:
            if group not in self._key_shares:
                self._key_shares[int(group)] = crypto.generate_key_share(int(group))
        server_name = (
            self.server_name if self.server_name and not _is_ip(self.server_name) else None
        )
        return ClientHello(
            random=self._client_random,
            cipher_suites=[int(s) for s in ctx.cipher_suites],
            supported_versions=[DTLS13_VERSION],
            supported_groups=[int(g) for g in ctx.groups],
            key_share=[
                KeyShareEntry(group, share.public_bytes)
                for group, share in self._key_shares.items()
            ],
            signature_algorithms=[int(s) for s in ctx.signature_algorithms],
            server_name=server_name,
            connection_id=self.local_cid,
            alpn_protocols=[p.encode() for p in ctx.alpn_protocols] or None,
            record_size_limit=ctx.record_size_limit,
            other_extensions=self._client_raw_extensions(),
            **self._psk_extensions(),
        )

    def _client_raw_extensions(self) -> list[tuple[int, bytes]]:
        """Extensions the codecs keep raw: rrc and use_srtp."""
        ctx = self.context
        raw = []
        if self.local_cid is not None and ctx.return_routability_check:
            raw.append((RRC_EXTENSION, b""))
        if ctx.srtp_profiles:
            raw.append((ExtensionType.USE_SRTP, encode_use_srtp(list(ctx.srtp_profiles))))
        # RFC 7250 §4.1: the certificate types we can send, and those we accept.
        if ctx.raw_public_key and ctx.private_key is not None:
            raw.append((ExtensionType.CLIENT_CERTIFICATE_TYPE, bytes([2, RAW_PUBLIC_KEY, X509])))
        if ctx.pinned_public_keys:
            raw.append((ExtensionType.SERVER_CERTIFICATE_TYPE, bytes([2, RAW_PUBLIC_KEY, X509])))
        return raw

    def _fit_first_client_hello(self, ch: ClientHello) -> None:
        """A first ClientHello that would not fit in one datagram (e.g. an ML-KEM key
        share) goes with an empty key_share instead: the server's HelloRetryRequest picks
        the group, and a stateless server can still check its cookie (RFC 9147 §5.1)."""
        size = len(encode_handshake_body(ch)) + DTLS_HANDSHAKE_HEADER_LEN + PLAINTEXT_HEADER_LEN
        if size > self.context.max_datagram_size and ch.key_share:
            ch.key_share = []
            self._key_shares.clear()

    def _offered_psk(self) -> _Psk | None:
        """The ticket to resume with, or the external PSK (RFC 9846 §4.2.11)."""
        session = self.session
        now = self.context.wall_clock()
        if (
            session is not None
            and session.is_valid(now)
            and session.cipher_suite in self.context.cipher_suites
        ):
            return _Psk(
                session.ticket,
                session.psk,
                session.hash_name,
                external=False,
                obfuscated_age=session.obfuscated_age(now),
                session=session,
            )
        psk = self.context.psk
        if isinstance(psk, ExternalPsk):
            return _Psk(psk.identity, psk.key, psk.hash_name, external=True)
        return None

    def _psk_extensions(self) -> dict[str, Any]:
        psk = self._psk
        if psk is None:
            return {}
        hash_len = hashlib.new(psk.hash_name).digest_size
        session = psk.session
        early = (
            self.context.early_data
            and session is not None
            and session.max_early_data_size > 0
            and bool(self._pending_app)
            and not self._retried
        )
        return {
            "psk_key_exchange_modes": [int(m) for m in self.context.psk_key_exchange_modes],
            "early_data": early,
            "pre_shared_key": OfferedPsks(
                [PskIdentity(psk.identity, psk.obfuscated_age)], [bytes(hash_len)]
            ),
        }

    def _client_hello_message(self, ch: ClientHello) -> OutgoingMessage:
        """Encode a ClientHello, with its PSK binder computed over the truncated message
        and everything before it in the transcript (RFC 9846 §4.2.11.2)."""
        body = encode_handshake_body(ch)
        psk = self._psk
        if ch.pre_shared_key is not None and psk is not None:
            digest = self._transcript.digest_with(truncated_client_hello(body), psk.hash_name)
            binder = compute_binder(psk.hash_name, _binder_key(psk), digest)
            body = client_hello_with_binders(body, [binder])
        return self._raw_handshake_message(0, HandshakeType.CLIENT_HELLO, body)

    def _send_early_data(self) -> None:
        """0-RTT (RFC 9846 §2.3): queued data in epoch 1, up to the ticket's limit."""
        psk = self._psk
        assert psk is not None and psk.session is not None
        session = psk.session
        schedule = KeySchedule(session.cipher_suite)
        schedule.early_secret(psk.key)
        secret = schedule.client_early_traffic_secret(
            self._transcript.digest_with(b"", psk.hash_name)
        )
        self._log_secret("CLIENT_EARLY_TRAFFIC_SECRET", secret)
        self._records.install_send(1, session.cipher_suite, secret)
        budget = session.max_early_data_size
        while self._pending_app and len(self._pending_app[0]) <= budget:
            data = self._pending_app.pop(0)
            budget -= len(data)
            record, _ = self._records.seal(1, ContentType.APPLICATION_DATA, data)
            self._emit(record)
            self._early_sent.append(data)

    def _client_server_hello(self, message: ReceivedMessage, now: float) -> None:
        sh = self._decode(message)
        assert isinstance(sh, ServerHello)
        assert self._client_hello is not None
        # RFC 9846 §4.2.1: supported_versions decides; legacy_version is then ignored.
        if sh.supported_versions is None:
            raise ProtocolVersionError("server did not select DTLS 1.3")
        if sh.supported_versions != DTLS13_VERSION:
            raise IllegalParameter("server selected a version we did not offer")
        offered_cid = self._client_hello.connection_id is not None
        offered = self._client_hello.other_extensions
        self._rrc = (RRC_EXTENSION, b"") in sh.other_extensions and bool(offered)
        unsolicited = [e for e in sh.other_extensions if e not in offered]
        if unsolicited or (sh.connection_id is not None and not offered_cid):
            # RFC 9846 §4.2: only extensions we offered may come back.
            raise UnsupportedExtension("ServerHello with an extension we did not offer")
        if sh.cipher_suite not in self._client_hello.cipher_suites:
            raise IllegalParameter("server selected a cipher suite we did not offer")
        if sh.legacy_session_id_echo:
            raise IllegalParameter("legacy_session_id_echo must be empty (RFC 9147 §5)")
        if sh.legacy_compression_method != 0:
            raise IllegalParameter("compression method must be null")
        self._version_known = True
        hash_name = suite_hash_name(sh.cipher_suite)
        if sh.is_hello_retry_request:
            self._client_hello_retry(sh, message, hash_name, now)
            return
        if self._hrr_suite is not None and sh.cipher_suite != self._hrr_suite:
            raise IllegalParameter("ServerHello suite differs from the HelloRetryRequest's")
        psk = None
        if sh.pre_shared_key is not None:
            psk = self._psk
            if psk is None or sh.pre_shared_key != 0:
                raise IllegalParameter("server selected a PSK we did not offer")
            if hash_name != psk.hash_name:
                raise IllegalParameter("server selected a suite whose hash is not the PSK's")
            self.resumed = not psk.external
        share = None
        if sh.key_share is not None:
            share = self._key_shares.get(sh.key_share.group)
            if share is None:
                raise IllegalParameter("server chose a group we sent no key share for")
        elif psk is None or PskKeyExchangeMode.PSK_KE not in self.context.psk_key_exchange_modes:
            raise MissingExtension("ServerHello without key_share")
        if sh.cookie is not None or sh.selected_group is not None:
            raise IllegalParameter("HelloRetryRequest extensions in a ServerHello")
        self._implicit_ack(now)
        self.cipher_suite = sh.cipher_suite
        self._hash_name = hash_name
        self._transcript.set_hash(hash_name)
        self._add_to_transcript(message)
        shared = None
        if share is not None and sh.key_share is not None:
            self.group = sh.key_share.group
            shared = share.agree(sh.key_share.key_exchange)
        self._key_shares.clear()
        self._psk = psk
        if sh.connection_id is not None:
            self._use_connection_ids(sh.connection_id)
        else:
            self._cids.local = []  # the server did not take up CIDs
        self._derive_handshake_secrets(shared)
        self.state = HandshakeState.WAIT_EE

    def _client_hello_retry(
        self, hrr: ServerHello, message: ReceivedMessage, hash_name: str, now: float
    ) -> None:
        """RFC 9846 §4.1.4: answer a HelloRetryRequest with a second ClientHello."""
        assert self._client_hello is not None
        if self._retried:
            raise UnexpectedMessage("a second HelloRetryRequest")
        self._retried = True
        group = hrr.selected_group
        if group is not None and (group not in self.context.groups or group in self._key_shares):
            raise IllegalParameter("HelloRetryRequest selected an unacceptable group")
        if group is None and hrr.cookie is None:
            raise IllegalParameter("HelloRetryRequest that would not change the ClientHello")
        if hrr.key_share is not None or hrr.pre_shared_key is not None:
            raise IllegalParameter("ServerHello extensions in a HelloRetryRequest")
        self._implicit_ack(now)
        self._hrr_suite = hrr.cipher_suite
        self._transcript.set_hash(hash_name)
        self._transcript.restart_after_hello_retry()
        self._add_to_transcript(message)
        if group is not None:
            self._key_shares = {group: crypto.generate_key_share(group)}
        ch = self._client_hello
        ch.key_share = [KeyShareEntry(g, s.public_bytes) for g, s in self._key_shares.items()]
        ch.cookie = hrr.cookie
        ch.extension_order = None
        # RFC 9846 §4.1.2: no early data after a HelloRetryRequest; the PSK stays only if
        # its hash is the suite's.
        if self._psk is not None and self._psk.hash_name != hash_name:
            self._psk = None
        ch.early_data = False
        ch.pre_shared_key = None
        ch.psk_key_exchange_modes = None
        for key, value in self._psk_extensions().items():
            setattr(ch, key, value)
        ch.early_data = False
        self._records.drop_send(1)
        self._pending_app[:0] = self._early_sent
        self._early_sent.clear()
        flight = OutgoingFlight([self._client_hello_message(ch)], needs_ack=False)
        self._start_flight(flight, now)

    def _client_encrypted_extensions(self, message: ReceivedMessage, now: float) -> None:
        ee = self._decode(message)
        assert isinstance(ee, EncryptedExtensions)
        if ee.alpn_protocol is not None:
            if not self.context.alpn_protocols:
                raise UnsupportedExtension("ALPN selected but not offered")
            protocol = ee.alpn_protocol.decode("ascii", "replace")
            if protocol not in self.context.alpn_protocols:
                raise IllegalParameter("server selected an ALPN protocol we did not offer")
            self.alpn_protocol = protocol
        sent_early = self._client_hello is not None and self._client_hello.early_data
        offered = dict(self._client_hello.other_extensions if self._client_hello else [])
        srtp = [data for t, data in ee.other_extensions if t == ExtensionType.USE_SRTP]
        others = []
        for ext_type, data in ee.other_extensions:
            if ext_type in (
                ExtensionType.CLIENT_CERTIFICATE_TYPE,
                ExtensionType.SERVER_CERTIFICATE_TYPE,
            ):
                self._certificate_type_selected(ext_type, data, offered)
            elif ext_type != ExtensionType.USE_SRTP:
                others.append(ext_type)
        if srtp:
            if ExtensionType.USE_SRTP not in offered:
                raise UnsupportedExtension("use_srtp selected but not offered")
            chosen, _ = decode_use_srtp(srtp[0])
            self.srtp_profile = check_server_choice(list(self.context.srtp_profiles), chosen)
        if (
            (ee.early_data and not sent_early)
            or others
            or (ee.record_size_limit is not None and self.context.record_size_limit is None)
        ):
            raise UnsupportedExtension("EncryptedExtensions with an extension we did not offer")
        if ee.record_size_limit is not None:
            self._apply_record_size_limits(ee.record_size_limit)
        self.early_data_accepted = ee.early_data and self._psk is not None
        if ee.server_name and self._client_hello is not None and not self._client_hello.server_name:
            raise UnsupportedExtension("server_name acknowledged but not sent")
        self._add_to_transcript(message)
        # RFC 9846 §2.2: a PSK handshake authenticates with the PSK, not certificates.
        self.state = HandshakeState.WAIT_FINISHED if self._psk else HandshakeState.WAIT_CERT_CR

    def _certificate_type_selected(
        self, ext_type: int, data: bytes, offered: dict[int, bytes]
    ) -> None:
        """RFC 7250 §4.2: the server picks one of the types we listed."""
        if ext_type not in offered:
            raise UnsupportedExtension("certificate type selected but not offered")
        if len(data) != 1 or data[0] not in offered[ext_type][1:]:
            raise IllegalParameter("server selected a certificate type we did not offer")
        if ext_type == ExtensionType.SERVER_CERTIFICATE_TYPE:
            self._peer_certificate_type = data[0]
        else:
            self._own_certificate_type = data[0]

    def _client_certificate_request(self, message: ReceivedMessage, now: float) -> None:
        cr = self._decode(message)
        assert isinstance(cr, CertificateRequest)
        if cr.context:
            raise IllegalParameter("certificate_request_context must be empty in the handshake")
        if not cr.signature_algorithms:
            raise MissingExtension("CertificateRequest without signature_algorithms")
        self._certificate_request = cr
        self._add_to_transcript(message)
        self.state = HandshakeState.WAIT_CERT

    def _client_finished(self, message: ReceivedMessage, now: float) -> None:
        self._check_finished(message, self._secrets["server_handshake"], now)
        self._add_to_transcript(message)
        self._derive_application_secrets()
        self._records.install_receive(3, self._suite, self._secrets["server_application"])
        # RFC 9846 §4.4: [Certificate, CertificateVerify] when asked, then Finished.
        out: list[OutgoingMessage] = []
        request = self._certificate_request
        ctx = self.context
        if request is not None:
            if ctx.private_key is not None and (
                ctx.certificate_chain or self._own_certificate_type == RAW_PUBLIC_KEY
            ):
                self._signature_scheme = crypto.choose_signature_scheme(
                    ctx.private_key,
                    request.signature_algorithms or [],
                    certificate=ctx.certificate_chain[0] if ctx.certificate_chain else None,
                )
                out.append(self._handshake_message(2, self._own_certificate(request.context)))
                out.append(self._handshake_message(2, self._own_certificate_verify()))
            else:
                out.append(self._handshake_message(2, Certificate(request.context, [])))
        finished = Finished(
            finished_verify_data(
                self._hash_name, self._secrets["client_handshake"], self._transcript.digest()
            )
        )
        out.append(self._handshake_message(2, finished))
        self._secrets["resumption"] = self._schedule_required().resumption_master_secret(
            self._transcript.digest()
        )
        self._start_flight(OutgoingFlight(out, needs_ack=True), now)
        self._records.drop_send(1)  # RFC 9147 §5.6: early data ends with epoch 2
        if not self.early_data_accepted:
            # Rejected 0-RTT data is not resent silently: the application decides.
            self._early_sent.clear()
        self._records.install_send(3, self._suite, self._secrets["client_application"])
        self._app_send_epoch = 3
        self._complete(now)

    def _receive_new_session_ticket(self, message: ReceivedMessage, now: float) -> None:
        ticket = self._decode(message)
        assert isinstance(ticket, NewSessionTicket)
        self._ack_post_handshake(message, now)  # RFC 9147 §5.8.4
        if not ticket.ticket or ticket.lifetime == 0:
            return
        session = Session(
            ticket=ticket.ticket,
            psk=resumption_psk(self._hash_name, self._secrets["resumption"], ticket.nonce),
            cipher_suite=self._suite,
            age_add=ticket.age_add,
            lifetime=min(ticket.lifetime, 604800),  # RFC 9846 §4.6.1: at most 7 days
            received_at=self.context.wall_clock(),
            max_early_data_size=ticket.max_early_data_size or 0,
            server_name=self.server_name,
            alpn_protocol=self.alpn_protocol,
        )
        self.session = session
        self._events.append(SessionTicketReceived(session))

    # ---- server ----
    def _server_client_hello(self, message: ReceivedMessage, now: float) -> None:
        ctx = self.context
        ch = self._decode(message)
        assert isinstance(ch, ClientHello)
        _check_client_hello(ch)
        suite = _select_suite(ctx, ch)
        hash_name = suite_hash_name(suite)
        retry_group = 0
        if ch.cookie is not None:
            contents = open_cookie(
                ctx.cookie_secrets(), ch.cookie, self.peer_address, now, ctx.cookie_lifetime
            )
            if contents is None:
                raise IllegalParameter("invalid cookie")  # RFC 9147 §5.1
            if contents.suite != suite:
                raise IllegalParameter("ClientHello suites changed after HelloRetryRequest")
            retry_group = contents.group
            # RFC 9846 §4.4.1: message_hash(ClientHello1) || HelloRetryRequest.
            self._transcript = Transcript(hash_name)
            self._transcript.restart_after_hello_retry(contents.client_hello_hash)
            hrr_body = _encode_hello_retry(ch, suite, retry_group, ch.cookie)
            self._transcript.add(transcript_bytes(HandshakeType.SERVER_HELLO, hrr_body))
            self._retried = True
        psk = self._accept_psk(ch, message.body, suite, now)
        if psk is not None and not self._retried:
            suite = self._psk_suite(ch, psk)
            hash_name = suite_hash_name(suite)
        dhe = psk is None or PskKeyExchangeMode.PSK_DHE_KE in (ch.psk_key_exchange_modes or [])
        share = _select_key_share(ctx, ch) if dhe else None
        if retry_group and (share is None or share.group != retry_group):
            raise IllegalParameter("second ClientHello lacks the requested key share")
        if not self._retried and ((dhe and share is None) or self.require_cookie):
            group = 0 if share is not None or not dhe else _select_retry_group(ctx, ch)
            self._send_hello_retry(ch, message, suite, group, now)
            return
        if dhe and share is None:
            raise HandshakeFailure("no acceptable key share")
        if psk is None:
            if ctx.private_key is None:
                raise HandshakeFailure("no certificate, and no PSK the client offered")
            if ch.signature_algorithms is None:
                raise MissingExtension("signature_algorithms is required without a PSK")
            self._signature_scheme = crypto.choose_signature_scheme(
                ctx.private_key,
                ch.signature_algorithms,
                certificate=ctx.certificate_chain[0] if ctx.certificate_chain else None,
            )
        alpn = self._select_alpn(ch)
        shared = None
        server_share = b""
        if share is not None:
            server_share, shared = crypto.server_key_share(share.group, share.key_exchange)
            self.group = share.group
        self._version_known = True
        self.cipher_suite = suite
        self.server_name = ch.server_name
        self._client_random = ch.random
        self._hash_name = hash_name
        self._psk = psk
        self.resumed = psk is not None and not psk.external
        self._transcript.set_hash(hash_name)
        self._add_to_transcript(message)
        early = self._accept_early_data(ch, psk, suite, alpn, now)
        # Mirror the ClientHello's numbering, as a stateless server must (RFC 9147 §5.1).
        self._next_message_seq = message.message_seq
        self._records.send_epochs[0].next_seq = self._client_hello_record_seq
        # RFC 9146 §3: answer a client's connection_id with ours (possibly empty).
        local_cid = None
        self._rrc = (
            ch.connection_id is not None
            and ctx.return_routability_check
            and (RRC_EXTENSION, b"") in ch.other_extensions
        )
        if ch.connection_id is None:
            self._cids.local = []  # not negotiated: records carry no CID (RFC 9146 §3)
        else:
            local_cid = self.local_cid if self.local_cid is not None else b""
            self._cids.local = [local_cid]
            self._use_connection_ids(ch.connection_id)
        sh = ServerHello(
            random=secrets.token_bytes(32),
            cipher_suite=suite,
            supported_versions=DTLS13_VERSION,  # RFC 9147 §5: legacy_session_id_echo empty
            key_share=KeyShareEntry(share.group, server_share) if share is not None else None,
            pre_shared_key=0 if psk is not None else None,
            connection_id=local_cid,
            other_extensions=[(RRC_EXTENSION, b"")] if self._rrc else [],
        )
        sh_message = self._handshake_message(0, sh)
        self._derive_handshake_secrets(shared)
        if early:
            self._records.install_receive(1, suite, early)
        own_limit = None
        if ch.record_size_limit is not None:
            own_limit = ctx.record_size_limit or MAX_PLAINTEXT + 1
            self._apply_record_size_limits(ch.record_size_limit)
        ee = EncryptedExtensions(
            server_name=ch.server_name is not None,
            alpn_protocol=alpn.encode() if alpn else None,
            early_data=bool(early),
            record_size_limit=own_limit,
            other_extensions=self._server_srtp(ch) + self._server_certificate_types(ch),
        )
        messages = [sh_message, self._handshake_message(2, ee)]
        certificate_auth = psk is None  # RFC 9846 §4.3.2: no certificates with a PSK
        if ctx.request_client_certificate and certificate_auth:
            cr = CertificateRequest(
                context=b"", signature_algorithms=[int(s) for s in ctx.signature_algorithms]
            )
            messages.append(self._handshake_message(2, cr))
        if certificate_auth:
            messages.append(self._handshake_message(2, self._own_certificate(b"")))
            messages.append(self._handshake_message(2, self._own_certificate_verify()))
        finished = Finished(
            finished_verify_data(
                hash_name, self._secrets["server_handshake"], self._transcript.digest()
            )
        )
        messages.append(self._handshake_message(2, finished))
        self._derive_application_secrets()
        self._records.install_send(3, suite, self._secrets["server_application"])
        self._records.install_receive(3, suite, self._secrets["client_application"])
        self._app_send_epoch = 3
        self._start_flight(OutgoingFlight(messages, needs_ack=False), now)
        self.state = (
            HandshakeState.WAIT_CERT
            if ctx.request_client_certificate and certificate_auth
            else HandshakeState.WAIT_FINISHED
        )

    def _accept_psk(self, ch: ClientHello, body: bytes, suite: int, now: float) -> _Psk | None:
        """The first offered PSK we know, usable with a suite we share, whose binder
        verifies (RFC 9846 §4.2.11); a wrong binder is fatal (decrypt_error)."""
        offered = ch.pre_shared_key
        if offered is None:
            return None
        ctx = self.context
        modes = set(ch.psk_key_exchange_modes or []) & set(ctx.psk_key_exchange_modes)
        if not modes:
            return None
        for index, identity in enumerate(offered.identities):
            psk = self._lookup_psk(identity, now)
            if psk is None:
                continue
            if self._retried and suite_hash_name(suite) != psk.hash_name:
                continue
            if not any(suite_hash_name(s) == psk.hash_name for s in ch.cipher_suites):
                continue
            if index != 0:
                return None  # keep to the first identity: its binder is what we check
            digest = self._transcript.digest_with(truncated_client_hello(body), psk.hash_name)
            expected = compute_binder(psk.hash_name, _binder_key(psk), digest)
            if not hmac.compare_digest(expected, offered.binders[index]):
                raise DecryptError("PSK binder does not verify")
            return psk
        return None

    def _lookup_psk(self, identity: PskIdentity, now: float) -> _Psk | None:
        ctx = self.context
        ticket = ctx.ticket_keys().open(identity.identity) if ctx.session_tickets else None
        if ticket is not None:
            wall = ctx.wall_clock()
            if not 0 <= wall - ticket.issued <= ticket.lifetime:
                return None  # expired: full handshake (RFC 9846 §4.6.1)
            return _Psk(
                identity.identity,
                ticket.psk,
                suite_hash_name(ticket.cipher_suite),
                external=False,
                obfuscated_age=identity.obfuscated_ticket_age,
                ticket=ticket,
            )
        if ctx.psk_lookup is not None:
            found = ctx.psk_lookup(identity.identity)
            if isinstance(found, ExternalPsk):
                return _Psk(found.identity, found.key, found.hash_name, external=True)
            if isinstance(found, bytes):
                return _Psk(identity.identity, found, "sha256", external=True)
        return None

    def _psk_suite(self, ch: ClientHello, psk: _Psk) -> int:
        """A resumed ticket keeps its suite when offered, so 0-RTT can be accepted."""
        ticket = psk.ticket
        if (
            ticket is not None
            and ticket.cipher_suite in ch.cipher_suites
            and ticket.cipher_suite in self.context.cipher_suites
        ):
            return ticket.cipher_suite
        return _select_suite(self.context, ch, psk.hash_name)

    def _accept_early_data(
        self, ch: ClientHello, psk: _Psk | None, suite: int, alpn: str | None, now: float
    ) -> bytes | None:
        """The client early traffic secret when 0-RTT is accepted (RFC 9846 §4.2.10)."""
        ctx = self.context
        ticket = psk.ticket if psk is not None else None
        if not ch.early_data or ticket is None or psk is None or self._retried:
            return None
        if ctx.max_early_data_size <= 0 or ticket.max_early_data_size <= 0:
            return None
        if ticket.cipher_suite != suite or ticket.alpn_protocol != alpn:
            return None
        # RFC 9846 §8.3: the ticket age the client reports must match ours closely.
        age = ((psk.obfuscated_age - ticket.age_add) & 0xFFFFFFFF) / 1000
        window = ctx.replay_filter().window
        if abs((ctx.wall_clock() - ticket.issued) - age) > window:
            return None
        assert ch.pre_shared_key is not None
        if not ctx.replay_filter().accept(ch.pre_shared_key.binders[0], ctx.wall_clock()):
            return None  # RFC 9846 §8.2: each ClientHello's 0-RTT at most once
        schedule = KeySchedule(suite)
        schedule.early_secret(psk.key)
        secret = schedule.client_early_traffic_secret(self._transcript.digest())
        self._log_secret("CLIENT_EARLY_TRAFFIC_SECRET", secret)
        self.early_data_accepted = True
        return secret

    def _send_hello_retry(
        self, ch: ClientHello, message: ReceivedMessage, suite: int, group: int, now: float
    ) -> None:
        """A cookie HelloRetryRequest, keeping no state (RFC 9147 §5.1): the second
        ClientHello is handled as if this connection had just been made for it."""
        body = _hello_retry_request(
            self.context, ch, message.body, self.peer_address, now, suite, group
        )
        self._emit(
            _plaintext_handshake_record(
                HandshakeType.SERVER_HELLO, message.message_seq, body, self._client_hello_record_seq
            )
        )
        self._transcript = Transcript()

    def _server_certificate_types(self, ch: ClientHello) -> list[tuple[int, bytes]]:
        """RFC 7250 §4.2: our certificate type, and the client's when we ask for one."""
        if self._psk is not None:
            return []
        ctx = self.context
        offered = dict(ch.other_extensions)
        out = []
        server_types = offered.get(ExtensionType.SERVER_CERTIFICATE_TYPE)
        if server_types is None and not ctx.certificate_chain:
            raise HandshakeFailure("the client accepts only certificates, and we have none")
        if server_types is not None:
            types = _certificate_types(server_types)
            if ctx.raw_public_key and RAW_PUBLIC_KEY in types:
                self._own_certificate_type = RAW_PUBLIC_KEY
            elif X509 in types and ctx.certificate_chain:
                self._own_certificate_type = X509
            else:
                raise UnsupportedCertificate("no certificate type in common")
            out.append((ExtensionType.SERVER_CERTIFICATE_TYPE, bytes([self._own_certificate_type])))
        client_types = offered.get(ExtensionType.CLIENT_CERTIFICATE_TYPE)
        if client_types is not None and ctx.request_client_certificate:
            types = _certificate_types(client_types)
            if ctx.pinned_public_keys and RAW_PUBLIC_KEY in types:
                self._peer_certificate_type = RAW_PUBLIC_KEY
            elif X509 in types:
                self._peer_certificate_type = X509
            else:
                raise UnsupportedCertificate("no client certificate type in common")
            out.append(
                (ExtensionType.CLIENT_CERTIFICATE_TYPE, bytes([self._peer_certificate_type]))
            )
        return out

    def _server_srtp(self, ch: ClientHello) -> list[tuple[int, bytes]]:
        """use_srtp in EncryptedExtensions (RFC 5764 §4.1.1; DTLS 1.3 moves it to EE)."""
        offered = [d for t, d in ch.other_extensions if t == ExtensionType.USE_SRTP]
        if not offered or not self.context.srtp_profiles:
            return []
        profiles, mki = decode_use_srtp(offered[0])
        profile = select_profile(tuple(self.context.srtp_profiles), profiles)
        if profile is None:
            return []  # no common profile: the handshake goes on without SRTP (§4.1.1)
        self.srtp_profile = profile
        return [(ExtensionType.USE_SRTP, encode_use_srtp([profile], mki))]

    def srtp_keys(self) -> SrtpKeys:
        """The SRTP master keys and salts exported from this connection (RFC 5764 §4.2)."""
        if self.srtp_profile is None:
            raise ConnectionStateError("no SRTP profile was negotiated")
        material = self.export_keying_material(
            SRTP_EXPORTER_LABEL, b"", keying_material_length(self.srtp_profile)
        )
        return SrtpKeys.from_keying_material(self.srtp_profile, material)

    def _select_alpn(self, ch: ClientHello) -> str | None:
        offered = self.context.alpn_protocols
        if not offered or not ch.alpn_protocols:
            return None
        client = [p.decode("ascii", "replace") for p in ch.alpn_protocols]
        for protocol in offered:
            if protocol in client:
                self.alpn_protocol = protocol
                return protocol
        raise NoApplicationProtocol("no ALPN protocol in common")  # RFC 7301 §3.2

    def _server_finished(self, message: ReceivedMessage, now: float) -> None:
        self._check_finished(message, self._secrets["client_handshake"], now)
        self._add_to_transcript(message)
        self._secrets["resumption"] = self._schedule_required().resumption_master_secret(
            self._transcript.digest()
        )
        self._records.drop_receive(1)  # RFC 9147 §5.6: 0-RTT ends with epoch 2
        # Our flight is acknowledged by the client's; epoch 2 stays readable to ACK a
        # resent client Finished (RFC 9147 §5.8.1), but we never send in it again.
        self._records.drop_send(2)
        self._complete(now)
        # RFC 9147 §7.1: the client's final flight is acknowledged explicitly.
        self._schedule_ack(now, immediate=True)
        if self.context.session_tickets > 0:
            self._send_new_session_ticket()
        for payload in self._early_records:
            self._events.append(DataReceived(payload))
        self._early_records.clear()

    def _send_new_session_ticket(self) -> None:
        """A self-contained ticket (RFC 9846 §4.6.1), acknowledged like every
        post-handshake message (RFC 9147 §5.8.4)."""
        ctx = self.context
        nonce = self._tickets_sent.to_bytes(8, "big")
        self._tickets_sent += 1
        age_add = int.from_bytes(secrets.token_bytes(4), "big")
        max_early = ctx.max_early_data_size
        contents = TicketContents(
            cipher_suite=self._suite,
            issued=ctx.wall_clock(),
            age_add=age_add,
            lifetime=ctx.ticket_lifetime,
            max_early_data_size=max_early,
            psk=resumption_psk(self._hash_name, self._secrets["resumption"], nonce),
            alpn_protocol=self.alpn_protocol,
            server_name=self.server_name,
        )
        ticket = NewSessionTicket(
            lifetime=ctx.ticket_lifetime,
            age_add=age_add,
            nonce=nonce,
            ticket=ctx.ticket_keys().seal(contents),
            max_early_data_size=max_early or None,
        )
        self._send_post_handshake(_Flight.NEW_SESSION_TICKET, ticket)

    # ---- both sides ----
    def _apply_record_size_limits(self, peer_limit: int) -> None:
        """RFC 8449 §4: the limits count the inner content type, so the content is one
        byte less; ours applies once the peer has seen it."""
        self._send_limit = min(MAX_PLAINTEXT, peer_limit - 1)
        own = self.context.record_size_limit
        if own is not None:
            self._receive_limit = min(MAX_PLAINTEXT, own - 1)

    @property
    def local_cid(self) -> bytes | None:
        """The connection ID we receive with (RFC 9147 §9), None if not negotiated."""
        return self._cids.local[0] if self._cids.local else None

    @property
    def local_cids(self) -> tuple[bytes, ...]:
        """Every CID we gave the peer; records may carry any of them."""
        return tuple(self._cids.local)

    @property
    def peer_cid(self) -> bytes | None:
        """The connection ID our records to the peer carry."""
        return self._cids.peer

    def _use_connection_ids(self, peer_cid: bytes) -> None:
        """Both offered connection_id: from epoch 2 on, records to the peer carry its CID
        and records to us carry ours; a zero-length CID is not sent (RFC 9147 §9)."""
        self._cids.peer = peer_cid
        self._records.send_cid = peer_cid or None
        self._records.receive_cid_len = len(self.local_cid or b"")

    def _implicit_ack(self, now: float) -> None:
        """The peer's next flight acknowledges ours (RFC 9147 §7.2)."""
        if _Flight.HANDSHAKE in self._flights:
            self._flight_acknowledged(_Flight.HANDSHAKE, now)

    def _peer_certificate(self, message: ReceivedMessage, now: float) -> None:
        certificate = self._decode(message)
        assert isinstance(certificate, Certificate)
        ctx = self.context
        if certificate.context:
            raise IllegalParameter("certificate_request_context must be empty")
        self._implicit_ack(now)
        if not certificate.entries:
            if self.is_client:
                raise DecodeError("server sent no certificate")  # RFC 9846 §4.4.2.4
            if ctx.verify_mode == ssl.CERT_REQUIRED:
                raise CertificateRequired("client sent no certificate")
            self._add_to_transcript(message)
            self.state = HandshakeState.WAIT_FINISHED
            return
        if any(entry.extensions for entry in certificate.entries):
            # RFC 9846 §4.4.2: only extensions we asked for; we ask for none.
            raise UnsupportedExtension("certificate entry extension we did not request")
        if self._peer_certificate_type == RAW_PUBLIC_KEY:
            # RFC 7250 §3: one SubjectPublicKeyInfo, trusted if pinned.
            spki = certificate.entries[0].data
            if len(certificate.entries) != 1 or spki not in ctx.pinned_public_keys:
                raise BadCertificate("raw public key is not one we pinned")
            self._peer_leaf = crypto.load_public_key(spki)
            self.peer_public_key = spki
            self._add_to_transcript(message)
            self.state = HandshakeState.WAIT_CV
            return
        chain = [entry.data for entry in certificate.entries]
        if ctx.verify_mode != ssl.CERT_NONE:
            name = self.server_name if (self.is_client and ctx.check_hostname) else None
            certs = crypto.verify_certificate_chain(
                chain,
                ctx.trust_store(),
                server_name=name,
                is_server_cert=self.is_client,
                when=ctx.certificate_time(),
            )
        else:
            certs = crypto.parse_certificates(chain)
        if ctx.verify_callback is not None:
            ctx.verify_callback(certs, self.server_name)
        self.peer_certificates = tuple(certs)
        self._peer_leaf = certs[0]
        self._add_to_transcript(message)
        self.state = HandshakeState.WAIT_CV

    def _peer_certificate_verify(self, message: ReceivedMessage, now: float) -> None:
        cv = self._decode(message)
        assert isinstance(cv, CertificateVerify)
        if cv.algorithm not in self.context.signature_algorithms:
            raise IllegalParameter("CertificateVerify with a scheme we did not offer")
        content = crypto.certificate_verify_content(self.is_client, self._transcript.digest())
        crypto.verify_signature(self._peer_leaf, cv.algorithm, cv.signature, content)
        self._add_to_transcript(message)
        self.state = HandshakeState.WAIT_FINISHED

    def _check_finished(self, message: ReceivedMessage, base_key: bytes, now: float) -> None:
        finished = self._decode(message)
        assert isinstance(finished, Finished)
        self._implicit_ack(now)
        expected = finished_verify_data(self._hash_name, base_key, self._transcript.digest())
        if not hmac.compare_digest(expected, finished.verify_data):
            raise DecryptError("Finished does not verify")  # RFC 9846 §4.4.4

    def _own_certificate(self, context: bytes) -> Certificate:
        if self._own_certificate_type == RAW_PUBLIC_KEY:
            spki = crypto.public_key_der(self.context.private_key)
            return Certificate(context, [CertificateEntry(spki)])  # RFC 7250 §3
        entries = [
            CertificateEntry(crypto.certificate_der(c)) for c in self.context.certificate_chain
        ]
        return Certificate(context, entries)

    def _own_certificate_verify(self) -> CertificateVerify:
        content = crypto.certificate_verify_content(not self.is_client, self._transcript.digest())
        signature = crypto.sign(self.context.private_key, self._signature_scheme, content)
        return CertificateVerify(self._signature_scheme, signature)

    def _schedule_required(self) -> KeySchedule:
        if self._schedule is None:
            raise InternalError("no key schedule")
        return self._schedule

    @property
    def _suite(self) -> int:
        assert self.cipher_suite is not None
        return self.cipher_suite

    def _derive_handshake_secrets(self, shared_secret: bytes | None) -> None:
        confidentiality, integrity = _AEAD_LIMITS[CipherSuite(self._suite)]
        ctx = self.context
        self._confidentiality_limit = ctx.confidentiality_limit or confidentiality
        self._integrity_limit = ctx.integrity_limit or integrity
        schedule = KeySchedule(self._suite)
        schedule.early_secret(self._psk.key if self._psk is not None else None)
        schedule.handshake_secret(shared_secret)
        self._schedule = schedule
        digest = self._transcript.digest()
        client = schedule.client_handshake_traffic_secret(digest)
        server = schedule.server_handshake_traffic_secret(digest)
        self._secrets["client_handshake"] = client
        self._secrets["server_handshake"] = server
        self._log_secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", client)
        self._log_secret("SERVER_HANDSHAKE_TRAFFIC_SECRET", server)
        own, peer = (client, server) if self.is_client else (server, client)
        self._records.install_send(2, self._suite, own)
        self._records.install_receive(2, self._suite, peer)

    def _derive_application_secrets(self) -> None:
        schedule = self._schedule_required()
        schedule.master_secret()
        digest = self._transcript.digest()
        client = schedule.client_application_traffic_secret(digest)
        server = schedule.server_application_traffic_secret(digest)
        exporter = schedule.exporter_master_secret(digest)
        self._secrets.update(
            client_application=client, server_application=server, exporter=exporter
        )
        self._log_secret("CLIENT_TRAFFIC_SECRET_0", client)
        self._log_secret("SERVER_TRAFFIC_SECRET_0", server)
        self._log_secret("EXPORTER_SECRET", exporter)

    def _log_secret(self, label: str, secret: bytes) -> None:
        # NSS key log format; only when the application asked for it.
        if self.context.keylog is not None:
            self.context.keylog(f"{label} {self._client_random.hex()} {secret.hex()}")

    def _complete(self, now: float) -> None:
        # What only the handshake needed goes (a connection should be small).
        self._transcript = Transcript()
        self._schedule = None
        self._secrets.pop("client_handshake", None)
        self._secrets.pop("server_handshake", None)
        self.state = HandshakeState.CONNECTED
        self.last_received = self.last_sent = now
        self.handshake_completed_at = now
        assert self.cipher_suite is not None
        self._events.append(
            HandshakeCompleted(
                version="DTLSv1.3",
                cipher_suite=CipherSuite(self.cipher_suite).name,
                group=_group_name(self.group),
                alpn_protocol=self.alpn_protocol,
                peer_certificates=self.peer_certificates,
                resumed=self.resumed,
                early_data_accepted=self.early_data_accepted,
            )
        )
        pending, self._pending_app = self._pending_app, []
        for data in pending:
            self.send(data)

    # ---- post-handshake (RFC 9147 §5.8.4, §8) ----
    def _ack_post_handshake(self, message: ReceivedMessage, now: float) -> None:
        self._schedule_ack(now, immediate=True)

    def _receive_key_update(self, message: ReceivedMessage, now: float) -> None:
        update = self._decode(message)
        assert isinstance(update, KeyUpdate)
        if update.request_update not in (0, 1):
            raise IllegalParameter("invalid KeyUpdate request")
        epoch = message.epoch
        current = self._records.receive_epochs.get(epoch)
        if current is None or epoch != max(self._records.receive_epochs):
            raise UnexpectedMessage("KeyUpdate outside the current epoch")
        secret = next_application_traffic_secret(self._hash_name, current.secret)
        self._records.install_receive(epoch + 1, self._suite, secret)
        label = "SERVER" if self.is_client else "CLIENT"
        self._log_secret(f"{label}_TRAFFIC_SECRET_{epoch - 2}", secret)
        self._events.append(KeyUpdated("receive", epoch + 1))
        self._ack_post_handshake(message, now)
        if update.request_update == KeyUpdateRequest.UPDATE_REQUESTED:
            self.update_keys(request_peer_update=False)

    def _advance_send_epoch(self) -> None:
        epoch = self._app_send_epoch
        secret = next_application_traffic_secret(
            self._hash_name, self._records.send_epochs[epoch].secret
        )
        self._records.install_send(epoch + 1, self._suite, secret)
        self._app_send_epoch = epoch + 1
        # Old keys go once no unacknowledged message needs them for a retransmission
        # (RFC 9147 §4.2.1: retransmissions use the original epoch).
        in_use = {m.epoch for f in self._flights.values() for m in f.messages}
        for old in [e for e in self._records.send_epochs if 3 <= e <= epoch]:
            if old not in in_use:
                self._records.drop_send(old)
        label = "CLIENT" if self.is_client else "SERVER"
        self._log_secret(f"{label}_TRAFFIC_SECRET_{epoch - 2}", secret)
        self._events.append(KeyUpdated("send", epoch + 1))

    # ---- connection IDs and paths (RFC 9147 §9, draft-ietf-tls-dtls-rrc) ----
    def _check_cids_negotiated(self) -> None:
        if self.state is not HandshakeState.CONNECTED:
            raise ConnectionStateError("connection IDs change only after the handshake")
        if self.peer_cid is None:
            raise ConnectionStateError("connection IDs were not negotiated")

    def _receive_new_connection_id(self, message: ReceivedMessage, now: float) -> None:
        update = self._decode(message)
        assert isinstance(update, NewConnectionId)
        if self.peer_cid is None or not self.peer_cid:
            raise UnexpectedMessage("NewConnectionId without a CID to replace")  # §9
        self._cids.add_peer(update.cids, immediate=update.usage == 0)
        self._records.send_cid = self._cids.peer or None
        self._cids.request_outstanding = False
        self._ack_post_handshake(message, now)

    def _receive_request_connection_id(self, message: ReceivedMessage, now: float) -> None:
        request = self._decode(message)
        assert isinstance(request, RequestConnectionId)
        if not self.local_cid:
            raise UnexpectedMessage("RequestConnectionId while we receive no CID")  # §9
        self._cids.requests_received += 1
        if self._cids.requests_received > 16:
            raise TooManyCidsRequested("too many RequestConnectionId messages")
        self._ack_post_handshake(message, now)
        if _Flight.NEW_CONNECTION_ID not in self._flights:
            self.issue_connection_ids(min(request.num_cids, 4))

    def _on_new_address(self, addr: Address, data: bytes, now: float) -> None:
        """Authentic records from another address: the connection moves there only after
        a return routability check answers from it (draft-ietf-tls-dtls-rrc §5.1)."""
        if not self._rrc or self.state is not HandshakeState.CONNECTED:
            return
        challenge = self._path_challenge
        if challenge is None or challenge.address != addr:
            challenge = self._path_challenge = PathChallenge(addr)
            challenge.received = len(data)
            self._send_path_challenge(challenge, now)

    def _send_path_challenge(self, challenge: PathChallenge, now: float) -> None:
        if challenge.sent >= MAX_CHALLENGES:
            self._path_challenge = None  # the new address never answered: stay
            return
        challenge.sent += 1
        challenge.deadline = now + max(self._rto.value, 1.0)  # the draft's T
        message = encode_rrc(RrcMessageType.PATH_CHALLENGE, challenge.cookie)
        size = self._records.overhead(self._app_send_epoch) + len(message)
        if challenge.bytes_sent + size > 3 * challenge.received:
            return  # never more than 3x what the address sent us (the RRC draft §6)
        record, _ = self._records.seal(self._app_send_epoch, RRC_CONTENT_TYPE, message)
        challenge.bytes_sent += len(record)
        self._probes.append((record, challenge.address))

    def _receive_rrc(self, record: InboundRecord, addr: Address, now: float) -> None:
        try:
            msg_type, cookie = decode_rrc(record.payload)
        except DecodeError:
            return
        if msg_type == RrcMessageType.PATH_CHALLENGE:
            # Answer at once, to the address the challenge came from (§5.4).
            answer = encode_rrc(RrcMessageType.PATH_RESPONSE, cookie)
            sealed, _ = self._records.seal(self._app_send_epoch, RRC_CONTENT_TYPE, answer)
            self._probes.append((sealed, addr))
            return
        challenge = self._path_challenge
        if (
            msg_type == RrcMessageType.PATH_RESPONSE
            and challenge is not None
            and addr == challenge.address
            and hmac.compare_digest(cookie, challenge.cookie)
        ):
            old, self.peer_address = self.peer_address, addr
            self._path_challenge = None
            self._events.append(PeerAddressChanged(old, addr))
        # Anything else, path_drop included (we run the basic check), is ignored (§5.4).

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
        if self.state is HandshakeState.CLOSED:
            return
        self.state = HandshakeState.CLOSED
        self._flights.clear()
        self._ack_deadline = None
        self._events.append(ConnectionClosed(reason, alert, by_peer, error))


def _certificate_types(data: bytes) -> list[int]:
    """CertificateType types<1..2^8-1> of a ClientHello (RFC 7250 §4.1)."""
    if len(data) < 2 or data[0] != len(data) - 1:
        raise DecodeError("malformed certificate type list")
    return list(data[1:])


def _binder_key(psk: _Psk) -> bytes:
    schedule = KeySchedule(_SUITE_FOR_HASH[psk.hash_name])
    schedule.early_secret(psk.key)
    return schedule.binder_key(psk.external)


def _acked_any(flight: OutgoingFlight) -> bool:
    return any(m.unacked != [(0, len(m.body))] for m in flight.messages)


def _message_type(message: Any) -> int:
    from .messages import handshake_type

    return int(handshake_type(message))


def _type_name(msg_type: int) -> str:
    try:
        return HandshakeType(msg_type).name.lower()
    except ValueError:
        return f"handshake type {msg_type}"


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
