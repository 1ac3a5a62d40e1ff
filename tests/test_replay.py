"""The anti-replay window (RFC 9147 §4.5.1, after RFC 4303 §3.4.3)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtls.iana import CipherSuite
from dtls.record import OpenedRecord, OpenError, RecordCipher, ReplayWindow

SIZES = [64, 128, 200, 1024, 1025, 4096]


class WindowModel:
    """The behaviour §4.5.1 asks for, as plainly as possible: a set and a right edge."""

    def __init__(self, size: int) -> None:
        self.size = (size + 63) // 64 * 64
        self.seen: set[int] = set()
        self.top: int | None = None

    def check(self, seq: int) -> bool:
        if self.top is None or seq > self.top:
            return True
        return self.top - seq < self.size and seq not in self.seen

    def mark(self, seq: int) -> None:
        self.seen.add(seq)
        self.top = seq if self.top is None else max(self.top, seq)


@pytest.mark.parametrize("size", SIZES)
def test_in_order_duplicates_and_the_left_edge(size: int) -> None:
    w = ReplayWindow(size)
    assert w.size == (size + 63) // 64 * 64
    assert w.next_seq == 0 and w.check(0)
    for seq in range(3 * w.size):
        assert w.check(seq)
        w.mark(seq)
        assert not w.check(seq)
        assert w.next_seq == seq + 1
    top = 3 * w.size - 1
    assert not w.check(top - w.size + 1)  # inside the window, seen
    assert not w.check(top - w.size)  # behind the window
    assert not w.check(0)
    assert w.check(top + 1) and w.check(2**48 - 1)


@pytest.mark.parametrize("size", SIZES)
def test_reordering_inside_the_window(size: int) -> None:
    w = ReplayWindow(size)
    width = w.size
    w.mark(10 * width)
    rng = random.Random(size)
    inside = list(range(10 * width - width + 1, 10 * width))
    rng.shuffle(inside)
    for seq in inside:
        assert w.check(seq), seq
        w.mark(seq)
        assert not w.check(seq)
    assert all(not w.check(s) for s in inside)
    assert not w.check(10 * width - width)
    assert w.next_seq == 10 * width + 1


@pytest.mark.parametrize("size", SIZES)
def test_jumps_clear_the_old_bits(size: int) -> None:
    w = ReplayWindow(size)
    model = WindowModel(size)
    width = w.size
    for seq in range(0, 5 * width, 3):
        w.mark(seq)
        model.mark(seq)
    # jumps of exactly one window, of less, of far more, and of one
    for jump in (width, width // 2 + 7, 100 * width + 13, 1, width - 1, 64, 63, 65):
        top = w.next_seq - 1
        w.mark(top + jump)
        model.mark(top + jump)
        for seq in range(top + jump - width - 2, top + jump + 2):
            assert w.check(seq) == model.check(seq), (jump, seq)


def test_reset_and_sizes() -> None:
    w = ReplayWindow()
    assert w.size == 64
    w.mark(1000)
    assert not w.check(1000)
    w.reset()
    assert w.check(1000) and w.next_seq == 0
    assert ReplayWindow(1).size == 64
    assert ReplayWindow(65536).size == 65536
    for bad in (0, -1, 65537):
        with pytest.raises(ValueError):
            ReplayWindow(bad)
    assert "next_seq=0" in repr(w)


@settings(max_examples=150, deadline=None)
@given(
    size=st.sampled_from([64, 128, 256, 1088]),
    steps=st.lists(st.tuples(st.integers(0, 3000), st.booleans()), max_size=200),
)
def test_window_matches_model(size: int, steps: list[tuple[int, bool]]) -> None:
    w, model = ReplayWindow(size), WindowModel(size)
    for seq, mark in steps:
        assert w.check(seq) == model.check(seq), seq
        if mark and model.check(seq):  # §4.5.1: only new records are marked
            w.mark(seq)
            model.mark(seq)
        assert w.next_seq == (0 if model.top is None else model.top + 1)


def test_open_uses_the_window() -> None:
    """Duplicates are refused after deprotection, and a forgery never moves the window
    (RFC 9147 §4.5.1: "MUST NOT be updated ... until ... deprotected successfully")."""
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    sender = RecordCipher.from_secret(suite, bytes(32))
    receiver = RecordCipher.from_secret(suite, bytes(32))
    records = [sender.seal(3, seq, 23, bytes([seq])) for seq in range(200)]
    window = ReplayWindow(64)
    order = [5, 3, 4, 0, 1, 2, 199, 150, 136, 135, 198]
    for seq in order:
        result = receiver.open(records[seq], window)
        if seq in (0, 1, 2, 3, 4, 5) or seq > 199 - 64:
            assert isinstance(result, OpenedRecord) and result.seq == seq, seq
        else:
            assert result == OpenError.REPLAYED, seq  # behind the window by then
    assert receiver.open(records[199], window) == OpenError.REPLAYED
    forged = bytearray(sender.seal(3, 500, 23, b"x"))
    forged[-1] ^= 0x80
    assert receiver.open(bytes(forged), window) == OpenError.AUTH
    assert window.next_seq == 200
