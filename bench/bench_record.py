"""Record-layer benchmarks (pytest-benchmark): seal and open per record, beside the floor.

The floor is a plain AEAD seal of the same bytes through the same libcrypto calls
(`dtls_bench_raw_aead_seal`, a loop inside C). Beside it: dtls_seal/dtls_open in a C loop,
the framing + record-number mask alone in C, and the Python API one record per call, in
batches of 64 (`seal_batch`/`open_batch`: a Python object per record) and as 64 segments
of one GSO/GRO buffer (`seal_segments`/`open_segments`). Run (see bench/README.md):

    python -m pytest bench/bench_record.py --benchmark-only --benchmark-json=out.json
    python bench/bench_record.py out.json        # the per-record table, in Markdown
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

from dtls._native import ffi, lib
from dtls.iana import CipherSuite
from dtls.record import RecordCipher

SUITES = list(CipherSuite)
SIZES = [64, 1200, 16384]
BATCH = 64
FLAGS = lib.DTLS_HDR_SEQ16 | lib.DTLS_HDR_LENGTH  # what wolfSSL sends: S=1, L=1, no CID
AAD = bytes([0x2F | FLAGS, 0, 0, 0, 0])  # the 5-byte unified header, as dtls_seal uses


def loop_count(size: int) -> int:
    """Records per C-loop call: about a millisecond of work."""
    return max(20, 200_000 // (size + 200))


def ids(suite: int) -> str:
    return CipherSuite(suite).name.removeprefix("TLS_")


@pytest.fixture(scope="module", params=SUITES, ids=ids)
def cipher(request: pytest.FixtureRequest) -> RecordCipher:
    return RecordCipher.from_secret(request.param, os.urandom(48))


def run(
    benchmark: Any,
    cipher: RecordCipher,
    kind: str,
    size: int,
    records: int,
    fn: Callable[[], object],
) -> None:
    benchmark.group = f"{kind} {size}"
    benchmark.extra_info.update(suite=ids(cipher.suite), kind=kind, size=size, records=records)
    benchmark(fn)


@pytest.mark.parametrize("size", SIZES)
def test_floor_raw_aead_seal(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    n = loop_count(size)
    payload = os.urandom(size + 1)  # the same DTLSInnerPlaintext bytes dtls_seal encrypts
    out = ffi.new("uint8_t[]", size + 64)
    ctx = cipher._ctx

    def fn() -> None:
        assert lib.dtls_bench_raw_aead_seal(ctx, AAD, 5, payload, size + 1, out, size + 64, n) == 0

    run(benchmark, cipher, "floor", size, n, fn)


@pytest.mark.parametrize("size", SIZES)
def test_c_seal(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    n = loop_count(size)
    payload = os.urandom(size)
    out = ffi.new("uint8_t[]", size + 64)
    ctx = cipher._ctx

    def fn() -> None:
        assert lib.dtls_bench_seal(ctx, FLAGS, payload, size, out, size + 64, n) == 0

    run(benchmark, cipher, "c_seal", size, n, fn)


@pytest.mark.parametrize("size", SIZES)
def test_c_open(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    n = loop_count(size)
    record = cipher.seal(3, 1, 23, os.urandom(size))
    out = ffi.new("uint8_t[]", size + 64)
    ctx = cipher._ctx

    def fn() -> None:
        assert lib.dtls_bench_open(ctx, record, len(record), out, size + 64, n) == 0

    run(benchmark, cipher, "c_open", size, n, fn)


def test_c_frame_mask(benchmark: Any, cipher: RecordCipher) -> None:
    n = 20_000
    out = ffi.new("uint8_t[]", 64)
    ctx = cipher._ctx

    def fn() -> None:
        assert lib.dtls_bench_frame_mask(ctx, FLAGS, out, 64, n) == 0

    run(benchmark, cipher, "frame_mask", 0, n, fn)


@pytest.mark.parametrize("size", SIZES)
def test_py_seal(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    payload = os.urandom(size)
    seal = cipher.seal
    run(benchmark, cipher, "py_seal", size, 1, lambda: seal(3, 12345, 23, payload))


@pytest.mark.parametrize("size", SIZES)
def test_py_seal_batch(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    items = [(i, 23, os.urandom(size)) for i in range(BATCH)]
    seal_batch = cipher.seal_batch
    run(benchmark, cipher, "py_seal_batch", size, BATCH, lambda: seal_batch(3, items))


@pytest.mark.parametrize("size", SIZES)
def test_py_open(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    record = cipher.seal(3, 1, 23, os.urandom(size))
    open_ = cipher.open
    run(benchmark, cipher, "py_open", size, 1, lambda: open_(record))


@pytest.mark.parametrize("size", SIZES)
def test_py_open_batch(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    records = cipher.seal_batch(3, [(i, 23, os.urandom(size)) for i in range(BATCH)])
    open_batch = cipher.open_batch
    run(benchmark, cipher, "py_open_batch", size, BATCH, lambda: open_batch(records))


@pytest.mark.parametrize("size", SIZES)
def test_py_seal_segments(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    """64 records sealed straight into one reused GSO buffer (`seal_segments`)."""
    data = os.urandom(size * BATCH)
    out = bytearray(BATCH * cipher.sealed_len(size))
    seal_segments = cipher.seal_segments
    run(benchmark, cipher, "py_seal_segments", size, BATCH,
        lambda: seal_segments(3, 1000, 23, data, size, out))  # fmt: skip


@pytest.mark.parametrize("size", SIZES)
def test_py_open_segments(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    """64 records opened in place in a GRO buffer (`open_segments`). Opening in place
    consumes the buffer, so each round first copies the records back in: `py_refill`
    times that copy alone, and the table subtracts it (the kernel fills a real buffer)."""
    sealed, stride = cipher.seal_segments(3, 1000, 23, os.urandom(size * BATCH), size)
    sealed = bytes(sealed)
    buf = bytearray(len(sealed))
    open_segments = cipher.open_segments

    def fn() -> object:
        buf[:] = sealed
        return open_segments(buf, stride, next_seq=1000)

    run(benchmark, cipher, "py_open_segments", size, BATCH, fn)


@pytest.mark.parametrize("size", SIZES)
def test_py_refill(benchmark: Any, cipher: RecordCipher, size: int) -> None:
    sealed = bytes(cipher.seal_segments(3, 1000, 23, os.urandom(size * BATCH), size)[0])
    buf = bytearray(len(sealed))

    def fn() -> None:
        buf[:] = sealed

    run(benchmark, cipher, "py_refill", size, BATCH, fn)


# ---- the table ----

COLUMNS = [
    ("floor", "floor (C AEAD)"),
    ("c_seal", "C seal"),
    ("py_seal", "py seal 1/call"),
    ("py_seal_batch", "py seal batch"),
    ("py_seal_segments", "py seal segments"),
    ("c_open", "C open"),
    ("py_open", "py open 1/call"),
    ("py_open_batch", "py open batch"),
    ("py_open_segments", "py open segments"),
]


def per_record(paths: list[str]) -> dict[tuple[str, str, int], float]:
    """Per-record nanoseconds by (suite, kind, size): the fastest round of each benchmark
    over the runs in `paths`, divided by the records it handled."""
    cells: dict[tuple[str, str, int], float] = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            info = b["extra_info"]
            key = (info["suite"], info["kind"], info["size"])
            ns = b["stats"]["min"] * 1e9 / info["records"]
            cells[key] = min(ns, cells.get(key, ns))
    for (suite, kind, size), refill in list(cells.items()):
        opened = cells.get((suite, "py_open_segments", size))
        if kind == "py_refill" and opened is not None:  # net of the copy back in
            cells[(suite, "py_open_segments", size)] = opened - refill
    return cells


def _suites(cells: dict[tuple[str, str, int], float]) -> list[str]:
    return sorted({s for s, _, _ in cells}, key=lambda s: [ids(x) for x in SUITES].index(s))


def table(path: str) -> str:
    """Per-record nanoseconds (the fastest round of each benchmark, divided by the records
    it handled) and the ratio to the floor."""
    cells = per_record([path])
    suites = _suites(cells)
    lines = [
        "| suite | size | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for suite in suites:
        for size in SIZES:
            floor = cells.get((suite, "floor", size))
            row = [suite, str(size)]
            for kind, _ in COLUMNS:
                v = cells.get((suite, kind, size))
                if v is None:
                    row.append("")
                elif kind == "floor" or not floor:
                    row.append(f"{v:,.0f}")
                else:
                    row.append(f"{v:,.0f} ({v / floor:.2f}x)")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| suite | framing + mask in C (ns/record) |", "|---|---:|"]
    for suite in suites:
        v = cells.get((suite, "frame_mask", 0))
        if v is not None:
            lines.append(f"| {suite} | {v:.0f} |")
    return "\n".join(lines)


COMPARED = ["floor", "c_seal", "c_open", "py_seal", "py_open", "py_seal_segments",
            "py_open_segments"]


def compare(base: list[str], other: list[str]) -> str:
    """Two builds side by side (e.g. system and bundled libcrypto): per-record ns of each,
    the fastest over its runs, and other/base."""
    a, b = per_record(base), per_record(other)
    titles = dict(COLUMNS)
    lines = [
        "| suite | size | " + " | ".join(titles[k] for k in COMPARED) + " |",
        "|---|---:|" + "---:|" * len(COMPARED),
    ]
    for suite in _suites(a):
        for size in SIZES:
            row = [suite, str(size)]
            for kind in COMPARED:
                x, y = a.get((suite, kind, size)), b.get((suite, kind, size))
                row.append(f"{x:,.0f} → {y:,.0f} ({y / x:.2f}x)" if x and y else "")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--compare":  # --compare BASE.json[,BASE2.json] OTHER.json[,...]
        print(compare(sys.argv[2].split(","), sys.argv[3].split(",")))
    else:
        print(table(sys.argv[1]))
