"""Full DTLS 1.3 handshakes with both ends in one process, and memory per connection.

    python -m pytest bench/bench_handshake.py --benchmark-only     # pytest-benchmark
    python bench/bench_handshake.py [--profile] [--pairs 10000]     # rate, profile, memory

X25519, an ECDSA P-256 chain (leaf + intermediate) verified against its root with the
host name checked, TLS_AES_128_GCM_SHA256, no cookie exchange, no session ticket: the
issue's reference handshake. Memory is the RSS growth over N established pairs, divided.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pki import build_pki

from dtls.config import Context, CookieMode
from dtls.connection import Connection

CLIENT = ("192.0.2.1", 5000)
SERVER = ("192.0.2.2", 4433)


def contexts() -> tuple[Context, Context]:
    pki = build_pki()
    client = Context.client(cadata=pki.ca_pem)
    server = Context.server(cookie_mode=CookieMode.NEVER, session_tickets=0)
    server.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return client, server


def handshake(client_ctx: Context, server_ctx: Context) -> tuple[Connection, Connection]:
    """One handshake, datagrams moved in memory at time 0 until both sides are quiet."""
    client = Connection(client_ctx, server_name="localhost")
    server = Connection(server_ctx)
    client.connect(SERVER, 0.0)
    moved = True
    while moved:
        moved = False
        for data, _ in client.datagrams_to_send(0.0):
            server.receive_datagram(data, CLIENT, 0.0)
            moved = True
        for data, _ in server.datagrams_to_send(0.0):
            client.receive_datagram(data, SERVER, 0.0)
            moved = True
    if not (client.handshake_complete and server.handshake_complete):
        raise RuntimeError("handshake did not complete")
    return client, server


def test_full_handshake(benchmark: Any) -> None:
    client_ctx, server_ctx = contexts()
    handshake(client_ctx, server_ctx)
    benchmark(handshake, client_ctx, server_ctx)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pairs", type=int, default=10_000, help="for the memory figure")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    client_ctx, server_ctx = contexts()
    handshake(client_ctx, server_ctx)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        handshake(client_ctx, server_ctx)
        count += 1
    elapsed = time.perf_counter() - start
    print(f"handshakes: {count / elapsed:,.0f}/s ({elapsed / count * 1e6:,.0f} us per pair)")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [handshake(client_ctx, server_ctx) for _ in range(300)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    keep = []
    gc.collect()
    before = _rss()
    for _ in range(args.pairs):
        keep.append(handshake(client_ctx, server_ctx))
    gc.collect()
    per_side = (_rss() - before) / args.pairs / 2
    print(f"memory: {per_side / 1024:.1f} KiB per side over {args.pairs:,} established pairs")


if __name__ == "__main__":
    main()
