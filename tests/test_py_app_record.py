"""The application epoch's one-record seal and open as C functions bound to one sender or
receiver (csrc/py_app_record.c, reached as `ApplicationSender.seal` and
`ApplicationReceiver.open`): the bytes `RecordCipher.seal` makes, any buffer in, every
outcome of an open, bad arguments refused with an exception and never a crash, and the C
state kept alive by the function alone (RFC 9147 §4)."""

from __future__ import annotations

import gc
import sys
from array import array
from typing import Any

import pytest

from dtls.iana import CipherSuite

native = pytest.importorskip("dtls._native", reason="the C extension is not built")
from dtls.record import (  # noqa: E402
    MAX_RECORD,
    OpenedRecord,
    OpenError,
    RecordCipher,
    ReplayWindow,
)

GCM = CipherSuite.TLS_AES_128_GCM_SHA256
SECRET = bytes(range(32))


def ciphers() -> tuple[RecordCipher, RecordCipher]:
    return RecordCipher.from_secret(GCM, SECRET), RecordCipher.from_secret(GCM, SECRET)


@pytest.mark.parametrize("cid", [None, b"\x05\x06\x07"])
def test_seal_makes_the_record_seal_makes_from_any_buffer(cid: bytes | None) -> None:
    sealing, reference = ciphers()
    seal = sealing.application_sender(3, cid).seal
    payload = bytes(range(256)) * 4
    for seq, data in enumerate(
        [payload, bytearray(payload), memoryview(payload)[7:300], array("B", payload), b""]
    ):
        assert seal(seq, data) == reference.seal(3, seq, 23, bytes(data), cid=cid)


@pytest.mark.parametrize("cid", [None, b"\x05\x06\x07"])
def test_seal_run_numbers_its_records_from_seq(cid: bytes | None) -> None:
    from dtls import record_py

    sealing, reference = ciphers()
    sender = sealing.application_sender(3, cid)
    payloads: list[Any] = [b"a", bytearray(b"b" * 1200), memoryview(b"cc"), b""]
    records = sender.seal_run(70000, payloads)
    assert records == [
        reference.seal(3, 70000 + i, 23, bytes(p), cid=cid) for i, p in enumerate(payloads)
    ]
    assert sender.take_counts() == (4, sum(map(len, records)))
    python = record_py.RecordCipher.from_secret(GCM, SECRET).application_sender(3, cid)
    assert python.seal_run(70000, payloads) == records  # the pure-Python provider alike
    assert sender.seal_run(5, []) == []


def test_seal_run_refuses_bad_arguments() -> None:
    seal_run = ciphers()[0].application_sender(3, None).seal_run
    with pytest.raises(TypeError):
        seal_run(0, (b"x",))  # type: ignore[arg-type]  # a list
    with pytest.raises(TypeError):
        seal_run(0, [b"x", "text"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        seal_run((1 << 48) - 1, [b"x", b"y"])  # the second past 2^48 - 1 (RFC 9147 §4.2.1)
    with pytest.raises(OverflowError):
        seal_run((1 << 64) - 1, [b"x", b"y"])


def test_seal_refuses_bad_arguments() -> None:
    seal = ciphers()[0].application_sender(3, None).seal
    with pytest.raises(TypeError):
        seal(0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        seal(0, b"x", b"y")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        seal(0, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal("0", b"x")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        seal(-1, b"x")
    with pytest.raises(OverflowError):
        seal(1 << 64, b"x")
    with pytest.raises(ValueError):
        seal(1 << 48, b"x")  # past the 48-bit sequence number (RFC 9147 §4.2.1)
    with pytest.raises(BufferError):
        seal(0, memoryview(bytes(64))[::2])  # not contiguous
    with pytest.raises((ValueError, BufferError)):
        seal(0, bytes((1 << 14) + 1))  # more than a record carries (RFC 9846 §5.1)
    with pytest.raises((ValueError, BufferError)):
        seal(0, bytes(MAX_RECORD + 1))


def test_open_gives_each_outcome() -> None:
    sealing, receiving = ciphers()
    window = ReplayWindow()
    open_ = receiving.application_receiver(window, 3, None).open
    record = sealing.seal(3, 0, 23, b"data")
    assert open_(memoryview(record), 100) == b"data"
    assert open_(record, 100) is OpenError.REPLAYED
    forged = bytearray(sealing.seal(3, 1, 23, b"data"))
    forged[-1] ^= 1
    assert open_(bytes(forged), 100) is OpenError.AUTH
    other = open_(sealing.seal(3, 2, 22, b"handshake"), 100)
    assert isinstance(other, OpenedRecord)
    assert (other.content_type, other.seq, other.plaintext) == (22, 2, b"handshake")
    long = open_(sealing.seal(3, 3, 23, b"x" * 101), 100)
    assert isinstance(long, OpenedRecord) and long.plaintext == b"x" * 101
    assert open_(b"", 100) is None
    assert open_(record + record, 100) is None  # two records: the general path's
    assert open_(sealing.seal(3, 4, 23, b""), 0) == b""


def test_open_refuses_bad_arguments() -> None:
    open_ = ciphers()[1].application_receiver(ReplayWindow(), 3, None).open
    with pytest.raises(TypeError):
        open_(b"")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        open_("text", 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_(b"", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        open_(b"", -1)
    with pytest.raises(BufferError):
        open_(memoryview(bytes(64))[::2], 10)


def test_the_functions_keep_their_state_alive() -> None:
    sealing, receiving = ciphers()
    seal = sealing.application_sender(3, b"\x01").seal
    open_ = receiving.application_receiver(ReplayWindow(), 3, b"\x01").open
    del sealing, receiving  # the functions alone hold the senders, ciphers and window
    gc.collect()
    assert open_(seal(9, b"still here"), 100) == b"still here"


def test_the_factories_refuse_bad_arguments() -> None:
    def failed(code: int) -> None:
        raise AssertionError(code)

    with pytest.raises(TypeError):
        native.app_sealer(1, None, 0, 0)
    with pytest.raises(ValueError):
        native.app_sealer(0, None, 0, 0, failed)  # no state
    with pytest.raises(ValueError):
        native.app_sealer(1, None, -1, 0, failed)
    with pytest.raises(TypeError):
        native.app_opener(1, None, failed)
    with pytest.raises(ValueError):
        native.app_opener(0, None, failed, failed)


# ---- instance_maker: the event of each record ----


def test_instance_maker_sets_the_slots_of_a_frozen_dataclass() -> None:
    from dtls.events import DataReceived, data_received

    make = native.instance_maker(DataReceived, ("data", "early"))
    payload = bytes(range(100))
    before = sys.getrefcount(payload)
    events = [make(payload, True) for _ in range(100)]
    assert sys.getrefcount(payload) == before + 100
    assert events[0] == DataReceived(payload, early=True) and events[0].data is payload
    assert data_received(payload) == DataReceived(payload)  # what the engine uses
    with pytest.raises(AttributeError):
        events[0].data = b""  # type: ignore[misc]  # still frozen
    del events
    gc.collect()
    assert sys.getrefcount(payload) == before  # the slots' references are the instances'


def test_instance_maker_refuses_what_it_cannot_make() -> None:
    from dtls.events import DataReceived

    class Slotted:
        __slots__ = ("a", "b")

    class Plain:
        a = 1

    make = native.instance_maker(Slotted, ("b",))
    only_b = make(7)
    assert only_b.b == 7 and not hasattr(only_b, "a")
    with pytest.raises(TypeError):
        make()
    with pytest.raises(TypeError):
        make(1, 2)
    for cls, names in [
        (Slotted, ("c",)),  # no such slot
        (Slotted, ("a", "a")),  # a slot named twice
        (Plain, ("a",)),  # a class attribute, not a slot
        (DataReceived, ("__class__",)),
        (slice, ("start",)),  # read-only
        (int, ()),  # variable-size instances
        (Slotted, ("a",) * 9),  # too many
    ]:
        with pytest.raises(TypeError):
            native.instance_maker(cls, names)
    with pytest.raises(TypeError):
        native.instance_maker("not a class", ("a",))
    with pytest.raises(TypeError):
        native.instance_maker(Slotted, ["a"])  # a tuple of names
