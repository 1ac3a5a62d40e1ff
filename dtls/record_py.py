"""The DTLS 1.3 record layer in pure Python, over `cryptography`'s AEADs and ciphers.

The same API and the same bytes on the wire as `dtls.record` (the C hot path), for when the
C extension cannot be built or loaded (no compiler, PyPy) and for testing one against the
other. Per record through the Python API it is about 1.2-3.5x slower than the C path for
the AES suites (the most at small records) and 3.5-10x for ChaCha20-Poly1305, whose
record-number mask needs a new `cryptography` cipher object per record; a full handshake
is about 1.2x slower (bench/bench_providers.py).

Bad input from the network is normal here too: `RecordCipher.open` returns an `OpenError`
member instead of raising; a bad argument raises `ValueError`, a too-small output buffer
`BufferError`. The record types (`OpenError`, `OpenedRecord`, `RecordSpan`, `TrafficKeys`,
...) are defined here, without the C extension; `dtls.record` has equal ones.

Also here: `send_datagrams` / `receive_datagrams` over plain sendto/recvfrom, one system
call per datagram, for the front-ends when the C extension's sendmmsg/recvmmsg are missing.
"""

from __future__ import annotations

import errno
import hashlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from .errors import ConfigurationError
from .iana import CipherSuite, ContentType
from .keyschedule import Expand, hkdf_expand_label, suite_hash_name

Buffer = bytes | bytearray | memoryview
Address = tuple[Any, ...]

__all__ = [
    "PLAINTEXT_HEADER_LEN",
    "OpenError",
    "OpenedRecord",
    "OpenedSegments",
    "ReceivedDatagram",
    "RecordCipher",
    "RecordKind",
    "RecordSpan",
    "ReplayWindow",
    "TrafficKeys",
    "derive_traffic_keys",
    "next_traffic_secret",
    "receive_datagrams",
    "reconstruct_seq",
    "seal_plaintext",
    "send_datagrams",
    "single_plaintext_record",
    "split_datagram",
]

PLAINTEXT_HEADER_LEN = 13  # RFC 9147 §4: type, version, epoch, sequence_number, length
MAX_PLAINTEXT = 1 << 14  # RFC 9846 §5.1
MAX_INNER = MAX_PLAINTEXT + 1  # RFC 9846 §5.4: TLSInnerPlaintext
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256  # RFC 9846 §5.2
MAX_SEQ = (1 << 48) - 1  # RFC 9147 §4: 48-bit sequence numbers
MAX_CID = 255  # RFC 9146 §3: opaque cid<0..2^8-1>
_RUN_MAX_SPANS = 128  # records per datagram on `open_run`'s path (as csrc/batch.c)
IV_LENGTH = 12  # RFC 9846 §5.3
KEY_LENGTHS = {  # RFC 9846 Appendix B.4
    CipherSuite.TLS_AES_128_GCM_SHA256: 16,
    CipherSuite.TLS_AES_256_GCM_SHA384: 32,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: 32,
    CipherSuite.TLS_AES_128_CCM_SHA256: 16,
    CipherSuite.TLS_AES_128_CCM_8_SHA256: 16,
}
SUITES: tuple[CipherSuite, ...] = tuple(KEY_LENGTHS)

# unified header flags (RFC 9147 §4, Figure 3): 001CSLEE
_HDR_CID = 0x10
_HDR_SEQ16 = 0x08
_HDR_LENGTH = 0x04
_PLAINTEXT_TYPES = (21, 22, 26)  # §4.1: DTLSPlaintext alert, handshake, ack


class OpenError(IntEnum):
    """Why a record did not open (RFC 9147 §4.5.2: each is dropped and counted)."""

    MALFORMED = -1  # bad header, < 16 bytes of ciphertext, length beyond the datagram
    REPLAYED = -2  # duplicate, or behind the replay window (§4.5.1)
    AUTH = -3  # AEAD tag check failed, or no content type in the plaintext
    BUFFER = -4  # output buffer too small


class RecordKind(IntEnum):
    """The two record formats, told apart by the first byte (RFC 9147 §4.1)."""

    PLAINTEXT = 1
    CIPHERTEXT = 2


class RecordSpan(NamedTuple):
    """Where one record lies in a datagram, from its header alone (RFC 9147 §4); as in
    `dtls.record.RecordSpan`."""

    offset: int
    length: int
    kind: RecordKind
    first_byte: int
    epoch: int
    seq: int


class OpenedRecord(NamedTuple):
    """A deprotected record: its inner content type (RFC 9147 §4), full sequence number,
    and the content without the type and padding."""

    content_type: int
    seq: int  # the full, reconstructed sequence number (RFC 9147 §4.2.2)
    plaintext: bytes | memoryview  # a view when the record was opened in place


class OpenedSegments(NamedTuple):
    """A UDP_GRO buffer of one record per segment, opened in place by
    `RecordCipher.open_segments`: one entry per segment in each list, no Python object per
    record. Plaintext i is data[offsets[i] : offsets[i] + lengths[i]]; a segment that did
    not open has its OpenError value in `status`, its own offset, and zeros."""

    data: memoryview  # the buffer, plaintexts where the ciphertexts were
    opened: int  # how many segments opened
    status: list[int]  # 0, or the OpenError value
    content_types: list[int]
    seqs: list[int]  # full sequence numbers (RFC 9147 §4.2.2)
    offsets: list[int]
    lengths: list[int]

    def plaintexts(self) -> list[memoryview]:
        """The plaintexts as views of `data` (empty for a segment that did not open)."""
        data = self.data
        return [data[a : a + n] for a, n in zip(self.offsets, self.lengths, strict=True)]

    def records(self) -> list[OpenedRecord | OpenError]:
        """One OpenedRecord, or the OpenError, per segment (as `open_batch`)."""
        fields = zip(self.status, self.content_types, self.seqs, self.plaintexts(), strict=True)
        return [OpenError(s) if s else OpenedRecord(t, q, p) for s, t, q, p in fields]



class OpenedRun(NamedTuple):
    """The datagrams `RecordCipher.open_run` took, their records opened in place in one
    buffer: per record, as `OpenedSegments` (offsets into `data`)."""

    data: memoryview
    opened: int  # records that opened
    status: list[int]
    content_types: list[int]
    seqs: list[int]
    offsets: list[int]
    lengths: list[int]
    datagrams: int  # datagrams taken whole
    rest: int  # where the records not taken of the next datagram begin (0: none taken)
    opened_bytes: int  # the length of the records that opened

@dataclass(frozen=True, repr=False)
class TrafficKeys:
    """The record protection keys derived from one traffic secret."""

    key: bytes  # [sender]_write_key
    iv: bytes  # [sender]_write_iv
    sn_key: bytes  # [sender]_sn_key, for record number encryption

    def __repr__(self) -> str:  # no key material in logs
        return (
            f"TrafficKeys(key=<{len(self.key)} bytes>, iv=<{len(self.iv)} bytes>, "
            f"sn_key=<{len(self.sn_key)} bytes>)"
        )


# ---- keys (RFC 9846 §7.2, §7.3; RFC 9147 §4.2.3) ----


def _key_length(suite: int) -> int:
    try:
        return KEY_LENGTHS[suite]  # type: ignore[index]
    except KeyError:
        raise ConfigurationError(f"unsupported cipher suite 0x{suite:04x}") from None


def derive_traffic_keys(suite: int, secret: bytes) -> TrafficKeys:
    """key and iv (RFC 9846 §7.3) and sn_key (RFC 9147 §4.2.3) from a traffic secret."""
    key_len = _key_length(suite)
    hash_name = suite_hash_name(suite)
    return TrafficKeys(
        key=hkdf_expand_label(hash_name, secret, b"key", b"", key_len),
        iv=hkdf_expand_label(hash_name, secret, b"iv", b"", IV_LENGTH),
        sn_key=hkdf_expand_label(hash_name, secret, b"sn", b"", key_len),
    )


def next_traffic_secret(suite: int, secret: bytes, *, expand: Expand | None = None) -> bytes:
    """application_traffic_secret_N+1 (RFC 9846 §7.2, "traffic upd"), on `expand`."""
    _key_length(suite)
    hash_name = suite_hash_name(suite)
    size = hashlib.new(hash_name).digest_size
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", size, expand=expand)


# ---- DTLSPlaintext and splitting datagrams (RFC 9147 §4, §4.1) ----


def _header_len(first: int, cid_len: int) -> int:
    return (
        1
        + (cid_len if first & _HDR_CID else 0)
        + (2 if first & _HDR_SEQ16 else 1)
        + (2 if first & _HDR_LENGTH else 0)
    )


def _parse_unified(rec: Any, avail: int, cid_len: int) -> tuple[int, int] | None:
    """(header length, ciphertext length) of a unified header at rec[0:avail], or None
    when malformed. The C bit must agree with cid_len (§9); with L=0 the record takes the
    rest."""
    if avail < 1:
        return None
    first = rec[0]
    if first & 0xE0 != 0x20 or bool(first & _HDR_CID) != (cid_len > 0):
        return None
    hdr = _header_len(first, cid_len)
    if avail < hdr:
        return None
    if first & _HDR_LENGTH:
        length = rec[hdr - 2] << 8 | rec[hdr - 1]
        if length > avail - hdr:
            return None
        return hdr, length
    return hdr, avail - hdr


def split_datagram(data: Buffer, cid_len: int = 0) -> tuple[list[RecordSpan], int]:
    """The records of one datagram: (spans, bytes dropped). Parsing stops at the first
    malformed record: the rest of the datagram is dropped (§4.5.2)."""
    if not 0 <= cid_len <= MAX_CID:
        raise ValueError(f"split_datagram: invalid argument (cid_len {cid_len})")
    view = memoryview(data).cast("B") if type(data) is not bytes else data
    total = len(view)
    spans: list[RecordSpan] = []
    pos = 0
    while pos < total:
        avail = total - pos
        first = view[pos]
        if first in _PLAINTEXT_TYPES:
            if avail < PLAINTEXT_HEADER_LEN:
                break
            length = view[pos + 11] << 8 | view[pos + 12]
            if length > MAX_PLAINTEXT or length > avail - PLAINTEXT_HEADER_LEN:  # RFC 9846 §5.1
                break
            epoch = view[pos + 3] << 8 | view[pos + 4]
            seq = int.from_bytes(view[pos + 5 : pos + 11], "big")
            size = PLAINTEXT_HEADER_LEN + length
            spans.append(RecordSpan(pos, size, RecordKind.PLAINTEXT, first, epoch, seq))
        elif first & 0xE0 == 0x20:
            parsed = _parse_unified(view[pos:], avail, cid_len)
            if parsed is None:
                break
            size = parsed[0] + parsed[1]
            spans.append(RecordSpan(pos, size, RecordKind.CIPHERTEXT, first, first & 3, 0))
        else:
            break  # §4.5.2: cannot be demultiplexed: discard the rest
        pos += size
    return spans, total - pos


def single_plaintext_record(data: Buffer) -> bool:
    """True if `data` is exactly one DTLSPlaintext record (RFC 9147 §4.1): a plaintext
    content type, and a length field (at most 2^14, RFC 9846 §5.1) that fills the datagram:
    the one span `split_datagram` would give."""
    n = len(data)
    return (
        n >= PLAINTEXT_HEADER_LEN
        and data[0] in _PLAINTEXT_TYPES
        and data[11] << 8 | data[12] == n - PLAINTEXT_HEADER_LEN <= MAX_PLAINTEXT
    )


def seal_plaintext(content_type: int, seq: int, payload: Buffer, epoch: int = 0) -> bytes:
    """One DTLSPlaintext record (RFC 9147 §4): a 13-byte header, then the payload."""
    n = len(memoryview(payload))
    if not (0 <= seq <= MAX_SEQ and n <= MAX_PLAINTEXT and 0 <= epoch <= 0xFFFF
            and 0 <= content_type <= 0xFF):  # fmt: skip
        raise ValueError("seal_plaintext: invalid argument")
    # legacy_record_version {254, 253}
    header = bytes((content_type, 254, 253)) + (epoch << 48 | seq).to_bytes(8, "big")
    return header + n.to_bytes(2, "big") + bytes(payload)


# ---- sequence numbers (RFC 9147 §4.2.2) and anti-replay (§4.5.1) ----


def reconstruct_seq(expected: int, low: int, bits: int) -> int:
    """The full sequence number closest to `expected` whose low `bits` bits (8 or 16) are
    `low` (RFC 9147 §4.2.2), kept within 0 .. 2^48-1 (cf. RFC 9000 Appendix A.3)."""
    if bits not in (8, 16):
        return low
    expected = min(expected, MAX_SEQ)
    win = 1 << bits
    hwin = win >> 1
    cand = (expected & ~(win - 1)) | (low & (win - 1))
    if cand + hwin <= expected and cand + win <= MAX_SEQ:
        return cand + win
    if cand > expected + hwin and cand >= win:
        return cand - win
    return cand


class ReplayWindow:
    """The sliding window of one epoch's received sequence numbers (RFC 9147 §4.5.1).

    Bit k of `_bits` stands for `_top - k`; the window holds the `size` numbers up to the
    highest marked one."""

    __slots__ = ("_any", "_bits", "_mask", "_size", "_top")

    def __init__(self, size: int = 64) -> None:
        if not 0 < size <= 65536:
            raise ValueError("the replay window holds 1 to 65536 records")
        self._size = (size + 63) // 64 * 64  # as the C window: a multiple of 64
        self._mask = (1 << self._size) - 1
        self._top = 0
        self._bits = 0
        self._any = False

    @property
    def size(self) -> int:
        """Width in records (the requested size rounded up to a multiple of 64)."""
        return self._size

    @property
    def next_seq(self) -> int:
        """The highest sequence number marked, plus one (0 when none is)."""
        return self._top + 1 if self._any else 0

    def check(self, seq: int) -> bool:
        """True when `seq` is new: not seen, and not behind the window."""
        if not self._any or seq > self._top:
            return True
        back = self._top - seq
        return back < self._size and not (self._bits >> back) & 1

    def mark(self, seq: int) -> None:
        """Record `seq` as received; only after the record deprotected (§4.5.1)."""
        if not self._any:
            self._any, self._top, self._bits = True, seq, 1
        elif seq > self._top:
            shift = seq - self._top
            self._bits = 1 if shift >= self._size else (self._bits << shift | 1) & self._mask
            self._top = seq
        elif self._top - seq < self._size:
            self._bits |= 1 << (self._top - seq)

    def reset(self) -> None:
        self._any, self._top, self._bits = False, 0, 0

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self._size}, next_seq={self.next_seq})"


# ---- record protection (RFC 9147 §4, §4.2.3) ----


_new_opened = partial(tuple.__new__, OpenedRecord)


def _aead(suite: int, key: bytes) -> AESGCM | AESCCM | ChaCha20Poly1305:
    if suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256:
        return ChaCha20Poly1305(key)
    if suite == CipherSuite.TLS_AES_128_CCM_SHA256:
        return AESCCM(key, 16)
    if suite == CipherSuite.TLS_AES_128_CCM_8_SHA256:
        return AESCCM(key, 8)
    return AESGCM(key)


def _address(buf: Any) -> tuple[int, int] | None:
    """(address, length) of a writable contiguous buffer's memory, else None: to refuse
    overlapping arguments as the C layer does."""
    try:
        import ctypes

        view = memoryview(buf)
        if view.readonly or not view.c_contiguous or view.nbytes == 0:
            return None
        return ctypes.addressof(ctypes.c_char.from_buffer(view.cast("B"))), view.nbytes
    except (ImportError, TypeError, ValueError):
        return None


class RecordCipher:
    """The record protection of one epoch in one direction (RFC 9147 §4.2.3), as
    `dtls.record.RecordCipher`: the AEAD and the record-number cipher are keyed once."""

    __slots__ = ("_aead", "_ecb", "_iv", "_sn_key", "suite", "tag_len")

    def __init__(self, suite: int, keys: TrafficKeys) -> None:
        key_len = _key_length(suite)
        if len(keys.key) != key_len or len(keys.iv) != IV_LENGTH or len(keys.sn_key) != key_len:
            raise ValueError("key, iv or sn_key has the wrong length for the cipher suite")
        self.suite = suite
        self.tag_len = 8 if suite == CipherSuite.TLS_AES_128_CCM_8_SHA256 else 16
        self._aead = _aead(suite, bytes(keys.key))
        self._iv = int.from_bytes(keys.iv, "big")
        self._sn_key = bytes(keys.sn_key)
        # AES-ECB has no state between blocks: one encryptor serves every record
        self._ecb = (
            None if suite == CipherSuite.TLS_CHACHA20_POLY1305_SHA256
            else Cipher(algorithms.AES(self._sn_key), modes.ECB()).encryptor()
        )  # fmt: skip

    @classmethod
    def from_secret(cls, suite: int, secret: bytes) -> RecordCipher:
        return cls(suite, derive_traffic_keys(suite, secret))

    def __repr__(self) -> str:
        return f"RecordCipher(suite=0x{self.suite:04x})"

    def mask(self, sample: Buffer) -> bytes:
        """The 16-byte record-number mask for a ciphertext sample (RFC 9147 §4.2.3):
        AES-ECB of the first 16 bytes, or ChaCha20 with counter || nonce = those bytes
        (RFC 9001 §5.4.3, §5.4.4; `cryptography` takes the 16 bytes as they are)."""
        head = sample[:16] if type(sample) is bytes else bytes(memoryview(sample)[:16])
        if len(head) < 16:
            raise ValueError("mask: the sample is 16 bytes")
        if self._ecb is not None:
            return self._ecb.update(head)
        # a cipher object per record: `cryptography` fixes the nonce when it is made
        keystream = Cipher(algorithms.ChaCha20(self._sn_key, head), None).encryptor()
        return keystream.update(bytes(16))

    def _nonce(self, seq: int) -> bytes:
        # RFC 9846 §5.3 with the full 48-bit sequence number (RFC 9147 §4.2.2), left-padded
        # to the iv's length, XOR the static iv
        return (self._iv ^ seq).to_bytes(IV_LENGTH, "big")

    def _inner_len(self, payload_len: int, padding: int) -> int:
        """The DTLSInnerPlaintext length; padding raised so the ciphertext holds a 16-byte
        sample (§4.2.3). 0 when over the RFC 9846 §5.4 limit."""
        if payload_len > MAX_PLAINTEXT or not 0 <= padding <= MAX_INNER:
            return 0
        inner = max(payload_len + 1 + padding, 16 - self.tag_len)
        return inner if inner <= MAX_INNER else 0

    def sealed_len(
        self,
        payload_len: int,
        *,
        cid_len: int | None = None,
        seq16: bool = True,
        with_length: bool = True,
        padding: int = 0,
    ) -> int:
        """The length of the record `seal` makes for a payload of this size."""
        cid_len = cid_len or 0
        inner = self._inner_len(payload_len, padding)
        if inner == 0 or not 0 <= cid_len <= MAX_CID:
            raise ValueError("payload or padding too long for one record")
        return 1 + cid_len + (2 if seq16 else 1) + (2 if with_length else 0) + inner + self.tag_len

    def _header(
        self, epoch: int, seq: int, content_type: int, payload_len: int, cid: bytes | None,
        seq16: bool, with_length: bool, padding: int,
    ) -> tuple[bytearray, int]:  # fmt: skip
        """The unified header with the unmasked number, and the padding to use."""
        cid = bytes(cid) if cid else b""
        inner = self._inner_len(payload_len, padding)
        if (
            inner == 0
            or not 0 <= seq <= MAX_SEQ
            or not 0 < content_type <= 0xFF
            or len(cid) > MAX_CID
            or epoch < 0
        ):
            raise ValueError("seal: invalid argument")
        first = 0x20 | (_HDR_CID if cid else 0) | (epoch & 3)
        header = bytearray((first,))
        header += cid
        if seq16:
            header[0] |= _HDR_SEQ16
            header += (seq & 0xFFFF).to_bytes(2, "big")
        else:
            header.append(seq & 0xFF)
        if with_length:
            header[0] |= _HDR_LENGTH
            header += (inner + self.tag_len).to_bytes(2, "big")
        return header, inner - 1 - payload_len

    def _protect(
        self, header: bytearray, seq: int, content_type: int, payload: Buffer, padding: int,
        seq16: bool,
    ) -> bytes:  # fmt: skip
        """AEAD-seal DTLSInnerPlaintext under the header (RFC 9147 §4: the additional data
        is the header before record number encryption), then mask the number (§4.2.3)."""
        inner = bytes(payload) + bytes((content_type,)) + bytes(padding)
        ciphertext = self._aead.encrypt(self._nonce(seq), inner, bytes(header))
        mask = self.mask(ciphertext)
        at = len(header) - (2 if header[0] & _HDR_LENGTH else 0) - (2 if seq16 else 1)
        header[at] ^= mask[0]
        if seq16:
            header[at + 1] ^= mask[1]
        return ciphertext

    def seal(
        self,
        epoch: int,
        seq: int,
        content_type: int,
        payload: Buffer,
        *,
        cid: bytes | None = None,
        seq16: bool = True,
        with_length: bool = True,
        padding: int = 0,
    ) -> bytes:
        """One DTLSCiphertext record (RFC 9147 §4), as `dtls.record.RecordCipher.seal`."""
        header, padding = self._header(
            epoch, seq, content_type, len(memoryview(payload)), cid, seq16, with_length, padding
        )
        ciphertext = self._protect(header, seq, content_type, payload, padding, seq16)
        return bytes(header) + ciphertext

    def seal_into(
        self,
        out: bytearray | memoryview,
        offset: int,
        epoch: int,
        seq: int,
        content_type: int,
        payload: Buffer,
        *,
        cid: bytes | None = None,
        seq16: bool = True,
        with_length: bool = True,
        padding: int = 0,
    ) -> int:
        """`seal` into a writable buffer at `offset`; returns the bytes written. The payload
        may already lie where the ciphertext goes (offset + header length)."""
        dest = memoryview(out)
        if dest.readonly:
            raise BufferError("seal_into: the output buffer is read-only")
        dest = dest.cast("B")
        if not 0 <= offset <= len(dest):
            raise ValueError("offset outside the output buffer")
        n_payload = len(memoryview(payload))
        header, padding = self._header(
            epoch, seq, content_type, n_payload, cid, seq16, with_length, padding
        )
        total = len(header) + (n_payload + 1 + padding) + self.tag_len
        if len(dest) - offset < total:
            raise BufferError("seal_into: the output buffer is too small")
        if n_payload and type(payload) is not bytes:
            # as the C layer: the payload is where the ciphertext goes, or outside the record
            src, dst = _address(payload), _address(dest[offset : offset + total])
            if (
                src is not None
                and dst is not None
                and src[0] != dst[0] + len(header)
                and src[0] < dst[0] + dst[1]
                and dst[0] < src[0] + src[1]
            ):
                raise ValueError("seal_into: the payload overlaps the record")
        ciphertext = self._protect(header, seq, content_type, payload, padding, seq16)
        dest[offset : offset + len(header)] = header
        dest[offset + len(header) : offset + total] = ciphertext
        return total

    def open(
        self,
        record: Buffer,
        window: ReplayWindow | None = None,
        *,
        cid_len: int = 0,
        next_seq: int = 0,
    ) -> OpenedRecord | OpenError:
        """Deprotect one DTLSCiphertext record (RFC 9147 §4.2.2, §4.2.3, §4.5.1), as
        `dtls.record.RecordCipher.open`: a bytearray or writable memoryview is opened in
        place (the plaintext is a view into it; on failure its ciphertext is zeroed), any
        other record into new `bytes`."""
        if not 0 <= cid_len <= MAX_CID:
            raise ValueError(f"open: invalid argument (cid_len {cid_len})")
        in_place = type(record) is bytearray or (
            type(record) is memoryview and not record.readonly and record.itemsize == 1
        )
        view = memoryview(record)
        if view.format != "B":
            view = view.cast("B")
        parsed = _parse_unified(view, len(view), cid_len)
        if parsed is None:
            return OpenError.MALFORMED
        hdr, ct_len = parsed
        # §4.2.3: at least 16 bytes for the sample; RFC 9846 §5.2: at most 2^14 + 256
        if not 16 <= ct_len <= MAX_CIPHERTEXT:
            return OpenError.MALFORMED
        ciphertext = view[hdr : hdr + ct_len]
        # §4.2.3: unmask the record number, then §4.2.2: reconstruct it
        mask = self.mask(ciphertext)
        aad = bytearray(view[:hdr])
        at = 1 + (cid_len if aad[0] & _HDR_CID else 0)
        aad[at] ^= mask[0]
        expected = window.next_seq if window is not None else next_seq
        if aad[0] & _HDR_SEQ16:
            aad[at + 1] ^= mask[1]
            seq = reconstruct_seq(expected, aad[at] << 8 | aad[at + 1], 16)
        else:
            seq = reconstruct_seq(expected, aad[at], 8)
        pt_len = ct_len - self.tag_len
        try:
            plaintext = self._aead.decrypt(self._nonce(seq), ciphertext, bytes(aad))
        except InvalidTag:
            if in_place:
                view[hdr : hdr + pt_len] = bytes(pt_len)  # release no unauthenticated bytes
            return OpenError.AUTH
        # RFC 9846 §5.4: the content type is the last non-zero byte
        end = pt_len if pt_len and plaintext[-1] else len(plaintext.rstrip(b"\x00"))
        if in_place:
            view[hdr : hdr + pt_len] = plaintext
        if end == 0:
            return OpenError.AUTH
        # §4.5.1: duplicates are rejected after deprotection; the window moves only now
        if window is not None:
            if not window.check(seq):
                return OpenError.REPLAYED
            window.mark(seq)
        out = view[hdr : hdr + end - 1] if in_place else plaintext[: end - 1]
        return _new_opened((plaintext[end - 1], seq, out))

    def application_sender(self, epoch: int, cid: bytes | None = None) -> ApplicationSender:
        """Application data of `epoch` sealed one record per call, as
        `dtls.record.RecordCipher.application_sender`."""
        return ApplicationSender(self, epoch, cid)

    def application_receiver(
        self, window: ReplayWindow, epoch_bits: int, cid: bytes | None = None
    ) -> ApplicationReceiver:
        """As `dtls.record.RecordCipher.application_receiver`."""
        return ApplicationReceiver(self, window, epoch_bits, cid)

    def seal_batch(
        self,
        epoch: int,
        items: Sequence[tuple[int, int, Buffer]],
        *,
        cid: bytes | None = None,
        seq16: bool = True,
        with_length: bool = True,
        padding: int = 0,
    ) -> list[bytes]:
        """`seal` for many (seq, content_type, payload) items of one epoch."""
        if items:
            self.sealed_len(0, cid_len=len(cid) if cid else 0, padding=padding)
        sealed = []
        for i, (seq, content_type, payload) in enumerate(items):
            try:
                sealed.append(self.seal(epoch, seq, content_type, payload, cid=cid, seq16=seq16,
                                        with_length=with_length, padding=padding))  # fmt: skip
            except ValueError:
                raise ValueError(f"seal_batch: item {i} could not be sealed") from None
        return sealed

    def seal_run(
        self,
        epoch: int,
        seq: int,
        content_type: int,
        payloads: Sequence[Buffer],
        *,
        cid: bytes | None = None,
        seq16: bool = True,
        with_length: bool = True,
        padding: int = 0,
    ) -> list[bytes]:
        """`seal_batch` of payloads of one content type with the sequence numbers seq,
        seq + 1, ..."""
        items = [(seq + i, content_type, payload) for i, payload in enumerate(payloads)]
        return self.seal_batch(epoch, items, cid=cid, seq16=seq16, with_length=with_length,
                               padding=padding)  # fmt: skip

    def open_batch(
        self,
        records: Sequence[Buffer],
        window: ReplayWindow | None = None,
        *,
        cid_len: int = 0,
    ) -> list[OpenedRecord | OpenError]:
        """`open` for many records of this epoch, in order. Without a window each sequence
        number is reconstructed against the records before it. The inputs are left as
        they were."""
        result: list[OpenedRecord | OpenError] = []
        next_seq = 0
        for record in records:
            one = self.open(bytearray(record), window, cid_len=cid_len, next_seq=next_seq)
            if type(one) is OpenedRecord:
                next_seq = max(next_seq, one.seq + 1)
            result.append(one)
        return result

    def seal_segments(
        self,
        epoch: int,
        seq: int,
        content_type: int,
        data: Buffer,
        payload_len: int,
        out: bytearray | memoryview | None = None,
        *,
        cid: bytes | None = None,
        seq16: bool = True,
        with_length: bool = True,
        padding: int = 0,
    ) -> tuple[memoryview, int]:
        """As `dtls.record.RecordCipher.seal_segments` (records at a fixed stride for UDP
        GSO), a `seal_into` per record."""
        if payload_len <= 0:
            raise ValueError("seal_segments: payload_len must be 1 .. 2**14 (with the padding)")
        cid_len = len(cid) if cid else 0
        stride = self.sealed_len(payload_len, cid_len=cid_len, seq16=seq16,
                                 with_length=with_length, padding=padding)  # fmt: skip
        src = memoryview(data)
        if src.format != "B":
            src = src.cast("B")
        count = -(-len(src) // payload_len)
        if count and not 0 <= seq <= MAX_SEQ - count + 1:  # RFC 9147 §4: 48-bit numbers
            raise ValueError("seal_segments: sequence numbers beyond 2**48 - 1")
        last = len(src) - (count - 1) * payload_len if count else 0
        total = (count - 1) * stride + self.sealed_len(
            last, cid_len=cid_len, seq16=seq16, with_length=with_length, padding=padding
        ) if count else 0  # fmt: skip
        dest = memoryview(bytearray(count * stride) if out is None else out)
        if dest.readonly:
            raise BufferError("seal_segments: the output buffer is read-only")
        if dest.format != "B":
            dest = dest.cast("B")
        if len(dest) < total:
            raise BufferError("seal_segments: the output buffer is too small")
        s, d = _address(src), _address(dest[:total])
        if s is not None and d is not None and s[0] < d[0] + d[1] and d[0] < s[0] + s[1]:
            raise ValueError("seal_segments: the data overlaps the output")
        for i in range(count):
            self.seal_into(dest, i * stride, epoch, seq + i, content_type,
                           src[i * payload_len : (i + 1) * payload_len], cid=cid, seq16=seq16,
                           with_length=with_length, padding=padding)  # fmt: skip
        return dest[:total], stride

    def open_segments(
        self,
        data: Buffer,
        segment_size: int,
        window: ReplayWindow | None = None,
        *,
        cid_len: int = 0,
        next_seq: int = 0,
    ) -> OpenedSegments:
        """As `dtls.record.RecordCipher.open_segments` (a UDP_GRO buffer, one record per
        segment), an `open` per segment; a segment that is not exactly one DTLSCiphertext
        record is MALFORMED and left as it was."""
        if not 0 <= cid_len <= MAX_CID or segment_size < 0:
            raise ValueError("open_segments: invalid argument")
        if type(data) is bytearray or (type(data) is memoryview and not data.readonly):
            view = memoryview(data)
        else:
            view = memoryview(bytearray(data))
        if view.format != "B":
            view = view.cast("B")
        size = len(view)
        seg = segment_size if 0 < segment_size < size else size
        out = OpenedSegments(view, 0, [], [], [], [], [])
        opened = 0
        for off in range(0, size, max(seg, 1)):
            rec = view[off : off + seg]
            spans, dropped = split_datagram(rec, cid_len)
            one: OpenedRecord | OpenError = OpenError.MALFORMED
            if len(spans) == 1 and not dropped and spans[0].kind == RecordKind.CIPHERTEXT:
                one = self.open(rec, window, cid_len=cid_len, next_seq=next_seq)
            if isinstance(one, OpenError):  # untouched if MALFORMED, zeroed if AUTH
                entry = (int(one), 0, 0, off, 0)
            else:  # opened in place: the plaintext follows the header
                next_seq = max(next_seq, one.seq + 1)
                opened += 1
                hdr = _header_len(rec[0], cid_len)
                entry = (0, one.content_type, one.seq, off + hdr, len(one.plaintext))
            for column, value in zip(out[2:], entry, strict=True):
                column.append(value)
        return out._replace(opened=opened)


    def open_run(
        self,
        data: bytearray | memoryview,
        lengths: Sequence[int],
        window: ReplayWindow,
        *,
        epoch_bits: int,
        cid: bytes | None = None,
        content_type: int = ContentType.APPLICATION_DATA,
        max_plaintext: int = MAX_PLAINTEXT,
    ) -> OpenedRun:
        """As `dtls.record.RecordCipher.open_run` (the engine's receive path after the
        handshake), an `open` per record, in place in `data`."""
        view = memoryview(data)
        if view.readonly:
            raise BufferError("open_run: the buffer is read-only")
        if view.format != "B":
            view = view.cast("B")
        if sum(lengths) > len(view):
            raise ValueError("open_run: invalid argument")
        columns: tuple[list[int], list[int], list[int], list[int], list[int]] = (
            [], [], [], [], []
        )
        cid_len = len(cid) if cid else 0
        # 001C..EE: C=1 with our CID when one is in use, else C=0 (RFC 9147 §9)
        want = 0x20 | (0x10 if cid_len else 0) | epoch_bits
        opened = pos = taken = opened_bytes = 0
        for size in lengths:
            spans, dropped = split_datagram(view[pos : pos + size], cid_len)
            if not spans or dropped or len(spans) > _RUN_MAX_SPANS or any(
                span.kind != RecordKind.CIPHERTEXT
                or view[pos + span.offset] & 0xF3 != want
                or view[pos + span.offset + 1 : pos + span.offset + 1 + cid_len] != (cid or b"")
                for span in spans
            ):
                break  # not only records of this epoch and CID (RFC 9147 §4.1)
            for k, span in enumerate(spans):
                at = pos + span.offset
                rec = view[at : at + span.length]
                one = self.open(rec, window, cid_len=cid_len)
                if isinstance(one, OpenError):
                    entry = (int(one), 0, 0, at, 0)
                else:
                    opened += 1
                    opened_bytes += span.length
                    entry = (0, one.content_type, one.seq, at + _header_len(rec[0], cid_len),
                             len(one.plaintext))  # fmt: skip
                for column, value in zip(columns, entry, strict=True):
                    column.append(value)
                if entry[0] == 0 and (entry[1] != content_type or entry[4] > max_plaintext):
                    # the caller handles this record before what follows it
                    last = k + 1 == len(spans)
                    rest = 0 if last else spans[k + 1].offset
                    return OpenedRun(view, opened, *columns, taken + last, rest, opened_bytes)
            pos += size
            taken += 1
        return OpenedRun(view, opened, *columns, taken, 0, opened_bytes)

class ApplicationSender:
    """`RecordCipher.seal` of application_data in one epoch with one CID (S=1, L=1, no
    padding), as `dtls.record.ApplicationSender`."""

    __slots__ = ("_bytes", "_cid", "_cipher", "_epoch", "_records")

    def __init__(self, cipher: RecordCipher, epoch: int, cid: bytes | None) -> None:
        if epoch < 0 or (cid is not None and len(cid) > MAX_CID):
            raise ValueError("bad epoch or CID")
        self._cipher, self._epoch, self._cid = cipher, epoch, cid or None
        self._records = self._bytes = 0

    def seal(self, seq: int, payload: Buffer) -> bytes:
        record = self._cipher.seal(self._epoch, seq, ContentType.APPLICATION_DATA, payload,
                                   cid=self._cid)  # fmt: skip
        self._records += 1
        self._bytes += len(record)
        return record

    def seal_run(self, seq: int, payloads: list[Buffer]) -> list[bytes]:
        """`seal` of each payload, numbered from `seq`."""
        return [self.seal(seq + i, payload) for i, payload in enumerate(payloads)]

    def take_counts(self) -> tuple[int, int]:
        """Records and bytes sealed since the last call."""
        counts = self._records, self._bytes
        self._records = self._bytes = 0
        return counts


class ApplicationReceiver:
    """`RecordCipher.open` of a datagram that is one record of one application epoch,
    carrying one CID, as `dtls.record.ApplicationReceiver`."""

    __slots__ = ("_bits", "_bytes", "_cid", "_cipher", "_records", "_window")

    def __init__(
        self, cipher: RecordCipher, window: ReplayWindow, epoch_bits: int, cid: bytes | None
    ) -> None:
        if not 0 <= epoch_bits <= 3 or (cid is not None and len(cid) > MAX_CID):
            raise ValueError("bad epoch bits or CID")
        self._cipher, self._window, self._bits, self._cid = cipher, window, epoch_bits, cid or b""
        self._records = self._bytes = 0

    def open(
        self, datagram: Buffer, max_plaintext: int
    ) -> bytes | OpenedRecord | OpenError | None:
        view = memoryview(datagram)
        if view.format != "B":
            view = view.cast("B")
        cid = self._cid
        size = len(view)
        if not size:
            return None
        first = view[0]
        # §4.1: 001CSLEE with our epoch bits, C exactly when a CID is in use (§9)
        if first & 0xE0 != 0x20 or first & 3 != self._bits or bool(first & _HDR_CID) != bool(cid):
            return None
        hdr = _header_len(first, len(cid))
        if size < hdr or view[1 : 1 + len(cid)] != cid:
            return None
        if first & _HDR_LENGTH and view[hdr - 2] << 8 | view[hdr - 1] != size - hdr:
            return None  # not one record filling the datagram
        if not 16 <= size - hdr <= MAX_CIPHERTEXT:
            return None  # malformed: the general path counts it
        result = self._cipher.open(bytes(view), self._window, cid_len=len(cid))
        if result.__class__ is not OpenedRecord:
            return None if result == OpenError.MALFORMED else result
        content_type, _, plaintext = result
        if content_type != ContentType.APPLICATION_DATA or len(plaintext) > max_plaintext:
            return result
        self._records += 1
        self._bytes += size
        return bytes(plaintext)

    def take_counts(self) -> tuple[int, int]:
        """Records and datagram bytes `open` returned as application data since the last
        call."""
        counts = self._records, self._bytes
        self._records = self._bytes = 0
        return counts


# ---- datagram I/O without the C extension: one system call per datagram ----


class ReceivedDatagram(NamedTuple):
    data: memoryview | bytes
    address: Address
    slab: int  # always -1 here: no buffer pool
    # With UDP GRO on (dtls.record.enable_gro), `data` may be several datagrams of one
    # sender back to back: all but the last this long. 0: one datagram (always here).
    segment_size: int = 0

    def datagrams(self) -> list[memoryview | bytes]:
        """The datagrams in `data`: itself, or its pieces (views) under UDP GRO."""
        data, step = self.data, self.segment_size
        if not step:
            return [data]
        view = memoryview(data)
        return [view[i : i + step] for i in range(0, len(view), step)]


_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def _socket(sock: int | socket.socket) -> tuple[socket.socket, bool]:
    """A socket object for `sock`, and whether it was made here (to be detached)."""
    if isinstance(sock, socket.socket):
        return sock, False
    return socket.socket(fileno=sock), True


def send_datagrams(
    sock_fd: int | socket.socket, datagrams: Sequence[tuple[Buffer, Address]]
) -> int:
    """As `dtls.record.send_datagrams`, with sendto: how many were sent, fewer than given
    when a non-blocking socket's buffer filled up."""
    sock, made = _socket(sock_fd)
    sent = 0
    try:
        for data, address in datagrams:
            try:
                sock.sendto(data, address)
            except BlockingIOError:
                break
            except OSError:
                if sent == 0:
                    raise
                break  # as sendmmsg: the count so far; the error comes back next time
            sent += 1
    finally:
        if made:
            sock.detach()
    return sent


def receive_datagrams(
    sock_fd: int | socket.socket,
    max_count: int = 32,
    pool: object = None,
    *,
    buffer_size: int = 65535,
    buffer: object = None,
) -> list[ReceivedDatagram]:
    """As `dtls.record.receive_datagrams`, with recvfrom: up to `max_count` datagrams as
    bytes, blocking (on a blocking socket) only for the first. `pool` and `buffer` are
    not used."""
    sock, made = _socket(sock_fd)
    out: list[ReceivedDatagram] = []
    try:
        while len(out) < max_count:
            try:
                data, address = sock.recvfrom(buffer_size, _DONTWAIT if out else 0)
            except BlockingIOError:
                break
            except OSError as exc:
                if out or exc.errno in _AGAIN:
                    break
                raise
            out.append(ReceivedDatagram(data, address, -1))
            if not _DONTWAIT and sock.gettimeout() != 0.0:
                break  # no MSG_DONTWAIT (Windows): a blocking socket gives one at a time
    finally:
        if made:
            sock.detach()
    return out
