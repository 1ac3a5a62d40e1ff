"""Definitions the client and server handshake state machines share (RFC 9846 Appendix A):
states, the kinds of flights a connection keeps, a PSK under negotiation, what a handshake
may ask of its connection, and the messages both sides send and check."""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from . import crypto
from .config import Context
from .errors import (
    BadCertificate,
    CertificateRequired,
    DecodeError,
    DecryptError,
    IllegalParameter,
    InternalError,
    UnexpectedMessage,
    UnsupportedExtension,
)
from .events import Event
from .iana import CipherSuite, HandshakeType
from .keyschedule import KeySchedule, Transcript
from .messages import (
    Certificate,
    CertificateEntry,
    CertificateVerify,
    Finished,
    HandshakeMessage,
    decode_handshake_body,
)
from .reliability import OutgoingFlight, OutgoingMessage, ReceivedMessage
from .session import Session, TicketContents

if TYPE_CHECKING:
    from .provider import HandshakeCrypto
    from .record_layer import RecordLayer

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

    # members are singletons compared by identity: hash them so too (Enum's hash of the
    # name is a Python call per dict lookup, and states key the handler tables)
    __hash__ = object.__hash__


class FlightKind(Enum):
    HANDSHAKE = "handshake"
    KEY_UPDATE = "key_update"
    NEW_SESSION_TICKET = "new_session_ticket"
    NEW_CONNECTION_ID = "new_connection_id"
    REQUEST_CONNECTION_ID = "request_connection_id"

    __hash__ = object.__hash__  # as HandshakeState's


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


def binder_key(psk: PskCandidate, provider: HandshakeCrypto) -> bytes:
    schedule = provider.key_schedule(SUITE_FOR_HASH[psk.hash_name])
    schedule.early_secret(psk.key)
    return schedule.binder_key(psk.external)


def certificate_types(data: bytes) -> list[int]:
    """CertificateType types<1..2^8-1> of a ClientHello (RFC 7250 §4.1)."""
    if len(data) < 2 or data[0] != len(data) - 1:
        raise DecodeError("malformed certificate type list")
    return list(data[1:])


class HandshakeConnection(Protocol):
    """What a handshake may ask of its connection: number, send and acknowledge flights
    (RFC 9147 §5.8, §7), protect records (§4), report events. The handshake owns the
    rest: its state, the transcript, the key schedule and what it negotiated."""

    context: Context
    peer_address: Address
    #: install and drop keys, seal records (RFC 9147 §4)
    _records: RecordLayer
    #: application data queued before the handshake completed (0-RTT sends from it)
    _pending_app: list[bytes]

    @property
    def local_cid(self) -> bytes | None: ...
    def _handshake_message(self, epoch: int, message: HandshakeMessage) -> OutgoingMessage: ...
    def _raw_handshake_message(self, epoch: int, msg_type: int, body: bytes) -> OutgoingMessage: ...
    def _start_flight(self, flight: OutgoingFlight, now: float) -> None: ...
    def _send_post_handshake(self, kind: FlightKind, *messages: HandshakeMessage) -> None: ...
    def _emit(self, record: bytes) -> None: ...
    def _implicit_ack(self, now: float) -> None: ...
    def _schedule_ack(self, now: float, immediate: bool) -> None: ...
    def _version_selected(self) -> None: ...
    def _mirror_numbering(self, message_seq: int, record_seq: int) -> None: ...
    def _negotiate_connection_ids(self, peer_cid: bytes | None, rrc: bool) -> None: ...
    def _apply_record_size_limits(self, peer_limit: int) -> None: ...
    def _apply_aead_limits(self, suite: int) -> None: ...
    def _start_application_epoch(self, suite: int, secret: bytes) -> None: ...
    def _handshake_completed(self, now: float) -> None: ...
    def _release_early_records(self) -> None: ...
    def _queue_event(self, event: Event) -> None: ...


class Handshake:
    """What the client and server handshakes share (RFC 9846 §4.4): the transcript, the
    key schedule, certificates, CertificateVerify and Finished, and what was negotiated.

    A handshake receives reassembled messages and the time (`handle`); it asks its
    connection for everything else (`HandshakeConnection`)."""

    is_client: bool
    #: (state, message type) -> handler method name (RFC 9846 Appendix A)
    _handlers: dict[HandshakeState, dict[int, str]]

    # slotted, as `Connection`: a dict of this many attributes is not shared per class
    __slots__ = (
        "_conn", "_crypto", "_peer_leaf", "_psk", "_retried", "_schedule",
        "_signature_scheme", "alpn_protocol", "cipher_suite", "client_random", "context",
        "early_data_accepted", "group", "hash_name", "own_certificate_type",
        "peer_certificate_type", "peer_certificates", "peer_public_key", "resumed",
        "secrets", "server_name", "session", "srtp_profile", "state", "transcript",
    )  # fmt: skip

    def __init__(
        self,
        connection: HandshakeConnection,
        context: Context,
        crypto: HandshakeCrypto,
        server_name: str | None = None,
        session: Session | None = None,
    ) -> None:
        self._conn = connection
        self.context = context
        self._crypto = crypto
        self.state = HandshakeState.START
        # what was negotiated
        self.server_name = server_name
        self.session = session
        self.cipher_suite: int | None = None
        self.group: int | None = None
        self.alpn_protocol: str | None = None
        self.peer_certificates: tuple[Any, ...] = ()
        self.srtp_profile: int | None = None
        self.peer_public_key: bytes | None = None  # the peer's raw public key (RFC 7250)
        self.resumed = False
        self.early_data_accepted = False
        self.own_certificate_type = X509
        self.peer_certificate_type = X509
        # the handshake's own state
        self.transcript = Transcript()
        self.hash_name = ""
        self.client_random = b""
        self.secrets: dict[str, bytes] = {}
        self._schedule: KeySchedule | None = None
        self._psk: PskCandidate | None = None
        self._retried = False
        self._signature_scheme = 0
        self._peer_leaf: Any = None

    # ---- messages in ----
    def handle(self, message: ReceivedMessage, now: float) -> None:
        """Process one reassembled handshake message of the handshake's flights."""
        msg_type = message.msg_type
        state = self.state
        name = self._handlers.get(state, {}).get(msg_type)
        if name is None:
            raise UnexpectedMessage(f"{type_name(msg_type)} in state {state.value}")
        # the hellos are plaintext (epoch 0), the rest of the handshake in epoch 2
        expected_epoch = 0 if msg_type in _EPOCH_0_TYPES else 2
        if message.epoch != expected_epoch:
            raise UnexpectedMessage(f"{type_name(msg_type)} in epoch {message.epoch}")
        handler: Callable[[ReceivedMessage, float], None] = getattr(self, name)
        handler(message, now)

    def _decode(self, message: ReceivedMessage) -> HandshakeMessage:
        return decode_handshake_body(message.msg_type, message.body)

    def _add_to_transcript(self, message: ReceivedMessage) -> None:
        self.transcript.add_message(message.msg_type, message.body)

    def _peer_certificate(self, message: ReceivedMessage, now: float) -> None:
        certificate = self._decode(message)
        assert isinstance(certificate, Certificate)
        ctx = self.context
        if certificate.context:
            raise IllegalParameter("certificate_request_context must be empty")
        self._conn._implicit_ack(now)
        if not certificate.entries:
            if self.is_client:
                raise DecodeError("server sent no certificate")  # RFC 9846 §4.4.2.4
            if ctx.verify_mode == ssl.CERT_REQUIRED:
                raise CertificateRequired("client sent no certificate")
            self._add_to_transcript(message)
            self.state = HandshakeState.WAIT_FINISHED
            return
        chain = []
        for entry in certificate.entries:
            if entry.extensions:
                # RFC 9846 §4.4.2: only extensions we asked for; we ask for none.
                raise UnsupportedExtension("certificate entry extension we did not request")
            chain.append(entry.data)
        if self.peer_certificate_type == RAW_PUBLIC_KEY:
            # RFC 7250 §3: one SubjectPublicKeyInfo, trusted if pinned.
            spki = certificate.entries[0].data
            if len(certificate.entries) != 1 or spki not in ctx.pinned_public_keys:
                raise BadCertificate("raw public key is not one we pinned")
            self._peer_leaf = crypto.load_public_key(spki)
            self.peer_public_key = spki
            self._add_to_transcript(message)
            self.state = HandshakeState.WAIT_CV
            return
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
        content = crypto.certificate_verify_content(self.is_client, self.transcript.digest())
        self._crypto.verify_signature(self._peer_leaf, cv.algorithm, cv.signature, content)
        self._add_to_transcript(message)
        self.state = HandshakeState.WAIT_FINISHED

    def _check_finished(self, message: ReceivedMessage, base_key: bytes, now: float) -> None:
        finished = self._decode(message)
        assert isinstance(finished, Finished)
        self._conn._implicit_ack(now)
        expected = self._schedule_required().verify_data(base_key, self.transcript.digest())
        if not hmac.compare_digest(expected, finished.verify_data):
            raise DecryptError("Finished does not verify")  # RFC 9846 §4.4.4

    # ---- messages out ----
    def _own_finished(self, base_key: bytes) -> Finished:
        return Finished(self._schedule_required().verify_data(base_key, self.transcript.digest()))

    def _own_certificate(self, context: bytes) -> Certificate:
        if self.own_certificate_type == RAW_PUBLIC_KEY:
            assert self.context.private_key is not None
            spki = crypto.public_key_der(self.context.private_key)
            return Certificate(context, [CertificateEntry(spki)])  # RFC 7250 §3
        chain = self.context.certificate_chain_der()
        if context:  # a post-handshake request's (RFC 9846 §4.3.2)
            return Certificate(context, [CertificateEntry(der) for der in chain])
        # the server's, or a client's in the handshake: the same on every connection
        return self.context.kept_message(  # type: ignore[no-any-return]
            chain, lambda: Certificate(b"", [CertificateEntry(der) for der in chain])
        )

    def _own_certificate_verify(self) -> CertificateVerify:
        content = crypto.certificate_verify_content(not self.is_client, self.transcript.digest())
        signature = self._crypto.sign(self.context.private_key, self._signature_scheme, content)
        return CertificateVerify(self._signature_scheme, signature)

    # ---- the key schedule (RFC 9846 §7.1) ----
    def _schedule_required(self) -> KeySchedule:
        if self._schedule is None:
            raise InternalError("no key schedule")
        return self._schedule

    @property
    def suite(self) -> int:
        assert self.cipher_suite is not None
        return self.cipher_suite

    def _derive_handshake_secrets(self, shared_secret: bytes | None) -> None:
        suite = self.suite
        self._conn._apply_aead_limits(suite)
        schedule = self._crypto.key_schedule(suite)
        if self._psk is not None:
            schedule.early_secret(self._psk.key)
        self._schedule = schedule
        client, server = schedule.handshake_stage(shared_secret, self.transcript.digest())
        self.secrets["client_handshake"] = client
        self.secrets["server_handshake"] = server
        if self.context.keylog is not None:  # as log_secret checks, once for both
            self.log_secret("CLIENT_HANDSHAKE_TRAFFIC_SECRET", client)
            self.log_secret("SERVER_HANDSHAKE_TRAFFIC_SECRET", server)
        own, peer = (client, server) if self.is_client else (server, client)
        records = self._conn._records
        records.install_send(2, suite, own)
        records.install_receive(2, suite, peer)

    def _derive_application_secrets(self) -> None:
        client, server, exporter = self._schedule_required().application_stage(
            self.transcript.digest()
        )
        self.secrets.update(client_application=client, server_application=server, exporter=exporter)
        if self.context.keylog is not None:  # as log_secret checks, once for the three
            self.log_secret("CLIENT_TRAFFIC_SECRET_0", client)
            self.log_secret("SERVER_TRAFFIC_SECRET_0", server)
            self.log_secret("EXPORTER_SECRET", exporter)

    def log_secret(self, label: str, secret: bytes) -> None:
        # NSS key log format; only when the application asked for it.
        if self.context.keylog is not None:
            self.context.keylog(f"{label} {self.client_random.hex()} {secret.hex()}")

    def _complete(self, now: float) -> None:
        # What only the handshake needed goes (a connection should be small).
        self.transcript = Transcript()
        self._schedule = None
        self.secrets.pop("client_handshake", None)
        self.secrets.pop("server_handshake", None)
        self.state = HandshakeState.CONNECTED
        self._conn._handshake_completed(now)


_EPOCH_0_TYPES = frozenset(
    int(t)
    for t in (
        HandshakeType.CLIENT_HELLO,
        HandshakeType.SERVER_HELLO,
        HandshakeType.HELLO_VERIFY_REQUEST,
    )
)


def type_name(msg_type: int) -> str:
    try:
        return HandshakeType(msg_type).name.lower()
    except ValueError:
        return f"handshake type {msg_type}"
