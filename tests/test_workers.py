"""Worker processes on one port (dtls.workers, dtls.reuseport) and hosts sharing a secret:
real processes and sockets on loopback, each test bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_aio import client_context, run, server_context

from dtls import aio, errors, reuseport
from dtls.cid_layout import CidLayout
from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.events import DataReceived, HandshakeCompleted
from dtls.reuseport import (
    BPF_A,
    BPF_ABS,
    BPF_ALU,
    BPF_AND,
    BPF_B,
    BPF_H,
    BPF_JEQ,
    BPF_JGE,
    BPF_JMP,
    BPF_LD,
    BPF_LEN,
    BPF_RET,
    BPF_RSH,
    BPF_W,
    FALLBACK,
    Instruction,
    attach_cid_steering,
    cid_steering_program,
    reuseport_group,
)
from dtls.server_secret import ServerSecret
from dtls.workers import Supervisor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux reuseport")

LOCAL = "127.0.0.1"


# ---- the CBPF program, interpreted ----


def interpret(program: list[Instruction], packet: bytes) -> int:
    """A classic-BPF interpreter for the instructions the program uses, with the kernel's
    semantics: a load past the end of the packet ends the program with 0."""
    a = 0
    pc = 0
    for _ in range(len(program) + 1):
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        if cls == BPF_LD:
            mode, size = code & 0xE0, code & 0x18
            if mode == BPF_LEN:
                a = len(packet)
            else:
                assert mode == BPF_ABS
                width = {BPF_W: 4, BPF_H: 2, BPF_B: 1}[size]
                if k + width > len(packet):
                    return 0
                a = int.from_bytes(packet[k : k + width], "big")
        elif cls == BPF_ALU:
            op = code & 0xF0
            assert code & 0x08 == 0  # BPF_K
            assert op in (BPF_AND, BPF_RSH), f"{op:#x}"
            a = a & k if op == BPF_AND else a >> k
        elif cls == BPF_JMP:
            op = code & 0xF0
            assert op in (BPF_JEQ, BPF_JGE), f"{op:#x}"
            taken = a == k if op == BPF_JEQ else a >= k
            pc += 1 + (jt if taken else jf)
            continue
        elif cls == BPF_RET:
            return a if code & 0x18 == BPF_A else k
        else:
            pytest.fail(f"unexpected instruction {code:#x}")
        pc += 1
    pytest.fail("the program did not end")


def record_with_cid(cid: bytes, payload: bytes = bytes(20)) -> bytes:
    # RFC 9147 §4: 0b001 C=1 S=1 L=1 EE=11, CID, 16-bit sequence, length
    return bytes([0x3F]) + cid + b"\x00\x07" + len(payload).to_bytes(2, "big") + payload


def client_hello_datagram() -> bytes:
    client = Connection(Context.client(verify=False), server_name="localhost")
    client.connect(("192.0.2.1", 4433), 0.0)
    ((data, _),) = client.datagrams_to_send(0.0)
    return data


@pytest.mark.parametrize("host_id_length", [0, 1, 2, 3])
def test_cbpf_program_picks_the_cid_worker_else_falls_back(host_id_length: int) -> None:
    layout = CidLayout(length=8, host_id=(1 << (8 * host_id_length)) - 2 if host_id_length
                       else 0, host_id_length=host_id_length)
    program = cid_steering_program(layout, workers=3)
    for worker in range(3):
        cid = layout.for_worker(worker).generate()
        assert interpret(program, record_with_cid(cid)) == worker
        assert interpret(program, bytes([0x30]) + cid) == worker  # the least that has a CID
    cid = layout.for_worker(1).generate()
    assert interpret(program, bytes([0x2F]) + cid + b"\x00\x07\x00\x01x") == FALLBACK  # no C bit
    assert interpret(program, bytes([0x30]) + cid[:-1]) == FALLBACK  # too short for a CID
    assert interpret(program, b"") == FALLBACK
    assert interpret(program, b"\x3f") == FALLBACK
    assert interpret(program, client_hello_datagram()) == FALLBACK  # DTLSPlaintext
    # A worker index past the group, or another host's CID: the kernel's hash.
    assert interpret(program, record_with_cid(layout.for_worker(7).generate())) == FALLBACK
    if host_id_length:
        other = CidLayout(length=8, host_id=1, host_id_length=host_id_length, worker=1)
        assert interpret(program, record_with_cid(other.generate())) == FALLBACK


def test_cbpf_program_agrees_with_the_layout_on_random_datagrams() -> None:
    layout = CidLayout(length=6, host_id=0)
    program = cid_steering_program(layout, workers=2)
    for _ in range(2000):
        data = os.urandom(os.urandom(1)[0] % 12)
        if data and os.urandom(1)[0] & 1:
            data = bytes([0x30 | data[0] & 0x0F, 0, data[0] & 1]) + data[1:]
        expected = layout.worker_of_datagram(data)
        if expected is not None and (expected >= 2 or data[1] != 0):
            expected = None
        assert interpret(program, data) == (FALLBACK if expected is None else expected)


# ---- the kernel runs it ----


def arrivals(socks: list[socket.socket], client: socket.socket, data: bytes,
             to: tuple[str, int]) -> list[int]:
    """The indexes of the group's sockets that `data` from `client` reached."""
    client.sendto(data, to)
    ready, _, _ = select.select(socks, [], [], 2.0)
    for sock in ready:
        sock.recv(2048)
    return sorted(socks.index(s) for s in ready)


def test_kernel_steers_by_cid_and_hashes_the_rest() -> None:
    layout = CidLayout(length=8, host_id=1)
    socks = reuseport_group(socket.AF_INET, (LOCAL, 0), 2)
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(24)]
    try:
        assert attach_cid_steering(socks[0], cid_steering_program(layout, 2))
        to = socks[0].getsockname()
        hello = client_hello_datagram()
        hashed: set[int] = set()
        for client in clients:
            for worker in (0, 1):
                data = record_with_cid(layout.for_worker(worker).generate())
                assert arrivals(socks, client, data, to) == [worker]
            (index,) = arrivals(socks, client, hello, to)
            hashed.add(index)
            # The same 4-tuple hashes to the same socket every time.
            assert arrivals(socks, client, hello, to) == [index]
        assert hashed == {0, 1}  # 24 source ports: the hash used both sockets
    finally:
        for s in socks + clients:
            s.close()


# ---- two workers ----


async def tagged_echo(conn: aio.AsyncConnection) -> None:
    """Echo, tagged with the worker's pid."""
    async for message in conn:
        await conn.send(message + b"|" + str(os.getpid()).encode())


def worker_of(sup: Supervisor, reply: bytes) -> int:
    return sup.pids.index(int(reply.rsplit(b"|", 1)[1]))


async def start(pki: Any, workers: int = 2, **settings: Any) -> Supervisor:
    settings.setdefault("cookie_mode", CookieMode.ALWAYS)
    ctx = server_context(pki, **settings)
    options = {k: settings.pop(k) for k in ("cid_layout",) if k in settings}
    sup = await aio.serve(tagged_echo, LOCAL, 0, ctx, workers=workers, drain_timeout=3.0,
                          **options)
    assert isinstance(sup, Supervisor)
    return sup


async def wait_for(condition: Callable[[], bool], sup: Supervisor, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await sup.refresh()
        await asyncio.sleep(0.02)


async def port_for_worker(sup: Supervisor, worker: int, host: str = LOCAL) -> int:
    """A free local port whose 4-tuple the kernel hashes to `worker` (found by sending
    a datagram no worker can use and seeing which one dropped it)."""
    for _ in range(40):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((LOCAL, 0))
            await sup.refresh()
            before = [w.stats.garbage_dropped for w in sup.worker_stats()]
            probe.sendto(b"\x17\xfe\xfd probe", (host, sup.port))
            await wait_for(lambda before=before: [  # type: ignore[misc]
                w.stats.garbage_dropped for w in sup.worker_stats()] != before, sup)
            after = [w.stats.garbage_dropped for w in sup.worker_stats()]
            if after[worker] > before[worker]:
                return int(probe.getsockname()[1])
        finally:
            probe.close()
    pytest.fail(f"no port hashes to worker {worker}")


async def connect(port: int, pki: Any, *, local_port: int | None = None,
                  host: str = LOCAL, **kwargs: Any) -> aio.AsyncConnection:
    ctx = kwargs.pop("context", None) or client_context(pki, connection_id=b"")
    local = (LOCAL, local_port) if local_port is not None else None
    return await aio.connect(host, port, ctx, server_name="localhost", local_addr=local,
                             timeout=10.0, **kwargs)


def test_two_workers_share_200_handshakes(pki: Any) -> None:
    async def main() -> None:
        sup = await start(pki)
        try:
            assert sup.steering
            served = [0, 0]

            async def one() -> None:
                conn = await connect(sup.port, pki)
                await conn.send(b"hello")
                served[worker_of(sup, await conn.recv())] += 1
                await conn.close()

            for _ in range(25):
                await asyncio.gather(*(one() for _ in range(8)))
            assert sum(served) == 200
            # Each of 200 source ports hashes to either worker: a fair share each.
            assert min(served) >= 60, served
            await wait_for(lambda: sup.stats().handshakes_completed == 200, sup)
            assert [w.stats.handshakes_completed for w in sup.worker_stats()] == served
            assert sup.stats().cookies_sent == 200
        finally:
            sup.close()
            await sup.wait_closed()

    run(main(), timeout=120)


class Client:
    """A sans-I/O client engine on a UDP socket that the test may swap (a NAT rebinding)."""

    def __init__(self, engine: Connection, sock: socket.socket, server: tuple[str, int]) -> None:
        self.engine = engine
        self.sock = sock
        self.server = server
        self.events: list[Any] = []

    def flush(self) -> None:
        for data, _ in self.engine.datagrams_to_send(time.monotonic()):
            self.sock.sendto(data, self.server)

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self.flush()
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            ready, _, _ = select.select([self.sock], [], [], 0)
            if ready:
                data, addr = self.sock.recvfrom(65536)
                self.engine.receive_datagram(data, addr, time.monotonic())
            else:
                await asyncio.sleep(0.005)
            timer = self.engine.get_timer()
            if timer is not None and timer <= time.monotonic():
                self.engine.handle_timer(time.monotonic())
            while (event := self.engine.next_event()) is not None:
                self.events.append(event)
            self.flush()

    async def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        await self.until(lambda: time.monotonic() >= end, timeout=seconds + 1)

    def received(self) -> list[bytes]:
        return [e.data for e in self.events if isinstance(e, DataReceived)]

    def completed(self) -> bool:
        return any(isinstance(e, HandshakeCompleted) for e in self.events)


def udp(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, port))
    sock.setblocking(False)
    return sock


def test_client_changing_port_keeps_its_worker_and_connection(pki: Any) -> None:
    async def main() -> None:
        sup = await start(pki)
        try:
            engine = Connection(client_context(pki, connection_id=b""), server_name="localhost")
            client = Client(engine, udp(), (LOCAL, sup.port))
            engine.connect(client.server, time.monotonic())
            await client.until(client.completed)
            engine.send(b"before")
            await client.until(lambda: len(client.received()) == 1)
            home = worker_of(sup, client.received()[0])
            # The NAT rebinds the client to a port whose 4-tuple hashes to the other worker.
            client.sock.close()
            client.sock = udp(await port_for_worker(sup, 1 - home))
            engine.send(b"moved")  # its reply goes to the old address: lost, as with NAT
            # The server checks the new address (draft-ietf-tls-dtls-rrc) and moves there.
            deadline = time.monotonic() + 10
            while sup.worker_stats()[home].stats.address_changes != 1:
                assert time.monotonic() < deadline, "no return routability check"
                await client.pump(0.05)
                await sup.refresh()
            messages = [b"after %d " % i + os.urandom(64) for i in range(10)]
            for m in messages:
                engine.send(m)
            await client.until(lambda: len(client.received()) >= 11)
            replies = client.received()[1:]
            assert [r.rsplit(b"|", 1)[0] for r in replies] == messages
            assert {worker_of(sup, r) for r in replies} == {home}
            await sup.refresh()
            assert sum(w.stats.unknown_cid_dropped for w in sup.worker_stats()) == 0
            other = sup.worker_stats()[1 - home].stats
            assert other.datagrams_routed_by_cid == other.handshakes_started == 0
            # Every datagram but the two ClientHellos (and probes) went by CID, all of them
            # to the home worker whatever the port.
            h = sup.worker_stats()[home].stats
            assert h.datagrams_routed_by_cid == h.datagrams_received - h.garbage_dropped - 2
        finally:
            sup.close()
            await sup.wait_closed()

    run(main(), timeout=60)


async def session_from(sup: Supervisor, pki: Any, client: Context) -> tuple[Any, int]:
    """A session ticket from a first connection, and the worker that issued it."""
    conn = await connect(sup.port, pki, context=client)
    await conn.send(b"first")
    worker = worker_of(sup, await conn.recv())
    deadline = time.monotonic() + 5
    while conn.session is None:
        assert time.monotonic() < deadline, "no ticket"
        await asyncio.sleep(0.01)
    session = conn.session
    await conn.close()
    return session, worker


def test_resumption_and_0rtt_whichever_worker(pki: Any) -> None:
    async def main() -> None:
        sup = await start(pki, cookie_mode=CookieMode.NEVER, max_early_data_size=4096)
        try:
            client = client_context(pki, connection_id=b"", early_data=True)
            session, issuer = await session_from(sup, pki, client)
            for worker in (issuer, 1 - issuer):
                port = await port_for_worker(sup, worker)
                conn = await connect(sup.port, pki, context=client, local_port=port,
                                     session=session, early_data=[b"zero rtt"])
                assert conn.handshake is not None and conn.handshake.resumed
                # RFC 9846 §8: only the issuer, which holds the replay window, takes 0-RTT;
                # elsewhere it is refused and the data is sent again after the handshake.
                assert conn.handshake.early_data_accepted == (worker == issuer)
                reply = await conn.recv()
                assert reply.rsplit(b"|", 1)[0] == b"zero rtt" and worker_of(sup, reply) == worker
                await conn.close()
        finally:
            sup.close()
            await sup.wait_closed()

    run(main(), timeout=60)


def test_cookie_from_a_worker_before_its_restart_is_accepted(pki: Any) -> None:
    async def main() -> None:
        sup = await start(pki)
        try:
            port = await port_for_worker(sup, 0)
            engine = Connection(client_context(pki), server_name="localhost")
            client = Client(engine, udp(port), (LOCAL, sup.port))
            engine.connect(client.server, time.monotonic())
            client.flush()
            ready, _, _ = select.select([client.sock], [], [], 5.0)
            assert ready
            hello_retry, addr = client.sock.recvfrom(65536)
            old = sup.pids[0]
            assert old is not None
            os.kill(old, signal.SIGKILL)  # the worker that made the cookie dies
            await wait_for(lambda: sup.pids[0] not in (None, old), sup)
            engine.receive_datagram(hello_retry, addr, time.monotonic())
            await client.until(client.completed)  # the new process accepts its cookie
            await sup.refresh()
            assert sup.worker_stats()[0].stats.handshakes_completed == 1
            assert sup.worker_stats()[0].restarts == 1
        finally:
            sup.close()
            await sup.wait_closed()

    run(main(), timeout=60)


def test_killed_worker_is_restarted_and_the_other_keeps_its_connections(pki: Any) -> None:
    async def main() -> None:
        sup = await start(pki)
        try:
            conns = {}
            for worker in (0, 1):
                conns[worker] = await connect(sup.port, pki,
                                              local_port=await port_for_worker(sup, worker))
                await conns[worker].send(b"hi")
                assert worker_of(sup, await conns[worker].recv()) == worker
            await wait_for(lambda: sup.stats().handshakes_completed == 2, sup)  # reported
            victim = sup.pids[1]
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            await wait_for(lambda: sup.pids[1] not in (None, victim), sup)
            for i in range(20):  # worker 0's connection is untouched
                await conns[0].send(b"still %d" % i)
                assert (await conns[0].recv()).rsplit(b"|", 1)[0] == b"still %d" % i
            assert sup.worker_stats()[1].restarts == 1 and sup.worker_stats()[1].alive
            # The restarted worker takes new handshakes on its socket.
            fresh = await connect(sup.port, pki, local_port=await port_for_worker(sup, 1))
            await fresh.send(b"new")
            assert worker_of(sup, await fresh.recv()) == 1
            await sup.refresh()
            assert sup.stats().handshakes_completed == 3  # with what the dead one reported
        finally:
            sup.close()
            await sup.wait_closed()

    run(main(), timeout=60)


# ---- the CLI: SIGTERM drains and exits 0 ----

PYTHON = [sys.executable, "-m", "dtls"]


def start_cli(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([*PYTHON, "server", "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("listening on"):
        proc.kill()
        pytest.fail(f"server did not start: {first!r} {proc.communicate(timeout=5)[1]}")
    return proc, int(first.rsplit(":", 1)[1])


def test_cli_workers_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    proc, port = start_cli("--workers", "2", "--echo", "--json", "--secrets", str(secrets),
                           "--drain-timeout", "3", "-q")
    try:
        assert secrets.stat().st_mode & 0o777 == 0o600

        async def main() -> None:
            ctx = Context.client(verify=False, connection_id=b"")
            conns = [await aio.connect(LOCAL, port, ctx, timeout=10) for _ in range(4)]
            for conn in conns:
                await conn.send(b"ping")
                assert await conn.recv() == b"ping"
            proc.send_signal(signal.SIGTERM)
            for conn in conns:  # close_notify from the worker (RFC 9846 §6.1)
                with pytest.raises(errors.ConnectionStateError):
                    await asyncio.wait_for(conn.recv(), 5)

        run(main(), timeout=30)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["server_stats"]["handshakes_completed"] == 4
    assert len(summary["workers"]) == 2
    assert sum(w["stats"]["handshakes_completed"] for w in summary["workers"]) == 4


# ---- many hosts: two instances sharing a secrets file ----


def test_two_hosts_sharing_secrets_resume_but_0rtt_only_at_the_issuer(
    pki: Any, tmp_path: Path
) -> None:
    secrets = tmp_path / "fleet-secret"

    async def host(address: str, host_id: int) -> Supervisor:
        ctx = server_context(pki, cookie_mode=CookieMode.AUTO, max_early_data_size=4096,
                             shared_secret=ServerSecret.from_file(secrets))
        sup = await aio.serve(tagged_echo, address, 0, ctx, workers=1,
                              cid_layout=CidLayout(host_id=host_id), drain_timeout=3.0)
        assert isinstance(sup, Supervisor)
        return sup

    async def main() -> None:
        a, b = await host("127.0.0.2", 2), await host("127.0.0.3", 3)
        try:
            client = client_context(pki, connection_id=b"", early_data=True)
            first = await connect(a.port, pki, context=client, host="127.0.0.2")
            assert first.connection.peer_cid is not None
            assert first.connection.peer_cid[:1] == b"\x02"  # the host byte
            await first.send(b"x")
            await first.recv()
            while first.session is None:
                await asyncio.sleep(0.01)
            session = first.session
            await first.close()
            # Resume on the other host: the ticket opens there (shared secret) ...
            other = await connect(b.port, pki, context=client, host="127.0.0.3",
                                  session=session, early_data=[b"early to b"])
            assert other.handshake is not None and other.handshake.resumed
            # ... but its 0-RTT is the issuer's only (RFC 9846 §8): sent again as 1-RTT.
            assert not other.handshake.early_data_accepted
            assert (await other.recv()).rsplit(b"|", 1)[0] == b"early to b"
            await other.close()
            home = await connect(a.port, pki, context=client, host="127.0.0.2",
                                 session=session, early_data=[b"early to a"])
            assert home.handshake is not None and home.handshake.early_data_accepted
            assert (await home.recv()).rsplit(b"|", 1)[0] == b"early to a"
            await home.close()
        finally:
            for sup in (a, b):
                sup.close()
                await sup.wait_closed()

    run(main(), timeout=60)


def test_two_hosts_accept_each_others_cookies(pki: Any, tmp_path: Path) -> None:
    secrets = tmp_path / "fleet-secret"

    async def main() -> None:
        sups = []
        for address, host_id in (("127.0.0.2", 2), ("127.0.0.3", 3)):
            ctx = server_context(pki, shared_secret=ServerSecret.from_file(secrets))
            sups.append(await aio.serve(tagged_echo, address, 0, ctx, workers=1,
                                        cid_layout=CidLayout(host_id=host_id)))
        try:
            engine = Connection(client_context(pki), server_name="localhost")
            client = Client(engine, udp(), ("127.0.0.2", sups[0].port))
            engine.connect(client.server, time.monotonic())
            client.flush()
            ready, _, _ = select.select([client.sock], [], [], 5.0)
            assert ready
            hello_retry, addr = client.sock.recvfrom(65536)
            # The balancer sends the second ClientHello to the other host.
            client.server = ("127.0.0.3", sups[1].port)
            engine.receive_datagram(hello_retry, addr, time.monotonic())
            await client.until(client.completed)
            await sups[1].refresh()
            assert sups[1].stats().handshakes_completed == 1
            assert sups[1].stats().cookies_sent == 0  # it took the other host's cookie
        finally:
            for sup in sups:
                sup.close()
                await sup.wait_closed()

    run(main(), timeout=60)


def test_max_connections_is_per_worker_and_refusals_are_counted(pki: Any) -> None:
    async def main() -> None:
        ctx = server_context(pki, cookie_mode=CookieMode.ALWAYS)
        sup = await aio.serve(tagged_echo, LOCAL, 0, ctx, workers=2, max_connections=1)
        assert isinstance(sup, Supervisor)
        try:
            held = [await connect(sup.port, pki, local_port=await port_for_worker(sup, w))
                    for w in (0, 1)]  # one each: both workers are full
            with pytest.raises(TimeoutError):  # the ClientHello is dropped, not answered
                await aio.connect(LOCAL, sup.port, client_context(pki), timeout=1.5,
                                  server_name="localhost",
                                  local_addr=(LOCAL, await port_for_worker(sup, 0)))
            await wait_for(lambda: sup.worker_stats()[0].stats.refused_connection_limit > 0,
                           sup)
            assert sup.worker_stats()[1].stats.refused_connection_limit == 0
            assert sup.stats().connections_active == 2
            for conn in held:
                await conn.send(b"still")
                assert (await conn.recv()).startswith(b"still|")
        finally:
            sup.close()
            await sup.wait_closed()

    run(main(), timeout=60)


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_parent_is_killed() -> None:
    proc, _ = start_cli("--workers", "2", "--echo", "-q")
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 10
        while len(pids := children.read_text().split()) < 2:
            assert time.monotonic() < deadline, "no workers"
            time.sleep(0.05)
        proc.kill()  # no drain from the parent: PR_SET_PDEATHSIG tells the workers
        proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while any(running(int(pid)) for pid in pids):
            assert time.monotonic() < deadline, "workers outlived their parent"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_steering_that_cannot_be_attached_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reuseport, "_logged", set())  # once per process: this test's
    program = cid_steering_program(CidLayout(), 2)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:  # no SO_REUSEPORT: the kernel refuses a reuseport program (EINVAL)
        with caplog.at_level("WARNING", logger="dtls.reuseport"):
            assert not attach_cid_steering(socks[0], program)
            assert not attach_cid_steering(socks[1], program)
        warnings = [r for r in caplog.records if r.name == "dtls.reuseport"]
        assert len(warnings) == 1 and "4-tuple hash" in warnings[0].getMessage()
    finally:
        for sock in socks:
            sock.close()
