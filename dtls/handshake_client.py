"""The client's handshake (RFC 9846 Appendix A.1): ClientHello with key shares, PSK
binders and 0-RTT, the HelloRetryRequest, the server's flight, and the final flight."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import crypto
from .config import Context
from .errors import (
    IllegalParameter,
    MissingExtension,
    ProtocolVersionError,
    UnexpectedMessage,
    UnsupportedExtension,
)
from .events import SessionTicketReceived
from .handshake import (
    RAW_PUBLIC_KEY,
    X509,
    Handshake,
    HandshakeConnection,
    HandshakeState,
    PskCandidate,
    binder_key,
)
from .iana import (
    DTLS13_VERSION,
    ContentType,
    ExtensionType,
    HandshakeType,
    PskKeyExchangeMode,
)
from .keyschedule import (
    compute_binder,
    resumption_psk,
    suite_hash_name,
)
from .messages import (
    DTLS_HANDSHAKE_HEADER_LEN,
    Certificate,
    CertificateRequest,
    ClientHello,
    ClientHelloTemplate,
    EncryptedExtensions,
    KeyShareEntry,
    NewSessionTicket,
    OfferedPsks,
    PskIdentity,
    ServerHello,
    client_hello_with_binders,
    encode_handshake_body,
    truncated_client_hello,
)
from .path import RRC_EXTENSION
from .record_py import PLAINTEXT_HEADER_LEN
from .reliability import (
    OutgoingFlight,
    OutgoingMessage,
    ReceivedMessage,
)
from .session import ExternalPsk, Session
from .srtp import (
    check_server_choice,
    decode_use_srtp,
    encode_use_srtp,
)

if TYPE_CHECKING:
    from .provider import HandshakeCrypto

#: first ClientHello templates a Context keeps, by server name and CID
MAX_CLIENT_HELLO_TEMPLATES = 16


class ClientHandshake(Handshake):
    """The client's state machine (RFC 9846 Appendix A.1): it owns the ClientHello, its
    key shares and the HelloRetryRequest it answered, and asks its connection for the
    rest (`HandshakeConnection`)."""

    __slots__ = (
        "_certificate_request", "_client_hello", "_early_sent", "_first_client_hello",
        "_hrr_suite", "_key_shares", "_resumption_secret", "early_data_rejected",
    )  # fmt: skip

    is_client = True
    _handlers = {
        HandshakeState.WAIT_SH: {
            HandshakeType.SERVER_HELLO: "_client_server_hello",
            HandshakeType.HELLO_VERIFY_REQUEST: "_client_hello_verify_request",
        },
        HandshakeState.WAIT_EE: {
            HandshakeType.ENCRYPTED_EXTENSIONS: "_client_encrypted_extensions"
        },
        HandshakeState.WAIT_CERT_CR: {
            HandshakeType.CERTIFICATE_REQUEST: "_client_certificate_request",
            HandshakeType.CERTIFICATE: "_peer_certificate",
        },
        HandshakeState.WAIT_CERT: {HandshakeType.CERTIFICATE: "_peer_certificate"},
        HandshakeState.WAIT_CV: {HandshakeType.CERTIFICATE_VERIFY: "_peer_certificate_verify"},
        HandshakeState.WAIT_FINISHED: {HandshakeType.FINISHED: "_client_finished"},
    }

    def __init__(
        self,
        connection: HandshakeConnection,
        context: Context,
        crypto: HandshakeCrypto,
        server_name: str | None = None,
        session: Session | None = None,
    ) -> None:
        # positional, without super(): one frame less of a keyword call per connection
        Handshake.__init__(self, connection, context, crypto, server_name, session)
        self._client_hello: ClientHello | None = None
        self._first_client_hello: tuple[ClientHello, bytes] | None = None  # and its encoding
        self._key_shares: dict[int, Any] = {}
        self._hrr_suite: int | None = None
        self._certificate_request: CertificateRequest | None = None
        self._early_sent: list[bytes] = []  # 0-RTT data, resent if the server rejects it
        self._resumption_secret: Callable[[], bytes] | None = None  # from client Finished on
        #: 0-RTT data the server refused (RFC 9846 §4.2.10), for the application
        self.early_data_rejected: list[bytes] = []

    def start(self, now: float) -> None:
        """Send the first ClientHello (and 0-RTT data with a ticket that allows it)."""
        self.client_random = self._crypto.random(32)
        self._psk = self._offered_psk()
        if self._psk is None:
            ch = self._plain_first_client_hello()
        else:
            ch = self._build_client_hello()
            self._fit_first_client_hello(ch)
        self._client_hello = ch
        flight = OutgoingFlight([self._client_hello_message(ch)], needs_ack=False)
        self._conn._start_flight(flight, now)
        if ch.early_data:
            self._send_early_data()
        self.state = HandshakeState.WAIT_SH

    def _plain_first_client_hello(self) -> ClientHello:
        """The first ClientHello without a PSK (so without binders or early data) and
        without a cookie: all but its random and key share values follow from the
        settings `_template_settings` reads, the server name and our CID, so after the
        first one the Context keeps the encoding, and the new values are spliced in."""
        ctx = self.context
        settings = self._template_settings()
        cached = ctx._client_hello_templates
        if cached is None or cached[0] != settings:
            cached = ctx._client_hello_templates = (settings, {})
        templates: dict[tuple[str | None, bytes | None], ClientHelloTemplate] = cached[1]
        key = (self.server_name, self._conn.local_cid)
        template = templates.get(key)
        if template is not None:
            first = template.fill(self.client_random, self._offered_key_shares())
            if first is not None:
                self._first_client_hello = first
                return first[0]
        ch = self._build_client_hello()
        self._fit_first_client_hello(ch)
        if self._first_client_hello is not None:  # sent as it is: a template for the next
            if len(templates) >= MAX_CLIENT_HELLO_TEMPLATES:
                templates.clear()  # e.g. a new CID per connection: no use in keeping them
            templates[key] = ClientHelloTemplate(ch, self._first_client_hello[1])
        return ch

    def _template_settings(self) -> tuple[object, ...]:
        """What of the Context a first ClientHello without PSK follows from: everything
        `_build_client_hello`, `_client_raw_extensions`, `_psk_extensions` and
        `_fit_first_client_hello` read from it (a Context may change between connections)."""
        ctx = self.context
        return (
            ctx.cipher_suites,
            ctx.groups,
            ctx.key_share_groups,
            ctx.signature_algorithms,
            ctx.alpn_protocols,
            ctx.record_size_limit,
            ctx.return_routability_check,
            ctx.srtp_profiles,
            ctx.raw_public_key and ctx.private_key is not None,
            bool(ctx.pinned_public_keys),
            ctx.psk_key_exchange_modes,
            ctx.max_datagram_size,
            ctx.fragment_first_client_hello,
        )

    def _offered_key_shares(self) -> list[KeyShareEntry]:
        """Our key shares (RFC 9846 §4.2.8), made for the groups that get one."""
        ctx = self.context
        for group in ctx.key_share_groups or ctx.groups[:1]:
            if group not in self._key_shares:
                self._key_shares[int(group)] = self._crypto.generate_key_share(int(group))
        return [KeyShareEntry(g, share.public_bytes) for g, share in self._key_shares.items()]

    def _build_client_hello(self) -> ClientHello:
        ctx = self.context
        key_share = self._offered_key_shares()
        server_name = (
            self.server_name if self.server_name and not _is_ip(self.server_name) else None
        )
        return ClientHello(
            random=self.client_random,
            cipher_suites=[int(s) for s in ctx.cipher_suites],
            supported_versions=[DTLS13_VERSION],
            supported_groups=[int(g) for g in ctx.groups],
            key_share=key_share,
            signature_algorithms=[int(s) for s in ctx.signature_algorithms],
            server_name=server_name,
            connection_id=self._conn.local_cid,
            alpn_protocols=[p.encode() for p in ctx.alpn_protocols] or None,
            record_size_limit=ctx.record_size_limit,
            other_extensions=self._client_raw_extensions(),
            **self._psk_extensions(),
        )

    def _client_raw_extensions(self) -> list[tuple[int, bytes]]:
        """Extensions the codecs keep raw: rrc and use_srtp."""
        ctx = self.context
        raw = []
        if self._conn.local_cid is not None and ctx.return_routability_check:
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
        the group, and a stateless server can still check its cookie (RFC 9147 §5.1).
        With `fragment_first_client_hello` it goes as it is, in fragments."""
        body = encode_handshake_body(ch)
        size = len(body) + DTLS_HANDSHAKE_HEADER_LEN + PLAINTEXT_HEADER_LEN
        fragment = self.context.fragment_first_client_hello
        if size > self.context.max_datagram_size and ch.key_share and not fragment:
            ch.key_share = []
            self._key_shares.clear()
        else:
            self._first_client_hello = (ch, body)  # sent as is: no second encoding

    def _offered_psk(self) -> PskCandidate | None:
        """The ticket to resume with, or the external PSK (RFC 9846 §4.2.11)."""
        session = self.session
        if session is not None:
            now = self.context.wall_clock()
            if session.is_valid(now) and session.cipher_suite in self.context.cipher_suites:
                return PskCandidate(
                    session.ticket,
                    session.psk,
                    session.hash_name,
                    external=False,
                    obfuscated_age=session.obfuscated_age(now),
                    session=session,
                )
        psk = self.context.psk
        if callable(psk):
            psk = psk(self.server_name)  # PSK selection: which key for this server
        if isinstance(psk, ExternalPsk):
            return PskCandidate(psk.identity, psk.key, psk.hash_name, external=True)
        return None

    def _psk_extensions(self) -> dict[str, Any]:
        modes = [int(m) for m in self.context.psk_key_exchange_modes]
        psk = self._psk
        if psk is None:
            # Always listed: servers issue tickets only for modes we can use (RFC 9846
            # §4.2.9), so without it no later resumption is possible.
            return {"psk_key_exchange_modes": modes}
        hash_len = hashlib.new(psk.hash_name).digest_size
        session = psk.session
        early = (
            self.context.early_data
            and session is not None
            and session.max_early_data_size > 0
            and bool(self._conn._pending_app)
            and not self._retried
        )
        return {
            "psk_key_exchange_modes": modes,
            "early_data": early,
            "pre_shared_key": OfferedPsks(
                [PskIdentity(psk.identity, psk.obfuscated_age)], [bytes(hash_len)]
            ),
        }

    def _client_hello_message(self, ch: ClientHello) -> OutgoingMessage:
        """Encode a ClientHello, with its PSK binder computed over the truncated message
        and everything before it in the transcript (RFC 9846 §4.2.11.2)."""
        first, self._first_client_hello = self._first_client_hello, None
        body = first[1] if first is not None and first[0] is ch else encode_handshake_body(ch)
        psk = self._psk
        if ch.pre_shared_key is not None and psk is not None:
            digest = self.transcript.digest_with(truncated_client_hello(body), psk.hash_name)
            binder = compute_binder(
                psk.hash_name,
                binder_key(psk, self._crypto),
                digest,
                expand=self._crypto.hkdf_expand,
            )
            body = client_hello_with_binders(body, [binder])
        return self._conn._raw_handshake_message(0, HandshakeType.CLIENT_HELLO, body)

    def _send_early_data(self) -> None:
        """0-RTT (RFC 9846 §2.3): queued data in epoch 1, up to the ticket's limit."""
        psk = self._psk
        assert psk is not None and psk.session is not None
        session = psk.session
        schedule = self._crypto.key_schedule(session.cipher_suite)
        schedule.early_secret(psk.key)
        secret = schedule.client_early_traffic_secret(
            self.transcript.digest_with(b"", psk.hash_name)
        )
        self.log_secret("CLIENT_EARLY_TRAFFIC_SECRET", secret)
        self._conn._records.install_send(1, session.cipher_suite, secret)
        budget = session.max_early_data_size
        while self._conn._pending_app and len(self._conn._pending_app[0]) <= budget:
            data = self._conn._pending_app.pop(0)
            budget -= len(data)
            record, _ = self._conn._records.seal(1, ContentType.APPLICATION_DATA, data)
            self._conn._emit(record)
            self._early_sent.append(data)

    def _client_hello_verify_request(self, message: ReceivedMessage, now: float) -> None:
        # Only a DTLS 1.2 (or older) server answers with HelloVerifyRequest (RFC 6347
        # §4.2.1); DTLS 1.3 has none (RFC 9147 §5.1): the versions do not meet.
        raise ProtocolVersionError("server answered with HelloVerifyRequest (DTLS 1.2 or older)")

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
        returned = sh.other_extensions
        rrc = bool(returned) and (RRC_EXTENSION, b"") in returned and bool(offered)
        unsolicited = bool(returned) and any(e not in offered for e in returned)
        if unsolicited or (sh.connection_id is not None and not offered_cid):
            # RFC 9846 §4.2: only extensions we offered may come back.
            raise UnsupportedExtension("ServerHello with an extension we did not offer")
        if sh.cipher_suite not in self._client_hello.cipher_suites:
            raise IllegalParameter("server selected a cipher suite we did not offer")
        if sh.legacy_session_id_echo:
            raise IllegalParameter("legacy_session_id_echo must be empty (RFC 9147 §5)")
        if sh.legacy_compression_method != 0:
            raise IllegalParameter("compression method must be null")
        self._conn._version_selected()
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
        self._conn._implicit_ack(now)
        self.cipher_suite = sh.cipher_suite
        self.hash_name = hash_name
        self.transcript.set_hash(hash_name)
        self._add_to_transcript(message)
        shared = None
        if share is not None and sh.key_share is not None:
            self.group = sh.key_share.group
            shared = share.agree(sh.key_share.key_exchange)
        self._key_shares.clear()
        self._psk = psk
        self._conn._negotiate_connection_ids(sh.connection_id, rrc)
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
        self._conn._implicit_ack(now)
        self._hrr_suite = hrr.cipher_suite
        self.transcript.set_hash(hash_name)
        self.transcript.restart_after_hello_retry()
        self._add_to_transcript(message)
        if group is not None:
            self._key_shares = {group: self._crypto.generate_key_share(group)}
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
        self._conn._records.drop_send(1)
        self._conn._pending_app[:0] = self._early_sent
        self._early_sent.clear()
        flight = OutgoingFlight([self._client_hello_message(ch)], needs_ack=False)
        self._conn._start_flight(flight, now)

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
        if ee.other_extensions:
            self._encrypted_extensions_kept_raw(ee.other_extensions)
        if (ee.early_data and not sent_early) or (
            ee.record_size_limit is not None and self.context.record_size_limit is None
        ):
            raise UnsupportedExtension("EncryptedExtensions with an extension we did not offer")
        if ee.record_size_limit is not None:
            self._conn._apply_record_size_limits(ee.record_size_limit)
        self.early_data_accepted = ee.early_data and self._psk is not None
        if ee.server_name and self._client_hello is not None and not self._client_hello.server_name:
            raise UnsupportedExtension("server_name acknowledged but not sent")
        self._add_to_transcript(message)
        # RFC 9846 §2.2: a PSK handshake authenticates with the PSK, not certificates.
        self.state = HandshakeState.WAIT_FINISHED if self._psk else HandshakeState.WAIT_CERT_CR

    def _encrypted_extensions_kept_raw(self, extensions: list[tuple[int, bytes]]) -> None:
        """The EncryptedExtensions the codec keeps raw: certificate types (RFC 7250 §4.2)
        and use_srtp (RFC 5764 §4.1.1) we offered; any other is unsolicited (RFC 9846 §4.2)."""
        offered = dict(self._client_hello.other_extensions if self._client_hello else [])
        srtp = [data for t, data in extensions if t == ExtensionType.USE_SRTP]
        others = []
        for ext_type, data in extensions:
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
        if others:
            raise UnsupportedExtension("EncryptedExtensions with an extension we did not offer")

    def _certificate_type_selected(
        self, ext_type: int, data: bytes, offered: dict[int, bytes]
    ) -> None:
        """RFC 7250 §4.2: the server picks one of the types we listed."""
        if ext_type not in offered:
            raise UnsupportedExtension("certificate type selected but not offered")
        if len(data) != 1 or data[0] not in offered[ext_type][1:]:
            raise IllegalParameter("server selected a certificate type we did not offer")
        if ext_type == ExtensionType.SERVER_CERTIFICATE_TYPE:
            self.peer_certificate_type = data[0]
        else:
            self.own_certificate_type = data[0]

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
        self._check_finished(message, self.secrets["server_handshake"], now)
        self._add_to_transcript(message)
        self._derive_application_secrets()
        self._conn._records.install_receive(3, self.suite, self.secrets["server_application"])
        # RFC 9846 §4.4: [Certificate, CertificateVerify] when asked, then Finished.
        out: list[OutgoingMessage] = []
        request = self._certificate_request
        ctx = self.context
        if request is not None:
            if ctx.private_key is not None and (
                ctx.certificate_chain or self.own_certificate_type == RAW_PUBLIC_KEY
            ):
                self._signature_scheme = crypto.choose_signature_scheme(
                    ctx.private_key,
                    request.signature_algorithms or [],
                    certificate=ctx.certificate_chain[0] if ctx.certificate_chain else None,
                )
                out.append(self._conn._handshake_message(2, self._own_certificate(request.context)))
                out.append(self._conn._handshake_message(2, self._own_certificate_verify()))
            else:
                out.append(self._conn._handshake_message(2, Certificate(request.context, [])))
        finished = self._own_finished(self.secrets["client_handshake"])
        out.append(self._conn._handshake_message(2, finished))
        # RFC 9846 §7.1: resumption_secret over ClientHello...client Finished, derived
        # when a NewSessionTicket comes (a server may send none)
        self._resumption_secret = self._schedule_required().deferred_resumption_master_secret(
            self.transcript.digest()
        )
        self._conn._start_flight(OutgoingFlight(out, needs_ack=True), now)
        self._conn._records.drop_send(1)  # RFC 9147 §5.6: early data ends with epoch 2
        if not self.early_data_accepted:
            # Rejected 0-RTT data is not resent silently: the application decides.
            self.early_data_rejected, self._early_sent = self._early_sent, []
        self._conn._start_application_epoch(self.suite, self.secrets["client_application"])
        self._complete(now)

    def receive_new_session_ticket(self, message: ReceivedMessage, now: float) -> None:
        ticket = self._decode(message)
        assert isinstance(ticket, NewSessionTicket)
        if not ticket.ticket or ticket.lifetime == 0:
            return
        secret = self.secrets.get("resumption")
        if secret is None:
            assert self._resumption_secret is not None
            secret = self.secrets["resumption"] = self._resumption_secret()
            self._resumption_secret = None
        session = Session(
            ticket=ticket.ticket,
            psk=resumption_psk(
                self.hash_name,
                secret,
                ticket.nonce,
                expand=self._crypto.hkdf_expand,
            ),
            cipher_suite=self.suite,
            age_add=ticket.age_add,
            lifetime=min(ticket.lifetime, 604800),  # RFC 9846 §4.6.1: at most 7 days
            received_at=self.context.wall_clock(),
            max_early_data_size=ticket.max_early_data_size or 0,
            server_name=self.server_name,
            alpn_protocol=self.alpn_protocol,
        )
        self.session = session
        self._conn._queue_event(SessionTicketReceived(session))


def _is_ip(name: str) -> bool:
    import ipaddress

    if ":" not in name and not name.replace(".", "").isdigit():
        return False  # neither IPv6 (has ":") nor dotted-decimal IPv4: a host name
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
