"""Server CPU per handshake and per record through 1 and 2 worker processes
(`dtls.aio.serve(..., workers=N)`), with the load generator in another process.

    python bench/bench_workers.py [--rounds 3] [--handshakes 300] [--messages 20000]

Each round runs a plain in-process `dtls.aio` server (the anchor: no workers; its CPU is
this process's), the 1-worker and the 2-worker server one after the other (interleaved,
so load on the host hits all alike). The load generator (this script with `load`, in a
subprocess) makes `--handshakes` full handshakes (cookie exchange, certificate, new socket
each, 16 at a time), then echoes `--messages` 100-byte messages over 16 connections (32 in
flight per connection). Server CPU is the workers' user + system time from /proc/PID/stat
over each phase; it is divided by the handshakes or the echoed messages (one record in,
one out). The share is each worker's handshakes_completed and records_opened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dtls
from dtls.cid_layout import CidLayout
from dtls.crypto import self_signed_certificate

CONCURRENCY = 16
CONNECTIONS = 16
WINDOW = 32
TICK = os.sysconf("SC_CLK_TCK")


def preempted(pid: int) -> int:
    """Times the process was descheduled while it could run (nonvoluntary switches)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---- the load generator (its own process) ----


async def load(port: int, handshakes: int, messages: int, phase: str) -> dict[str, Any]:
    ctx = dtls.Context.client(verify=False, connection_id=b"")
    started = time.perf_counter()
    if phase == "handshakes":
        left = handshakes

        async def one() -> None:
            conn = await dtls.aio.connect("127.0.0.1", port, ctx, timeout=30)
            await conn.close()

        while left:
            batch = min(CONCURRENCY, left)
            await asyncio.gather(*(one() for _ in range(batch)))
            left -= batch
        return {"seconds": time.perf_counter() - started, "handshakes": handshakes}
    conns = [await dtls.aio.connect("127.0.0.1", port, ctx, timeout=30)
             for _ in range(CONNECTIONS)]
    started = time.perf_counter()
    payload = bytes(100)
    per_conn = messages // CONNECTIONS

    async def echo(conn: dtls.aio.AsyncConnection) -> None:
        done = 0
        while done < per_conn:
            batch = min(WINDOW, per_conn - done)
            await conn.send_batch([payload] * batch)
            for _ in range(batch):
                await conn.recv()
            done += batch

    await asyncio.gather(*(echo(c) for c in conns))
    seconds = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return {"seconds": seconds, "messages": per_conn * CONNECTIONS}


# ---- the server side ----


async def echo_handler(conn: dtls.aio.AsyncConnection) -> None:
    async for message in conn:
        await conn.send(message)


def run_load(port: int, args: argparse.Namespace, phase: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "load", "--port", str(port), "--phase", phase,
         "--handshakes", str(args.handshakes), "--messages", str(args.messages)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def measure(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    cert, key = self_signed_certificate(["localhost"])
    ctx = dtls.Context.server()
    ctx.load_cert_chain(certdata=cert, keydata=key)
    if workers == 0:  # the anchor: one dtls.aio server in this process, no workers
        server = await dtls.aio.serve(echo_handler, "127.0.0.1", 0, ctx, cid_length=8,
                                      max_connections=100_000)
    else:
        server = await dtls.aio.serve(echo_handler, "127.0.0.1", 0, ctx, workers=workers,
                                      cid_layout=CidLayout(), max_connections=100_000)

    async def snapshot() -> tuple[float, int, list[Any]]:
        if workers == 0:
            return time.process_time(), preempted(os.getpid()), [server.stats()]
        await server.refresh()
        pids = [p for p in server.pids if p is not None]
        return (sum(cpu_seconds(p) for p in pids), sum(preempted(p) for p in pids),
                [w.stats for w in server.worker_stats()])

    try:
        result: dict[str, Any] = {"workers": workers,
                                  "steering": getattr(server, "steering", None)}
        for phase in ("handshakes", "records"):
            before, switched, before_stats = await snapshot()
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(None, run_load, server.port, args, phase)
            now, switched_now, after = await snapshot()
            cpu = now - before
            if phase == "handshakes":
                served = [a.handshakes_completed - b.handshakes_completed
                          for a, b in zip(after, before_stats, strict=True)]
                count = report["handshakes"]
            else:
                served = [a.records_opened - b.records_opened
                          for a, b in zip(after, before_stats, strict=True)]
                count = report["messages"]
            result[phase] = {
                "count": count, "seconds": report["seconds"], "server_cpu": cpu,
                "cpu_us_per_item": cpu / count * 1e6,
                "per_second": count / report["seconds"],
                "share": [round(s / max(1, sum(served)), 3) for s in served],
                "preempted_per_item": (switched_now - switched) / count,
            }
        return result
    finally:
        server.close()
        await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "load"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--phase", default="handshakes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--configs", default="0,1,2",
                        help="servers to run each round: 0 (in-process), 1, 2 workers")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.mode == "load":
        print(json.dumps(asyncio.run(load(args.port, args.handshakes, args.messages,
                                          args.phase))))
        return
    results = []
    configs = [int(c) for c in args.configs.split(",")]
    for _ in range(args.rounds):
        for workers in configs:  # interleaved: all see the same host load
            results.append(asyncio.run(measure(workers, args)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("| workers | round | handshakes/s | server CPU µs/handshake | share | preempted/"
          "handshake | messages/s | server CPU µs/message | share |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for i, r in enumerate(results):
        h, m = r["handshakes"], r["records"]
        name = "in-process" if r["workers"] == 0 else r["workers"]
        print(f"| {name} | {i // len(configs) + 1} | {h['per_second']:,.0f} | "
              f"{h['cpu_us_per_item']:,.0f} | {h['share']} | {h['preempted_per_item']:.2f} | "
              f"{m['per_second']:,.0f} | "
              f"{m['cpu_us_per_item']:,.1f} | {m['share']} |")
    if configs != [0, 1, 2]:
        return
    for phase in ("handshakes", "records"):
        one = sorted(r[phase]["cpu_us_per_item"] for r in results if r["workers"] == 1)
        two = sorted(r[phase]["cpu_us_per_item"] for r in results if r["workers"] == 2)
        median1, median2 = one[len(one) // 2], two[len(two) // 2]
        zero = sorted(r[phase]["cpu_us_per_item"] for r in results if r["workers"] == 0)
        print(f"{phase}: server CPU per item, 2 workers / 1 worker: median "
              f"{median2 / median1:.3f} ({median2:,.1f} / {median1:,.1f} µs), best "
              f"{two[0] / one[0]:.3f} ({two[0]:,.1f} / {one[0]:,.1f} µs); in-process "
              f"server: median {zero[len(zero) // 2]:,.1f}, best {zero[0]:,.1f} µs")


if __name__ == "__main__":
    main()
