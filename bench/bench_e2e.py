"""End-to-end loopback benchmark: DTLS 1.3 against plain UDP over the same I/O path.

    python bench/bench_e2e.py                    # the table (about 30 s)
    python bench/bench_e2e.py --duration 1 --handshake-seconds 2
    python -m dtls bench --json

Sender and receiver are separate processes (this file, run with --peer). Each case sends
1,200-byte payloads for --duration seconds; the receiver counts what arrives intact (DTLS:
deprotected and replay-checked) and both report their CPU time. The I/O paths:

  per-call  one datagram per system call: send() / recv_into()
  mmsg      batches of 64: sendmmsg / recvmmsg (dtls.record.send_datagrams / receive_datagrams)
  gso       UDP GSO send (dtls.record.send_segments: one sendmsg per up to 64 datagrams)
            and UDP GRO receive (dtls.record.receive_datagrams into one buffer: recvmmsg of
            coalesced runs, one UDP_GRO cmsg each); the engine takes each run's datagrams
            in place in the GRO buffer (Connection.receive_segments). Where the kernel
            refuses UDP_GRO the receiver gets one datagram per message through the same
            call.

and what is sent over each:

  plain     the payload as it is
  record    DTLS 1.3 records sealed and opened with dtls.record.RecordCipher (batched on the
            batched paths; on gso straight into and out of the GSO/GRO buffers with
            seal_segments / open_segments), keyed with the connection's real application
            traffic secret (taken from the key log after a real handshake between the two
            processes)
  engine    the full sans-I/O engine: Connection.send (per-call path), send_batch (mmsg) or
            send_segments (gso) and datagrams_to_send / segments_to_send on one side;
            receive_datagram (per-call), receive_datagrams (mmsg) or receive_segments (gso)
            and next_event on the other

Then server handshakes per second: a dtls.aio server in one process, many concurrent
dtls.aio clients in another; the server's rate per CPU-second is the per-core figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

PAYLOAD_SIZE = 1200
BATCH = 64
SOCKET_BUFFER = 4 << 20
GRO_SLOT = 65536  # any UDP datagram and any UDP_GRO run
GRO_MESSAGES = 8  # GRO runs per receive call
PATHS = ("per-call", "mmsg", "gso")
MODES = ("plain", "record", "engine")
PATH_IO = {
    "per-call": "send / recv_into, one datagram per call",
    "mmsg": f"sendmmsg / recvmmsg, {BATCH} per call",
    "gso": "UDP GSO / GRO",
}
TARGETS = {"ratio": 0.95, "gso_per_core": 1_200_000, "handshakes_per_core": 3_000}
APP_EPOCH = 3
APPLICATION_DATA = 23
RECORD_SEQ_START = 1000  # beyond anything the handshake sent in epoch 3


# ---------------------------------------------------------------------------------------
# peers (child processes)
# ---------------------------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    sock.bind(("127.0.0.1", 0))
    return sock


def _contexts(suite: str, keylog: Callable[[str], None]) -> tuple[Any, Any]:
    from dtls.config import Context, parse_cipher_suites
    from dtls.crypto import self_signed_certificate

    cert, key = self_signed_certificate()
    common: dict[str, Any] = {"cipher_suites": parse_cipher_suites(suite),
                              "max_datagram_size": 1500, "keylog": keylog}
    server = Context.server(cookie_mode="never", session_tickets=0, **common)
    server.load_cert_chain(certdata=cert, keydata=key)
    client = Context.client(verify=False, **common)  # the peer's certificate is its own
    return client, server


def _handshake(sock: socket.socket, conn: Any, peer: Any, done: Callable[[], bool],
               on_datagram: Callable[[bytes, Any], bool], timeout: float = 10.0) -> Any:
    """Drive a sans-I/O Connection on a blocking socket until `done()`. `on_datagram`
    sees every datagram first and returns True when it consumed it."""
    deadline = time.monotonic() + timeout
    while not done():
        now = time.monotonic()
        if now > deadline or conn.state.value == "CLOSED":
            raise RuntimeError(f"benchmark handshake failed ({conn.state.value})")
        for data, addr in conn.datagrams_to_send(now):
            sock.sendto(data, addr or peer)
        while conn.next_event() is not None:
            pass
        if done():
            break
        timer = conn.get_timer()
        wait = min(deadline, timer if timer is not None else deadline) - now
        readable, _, _ = select.select([sock], [], [], max(wait, 0.0))
        if readable:
            data, addr = sock.recvfrom(65535)
            peer = peer or addr
            if not on_datagram(data, addr):
                conn.receive_datagram(data, addr, time.monotonic())
        else:
            conn.handle_timer(time.monotonic())
    for data, addr in conn.datagrams_to_send(time.monotonic()):
        sock.sendto(data, addr or peer)
    return peer


def _app_cipher(lines: list[str], conn: Any) -> Any:
    """The client-to-server application RecordCipher, from the key log."""
    from dtls.record import RecordCipher

    secret = next(line.split()[2] for line in lines if line.startswith("CLIENT_TRAFFIC_SECRET_0"))
    return RecordCipher.from_secret(conn.cipher_suite, bytes.fromhex(secret))


def run_receiver(cfg: dict[str, Any]) -> None:
    from dtls.connection import Connection
    from dtls.events import DataReceived, DataReceivedBatch
    from dtls.record import (
        BufferPool,
        OpenError,
        ReplayWindow,
        enable_gro,
        receive_datagrams,
    )

    mode, path, duration = cfg["mode"], cfg["path"], cfg["duration"]
    sock = _udp_socket()
    _emit({"port": sock.getsockname()[1]})
    keylog: list[str] = []
    conn: Any = None
    peer: Any = None
    if mode == "plain":
        data = b""
        while data != b"HELLO":
            data, peer = sock.recvfrom(2048)
    else:
        _, server_ctx = _contexts(cfg["suite"], keylog.append)
        conn = Connection(server_ctx)
        peer = _handshake(sock, conn, None, lambda: conn.handshake_complete,
                          lambda d, a: False)
    sock.connect(peer)
    # after the handshake: with UDP_GRO on, a receive may return several datagrams
    gro = path == "gso" and enable_gro(sock)
    sock.send(b"GO")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))

    cipher: Any = _app_cipher(keylog, conn) if mode == "record" else None
    window = ReplayWindow(128)
    pool = BufferPool(2048, BATCH)
    buf = bytearray(2048)
    view = memoryview(buf)
    gro_buffer = bytearray(GRO_MESSAGES * GRO_SLOT) if path == "gso" else bytearray()
    fd = sock.fileno()
    good = bad = 0
    started = cpu_started = 0.0
    idle_since = time.monotonic()

    def engine_events() -> int:
        n = 0
        while (event := conn.next_event()) is not None:
            if type(event) is DataReceivedBatch:  # one event per run; as the record
                n += event.lengths.count(PAYLOAD_SIZE)  # case, no object per record
            elif type(event) is DataReceived and len(event.data) == PAYLOAD_SIZE:
                n += 1
        return n

    while True:
        if path == "per-call":
            try:
                size = sock.recv_into(buf)
            except (BlockingIOError, TimeoutError):
                size = -1
            got = 0 if size < 0 else 1
            if size < 0:
                pass
            elif mode == "plain":
                good += size == PAYLOAD_SIZE
            elif mode == "record":
                opened = cipher.open(view[:size], window)
                good += type(opened) is not OpenError and len(opened.plaintext) == PAYLOAD_SIZE
            else:
                conn.receive_datagram(bytes(view[:size]), peer, time.monotonic())
                good += engine_events()
        elif path == "gso":
            runs = receive_datagrams(fd, GRO_MESSAGES, buffer=gro_buffer, buffer_size=GRO_SLOT)
            got = len(runs)
            for run in runs:
                if mode == "plain":
                    size = len(run.data)
                    seg = run.segment_size or size
                    good += size // seg if seg == PAYLOAD_SIZE else 0
                    good += size % seg == PAYLOAD_SIZE
                elif mode == "record":  # opened in place; one that did not open: length 0
                    segments = cipher.open_segments(run.data, run.segment_size, window)
                    good += segments.lengths.count(PAYLOAD_SIZE)
                else:  # each datagram of the run, opened in place in the GRO buffer
                    conn.receive_segments(run.data, run.segment_size, peer, time.monotonic())
                    good += engine_events()
        else:
            batch = receive_datagrams(fd, BATCH, pool)
            got = len(batch)
            if mode == "plain":
                good += sum(len(d.data) == PAYLOAD_SIZE for d in batch)
            elif mode == "record" and batch:
                for opened in cipher.open_batch([d.data for d in batch], window):
                    good += type(opened) is not OpenError and len(opened.plaintext) == PAYLOAD_SIZE
            elif batch:  # opened in the pool's slabs, a run in one C call
                conn.receive_datagrams([(d.data, peer) for d in batch], time.monotonic())
                good += engine_events()
            for d in batch:
                pool.release(d.slab)
        now = time.monotonic()
        if got:
            idle_since = now
            if not started:
                started, cpu_started = now, time.process_time()
                good, bad = (1 if good else 0), 0
        elif now - idle_since > 3.0:
            break  # the sender is gone
        if started and now - started >= duration:
            break
    elapsed = time.monotonic() - started if started else 0.0
    cpu = time.process_time() - cpu_started if started else 0.0
    for _ in range(3):
        sock.send(b"STOP")
    drain_until = time.monotonic() + 0.3  # the sender sees STOP before we go
    while time.monotonic() < drain_until:
        with contextlib.suppress(OSError):
            sock.recv_into(buf)
    _emit({"received": good, "bad": bad, "seconds": elapsed, "cpu": cpu, "gro": bool(gro)})


def run_sender(cfg: dict[str, Any]) -> None:
    from dtls.connection import Connection
    from dtls.record import send_datagrams, send_segments

    mode, path = cfg["mode"], cfg["path"]
    peer = ("127.0.0.1", cfg["port"])
    sock = _udp_socket()
    keylog: list[str] = []
    conn: Any = None
    go = False

    def on_datagram(data: bytes, addr: Any) -> bool:
        nonlocal go
        if data == b"GO":
            go = True
            return True
        return False

    if mode == "plain":
        sock.settimeout(0.2)
        while not go:
            sock.sendto(b"HELLO", peer)
            with contextlib.suppress(TimeoutError):
                on_datagram(sock.recv(64), peer)
        sock.settimeout(None)
    else:
        client_ctx, _ = _contexts(cfg["suite"], keylog.append)
        conn = Connection(client_ctx, server_name="localhost")
        conn.connect(peer, time.monotonic())
        _handshake(sock, conn, peer, lambda: conn.handshake_complete and go, on_datagram)
    sock.connect(peer)
    fd = sock.fileno()

    payload = os.urandom(PAYLOAD_SIZE)
    payloads = [payload] * BATCH
    plain_batch = [(payload, peer)] * BATCH
    plain_joined = payload * BATCH
    sealed = bytearray(BATCH * (PAYLOAD_SIZE + 64))  # seal_segments' output, reused
    cipher: Any = _app_cipher(keylog, conn) if mode == "record" else None
    seq = RECORD_SEQ_START

    def send_all(datagrams: Sequence[tuple[bytes, Any]]) -> None:
        while datagrams:
            datagrams = datagrams[send_datagrams(fd, datagrams):]

    def records(batched: bool = True) -> list[bytes]:
        """The next BATCH DTLS records: sealed in one C call, or by the engine (with
        send_batch, or one send per message)."""
        nonlocal seq
        if mode == "record":
            items = [(i, APPLICATION_DATA, payload) for i in range(seq, seq + BATCH)]
            seq += BATCH
            return list(cipher.seal_batch(APP_EPOCH, items))
        if batched:
            conn.send_batch(payloads)
        else:
            for _ in range(BATCH):
                conn.send(payload)
        return [d for d, _ in conn.datagrams_to_send(time.monotonic())]

    def send_round() -> None:
        nonlocal seq
        if path == "per-call":
            if mode == "plain":
                for _ in range(BATCH):
                    sock.send(payload)
            elif mode == "record":  # one seal per call, as a per-call sender would
                for i in range(seq, seq + BATCH):
                    sock.send(cipher.seal(APP_EPOCH, i, APPLICATION_DATA, payload))
                seq += BATCH
            else:  # one send per message, as a per-call sender would
                for data in records(batched=False):
                    sock.send(data)
        elif path == "mmsg":
            send_all(plain_batch if mode == "plain" else [(r, peer) for r in records()])
        elif mode == "plain":  # gso
            send_segments(fd, plain_joined, PAYLOAD_SIZE, peer)
        elif mode == "record":  # sealed straight into the GSO buffer, one record a segment
            data, segment_size = cipher.seal_segments(
                APP_EPOCH, seq, APPLICATION_DATA, plain_joined, PAYLOAD_SIZE, sealed
            )
            seq += BATCH
            send_segments(fd, data, segment_size, peer)
        else:
            conn.send_segments(plain_joined, PAYLOAD_SIZE)  # sealed into one GSO buffer
            for data, segment_size, _ in conn.segments_to_send(time.monotonic()):
                send_segments(fd, data, segment_size, peer)

    sent = rounds = 0
    deadline = time.monotonic() + cfg["duration"] + 15
    started, cpu_started = time.monotonic(), time.process_time()
    with contextlib.suppress(ConnectionRefusedError):  # the receiver has finished
        while time.monotonic() < deadline:
            send_round()
            sent += BATCH
            rounds += 1
            if rounds % 16 == 0:
                with contextlib.suppress(BlockingIOError):
                    if sock.recv(64, socket.MSG_DONTWAIT) == b"STOP":
                        break
    _emit({"sent": sent, "seconds": time.monotonic() - started,
           "cpu": time.process_time() - cpu_started})


def run_handshake_server(cfg: dict[str, Any]) -> None:
    from dtls import aio
    from dtls.config import Context
    from dtls.crypto import self_signed_certificate

    async def serve() -> None:
        cert, key = self_signed_certificate()
        ctx = Context.server(cookie_mode=cfg["cookie"])
        ctx.load_cert_chain(certdata=cert, keydata=key)
        server = await aio.serve(lambda conn: None, "127.0.0.1", 0, ctx,
                                 max_handshakes=4096, max_connections=100_000)
        _emit({"port": server.port})
        cpu, wall = time.process_time(), time.monotonic()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # the parent says stop
        stats = server.stats()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        server.close()
        _emit({"completed": stats.handshakes_completed, "failed": stats.handshakes_failed,
               "timed_out": stats.handshakes_timed_out, "cookies": stats.cookies_sent,
               "cpu": cpu, "seconds": wall})

    asyncio.run(serve())


def run_handshake_clients(cfg: dict[str, Any]) -> None:
    from dtls import aio
    from dtls.config import Context

    async def clients() -> None:
        ctx = Context.client(verify=False)
        done = failed = 0
        stop_at = time.monotonic() + cfg["duration"]

        async def worker() -> None:
            nonlocal done, failed
            while time.monotonic() < stop_at:
                try:
                    conn = await aio.connect("127.0.0.1", cfg["port"], ctx, timeout=5)
                    await conn.close()
                    done += 1
                except (OSError, TimeoutError, Exception):
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(cfg["clients"])))
        _emit({"completed": done, "failed": failed, "seconds": time.monotonic() - started})

    asyncio.run(clients())


PEERS = {
    "receiver": run_receiver,
    "sender": run_sender,
    "hs-server": run_handshake_server,
    "hs-clients": run_handshake_clients,
}


# ---------------------------------------------------------------------------------------
# the parent: cases, progress, table
# ---------------------------------------------------------------------------------------


class Progress:
    """A plain progress bar on stderr, drawn only when stderr is a terminal (in a log or a
    pipe it would be noise: the table on stdout has the results)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.done = total, 0
        self.enabled = enabled and sys.stderr.isatty()

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} {label}"
        sys.stderr.write("\r" + text.ljust(72)[:72])
        sys.stderr.flush()

    def step(self, label: str) -> None:
        self.done += 1
        self.show(label)

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()


def _spawn(role: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--peer", role, "--config", json.dumps(cfg)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def _read_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"benchmark peer {proc.args[3]} gave no answer")  # type: ignore
    return dict(json.loads(line))


def _finish(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_case(path: str, mode: str, duration: float, suite: str) -> dict[str, Any]:
    """One sender/receiver pair: datagrams per second at the receiver and CPU per datagram."""
    cfg = {"path": path, "mode": mode, "duration": duration, "suite": suite}
    receiver = _spawn("receiver", cfg)
    sender = None
    try:
        port = _read_json(receiver, 30)["port"]
        sender = _spawn("sender", {**cfg, "port": port})
        got = _read_json(receiver, duration + 40)
        sent = _read_json(sender, 30)
    finally:
        _finish(receiver, *([sender] if sender else []))
    seconds = got["seconds"] or float("nan")
    return {
        "path": path,
        "mode": mode,
        "per_second": got["received"] / seconds,
        "received": got["received"],
        "sent": sent["sent"],
        "receiver_cpu_us": 1e6 * got["cpu"] / max(got["received"], 1),
        "gro": got.get("gro", False),
        "sender_cpu_us": 1e6 * sent["cpu"] / max(sent["sent"], 1),
    }


def run_handshakes(seconds: float, clients: int, cookie: str) -> dict[str, Any]:
    server = _spawn("hs-server", {"cookie": cookie})
    load = None
    try:
        port = _read_json(server, 30)["port"]
        load = _spawn("hs-clients", {"port": port, "duration": seconds, "clients": clients})
        client_result = _read_json(load, seconds + 60)
        assert server.stdin is not None
        server.stdin.write("stop\n")
        server.stdin.flush()
        server_result = _read_json(server, 30)
    finally:
        _finish(server, *([load] if load else []))
    completed = server_result["completed"]
    return {
        "clients": clients,
        "cookie": cookie,
        "completed": completed,
        "failed": client_result["failed"],
        "per_second": client_result["completed"] / client_result["seconds"],
        "server_cpu_ms": 1e3 * server_result["cpu"] / max(completed, 1),
        "per_core": completed / server_result["cpu"] if server_result["cpu"] else 0.0,
    }


def _bottleneck_us(case: dict[str, Any]) -> float:
    """CPU per datagram of the busier side: with a core per side, the rate is 1e6 / this."""
    return float(max(case["sender_cpu_us"], case["receiver_cpu_us"]))


def format_table(results: dict[str, Any]) -> str:
    cases = {(r["path"], r["mode"]): r for r in results["cases"]}
    info = results["info"]
    lines = [
        f"End-to-end over loopback: {PAYLOAD_SIZE}-byte payloads, {info['suite']}, "
        f"{info['duration']:g} s per case",
        f"({info['platform']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"{info['openssl']}; GSO {'on' if info['gso'] else 'not offered'}, "
        f"GRO {'on' if info['gro'] else 'not offered'})",
        "",
        "Measured: datagrams/s received intact (DTLS: deprotected, replay-checked), and the",
        "ratio to plain UDP over the same path:",
        f"{'path':<9} {'I/O':<38} {'plain/s':>9} {'record/s':>9} {'ratio':>6} "
        f"{'engine/s':>9} {'ratio':>6}",
    ]
    for path in results["paths"]:
        plain = cases.get((path, "plain"))
        row = f"{path:<9} {PATH_IO[path]:<38} "
        row += f"{plain['per_second']:>9,.0f} " if plain else f"{'-':>9} "
        for mode in ("record", "engine"):
            r = cases.get((path, mode))
            if r is None:
                row += f"{'-':>9} {'-':>6} "
                continue
            ratio = r["per_second"] / plain["per_second"] if plain else float("nan")
            row += f"{r['per_second']:>9,.0f} {ratio:>6.2f} "
        lines.append(row.rstrip())
    lines += [
        "",
        "CPU per datagram in microseconds (sender/receiver), and the CPU-bound rate: datagrams",
        "per core-second of the busier side, with its ratio to plain:",
        f"{'path':<9} " + "".join(f"{m + ' tx/rx':>15} {'/core-s':>9} {'ratio':>6}"
                                  for m in MODES),
    ]
    for path in results["paths"]:
        plain = cases.get((path, "plain"))
        row = f"{path:<9} "
        for mode in MODES:
            r = cases.get((path, mode))
            if r is None:
                row += f"{'-':>15} {'-':>9} {'-':>6}"
                continue
            us = _bottleneck_us(r)
            ratio = _bottleneck_us(plain) / us if plain else float("nan")
            cpu = f"{r['sender_cpu_us']:.2f}/{r['receiver_cpu_us']:.2f}"
            row += f"{cpu:>15} {1e6 / us:>9,.0f} {ratio:>6.2f}"
        lines.append(row.rstrip())
    hs = results.get("handshakes")
    if hs:
        lines += [
            "",
            f"Handshakes: {hs['clients']} concurrent dtls.aio clients (another process), "
            f"cookie {hs['cookie']}: {hs['per_second']:,.0f}/s wall, {hs['failed']} failed;",
            f"server CPU {hs['server_cpu_ms']:.2f} ms per handshake = "
            f"{hs['per_core']:,.0f} handshakes per core-second",
        ]
    lines += ["", "Targets:"] + [f"  {t}" for t in assess(results)]
    return "\n".join(lines)


def assess(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each marked met or not met (wall and CPU-bound ratios)."""
    cases = {(r["path"], r["mode"]): r for r in results["cases"]}
    out = []
    for path in ("per-call", "mmsg"):
        plain = cases.get((path, "plain"))
        for mode in ("record", "engine"):
            r = cases.get((path, mode))
            if not (plain and r):
                continue
            wall = r["per_second"] / plain["per_second"]
            cpu = _bottleneck_us(plain) / _bottleneck_us(r)
            out.append(f"goodput >= {TARGETS['ratio']}x plain, {path}, {mode}: {wall:.2f}x "
                       f"measured, {cpu:.2f}x CPU-bound {_met(min(wall, cpu) >= TARGETS['ratio'])}")
    r = cases.get(("gso", "record"))
    if r:
        tx, rx = 1e6 / r["sender_cpu_us"], 1e6 / r["receiver_cpu_us"]
        gro = "GSO/GRO" if r.get("gro") else "GSO (GRO refused: recvmmsg)"
        out.append(f">= 1.2M records/s per core with {gro}: sender {tx / 1e6:.2f}M, "
                   f"receiver {rx / 1e6:.2f}M {_met(min(tx, rx) >= TARGETS['gso_per_core'])}")
    hs = results.get("handshakes")
    if hs:
        out.append(f">= 3,000 server handshakes/s per core: {hs['per_core']:,.0f} "
                   f"{_met(hs['per_core'] >= TARGETS['handshakes_per_core'])}")
    return out


def _met(ok: bool) -> str:
    return "(met)" if ok else "(NOT met)"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="End-to-end DTLS 1.3 vs plain UDP over loopback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=2.0, help="seconds per case (default 2)")
    p.add_argument("--paths", default=",".join(PATHS), help="per-call,mmsg,gso")
    p.add_argument("--modes", default=",".join(MODES), help="plain,record,engine")
    p.add_argument("--suite", default="TLS_AES_128_GCM_SHA256")
    p.add_argument("--handshake-seconds", type=float, default=3.0,
                   help="handshake-rate run length (0: skip)")
    p.add_argument("--clients", type=int, default=64, help="concurrent handshake clients")
    p.add_argument("--cookie", default="always", choices=("always", "never", "auto"))
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stderr is a terminal)")
    p.add_argument("--peer", choices=sorted(PEERS), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.peer:
        PEERS[args.peer](json.loads(args.config))
        return 0
    import dtls
    from dtls.record import enable_gro, gso_supported

    paths = [p for p in args.paths.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    if not set(paths) <= set(PATHS) or not set(modes) <= set(MODES):
        print(f"unknown path or mode: paths {PATHS}, modes {MODES}", file=sys.stderr)
        return 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        gso, gro = gso_supported(probe), enable_gro(probe)
    results: dict[str, Any] = {
        "info": {"suite": args.suite, "duration": args.duration,
                 "python": platform.python_version(),
                 "platform": f"{platform.system()} {platform.release()}",
                 "cpus": os.cpu_count(), "openssl": dtls.openssl_version, "gso": gso,
                 "gro": gro},
        "paths": paths, "cases": [],
    }
    steps = len(paths) * len(modes) + (1 if args.handshake_seconds > 0 else 0)
    progress = Progress(steps, enabled=not args.no_progress)
    for path in paths:
        for mode in modes:
            progress.show(f"{path} {mode} ...")
            case = run_case(path, mode, args.duration, args.suite)
            results["cases"].append(case)
            progress.step(f"{path} {mode}: {case['per_second']:,.0f}/s")
    if args.handshake_seconds > 0:
        progress.show("handshakes ...")
        results["handshakes"] = run_handshakes(args.handshake_seconds, args.clients, args.cookie)
        progress.step(f"handshakes: {results['handshakes']['per_second']:,.0f}/s")
    progress.finish()
    results["targets"] = assess(results)
    print(json.dumps(results, indent=2) if args.json else format_table(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
