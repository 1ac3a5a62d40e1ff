"""Server CPU per handshake and per record through 1 and 2 worker processes
(`dtls.aio.serve(..., workers=N)`), with the load generator in another process.

    python bench/bench_workers.py [--rounds 3] [--handshakes 1000] [--messages 200000]
                                  [--configs 1,2,1+dtls@6]

Each round runs the configurations one after the other (interleaved, so load on the host
hits all alike): `0` a plain in-process `dtls.aio` server (its CPU is this process's), `1`
and `2` workers; `+spin` or `+dtls` adds a third busy process beside the server (a bare
loop, or handshakes in memory: the same code as a worker); `@N` echoes over N connections
rather than 16. The load generator (this script with `load`, in a subprocess) makes
`--handshakes` full handshakes (cookie exchange, certificate, new socket each, 16 at a
time), then echoes `--messages` 100-byte messages (32 in flight per connection). Server
CPU is the workers' run time from /proc/PID/task/*/schedstat (ns) over each phase, divided
by the handshakes or the echoed messages (one record in, one out). The share is each
worker's handshakes_completed and records_opened; the server sockets' readable events,
recvmmsg and sendmmsg calls are counted in the workers (shared memory, by descriptor).

Why `1+dtls@6`: one load generator cannot keep two workers as busy as one, so each of two
workers wakes up for fewer datagrams (the fixed cost per wakeup is spread thinner), and
two workers beside the load generator are three busy processes on a 2-vCPU host (each
evicts the others' caches). One worker with a `dtls` neighbour and 6 connections has
both conditions of the 2-worker run (compare "datagrams per wakeup"): CPU per item of 2
workers against it is what a worker costs, on any host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dtls
import dtls.aio
from dtls.cid_layout import CidLayout
from dtls.crypto import self_signed_certificate

CONCURRENCY = 16
CONNECTIONS = 16
WINDOW = 32
TICK = os.sysconf("SC_CLK_TCK")

BENCH = Path(__file__).resolve().parent
# A third busy process beside the server: a bare loop (CPU only), or handshakes in memory
# (the same interpreter and code as a worker, so it takes the caches as a worker would).
SPINNERS = {
    "spin": "while True: pass",
    "dtls": f"import sys; sys.path.insert(0, {str(BENCH)!r})\n"
            "from bench_handshake import contexts, handshake\n"
            "c, s = contexts()\nwhile True: handshake(c, s)",
}

# What each server socket's reader did, by file descriptor (the workers inherit the
# parent's fds and this shared memory): readable events, recvmmsg calls, messages they
# returned (a UDP GRO run is one), sendmmsg calls.
WAKEUPS, RECEIVES, MESSAGES, SENDS = range(4)
COUNTS = multiprocessing.get_context("fork").Array("q", 4 * 1024, lock=False)


def _count_io() -> None:
    aio: Any = dtls.aio
    cls = aio._DatagramSocket
    read, receive, send = cls._read, aio.receive_datagrams, aio.send_datagrams

    def counted_read(self: Any) -> None:
        COUNTS[4 * self.fd + WAKEUPS] += 1
        read(self)

    def counted_receive(fd: int, *args: Any, **kwargs: Any) -> Any:
        got = receive(fd, *args, **kwargs)
        COUNTS[4 * fd + RECEIVES] += 1
        COUNTS[4 * fd + MESSAGES] += len(got)
        return got

    def counted_send(fd: int, datagrams: Any) -> Any:
        COUNTS[4 * fd + SENDS] += 1
        return send(fd, datagrams)

    cls._read, aio.receive_datagrams, aio.send_datagrams = (
        counted_read, counted_receive, counted_send)


def preempted(pid: int) -> int:
    """Times the process was descheduled while it could run (nonvoluntary switches)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads: /proc/PID/task/*/schedstat (ns), else
    /proc/PID/stat's user + system (fields 14 and 15, clock ticks)."""
    tasks = list(Path(f"/proc/{pid}/task").glob("*/schedstat"))
    if tasks:
        return sum(int(t.read_text().split()[0]) for t in tasks) / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---- the load generator (its own process) ----


async def load(port: int, phase: str, count: int, connections: int) -> dict[str, Any]:
    ctx = dtls.Context.client(verify=False, connection_id=b"")
    started = time.perf_counter()
    if phase == "handshakes":
        left = count

        async def one() -> None:
            conn = await dtls.aio.connect("127.0.0.1", port, ctx, timeout=30)
            await conn.close()

        while left:
            batch = min(CONCURRENCY, left)
            await asyncio.gather(*(one() for _ in range(batch)))
            left -= batch
        return {"seconds": time.perf_counter() - started, "count": count}
    conns = [await dtls.aio.connect("127.0.0.1", port, ctx, timeout=30)
             for _ in range(connections)]
    started = time.perf_counter()
    payload = bytes(100)
    per_conn = count // connections

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
    return {"seconds": seconds, "count": per_conn * connections}


# ---- the server side ----


async def echo_handler(conn: dtls.aio.AsyncConnection) -> None:
    async for message in conn:
        await conn.send(message)


@dataclass(frozen=True)
class Config:
    """One server set-up: `workers` (0: in-process), a CPU spinner beside it, and the
    load generator's echo connections."""

    workers: int
    spinner: str
    connections: int

    @classmethod
    def parse(cls, token: str) -> Config:
        """"2", "1+spin", "1@8" (8 echo connections), "1+spin@8"."""
        token, _, conns = token.partition("@")
        workers, _, spin = token.partition("+")
        return cls(int(workers), spin, int(conns or CONNECTIONS))

    def __str__(self) -> str:
        name = "in-process" if self.workers == 0 else str(self.workers)
        if self.spinner:
            name += f" + {self.spinner}"
        if self.connections != CONNECTIONS:
            name += f", {self.connections} conns"
        return name


def run_load(port: int, phase: str, count: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "load", "--port", str(port), "--phase", phase,
         "--count", str(count), "--connections", str(connections)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def measure(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    cert, key = self_signed_certificate(["localhost"])
    ctx = dtls.Context.server()
    ctx.load_cert_chain(certdata=cert, keydata=key)
    workers = config.workers
    if workers == 0:  # the anchor: one dtls.aio server in this process, no workers
        server = await dtls.aio.serve(echo_handler, "127.0.0.1", 0, ctx, cid_length=8,
                                      max_connections=100_000)
    else:
        server = await dtls.aio.serve(echo_handler, "127.0.0.1", 0, ctx, workers=workers,
                                      cid_layout=CidLayout(), max_connections=100_000)
    fds = [s.fileno() for s in server.sockets]

    async def snapshot() -> tuple[float, int, list[Any], list[list[int]]]:
        counts = [list(COUNTS[4 * fd:4 * fd + 4]) for fd in fds]
        if workers == 0:
            return time.process_time(), preempted(os.getpid()), [server.stats()], counts
        await server.refresh()
        pids = [p for p in server.pids if p is not None]
        return (sum(cpu_seconds(p) for p in pids), sum(preempted(p) for p in pids),
                [w.stats for w in server.worker_stats()], counts)

    spinner = None
    if config.spinner:
        spinner = subprocess.Popen([sys.executable, "-c", SPINNERS[config.spinner]])
    try:
        result: dict[str, Any] = {"config": str(config), "workers": workers,
                                  "steering": getattr(server, "steering", None)}
        for phase in ("handshakes", "records"):
            count = args.handshakes if phase == "handshakes" else args.messages
            before, switched, before_stats, before_counts = await snapshot()
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(
                None, run_load, server.port, phase, count, config.connections)
            now, switched_now, after, after_counts = await snapshot()
            cpu = now - before
            name = "handshakes_completed" if phase == "handshakes" else "records_opened"
            served = [getattr(a, name) - getattr(b, name)
                      for a, b in zip(after, before_stats, strict=True)]
            datagrams = [a.datagrams_received - b.datagrams_received
                         for a, b in zip(after, before_stats, strict=True)]
            io = [[x - y for x, y in zip(a, b, strict=True)]
                  for a, b in zip(after_counts, before_counts, strict=True)]
            wakeups = sum(i[WAKEUPS] for i in io)
            result[phase] = {
                "count": report["count"], "seconds": report["seconds"], "server_cpu": cpu,
                "cpu_us_per_item": cpu / report["count"] * 1e6,
                "per_second": report["count"] / report["seconds"],
                "share": [round(s / max(1, sum(served)), 3) for s in served],
                "preempted_per_item": (switched_now - switched) / report["count"],
                "datagrams_per_wakeup": sum(datagrams) / max(1, wakeups),
                "wakeups_per_item": wakeups / report["count"],
                "receives_per_item": sum(i[RECEIVES] for i in io) / report["count"],
                "sends_per_item": sum(i[SENDS] for i in io) / report["count"],
                "io": io,
            }
        return result
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        server.close()
        await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "load"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--phase", default="handshakes")
    parser.add_argument("--count", type=int)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--configs", default="1,2,1+dtls@6",
                        help="servers to run each round: 0 (in-process), 1, 2 workers; "
                        "+spin: a CPU spinner beside it; @N: N echo connections")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.mode == "load":
        print(json.dumps(asyncio.run(load(args.port, args.phase, args.count,
                                          args.connections))))
        return
    _count_io()
    results = []
    configs = [Config.parse(c) for c in args.configs.split(",")]
    for _ in range(args.rounds):
        for config in configs:  # interleaved: all see the same host load
            results.append(asyncio.run(measure(config, args)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    for phase in ("handshakes", "records"):
        print(f"\n{phase}:\n")
        print("| server | round | per s | server CPU µs each | share | preempted each | "
              "datagrams per wakeup | wakeups each | sendmmsg each |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for i, r in enumerate(results):
            p = r[phase]
            print(f"| {r['config']} | {i // len(configs) + 1} | {p['per_second']:,.0f} | "
                  f"{p['cpu_us_per_item']:,.1f} | {p['share']} | "
                  f"{p['preempted_per_item']:.3f} | {p['datagrams_per_wakeup']:.1f} | "
                  f"{p['wakeups_per_item']:.3f} | {p['sends_per_item']:.3f} |")
    print()
    for phase in ("handshakes", "records"):
        medians, best = {}, {}
        for config in configs:
            costs = sorted(r[phase]["cpu_us_per_item"] for r in results
                           if r["config"] == str(config))
            medians[str(config)], best[str(config)] = costs[len(costs) // 2], costs[0]
        print(f"{phase}: server CPU µs each, median (best): "
              + ", ".join(f"{n} {medians[n]:,.2f} ({best[n]:,.2f})" for n in medians))
        for config in configs:
            if "2" in medians and config.workers == 1:
                name = str(config)
                print(f"  2 workers / {name}: median {medians['2'] / medians[name]:.3f}, "
                      f"best {best['2'] / best[name]:.3f}")


if __name__ == "__main__":
    main()
