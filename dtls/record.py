"""The DTLS 1.3 record layer's hot path (RFC 9147 §4), a thin layer over `dtls._native`.

Everything per byte happens in C; this module turns Python buffers into pointers and C
results into Python values. Bad input from the network is normal here: `RecordCipher.open`
returns an `OpenError` member instead of raising. Misuse by the caller (a bad argument)
raises `ValueError`, a too-small output buffer `BufferError`.

A `RecordCipher` or `ReplayWindow` belongs to one connection and must not be used by two
threads at once (the C calls release the GIL). `split_datagram`, `seal_plaintext`, the
socket helpers and `BufferPool` are safe to call from any thread.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import accumulate
from typing import Any

from . import _native, keyschedule, record_py
from ._native import ffi, lib
from .iana import CipherSuite, ContentType
from .record_py import (  # the definitions both record providers share
    MAX_PLAINTEXT,
    PLAINTEXT_HEADER_LEN,
    Address,
    Buffer,
    OpenedRecord,
    OpenedRun,
    OpenedSegments,
    OpenError,
    ReceivedDatagram,
    RecordKind,
    RecordSpan,
    TrafficKeys,
    _key_length,
)

__all__ = [
    "PLAINTEXT_HEADER_LEN",
    "Address",
    "BufferPool",
    "OpenError",
    "OpenedRecord",
    "OpenedSegments",
    "PoolStats",
    "ReceivedDatagram",
    "RecordCipher",
    "RecordKind",
    "RecordSpan",
    "ReplayWindow",
    "TrafficKeys",
    "derive_traffic_keys",
    "enable_gro",
    "gro_supported",
    "gso_supported",
    "hkdf_expand",
    "hkdf_extract",
    "key_stage",
    "next_traffic_secret",
    "receive_datagrams",
    "seal_plaintext",
    "send_datagrams",
    "send_segments",
    "split_datagram",
]

MAX_RECORD = 1 + 255 + 2 + 2 + (1 << 14) + 256  # largest unified header + RFC 9846 §5.2 limit

# cffi lookups hoisted out of the per-record paths
_NULL = ffi.NULL
_from_buffer = ffi.from_buffer
_cast = ffi.cast
_unpack: Callable[..., bytes] = ffi.unpack
_buffer = ffi.buffer
_new = ffi.new
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_seal = lib.dtls_seal
_seal_records = lib.dtls_seal_records
_seal_run = lib.dtls_seal_run
_open = lib.dtls_open
_open_in_place = lib.dtls_open_in_place
_open_records = lib.dtls_open_records
_seal_segments = lib.dtls_seal_segments
_open_segments = lib.dtls_open_segments
_open_run = lib.dtls_open_run
_unpack_ints: Callable[[Any, int], list[int]] = ffi.unpack  # of integer arrays: lists
_split = lib.dtls_split_datagram
_seal_plaintext = lib.dtls_seal_plaintext
_sealed_len = lib.dtls_sealed_len
_replay_check = lib.dtls_replay_check
_replay_mark = lib.dtls_replay_mark
_replay_next = lib.dtls_replay_next
_pool_acquire = lib.dtls_pool_acquire
_pool_release = lib.dtls_pool_release

_HDR_CID = lib.DTLS_HDR_CID
_HDR_SEQ16 = lib.DTLS_HDR_SEQ16
_HDR_LENGTH = lib.DTLS_HDR_LENGTH
_HDR_SEQ16_LENGTH = _HDR_SEQ16 | _HDR_LENGTH


_ERRORS = {e.value: e for e in OpenError}
_KINDS = {k.value: k for k in RecordKind}
_new_opened = partial(tuple.__new__, OpenedRecord)


def _check(rc: int, what: str) -> int:
    if rc >= 0:
        return rc
    if rc == lib.DTLS_ERR_BUFFER:
        raise BufferError(f"{what}: the output buffer is too small")
    if rc == lib.DTLS_ERR_CRYPTO:
        raise RuntimeError(f"{what}: libcrypto failed")
    raise ValueError(f"{what}: invalid argument (error {rc})")


def _open_error(rc: int) -> OpenError:
    """The OpenError for a dtls_open result; bad arguments and libcrypto failures raise."""
    error = _ERRORS.get(rc)
    if error is None:
        _check(rc, "open")
        raise AssertionError(rc)  # pragma: no cover - _check raised
    return error


def _seal_failed(rc: int) -> None:
    """Raises the error of a failed dtls_app_seal."""
    _check(rc, "seal")


def _address(state: Any) -> int:
    """The address of a C state, for the functions of csrc/py_app_record.c."""
    return int(_cast("uintptr_t", state))


# dtls_app_seal and dtls_app_open as functions bound to one state (csrc/py_app_record.c)
if lib.dtls_app_py_install() != 0:
    raise ImportError("dtls._native: the application-data functions could not be installed")
_app_sealer = _native.app_sealer
_app_opener = _native.app_opener


def _pointer(data: Buffer) -> Any:
    # bytes pass to `const uint8_t *` as they are; other buffers through from_buffer
    return data if type(data) is bytes else _from_buffer(data)


# ---- splitting datagrams (RFC 9147 §4.1, §4.2) ----

_SPAN_CAPACITY = 32
_CHUNK_BYTES = 1 << 16  # batch work per C call
_LARGE_RECORD = 4096  # from this average size on, batches go record by record
_SCRATCH_KEEP = 1 << 21  # per-thread scratch kept between calls, at most
_local = threading.local()


def _scratch(size: int) -> Any:
    """A per-thread buffer of at least `size` bytes, reused while the calls need no more
    than _SCRATCH_KEEP bytes (its contents are copied out before the call returns)."""
    buf = getattr(_local, "scratch", None)
    if buf is not None and len(buf) >= size:
        return buf
    buf = _alloc("char[]", size)
    if size <= _SCRATCH_KEEP:
        _local.scratch = buf
    return buf


def _split_scratch() -> tuple[Any, Any]:
    try:
        return _local.split  # type: ignore[no-any-return]
    except AttributeError:
        _local.split = (_new("dtls_record_span[]", _SPAN_CAPACITY), _new("size_t *"))
        return _local.split  # type: ignore[no-any-return]


def split_datagram(data: Buffer, cid_len: int = 0) -> tuple[list[RecordSpan], int]:
    """The records of one datagram, without copying: (spans, bytes dropped).

    `cid_len` is the length of the connection ID this endpoint receives (0: none); a
    ciphertext record whose C bit disagrees with it is malformed (RFC 9147 §9). Parsing
    stops at the first malformed record: the rest of the datagram is dropped (§4.5.2).
    """
    spans_c, dropped = _split_scratch()
    ptr = _pointer(data)
    total = len(ptr)
    spans: list[RecordSpan] = []
    base = 0
    while True:
        n = _split(ptr, total - base, cid_len, spans_c, _SPAN_CAPACITY, dropped)
        _check(n, "split_datagram")
        for i in range(n):
            s = spans_c[i]
            spans.append(
                RecordSpan(base + s.offset, s.length, _KINDS[s.kind], s.first_byte, s.epoch, s.seq)
            )
        rest = dropped[0]
        if n < _SPAN_CAPACITY or rest == 0:
            return spans, rest
        base = total - rest  # out of span slots: carry on after the last record
        ptr = _from_buffer(data) + base


def seal_plaintext(content_type: int, seq: int, payload: Buffer, epoch: int = 0) -> bytes:
    """One DTLSPlaintext record (RFC 9147 §4): a 13-byte header, then the payload."""
    ptr = _pointer(payload)
    n = len(ptr)
    out = _alloc("char[]", n + PLAINTEXT_HEADER_LEN)
    _check(
        _seal_plaintext(content_type, epoch, seq, ptr, n, out, n + PLAINTEXT_HEADER_LEN),
        "seal_plaintext",
    )
    return _unpack(out, n + PLAINTEXT_HEADER_LEN)


# ---- keys (RFC 9846 §7.2, §7.3; RFC 9147 §4.2.3) ----

_HASHES = {"sha256": (lib.DTLS_HASH_SHA256, 32), "sha384": (lib.DTLS_HASH_SHA384, 48)}


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2) in libcrypto; `keyschedule.hkdf_extract`'s contract."""
    known = _HASHES.get(hash_name)
    if known is None:
        return keyschedule.hkdf_extract(hash_name, salt, ikm)
    hash_id, size = known
    out = _new("char[]", size)
    _check(lib.dtls_hkdf_extract(hash_id, salt, len(salt), ikm, len(ikm), out, size), "hkdf")
    return _unpack(out, size)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) in libcrypto; `keyschedule.hkdf_expand`'s contract."""
    known = _HASHES.get(hash_name)
    if known is None:
        return keyschedule.hkdf_expand(hash_name, prk, info, length)
    out = _new("char[]", length)
    _check(lib.dtls_hkdf_expand(known[0], prk, len(prk), info, len(info), out, length), "hkdf")
    return _unpack(out, length)


_STAGE_LABELS: dict[tuple[bytes, ...], bytes] = {}  # labels -> uint8 length || label, each


def key_stage(
    hash_name: str,
    prefix: bytes,
    prev: bytes | None,
    ikm: bytes,
    context: bytes,
    labels: tuple[bytes, ...],
    n_finished: int,
) -> list[bytes]:
    """One stage of the key schedule in one C call; `keyschedule.KeyStage`'s contract."""
    hash_id, size = _HASHES[hash_name]
    packed = _STAGE_LABELS.get(labels)
    if packed is None:
        packed = b"".join(bytes([len(label)]) + label for label in labels)
        if len(_STAGE_LABELS) < 16:
            _STAGE_LABELS[labels] = packed
    cap = (1 + len(labels) + n_finished) * size
    out = _new("char[]", cap)
    n = lib.dtls_key_stage(
        hash_id, prefix, len(prefix), prev if prev is not None else _NULL,
        len(prev) if prev is not None else 0, ikm, len(ikm), context, len(context),
        packed, len(packed), n_finished, out, cap,
    )  # fmt: skip
    _check(n, "key stage")
    raw = _unpack(out, cap)
    return [raw[i : i + size] for i in range(0, cap, size)]


def derive_traffic_keys(suite: int, secret: bytes) -> TrafficKeys:
    """key and iv (RFC 9846 §7.3) and sn_key (RFC 9147 §4.2.3) from a traffic secret."""
    key_len = _key_length(suite)
    key, iv, sn_key = _new("char[]", key_len), _new("char[12]"), _new("char[]", key_len)
    _check(lib.dtls_traffic_keys(suite, secret, len(secret), key, key_len, iv, sn_key), "keys")
    return TrafficKeys(_unpack(key, key_len), _unpack(iv, 12), _unpack(sn_key, key_len))


def next_traffic_secret(suite: int, secret: bytes) -> bytes:
    """application_traffic_secret_N+1 (RFC 9846 §7.2, "traffic upd")."""
    return record_py.next_traffic_secret(suite, secret, expand=hkdf_expand)


# ---- anti-replay (RFC 9147 §4.5.1) ----


class ReplayWindow:
    """The sliding window of one epoch's received sequence numbers (RFC 9147 §4.5.1)."""

    __slots__ = ("_size", "_w")

    def __init__(self, size: int = 64) -> None:
        if not 0 < size <= 65536:
            raise ValueError("the replay window holds 1 to 65536 records")
        w = lib.dtls_replay_new(size)
        if w == _NULL:
            raise MemoryError("dtls_replay_new")
        self._w = ffi.gc(w, lib.dtls_replay_free)
        self._size = (size + 63) // 64 * 64

    @property
    def size(self) -> int:
        """Width in records (the requested size rounded up to a multiple of 64)."""
        return self._size

    @property
    def next_seq(self) -> int:
        """The highest sequence number marked, plus one (0 when none is)."""
        return int(_replay_next(self._w))

    def check(self, seq: int) -> bool:
        """True when `seq` is new: not seen, and not behind the window."""
        return _replay_check(self._w, seq) == 0

    def mark(self, seq: int) -> None:
        """Record `seq` as received; only after the record deprotected (§4.5.1)."""
        _replay_mark(self._w, seq)

    def reset(self) -> None:
        lib.dtls_replay_reset(self._w)

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self._size}, next_seq={self.next_seq})"


# ---- record protection (RFC 9147 §4, §4.2.3) ----

_gc, _cipher_free, _cipher_from_secret = ffi.gc, lib.dtls_cipher_free, lib.dtls_cipher_from_secret
_CCM_8 = int(CipherSuite.TLS_AES_128_CCM_8_SHA256)
_object_new = object.__new__


def _flags(cid_len: int, seq16: bool, with_length: bool) -> int:
    return (
        (_HDR_CID if cid_len else 0)
        | (_HDR_SEQ16 if seq16 else 0)
        | (_HDR_LENGTH if with_length else 0)
    )


class RecordCipher:
    """The record protection of one epoch in one direction (RFC 9147 §4.2.3).

    The AEAD and record-number contexts are keyed once and reused for every record.
    Not for concurrent use from two threads.
    """

    __slots__ = ("_ctx", "suite", "tag_len")

    def __init__(self, suite: int, keys: TrafficKeys) -> None:
        _key_length(suite)
        ctx = lib.dtls_cipher_new(
            suite, keys.key, len(keys.key), keys.iv, len(keys.iv), keys.sn_key, len(keys.sn_key)
        )
        if ctx == _NULL:
            raise ValueError("key, iv or sn_key has the wrong length for the cipher suite")
        self._adopt(ctx, suite)

    def _adopt(self, ctx: Any, suite: int) -> None:
        self._ctx = _gc(ctx, _cipher_free)
        self.suite = suite
        # the AEAD tag: 8 bytes for CCM_8, else 16 (csrc/record.c dtls_cipher_new)
        self.tag_len = 8 if suite == _CCM_8 else 16

    @classmethod
    def from_secret(cls, suite: int, secret: bytes) -> RecordCipher:
        """The cipher of a traffic secret: key, iv and sn_key derived in C (RFC 9846 §7.3,
        RFC 9147 §4.2.3, §5.9), never held by Python."""
        ctx = _cipher_from_secret(suite, secret, len(secret))
        if ctx == _NULL:
            _key_length(suite)  # ConfigurationError for a suite we do not know
            raise ValueError("empty traffic secret")
        cipher = _object_new(cls)
        cipher._ctx = _gc(ctx, _cipher_free)  # `_adopt`, inline: one frame less per epoch
        cipher.suite = suite
        cipher.tag_len = 8 if suite == _CCM_8 else 16
        return cipher

    def __repr__(self) -> str:
        return f"RecordCipher(suite=0x{self.suite:04x})"

    def mask(self, sample: bytes) -> bytes:
        """The 16-byte record-number mask for a ciphertext sample (RFC 9147 §4.2.3)."""
        out = _new("uint8_t[16]")
        _check(lib.dtls_cipher_mask(self._ctx, sample, len(sample), out), "mask")
        return bytes(out)

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
        if cid_len:
            flags = _flags(cid_len, seq16, with_length)
        else:
            cid_len = 0
            flags = _HDR_SEQ16_LENGTH if seq16 and with_length else _flags(0, seq16, with_length)
        n = _sealed_len(self._ctx, flags, cid_len, payload_len, padding)
        if n == 0:
            raise ValueError("payload or padding too long for one record")
        return int(n)

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
        """One DTLSCiphertext record (RFC 9147 §4): unified header with the low bits of
        `epoch` and `seq`, the AEAD-protected DTLSInnerPlaintext, the masked record number.
        Padding is raised where needed to give 16 bytes of ciphertext (§4.2.3)."""
        ptr = payload if payload.__class__ is bytes else _from_buffer(payload)
        if cid:
            flags = _HDR_CID | (_HDR_SEQ16 if seq16 else 0) | (_HDR_LENGTH if with_length else 0)
            cid_len = len(cid)
        elif seq16 and with_length:
            flags, cid, cid_len = _HDR_SEQ16_LENGTH, _NULL, 0
        else:
            flags = (_HDR_SEQ16 if seq16 else 0) | (_HDR_LENGTH if with_length else 0)
            cid, cid_len = _NULL, 0
        try:
            out = _local.record
        except AttributeError:
            out = _local.record = _alloc("char[]", MAX_RECORD)
        n = _seal(self._ctx, epoch, seq, flags, cid, cid_len, content_type, ptr, len(ptr),
                  padding, out, MAX_RECORD)  # fmt: skip
        if n < 0:
            _check(n, "seal")
        return _unpack(out, n)

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
        may already lie where the ciphertext goes (offset + header length): sealing in place."""
        dest = _from_buffer(out, require_writable=True)
        if not 0 <= offset <= len(dest):
            raise ValueError("offset outside the output buffer")
        cid_len = len(cid) if cid else 0
        ptr = _pointer(payload)
        n = _seal(
            self._ctx,
            epoch,
            seq,
            _flags(cid_len, seq16, with_length),
            cid if cid_len else _NULL,
            cid_len,
            content_type,
            ptr,
            len(ptr),
            padding,
            dest + offset,
            len(dest) - offset,
        )
        return _check(n, "seal_into")

    def open(
        self,
        record: Buffer,
        window: ReplayWindow | None = None,
        *,
        cid_len: int = 0,
        next_seq: int = 0,
    ) -> OpenedRecord | OpenError:
        """Deprotect one DTLSCiphertext record (RFC 9147 §4.2.2, §4.2.3, §4.5.1).

        `record` is one record, e.g. memoryview(datagram)[span.offset:][:span.length].
        The sequence number is reconstructed against `window.next_seq` (or `next_seq`
        without a window); the window is checked and marked only once the record
        deprotected. Returns the record, or why it was dropped.

        The plaintext: a bytearray or writable memoryview `record` is opened in place
        and the plaintext is a view into it (its ciphertext is overwritten, also when
        opening fails); any other `record` (bytes, ...) is opened into new `bytes`.
        Later calls do not change either.
        """
        try:  # one per thread, not one per cipher (half of them only seal)
            res = _local.result
        except AttributeError:
            res = _local.result = _new("dtls_open_result *")
        w = _NULL if window is None else window._w
        if type(record) is bytearray or (
            type(record) is memoryview and not record.readonly and record.itemsize == 1
        ):
            buf = _from_buffer(record)
            rc = _open_in_place(self._ctx, w, next_seq, buf, len(buf), cid_len, res)
            if rc:
                return _open_error(rc)
            start = res.header_len
            view = memoryview(record) if type(record) is bytearray else record
            return _new_opened((res.content_type, res.seq, view[start : start + res.plaintext_len]))
        src = record if type(record) is bytes else _from_buffer(record)
        n = len(src)
        try:
            out = _local.record
        except AttributeError:
            out = _local.record = _alloc("char[]", MAX_RECORD)
        rc = _open(self._ctx, w, next_seq, src, n, cid_len, out, MAX_RECORD, res)
        if rc:
            return _open_error(rc)
        return _new_opened((res.content_type, res.seq, _unpack(out, res.plaintext_len)))

    def application_sender(self, epoch: int, cid: bytes | None = None) -> ApplicationSender:
        """Application data of `epoch` sealed one record per C call (RFC 9147 §4)."""
        return ApplicationSender(self, epoch, cid)

    def application_receiver(
        self, window: ReplayWindow, epoch_bits: int, cid: bytes | None = None
    ) -> ApplicationReceiver:
        """Datagrams of one application-data record of this epoch opened in one C call."""
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
        """`seal` for many (seq, content_type, payload) items of one epoch: one C call per
        ~64 KB of payload (a chunk that stays in the CPU cache), or per record when the
        records are large."""
        if not items:
            return []
        seqs, types, payloads = zip(*items, strict=True)
        return self._seal_many(epoch, seqs, bytes(types), payloads, cid, seq16, with_length,
                               padding)  # fmt: skip

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
        seq + 1, ... (what a sender's queue is)."""
        if not payloads:
            return []
        seqs = range(seq, seq + len(payloads))  # dtls_seal_run: no array of numbers
        return self._seal_many(epoch, seqs, bytes([content_type]) * len(payloads), payloads,
                               cid, seq16, with_length, padding)  # fmt: skip

    def _seal_many(
        self,
        epoch: int,
        seqs: Sequence[int],
        types: bytes,
        payloads: Sequence[Buffer],
        cid: bytes | None,
        seq16: bool,
        with_length: bool,
        padding: int,
    ) -> list[bytes]:
        sizes = list(map(len, payloads))
        lens = array("I", sizes)
        cid_len = len(cid) if cid else 0
        flags = _flags(cid_len, seq16, with_length)
        overhead = _sealed_len(self._ctx, flags, cid_len, 0, padding)
        if overhead == 0:
            raise ValueError("padding too long for one record")
        if sum(sizes) >= _LARGE_RECORD * len(sizes):
            # large records: a copy into one buffer costs more than a call per record
            seal = self.seal
            return [
                seal(epoch, seq, ct, p, cid=cid, seq16=seq16, with_length=with_length,
                     padding=padding)
                for seq, ct, p in zip(seqs, types, payloads, strict=True)
            ]  # fmt: skip
        run = type(seqs) is range
        seqs_c: Any = None if run else _from_buffer("uint64_t[]", array("Q", seqs))
        lens_c = _from_buffer("uint32_t[]", lens)
        cid_ptr = cid if cid_len else _NULL
        sealed: list[bytes] = []
        for a, b in _chunks(sizes, _CHUNK_BYTES):
            n = b - a
            joined = b"".join(payloads[a:b])
            cap = len(joined) + n * overhead
            out = _scratch(cap)
            ends_c = _new("uint32_t[]", n)  # receives where each record ends
            if run:
                got = _seal_run(
                    self._ctx, epoch, seqs[a], flags, cid_ptr, cid_len, types[0], padding,
                    joined, len(joined), lens_c + a, n, out, cap, ends_c,
                )  # fmt: skip
            else:
                got = _seal_records(
                    self._ctx, epoch, flags, cid_ptr, cid_len, padding, seqs_c + a,
                    types[a:b], joined, len(joined), lens_c + a, n, out, cap, ends_c,
                )  # fmt: skip
            _check(got, "seal_batch")
            if got != n:
                raise ValueError(f"seal_batch: item {a + got} could not be sealed")
            ends = _unpack_ints(ends_c, n)
            starts = [0, *ends[:-1]]
            # one copy out, then a bytes per record
            data = _buffer(out, ends[-1]) if ends[-1] > 512 * n else _unpack(out, ends[-1])
            sealed += [data[a:b] for a, b in zip(starts, ends, strict=True)]  # no method-wrapper
        return sealed

    def open_batch(
        self,
        records: Sequence[Buffer],
        window: ReplayWindow | None = None,
        *,
        cid_len: int = 0,
    ) -> list[OpenedRecord | OpenError]:
        """`open` for many records of this epoch, in order: one C call per ~64 KB (or per
        record when they are large). Without a window each sequence number is
        reconstructed against the records before it.
        The records are copied into new buffers and opened there, in place: the plaintext
        views share those buffers and the inputs are left as they were."""
        if not records:
            return []
        w = window._w if window is not None else _NULL
        lens = list(map(len, records))
        result: list[OpenedRecord | OpenError] = []
        next_seq = 0
        if sum(lens) >= _LARGE_RECORD * len(lens):
            # large records: one call each, each into a new buffer (read-only views)
            open_ = self.open
            for record in records:
                one = open_(memoryview(record).toreadonly(), window, cid_len=cid_len,
                            next_seq=next_seq)  # fmt: skip
                if type(one) is OpenedRecord:
                    next_seq = max(next_seq, one.seq + 1)
                result.append(one)
            return result
        for a, b in _chunks(lens, _CHUNK_BYTES):
            n = b - a
            data = bytearray().join(records[a:b])
            seqs_c = _new("uint64_t[]", n)
            types_c = _new("uint8_t[]", n)
            starts_c = _new("uint32_t[]", n)
            sizes_c = _new("uint32_t[]", n)
            status_c = _new("int8_t[]", n)
            opened = _open_records(
                self._ctx, w, next_seq, cid_len, _from_buffer(data), len(data),
                _new("uint32_t[]", lens[a:b]), n, seqs_c, types_c, starts_c, sizes_c, status_c,
            )  # fmt: skip
            _check(opened, "open_batch")
            view = memoryview(data)
            starts = _unpack(starts_c, n)
            seqs = _unpack(seqs_c, n)
            ends = map(int.__add__, starts, _unpack(sizes_c, n))
            plaintexts = map(view.__getitem__, map(slice, starts, ends))
            chunk: list[OpenedRecord | OpenError] = list(
                map(_new_opened, zip(_unpack(types_c, n), seqs, plaintexts, strict=True))
            )
            if opened != n:
                for i, rc in enumerate(_unpack(status_c, n)):
                    if rc:
                        chunk[i] = _open_error(rc)
            if opened:
                next_seq = max(next_seq, max(seqs) + 1)
            result += chunk
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
        """Records for UDP GSO (UDP_SEGMENT) in one C call: `data` cut into `payload_len`-byte
        payloads (the last may be shorter), sealed as by `seal` with sequence numbers seq,
        seq + 1, ... and laid out at a fixed stride. Returns (records, segment_size): a view
        of `out` (or of a new bytearray) to pass as it is to
        `send_segments(sock, records, segment_size, address)`, one record per datagram.
        The next free sequence number is seq + ceil(len(data) / payload_len)."""
        cid_len = len(cid) if cid else 0
        flags = _flags(cid_len, seq16, with_length)
        ok = payload_len > 0 and padding >= 0
        stride = _sealed_len(self._ctx, flags, cid_len, payload_len, padding) if ok else 0
        if stride == 0:
            raise ValueError("seal_segments: payload_len must be 1 .. 2**14 (with the padding)")
        src = _pointer(data)
        if out is None:
            out = bytearray(-(-len(src) // payload_len) * stride)
        dest = _from_buffer(out, require_writable=True)
        n = _seal_segments(
            self._ctx, epoch, seq, flags, cid if cid_len else _NULL, cid_len, content_type,
            src, len(src), payload_len, padding, dest, len(dest), _NULL,
        )  # fmt: skip
        _check(n, "seal_segments")
        view = memoryview(out)
        return (view if view.format == "B" else view.cast("B"))[:n], stride

    def open_segments(
        self,
        data: Buffer,
        segment_size: int,
        window: ReplayWindow | None = None,
        *,
        cid_len: int = 0,
        next_seq: int = 0,
    ) -> OpenedSegments:
        """Open a UDP_GRO run (a `ReceivedDatagram`'s data and `segment_size`) in one C
        call: segments of `segment_size` bytes (the last may be shorter; 0 or more than the
        data: one segment), each one DTLSCiphertext record (RFC 9147 §4). The window and the number
        reconstruction (from `next_seq` without a window) move as in `open_batch`.

        A bytearray or writable memoryview is opened in place, other buffers in a copy.
        The result has one entry per segment in plain lists (no Python object per record;
        `.records()` makes `open_batch`'s list). A segment that is not exactly one
        DTLSCiphertext record is MALFORMED and left as it was, for the general path."""
        if type(data) is bytearray or (type(data) is memoryview and not data.readonly):
            view = memoryview(data)
        else:
            view = memoryview(bytearray(data))
        if view.format != "B":
            view = view.cast("B")
        size = len(view)
        if not 0 <= cid_len <= 255 or segment_size < 0:
            raise ValueError("open_segments: invalid argument")
        if size == 0:
            return OpenedSegments(view, 0, [], [], [], [], [])
        seg = segment_size if 0 < segment_size < size else size
        n = (size - 1) // seg + 1
        seqs_c, types_c, starts_c, sizes_c, status_c = _segment_arrays(n)
        opened = _open_segments(
            self._ctx, _NULL if window is None else window._w, next_seq, cid_len,
            _from_buffer(view), size, seg, n, seqs_c, types_c, starts_c, sizes_c, status_c,
        )  # fmt: skip
        _check(opened, "open_segments")
        status = [0] * n if opened == n else _unpack_ints(status_c, n)
        return OpenedSegments(
            view, opened, status, _unpack_ints(types_c, n), _unpack_ints(seqs_c, n),
            _unpack_ints(starts_c, n), _unpack_ints(sizes_c, n),
        )  # fmt: skip

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
        """The engine's receive path after the handshake, in one C call: `data` holds
        datagrams of these `lengths` back to back (writable: opened in place); the records
        of the leading ones that hold only DTLSCiphertext records (RFC 9147 §4.1) of the
        epoch with these low bits, carrying `cid` (C=1; None: C=0), are opened in order.
        The run stops before the first datagram that does not fit (left as it was), and
        after the first record that opened with another content type or a plaintext
        longer than `max_plaintext`. Offsets are into `data`."""
        view = memoryview(data)
        if view.readonly:
            raise BufferError("open_run: the buffer is read-only")
        if view.format != "B":
            view = view.cast("B")
        cid_len = len(cid) if cid else 0
        # records: at least 18 bytes (a 2-byte header, 16 of ciphertext: RFC 9147 §4.2.3)
        seqs_c, types_c, starts_c, sizes_c, status_c = _segment_arrays(len(view) // 18 + 1)
        progress = _new("uint32_t[4]")
        lens = _from_buffer("uint32_t[]", array("I", lengths))
        opened = _open_run(
            self._ctx, window._w, cid if cid_len else _NULL, cid_len, epoch_bits, content_type,
            max_plaintext, _from_buffer(view), len(view), lens, len(lengths), len(status_c),
            seqs_c, types_c, starts_c, sizes_c, status_c, progress,
        )  # fmt: skip
        _check(opened, "open_run")
        taken, k, opened_bytes, rest = progress
        status = [0] * k if opened == k else _unpack_ints(status_c, k)
        return OpenedRun(
            view, opened, status, _unpack_ints(types_c, k), _unpack_ints(seqs_c, k),
            _unpack_ints(starts_c, k), _unpack_ints(sizes_c, k), taken, rest, opened_bytes,
        )  # fmt: skip


class ApplicationSender:
    """`RecordCipher.seal` of application_data in one epoch with one CID (S=1, L=1, no
    padding: what `RecordLayer.seal` sends), one C call per record."""

    __slots__ = ("_s", "seal", "seal_run")

    # seal(seq, payload): the record with sequence number seq (RFC 9147 §4), sealed by one
    # C function straight into the new bytes object (csrc/py_app_record.c); seal_run(seq,
    # payloads): a list of them, numbered from seq, in one call
    seal: Callable[[int, Buffer], bytes]
    seal_run: Callable[[int, list[Buffer]], list[bytes]]

    def __init__(self, cipher: RecordCipher, epoch: int, cid: bytes | None) -> None:
        cid = cid or b""
        s = lib.dtls_app_sender_new(cipher._ctx, epoch, cid, len(cid))
        if s == _NULL:
            raise ValueError("bad epoch or CID")
        self._s = ffi.gc(s, lib.dtls_app_sender_free)
        # record length = payload length + overhead (header, content type, tag), at least
        # shortest (the padding that gives a 16-byte sample, RFC 9147 §4.2.3: CCM_8 only)
        overhead = cipher.sealed_len(16, cid_len=len(cid)) - 16
        shortest = cipher.sealed_len(0, cid_len=len(cid))
        # the C state borrows the cipher's context: the function holds both
        self.seal, self.seal_run = _app_sealer(
            _address(s), (self._s, cipher), overhead, shortest, _seal_failed
        )

    def take_counts(self) -> tuple[int, int]:
        """Records and bytes sealed since the last call."""
        counts = _new("uint64_t[2]")
        lib.dtls_app_sender_take(self._s, counts)
        return counts[0], counts[1]


class ApplicationReceiver:
    """`RecordCipher.open` of a datagram that is one record of one application epoch,
    carrying one CID, in one C call (RFC 9147 §4.1, §4.2.2, §4.5.1)."""

    __slots__ = ("_r", "open")

    # open(datagram, max_plaintext): the application data (at most max_plaintext bytes);
    # the record when it opened as something else; why it was dropped; None when the
    # datagram is not one record of this epoch and CID (nothing was changed: the general
    # path takes it). One C function that makes the plaintext's bytes (csrc/py_app_record.c).
    open: Callable[[Buffer, int], bytes | OpenedRecord | OpenError | None]

    def __init__(
        self, cipher: RecordCipher, window: ReplayWindow, epoch_bits: int, cid: bytes | None
    ) -> None:
        cid = cid or b""
        r = lib.dtls_app_receiver_new(cipher._ctx, window._w, epoch_bits, cid, len(cid))
        if r == _NULL:
            raise ValueError("bad epoch bits or CID")
        self._r = ffi.gc(r, lib.dtls_app_receiver_free)
        # the C state borrows the cipher's context and the window: the function holds all
        self.open = _app_opener(_address(r), (self._r, cipher, window), _new_opened, _open_error)

    def take_counts(self) -> tuple[int, int]:
        """Records and datagram bytes `open` returned as application data since the last
        call."""
        counts = _new("uint64_t[2]")
        lib.dtls_app_receiver_take(self._r, counts)
        return counts[0], counts[1]


def _segment_arrays(n: int) -> tuple[Any, Any, Any, Any, Any]:
    """Per-thread result arrays for open_segments, for at least n segments (their values
    are copied out before the call returns)."""
    arrays = getattr(_local, "segments", None)
    if arrays is None or len(arrays[0]) < n:
        size = max(n, 64)
        arrays = _local.segments = (
            _new("uint64_t[]", size), _new("uint8_t[]", size), _new("uint32_t[]", size),
            _new("uint32_t[]", size), _new("int8_t[]", size),
        )  # fmt: skip
    return arrays


def _chunks(sizes: Sequence[int], limit: int) -> Iterator[tuple[int, int]]:
    """[start, end) runs of consecutive items of about `limit` bytes (at least one item)."""
    n = len(sizes)
    ends = list(accumulate(sizes))
    if ends[-1] <= limit:
        yield 0, n
        return
    start, base = 0, 0
    while start < n:
        end = max(bisect_right(ends, base + limit, lo=start), start + 1)
        yield start, end
        base, start = ends[end - 1], end


# ---- buffer pool ----


@dataclass(frozen=True)
class PoolStats:
    acquired: int
    released: int
    misses: int  # acquire() with no free slab
    in_use: int
    peak: int
    capacity: int
    slab_size: int


class BufferPool:
    """Datagram-sized slabs allocated once; acquire/release allocate nothing.

    A slab is handed out as a memoryview over the pool's memory (never a copy); the
    memory lives as long as the pool or any of its views. Thread-safe.
    """

    __slots__ = ("_arena", "_pool", "_ptrs", "_views", "capacity", "slab_size")

    def __init__(self, slab_size: int = 2048, count: int = 256) -> None:
        pool = lib.dtls_pool_new(slab_size, count)
        if pool == _NULL:
            raise ValueError("slab_size must be 1 .. 2**24 and count 1 .. 2**20")
        base = lib.dtls_pool_slab(pool, 0)
        # The arena pointer owns the pool: every view keeps it alive through ffi.buffer.
        self._arena = ffi.gc(base, lambda _base: lib.dtls_pool_free(pool))
        self._pool = pool
        self._ptrs = [lib.dtls_pool_slab(pool, i) for i in range(count)]
        span = (self._ptrs[-1] - base) + slab_size
        whole = memoryview(_buffer(self._arena, span))
        self._views = [whole[p - base : p - base + slab_size] for p in self._ptrs]
        self.slab_size = slab_size
        self.capacity = count

    def acquire(self) -> tuple[int, memoryview] | None:
        """A free slab as (index, view), or None when all are in use (counted as a miss)."""
        i = _pool_acquire(self._pool)
        if i < 0:
            return None
        return i, self._views[i]

    def release(self, index: int) -> None:
        if _pool_release(self._pool, index) != 0:
            raise ValueError(f"slab {index} is not acquired")

    def view(self, index: int) -> memoryview:
        return self._views[index]

    def stats(self) -> PoolStats:
        s = _new("dtls_pool_stats *")
        lib.dtls_pool_get_stats(self._pool, s)
        return PoolStats(
            s.acquired, s.released, s.misses, s.in_use, s.peak, s.capacity, s.slab_size
        )


# ---- batched socket I/O (Linux sendmmsg/recvmmsg and UDP GSO) ----

_BSD_SOCKADDR = sys.platform.startswith(("darwin", "freebsd", "openbsd", "netbsd"))
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


def _fileno(sock: int | socket.socket) -> int:
    return sock if isinstance(sock, int) else sock.fileno()


def _family_bytes(family: int, length: int) -> bytes:
    if _BSD_SOCKADDR:
        return bytes((length, family))
    return family.to_bytes(2, sys.byteorder)


@lru_cache(maxsize=4096)
def _encode_address(address: Address) -> bytes:
    """struct sockaddr_in / sockaddr_in6 for a socket-module address tuple."""
    host: str = address[0].decode() if isinstance(address[0], bytes) else address[0]
    port: int = address[1]
    if ":" in host:
        scope: int = address[3] if len(address) > 3 else 0
        if "%" in host:
            host, name = host.split("%", 1)
            scope = int(name) if name.isdigit() else socket.if_nametoindex(name)
        flowinfo: int = address[2] if len(address) > 2 else 0
        return (
            _family_bytes(socket.AF_INET6, 28)
            + port.to_bytes(2, "big")
            + flowinfo.to_bytes(4, "big")
            + socket.inet_pton(socket.AF_INET6, host)
            + scope.to_bytes(4, sys.byteorder)
        )
    try:
        packed = socket.inet_pton(socket.AF_INET, host)
    except OSError:  # a name: resolve it once (cached)
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        return _encode_address(info[0][4])
    return _family_bytes(socket.AF_INET, 16) + port.to_bytes(2, "big") + packed + bytes(8)


@lru_cache(maxsize=4096)
def _decode_address(raw: bytes) -> Address:
    family = raw[1] if _BSD_SOCKADDR else int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6 and len(raw) >= 28:
        return (
            socket.inet_ntop(socket.AF_INET6, raw[8:24]),
            port,
            int.from_bytes(raw[4:8], "big"),
            int.from_bytes(raw[24:28], sys.byteorder),
        )
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    return (raw,)


def _raise_errno(rc: int, what: str) -> None:
    raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def send_datagrams(
    sock_fd: int | socket.socket, datagrams: Sequence[tuple[Buffer, Address]]
) -> int:
    """Send datagrams with as few system calls as possible (sendmmsg). Returns how many
    were sent: fewer than given when a non-blocking socket's buffer filled up."""
    n = len(datagrams)
    if n == 0:
        return 0
    arr = _new("dtls_dgram[]", n)
    keep = []
    for d, (data, address) in zip(arr, datagrams, strict=True):
        ptr = _from_buffer(data)
        keep.append(ptr)
        d.buf = ptr
        d.len = len(ptr)
        raw = _encode_address(tuple(address))
        ffi.memmove(d.addr, raw, len(raw))
        d.addr_len = len(raw)
    rc = lib.dtls_sendmmsg(_fileno(sock_fd), arr, n)
    if rc < 0:
        if -rc in _AGAIN:
            return 0
        _raise_errno(rc, "sendmmsg")
    return rc


def receive_datagrams(
    sock_fd: int | socket.socket,
    max_count: int = 32,
    pool: BufferPool | None = None,
    *,
    buffer_size: int = 65535,
    buffer: bytearray | memoryview | None = None,
) -> list[ReceivedDatagram]:
    """Receive up to `max_count` datagrams (recvmmsg), blocking (on a blocking socket)
    only for the first. An empty list means nothing was waiting (non-blocking socket).

    Where they land: with a pool, each in a slab of its own and `data` is a view of it
    (release `slab` when done); with a `buffer`, message i in its bytes
    [i * buffer_size, (i + 1) * buffer_size) and `data` is a view of that, valid until the
    buffer is reused (at most len(buffer) // buffer_size messages); otherwise `data` is
    bytes. Longer datagrams are cut to the room they have. On a socket with UDP GRO on an
    entry may hold several datagrams of one sender (`segment_size`, `datagrams()`): give
    it 65536 bytes of room."""
    if max_count <= 0:
        return []
    if pool is None and buffer_size <= 0:
        raise ValueError("receive_datagrams: buffer_size must be positive")
    slabs: list[int] = []
    whole = None
    if pool is not None:
        arr = _new("dtls_dgram[]", max_count)
        ptrs, size = pool._ptrs, pool.slab_size
        for d in arr:
            i = _pool_acquire(pool._pool)
            if i < 0:
                break
            slabs.append(i)
            d.buf = ptrs[i]
            d.len = size
        count = len(slabs)
        if count == 0:
            return []
    else:
        if buffer is not None:
            whole = memoryview(buffer)
            if whole.format != "B":
                whole = whole.cast("B")
            count = min(max_count, len(whole) // buffer_size)
            if count == 0:
                raise ValueError("receive_datagrams: the buffer is smaller than buffer_size")
            room = _from_buffer(whole, require_writable=True)
        else:
            count = max_count
            room = _scratch(count * buffer_size)  # referenced until the copies are made
        arr = _new("dtls_dgram[]", count)
        base = ffi.cast("uint8_t *", room)
        for i, d in enumerate(arr):
            d.buf = base + i * buffer_size
            d.len = buffer_size
    rc = lib.dtls_recvmmsg(_fileno(sock_fd), arr, count)
    got = max(rc, 0)
    out: list[ReceivedDatagram] = []
    for i in range(got):
        d = arr[i]
        address = _decode_address(_unpack(ffi.cast("char *", d.addr), d.addr_len))
        if pool is not None:
            data: memoryview | bytes = pool._views[slabs[i]][: d.len]
            out.append(ReceivedDatagram(data, address, slabs[i], d.segment_size))
        elif whole is not None:
            start = i * buffer_size
            out.append(ReceivedDatagram(whole[start : start + d.len], address, -1,
                                        d.segment_size))  # fmt: skip
        else:
            data = _unpack(ffi.cast("char *", d.buf), d.len)
            out.append(ReceivedDatagram(data, address, -1, d.segment_size))
    for i in slabs[got:]:
        _pool_release(pool._pool, i)  # type: ignore[union-attr]
    if rc < 0 and -rc not in _AGAIN:
        _raise_errno(rc, "recvmmsg")
    return out


def gso_supported(sock_fd: int | socket.socket) -> bool:
    """True when the kernel offers UDP generic segmentation offload on this socket."""
    return bool(lib.dtls_gso_supported(_fileno(sock_fd)))


def send_segments(
    sock_fd: int | socket.socket, data: Buffer, segment_size: int, address: Address
) -> int:
    """Send `data` as datagrams of `segment_size` bytes (the last may be shorter) to one
    address: one system call with UDP GSO where offered, else sendmmsg. Returns the
    number of datagrams sent."""
    ptr = _pointer(data)
    raw = _encode_address(tuple(address))
    rc = lib.dtls_send_segments(_fileno(sock_fd), ptr, len(ptr), segment_size, raw, len(raw))
    if rc < 0:
        if -rc in _AGAIN:
            return 0
        _raise_errno(rc, "send_segments")
    return rc


# ---- UDP GRO receive (Linux >= 5.0, UDP_GRO) ----


def enable_gro(sock_fd: int | socket.socket) -> bool:
    """Turn UDP GRO on for a UDP socket (setsockopt UDP_GRO); True when the kernel took it.
    From then on a receive on the socket may return several datagrams back to back:
    read it with `receive_datagrams` (`segment_size`, `datagrams()`), not recv()."""
    return bool(lib.dtls_gro_enable(_fileno(sock_fd)))


def gro_supported(sock_fd: int | socket.socket) -> bool:
    """True when the kernel knows UDP GRO on this socket (getsockopt UDP_GRO)."""
    return bool(lib.dtls_gro_supported(_fileno(sock_fd)))
