"""dtls.aio over real UDP sockets on the loopback interface."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from dtls import aio, errors
from dtls.config import Context, CookieMode

T = TypeVar("T")
HOST = "127.0.0.1"


def run(coro: Awaitable[T], timeout: float = 60.0, *, loop_factory: Any = None) -> T:
    """Run a coroutine on a fresh loop, failing (not hanging) after `timeout` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    if loop_factory is None:
        return asyncio.run(bounded())
    loop = loop_factory()
    try:
        return loop.run_until_complete(bounded())
    finally:
        loop.close()


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


def client_context(pki: Any, **settings: Any) -> Context:
    return Context.client(cadata=pki.ca_pem, **settings)


async def echo(conn: aio.AsyncConnection) -> None:
    async for message in conn:
        await conn.send(message)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- handshake and data ----


def test_handshake_and_echo(pki: Any) -> None:
    async def main() -> None:
        seen: list[aio.AsyncConnection] = []

        async def handler(conn: aio.AsyncConnection) -> None:
            seen.append(conn)
            await echo(conn)

        async with await aio.serve(handler, HOST, 0, server_context(pki)) as server:
            assert server.port > 0 and server.sockets
            async with await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost", timeout=10) as conn:
                assert conn.cipher_suite == "TLS_AES_128_GCM_SHA256"
                assert conn.group == "x25519"
                assert conn.peer_certificates[0] == pki.server.cert
                assert conn.peer_address[1] == server.port
                for message in [b"hello", b"", bytes(range(256)) * 40, b"x" * 16384]:
                    await conn.send(message)
                    assert await conn.recv() == message
                [server_conn] = seen
                assert server_conn.server_name == "localhost"
                assert conn.export_keying_material("EXPORTER-test", b"", 32) == (
                    server_conn.export_keying_material("EXPORTER-test", b"", 32)
                )
            assert conn.closed
            with pytest.raises(errors.ConnectionStateError):
                await conn.recv()
            await asyncio.sleep(0.1)
            assert server_conn.closed  # the server saw close_notify
            stats = server.stats()
            assert stats.handshakes_completed == 1 and stats.connections_active == 0
            assert stats.cookies_sent == 1  # cookie_mode "always" is the default
            # Received datagrams went through the buffer pool's slabs, all released.
            assert stats.pool_peak >= 1 and stats.pool_in_use == 0 and stats.pool_misses == 0

    run(main())


def test_connect_by_name_and_ipv6(pki: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        try:
            server = await aio.serve(echo, "::1", 0, server_context(pki))
        except OSError:
            pytest.skip("::1 is not available")
        # The certificate has IP address ::1 in its subjectAltName.
        async with server, await aio.connect("::1", server.port, client_context(pki),
                                             timeout=10) as conn:
            await conn.send(b"over IPv6")
            assert await conn.recv() == b"over IPv6"
            assert len(conn.peer_address) == 4

    run(main())


def test_mutual_authentication(pki: Any) -> None:
    async def main() -> None:
        peers: list[Any] = []

        async def handler(conn: aio.AsyncConnection) -> None:
            peers.append(conn.peer_certificates)
            await echo(conn)

        srv = server_context(pki, cadata=pki.ca_pem, require_client_certificate=True)
        async with await aio.serve(handler, HOST, 0, srv) as server:
            cli = client_context(pki)
            cli.load_cert_chain(certdata=pki.client.chain_pem, keydata=pki.client.key_pem)
            async with await aio.connect(HOST, server.port, cli, server_name="localhost",
                                         timeout=10) as conn:
                await conn.send(b"mutual")
                assert await conn.recv() == b"mutual"
            assert peers[0][0] == pki.client.cert
            # Without a client certificate the server refuses the handshake; the client
            # hears why (certificate_required) from connect(). Its Finished is sent before
            # it learns, so the refusal may also surface as the first recv's error.
            with pytest.raises(errors.DTLSError):
                conn = await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost", timeout=10)
                await conn.recv()
            assert server.stats().handshakes_failed == 1

    run(main())


def test_handshake_failure_raises_dtls_error(pki: Any) -> None:
    async def main() -> None:
        async with await aio.serve(echo, HOST, 0, server_context(pki)) as server:
            wrong_trust = Context.client(cadata=pki.other_root.cert_pem)
            with pytest.raises(errors.CertificateError):
                await aio.connect(HOST, server.port, wrong_trust, server_name="localhost",
                                  timeout=10)
            with pytest.raises(errors.CertificateError):  # name not in the certificate
                await aio.connect(HOST, server.port, client_context(pki),
                                  server_name="wrong.example", timeout=10)
            await asyncio.sleep(0.1)
            assert server.stats().handshakes_failed == 2

    run(main())


def test_timeout_when_no_server_answers(pki: Any) -> None:
    async def main() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reads nothing, says nothing
        silent.bind((HOST, 0))
        fds = open_fds()
        tasks = asyncio.all_tasks()
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await aio.connect(HOST, silent.getsockname()[1], client_context(pki),
                                  server_name="localhost", timeout=1.0)
            assert 0.9 < time.monotonic() - start < 3.0
            # A closed port answers with ICMP port unreachable: that ends it at once
            # (RFC 1122 §4.1.3.3 reports it to the application; tests/test_client_failures.py)
            closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            closed.bind((HOST, 0))
            port = closed.getsockname()[1]
            closed.close()
            with pytest.raises(ConnectionRefusedError, match=f"nothing listens on {HOST}:{port}"):
                await aio.connect(HOST, port, client_context(pki), timeout=5)
            await asyncio.sleep(0)
            assert open_fds() == fds  # the client's socket is closed
            assert asyncio.all_tasks() == tasks
        finally:
            silent.close()

    run(main())


def test_key_update_in_the_middle_of_a_stream(pki: Any) -> None:
    async def main() -> None:
        server_conns: list[aio.AsyncConnection] = []

        async def handler(conn: aio.AsyncConnection) -> None:
            server_conns.append(conn)
            await echo(conn)

        async with await aio.serve(handler, HOST, 0, server_context(pki)) as server:
            conn = await aio.connect(HOST, server.port, client_context(pki),
                                     server_name="localhost", timeout=10)
            messages = [f"message {i} ".encode() * (i % 50 + 1) for i in range(300)]
            received: list[bytes] = []

            async def reader() -> None:
                for _ in messages:
                    received.append(await conn.recv())

            async def epochs(client: int, server: int) -> None:
                # the earlier update is over (its ACK comes after a delay, RFC 9147 §7):
                # an update while one is outstanding would merge with it
                while (conn.connection.send_epoch, server_conns[0].connection.send_epoch) != (
                    client,
                    server,
                ):
                    await asyncio.sleep(0.005)

            task = asyncio.create_task(reader())
            for i, message in enumerate(messages):
                await conn.send(message)
                if i in (100, 200):
                    if i == 200:
                        await asyncio.wait_for(epochs(4, 5), 10)
                    await conn.update_keys()  # the stream goes on under the new keys
                if i == 150:
                    await asyncio.wait_for(epochs(4, 4), 10)
                    await server_conns[0].update_keys(request_peer_update=False)
                if i % 20 == 0:
                    await asyncio.sleep(0.001)  # let echoes come back; no buffer overrun
            await task
            assert received == messages
            assert conn.connection.send_epoch == 5  # 3, then two client updates (+1 each)
            # the server updated once itself and twice on request
            assert server_conns[0].connection.send_epoch == 6
            await conn.close()

    run(main())


def test_200_concurrent_clients(pki: Any) -> None:
    """200 clients at once, each sending messages of random bytes that the server echoes;
    every byte is checked. A message lost on the way (UDP; a full socket buffer) is sent
    again after a second: the contents must still match exactly."""
    clients, rounds = 200, 5

    async def main() -> tuple[int, float]:
        retries = 0
        async with await aio.serve(echo, HOST, 0, server_context(pki),
                                   max_handshakes=clients) as server:

            async def client(index: int) -> None:
                nonlocal retries
                rng = random.Random(index)
                conn = await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost", timeout=45)
                async with conn:
                    for i in range(rounds):
                        message = index.to_bytes(2, "big") + i.to_bytes(2, "big") + rng.randbytes(
                            rng.randrange(0, 1100)
                        )
                        await conn.send(message)
                        while True:
                            try:
                                reply = await asyncio.wait_for(conn.recv(), 1.0)
                            except TimeoutError:
                                retries += 1
                                await conn.send(message)
                                continue
                            if reply[:4] < message[:4]:
                                continue  # a late echo of a message sent twice
                            assert reply == message
                            break

            start = time.monotonic()
            await asyncio.gather(*(client(i) for i in range(clients)))
            elapsed = time.monotonic() - start
            stats = server.stats()
            assert stats.handshakes_completed == clients
            assert stats.handshakes_failed == 0
            return retries, elapsed

    retries, elapsed = run(main(), timeout=120)
    print(f"200 clients: {elapsed:.1f} s, {retries} messages resent")
    assert retries <= clients * rounds // 10


def test_server_survives_garbage(pki: Any) -> None:
    async def main() -> None:
        async with await aio.serve(echo, HOST, 0, server_context(pki)) as server:
            rng = random.Random(3)
            senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
            try:
                for i in range(1000):
                    data = rng.randbytes(rng.randrange(1, 1500))
                    if i % 3 == 0:
                        data = b"\x16\xfe\xfd" + data  # looks like a handshake record
                    senders[i % 50].sendto(data, (HOST, server.port))
                    if i % 100 == 0:
                        await asyncio.sleep(0.01)
            finally:
                for s in senders:
                    s.close()
            await asyncio.sleep(0.2)
            assert server.stats().garbage_dropped >= 900
            async with await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost", timeout=10) as conn:
                await conn.send(b"still serving")
                assert await conn.recv() == b"still serving"
            assert server.stats().handshakes_started == 1

    run(main())


@pytest.mark.parametrize("mode", [CookieMode.ALWAYS, CookieMode.NEVER])
def test_cookie_exchange_through_the_endpoint(pki: Any, mode: str) -> None:
    async def main() -> None:
        async with await aio.serve(echo, HOST, 0, server_context(pki), cookie_mode=mode) as server:
            async with await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost", timeout=10) as conn:
                await conn.send(b"cookie")
                assert await conn.recv() == b"cookie"
            stats = server.stats()
            assert stats.cookies_sent == (1 if mode == CookieMode.ALWAYS else 0)
            assert stats.handshakes_completed == 1

    run(main())


def test_connection_limit(pki: Any) -> None:
    async def main() -> None:
        async with await aio.serve(echo, HOST, 0, server_context(pki),
                                   max_connections=2) as server:
            connect = lambda timeout: aio.connect(  # noqa: E731
                HOST, server.port, client_context(pki), server_name="localhost",
                timeout=timeout
            )
            first, second = await connect(10), await connect(10)
            with pytest.raises(TimeoutError):
                await connect(1.5)
            assert server.stats().refused_connection_limit >= 1
            await first.close()
            await asyncio.sleep(0.05)
            third = await connect(10)
            await third.send(b"third")
            assert await third.recv() == b"third"
            await second.close()
            await third.close()

    run(main())


def test_handler_error_and_server_close(pki: Any) -> None:
    async def main() -> None:
        async def handler(conn: aio.AsyncConnection) -> None:
            message = await conn.recv()
            if message == b"fail":
                raise RuntimeError("handler bug")
            await conn.send(message)
            await echo(conn)

        server = await aio.serve(handler, HOST, 0, server_context(pki))
        bad = await aio.connect(HOST, server.port, client_context(pki),
                                server_name="localhost", timeout=10)
        await bad.send(b"fail")
        await asyncio.wait_for(bad.wait_closed(), 5)  # the server closed it
        with pytest.raises(errors.ConnectionStateError):
            await bad.recv()
        good = await aio.connect(HOST, server.port, client_context(pki),
                                 server_name="localhost", timeout=10)
        await good.send(b"ok")
        assert await good.recv() == b"ok"
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        await asyncio.wait_for(good.wait_closed(), 5)  # close_notify from the server
        assert [m async for m in good] == []
        assert not server.is_serving()

    run(main())


def test_uvloop(pki: Any) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with await aio.serve(echo, HOST, 0, server_context(pki)) as server:
            conns = await asyncio.gather(*(
                aio.connect(HOST, server.port, client_context(pki), server_name="localhost",
                            timeout=10)
                for _ in range(10)
            ))
            for i, conn in enumerate(conns):
                await conn.send(b"uv%d" % i)
            for i, conn in enumerate(conns):
                assert await conn.recv() == b"uv%d" % i
            await conns[0].update_keys()
            for conn in conns:
                await conn.close()

    run(main(), loop_factory=uvloop.new_event_loop)


def test_connect_needs_client_context(pki: Any) -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await aio.connect(HOST, 9, server_context(pki))

    run(main())


def test_resumption_with_a_session_ticket(pki: Any) -> None:
    async def main() -> None:
        async with await aio.serve(echo, HOST, 0, server_context(pki)) as server:
            cli = client_context(pki)
            async with await aio.connect(HOST, server.port, cli, server_name="localhost",
                                         timeout=10) as first:
                await first.send(b"first")
                assert await first.recv() == b"first"  # the ticket came before the echo
                assert first.session is not None
                assert first.handshake is not None and not first.handshake.resumed
            async with await aio.connect(HOST, server.port, cli, server_name="localhost",
                                         timeout=10, session=first.session) as second:
                assert second.handshake is not None and second.handshake.resumed
                await second.send(b"resumed")
                assert await second.recv() == b"resumed"

    run(main())


@pytest.mark.parametrize("side", ["client", "server"])
def test_sockets_split_gro_runs(side: str) -> None:
    """Sockets read with UDP GRO: a burst the kernel coalesced (here sent with UDP GSO)
    reaches the engine as its datagrams, each with the sender's address; a client's
    socket reads runs into a per-thread buffer, a server's into its pool's slabs."""
    from dtls.record import BufferPool, gso_supported, send_segments

    pool = BufferPool(aio.GRO_SLOT, aio.RECEIVE_BATCH) if side == "server" else None

    async def main() -> list[tuple[bytes, Any]]:
        loop = asyncio.get_running_loop()
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        got: list[tuple[bytes, Any]] = []
        done = loop.create_future()

        def on_datagrams(batch: list[tuple[Any, Any]]) -> None:
            got.extend((bytes(d), a) for d, a in batch)  # views of the buffer: copy now
            if len(got) >= 40 and not done.done():
                done.set_result(None)

        sock = aio._DatagramSocket(loop, receiver, on_datagrams, pool)
        if not sock.gro:
            pytest.skip("the kernel refuses UDP_GRO")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        if not gso_supported(sender):
            pytest.skip("the kernel refuses UDP_SEGMENT")
        payload = b"".join(bytes([i]) * 1000 for i in range(39)) + b"last"
        send_segments(sender, payload, 1000, receiver.getsockname())
        await asyncio.wait_for(done, 10)
        loop.remove_reader(receiver.fileno())
        receiver.close()
        sender.close()
        return [(d, a[:2]) for d, a in got]

    got = run(main())
    here = ("127.0.0.1", got[0][1][1])
    assert got == [(bytes([i]) * 1000, here) for i in range(39)] + [(b"last", here)]
    if pool is not None:
        assert pool.stats().in_use == 0 and pool.stats().peak >= 1


def test_send_batch_both_ways(pki: Any) -> None:
    """AsyncConnection.send_batch: many messages sealed together, each delivered intact,
    in order (over loopback nothing is lost at this rate)."""
    messages = [bytes([i % 251]) * (1 + i * 7 % 1100) for i in range(300)]

    async def main() -> None:
        async def handler(conn: aio.AsyncConnection) -> None:
            got = [await conn.recv() for _ in range(len(messages))]
            await conn.send_batch([m[::-1] for m in got])

        async with await aio.serve(handler, HOST, 0, server_context(pki)) as server:
            async with await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost", timeout=10) as conn:
                for i in range(0, len(messages), 50):
                    await conn.send_batch(messages[i : i + 50])
                replies = [await asyncio.wait_for(conn.recv(), 10) for _ in messages]
                assert replies == [m[::-1] for m in messages]
                assert all(type(r) is bytes for r in replies)  # not views of a batch's buffer
            with pytest.raises(errors.ConnectionStateError):
                await conn.send_batch([b"closed"])

    run(main())
