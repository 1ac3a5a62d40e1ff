"""Transcript.digest() is kept until the next message (RFC 9846 §4.4.1): it must always equal
the hash of everything added so far."""

from __future__ import annotations

import hashlib

from dtls.keyschedule import Transcript, message_hash


def _framed(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def test_digest_follows_every_addition() -> None:
    t = Transcript("sha256")
    seen = b""
    assert t.digest() == hashlib.sha256(b"").digest()
    for msg_type, body in ((1, b"hello"), (2, b""), (8, b"x" * 300)):
        before = t.digest()
        assert t.digest() is before  # kept, not recomputed
        t.add_message(msg_type, body)
        seen += _framed(msg_type, body)
        assert t.digest() == hashlib.sha256(seen).digest() != before
    t.add(b"\x14\x00\x00\x01z")
    assert t.digest() == hashlib.sha256(seen + b"\x14\x00\x00\x01z").digest()


def test_copy_and_restart_do_not_keep_a_stale_digest() -> None:
    t = Transcript("sha256")
    t.add_message(1, b"ch1")
    first = t.digest()
    other = t.copy()
    other.add_message(2, b"more")
    assert t.digest() == first
    assert other.digest() == hashlib.sha256(_framed(1, b"ch1") + _framed(2, b"more")).digest()
    t.restart_after_hello_retry()
    assert t.digest() == hashlib.sha256(message_hash(first)).digest()


def test_digest_with_does_not_touch_the_kept_digest() -> None:
    t = Transcript("sha384")
    t.add_message(1, b"ch")
    kept = t.digest()
    assert t.digest_with(b"binder") == hashlib.sha384(_framed(1, b"ch") + b"binder").digest()
    assert t.digest() is kept
