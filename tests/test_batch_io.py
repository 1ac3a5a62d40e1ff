"""Batched sealing and opening, and batched UDP I/O (sendmmsg/recvmmsg, UDP GSO)."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator

import pytest

from dtls.iana import CipherSuite
from dtls.record import (
    BufferPool,
    OpenedRecord,
    OpenError,
    RecordCipher,
    ReplayWindow,
    enable_gro,
    gso_supported,
    receive_datagrams,
    send_datagrams,
    send_segments,
    split_datagram,
)

SUITES = list(CipherSuite)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
@pytest.mark.parametrize(("cid", "seq16", "with_length", "padding"),
                         [(None, True, True, 0), (b"\x07" * 5, False, True, 9),
                          (b"c", True, False, 0)])  # fmt: skip
def test_seal_batch_equals_single_seals(
    suite: int, cid: bytes | None, seq16: bool, with_length: bool, padding: int
) -> None:
    cipher = RecordCipher.from_secret(suite, bytes(range(48)))
    payloads = [b"", b"a", os.urandom(100), os.urandom(1200), bytearray(b"ba"), memoryview(b"mv")]
    items = [(1000 + i, 22 + i % 2, p) for i, p in enumerate(payloads)]
    kw = {"cid": cid, "seq16": seq16, "with_length": with_length, "padding": padding}
    batch = cipher.seal_batch(3, items, **kw)  # type: ignore[arg-type]
    singles = [cipher.seal(3, s, t, p, **kw) for s, t, p in items]  # type: ignore[arg-type]
    assert batch == singles
    assert all(type(r) is bytes for r in batch)
    assert cipher.seal_batch(3, []) == []
    big = [(i, 23, os.urandom(16384)) for i in range(6)]  # past the copy-once size
    assert cipher.seal_batch(3, big) == [cipher.seal(3, s, t, p) for s, t, p in big]
    with pytest.raises(ValueError):
        cipher.seal_batch(3, [(1, 23, b"ok"), (2**48, 23, b"bad")])


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
def test_open_batch_equals_single_opens(suite: int) -> None:
    sender = RecordCipher.from_secret(suite, bytes(48))
    records = [sender.seal(2, seq, 22, os.urandom(seq * 7)) for seq in range(10)]
    forged = bytearray(records[4])
    forged[-2] ^= 1
    batch_in: list[bytes | bytearray] = [*records[:4], forged, records[2], *records[5:], b"\x01"]
    originals = [bytes(r) for r in batch_in]

    receiver = RecordCipher.from_secret(suite, bytes(48))
    window = ReplayWindow()
    batch = receiver.open_batch(batch_in, window)
    single_receiver = RecordCipher.from_secret(suite, bytes(48))
    single_window = ReplayWindow()
    singles = [single_receiver.open(bytes(r), single_window) for r in batch_in]
    assert len(batch) == len(singles)
    for got, want in zip(batch, singles, strict=True):
        if isinstance(want, OpenedRecord):
            assert isinstance(got, OpenedRecord)
            assert (got.content_type, got.seq, bytes(got.plaintext)) == (
                want.content_type, want.seq, bytes(want.plaintext))  # fmt: skip
        else:
            assert got == want
    assert [r if isinstance(r, OpenError) else None for r in batch][3:6] == [
        None, OpenError.AUTH, OpenError.REPLAYED]  # fmt: skip
    assert batch[-1] == OpenError.MALFORMED
    assert window.next_seq == single_window.next_seq == 10
    assert [bytes(r) for r in batch_in] == originals  # inputs untouched
    # without a window each number is reconstructed from the ones before it
    fresh = RecordCipher.from_secret(suite, bytes(48)).open_batch(records)
    assert [r.seq if isinstance(r, OpenedRecord) else r for r in fresh] == list(range(10))
    assert receiver.open_batch([], None) == []


# ---- sockets ----


def _udp_pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    a = socket.socket(family, socket.SOCK_DGRAM)
    b = socket.socket(family, socket.SOCK_DGRAM)
    a.bind((host, 0))
    b.bind((host, 0))
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return a, b


def _ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [
    pytest.param((socket.AF_INET, "127.0.0.1"), id="ipv4"),
    pytest.param(
        (socket.AF_INET6, "::1"), id="ipv6",
        marks=pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback"),
    ),
]  # fmt: skip


@pytest.fixture(params=FAMILIES)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = _udp_pair(*request.param)
    yield a, b
    a.close()
    b.close()


def _wait_readable(sock: socket.socket) -> None:
    ready, _, _ = select.select([sock], [], [], 5.0)
    assert ready, "nothing arrived"


def _receive_all(sock: socket.socket, count: int, **kw: object) -> list:  # type: ignore[type-arg]
    got: list = []  # type: ignore[type-arg]
    while len(got) < count:
        _wait_readable(sock)
        got += receive_datagrams(sock.fileno(), **kw)  # type: ignore[arg-type]
    return got


def test_sendmmsg_recvmmsg(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.setblocking(False)
    assert receive_datagrams(b.fileno(), 8) == []  # nothing waiting
    dest = b.getsockname()
    datagrams: list[tuple[bytes | bytearray, tuple[str, int]]] = [
        (os.urandom(n), dest) for n in (1, 100, 1200, 1500, 9000, 0, 33)
    ]
    datagrams.append((bytearray(b"from a bytearray"), dest))
    assert send_datagrams(a.fileno(), datagrams) == len(datagrams)
    got = _receive_all(b, len(datagrams), max_count=4)
    assert [bytes(g.data) for g in got] == [bytes(d) for d, _ in datagrams]
    source = a.getsockname()
    assert all(g.address[:2] == source[:2] and g.slab == -1 for g in got)
    if a.family == socket.AF_INET6:
        assert len(got[0].address) == 4  # (host, port, flowinfo, scope_id), as socket does
    # and the address a socket reports works for sending back
    assert send_datagrams(b, [(b"reply", got[0].address)]) == 1
    a.settimeout(5)
    assert a.recvfrom(100) == (b"reply", b.getsockname())


def test_receive_into_pool(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    pool = BufferPool(slab_size=2048, count=6)
    dest = b.getsockname()
    payloads = [bytes([i]) * (100 + i) for i in range(10)]
    assert send_datagrams(a, [(p, dest) for p in payloads]) == 10
    received: list[bytes] = []
    while len(received) < 10:
        _wait_readable(b)
        got = receive_datagrams(b, 16, pool)
        assert 1 <= len(got) <= 6  # never more than the pool's slabs
        for g in got:
            assert isinstance(g.data, memoryview) and g.slab >= 0
            assert g.data.obj is pool.view(g.slab).obj  # the slab itself, not a copy
            received.append(bytes(g.data))
            pool.release(g.slab)
    assert received == payloads
    assert pool.stats().in_use == 0


def test_receive_into_pool_until_it_runs_dry(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    pool = BufferPool(slab_size=512, count=3)
    dest = b.getsockname()
    assert send_datagrams(a, [(bytes([i]) * 10, dest) for i in range(5)]) == 5
    _wait_readable(b)
    first = receive_datagrams(b, 16, pool)
    assert 1 <= len(first) <= 3 and pool.stats().in_use == len(first)
    b.setblocking(False)
    while pool.acquire() is not None:
        pass
    assert receive_datagrams(b, 16, pool) == []  # no slab free: nothing read
    assert pool.stats().misses >= 1


def test_send_segments(pair: tuple[socket.socket, socket.socket]) -> None:
    """One buffer out as many datagrams (UDP GSO where the kernel has it, else sendmmsg)."""
    a, b = pair
    assert isinstance(gso_supported(a), bool)
    data = os.urandom(1200 * 7 + 300)
    sent = send_segments(a, data, 1200, b.getsockname())
    assert sent == 8
    got = _receive_all(b, 8)
    assert [bytes(g.data) for g in got] == [data[i : i + 1200] for i in range(0, len(data), 1200)]
    # more segments than one GSO send carries
    data = os.urandom(100 * 150)
    assert send_segments(a, data, 100, b.getsockname()) == 150
    got = _receive_all(b, 150, max_count=64)
    assert b"".join(bytes(g.data) for g in got) == data
    assert send_segments(a, b"", 100, b.getsockname()) == 0
    with pytest.raises(OSError):
        send_segments(a, b"x", 0, b.getsockname())


@pytest.mark.parametrize("with_pool", [False, True])
def test_receive_datagrams_reports_gro_runs(
    pair: tuple[socket.socket, socket.socket], with_pool: bool
) -> None:
    """With UDP GRO on, recvmmsg may return a sender's burst as one run: receive_datagrams
    gives its segment size and datagrams() its pieces."""
    a, b = pair
    if not enable_gro(b) or not gso_supported(a):
        pytest.skip("the kernel refuses UDP_GRO or UDP_SEGMENT")
    pool = BufferPool(slab_size=65536, count=4) if with_pool else None
    data = os.urandom(1000 * 20 + 7)
    assert send_segments(a, data, 1000, b.getsockname()) == 21
    pieces: list[bytes] = []
    runs = []
    while len(pieces) < 21:
        _wait_readable(b)
        for g in receive_datagrams(b, 8, pool, buffer_size=65536):
            runs.append(g.segment_size)
            pieces += [bytes(x) for x in g.datagrams()]
            if pool is not None:
                pool.release(g.slab)
    assert pieces == [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert 1000 in runs  # coalesced: one entry held several datagrams


def test_records_through_sockets(pair: tuple[socket.socket, socket.socket]) -> None:
    """Seal a batch, send it, receive it, split and open it."""
    a, b = pair
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    sender = RecordCipher.from_secret(suite, bytes(32))
    receiver = RecordCipher.from_secret(suite, bytes(32))
    records = sender.seal_batch(3, [(i, 23, f"message {i}".encode()) for i in range(20)])
    dest = b.getsockname()
    datagrams = [(b"".join(records[i : i + 4]), dest) for i in range(0, 20, 4)]
    assert send_datagrams(a, datagrams) == 5
    pool = BufferPool(2048, 8)
    window = ReplayWindow()
    texts = []
    for g in _receive_all(b, 5, pool=pool):  # 5 datagrams: the pool's 8 slabs suffice
        spans, dropped = split_datagram(g.data)
        assert dropped == 0 and len(spans) == 4
        for s in spans:
            opened = receiver.open(g.data[s.offset : s.offset + s.length], window)
            assert isinstance(opened, OpenedRecord)
            texts.append(bytes(opened.plaintext))
        pool.release(g.slab)
    assert texts == [f"message {i}".encode() for i in range(20)]


def test_bad_descriptor() -> None:
    with pytest.raises(OSError):
        send_datagrams(-1, [(b"x", ("127.0.0.1", 9))])
    with pytest.raises(OSError):
        receive_datagrams(-1, 1)
    assert gso_supported(-1) is False


def test_send_segments_fallback_without_gso() -> None:
    """A socket without UDP GSO (here AF_UNIX) gets one datagram per segment (sendmmsg)."""
    from dtls._native import ffi, lib

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        assert gso_supported(a) is False
        data = os.urandom(500 * 3 + 1)
        assert lib.dtls_send_segments(a.fileno(), data, len(data), 500, ffi.NULL, 0) == 4
        b.settimeout(5)
        assert [b.recv(1000) for _ in range(4)] == [data[i : i + 500] for i in range(0, 1501, 500)]


@pytest.mark.parametrize("size", [2000, 16384])  # several records per C call, one per call
def test_batches_larger_than_one_chunk(size: int) -> None:
    """Batches past one C call's ~64 KB: order, numbers and windows carry across calls."""
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    sender = RecordCipher.from_secret(suite, bytes(32))
    payloads = [os.urandom(size - i) for i in range(10 if size > 4096 else 100)]
    items = [(250 + i, 23, p) for i, p in enumerate(payloads)]
    records = sender.seal_batch(3, items, seq16=False)
    assert records == [sender.seal(3, s, t, p, seq16=False) for s, t, p in items]
    # 8-bit numbers past 255 need the numbers of the records before, also across calls
    opened = RecordCipher.from_secret(suite, bytes(32)).open_batch(records)
    assert [(o.seq, bytes(o.plaintext)) for o in opened] == [  # type: ignore[union-attr]
        (250 + i, p) for i, p in enumerate(payloads)
    ]
    window = ReplayWindow()
    receiver = RecordCipher.from_secret(suite, bytes(32))
    assert all(isinstance(o, OpenedRecord) for o in receiver.open_batch(records, window))
    assert receiver.open_batch(records[-3:], window) == [OpenError.REPLAYED] * 3
    assert window.next_seq == 250 + len(payloads)
    originals = [bytearray(r) for r in records]
    copies = [bytearray(r) for r in records]
    assert len(RecordCipher.from_secret(suite, bytes(32)).open_batch(copies)) == len(copies)
    assert copies == originals  # inputs untouched
