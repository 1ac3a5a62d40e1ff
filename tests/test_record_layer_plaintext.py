"""RecordLayer.open's one-plaintext-record path agrees with the splitting path (RFC 9147
§4.1, §4.5.2): records, counters, for well-formed and damaged datagrams."""

from __future__ import annotations

import random

import pytest

from dtls.record_layer import RecordLayer


def _plaintext(content_type: int, epoch: int, seq: int, body: bytes) -> bytes:
    return (
        bytes([content_type, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


def _datagrams() -> list[bytes]:
    rng = random.Random(12)
    out = [
        _plaintext(22, 0, 0, b"\x01" + bytes(60)),
        _plaintext(21, 0, 7, b"\x02\x28"),
        _plaintext(26, 0, (1 << 48) - 1, b"\x00\x00"),
        _plaintext(22, 0, 3, b""),
        _plaintext(22, 1, 3, b"x"),  # epoch 1 in a plaintext header
        _plaintext(22, 256, 3, b"x"),
        _plaintext(23, 0, 0, b"data"),  # application data may not be plaintext
        _plaintext(22, 0, 1, bytes(1 << 14)),
        _plaintext(22, 0, 1, bytes((1 << 14) + 1)),  # longer than a plaintext may be
        _plaintext(22, 0, 1, b"abc")[:-1],  # truncated
        _plaintext(22, 0, 1, b"abc") + b"\x00",  # a byte after the record
        _plaintext(22, 0, 1, b"abc") + _plaintext(22, 0, 2, b"de"),
        _plaintext(22, 0, 1, b"abc")[:12],
    ]
    base = _plaintext(22, 0, 5, bytes(range(40)))
    for _ in range(200):
        data = bytearray(base)
        data[rng.randrange(13)] = rng.randrange(256)
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("provider", ["openssl", "python"])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_single_plaintext_record_agrees_with_splitting(provider: str, kind: type) -> None:
    for data in _datagrams():
        fast, split = RecordLayer(provider=provider), RecordLayer(provider=provider)
        got = list(fast.open(kind(data), 0.0))
        want = list(split._open_records(kind(data), 0.0))
        assert got == want, data.hex()
        assert all(type(r.payload) is bytes for r in got)
        assert fast.counters == split.counters, data.hex()
