"""The server's handshake (RFC 9846 Appendix A.2): ClientHello negotiation, the
stateless cookie exchange (RFC 9147 §5.1), PSKs and tickets, 0-RTT, and the server flight."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import crypto
from .config import Context
from .cookie import CookieContents, make_cookie, open_cookie
from .errors import (
    DecodeError,
    DecryptError,
    DTLSError,
    HandshakeFailure,
    IllegalParameter,
    MissingExtension,
    NoApplicationProtocol,
    ProtocolError,
    ProtocolVersionError,
    UnsupportedCertificate,
)
from .handshake import (
    MAX_PLAINTEXT,
    RAW_PUBLIC_KEY,
    X509,
    Address,
    FlightKind,
    Handshake,
    HandshakeConnection,
    HandshakeState,
    PskCandidate,
    binder_key,
    certificate_types,
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
    PskKeyExchangeMode,
)
from .keyschedule import (
    Transcript,
    compute_binder,
    resumption_psk,
    suite_hash_name,
)
from .messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    CertificateRequest,
    ClientHello,
    EncryptedExtensions,
    HandshakeFragment,
    KeyShareEntry,
    NewSessionTicket,
    PskIdentity,
    ServerHello,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_alert,
    encode_handshake_body,
    encode_handshake_fragment,
    peek_client_hello_cookie,
    transcript_bytes,
    truncated_client_hello,
)
from .path import RRC_EXTENSION
from .record_py import (
    PLAINTEXT_HEADER_LEN,
    RecordKind,
    RecordSpan,
    seal_plaintext,
    single_plaintext_record,
)
from .reliability import (
    OutgoingFlight,
    ReceivedMessage,
)
from .session import ExternalPsk, Session, TicketContents
from .srtp import (
    decode_use_srtp,
    encode_use_srtp,
    select_profile,
)

if TYPE_CHECKING:
    from .provider import HandshakeCrypto


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
    if hash_name is None and CipherSuite.TLS_AES_128_CCM_8_SHA256 in ch.cipher_suites:
        # RFC 9846 §6.2: we turned off the suite with the short tag, as too weak
        raise HandshakeFailure(
            "no cipher suite in common (CCM-8 is off)", AlertDescription.INSUFFICIENT_SECURITY
        )
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


def _check_server_authentication(
    context: Context, ch: ClientHello, *, psk_checked: bool = False
) -> int | None:
    """Without a PSK the server signs with a certificate or a raw public key: refuse a
    client that takes neither of what we have (RFC 9846 §4.4.2.2, RFC 7250 §4.2). The
    signature scheme we would sign with, when the client offered signature_algorithms."""
    if ch.pre_shared_key is not None and not psk_checked:
        return None  # the connection decides once it checked the PSK (RFC 9846 §4.2.11)
    if context.private_key is None:
        raise HandshakeFailure("no certificate, and no PSK the client offered")
    types = [X509]  # RFC 7250 §4.2: without server_certificate_type, X.509 only
    for extension_type, data in ch.other_extensions:
        if extension_type == ExtensionType.SERVER_CERTIFICATE_TYPE:
            types = certificate_types(data)
    if not (X509 in types and context.certificate_chain) and not (
        RAW_PUBLIC_KEY in types and context.raw_public_key
    ):
        raise UnsupportedCertificate("no certificate type in common")
    if ch.signature_algorithms is None:
        return None
    return crypto.choose_signature_scheme(
        context.private_key,
        ch.signature_algorithms,
        certificate=context.certificate_chain[0] if context.certificate_chain else None,
    )


def _hello_retry_request(
    context: Context,
    ch: ClientHello,
    ch_body: bytes,
    addr: Address,
    suite: int,
    group: int,
) -> bytes:
    """A HelloRetryRequest body carrying a stateless cookie (RFC 9147 §5.1)."""
    hash_name = suite_hash_name(suite)
    ch_hash = hashlib.new(hash_name, transcript_bytes(HandshakeType.CLIENT_HELLO, ch_body)).digest()
    wall = context.wall_clock()
    cookie = make_cookie(context.cookie_secrets()[0], addr, wall, suite, group, ch_hash)
    return _hello_retry_body(ch, suite, group, cookie)


def _hello_retry_body(ch: ClientHello, suite: int, group: int, cookie: bytes) -> bytes:
    """The stateless HelloRetryRequest body with `cookie`: what the stateless path sends,
    and (from the cookie the second ClientHello returns) what the connection's transcript
    takes in its place (RFC 9846 §4.4.1), byte for byte."""
    key = (suite, group, len(cookie))
    start = _HRR_STARTS.get(key)
    if start is not None:
        return start + cookie
    body = _encode_hello_retry(ch, suite, group, cookie)
    if body.endswith(cookie) and len(_HRR_STARTS) < 64:
        _HRR_STARTS[key] = body[: len(body) - len(cookie)]
    return body


# A stateless HelloRetryRequest's body up to its cookie, which ends it (RFC 9147 §5.1:
# the cookie extension comes last), by (suite, group, cookie length): nothing else in it
# varies, so the rest is encoded once.
_HRR_STARTS: dict[tuple[int, int, int], bytes] = {}


def _open_cookie(context: Context, cookie: bytes, addr: Address) -> CookieContents | None:
    """The contents of a cookie this server (or a fleet sharing its secret) made for
    `addr`, if still fresh. Timestamps are on `Context.wall_clock`, which the hosts of a
    fleet share, not on the engine's monotonic `now`, which differs between them."""
    return open_cookie(
        context.cookie_secrets(), cookie, addr, context.wall_clock(), context.cookie_lifetime
    )


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
    seal_plaintext: Callable[..., bytes],
    msg_type: int,
    message_seq: int,
    body: bytes,
    record_seq: int,
) -> bytes:
    fragment = encode_handshake_fragment(msg_type, len(body), message_seq, 0, body)
    return seal_plaintext(ContentType.HANDSHAKE, record_seq, fragment)


def _screen_fragmented_client_hello(
    context: Context,
    data: bytes,
    spans: list[Any],
    first: list[HandshakeFragment],
    addr: Address,
    require_cookie: bool,
) -> StatelessResponse:
    """A ClientHello too large for one datagram (a post-quantum key share, a small MTU).
    Without its whole body there is no hash for a cookie: a first fragment carrying a
    valid cookie proves the address, so the connection reassembles the rest; any other
    fragment goes back to the caller ("fragment") to be reassembled within a budget of
    its own and answered once complete, as an unfragmented ClientHello would be."""
    frag = first[0]
    if not require_cookie:
        return StatelessResponse("accept")
    if frag.fragment_offset == 0:
        try:
            cookie = peek_client_hello_cookie(frag.fragment)
        except DecodeError:
            cookie = None  # a first fragment too short to show one
        if cookie is not None and _open_cookie(context, cookie, addr):
            return StatelessResponse("accept")
    return StatelessResponse("fragment", fragments=_client_hello_fragments(data, spans, first))


def _client_hello_fragments(
    data: bytes, spans: list[Any], first: list[HandshakeFragment]
) -> tuple[tuple[int, HandshakeFragment], ...]:
    """(record sequence number, fragment) of each ClientHello fragment in the datagram's
    plaintext epoch-0 handshake records (`first`: those of the first record); records
    that do not parse are skipped."""
    out = [(spans[0].seq, f) for f in first if f.msg_type == HandshakeType.CLIENT_HELLO]
    for span in spans[1:]:
        if span.kind != RecordKind.PLAINTEXT or span.first_byte != ContentType.HANDSHAKE:
            continue
        if span.epoch:
            continue
        payload = data[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length]
        try:
            fragments = decode_handshake_fragments(payload)
        except DTLSError:
            continue
        out += [(span.seq, f) for f in fragments if f.msg_type == HandshakeType.CLIENT_HELLO]
    return tuple(out)


def client_hello_record(record_seq: int, message_seq: int, body: bytes) -> bytes:
    """A whole ClientHello in one plaintext record (RFC 9147 §5.2): what a reassembled
    first ClientHello is answered (or accepted) as."""
    return _plaintext_handshake_record(
        seal_plaintext, HandshakeType.CLIENT_HELLO, message_seq, body, record_seq
    )


@dataclass(frozen=True)
class StatelessResponse:
    """What a server does with a datagram from an address it keeps no state for."""

    # "accept": make a connection; "retry": send `datagram` (the HRR); "reject": send
    # `datagram`, a fatal alert: a bad cookie, or a ClientHello the two sides cannot agree
    # on (`reason` says which part); "fragment": part of a ClientHello, answered once
    # the caller has the rest (`fragments`: record sequence number and fragment); "drop"
    action: str
    datagram: bytes | None = None
    reason: str | None = None
    fragments: tuple[tuple[int, HandshakeFragment], ...] = ()


_ACCEPT = StatelessResponse("accept")
_DROP = StatelessResponse("drop")
_COOKIE_TYPE = ExtensionType.COOKIE.to_bytes(2, "big")
# module constants for the per-handshake code: an enum member's lookup costs ~70 ns
_SERVER_CERTIFICATE_TYPE = int(ExtensionType.SERVER_CERTIFICATE_TYPE)
_CLIENT_CERTIFICATE_TYPE = int(ExtensionType.CLIENT_CERTIFICATE_TYPE)
_USE_SRTP = int(ExtensionType.USE_SRTP)
_WAIT_CERT = HandshakeState.WAIT_CERT
_WAIT_FINISHED = HandshakeState.WAIT_FINISHED


class Refusal:
    """Why a ClientHello was rejected before the cookie (`StatelessResponse.reason`)."""

    PROTOCOL_VERSION = "protocol_version"  # not DTLS 1.3 (RFC 9846 §4.2.1)
    CIPHER_SUITE = "cipher_suite"  # no suite in common (§4.1.1)
    GROUP = "group"  # no group in common (§4.2.7)
    AUTHENTICATION = "authentication"  # no certificate type or signature scheme (§4.4.2.2)
    CLIENT_HELLO = "client_hello"  # a required extension missing, a field wrong (§4.1.2)
    COOKIE = "cookie"  # a cookie not ours, or not for this address, or expired (RFC 9147 §5.1)

    ALL = (PROTOCOL_VERSION, CIPHER_SUITE, GROUP, AUTHENTICATION, CLIENT_HELLO, COOKIE)


def _alert_record(seal_plaintext: Callable[..., bytes], error: ProtocolError, seq: int) -> bytes:
    """A fatal alert in a plaintext epoch-0 record, numbered as the ClientHello's record:
    15 bytes, less than any ClientHello, so answering amplifies nothing (RFC 9147 §5.1)."""
    return seal_plaintext(ContentType.ALERT, seq, encode_alert(AlertLevel.FATAL, error.alert))


def respond_statelessly(
    context: Context, data: bytes, addr: Address, *, require_cookie: bool = True
) -> StatelessResponse:
    """Answer a first ClientHello with a cookie HelloRetryRequest, keeping no state
    (RFC 9147 §5.1). A ClientHello with a valid cookie (or, with require_cookie False, one
    that needs no retry) is accepted: the caller makes a `Connection` and feeds it `data`.
    One the server cannot agree with (no version, suite, group or certificate type in
    common) is rejected with the alert RFC 9846 §4.1.1 and §6.2 name; what does not
    parse as a ClientHello is dropped.
    """
    provider = context.record_provider()
    if single_plaintext_record(data):
        # the span `split_datagram` would give, read from the header (RFC 9147 §4.1)
        epoch = data[3] << 8 | data[4]
        seq = int.from_bytes(data[5:11], "big")
        spans = [RecordSpan(0, len(data), RecordKind.PLAINTEXT, data[0], epoch, seq)]
    else:
        spans, _ = provider.split_datagram(data, 0)
        if not spans:
            return _DROP
    span = spans[0]
    if span.kind != RecordKind.PLAINTEXT or span.first_byte != ContentType.HANDSHAKE or span.epoch:
        return _DROP
    payload = bytes(data[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length])
    try:
        fragments = decode_handshake_fragments(payload)
        if not fragments:
            return _DROP
        frag = fragments[0]
        if frag.msg_type != HandshakeType.CLIENT_HELLO:
            return _DROP
        if frag.fragment_offset != 0 or frag.fragment_length != frag.length:
            return _screen_fragmented_client_hello(
                context, data, spans, fragments, addr, require_cookie
            )
        hello = frag.fragment
        # Without the cookie's extension type anywhere in it (a first ClientHello) there
        # is no cookie to find, and what the look would reject the decoder rejects too.
        if _COOKIE_TYPE in hello:
            cookie = peek_client_hello_cookie(hello)
            if cookie is not None and _open_cookie(context, cookie, addr):
                # The address is proven (RFC 9147 §5.1): the connection parses the rest
                # and answers anything wrong in it with an alert.
                return _ACCEPT
        ch = decode_handshake_body(HandshakeType.CLIENT_HELLO, hello)
        assert isinstance(ch, ClientHello)
    except DTLSError:
        return _DROP  # not a ClientHello: no answer (RFC 9147 §4.5.2)
    reason = Refusal.CLIENT_HELLO
    try:
        _check_client_hello(ch)
        reason = Refusal.CIPHER_SUITE
        suite = _select_suite(context, ch)
        if ch.cookie is not None:
            if _open_cookie(context, ch.cookie, addr):
                return _ACCEPT
            # RFC 9147 §5.1: an invalid cookie is answered with illegal_parameter, so the
            # client can start again without one.
            reason = Refusal.COOKIE
            raise IllegalParameter("invalid cookie")
        reason = Refusal.AUTHENTICATION
        _check_server_authentication(context, ch)
        reason = Refusal.GROUP
        share = _select_key_share(context, ch)
        if share is not None and not require_cookie:
            return _ACCEPT
        group = 0 if share is not None else _select_retry_group(context, ch)
        body = _hello_retry_request(context, ch, frag.fragment, addr, suite, group)
    except ProtocolError as error:
        if isinstance(error, ProtocolVersionError):
            reason = Refusal.PROTOCOL_VERSION
        elif isinstance(error, DecodeError):
            reason = Refusal.CLIENT_HELLO  # e.g. a malformed certificate type list
        alert = _alert_record(provider.seal_plaintext, error, span.seq)
        return StatelessResponse("reject", alert, reason)
    record = _plaintext_handshake_record(
        provider.seal_plaintext, HandshakeType.SERVER_HELLO, frag.message_seq, body, span.seq
    )
    return StatelessResponse("retry", record)


class ServerHandshake(Handshake):
    """The server's state machine (RFC 9846 Appendix A.2): it owns the cookie decision,
    the PSK and 0-RTT acceptance and the tickets it issued, and asks its connection for
    the rest (`HandshakeConnection`)."""

    is_client = False
    _handlers = {
        HandshakeState.START: {HandshakeType.CLIENT_HELLO: "_server_client_hello"},
        HandshakeState.WAIT_CERT: {HandshakeType.CERTIFICATE: "_peer_certificate"},
        HandshakeState.WAIT_CV: {HandshakeType.CERTIFICATE_VERIFY: "_peer_certificate_verify"},
        HandshakeState.WAIT_FINISHED: {HandshakeType.FINISHED: "_server_finished"},
    }

    def __init__(
        self,
        connection: HandshakeConnection,
        context: Context,
        crypto: HandshakeCrypto,
        require_cookie: bool,
        server_name: str | None = None,
        session: Session | None = None,
    ) -> None:
        # positional, without super(): one frame less of a keyword call per connection
        Handshake.__init__(self, connection, context, crypto, server_name, session)
        # answer a ClientHello without a cookie with a cookie HRR (RFC 9147 §5.1)
        self.require_cookie = require_cookie
        #: the record sequence number of the ClientHello, which the HRR and ServerHello
        #: mirror (RFC 9147 §5.1); set by the connection as it reassembles
        self.client_hello_record_seq = 0
        self._listening_context = context  # the endpoint's, before sni_callback chose one
        self._client_psk_modes: set[int] = set()  # what the client can resume with
        self._tickets_sent = 0

    def _server_client_hello(self, message: ReceivedMessage, now: float) -> None:
        ctx = self._listening_context
        ch = self._decode(message)
        assert isinstance(ch, ClientHello)
        _check_client_hello(ch)
        suite = _select_suite(ctx, ch)
        hash_name = suite_hash_name(suite)
        retry_group = 0
        if ch.cookie is not None:
            contents = _open_cookie(ctx, ch.cookie, self._conn.peer_address)
            if contents is None:
                raise IllegalParameter("invalid cookie")  # RFC 9147 §5.1
            if contents.suite != suite:
                raise IllegalParameter("ClientHello suites changed after HelloRetryRequest")
            retry_group = contents.group
            # RFC 9846 §4.4.1: message_hash(ClientHello1) || HelloRetryRequest.
            self.transcript = Transcript(hash_name)
            self.transcript.restart_after_hello_retry(contents.client_hello_hash)
            hrr_body = _hello_retry_body(ch, suite, retry_group, ch.cookie)
            self.transcript.add_message(HandshakeType.SERVER_HELLO, hrr_body)
            self._retried = True
        # RFC 6066 §3 (Context.sni_callback): the chosen context serves the rest, for
        # the connection too (record size, early data and verification settings)
        self.context = self._conn.context = ctx.context_for(ch.server_name)
        psk = self._accept_psk(ch, message.body, suite, now)
        scheme = None
        if psk is None:  # refused now, in plaintext, not under keys the client lacks
            scheme = _check_server_authentication(self.context, ch, psk_checked=True)
        if psk is not None and not self._retried:
            suite = self._psk_suite(ch, psk)
            hash_name = suite_hash_name(suite)
        dhe = psk is None or PskKeyExchangeMode.PSK_DHE_KE in (ch.psk_key_exchange_modes or [])
        share = _select_key_share(ctx, ch) if dhe else None
        if retry_group and (share is None or share.group != retry_group):
            raise IllegalParameter("second ClientHello lacks the requested key share")
        if not self._retried and ((dhe and share is None) or self.require_cookie):
            group = 0 if share is not None or not dhe else _select_retry_group(ctx, ch)
            self._send_hello_retry(ch, message, suite, group)
            return
        if dhe and share is None:
            raise HandshakeFailure("no acceptable key share")
        ctx = self.context
        if psk is None:
            if ctx.private_key is None:
                raise HandshakeFailure("no certificate, and no PSK the client offered")
            if scheme is None:  # chosen from signature_algorithms, so none without them
                raise MissingExtension("signature_algorithms is required without a PSK")
            self._signature_scheme = scheme  # chosen as the ClientHello was checked
        alpn = self._select_alpn(ch)
        shared = None
        server_share = b""
        if share is not None:
            server_share, shared = self._crypto.server_key_share(share.group, share.key_exchange)
            self.group = share.group
        self._conn._version_selected()
        self._client_psk_modes = set(ch.psk_key_exchange_modes or [])
        self.cipher_suite = suite
        self.server_name = ch.server_name
        self.client_random = ch.random
        self.hash_name = hash_name
        self._psk = psk
        self.resumed = psk is not None and not psk.external
        self.transcript.set_hash(hash_name)
        self._add_to_transcript(message)
        early = self._accept_early_data(ch, psk, suite, alpn, now)
        # Mirror the ClientHello's numbering, as a stateless server must (RFC 9147 §5.1).
        self._conn._mirror_numbering(message.message_seq, self.client_hello_record_seq)
        # RFC 9146 §3: answer a client's connection_id with ours (possibly empty).
        rrc = (
            ch.connection_id is not None
            and ctx.return_routability_check
            and (RRC_EXTENSION, b"") in ch.other_extensions
        )
        self._conn._negotiate_connection_ids(ch.connection_id, rrc)
        local_cid = self._conn.local_cid if ch.connection_id is not None else None
        sh = ServerHello(
            random=self._crypto.random(32),
            cipher_suite=suite,
            supported_versions=DTLS13_VERSION,  # RFC 9147 §5: legacy_session_id_echo empty
            key_share=KeyShareEntry(share.group, server_share) if share is not None else None,
            pre_shared_key=0 if psk is not None else None,
            connection_id=local_cid,
            other_extensions=[(RRC_EXTENSION, b"")] if rrc else [],
        )
        sh_message = self._conn._handshake_message(0, sh)
        self._derive_handshake_secrets(shared)
        if early:
            self._conn._records.install_receive(1, suite, early)
        own_limit = None
        if ch.record_size_limit is not None:
            own_limit = ctx.record_size_limit or MAX_PLAINTEXT + 1
            self._conn._apply_record_size_limits(ch.record_size_limit)
        # the same for every ClientHello asking alike: built and encoded once per context
        ee_key = (
            ch.server_name is not None,
            alpn,
            bool(early),
            own_limit,
            tuple(self._server_srtp(ch) + self._server_certificate_types(ch)),
        )
        ee = ctx.kept_message(
            ee_key,
            lambda: EncryptedExtensions(
                server_name=ee_key[0],
                alpn_protocol=alpn.encode() if alpn else None,
                early_data=ee_key[2],
                record_size_limit=own_limit,
                other_extensions=list(ee_key[4]),
            ),
        )
        messages = [sh_message, self._conn._handshake_message(2, ee)]
        certificate_auth = psk is None  # RFC 9846 §4.3.2: no certificates with a PSK
        if ctx.request_client_certificate and certificate_auth:
            cr = CertificateRequest(
                context=b"", signature_algorithms=[int(s) for s in ctx.signature_algorithms]
            )
            messages.append(self._conn._handshake_message(2, cr))
        if certificate_auth:
            messages.append(self._conn._handshake_message(2, self._own_certificate(b"")))
            messages.append(self._conn._handshake_message(2, self._own_certificate_verify()))
        finished = self._own_finished(self.secrets["server_handshake"])
        messages.append(self._conn._handshake_message(2, finished))
        self._derive_application_secrets()
        self._conn._start_application_epoch(suite, self.secrets["server_application"])
        self._conn._records.install_receive(3, suite, self.secrets["client_application"])
        self._conn._start_flight(OutgoingFlight(messages, needs_ack=False), now)
        self.state = (
            _WAIT_CERT if ctx.request_client_certificate and certificate_auth else _WAIT_FINISHED
        )

    def _accept_psk(
        self, ch: ClientHello, body: bytes, suite: int, now: float
    ) -> PskCandidate | None:
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
            digest = self.transcript.digest_with(truncated_client_hello(body), psk.hash_name)
            expected = compute_binder(
                psk.hash_name,
                binder_key(psk, self._crypto),
                digest,
                expand=self._crypto.hkdf_expand,
            )
            if not hmac.compare_digest(expected, offered.binders[index]):
                raise DecryptError("PSK binder does not verify")
            return psk
        return None

    def _lookup_psk(self, identity: PskIdentity, now: float) -> PskCandidate | None:
        ctx = self.context
        ticket = ctx.ticket_keys().open(identity.identity) if ctx.session_tickets else None
        if ticket is not None:
            wall = ctx.wall_clock()
            if not 0 <= wall - ticket.issued <= ticket.lifetime:
                return None  # expired: full handshake (RFC 9846 §4.6.1)
            return PskCandidate(
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
                return PskCandidate(found.identity, found.key, found.hash_name, external=True)
            if isinstance(found, bytes):
                return PskCandidate(identity.identity, found, "sha256", external=True)
        return None

    def _psk_suite(self, ch: ClientHello, psk: PskCandidate) -> int:
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
        self, ch: ClientHello, psk: PskCandidate | None, suite: int, alpn: str | None, now: float
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
        if ticket.issuer != ctx.ticket_keys().issuer:
            return None  # RFC 9846 §8: the replay window is the issuer's (dtls.workers)
        # RFC 9846 §8.3: the ticket age the client reports must match ours closely.
        age = ((psk.obfuscated_age - ticket.age_add) & 0xFFFFFFFF) / 1000
        window = ctx.replay_filter().window
        if abs((ctx.wall_clock() - ticket.issued) - age) > window:
            return None
        assert ch.pre_shared_key is not None
        if not ctx.replay_filter().accept(ch.pre_shared_key.binders[0], ctx.wall_clock()):
            return None  # RFC 9846 §8.2: each ClientHello's 0-RTT at most once
        schedule = self._crypto.key_schedule(suite)
        schedule.early_secret(psk.key)
        secret = schedule.client_early_traffic_secret(self.transcript.digest())
        self.log_secret("CLIENT_EARLY_TRAFFIC_SECRET", secret)
        self.early_data_accepted = True
        return secret

    def _send_hello_retry(
        self, ch: ClientHello, message: ReceivedMessage, suite: int, group: int
    ) -> None:
        """A cookie HelloRetryRequest, keeping no state (RFC 9147 §5.1): the second
        ClientHello is handled as if this connection had just been made for it."""
        body = _hello_retry_request(
            self._listening_context, ch, message.body, self._conn.peer_address, suite, group
        )
        self._conn._emit(
            _plaintext_handshake_record(
                self._conn._records.provider.seal_plaintext,
                HandshakeType.SERVER_HELLO,
                message.message_seq,
                body,
                self.client_hello_record_seq,
            )
        )
        self.transcript = Transcript()

    def _server_certificate_types(self, ch: ClientHello) -> list[tuple[int, bytes]]:
        """RFC 7250 §4.2: our certificate type, and the client's when we ask for one."""
        if self._psk is not None:
            return []
        ctx = self.context
        offered = dict(ch.other_extensions)
        out: list[tuple[int, bytes]] = []
        server_types = offered.get(_SERVER_CERTIFICATE_TYPE)
        if server_types is None and not ctx.certificate_chain:
            # RFC 7250 §4.2: no server_certificate_type means X.509 only, as the
            # stateless refusal (_check_server_authentication) answers too
            raise UnsupportedCertificate("the client accepts only certificates, and we have none")
        if server_types is not None:
            types = certificate_types(server_types)
            if ctx.raw_public_key and RAW_PUBLIC_KEY in types:
                self.own_certificate_type = RAW_PUBLIC_KEY
            elif X509 in types and ctx.certificate_chain:
                self.own_certificate_type = X509
            else:
                raise UnsupportedCertificate("no certificate type in common")
            out.append((_SERVER_CERTIFICATE_TYPE, bytes([self.own_certificate_type])))
        client_types = offered.get(_CLIENT_CERTIFICATE_TYPE)
        if client_types is not None and ctx.request_client_certificate:
            types = certificate_types(client_types)
            if ctx.pinned_public_keys and RAW_PUBLIC_KEY in types:
                self.peer_certificate_type = RAW_PUBLIC_KEY
            elif X509 in types:
                self.peer_certificate_type = X509
            else:
                raise UnsupportedCertificate("no client certificate type in common")
            out.append((_CLIENT_CERTIFICATE_TYPE, bytes([self.peer_certificate_type])))
        return out

    def _server_srtp(self, ch: ClientHello) -> list[tuple[int, bytes]]:
        """use_srtp in EncryptedExtensions (RFC 5764 §4.1.1; DTLS 1.3 moves it to EE)."""
        offered = [d for t, d in ch.other_extensions if t == _USE_SRTP]
        if not offered or not self.context.srtp_profiles:
            return []
        profiles, mki = decode_use_srtp(offered[0])
        profile = select_profile(tuple(self.context.srtp_profiles), profiles)
        if profile is None:
            return []  # no common profile: the handshake goes on without SRTP (§4.1.1)
        self.srtp_profile = profile
        return [(_USE_SRTP, encode_use_srtp([profile], mki))]

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
        self._check_finished(message, self.secrets["client_handshake"], now)
        self._add_to_transcript(message)
        # RFC 9846 §4.2.9: tickets only for a client that can use them; the resumption
        # secret only for tickets.
        tickets = self.context.session_tickets > 0 and bool(
            self._client_psk_modes & set(self.context.psk_key_exchange_modes)
        )
        if tickets:
            self.secrets["resumption"] = self._schedule_required().resumption_master_secret(
                self.transcript.digest()
            )
        self._conn._records.drop_receive(1)  # RFC 9147 §5.6: 0-RTT ends with epoch 2
        # Our flight is acknowledged by the client's; epoch 2 stays readable to ACK a
        # resent client Finished (RFC 9147 §5.8.1), but we never send in it again.
        self._conn._records.drop_send(2)
        self._complete(now)
        # RFC 9147 §7.1: the client's final flight is acknowledged explicitly.
        self._conn._schedule_ack(now, immediate=True)
        if tickets:
            self._conn._send_post_handshake(
                FlightKind.NEW_SESSION_TICKET,
                *[self._new_session_ticket() for _ in range(self.context.session_tickets)],
            )
        self._conn._release_early_records()

    def _new_session_ticket(self) -> NewSessionTicket:
        """A self-contained ticket (RFC 9846 §4.6.1); the tickets of a connection go in one
        flight, acknowledged like every post-handshake message (RFC 9147 §5.8.4)."""
        ctx = self.context
        nonce = self._tickets_sent.to_bytes(8, "big")
        self._tickets_sent += 1
        age_add = int.from_bytes(self._crypto.random(4), "big")
        max_early = ctx.max_early_data_size
        contents = TicketContents(
            cipher_suite=self.suite,
            issued=ctx.wall_clock(),
            age_add=age_add,
            lifetime=ctx.ticket_lifetime,
            max_early_data_size=max_early,
            psk=resumption_psk(
                self.hash_name, self.secrets["resumption"], nonce, expand=self._crypto.hkdf_expand
            ),
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
        return ticket
