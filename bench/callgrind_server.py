"""Server instructions per handshake through `dtls.aio` (callgrind), which the machine's
load does not move.

    python bench/callgrind_server.py [--handshakes 20,220] [--concurrency 4] [--keep]

The server of `bench_workers.py` (config 0): `Context.server()` defaults (the cookie
exchange on every handshake, one session ticket), `dtls.aio.serve(..., cid_length=8)`,
an echo handler. It runs in-process under callgrind (`python bench/callgrind_server.py
serve`), the load generator outside valgrind (`load`: full handshakes, a new socket each,
`--concurrency` at a time, few enough that valgrind's slowness causes no retransmission;
each connection is closed with close_notify). The server is run once per count of
`--handshakes`; the difference of the instructions of two runs divided by the difference
of their counts is what one handshake costs (start-up, imports and the first handshakes'
warm-up cancel out). The server's stats are checked: one ClientHello pair and one
Finished per handshake (no retransmissions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dtls
import dtls.aio
from dtls.crypto import self_signed_certificate

# datagrams a server receives per handshake without retransmissions (counted): the
# ClientHello twice, the client's Finished flight, then its close_notify
DATAGRAMS_PER_HANDSHAKE = 4


async def echo_handler(conn: dtls.aio.AsyncConnection) -> None:
    async for message in conn:
        await conn.send(message)


async def serve(port_file: str) -> None:
    cert, key = self_signed_certificate(["localhost"])
    ctx = dtls.Context.server()
    ctx.load_cert_chain(certdata=cert, keydata=key)
    server = await dtls.aio.serve(echo_handler, "127.0.0.1", 0, ctx, cid_length=8,
                                  max_connections=100_000)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    Path(port_file).write_text(str(server.port))
    await stop
    stats = server.stats()
    print(f"handshakes_completed={stats.handshakes_completed} "
          f"datagrams_received={stats.datagrams_received}", file=sys.stderr, flush=True)
    server.close()
    await server.wait_closed()


async def load(port: int, count: int, concurrency: int) -> None:
    ctx = dtls.Context.client(verify=False, connection_id=b"")

    async def one() -> None:
        conn = await dtls.aio.connect("127.0.0.1", port, ctx, timeout=60)
        await conn.close()

    left = count
    while left:
        batch = min(concurrency, left)
        await asyncio.gather(*(one() for _ in range(batch)))
        left -= batch


def run(count: int, concurrency: int, out: str) -> tuple[int, int, int]:
    """(instructions, handshakes completed, datagrams received) of a server that made
    `count` handshakes under callgrind."""
    py = sys.executable
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as tmp:
        port_file = str(Path(tmp) / "port")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", py, __file__,
             "serve", "--port-file", port_file],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        try:
            for _ in range(1200):
                if Path(port_file).exists() and Path(port_file).read_text():
                    break
                if server.poll() is not None:
                    raise SystemExit("the server under valgrind exited")
                asyncio.run(asyncio.sleep(0.1))
            port = int(Path(port_file).read_text())
            subprocess.run([py, __file__, "load", "--port", str(port), "--count", str(count),
                            "--concurrency", str(concurrency)], env=env, check=True)
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=600)
    collected = re.search(r"Collected : (\d+)", err)
    stats = re.search(r"handshakes_completed=(\d+) datagrams_received=(\d+)", err)
    if collected is None or stats is None:
        raise SystemExit(f"no count in valgrind's output:\n{err}")
    return int(collected.group(1)), int(stats.group(1)), int(stats.group(2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="measure", choices=("measure", "serve", "load"))
    parser.add_argument("--port-file")
    parser.add_argument("--port", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--handshakes", default="20,220",
                        help="handshake counts, one server run each (differences of the first)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", default="/tmp/callgrind-server",
                        help="callgrind files: OUT.N.out for N handshakes")
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port_file))
        return
    if args.mode == "load":
        asyncio.run(load(args.port, args.count, args.concurrency))
        return
    counts = [int(c) for c in args.handshakes.split(",")]
    results = []
    for count in counts:
        instructions, completed, datagrams = run(count, args.concurrency,
                                                 f"{args.out}.{count}.out")
        print(f"{count} handshakes: {instructions:,} instructions, {completed} completed, "
              f"{datagrams} datagrams received", flush=True)
        if completed != count or datagrams != DATAGRAMS_PER_HANDSHAKE * count:
            extra = datagrams - DATAGRAMS_PER_HANDSHAKE * count
            print(f"  ({extra:+} datagrams against {DATAGRAMS_PER_HANDSHAKE} per handshake: "
                  "retransmissions or ACKs sent alone, ~30 k instructions each)")
        results.append((count, instructions))
    base_count, base = results[0]
    for count, instructions in results[1:]:
        per = (instructions - base) / (count - base_count)
        print(f"per handshake ({count} - {base_count}): {per:,.0f} instructions")


if __name__ == "__main__":
    main()
