"""Records at a fixed stride for UDP GSO/GRO: RecordCipher.seal_segments / open_segments
(dtls_seal_segments / dtls_open_segments) and the GRO receive (dtls_recvmmsg's segment sizes)."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtls import record_py
from dtls._native import ffi, lib
from dtls.iana import CipherSuite
from dtls.record import (
    OpenedRecord,
    OpenedSegments,
    OpenError,
    ReceivedDatagram,
    RecordCipher,
    ReplayWindow,
    enable_gro,
    gro_supported,
    gso_supported,
    receive_datagrams,
    send_datagrams,
    send_segments,
)

SUITES = list(CipherSuite)
SECRET = bytes(range(48))
FORMS = [
    pytest.param({}, id="default"),
    pytest.param({"cid": b"\x07" * 5, "seq16": False, "padding": 9}, id="cid-seq8-pad"),
    pytest.param({"cid": b"c", "with_length": False}, id="cid-noL"),
]


def _cipher(suite: int = CipherSuite.TLS_AES_128_GCM_SHA256) -> RecordCipher:
    return RecordCipher.from_secret(suite, SECRET)


def _opened(result: OpenedRecord | OpenError) -> OpenedRecord:
    assert isinstance(result, OpenedRecord), result
    return result


# ---- sealing ----


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("data_len", [1, 1199, 1200, 1201, 1200 * 7, 1200 * 7 + 5])
def test_seal_segments_open_record_by_record(
    suite: int, form: dict[str, Any], data_len: int
) -> None:
    sender = _cipher(suite)
    data = os.urandom(data_len)
    records, segment_size = sender.seal_segments(3, 100, 23, data, 1200, **form)
    cid = form.get("cid")
    kw = {k: v for k, v in form.items() if k != "cid"}
    assert segment_size == sender.sealed_len(1200, cid_len=len(cid) if cid else None, **kw)
    count = -(-data_len // 1200)
    payloads = [data[i : i + 1200] for i in range(0, data_len, 1200)]
    assert len(payloads) == count
    # byte for byte what seal makes, one record per segment, consecutive numbers
    assert bytes(records) == b"".join(
        sender.seal(3, 100 + i, 23, p, **form) for i, p in enumerate(payloads)
    )
    receiver = _cipher(suite)
    window = ReplayWindow()
    got = b""
    for i in range(count):
        segment = bytes(records[i * segment_size : (i + 1) * segment_size])
        one = _opened(receiver.open(segment, window, cid_len=len(cid) if cid else 0))
        assert (one.seq, one.content_type) == (100 + i, 23)
        got += bytes(one.plaintext)
    assert got == data


def test_seal_segments_into_a_caller_buffer() -> None:
    sender = _cipher()
    data = os.urandom(1000 * 10)
    out = bytearray(64 * 1024)
    records, segment_size = sender.seal_segments(3, 0, 23, data, 1000, out)
    assert records.obj is out and len(records) == 10 * segment_size
    assert bytes(records) == bytes(sender.seal_segments(3, 0, 23, data, 1000)[0])
    # nothing to seal: no records, the segment size all the same
    empty, size = sender.seal_segments(3, 0, 23, b"", 1000, out)
    assert (len(empty), size) == (0, segment_size)


def test_seal_segments_rejects_bad_arguments() -> None:
    sender = _cipher()
    data = os.urandom(3000)
    with pytest.raises(ValueError):
        sender.seal_segments(3, 0, 23, data, 0)
    with pytest.raises(ValueError):
        sender.seal_segments(3, 0, 23, data, 16385)  # RFC 9846 §5.1: 2^14
    with pytest.raises(ValueError):  # the third record's number would pass 2^48 - 1
        sender.seal_segments(3, 2**48 - 2, 23, data, 1000)
    sender.seal_segments(3, 2**48 - 3, 23, data, 1000)  # the last one is 2^48 - 1
    with pytest.raises(ValueError):
        sender.seal_segments(3, 0, 0, data, 1000)  # content type 0
    with pytest.raises(BufferError):
        sender.seal_segments(3, 0, 23, data, 1000, bytearray(100))
    shared = bytearray(20000)  # the data inside the output
    with pytest.raises(ValueError):
        sender.seal_segments(3, 0, 23, memoryview(shared)[:3000], 1000, shared)


def test_seal_segments_c_checks_every_length() -> None:
    c = _cipher()._ctx
    data = os.urandom(2500)
    size = ffi.new("uint32_t *")
    stride = lib.dtls_sealed_len(c, lib.DTLS_HDR_SEQ16 | lib.DTLS_HDR_LENGTH, 0, 1000, 0)
    total = 2 * stride + lib.dtls_sealed_len(c, lib.DTLS_HDR_SEQ16 | lib.DTLS_HDR_LENGTH, 0, 500, 0)
    flags = lib.DTLS_HDR_SEQ16 | lib.DTLS_HDR_LENGTH
    for cap in (0, 1, stride, total - 1):
        out = ffi.new("uint8_t[]", max(cap, 1))
        rc = lib.dtls_seal_segments(c, 3, 0, flags, ffi.NULL, 0, 23, data, 2500, 1000, 0, out,
                                    cap, size)  # fmt: skip
        assert rc == lib.DTLS_ERR_BUFFER
        assert bytes(ffi.buffer(out, max(cap, 1))) == bytes(max(cap, 1))  # nothing written
    out = ffi.new("uint8_t[]", total)
    rc = lib.dtls_seal_segments(c, 3, 0, flags, ffi.NULL, 0, 23, data, 2500, 1000, 0, out, total,
                                size)  # fmt: skip
    assert (rc, size[0]) == (total, stride)
    args = (c, 3, 0, flags, ffi.NULL, 0, 23)
    assert lib.dtls_seal_segments(*args, ffi.NULL, 10, 1000, 0, out, total, size) == (
        lib.DTLS_ERR_ARGUMENT)  # fmt: skip
    assert lib.dtls_seal_segments(*args, data, 2500, 1000, 0, ffi.NULL, 0, size) == (
        lib.DTLS_ERR_ARGUMENT)  # fmt: skip
    assert lib.dtls_seal_segments(ffi.NULL, *args[1:], data, 2500, 1000, 0, out, total,
                                  size) == lib.DTLS_ERR_ARGUMENT  # fmt: skip
    # CID flag without a CID, and a CID without the flag: refused before anything is written
    assert lib.dtls_seal_segments(c, 3, 0, flags | lib.DTLS_HDR_CID, ffi.NULL, 0, 23, data,
                                  2500, 1000, 0, out, total, size) < 0  # fmt: skip


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
@pytest.mark.parametrize("form", FORMS)
def test_both_providers_seal_and_open_segments_identically(
    suite: int, form: dict[str, Any]
) -> None:
    keys = record_py.derive_traffic_keys(suite, SECRET)
    c_cipher, py_cipher = RecordCipher(suite, keys), record_py.RecordCipher(suite, keys)
    data = os.urandom(700 * 5 + 33)
    c_records, c_size = c_cipher.seal_segments(2, 77, 23, data, 700, **form)
    py_records, py_size = py_cipher.seal_segments(2, 77, 23, data, 700, **form)
    assert (bytes(c_records), c_size) == (bytes(py_records), py_size)
    cid = form.get("cid")
    cid_len = len(cid) if cid else 0
    # the first record once more (a replay) before the short last one
    tampered = bytearray(c_records[: 5 * c_size]) + c_records[:c_size] + c_records[5 * c_size :]
    tampered[c_size + c_size // 2] ^= 0x40  # the second record
    results = []
    for cipher in (c_cipher, py_cipher):
        window = ReplayWindow() if cipher is c_cipher else record_py.ReplayWindow()
        buf = bytearray(tampered)
        got = cipher.open_segments(buf, c_size, window, cid_len=cid_len)  # type: ignore[arg-type]
        _check_results(got, len(buf), c_size)
        results.append((bytes(buf), *got[1:]))  # the same bytes in place, the same entries
    assert results[0] == results[1]
    _, opened, status, types, seqs, offsets, lengths = results[0]
    assert opened == 5
    assert status[1] == OpenError.AUTH and status[5] == OpenError.REPLAYED
    assert seqs == [77, 0, 79, 80, 81, 0, 82]
    hdr = 1 + cid_len + (1 if form.get("seq16") is False else 2) + (
        0 if form.get("with_length") is False else 2)  # fmt: skip
    assert (types[6], offsets[6], lengths[6]) == (23, 6 * c_size + hdr, 33)
    assert results[0][0][offsets[6] : offsets[6] + 33] == data[-33:]


# ---- opening ----


def _sealed(
    count: int = 8, payload: int = 300, seq: int = 10, **kw: Any
) -> tuple[bytes, bytes, int]:
    data = os.urandom(count * payload)
    records, size = _cipher().seal_segments(3, seq, 23, data, payload, **kw)
    return data, bytes(records), size


@pytest.mark.parametrize("in_place", [True, False])
def test_open_segments(in_place: bool) -> None:
    data, records, size = _sealed()
    buf: Any = bytearray(records) if in_place else records
    window = ReplayWindow()
    segments = _cipher().open_segments(buf, size, window)
    _check_results(segments, len(records), size)
    assert segments.opened == 8 and segments.status == [0] * 8
    opened = [_opened(r) for r in segments.records()]
    assert [(o.seq, o.content_type) for o in opened] == [(10 + i, 23) for i in range(8)]
    assert b"".join(bytes(o.plaintext) for o in opened) == data
    assert window.next_seq == 18
    if in_place:  # the plaintext is a view of the buffer, where the ciphertext was
        plaintext = opened[0].plaintext
        assert isinstance(plaintext, memoryview) and plaintext.obj is buf
    else:
        assert bytes(buf) == records
    # without a window: numbers reconstructed from next_seq and the records before
    fresh = _cipher().open_segments(bytearray(records), size, next_seq=10)
    assert fresh.seqs == list(range(10, 18))
    # segment size 0, or larger than the data: one segment
    one = _cipher().open_segments(bytearray(records[:size]), 0)
    assert [bytes(p) for p in one.plaintexts()] == [data[:300]]
    assert _cipher().open_segments(bytearray(records[:size]), 10 * size).seqs == [10]
    empty = _cipher().open_segments(bytearray(), size)
    assert (empty.opened, empty.status, empty.records()) == (0, [], [])


def test_open_segments_rejects_tampered_and_replayed_segments() -> None:
    data, records, size = _sealed()
    receiver, window = _cipher(), ReplayWindow()
    buf = bytearray(records)
    buf[2 * size + 20] ^= 1  # ciphertext of record 2
    buf[5 * size - 1] ^= 1  # tag of record 4
    buf[6 * size : 6 * size + 1] = b"\x00"  # record 6 no longer a DTLSCiphertext
    untouched = bytes(buf[6 * size : 7 * size])
    segments = receiver.open_segments(buf, size, window)
    _check_results(segments, len(buf), size)
    results = segments.records()
    errors = {i: r for i, r in enumerate(results) if isinstance(r, OpenError)}
    assert errors == {2: OpenError.AUTH, 4: OpenError.AUTH, 6: OpenError.MALFORMED}
    assert bytes(buf[6 * size : 7 * size]) == untouched  # left for the general path
    for i in (0, 1, 3, 5, 7):
        assert bytes(_opened(results[i]).plaintext) == data[i * 300 : (i + 1) * 300]
    # no unauthenticated plaintext: header (5 bytes) and tag (16) stay, the rest is zeroed
    assert bytes(buf[2 * size + 5 : 3 * size - 16]) == bytes(size - 21)
    # the whole run again: every authentic record is now a replay (RFC 9147 §4.5.1)
    again = receiver.open_segments(bytearray(records), size, window).records()
    assert [r for i, r in enumerate(again) if i not in (2, 4, 6)] == [OpenError.REPLAYED] * 5
    assert [_opened(again[i]).seq for i in (2, 4, 6)] == [12, 14, 16]  # not opened before
    # and a duplicate inside one buffer
    dup = bytearray(records[:size] * 2)
    assert _cipher().open_segments(dup, size, ReplayWindow()).status == [0, OpenError.REPLAYED]


def test_open_segments_two_records_in_a_segment_are_malformed() -> None:
    """One record per segment: a datagram carrying two (legal in DTLS) is left for the
    general path (split_datagram and open) untouched."""
    sender = _cipher()
    two = sender.seal(3, 1, 23, b"a" * 40) + sender.seal(3, 2, 23, b"b" * 40)
    buf = bytearray(two)
    assert _cipher().open_segments(buf, 0).records() == [OpenError.MALFORMED]
    assert bytes(buf) == two


def _check_results(results: OpenedSegments, size: int, seg: int) -> None:
    """One entry per segment, each plaintext inside its own segment."""
    n = -(-size // seg) if size else 0
    assert len(results.data) == size
    columns = results[2:]
    assert [len(c) for c in columns] == [n] * 5
    assert results.opened == results.status.count(0)
    for i, (status, ctype, seq, offset, length) in enumerate(zip(*columns, strict=True)):
        if status:
            assert status in {e.value for e in OpenError}
            assert (ctype, seq, offset, length) == (0, 0, i * seg, 0)
        else:
            assert i * seg < offset and offset + length <= min((i + 1) * seg, size)
    records = results.records()
    assert len(records) == n
    for r, p in zip(records, results.plaintexts(), strict=True):
        assert isinstance(r, OpenError) or bytes(r.plaintext) == bytes(p)


@pytest.mark.parametrize("with_length", [True, False])
def test_open_segments_every_truncation(with_length: bool) -> None:
    data, records, size = _sealed(count=4, payload=100, with_length=with_length)
    for cut in range(len(records) + 1):
        buf = bytearray(records[:cut])
        segments = _cipher().open_segments(buf, size, ReplayWindow())
        _check_results(segments, cut, size)
        results = segments.records()
        whole = cut // size
        for i in range(whole):
            assert bytes(_opened(results[i]).plaintext) == data[i * 100 : (i + 1) * 100]
        if cut % size:
            expect = OpenError.MALFORMED if with_length else (OpenError.MALFORMED, OpenError.AUTH)
            assert results[whole] in (expect if isinstance(expect, tuple) else (expect,))
        # every segment size over the same bytes: no crash, one result per segment
        if cut and cut % 97 == 0:
            for seg in range(1, cut + 2, 13):
                _check_results(_cipher().open_segments(bytearray(records[:cut]), seg), cut, seg)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 3100), st.sampled_from([0, 1, 5, 255]))
def test_open_segments_arbitrary_bytes(blob: bytes, seg: int, cid_len: int) -> None:
    for cipher in (_cipher(), record_py.RecordCipher.from_secret(0x1301, SECRET)):
        results = cipher.open_segments(bytearray(blob), seg, cid_len=cid_len)
        _check_results(results, len(blob), seg if 0 < seg < len(blob) else max(len(blob), 1))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 1500), st.data())
def test_seal_then_open_segments_roundtrip(data_len: int, payload_len: int, draw: Any) -> None:
    data = os.urandom(data_len)
    records, size = _cipher().seal_segments(3, 0, 23, data, payload_len, seq16=False)
    cut = draw.draw(st.integers(0, len(records)))
    segments = _cipher().open_segments(bytearray(records[:cut]), size)
    _check_results(segments, cut, size)
    results = segments.records()
    for i in range(cut // size):
        assert bytes(_opened(results[i]).plaintext) == data[i * payload_len : (i + 1) * payload_len]


def test_open_segments_c_arguments() -> None:
    c = _cipher()._ctx
    _, records, size = _sealed(count=3)
    buf, n = ffi.new("uint8_t[]", records), len(records)
    types = ("uint64_t[]", "uint8_t[]", "uint32_t[]", "uint32_t[]", "int8_t[]")
    arrays = [ffi.new(t, 3) for t in types]
    bad = lib.DTLS_ERR_ARGUMENT
    open_segments = lib.dtls_open_segments
    assert open_segments(c, ffi.NULL, 10, 0, buf, n, size, 2, *arrays) == bad  # arrays too short
    assert open_segments(c, ffi.NULL, 10, 256, buf, n, size, 3, *arrays) == bad  # cid_len
    assert open_segments(c, ffi.NULL, 10, 0, ffi.NULL, n, size, 3, *arrays) == bad
    assert open_segments(c, ffi.NULL, 10, 0, buf, n, size, 3, ffi.NULL, *arrays[1:]) == bad
    assert open_segments(ffi.NULL, ffi.NULL, 10, 0, buf, n, size, 3, *arrays) == bad
    assert open_segments(c, ffi.NULL, 10, 0, ffi.NULL, 0, size, 0, *arrays) == 0
    assert open_segments(c, ffi.NULL, 10, 0, buf, n, size, 3, *arrays) == 3
    with pytest.raises(ValueError):
        _cipher().open_segments(bytearray(records), -1)
    with pytest.raises(ValueError):
        _cipher().open_segments(bytearray(records), size, cid_len=256)


# ---- UDP GRO receive ----


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.setblocking(False)
    yield tx, rx
    tx.close()
    rx.close()


def _gso_gro(tx: socket.socket, rx: socket.socket) -> None:
    if not gso_supported(tx):
        pytest.skip("the kernel refuses UDP_SEGMENT")
    if not enable_gro(rx):
        pytest.skip("the kernel refuses UDP_GRO")
    assert gro_supported(rx)


def _receive_bytes(
    rx: socket.socket, total: int, buffer: bytearray | None
) -> list[ReceivedDatagram]:
    got: list[ReceivedDatagram] = []
    while sum(len(m.data) for m in got) < total:
        ready, _, _ = select.select([rx], [], [], 5.0)
        assert ready, "nothing arrived"
        got += [  # copies: the next receive reuses the buffer
            ReceivedDatagram(memoryview(bytearray(m.data)), m.address, -1, m.segment_size)
            for m in receive_datagrams(rx, 4, buffer=buffer, buffer_size=65536)
        ]
    return got


@pytest.mark.parametrize("with_buffer", [True, False])
def test_gso_send_gro_receive_records(udp_pair: tuple[socket.socket, socket.socket],
                                      with_buffer: bool) -> None:  # fmt: skip
    tx, rx = udp_pair
    _gso_gro(tx, rx)
    sender, receiver, window = _cipher(), _cipher(), ReplayWindow()
    data = os.urandom(1200 * 150 + 77)  # 151 records: several GSO sends, a short last one
    records, size = sender.seal_segments(3, 1000, 23, data, 1200)
    assert send_segments(tx, records, size, rx.getsockname()) == 151
    buffer = bytearray(4 * 65536) if with_buffer else None
    received = _receive_bytes(rx, len(records), buffer)
    assert all(m.address == tx.getsockname() for m in received)
    assert any(m.segment_size == size and len(m.data) > size for m in received), "no GRO run"
    assert b"".join(bytes(m.data) for m in received) == bytes(records)  # in order
    plaintext, seqs = b"", []
    for m in received:
        assert m.datagrams() == [m.data[i : i + size] for i in range(0, len(m.data), size)]
        for r in receiver.open_segments(m.data, m.segment_size, window).records():
            plaintext += bytes(_opened(r).plaintext)
            seqs.append(_opened(r).seq)
    assert plaintext == data
    assert seqs == list(range(1000, 1151))


def test_gso_send_gro_receive_plain(udp_pair: tuple[socket.socket, socket.socket]) -> None:
    tx, rx = udp_pair
    _gso_gro(tx, rx)
    data = os.urandom(1000 * 40)
    assert send_segments(tx, data, 1000, rx.getsockname()) == 40
    received = _receive_bytes(rx, len(data), bytearray(65536))
    assert b"".join(bytes(m.data) for m in received) == data
    assert all(len(s) == 1000 for m in received for s in m.datagrams())


def test_gro_receive_of_single_datagrams(udp_pair: tuple[socket.socket, socket.socket]) -> None:
    """Datagrams sent one by one arrive one per message (segment size 0: one datagram),
    with GRO on or off."""
    tx, rx = udp_pair
    enable_gro(rx)  # whether or not the kernel takes it
    sizes = [1, 500, 1400, 0, 64]
    send_datagrams(tx, [(bytes([i]) * n, rx.getsockname()) for i, n in enumerate(sizes)])
    got: list[ReceivedDatagram] = []
    buffer = bytearray(8 * 2048)
    while len(got) < len(sizes):
        ready, _, _ = select.select([rx], [], [], 5.0)
        assert ready
        got += [ReceivedDatagram(bytes(m.data), m.address, -1, m.segment_size)
                for m in receive_datagrams(rx, 8, buffer=buffer, buffer_size=2048)]  # fmt: skip
    assert [bytes(m.data) for m in got] == [bytes([i]) * n for i, n in enumerate(sizes)]
    assert [m.segment_size for m in got] == [0] * len(sizes)
    assert [len(m.datagrams()) for m in got] == [1] * len(sizes)
    # non-blocking, nothing left
    assert receive_datagrams(rx, 8, buffer=buffer, buffer_size=2048) == []


def test_receive_into_a_buffer_cuts_at_the_slot(
    udp_pair: tuple[socket.socket, socket.socket],
) -> None:
    tx, rx = udp_pair
    tx.sendto(b"x" * 3000, rx.getsockname())
    select.select([rx], [], [], 5.0)
    buffer = bytearray(1000)
    (m,) = receive_datagrams(rx, 4, buffer=buffer, buffer_size=1000)
    assert bytes(m.data) == b"x" * 1000 and m.data.obj is buffer  # a view, not a copy


def test_receive_into_a_buffer_arguments() -> None:
    with pytest.raises(ValueError):
        receive_datagrams(0, 1, buffer=bytearray(10), buffer_size=100)  # no slot fits
    with pytest.raises(ValueError):
        receive_datagrams(0, 1, buffer_size=0)
    assert receive_datagrams(0, 0, buffer=bytearray(10)) == []
    with pytest.raises(OSError):
        receive_datagrams(-1, 1, buffer=bytearray(2048), buffer_size=2048)
    assert enable_gro(-1) is False and gro_supported(-1) is False


def test_gro_on_a_socket_without_it() -> None:
    """AF_UNIX has no UDP_GRO: enable_gro says so and a receive still works."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        assert enable_gro(b) is False
        assert gro_supported(b) is False
        a.send(b"hello")
        (m,) = receive_datagrams(b, 1, buffer=bytearray(2048), buffer_size=2048)
        assert (bytes(m.data), m.segment_size) == (b"hello", 0)
