"""The two crypto providers side by side: the C record layer ("openssl") and the
pure-Python one ("python", over `cryptography`), per record and per full handshake.

    python -m pytest bench/bench_providers.py --benchmark-only     # pytest-benchmark
    python bench/bench_providers.py [--seconds 0.5]                 # the Markdown tables

Per record: `RecordCipher.seal` and `RecordCipher.open(bytes)` through the Python API, one
record per call (what the engine does), unified header S=1 L=1 without a CID, at 64, 1200
and 16384 bytes of payload, for every suite. Per handshake: bench_handshake.py's reference
handshake (X25519, ECDSA P-256 chain, AES-128-GCM, both ends in one process) with both
record layers on one provider.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_handshake import contexts, handshake

from dtls.iana import CipherSuite
from dtls.provider import ENVIRONMENT_VARIABLE, get_provider

PROVIDERS = ["openssl", "python"]
SUITES = list(CipherSuite)
SIZES = [64, 1200, 16384]


def ids(suite: int) -> str:
    return CipherSuite(suite).name.removeprefix("TLS_")


def cipher(provider: str, suite: int) -> Any:
    return get_provider(provider).cipher_from_secret(suite, bytes(range(48)))


@contextmanager
def engines_on(provider: str) -> Iterator[None]:
    """Connections made inside take their record layer from `provider`."""
    saved = os.environ.get(ENVIRONMENT_VARIABLE)
    os.environ[ENVIRONMENT_VARIABLE] = provider
    try:
        yield
    finally:
        if saved is None:
            del os.environ[ENVIRONMENT_VARIABLE]
        else:
            os.environ[ENVIRONMENT_VARIABLE] = saved


def seal_op(provider: str, suite: int, size: int) -> Callable[[], object]:
    seal, payload = cipher(provider, suite).seal, os.urandom(size)
    return lambda: seal(3, 12345, 23, payload)


def open_op(provider: str, suite: int, size: int) -> Callable[[], object]:
    c = cipher(provider, suite)
    record, open_ = c.seal(3, 1, 23, os.urandom(size)), c.open
    return lambda: open_(record)


def handshake_op(provider: str) -> Callable[[], object]:
    client_ctx, server_ctx = contexts()

    def one() -> object:
        with engines_on(provider):
            return handshake(client_ctx, server_ctx)

    one()
    return one


# ---- pytest-benchmark ----


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_seal(benchmark: Any, provider: str, suite: int, size: int) -> None:
    benchmark.group = f"seal {ids(suite)} {size}"
    benchmark(seal_op(provider, suite, size))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("suite", SUITES, ids=ids)
def test_open(benchmark: Any, provider: str, suite: int, size: int) -> None:
    benchmark.group = f"open {ids(suite)} {size}"
    benchmark(open_op(provider, suite, size))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_full_handshake(benchmark: Any, provider: str) -> None:
    benchmark.group = "full handshake"
    benchmark(handshake_op(provider))


# ---- the tables ----


def compare(fns: list[Callable[[], object]], seconds: float) -> list[float]:
    """Seconds per call of each function: the fastest of 15 rounds, the functions taking
    turns round by round (so that a busy spell on the machine hits them alike)."""
    counts = []
    for fn in fns:
        fn()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 30 or n < 2:
            fn()
            n += 1
        counts.append(n)
    fastest = [float("inf")] * len(fns)
    for _ in range(15):
        for i, (fn, n) in enumerate(zip(fns, counts, strict=True)):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            fastest[i] = min(fastest[i], (time.perf_counter() - t) / n)
    return fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per cell, about")
    parser.add_argument("--suites", default=",".join(s.name for s in SUITES))
    args = parser.parse_args()
    suites = [CipherSuite[name] for name in args.suites.split(",")]
    for name in PROVIDERS:
        print(f"<!-- {name}: {get_provider(name).description} -->")
    print("\nns per record (fastest of 15 interleaved rounds), Python API, one record per call\n")
    print("| suite | size | C seal | py seal | ratio | C open | py open | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for suite in suites:
        for size in SIZES:
            row = [ids(suite), str(size)]
            for op in (seal_op, open_op):
                c, py = (t * 1e9 for t in compare([op(p, suite, size) for p in PROVIDERS],
                                                  args.seconds))  # fmt: skip
                ratios.append(py / c)
                row += [f"{c:,.0f}", f"{py:,.0f}", f"{py / c:.1f}x"]
            print("| " + " | ".join(row) + " |", flush=True)
    print(f"\nratio python/C per record: {min(ratios):.1f}x to {max(ratios):.1f}x")
    c, py = (t * 1e3 for t in compare([handshake_op(p) for p in PROVIDERS], args.seconds * 10))
    print("\n| full handshake (both ends) | C records | python records | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| ms per handshake | {c:.2f} | {py:.2f} | {py / c:.2f}x |")


if __name__ == "__main__":
    main()
