"""Codecs for DTLS 1.3 handshake messages, ACKs and alerts.

Pure functions between bytes and dataclasses, no state. Handshake bodies follow RFC 9846 §4
with the DTLS changes of RFC 9147 §5 (ClientHello legacy_cookie, RequestConnectionId,
NewConnectionId); the 12-byte DTLS handshake header is RFC 9147 §5.2, ACK is RFC 9147 §7 and
Alert is RFC 9846 §6. Extension codecs live in `dtls.extensions`.

Decoding raises `DecodeError` for anything that does not parse (RFC 9846 §6: bad lengths,
trailing bytes, duplicate extensions); `IllegalParameter` for a recognized extension in a
message it is not specified for (§4.2), pre_shared_key not last (§4.2.11) and out-of-range
enum values; `ProtocolVersionError` for a hello without extensions (a pre-1.3 peer); and
`UnexpectedMessage` for handshake types DTLS 1.3 does not use. Everything else (versions,
suites, legacy fields, which extensions were solicited) is for the state machines.
Re-encoding a decoded message gives back the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from .errors import DecodeError, IllegalParameter, ProtocolVersionError, UnexpectedMessage
from .extensions import (
    CH_EXTENSIONS,
    CR_EXTENSIONS,
    CT_EXTENSIONS,
    EE_EXTENSIONS,
    HRR_EXTENSIONS,
    NST_EXTENSIONS,
    SH_EXTENSIONS,
    KeyShareEntry,
    OfferedPsks,
    PskIdentity,
    Reader,
    decode_extensions,
    encode_binders,
    encode_extensions,
    u16_list,
    vec8,
    vec16,
    vec24,
)
from .iana import DTLS12_LEGACY_VERSION, ExtensionType, HandshakeType

__all__ = [
    "DTLS_HANDSHAKE_HEADER_LEN",
    "HELLO_RETRY_REQUEST_RANDOM",
    "Certificate",
    "CertificateEntry",
    "CertificateRequest",
    "CertificateVerify",
    "ClientHello",
    "ClientHelloTemplate",
    "EncryptedExtensions",
    "Finished",
    "HandshakeFragment",
    "HandshakeMessage",
    "KeyShareEntry",
    "KeyUpdate",
    "NewConnectionId",
    "NewSessionTicket",
    "OfferedPsks",
    "PskIdentity",
    "RequestConnectionId",
    "ServerHello",
    "client_hello_binders_prefix",
    "client_hello_with_binders",
    "decode_ack",
    "decode_alert",
    "decode_handshake_body",
    "decode_handshake_fragments",
    "encode_ack",
    "encode_alert",
    "encode_handshake",
    "encode_handshake_body",
    "encode_handshake_fragment",
    "handshake_type",
    "transcript_bytes",
    "truncated_client_hello",
]

# RFC 9846 §4.1.3: SHA-256("HelloRetryRequest")
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)

_U16 = struct.Struct(">H")
_U16X2 = struct.Struct(">HH")
_U32X2 = struct.Struct(">II")
_U16X3 = struct.Struct(">HHH")
_U16X4 = struct.Struct(">HHHH")
_U16_U8 = struct.Struct(">HB")
# the ServerHello extensions `_encode_own_server_hello` packs (SH_EXTENSIONS' types)
_SUPPORTED_VERSIONS = int(ExtensionType.SUPPORTED_VERSIONS)
_KEY_SHARE = int(ExtensionType.KEY_SHARE)
_PRE_SHARED_KEY = int(ExtensionType.PRE_SHARED_KEY)
_CONNECTION_ID = int(ExtensionType.CONNECTION_ID)
_HS_HEADER = struct.Struct(">IHHI")  # type|length, message_seq, offset hi16, offset lo8|frag_len


# --- messages -----------------------------------------------------------------------------


@dataclass
class ClientHello:
    """RFC 9147 §5.3 (the DTLS form, with legacy_cookie) and RFC 9846 §4.1.2."""

    random: bytes
    cipher_suites: list[int]
    legacy_session_id: bytes = b""
    legacy_cookie: bytes = b""  # MUST be empty in DTLS 1.3; the state machine checks
    legacy_compression_methods: bytes = b"\x00"
    # extensions; None (or False) means absent
    supported_versions: list[int] | None = None
    supported_groups: list[int] | None = None
    key_share: list[KeyShareEntry] | None = None
    signature_algorithms: list[int] | None = None
    signature_algorithms_cert: list[int] | None = None
    server_name: str | None = None  # host_name only (RFC 6066 §3)
    alpn_protocols: list[bytes] | None = None
    cookie: bytes | None = None
    psk_key_exchange_modes: list[int] | None = None
    early_data: bool = False
    connection_id: bytes | None = None  # RFC 9146 §3 (b"" = zero-length CID)
    record_size_limit: int | None = None  # RFC 8449
    post_handshake_auth: bool = False
    pre_shared_key: OfferedPsks | None = None  # always last on the wire (RFC 9846 §4.2.11)
    other_extensions: list[tuple[int, bytes]] = field(default_factory=list)
    extension_order: list[int] | None = None  # wire order as parsed; None = canonical
    certificate_authorities: list[bytes] | None = None  # RFC 9846 §4.2.4, DER names
    legacy_version: int = DTLS12_LEGACY_VERSION


@dataclass
class ServerHello:
    """RFC 9846 §4.1.3; also the HelloRetryRequest (random == HELLO_RETRY_REQUEST_RANDOM)."""

    random: bytes
    cipher_suite: int
    legacy_session_id_echo: bytes = b""
    legacy_compression_method: int = 0
    supported_versions: int | None = None  # selected_version
    key_share: KeyShareEntry | None = None  # ServerHello
    selected_group: int | None = None  # HelloRetryRequest key_share (RFC 9846 §4.2.8)
    pre_shared_key: int | None = None  # selected_identity (ServerHello)
    cookie: bytes | None = None  # HelloRetryRequest
    connection_id: bytes | None = None  # ServerHello (RFC 9146 §3)
    other_extensions: list[tuple[int, bytes]] = field(default_factory=list)
    extension_order: list[int] | None = None
    legacy_version: int = DTLS12_LEGACY_VERSION

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM


@dataclass
class EncryptedExtensions:
    """RFC 9846 §4.3.1."""

    supported_groups: list[int] | None = None
    server_name: bool = False  # the server's empty acknowledgement (RFC 6066 §3)
    alpn_protocol: bytes | None = None
    early_data: bool = False
    record_size_limit: int | None = None
    other_extensions: list[tuple[int, bytes]] = field(default_factory=list)
    extension_order: list[int] | None = None


@dataclass
class CertificateRequest:
    """RFC 9846 §4.3.2."""

    context: bytes = b""
    signature_algorithms: list[int] | None = None  # MUST be present; the state machine checks
    signature_algorithms_cert: list[int] | None = None
    other_extensions: list[tuple[int, bytes]] = field(default_factory=list)
    extension_order: list[int] | None = None
    certificate_authorities: list[bytes] | None = None


@dataclass
class CertificateEntry:
    """RFC 9846 §4.4.2: an X.509 certificate or a raw public key, with raw extensions."""

    data: bytes
    extensions: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class Certificate:
    """RFC 9846 §4.4.2."""

    context: bytes
    entries: list[CertificateEntry]


@dataclass
class CertificateVerify:
    """RFC 9846 §4.4.3."""

    algorithm: int
    signature: bytes


@dataclass
class Finished:
    """RFC 9846 §4.4.4."""

    verify_data: bytes


@dataclass
class NewSessionTicket:
    """RFC 9846 §4.6.1."""

    lifetime: int
    age_add: int
    nonce: bytes
    ticket: bytes
    max_early_data_size: int | None = None  # the early_data extension (RFC 9846 §4.2.10)
    other_extensions: list[tuple[int, bytes]] = field(default_factory=list)
    extension_order: list[int] | None = None


@dataclass
class KeyUpdate:
    """RFC 9846 §4.6.3."""

    request_update: int


@dataclass
class RequestConnectionId:
    """RFC 9147 §9."""

    num_cids: int


@dataclass
class NewConnectionId:
    """RFC 9147 §9. usage: cid_immediate(0) or cid_spare(1)."""

    cids: list[bytes]
    usage: int


HandshakeMessage = (
    ClientHello
    | ServerHello
    | EncryptedExtensions
    | CertificateRequest
    | Certificate
    | CertificateVerify
    | Finished
    | NewSessionTicket
    | KeyUpdate
    | RequestConnectionId
    | NewConnectionId
)
_M = TypeVar("_M", bound=HandshakeMessage)


# --- encoders -----------------------------------------------------------------------------


def _encode_client_hello(m: ClientHello) -> bytes:
    suites = m.cipher_suites
    return b"".join(
        (
            _U16.pack(m.legacy_version),
            _fixed(m.random, 32, "random"),
            vec8(m.legacy_session_id, 32),
            vec8(m.legacy_cookie),
            vec16(u16_list(suites)),
            vec8(m.legacy_compression_methods),
            encode_extensions(m, CH_EXTENSIONS, psk_last=m.pre_shared_key is not None),
        )
    )


def _encode_server_hello(m: ServerHello) -> bytes:
    if (
        m.extension_order is None
        and not m.other_extensions
        and m.selected_group is None
        and m.cookie is None
        and m.random != HELLO_RETRY_REQUEST_RANDOM
    ):
        fast = _encode_own_server_hello(m)
        if fast is not None:
            return fast
    wrong: tuple[object, ...]
    if m.is_hello_retry_request:
        specs = HRR_EXTENSIONS
        wrong = m.key_share, m.pre_shared_key, m.connection_id
    else:
        specs = SH_EXTENSIONS
        wrong = m.selected_group, m.cookie
    if any(v is not None for v in wrong):
        raise ValueError("a field set that this kind of ServerHello does not carry")
    return b"".join(
        (
            _U16.pack(m.legacy_version),
            _fixed(m.random, 32, "random"),
            vec8(m.legacy_session_id_echo, 32),
            _U16.pack(m.cipher_suite),
            bytes((m.legacy_compression_method,)),
            encode_extensions(m, specs),
        )
    )


def _encode_own_server_hello(m: ServerHello) -> bytes | None:
    """A ServerHello as a server sends it (RFC 9846 §4.1.3: SH_EXTENSIONS' fields in the
    table's order, nothing else), packed without a call per field: the general encoder's
    bytes. None for what only the general encoder reports (a field out of range)."""
    random, echo, share, cid = m.random, m.legacy_session_id_echo, m.key_share, m.connection_id
    if (
        len(random) != 32
        or len(echo) > 32
        or not 0 <= m.legacy_compression_method <= 0xFF
        or (cid is not None and len(cid) > 0xFF)
    ):
        return None
    parts = [
        _U16.pack(m.legacy_version), random, bytes((len(echo),)), echo,
        _U16_U8.pack(m.cipher_suite, m.legacy_compression_method), b"",
    ]  # fmt: skip
    if m.supported_versions is not None:
        parts.append(_U16X3.pack(_SUPPORTED_VERSIONS, 2, m.supported_versions))
    if share is not None:
        key = share.key_exchange
        if len(key) > 0xFFFF - 4:
            return None
        parts.append(_U16X4.pack(_KEY_SHARE, len(key) + 4, share.group, len(key)))
        parts.append(key)
    if m.pre_shared_key is not None:
        parts.append(_U16X3.pack(_PRE_SHARED_KEY, 2, m.pre_shared_key))
    if cid is not None:
        parts.append(_U16X2.pack(_CONNECTION_ID, len(cid) + 1) + bytes((len(cid),)))
        parts.append(cid)
    parts[5] = _U16.pack(sum(map(len, parts[6:])))  # the extensions' length
    return b"".join(parts)


def _encode_certificate_request(m: CertificateRequest) -> bytes:
    return vec8(m.context) + encode_extensions(m, CR_EXTENSIONS)


def _encode_certificate(m: Certificate) -> bytes:
    entries = b"".join(
        vec24(e.data) + vec16(b"".join(_U16X2.pack(t, len(d)) + d for t, d in e.extensions))
        for e in m.entries
    )
    return vec8(m.context) + vec24(entries)


def _encode_new_session_ticket(m: NewSessionTicket) -> bytes:
    return b"".join(
        (
            _U32X2.pack(m.lifetime, m.age_add),
            vec8(m.nonce),
            vec16(m.ticket),
            encode_extensions(m, NST_EXTENSIONS),
        )
    )


def _encode_new_connection_id(m: NewConnectionId) -> bytes:
    return vec16(b"".join(vec8(c) for c in m.cids)) + bytes((m.usage,))


def _encode_certificate_verify(m: CertificateVerify) -> bytes:
    return _U16.pack(m.algorithm) + vec16(m.signature)


def _encode_finished(m: Finished) -> bytes:
    return bytes(m.verify_data)


def _encode_key_update(m: KeyUpdate) -> bytes:
    return bytes((m.request_update,))


def _encode_request_connection_id(m: RequestConnectionId) -> bytes:
    return bytes((m.num_cids,))


def _encode_encrypted_extensions(m: EncryptedExtensions) -> bytes:
    return encode_extensions(m, EE_EXTENSIONS)


def encode_handshake_body(msg: HandshakeMessage) -> bytes:
    """The body of a handshake message, without any header. ValueError if unencodable."""
    return encode_handshake(msg)[1]


def encode_handshake(msg: HandshakeMessage) -> tuple[int, bytes]:
    """(msg_type, body) of a handshake message: one table look-up by class, or what
    `keep_encoding` kept of it."""
    kept: tuple[int, bytes] | None = getattr(msg, _KEPT_ENCODING, None)
    if kept is not None:
        return kept
    entry = _ENCODERS.get(type(msg))
    if entry is None:
        for cls, found in _ENCODERS.items():  # a subclass of a message class
            if isinstance(msg, cls):
                entry = found
                break
        else:
            raise TypeError(f"not a handshake message: {type(msg).__name__}")
    return entry[0], entry[1](msg)


_KEPT_ENCODING = "_kept_encoding"


def keep_encoding(msg: _M) -> _M:
    """`msg`, encoded now: `encode_handshake` returns that encoding for it from then on.
    For a message sent unchanged on many connections (a server's Certificate); it must
    not be changed afterwards (a changed copy, e.g. `dataclasses.replace`, is encoded
    anew, its own attributes holding no kept encoding)."""
    msg.__dict__[_KEPT_ENCODING] = encode_handshake(msg)
    return msg


def _fixed(data: bytes, n: int, what: str) -> bytes:
    if len(data) != n:
        raise ValueError(f"{what} must be {n} bytes")
    return data


# --- decoders -----------------------------------------------------------------------------


def _require_extensions(r: Reader) -> None:
    # RFC 9846 §4.1.2: a hello that ends before its extensions is from (D)TLS 1.2 or older
    # and cannot negotiate DTLS 1.3 (RFC 9846 Appendix D: protocol_version).
    if r.pos == r.end:
        raise ProtocolVersionError("hello without extensions: the peer does not offer DTLS 1.3")


def _decode_client_hello(r: Reader) -> ClientHello:
    legacy_version = r.pull_uint16()
    random = r.pull_bytes(32)
    session_id = r.pull_vector(1, 0, 32)
    cookie = r.pull_vector(1)
    suites = r.pull_uint16_list(2, 2)
    compression = r.pull_vector(1, 1)
    _require_extensions(r)
    # made with the fixed fields, the extensions then set on it (no keyword arguments)
    hello = ClientHello(
        random, suites, session_id, cookie, compression, legacy_version=legacy_version
    )
    hello.other_extensions, hello.extension_order = decode_extensions(r, CH_EXTENSIONS, hello)
    return hello


def _decode_server_hello(r: Reader) -> ServerHello:
    data, pos = r.data, r.pos
    if pos + 38 < r.end and not data[pos + 34]:
        # the DTLS 1.3 case, read at once: an empty legacy_session_id_echo (RFC 9147
        # §5.3) and extensions after the fixed fields
        legacy_version = data[pos] << 8 | data[pos + 1]
        random = data[pos + 2 : pos + 34]
        session_id = b""
        suite = data[pos + 35] << 8 | data[pos + 36]
        compression = data[pos + 37]
        r.pos = pos + 38
    else:
        legacy_version = r.pull_uint16()
        random = r.pull_bytes(32)
        session_id = r.pull_vector(1, 0, 32)
        suite = r.pull_uint16()
        compression = r.pull_uint8()
        _require_extensions(r)
    hello = ServerHello(random, suite, session_id, compression, legacy_version=legacy_version)
    table = HRR_EXTENSIONS if random == HELLO_RETRY_REQUEST_RANDOM else SH_EXTENSIONS
    hello.other_extensions, hello.extension_order = decode_extensions(r, table, hello)
    return hello


def _decode_encrypted_extensions(r: Reader) -> EncryptedExtensions:
    ee = EncryptedExtensions()
    ee.other_extensions, ee.extension_order = decode_extensions(r, EE_EXTENSIONS, ee)
    return ee


def _decode_certificate_request(r: Reader) -> CertificateRequest:
    request = CertificateRequest(r.pull_vector(1))
    request.other_extensions, request.extension_order = decode_extensions(r, CR_EXTENSIONS, request)
    return request


def _decode_certificate(r: Reader) -> Certificate:
    context = r.pull_vector(1)
    data = r.data
    pos = r.pos + 3
    end = r.pos = pos + r.pull_length(3)  # certificate_list<0..2^24-1>
    entries = []
    while pos < end:
        # CertificateEntry: cert_data<1..2^24-1>, then extensions<0..2^16-1>; an entry
        # without extensions (as servers send them) is read here, any other by a Reader
        start = pos + 3
        stop = start + int.from_bytes(data[pos:start], "big")
        if start < stop <= end - 2 and not data[stop] and not data[stop + 1]:
            entries.append(CertificateEntry(data[start:stop], []))
            pos = stop + 2
            continue
        block = Reader(data, pos, end)
        cert = block.pull_vector(3, 1)
        entries.append(CertificateEntry(cert, decode_extensions(block, CT_EXTENSIONS, None)[0]))
        pos = block.pos
    return Certificate(context, entries)


def _decode_certificate_verify(r: Reader) -> CertificateVerify:
    data, pos, end = r.data, r.pos, r.end
    if end - pos >= 4 and (data[pos + 2] << 8 | data[pos + 3]) == end - pos - 4:
        r.pos = end  # the whole body: algorithm, then signature<0..2^16-1>
        return CertificateVerify(data[pos] << 8 | data[pos + 1], data[pos + 4 : end])
    return CertificateVerify(r.pull_uint16(), r.pull_vector(2))


def _decode_new_session_ticket(r: Reader) -> NewSessionTicket:
    lifetime = r.pull_uint32()
    age_add = r.pull_uint32()
    nonce = r.pull_vector(1)
    ticket = r.pull_vector(2, 1)
    message = NewSessionTicket(lifetime, age_add, nonce, ticket)
    message.other_extensions, message.extension_order = decode_extensions(
        r, NST_EXTENSIONS, message
    )
    return message


def _decode_key_update(r: Reader) -> KeyUpdate:
    value = r.pull_uint8()
    if value > 1:
        raise IllegalParameter("KeyUpdate: bad request_update")  # RFC 9846 §4.6.3
    return KeyUpdate(value)


def _decode_request_connection_id(r: Reader) -> RequestConnectionId:
    return RequestConnectionId(r.pull_uint8())


def _decode_new_connection_id(r: Reader) -> NewConnectionId:
    block = r.pull_block(2)
    cids = []
    while block.pos < block.end:
        cids.append(block.pull_vector(1))
    usage = r.pull_uint8()
    if usage > 1:
        raise IllegalParameter("NewConnectionId: bad usage")  # RFC 9147 §9, an unknown enum
    return NewConnectionId(cids, usage)


_FINISHED = int(HandshakeType.FINISHED)  # decoded without a Reader: no fields to read
_DECODERS: dict[int, Callable[[Reader], HandshakeMessage]] = {
    HandshakeType.CLIENT_HELLO: _decode_client_hello,
    HandshakeType.SERVER_HELLO: _decode_server_hello,
    HandshakeType.ENCRYPTED_EXTENSIONS: _decode_encrypted_extensions,
    HandshakeType.CERTIFICATE_REQUEST: _decode_certificate_request,
    HandshakeType.CERTIFICATE: _decode_certificate,
    HandshakeType.CERTIFICATE_VERIFY: _decode_certificate_verify,
    HandshakeType.NEW_SESSION_TICKET: _decode_new_session_ticket,
    HandshakeType.KEY_UPDATE: _decode_key_update,
    HandshakeType.REQUEST_CONNECTION_ID: _decode_request_connection_id,
    HandshakeType.NEW_CONNECTION_ID: _decode_new_connection_id,
}

_TYPES: dict[type, HandshakeType] = {
    ClientHello: HandshakeType.CLIENT_HELLO,
    ServerHello: HandshakeType.SERVER_HELLO,
    EncryptedExtensions: HandshakeType.ENCRYPTED_EXTENSIONS,
    CertificateRequest: HandshakeType.CERTIFICATE_REQUEST,
    Certificate: HandshakeType.CERTIFICATE,
    CertificateVerify: HandshakeType.CERTIFICATE_VERIFY,
    Finished: HandshakeType.FINISHED,
    NewSessionTicket: HandshakeType.NEW_SESSION_TICKET,
    KeyUpdate: HandshakeType.KEY_UPDATE,
    RequestConnectionId: HandshakeType.REQUEST_CONNECTION_ID,
    NewConnectionId: HandshakeType.NEW_CONNECTION_ID,
}

# class -> (msg_type, body encoder); ints, so that callers need no enum conversion
_ENCODERS: dict[type, tuple[int, Callable[[Any], bytes]]] = {
    cls: (int(_TYPES[cls]), enc)
    for cls, enc in (
        (ClientHello, _encode_client_hello),
        (ServerHello, _encode_server_hello),
        (EncryptedExtensions, _encode_encrypted_extensions),
        (CertificateRequest, _encode_certificate_request),
        (Certificate, _encode_certificate),
        (CertificateVerify, _encode_certificate_verify),
        (Finished, _encode_finished),
        (NewSessionTicket, _encode_new_session_ticket),
        (KeyUpdate, _encode_key_update),
        (RequestConnectionId, _encode_request_connection_id),
        (NewConnectionId, _encode_new_connection_id),
    )
}


def decode_handshake_body(msg_type: int, body: bytes) -> HandshakeMessage:
    """Parse the body of a reassembled handshake message of type `msg_type`.

    A server_hello body is a ServerHello or a HelloRetryRequest, told apart by its random.
    Types DTLS 1.3 never sends (end_of_early_data, message_hash, unknown ones) raise
    UnexpectedMessage.
    """
    if msg_type == _FINISHED:
        return Finished(bytes(body))  # RFC 9846 §4.4.4: the body is verify_data alone
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        raise UnexpectedMessage(f"handshake message type {msg_type} is not used in DTLS 1.3")
    r = Reader(bytes(body))
    msg = decoder(r)
    if r.pos != r.end:
        r.expect_end("handshake message")
    return msg


def handshake_type(msg: HandshakeMessage) -> HandshakeType:
    """The HandshakeType of `msg` (a HelloRetryRequest is a server_hello)."""
    return _TYPES[type(msg)]


def transcript_bytes(msg_type: int, body: bytes) -> bytes:
    """The TLS Handshake struct hashed into the transcript: type, uint24 length, body.

    RFC 9147 §5.2: the transcript leaves out message_seq and the fragment fields.
    """
    return ((msg_type << 24) | len(body)).to_bytes(4, "big") + body


# --- PSK binders (RFC 9846 §4.2.11.2) -------------------------------------------------------


def _client_hello_extension_block(body: bytes) -> Reader:
    """A Reader over the extensions block of an encoded ClientHello body (RFC 9846 §4.1.2;
    its offsets are the body's)."""
    r = Reader(bytes(body))
    r.pull_bytes(2 + 32)
    r.pull_vector(1)
    r.pull_vector(1)
    r.pull_vector(2)
    r.pull_vector(1)
    block = r.pull_block(2)
    r.expect_end("ClientHello")
    return block


def _binders_offset(body: bytes) -> int:
    """Offset in a ClientHello body of its binders list (the uint16 length included)."""
    block = _client_hello_extension_block(body)
    ext_type = -1
    ext = block
    while block.pos < block.end:
        ext_type = block.pull_uint16()
        ext = block.pull_block(2)
    if ext_type != ExtensionType.PRE_SHARED_KEY:
        raise ValueError("the ClientHello does not end with a pre_shared_key extension")
    ext.pull_vector(2)  # identities
    offset = ext.pos
    ext.pull_vector(2)  # binders
    ext.expect_end("pre_shared_key")
    return offset


def client_hello_binders_prefix(body: bytes) -> bytes:
    """The ClientHello body up to, not including, the binders list (RFC 9846 §4.2.11.2)."""
    return bytes(body[: _binders_offset(body)])


def truncated_client_hello(body: bytes) -> bytes:
    """Truncate(ClientHello) as it enters the binder's transcript hash (RFC 9846 §4.2.11.2).

    The 4-byte header keeps the length of the whole message, as if the binders were present.
    """
    offset = _binders_offset(body)
    return ((HandshakeType.CLIENT_HELLO << 24) | len(body)).to_bytes(4, "big") + body[:offset]


def client_hello_with_binders(body: bytes, binders: Sequence[bytes]) -> bytes:
    """`body` with its binders list replaced by `binders` of the same lengths.

    A client encodes its ClientHello with placeholder binders of the right sizes, hashes
    truncated_client_hello(body), computes the binders and patches them in with this.
    """
    offset = _binders_offset(body)
    tail = encode_binders(binders)
    if len(tail) != len(body) - offset:
        raise ValueError("the new binders must have the lengths of the placeholders")
    return bytes(body[:offset]) + tail


# --- the first ClientHello, spliced (RFC 9846 §4.1.2) --------------------------------------


def _key_share_values(body: bytes) -> list[tuple[int, int]]:
    """(offset, length) in a ClientHello body of each key_share entry's key_exchange."""
    block = _client_hello_extension_block(body)
    values = []
    while block.pos < block.end:
        ext_type = block.pull_uint16()
        ext = block.pull_block(2)
        if ext_type == ExtensionType.KEY_SHARE:
            shares = ext.pull_block(2)
            while shares.pos < shares.end:
                shares.pull_uint16()  # group
                values.append((shares.pos + 2, len(shares.pull_vector(2))))
    return values


class ClientHelloTemplate:
    """A ClientHello and its body with the 32-byte random and the key_share values cut
    out. A client's first ClientHello without PSK or cookie differs from the previous
    one for the same settings only there (legacy_session_id is empty in DTLS, RFC 9147
    §5.3), so `fill` splices the new values into the encoding instead of encoding it."""

    __slots__ = ("_fields", "_head", "_shares", "_tail")

    def __init__(self, hello: ClientHello, body: bytes) -> None:
        """`body`: `hello` as the encoder gives it (ValueError if its random and key
        share values are not where they would be)."""
        entries = hello.key_share or []
        values = _key_share_values(body)
        if body[2:34] != hello.random or [body[i : i + n] for i, n in values] != [
            e.key_exchange for e in entries
        ]:
            raise ValueError("the body does not carry the ClientHello's random and key shares")
        self._head = bytes(body[:2])  # legacy_version
        # per key share: its group, its length, and the bytes before its value
        shares = []
        pos = 2 + 32
        for entry, (offset, n) in zip(entries, values, strict=True):
            shares.append((entry.group, n, bytes(body[pos:offset])))
            pos = offset + n
        self._shares = tuple(shares)
        self._tail = bytes(body[pos:])
        # a copy: the hello goes on to its own handshake, which may change it (HRR)
        self._fields = dict(vars(hello))

    def fill(
        self, random: bytes, key_share: list[KeyShareEntry]
    ) -> tuple[ClientHello, bytes] | None:
        """A new ClientHello with this random and these key shares, and its body; None
        if the shares are not of the template's groups and lengths."""
        shares = self._shares
        if len(random) != 32 or len(key_share) != len(shares):
            return None
        parts = [self._head, random]
        for entry, (group, n, before) in zip(key_share, shares, strict=True):
            if entry.group != group or len(entry.key_exchange) != n:
                return None
            parts += (before, entry.key_exchange)
        parts.append(self._tail)
        hello = object.__new__(ClientHello)
        hello.__dict__.update(self._fields)  # the other fields' values: lists shared, not
        hello.random = random  # changed in place by anyone (a retry assigns new ones)
        hello.key_share = key_share
        return hello, b"".join(parts)


# --- DTLS handshake header (RFC 9147 §5.2) ---------------------------------------------------

DTLS_HANDSHAKE_HEADER_LEN = 12


class HandshakeFragment(NamedTuple):
    """One DTLSHandshake fragment from a record (RFC 9147 §5.2, §5.5); a named tuple, as
    one is made per fragment received."""

    msg_type: int
    length: int
    message_seq: int
    fragment_offset: int
    fragment_length: int
    fragment: bytes


_tuple_new = tuple.__new__  # a HandshakeFragment without the named tuple's __new__ frame


def encode_handshake_fragment(
    msg_type: int, length: int, message_seq: int, fragment_offset: int, fragment: bytes
) -> bytes:
    """A DTLSHandshake header and `fragment`, which covers [offset, offset+len) of `length`."""
    n = len(fragment)
    if fragment_offset + n > length or length > 0xFFFFFF or not 0 <= msg_type <= 0xFF:
        raise ValueError("fragment does not fit its message")
    return (
        _HS_HEADER.pack(
            (msg_type << 24) | length,
            message_seq,
            fragment_offset >> 8,
            ((fragment_offset & 0xFF) << 24) | n,
        )
        + fragment
    )


def decode_handshake_fragments(record_plaintext: bytes) -> list[HandshakeFragment]:
    """All handshake fragments in the plaintext of one record (RFC 9147 §5.5).

    DecodeError when a header or fragment overruns the record, or a fragment overruns
    its message (fragment_offset + fragment_length > length).
    """
    data = record_plaintext if record_plaintext.__class__ is bytes else bytes(record_plaintext)
    end = len(data)
    pos = 0
    out = []
    unpack = _HS_HEADER.unpack_from
    while pos < end:
        if pos + 12 > end:
            raise DecodeError("truncated DTLS handshake header")
        a, seq, off_hi, b = unpack(data, pos)
        length = a & 0xFFFFFF
        offset = (off_hi << 8) | (b >> 24)
        frag_len = b & 0xFFFFFF
        start = pos + 12
        pos = start + frag_len
        if pos > end:
            raise DecodeError("handshake fragment overruns its record")
        if offset + frag_len > length:
            raise DecodeError("handshake fragment overruns its message")
        fields = (a >> 24, length, seq, offset, frag_len, data[start:pos])
        out.append(_tuple_new(HandshakeFragment, fields))
    return out


# --- ACK (RFC 9147 §7) and Alert (RFC 9846 §6) ---------------------------------------------


_RECORD_NUMBER = struct.Struct(">QQ")  # RecordNumber: uint64 epoch, uint64 sequence_number
_ONE_RECORD_ACK = struct.Struct(">HQQ")  # an ACK of one record: length 16, then its number


def encode_ack(record_numbers: Sequence[tuple[int, int]]) -> bytes:
    """ACK body: RecordNumber{uint64 epoch; uint64 sequence_number} record_numbers<0..2^16-1>."""
    n = len(record_numbers)
    if n == 1:  # the usual one: a flight's only record
        return _ONE_RECORD_ACK.pack(16, *record_numbers[0])
    if n * 16 > 0xFFFF:
        raise ValueError("too many record numbers for one ACK")
    pack = _RECORD_NUMBER.pack
    return _U16.pack(n * 16) + b"".join([pack(*number) for number in record_numbers])


def decode_ack(data: bytes) -> list[tuple[int, int]]:
    """The (epoch, sequence_number) pairs of an ACK body."""
    if len(data) < 2:
        raise DecodeError("truncated ACK")
    n = data[0] << 8 | data[1]
    if n != len(data) - 2 or n % 16:
        raise DecodeError("bad ACK length")
    if n == 16:
        return [_RECORD_NUMBER.unpack_from(data, 2)]
    return list(_RECORD_NUMBER.iter_unpack(memoryview(data)[2:]))


def encode_alert(level: int, description: int) -> bytes:
    return bytes((level, description))


def decode_alert(data: bytes) -> tuple[int, int]:
    """(level, description). Callers treat every alert but close_notify as fatal (RFC 9846 §6)."""
    if len(data) != 2:
        raise DecodeError("an alert is exactly two bytes")
    return data[0], data[1]


_COOKIE = int(ExtensionType.COOKIE)


def peek_client_hello_cookie(partial_body: bytes) -> bytes | None:
    """The cookie of a ClientHello from the first fragment of its body alone, or None.

    A stateless server checks the cookie of a fragmented second ClientHello before it
    keeps any state for the rest (RFC 9147 §5.1); extensions that end past the fragment
    are not read. Raises DecodeError on malformed input.
    """
    r = Reader(partial_body)
    r.pull_bytes(2 + 32)  # legacy_version, random
    r.pull_vector(1, 0, 32)  # legacy_session_id
    r.pull_vector(1)  # legacy_cookie
    r.pull_vector(2, 2)  # cipher_suites
    r.pull_vector(1, 1)  # legacy_compression_methods
    r.pull_uint16()  # extensions length: the rest may lie in later fragments
    data, pos, end = r.data, r.pos, r.end
    while pos + 4 <= end:  # skip to the cookie without copying the others
        ext_type = data[pos] << 8 | data[pos + 1]
        length = data[pos + 2] << 8 | data[pos + 3]
        pos += 4
        if pos + length > end:
            return None
        if ext_type == _COOKIE:
            return Reader(data, pos, pos + length).pull_vector(2, 1)
        pos += length
    return None
