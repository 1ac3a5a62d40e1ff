"""Crypto providers (dtls.provider): the pure-Python record layer against the C one.

- The record test suites (test_record, test_replay, test_record_wolfssl,
  test_wolfssl_handshake) run a second time, unchanged, with every `dtls.record` name
  they use bound to `dtls.record_py`'s: the tests below named `test_python__<file>__<test>`.
- Differential tests: both providers make the same bytes for every suite, header form,
  CID length and padding, open each other's records, and agree on every damaged record,
  every datagram split and every replay-window decision.
- Engine handshakes with the client on one provider and the server on the other.
- Selection: names, the environment variable, the fallback (with one warning) when the C
  extension cannot load.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import Loopback

from dtls import record_py
from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.errors import ConfigurationError
from dtls.events import DataReceived, HandshakeCompleted, KeyUpdated
from dtls.iana import CipherSuite
from dtls.provider import ENVIRONMENT_VARIABLE, default_provider_name, get_provider, providers
from dtls.record_layer import RecordLayer

native = pytest.importorskip("dtls._native", reason="the C extension is not built")
from dtls import record as record_c  # noqa: E402

TESTS = Path(__file__).parent
SUITES = list(CipherSuite)


# ---- the record test suites, once more on dtls.record_py ----


class _NativeShim:
    """`lib` for a rebound test module: the C functions the tests compare against the
    model become record_py's, the rest stay C."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self.dtls_reconstruct_seq = record_py.reconstruct_seq

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)


def _load_rebound(name: str) -> ModuleType:
    """A fresh copy of tests/<name>.py whose `dtls.record` names are `dtls.record_py`'s."""
    spec = importlib.util.spec_from_file_location(f"{name}__python", TESTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    for attr, value in list(vars(module).items()):
        if value is getattr(record_c, attr, None) and hasattr(record_py, attr):
            setattr(module, attr, getattr(record_py, attr))
    if getattr(module, "lib", None) is native.lib:
        module.lib = _NativeShim(native.lib)
    return module


def _on_python(name: str, helpers: tuple[str, ...] = ()) -> ModuleType:
    """tests/<name>.py rebound, importing rebound copies of its helper modules."""
    saved = {helper: sys.modules.get(helper) for helper in helpers}
    try:
        for helper in helpers:
            sys.modules[helper] = _load_rebound(helper)
        return _load_rebound(name)
    finally:
        for helper, module in saved.items():
            if module is None:
                sys.modules.pop(helper, None)
            else:
                sys.modules[helper] = module


# Tests of the C build itself (the cffi declarations against csrc/dtls_native.h).
_C_ONLY = {"test_cdef_matches_header"}

for _name, _helpers in (
    ("test_record", ()),
    ("test_replay", ()),
    ("test_record_wolfssl", ()),
    ("test_wolfssl_handshake", ("wolfssl_vectors",)),
):
    _module = _on_python(_name, _helpers)
    for _attr, _test in vars(_module).items():
        if _attr.startswith("test_") and callable(_test) and _attr not in _C_ONLY:
            globals()[f"test_python__{_name.removeprefix('test_')}__{_attr}"] = _test
del _name, _helpers, _module, _attr, _test


# ---- differential: the same bytes, and each opens the other's records ----


def keys_for(suite: int, seed: bytes = b"seed") -> record_py.TrafficKeys:
    import hashlib

    n = record_py.KEY_LENGTHS[suite]  # type: ignore[index]
    digest = hashlib.sha512(seed).digest()
    return record_py.TrafficKeys(digest[:n], digest[32:44], hashlib.sha256(seed).digest()[:n])


def pair(suite: int, seed: bytes = b"seed") -> tuple[Any, Any]:
    keys = keys_for(suite, seed)
    return record_c.RecordCipher(suite, keys), record_py.RecordCipher(suite, keys)


def same(a: Any, b: Any) -> bool:
    """Equal open results: the same OpenError, or the same type, number and plaintext."""
    if isinstance(a, int) or isinstance(b, int):
        return isinstance(a, int) and isinstance(b, int) and int(a) == int(b)
    return (a.content_type, a.seq, bytes(a.plaintext)) == (
        b.content_type,
        b.seq,
        bytes(b.plaintext),
    )


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
@pytest.mark.parametrize("cid_len", [0, 1, 8, 255])
@pytest.mark.parametrize("seq16", [True, False], ids=["seq16", "seq8"])
@pytest.mark.parametrize("with_length", [True, False], ids=["L", "noL"])
@pytest.mark.parametrize("padding", [0, 1, 7, 300])
def test_identical_records_every_form(
    suite: int, cid_len: int, seq16: bool, with_length: bool, padding: int
) -> None:
    c, py = pair(suite)
    cid = bytes((7 + i) % 256 for i in range(cid_len)) if cid_len else None
    c_window, py_window = record_c.ReplayWindow(), record_py.ReplayWindow()
    for seq, payload in enumerate([b"", b"x", b"hello" * 3, bytes(range(256)) * 4, bytes(1200)]):
        seq = seq * (300 if seq16 else 100) + 1  # crosses 8-bit boundaries, within reach
        args = (4 + seq % 3, seq, 23 - seq % 2, payload)
        form = {"cid": cid, "seq16": seq16, "with_length": with_length, "padding": padding}
        sealed = c.seal(*args, **form)
        assert py.seal(*args, **form) == sealed
        assert py.sealed_len(len(payload), cid_len=cid_len, seq16=seq16,
                             with_length=with_length, padding=padding) == len(sealed)  # fmt: skip
        assert py.mask(sealed[-20:]) == c.mask(sealed[-20:])
        hint = {"next_seq": max(0, seq - 5)}
        assert same(
            py.open(sealed, cid_len=cid_len, **hint), c.open(sealed, cid_len=cid_len, **hint)
        )
        # each opens the other's record with its own window, in place and not
        got_py = py.open(bytearray(sealed), py_window, cid_len=cid_len)
        got_c = c.open(bytearray(sealed), c_window, cid_len=cid_len)
        assert same(got_py, got_c) and bytes(got_py.plaintext) == payload  # type: ignore[union-attr]
        assert py_window.next_seq == c_window.next_seq == seq + 1
        assert py.open(sealed, py_window, cid_len=cid_len) == record_py.OpenError.REPLAYED
        assert c.open(sealed, c_window, cid_len=cid_len) == record_c.OpenError.REPLAYED
        # split: the same spans
        assert record_py.split_datagram(sealed * 2 if with_length else sealed, cid_len) == (
            record_c.split_datagram(sealed * 2 if with_length else sealed, cid_len)
        )


def test_open_error_codes_are_the_c_codes() -> None:
    assert {e.name: int(e) for e in record_py.OpenError} == {
        e.name: int(e) for e in record_c.OpenError
    }
    assert len({int(e) for e in record_py.OpenError}) == len(record_py.OpenError)
    assert {k.name: int(k) for k in record_py.RecordKind} == {
        k.name: int(k) for k in record_c.RecordKind
    }
    assert record_py.PLAINTEXT_HEADER_LEN == record_c.PLAINTEXT_HEADER_LEN


@settings(max_examples=300, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    seed=st.binary(min_size=1, max_size=8),
    epoch=st.integers(0, 2**16),
    seq=st.integers(0, 2**48 - 1),
    content_type=st.integers(1, 255),
    payload=st.binary(max_size=400),
    padding=st.integers(0, 40),
    cid=st.one_of(st.none(), st.binary(min_size=1, max_size=12)),
    seq16=st.booleans(),
    with_length=st.booleans(),
    damage=st.lists(st.tuples(st.integers(0, 500), st.integers(1, 255)), max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 500)),
    hint=st.integers(-300, 300),
)
def test_random_records_and_damage_agree(
    suite: int, seed: bytes, epoch: int, seq: int, content_type: int, payload: bytes,
    padding: int, cid: bytes | None, seq16: bool, with_length: bool,
    damage: list[tuple[int, int]], cut: int | None, hint: int,
) -> None:  # fmt: skip
    """Byte-identical records; and for a damaged or cut record both give the same
    result (the same OpenError code, or the same record)."""
    c, py = pair(suite, seed)
    form = {"cid": cid, "seq16": seq16, "with_length": with_length, "padding": padding}
    sealed = c.seal(epoch, seq, content_type, payload, **form)
    assert py.seal(epoch, seq, content_type, payload, **form) == sealed
    record = bytearray(sealed)
    for at, flip in damage:
        record[at % len(record)] ^= flip
    if cut is not None:
        record = record[: cut % (len(record) + 1)]
    next_seq = max(0, min(2**48 - 1, seq + hint))
    cid_len = len(cid or b"")
    a = c.open(bytes(record), None, cid_len=cid_len, next_seq=next_seq)
    b = py.open(bytes(record), None, cid_len=cid_len, next_seq=next_seq)
    assert same(a, b), (a, b)
    if not damage and cut is None and abs(hint) < (128 if not seq16 else 32768):
        assert not isinstance(b, int) and bytes(b.plaintext) == payload
    # and in place, with windows that saw the same numbers
    wc, wp = record_c.ReplayWindow(64), record_py.ReplayWindow(64)
    for s in (next_seq, max(0, next_seq - 70)):
        wc.mark(s)
        wp.mark(s)
    buf_c, buf_p = bytearray(record), bytearray(record)
    assert same(c.open(buf_c, wc, cid_len=cid_len), py.open(buf_p, wp, cid_len=cid_len))
    assert buf_c == buf_p  # the same bytes left behind (plaintext, or zeros after AUTH)
    assert wc.next_seq == wp.next_seq


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), cid_len=st.integers(0, 20))
def test_split_agrees_on_any_bytes(data: bytes, cid_len: int) -> None:
    assert record_py.split_datagram(data, cid_len) == record_c.split_datagram(data, cid_len)
    c, py = pair(CipherSuite.TLS_AES_128_GCM_SHA256)
    assert same(py.open(data, None, cid_len=cid_len), c.open(data, None, cid_len=cid_len))


def test_split_agrees_on_datagrams_of_many_records() -> None:
    c, _ = pair(CipherSuite.TLS_AES_128_GCM_SHA256)
    parts = []
    for i in range(100):
        parts.append(record_c.seal_plaintext(22 if i % 2 else 26, i, bytes(i), epoch=i % 3))
        parts.append(c.seal(3, i, 23, bytes(i), cid=b"\x01\x02"))
    data = b"".join(parts) + b"\x00junk"
    assert record_py.split_datagram(data, 2) == record_c.split_datagram(data, 2)
    assert record_py.split_datagram(memoryview(data), 2) == record_c.split_datagram(data, 2)


@settings(max_examples=200, deadline=None)
@given(
    content_type=st.integers(0, 255),
    seq=st.integers(0, 2**48 - 1),
    epoch=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=300),
)
def test_seal_plaintext_agrees(content_type: int, seq: int, epoch: int, payload: bytes) -> None:
    assert record_py.seal_plaintext(content_type, seq, payload, epoch) == (
        record_c.seal_plaintext(content_type, seq, payload, epoch)
    )


@settings(max_examples=300, deadline=None)
@given(
    expected=st.integers(0, 2**48 + 5), low=st.integers(0, 0xFFFF), bits=st.sampled_from([8, 16])
)
def test_reconstruction_agrees(expected: int, low: int, bits: int) -> None:
    low &= (1 << bits) - 1
    assert record_py.reconstruct_seq(expected, low, bits) == native.lib.dtls_reconstruct_seq(
        min(expected, 2**64 - 1), low, bits
    )


@settings(max_examples=200, deadline=None)
@given(
    size=st.sampled_from([1, 64, 65, 128, 1000, 65536]),
    steps=st.lists(st.tuples(st.integers(0, 70000), st.booleans()), max_size=150),
)
def test_replay_windows_agree(size: int, steps: list[tuple[int, bool]]) -> None:
    wc, wp = record_c.ReplayWindow(size), record_py.ReplayWindow(size)
    assert wc.size == wp.size
    for seq, mark in steps:
        assert wc.check(seq) == wp.check(seq), seq
        if mark:
            wc.mark(seq)
            wp.mark(seq)
        assert wc.next_seq == wp.next_seq
    wc.reset()
    wp.reset()
    assert wc.next_seq == wp.next_seq == 0 and wp.check(0)


def test_batches_agree() -> None:
    c, py = pair(CipherSuite.TLS_CHACHA20_POLY1305_SHA256)
    items = [(seq, 23, bytes([seq % 256]) * (seq * 37 % 1500)) for seq in range(150)]
    sealed = c.seal_batch(3, items, cid=b"\x05", padding=2)
    assert py.seal_batch(3, items, cid=b"\x05", padding=2) == sealed
    got_c = c.open_batch(sealed, cid_len=1)
    got_py = py.open_batch(sealed, cid_len=1)
    assert all(same(a, b) for a, b in zip(got_c, got_py, strict=True))
    assert [bytes(r.plaintext) for r in got_py] == [p for _, _, p in items]  # type: ignore[union-attr]
    windows = record_c.ReplayWindow(), record_py.ReplayWindow()
    twice = sealed[:10] + sealed[5:15]
    got_c = c.open_batch(twice, windows[0], cid_len=1)
    got_py = py.open_batch(twice, windows[1], cid_len=1)
    assert all(same(a, b) for a, b in zip(got_c, got_py, strict=True))
    assert [int(r) for r in got_py[10:15]] == [int(record_c.OpenError.REPLAYED)] * 5  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        py.seal_batch(3, [(0, 23, b"ok"), (2**48, 23, b"bad")])
    # seal_run: consecutive numbers, one content type; also past a 64 KB chunk
    payloads = [bytes([n % 256]) * (n * 53 % 1400) for n in range(120)]
    run = c.seal_run(3, 2**40, 23, payloads, cid=b"\x05", padding=2)
    assert run == c.seal_batch(3, [(2**40 + n, 23, p) for n, p in enumerate(payloads)],
                               cid=b"\x05", padding=2)  # fmt: skip
    assert py.seal_run(3, 2**40, 23, payloads, cid=b"\x05", padding=2) == run
    for cipher in (c, py):
        with pytest.raises(ValueError):
            cipher.seal_run(3, 2**48 - 1, 23, [b"ok", b"beyond 2**48 - 1"])



def _runs(cipher: Any, window: Any, datagrams: list[bytes], **kwargs: Any) -> list[Any]:
    """open_run repeatedly over `datagrams`, as the engine calls it: each result, and
    where the next call starts (past a datagram it did not take, or the rest of one)."""
    results = []
    while datagrams:
        run = cipher.open_run(bytearray().join(datagrams), list(map(len, datagrams)), window,
                              **kwargs)  # fmt: skip
        pt = [bytes(run.data[a : a + n]) for a, n in zip(run.offsets, run.lengths, strict=True)]
        results.append((*run[1:], pt))
        skip = run.datagrams + (1 if run.rest or not (run.datagrams or run.status) else 0)
        datagrams = datagrams[skip:]
    return results


@pytest.mark.parametrize("cid", [None, b"\x07\x08"])
def test_open_run_agrees(cid: bytes | None) -> None:
    """Both providers take the same datagrams and stop at the same records: other epochs
    or CIDs, a handshake record or an oversized one inside a datagram, forgeries, replays,
    datagrams of several records and damaged ones (RFC 9147 §4.1, §4.5.1, §9)."""
    c, py = pair(CipherSuite.TLS_AES_128_GCM_SHA256)
    other = pair(CipherSuite.TLS_AES_128_GCM_SHA256, seed=b"other")[0]

    def rec(seq: int, payload: bytes, ct: int = 23, epoch: int = 3, cipher: Any = c) -> bytes:
        return bytes(cipher.seal(epoch, seq, ct, payload, cid=cid))

    forged = bytearray(rec(4, b"forged"))
    forged[-1] ^= 1
    datagrams = [
        rec(0, b"a"),
        rec(1, b"b") + rec(2, b"c") + rec(3, b"d"),  # three records in one datagram
        bytes(forged),
        rec(1, b"b"),  # a replay
        rec(5, b"e") + rec(6, b"key update", ct=22) + rec(7, b"f"),  # other content inside
        rec(8, b"g") + rec(9, b"x" * 600),  # longer than max_plaintext
        rec(10, b"h", epoch=4, cipher=other),  # another epoch
        rec(11, b"i"),
        rec(12, b"j", cipher=other),  # does not authenticate
        rec(13, b"k") + b"\x2f",  # trailing garbage: the general path's
        rec(14, b"l")[:-1] if cid is None else rec(14, b"l").replace(cid, b"\x09\x09", 1),
        rec(15, b"m"),
        b"",
    ]
    args = {"epoch_bits": 3, "cid": cid, "max_plaintext": 500}
    got_c = _runs(c, record_c.ReplayWindow(), list(datagrams), **args)
    got_py = _runs(py, record_py.ReplayWindow(), list(datagrams), **args)
    assert got_c == got_py
    texts = [t for *_, pts in got_c for t in pts]
    assert texts[:4] == [b"a", b"b", b"c", b"d"] and b"key update" in texts
    # "f" follows the handshake record in its datagram: the engine's general path opens it
    assert texts == [b"a", b"b", b"c", b"d", b"", b"", b"e", b"key update", b"g", b"x" * 600,
                     b"i", b"", b"m"]  # fmt: skip
    statuses = [x for run in got_c for x in run[1]]
    assert statuses.count(int(record_c.OpenError.AUTH)) == 2
    assert statuses.count(int(record_c.OpenError.REPLAYED)) == 1

def _app_result(result: Any) -> Any:
    """An ApplicationReceiver.open result in comparable form."""
    if result is None or isinstance(result, bytes):
        return result
    if isinstance(result, int):
        return int(result)
    return ("record", result.content_type, result.seq, bytes(result.plaintext))


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
@pytest.mark.parametrize("cid", [None, b"\x07\x08"])
def test_application_sender_and_receiver_agree(suite: int, cid: bytes | None) -> None:
    """The one-call paths of the application epoch: both providers seal the bytes `seal`
    makes, and take, open or leave to the general path the same datagrams (RFC 9147 §4.1,
    §4.2.2, §4.5.1, §9)."""
    c, py = pair(suite)
    other = pair(suite, seed=b"other")[0]
    senders = c.application_sender(7, cid), py.application_sender(7, cid)
    for seq in (0, 1, 255, 256, 70000):
        for payload in (b"", b"x", b"y" * 1200, bytearray(b"z" * 40)):
            expected = c.seal(7, seq, 23, payload, cid=cid)
            assert senders[0].seal(seq, payload) == senders[1].seal(seq, payload) == expected

    def rec(seq: int, payload: bytes, ct: int = 23, epoch: int = 3, cipher: Any = c) -> bytes:
        return bytes(cipher.seal(epoch, seq, ct, payload, cid=cid))

    forged = bytearray(rec(4, b"forged"))
    forged[-1] ^= 1
    wrong_cid = b"\x09\x09" if cid else b"\x01"
    datagrams = [
        rec(0, b"a"),
        rec(2, b"c"),
        rec(1, b"b"),  # reordered: opens
        rec(1, b"b"),  # a replay
        bytes(forged),  # does not authenticate
        rec(5, b"key update", ct=22),  # other content
        rec(6, b"x" * 600),  # longer than max_plaintext
        rec(7, b"d", epoch=4, cipher=other),  # another epoch
        rec(8, b"e", cipher=other),  # wrong keys
        rec(9, b"f") + rec(10, b"g"),  # two records: the general path's
        rec(11, b"h") + b"\x2f",  # trailing garbage
        rec(12, b"i")[:-1],  # truncated: its length no longer fits
        bytes(c.seal(3, 13, 23, b"j", cid=wrong_cid)),  # another CID (or one where none is)
        bytes(c.seal(3, 14, 23, b"k", cid=cid, with_length=False)),  # L=0: taken
        bytes(c.seal(3, 15, 23, b"l", cid=cid, seq16=False)),  # 8-bit number: taken
        rec(16, b"m")[:4],  # too short
        b"\x16\xfe\xfd" + bytes(10),  # DTLSPlaintext
        b"",
        rec(17, b"n"),
    ]
    receivers = (
        c.application_receiver(record_c.ReplayWindow(), 3, cid),
        py.application_receiver(record_py.ReplayWindow(), 3, cid),
    )
    got = [[_app_result(r.open(d, 500)) for d in datagrams] for r in receivers]
    assert got[0] == got[1]
    assert got[0] == [
        b"a", b"c", b"b", int(record_c.OpenError.REPLAYED), int(record_c.OpenError.AUTH),
        ("record", 22, 5, b"key update"), ("record", 23, 6, b"x" * 600), None,
        int(record_c.OpenError.AUTH), None, None, None, None, b"k", b"l", None, None, None,
        b"n",
    ]  # fmt: skip
    assert receivers[0].open(memoryview(rec(18, b"o")), 500) == b"o"  # any buffer


@pytest.mark.parametrize("cid", [None, b"\x07\x08"])
def test_application_sender_and_receiver_count_alike(cid: bytes | None) -> None:
    """Both providers count what the one-call paths seal and hand back as application
    data (records, and the bytes of the records / datagrams), and start again at 0 once
    the counts are taken (what `RecordLayer.counters` adds in)."""
    suite = CipherSuite.TLS_AES_128_GCM_SHA256
    c, py = pair(suite)
    for cipher, provider in ((c, record_c), (py, record_py)):
        sender = cipher.application_sender(3, cid)
        receiver = cipher.application_receiver(provider.ReplayWindow(), 3, cid)
        assert sender.take_counts() == receiver.take_counts() == (0, 0)
        records = [sender.seal(seq, b"p" * seq) for seq in range(5)]
        assert sender.take_counts() == (5, sum(map(len, records)))
        assert sender.take_counts() == (0, 0)
        other = bytes(cipher.seal(3, 9, 22, b"handshake", cid=cid))
        for datagram in [*records, records[1], other, records[2] + records[3]]:
            receiver.open(datagram, 500)  # a replay, other content, two records: not counted
        assert receiver.open(records[4][:-1] + b"\x00", 500) is not None  # a forgery
        assert receiver.take_counts() == (5, sum(map(len, records)))
        assert receiver.take_counts() == (0, 0)


def test_traffic_keys_agree() -> None:
    for suite in SUITES:
        secret = bytes(range(48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32))
        a, b = (
            record_c.derive_traffic_keys(suite, secret),
            record_py.derive_traffic_keys(suite, secret),
        )
        assert (a.key, a.iv, a.sn_key) == (b.key, b.iv, b.sn_key)
        assert record_c.next_traffic_secret(suite, secret) == record_py.next_traffic_secret(
            suite, secret
        )
        # a key object from one provider keys the other's cipher
        assert record_py.RecordCipher(suite, a).seal(3, 1, 23, b"k") == (
            record_c.RecordCipher(suite, b).seal(3, 1, 23, b"k")
        )


# ---- engines on different providers ----


def _pair(
    pki: Any, monkeypatch: pytest.MonkeyPatch, client: str, server: str, **client_settings: Any
) -> Loopback:
    """A client on one provider and a server on another. (With Context.provider passed on
    by Connection this would be Context(provider=...); the environment variable is read
    when a context makes its first connection.)"""
    cctx = Context.client(cadata=pki.ca_pem, **client_settings)
    sctx = Context.server(cookie_mode=CookieMode.ALWAYS, cipher_suites=tuple(SUITES))
    sctx.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.server.key_pem)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, client)
    client_conn = Connection(cctx, server_name="localhost")
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, server)
    server_conn = Connection(sctx)
    monkeypatch.undo()
    return Loopback(client_conn, server_conn)


@pytest.mark.parametrize(("client", "server"), [("python", "openssl"), ("openssl", "python")])
@pytest.mark.parametrize("suite", SUITES, ids=lambda s: CipherSuite(s).name)
def test_handshake_across_providers(
    pki: Any, monkeypatch: pytest.MonkeyPatch, client: str, server: str, suite: int
) -> None:
    link = _pair(pki, monkeypatch, client, server, cipher_suites=(suite,),
                 connection_id=b"\x07\x07")  # fmt: skip
    link.start()
    link.run(until=60)
    done = link.events_of("client", HandshakeCompleted)
    assert done and done[0].cipher_suite == CipherSuite(suite).name
    assert link.events_of("server", HandshakeCompleted)
    assert link.client._records.provider.name == client
    assert link.server._records.provider.name == server
    messages = [b"", b"small", bytes(range(256)) * 4]
    for m in messages:
        link.client.send(m)
        link.server.send(m[::-1])
    link.client.update_keys()  # RFC 9147 §8: epoch 4 on both providers
    link.run(until=link.now + 60)
    link.client.send(b"after the key update")
    link.run(until=link.now + 60)
    got_s = [e.data for e in link.events_of("server", DataReceived)]
    got_c = [e.data for e in link.events_of("client", DataReceived)]
    assert got_s == [*messages, b"after the key update"]
    assert got_c == [m[::-1] for m in messages]
    assert any(e.epoch == 4 for e in link.events_of("server", KeyUpdated))
    # with CIDs the server's EncryptedExtensions.. follow its ServerHello in one datagram,
    # carrying the CID the ServerHello agreed to (RFC 9147 §9): none is lost
    for side in (link.client, link.server):
        stats = side.stats()
        assert stats.dropped_failed_authentication == stats.dropped_malformed == 0
        assert stats.retransmissions == 0


def test_context_provider_reaches_the_record_layer(pki: Any) -> None:
    ctx = Context.client(cadata=pki.ca_pem, provider="python")
    conn = Connection(ctx, server_name="localhost")
    assert conn._records.provider.name == "python"
    default = Connection(Context.client(cadata=pki.ca_pem), server_name="localhost")
    assert default._records.provider.name == default_provider_name()


# ---- selection ----


def test_registry_lists_both() -> None:
    listed = {p.name: p for p in providers()}
    assert set(listed) >= {"openssl", "python"}
    for name in ("openssl", "python"):
        assert listed[name].available and not listed[name].reason
        assert set(listed[name].suites) == {s.name for s in SUITES}
    expected_default = os.environ.get(ENVIRONMENT_VARIABLE) or "openssl"
    assert [p.name for p in providers() if p.default] == [expected_default]
    import dtls

    assert dtls.providers() == providers()


def test_register_another_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook for offload or another library: a name, and a loader run on first use."""
    from dataclasses import replace

    from dtls import provider

    monkeypatch.setattr(provider, "_registry", dict(provider._registry))
    loads: list[str] = []

    def load() -> provider.RecordProvider:
        loads.append("x")
        return replace(get_provider("python"), name="offload", description="a test double")

    def missing() -> provider.RecordProvider:
        raise ImportError("no such card")

    provider.register_provider("offload", "records on a card", load)
    provider.register_provider("absent", "records elsewhere", missing)
    with pytest.raises(ValueError):
        provider.register_provider("python", "again", load)
    listed = {p.name: p for p in providers()}
    assert listed["offload"].available and listed["offload"].description == "a test double"
    assert not listed["absent"].available and "no such card" in listed["absent"].reason
    assert RecordLayer(provider="offload").provider.name == "offload"
    assert loads == ["x"]  # loaded once
    with pytest.raises(ConfigurationError, match="no such card"):
        RecordLayer(provider="absent")


def test_names_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_provider("python").cipher is record_py.RecordCipher
    assert get_provider("openssl").cipher is record_c.RecordCipher
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    assert RecordLayer().provider.name == "openssl"
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "python")
    assert RecordLayer().provider.name == "python"
    assert RecordLayer(provider="openssl").provider.name == "openssl"  # a name wins
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "nonesuch")
    with pytest.raises(ConfigurationError):
        RecordLayer()
    monkeypatch.delenv(ENVIRONMENT_VARIABLE)
    with pytest.raises(ConfigurationError):
        get_provider("nonesuch")
    with pytest.raises(ConfigurationError):
        Context.client(provider="nonesuch")
    assert Context.client(provider="python").provider == "python"


def test_environment_selects_the_engine_provider() -> None:
    """Under DTLS13_PROVIDER (the CI's second run) every engine takes that provider."""
    named = os.environ.get(ENVIRONMENT_VARIABLE)
    layer = Connection(Context.client(verify=False))._records
    assert layer.provider.name == (named or "openssl")


def test_context_resolves_its_provider_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider is resolved on a context's first connection and kept for the next
    ones; a context made after DTLS13_PROVIDER changes, or given another provider, follows."""
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "python")
    ctx = Context.client(verify=False)
    first = Connection(ctx)._records.provider
    assert first.name == "python"
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "openssl")
    assert Connection(ctx)._records.provider is first  # kept: not read per connection
    assert Connection(Context.client(verify=False))._records.provider.name == "openssl"
    ctx.provider = "openssl"
    assert Connection(ctx)._records.provider is get_provider("openssl")
    ctx.provider = None
    assert Connection(ctx)._records.provider.name == "openssl"  # the variable now


def _run_without_native(code: str) -> subprocess.CompletedProcess[str]:
    prelude = "import sys; sys.modules['dtls._native'] = None  # as if it did not build\n"
    env = {k: v for k, v in os.environ.items() if k != ENVIRONMENT_VARIABLE}
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, env=env,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip


def test_fallback_without_the_c_extension() -> None:
    result = _run_without_native("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import dtls
            from dtls.provider import get_provider
            from dtls.record_layer import RecordLayer
            from dtls.iana import ContentType
            infos = {p.name: p for p in dtls.providers()}
            assert not infos["openssl"].available and "dtls._native" in infos["openssl"].reason
            assert infos["python"].available and infos["python"].default
            a, b = RecordLayer(), RecordLayer()
            assert get_provider().name == a.provider.name == "python"
            for layer in (a, b):
                layer.install_send(3, 0x1301, bytes(32))
                layer.install_receive(3, 0x1301, bytes(32))
            record, _ = a.seal(3, ContentType.APPLICATION_DATA, b"no C here")
            [opened] = list(b.open(record, 0.0))
            assert opened.payload == b"no C here"
            try:
                get_provider("openssl")
            except dtls.errors.ConfigurationError:
                pass
            else:
                raise AssertionError("openssl loaded without its C extension")
        runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(runtime) == 1, [str(w.message) for w in caught]
        assert "pure-Python" in str(runtime[0].message)
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_whole_stack_without_the_c_extension() -> None:
    """asyncio, blocking sockets and the CLI-free API on record_py alone. The engine's
    handshake modules still import `dtls.record` (PLAINTEXT_HEADER_LEN, RecordKind,
    seal_plaintext, split_datagram: all in record_py too); here that name is record_py."""
    result = _run_without_native("""
        import asyncio, sys, warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        from dtls import record_py
        sys.modules["dtls.record"] = record_py  # what the handshake modules need of it
        sys.path.insert(0, "tests")
        from pki import build_pki
        from dtls import aio, sync, Context
        pki = build_pki()
        server_ctx = Context.server()
        server_ctx.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.server.key_pem)
        client_ctx = Context.client(cadata=pki.ca_pem)

        async def main():
            async def echo(conn):
                async for message in conn:
                    await conn.send(message)
            async with await aio.serve(echo, "127.0.0.1", 0, server_ctx) as server:
                async with await aio.connect("127.0.0.1", server.port, client_ctx,
                                             server_name="localhost", timeout=20) as conn:
                    for message in (b"no", b"C" * 3000):
                        await conn.send(message)
                        assert await conn.recv() == message
                    assert conn.connection._records.provider.name == "python"
        asyncio.run(asyncio.wait_for(main(), 60))

        def echo(conn):
            for message in conn:
                conn.send(message)
        with sync.Server(("127.0.0.1", 0), server_ctx, echo) as server:
            import threading
            threading.Thread(target=server.serve_forever, daemon=True).start()
            with sync.connect(server.server_address, client_ctx, server_name="localhost",
                              timeout=20) as conn:
                conn.send(b"blocking")
                assert conn.recv(timeout=20) == b"blocking"
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_socket_fallback_round_trip() -> None:
    """record_py's sendto/recvfrom stand-ins for sendmmsg/recvmmsg."""
    import socket

    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        b.setblocking(False)
        assert record_py.receive_datagrams(b, 8) == []
        to = b.getsockname()
        assert record_py.send_datagrams(a.fileno(), [(bytes([i]) * 10, to) for i in range(5)]) == 5
        got: list[Any] = []
        for _ in range(100):
            got += record_py.receive_datagrams(b.fileno(), 3)
            if len(got) == 5:
                break
        assert [d.data for d in got] == [bytes([i]) * 10 for i in range(5)]
        assert {d.address for d in got} == {a.getsockname()} and {d.slab for d in got} == {-1}
        # the C versions read the same datagrams
        record_py.send_datagrams(a, [(b"to C", to)])
        for _ in range(100):
            from_c = record_c.receive_datagrams(b, 4)
            if from_c:
                break
        assert [bytes(d.data) for d in from_c] == [b"to C"]
    finally:
        a.close()
        b.close()


def test_handshake_crypto_comes_from_the_provider(
    monkeypatch: pytest.MonkeyPatch, pki: Any
) -> None:
    """Key exchange, signatures and randomness go through the named provider (design §6):
    a provider that wraps them (as an accelerator or a key token would) sees every call."""
    from dataclasses import replace

    from dtls import crypto, keyschedule, provider
    from dtls.provider import HandshakeCrypto

    monkeypatch.setattr(provider, "_registry", dict(provider._registry))
    calls: list[str] = []

    def counted(name: str, function: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            calls.append(name)
            return function(*args)

        return wrapper

    offload = HandshakeCrypto(
        random=counted("random", lambda n: bytes(range(n))),
        generate_key_share=counted("generate_key_share", crypto.generate_key_share),
        server_key_share=counted("server_key_share", crypto.server_key_share),
        sign=counted("sign", crypto.sign),
        verify_signature=counted("verify_signature", crypto.verify_signature),
        hkdf_extract=counted("hkdf_extract", keyschedule.hkdf_extract),
        hkdf_expand=counted("hkdf_expand", keyschedule.hkdf_expand),
    )
    provider.register_provider(
        "accelerated", "handshake on a card",
        lambda: replace(get_provider("python"), name="accelerated", handshake=offload),
    )
    client = Context.client(cadata=pki.ca_pem, provider="accelerated")
    server = Context.server(cookie_mode="never", session_tickets=0, provider="accelerated")
    server.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    c = Connection(client, server_name="localhost")
    s = Connection(server)
    c.connect(("192.0.2.2", 4433), 0.0)
    for _ in range(4):
        for data, _ in c.datagrams_to_send(0.0):
            s.receive_datagram(data, ("192.0.2.1", 5000), 0.0)
        for data, _ in s.datagrams_to_send(0.0):
            c.receive_datagram(data, ("192.0.2.2", 4433), 0.0)
    assert c.handshake_complete and s.handshake_complete
    assert sorted(set(calls)) == [
        "generate_key_share", "hkdf_expand", "hkdf_extract", "random", "server_key_share",
        "sign", "verify_signature",
    ]
    # Every secret of the key schedule (RFC 9846 §7.1) on both sides went through it.
    assert calls.count("hkdf_extract") == 6  # early, handshake, master secret, per side
    assert c._client_random == bytes(range(32))  # the provider's randomness was used
