"""Extension codecs for DTLS 1.3 handshake messages, and the byte reader they share.

RFC 9846 §4.2 (TLS 1.3 extensions), RFC 6066 §3 (server_name), RFC 7301 §3.1 (ALPN),
RFC 8449 §4 (record_size_limit), RFC 9146 §3 (connection_id). `dtls.messages` is the public
face; this module holds the per-message extension tables and the shared decode/encode loops.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DecodeError, IllegalParameter
from .iana import ExtensionType

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U16X2 = struct.Struct(">HH")
_PSK = ExtensionType.PRE_SHARED_KEY.value


@functools.lru_cache(maxsize=256)  # the protocol's lists are at most ~130 entries
def uint16_array(count: int) -> struct.Struct:
    """The Struct of `count` big-endian uint16 (cipher suites, groups, schemes, versions),
    made once per count: a format string per call costs more than the packing."""
    return struct.Struct(f">{count}H")


# --- reading and writing -------------------------------------------------------------------


class Reader:
    """A bounds-checked cursor over `data[pos:end]`; every overrun raises DecodeError."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def _take(self, n: int) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise DecodeError(f"truncated: {n} bytes needed at offset {pos}")
        self.pos = pos + n
        return pos

    def pull_uint8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise DecodeError(f"truncated: 1 byte needed at offset {pos}")
        self.pos = pos + 1
        return self.data[pos]

    def pull_uint16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise DecodeError(f"truncated: 2 bytes needed at offset {pos}")
        self.pos = pos + 2
        data = self.data
        return (data[pos] << 8) | data[pos + 1]

    def pull_uint24(self) -> int:
        pos = self._take(3)
        return int.from_bytes(self.data[pos : pos + 3], "big")

    def pull_uint32(self) -> int:
        value: int = _U32.unpack_from(self.data, self._take(4))[0]
        return value

    def pull_uint64(self) -> int:
        value: int = _U64.unpack_from(self.data, self._take(8))[0]
        return value

    def pull_bytes(self, n: int) -> bytes:
        pos = self._take(n)
        return self.data[pos : pos + n]

    def pull_length(self, prefix: int, min_len: int = 0, max_len: int | None = None) -> int:
        """A 1-, 2- or 3-byte vector length, checked against the vector's bounds and the
        container; the vector's bytes are then next."""
        data = self.data
        pos = self.pos
        start = pos + prefix
        if start > self.end:
            raise DecodeError(f"truncated: vector length needed at offset {pos}")
        if prefix == 1:
            n = data[pos]
        elif prefix == 2:
            n = (data[pos] << 8) | data[pos + 1]
        else:
            n = int.from_bytes(data[pos:start], "big")
        if n < min_len or (max_len is not None and n > max_len):
            raise DecodeError(f"vector length {n} out of range")
        if start + n > self.end:
            raise DecodeError(f"vector of {n} bytes overruns its container")
        self.pos = start
        return n

    def pull_vector(self, prefix: int, min_len: int = 0, max_len: int | None = None) -> bytes:
        """opaque x<min_len..max_len> with a `prefix`-byte length."""
        n = self.pull_length(prefix, min_len, max_len)
        pos = self.pos
        self.pos = pos + n
        return self.data[pos : pos + n]

    def pull_block(self, prefix: int, min_len: int = 0) -> Reader:
        """A sub-reader over a length-prefixed vector; the caller consumes it exactly."""
        n = self.pull_length(prefix, min_len)
        pos = self.pos
        self.pos = pos + n
        return Reader(self.data, pos, pos + n)

    def pull_uint16_list(self, prefix: int, min_len: int) -> list[int]:
        """uint16 x<min_len..2^(8*prefix)-1> (cipher suites, groups, schemes, versions)."""
        n = self.pull_length(prefix, min_len)
        if n & 1:
            raise DecodeError("odd length for a list of uint16")
        pos = self.pos
        self.pos = pos + n
        return list(uint16_array(n >> 1).unpack_from(self.data, pos))

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise DecodeError(f"{self.end - self.pos} trailing bytes in {what}")


def vec8(data: bytes, max_len: int = 0xFF) -> bytes:
    if len(data) > max_len:
        raise ValueError(f"{len(data)} bytes do not fit a vector of at most {max_len}")
    return bytes((len(data),)) + data


def vec16(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"{len(data)} bytes do not fit a 16-bit length")
    return _U16.pack(len(data)) + data


def vec24(data: bytes) -> bytes:
    if len(data) > 0xFFFFFF:
        raise ValueError(f"{len(data)} bytes do not fit a 24-bit length")
    return len(data).to_bytes(3, "big") + data


def u16_list(values: Sequence[int]) -> bytes:
    return uint16_array(len(values)).pack(*values)


# --- structured extension values -----------------------------------------------------------


@dataclass
class KeyShareEntry:
    """RFC 9846 §4.2.8."""

    group: int
    key_exchange: bytes


@dataclass
class PskIdentity:
    """RFC 9846 §4.2.11."""

    identity: bytes
    obfuscated_ticket_age: int


@dataclass
class OfferedPsks:
    """RFC 9846 §4.2.11: identities and one binder per identity, in the same order."""

    identities: list[PskIdentity]
    binders: list[bytes]


# --- per-extension decoders (each reads one extension_data; the caller checks the end) ---


def _d_uint16_list(r: Reader) -> list[int]:
    # supported_groups, signature_algorithms(_cert): x<2..2^16-2> (RFC 9846 §4.2.3, §4.2.7)
    return r.pull_uint16_list(2, 2)


def _d_versions(r: Reader) -> list[int]:
    return r.pull_uint16_list(1, 2)  # versions<2..254> (RFC 9846 §4.2.1)


def _d_uint16(r: Reader) -> int:
    return r.pull_uint16()


def _d_uint32(r: Reader) -> int:
    return r.pull_uint32()


def _d_empty(r: Reader) -> bool:
    return True  # extension_data must be empty; decode_extensions checks


def _d_key_share_entry(r: Reader) -> KeyShareEntry:
    return KeyShareEntry(r.pull_uint16(), r.pull_vector(2, 1))


def _d_client_shares(r: Reader) -> list[KeyShareEntry]:
    block = r.pull_block(2)
    shares = []
    while block.pos < block.end:
        shares.append(_d_key_share_entry(block))
    return shares


def _d_server_name(r: Reader) -> str:
    # RFC 6066 §3: ServerNameList with exactly one entry, a host_name (as BoringSSL requires)
    block = r.pull_block(2, 1)
    if block.pull_uint8() != 0:
        raise DecodeError("server_name: only host_name is supported")
    name = block.pull_vector(2, 1)
    block.expect_end("server_name")
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        raise IllegalParameter("server_name: host_name is not ASCII") from None


def _d_alpn_list(r: Reader) -> list[bytes]:
    block = r.pull_block(2, 2)  # ProtocolName protocol_name_list<2..2^16-1> (RFC 7301 §3.1)
    names = []
    while block.pos < block.end:
        names.append(block.pull_vector(1, 1))
    return names


def _d_alpn_selected(r: Reader) -> bytes:
    names = _d_alpn_list(r)
    if len(names) != 1:
        raise DecodeError("ALPN: the server's list must hold exactly one protocol")
    return names[0]


def _d_cookie(r: Reader) -> bytes:
    return r.pull_vector(2, 1)  # opaque cookie<1..2^16-1> (RFC 9846 §4.2.2)


def _d_psk_modes(r: Reader) -> list[int]:
    return list(r.pull_vector(1, 1))  # ke_modes<1..255> (RFC 9846 §4.2.9)


def _d_connection_id(r: Reader) -> bytes:
    return r.pull_vector(1)  # opaque cid<0..2^8-1> (RFC 9146 §3)


def _d_record_size_limit(r: Reader) -> int:
    value = r.pull_uint16()
    if value < 64:
        raise IllegalParameter("record_size_limit below 64")  # RFC 8449 §4
    return value


def _d_offered_psks(r: Reader) -> OfferedPsks:
    # RFC 9846 §4.2.11: identities<7..2^16-1>, binders<33..2^16-1>, PskBinderEntry<32..255>
    block = r.pull_block(2, 7)
    identities = []
    while block.pos < block.end:
        identities.append(PskIdentity(block.pull_vector(2, 1), block.pull_uint32()))
    block = r.pull_block(2, 33)
    binders = []
    while block.pos < block.end:
        binders.append(block.pull_vector(1, 32))
    if len(binders) != len(identities):
        raise IllegalParameter("pre_shared_key: one binder per identity")
    return OfferedPsks(identities, binders)


def _d_certificate_authorities(r: Reader) -> list[bytes]:
    block = r.pull_block(2, 3)  # DistinguishedName authorities<3..2^16-1> (RFC 9846 §4.2.4)
    names = []
    while block.pos < block.end:
        names.append(block.pull_vector(2, 1))
    return names


# --- fast paths: the well-formed case of the commonest extensions, read without a Reader.
# Each returns None for anything else, and the Reader decoder above (the reference) then
# reads it and reports the error; none of them returns None for a value.


def _f_uint16_list(data: bytes, pos: int, end: int) -> list[int] | None:
    n = end - pos - 2
    if n >= 2 and not n & 1 and (data[pos] << 8 | data[pos + 1]) == n:
        return list(uint16_array(n >> 1).unpack_from(data, pos + 2))
    return None


def _f_versions(data: bytes, pos: int, end: int) -> list[int] | None:
    n = end - pos - 1
    if n >= 2 and not n & 1 and data[pos] == n:
        return list(uint16_array(n >> 1).unpack_from(data, pos + 1))
    return None


def _f_uint16(data: bytes, pos: int, end: int) -> int | None:
    return data[pos] << 8 | data[pos + 1] if end - pos == 2 else None


def _f_empty(data: bytes, pos: int, end: int) -> bool | None:
    return True if end == pos else None


def _f_psk_modes(data: bytes, pos: int, end: int) -> list[int] | None:
    n = end - pos - 1
    return list(data[pos + 1 : end]) if n >= 1 and data[pos] == n else None


def _f_key_share_entry(data: bytes, pos: int, end: int) -> KeyShareEntry | None:
    if end - pos >= 5 and (data[pos + 2] << 8 | data[pos + 3]) == end - pos - 4:
        return KeyShareEntry(data[pos] << 8 | data[pos + 1], data[pos + 4 : end])
    return None


def _f_client_shares(data: bytes, pos: int, end: int) -> list[KeyShareEntry] | None:
    if end - pos < 2 or (data[pos] << 8 | data[pos + 1]) != end - pos - 2:
        return None
    pos += 2
    shares = []
    while pos < end:
        if pos + 4 > end:
            return None
        n = data[pos + 2] << 8 | data[pos + 3]
        stop = pos + 4 + n
        if n < 1 or stop > end:
            return None
        shares.append(KeyShareEntry(data[pos] << 8 | data[pos + 1], data[pos + 4 : stop]))
        pos = stop
    return shares


def _f_server_name(data: bytes, pos: int, end: int) -> str | None:
    n = end - pos - 5  # list length, name_type host_name (0), name length, name
    if (
        n >= 1
        and (data[pos] << 8 | data[pos + 1]) == n + 3
        and data[pos + 2] == 0
        and (data[pos + 3] << 8 | data[pos + 4]) == n
    ):
        name = data[pos + 5 : end]
        if name.isascii():
            return name.decode("ascii")
    return None


FAST_DECODERS: dict[Callable[[Reader], Any], Callable[[bytes, int, int], Any]] = {
    _d_uint16_list: _f_uint16_list,
    _d_versions: _f_versions,
    _d_uint16: _f_uint16,
    _d_empty: _f_empty,
    _d_psk_modes: _f_psk_modes,
    _d_key_share_entry: _f_key_share_entry,
    _d_client_shares: _f_client_shares,
    _d_server_name: _f_server_name,
}


# --- per-extension encoders ----------------------------------------------------------------


def _e_uint16_list(values: Sequence[int]) -> bytes:
    return vec16(u16_list(values))


def _e_versions(values: Sequence[int]) -> bytes:
    return vec8(u16_list(values))


def _e_empty(_: bool) -> bytes:
    return b""


def _e_key_share_entry(e: KeyShareEntry) -> bytes:
    return _U16.pack(e.group) + vec16(e.key_exchange)


def _e_client_shares(shares: Sequence[KeyShareEntry]) -> bytes:
    return vec16(b"".join(_e_key_share_entry(e) for e in shares))


def _e_server_name(name: str) -> bytes:
    return vec16(b"\x00" + vec16(name.encode("ascii")))


def _e_alpn_list(names: Sequence[bytes]) -> bytes:
    return vec16(b"".join(vec8(n) for n in names))


def _e_alpn_selected(name: bytes) -> bytes:
    return _e_alpn_list([name])


def _e_offered_psks(psks: OfferedPsks) -> bytes:
    identities = b"".join(
        vec16(i.identity) + _U32.pack(i.obfuscated_ticket_age) for i in psks.identities
    )
    return vec16(identities) + encode_binders(psks.binders)


def _e_certificate_authorities(names: Sequence[bytes]) -> bytes:
    return vec16(b"".join(vec16(n) for n in names))


def encode_binders(binders: Sequence[bytes]) -> bytes:
    """PskBinderEntry binders<33..2^16-1> (RFC 9846 §4.2.11)."""
    return vec16(b"".join(vec8(b) for b in binders))


# --- where each extension may appear (RFC 9846 §4.2) ----------------------------------------

# The table of RFC 9846 §4.2, plus max_fragment_length, heartbeat and
# signed_certificate_timestamp from the IANA registry, and connection_id (RFC 9146, 9147 §9).
# These are the extensions this implementation "recognizes": one of them in a message not
# listed for it is illegal_parameter. Anything else is unknown and ignored (kept raw).
ALLOWED_IN: dict[int, frozenset[str]] = {
    t: frozenset(where.split())
    for t, where in {
        0: "CH EE CR",  # server_name
        1: "CH EE",  # max_fragment_length
        5: "CH CR CT",  # status_request
        10: "CH EE",  # supported_groups
        13: "CH CR",  # signature_algorithms
        14: "CH EE",  # use_srtp
        15: "CH EE",  # heartbeat
        16: "CH EE",  # application_layer_protocol_negotiation
        18: "CH CR CT",  # signed_certificate_timestamp
        19: "CH EE",  # client_certificate_type
        20: "CH EE",  # server_certificate_type
        21: "CH",  # padding
        27: "CH CR",  # compress_certificate
        28: "CH EE",  # record_size_limit
        34: "CH CR CT",  # delegated_credential
        39: "CH EE",  # supported_ekt_ciphers
        41: "CH SH",  # pre_shared_key
        42: "CH EE NST",  # early_data
        43: "CH SH HRR",  # supported_versions
        44: "CH HRR",  # cookie
        45: "CH",  # psk_key_exchange_modes
        47: "CH CR",  # certificate_authorities
        48: "CR",  # oid_filters
        49: "CH",  # post_handshake_auth
        50: "CH CR",  # signature_algorithms_cert
        51: "CH SH HRR",  # key_share
        52: "CH CR CT",  # transparency_info
        54: "CH SH",  # connection_id
        55: "CH EE",  # external_id_hash
        56: "CH EE",  # external_session_id
        57: "CH EE",  # quic_transport_parameters
        58: "CH EE",  # ticket_request
        64768: "CH",  # ech_outer_extensions
        65037: "CH HRR EE",  # encrypted_client_hello
    }.items()
}


class ExtensionTable:
    """The extensions a message type parses into fields, in canonical (encoding) order.

    entries: (extension type, field name, encoder, decoder). Extensions allowed in the
    message but not listed here stay raw in `other_extensions`.
    """

    __slots__ = ("by_type", "entries", "message")

    def __init__(
        self,
        message: str,
        entries: Sequence[tuple[int, str, Callable[[Any], bytes], Callable[[Reader], Any]]],
    ) -> None:
        self.message = message
        self.entries = tuple((int(t), name, enc, dec) for t, name, enc, dec in entries)
        self.by_type = {
            t: (name, dec, FAST_DECODERS.get(dec)) for t, name, _, dec in self.entries
        }
        for t in self.by_type:
            assert message in ALLOWED_IN[t], (message, t)


E = ExtensionType
_SN = E.SERVER_NAME
_SG = E.SUPPORTED_GROUPS
_SA = E.SIGNATURE_ALGORITHMS
_ALPN = E.APPLICATION_LAYER_PROTOCOL_NEGOTIATION

CH_EXTENSIONS = ExtensionTable(
    "CH",
    [
        (_SN, "server_name", _e_server_name, _d_server_name),
        (_SG, "supported_groups", _e_uint16_list, _d_uint16_list),
        (_SA, "signature_algorithms", _e_uint16_list, _d_uint16_list),
        (_ALPN, "alpn_protocols", _e_alpn_list, _d_alpn_list),
        (E.RECORD_SIZE_LIMIT, "record_size_limit", _U16.pack, _d_record_size_limit),
        (E.EARLY_DATA, "early_data", _e_empty, _d_empty),
        (E.SUPPORTED_VERSIONS, "supported_versions", _e_versions, _d_versions),
        (E.COOKIE, "cookie", vec16, _d_cookie),
        (
            E.PSK_KEY_EXCHANGE_MODES,
            "psk_key_exchange_modes",
            lambda v: vec8(bytes(v)),
            _d_psk_modes,
        ),
        (
            E.CERTIFICATE_AUTHORITIES,
            "certificate_authorities",
            _e_certificate_authorities,
            _d_certificate_authorities,
        ),
        (E.POST_HANDSHAKE_AUTH, "post_handshake_auth", _e_empty, _d_empty),
        (E.SIGNATURE_ALGORITHMS_CERT, "signature_algorithms_cert", _e_uint16_list, _d_uint16_list),
        (E.KEY_SHARE, "key_share", _e_client_shares, _d_client_shares),
        (E.CONNECTION_ID, "connection_id", vec8, _d_connection_id),
        (E.PRE_SHARED_KEY, "pre_shared_key", _e_offered_psks, _d_offered_psks),
    ],
)

SH_EXTENSIONS = ExtensionTable(
    "SH",
    [
        (E.SUPPORTED_VERSIONS, "supported_versions", _U16.pack, _d_uint16),
        (E.KEY_SHARE, "key_share", _e_key_share_entry, _d_key_share_entry),
        (E.PRE_SHARED_KEY, "pre_shared_key", _U16.pack, _d_uint16),
        (E.CONNECTION_ID, "connection_id", vec8, _d_connection_id),
    ],
)

HRR_EXTENSIONS = ExtensionTable(
    "HRR",
    [
        (E.SUPPORTED_VERSIONS, "supported_versions", _U16.pack, _d_uint16),
        (E.KEY_SHARE, "selected_group", _U16.pack, _d_uint16),
        (E.COOKIE, "cookie", vec16, _d_cookie),
    ],
)

EE_EXTENSIONS = ExtensionTable(
    "EE",
    [
        (_SN, "server_name", _e_empty, _d_empty),
        (_SG, "supported_groups", _e_uint16_list, _d_uint16_list),
        (_ALPN, "alpn_protocol", _e_alpn_selected, _d_alpn_selected),
        (E.RECORD_SIZE_LIMIT, "record_size_limit", _U16.pack, _d_record_size_limit),
        (E.EARLY_DATA, "early_data", _e_empty, _d_empty),
    ],
)

CR_EXTENSIONS = ExtensionTable(
    "CR",
    [
        (_SA, "signature_algorithms", _e_uint16_list, _d_uint16_list),
        (
            E.CERTIFICATE_AUTHORITIES,
            "certificate_authorities",
            _e_certificate_authorities,
            _d_certificate_authorities,
        ),
        (E.SIGNATURE_ALGORITHMS_CERT, "signature_algorithms_cert", _e_uint16_list, _d_uint16_list),
    ],
)

NST_EXTENSIONS = ExtensionTable(
    "NST", [(E.EARLY_DATA, "max_early_data_size", _U32.pack, _d_uint32)]
)

CT_EXTENSIONS = ExtensionTable("CT", [])


# --- the extension block -------------------------------------------------------------------


def decode_extensions(
    r: Reader, table: ExtensionTable, message: Any
) -> tuple[list[tuple[int, bytes]], list[int]]:
    """Parse `Extension extensions<0..2^16-1>` for the message `table` describes, setting
    each extension it parses on its field of `message` (None when the table has none).

    Returns (unparsed extensions in wire order, wire order of all types).
    """
    n = r.pull_length(2)
    data = r.data
    pos = r.pos
    end = r.pos = pos + n
    message_name = table.message
    by_type = table.by_type
    psk_last = message_name == "CH"
    unpack = _U16X2.unpack_from
    other: list[tuple[int, bytes]] = []
    order: list[int] = []
    seen: set[int] = set()
    while pos < end:
        if pos + 4 > end:
            raise DecodeError("truncated extension header")
        ext_type, n = unpack(data, pos)
        pos += 4
        if pos + n > end:
            raise DecodeError(f"extension {ext_type} overruns the extension block")
        if ext_type in seen:
            raise DecodeError(f"duplicate extension {ext_type}")  # RFC 9846 §4.2
        if psk_last and order and order[-1] == _PSK:
            raise IllegalParameter("pre_shared_key is not the last extension")  # §4.2.11
        seen.add(ext_type)
        order.append(ext_type)
        spec = by_type.get(ext_type)
        if spec is not None:
            fast = spec[2]
            value = fast(data, pos, pos + n) if fast is not None else None
            if value is None:  # no fast path, or not its plain case: the reference reads it
                ext = Reader(data, pos, pos + n)
                value = spec[1](ext)
                if ext.pos != ext.end:
                    ext.expect_end(f"extension {ext_type}")
            setattr(message, spec[0], value)
        else:
            allowed = ALLOWED_IN.get(ext_type)
            if allowed is not None and message_name not in allowed:
                # RFC 9846 §4.2: recognized, but not specified for this message
                raise IllegalParameter(f"extension {ext_type} is not allowed in {message_name}")
            other.append((ext_type, data[pos : pos + n]))
        pos += n
    return other, order


def encode_extensions(msg: Any, table: ExtensionTable, psk_last: bool = False) -> bytes:
    """The extension block of `msg`: field extensions, then `other_extensions`, ordered by
    `msg.extension_order` when set (types missing from it follow in canonical order).

    psk_last: force pre_shared_key to the end (a ClientHello whose pre_shared_key field
    is set; RFC 9846 §4.2.11).
    """
    order = msg.extension_order
    if order is None and not msg.other_extensions and not psk_last:
        # Our own messages: the field extensions in canonical order, joined as they come.
        return _extension_block(_field_extensions(msg, table))
    present = dict(_field_extensions(msg, table))
    for ext_type, data in msg.other_extensions:
        if ext_type in present:
            raise ValueError(f"extension {ext_type} given twice")
        present[ext_type] = data
    if order is None:
        keys = list(present)
    else:
        keys = [t for t in dict.fromkeys(order) if t in present]
        if len(keys) != len(present):
            listed = set(keys)
            keys += [t for t in present if t not in listed]
    if psk_last and keys[-1] != _PSK:
        keys.remove(_PSK)
        keys.append(_PSK)
    return _extension_block((t, present[t]) for t in keys)


def _field_extensions(msg: Any, table: ExtensionTable) -> Iterator[tuple[int, bytes]]:
    """(type, extension_data) of the fields of `msg` that are set, in canonical order."""
    for ext_type, name, enc, _ in table.entries:
        value = getattr(msg, name)
        if value is not None and value is not False:
            yield ext_type, enc(value)


def _extension_block(extensions: Iterable[tuple[int, bytes]]) -> bytes:
    """The `Extension extensions<0..2^16-1>` vector of these (type, data) (RFC 9846 §4.2)."""
    parts = []
    pack = _U16X2.pack
    for ext_type, data in extensions:
        if len(data) > 0xFFFF:
            raise ValueError(f"{len(data)} bytes do not fit a 16-bit length")
        parts.append(pack(ext_type, len(data)))
        parts.append(data)
    return vec16(b"".join(parts))
