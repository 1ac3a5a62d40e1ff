"""CIDs that carry the host id and worker index (dtls.cid_layout)."""

from __future__ import annotations

import pytest

from dtls.cid_layout import CidLayout


def test_cid_carries_host_and_worker_then_random() -> None:
    layout = CidLayout(length=8, host_id=0x0203, host_id_length=2, worker=5)
    cids = {layout.generate() for _ in range(100)}
    assert len(cids) == 100  # the rest is random
    for cid in cids:
        assert len(cid) == 8 and cid[:3] == b"\x02\x03\x05"
        assert layout.host_of(cid) == 0x0203 and layout.worker_of(cid) == 5
    assert layout.issuer == b"\x02\x03\x05"
    assert layout.for_worker(7).issuer == b"\x02\x03\x07"
    assert layout.datagram_worker_offset == 3


def test_worker_of_datagram_reads_the_unified_header() -> None:
    layout = CidLayout(length=6, host_id=1, worker=0)
    cid = layout.for_worker(3).generate()
    assert layout.worker_of_datagram(bytes([0x3C]) + cid + b"\x00\x01\x00\x10") == 3
    assert layout.worker_of_datagram(bytes([0x2C]) + cid + b"\x00\x01") is None  # no C bit
    assert layout.worker_of_datagram(bytes([0x16]) + cid) is None  # DTLSPlaintext
    assert layout.worker_of_datagram(bytes([0x3C]) + cid[:4]) is None  # too short


@pytest.mark.parametrize(
    "settings",
    [{"length": 5}, {"host_id": 256}, {"host_id_length": 5, "length": 20}, {"worker": 255},
     {"length": 256}],
)
def test_layouts_that_cannot_work_are_refused(settings: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        CidLayout(**settings)
