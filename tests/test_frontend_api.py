"""The front-ends over a caller's socket (`sync.connect(sock=)`, `sync.Server(sock=)`),
`sync.connect(early_data=)`, and `wait_session()` on both front-ends."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dtls import aio, errors, sync
from dtls.config import Context
from dtls.session import Session

HOST = "127.0.0.1"


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


def echo(conn: sync.SyncConnection) -> None:
    for message in conn:
        conn.send(message)


def serving(server: sync.Server) -> sync.Server:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def echo_server(pki: Any) -> Iterator[sync.Server]:
    # no cookie exchange: 0-RTT is not sent after a HelloRetryRequest (RFC 9846 §4.2.10)
    ctx = server_context(pki, max_early_data_size=4096, cookie_mode="never")
    with serving(sync.Server((HOST, 0), ctx, echo)) as server:
        yield server


def test_connect_over_a_connected_socket_of_the_caller(pki: Any,
                                                       echo_server: sync.Server) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.connect(echo_server.server_address)
    bound = sock.getsockname()
    with sync.connect(None, Context.client(cadata=pki.ca_pem), server_name="localhost",
                      sock=sock, timeout=10) as conn:
        assert conn.local_address == bound
        assert conn.fileno() == sock.fileno()
        conn.send(b"over your socket")
        assert conn.recv(timeout=5) == b"over your socket"
    assert sock.fileno() == -1  # the connection owned it, and closed it


def test_connect_connects_an_unconnected_socket(pki: Any, echo_server: sync.Server) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sync.connect(echo_server.server_address, Context.client(cadata=pki.ca_pem),
                      server_name="localhost", sock=sock, timeout=10) as conn:
        assert sock.getpeername() == echo_server.server_address
        conn.send(b"x")
        assert conn.recv(timeout=5) == b"x"


def test_connect_refuses_unusable_sockets(pki: Any) -> None:
    ctx = Context.client(cadata=pki.ca_pem)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, pytest.raises(
        ValueError, match="UDP"
    ):
        sync.connect((HOST, 9), ctx, sock=tcp)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(
        ValueError, match="not connected"
    ):
        sync.connect(None, ctx, sock=udp)
    with pytest.raises(ValueError, match="address"):
        sync.connect(None, ctx)


def test_server_on_a_socket_of_the_caller(pki: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    address = sock.getsockname()
    with serving(sync.Server(None, server_context(pki), echo, sock=sock)) as server:
        assert server.server_address == address and server.fileno() == sock.fileno()
        with sync.connect(address, Context.client(cadata=pki.ca_pem), server_name="localhost",
                          timeout=10) as conn:
            conn.send(b"served on yours")
            assert conn.recv(timeout=5) == b"served on yours"
    assert sock.fileno() == -1
    with pytest.raises(ValueError, match="address or a bound sock"):
        sync.Server(None, server_context(pki))


@pytest.mark.parametrize("zero_rtt", [True, False])
def test_sync_early_data_and_wait_session(pki: Any, echo_server: sync.Server,
                                          zero_rtt: bool) -> None:
    ctx = Context.client(cadata=pki.ca_pem, early_data=zero_rtt)
    with sync.connect(echo_server.server_address, ctx, server_name="localhost",
                      timeout=10) as conn:
        session = conn.wait_session(timeout=10)
        assert isinstance(session, Session) and session is conn.session
        assert conn.wait_session(timeout=0) is session  # already here: no wait
    with sync.connect(echo_server.server_address, ctx, server_name="localhost", timeout=10,
                      session=session, early_data=[b"early 1", b"early 2"]) as conn:
        assert conn.handshake is not None and conn.handshake.resumed
        assert conn.handshake.early_data_accepted is zero_rtt
        assert [conn.recv(timeout=5), conn.recv(timeout=5)] == [b"early 1", b"early 2"]


def test_sync_wait_session_times_out_and_fails_on_close(pki: Any) -> None:
    ctx = server_context(pki, session_tickets=0)
    with serving(sync.Server((HOST, 0), ctx, echo)) as server:
        conn = sync.connect(server.server_address, Context.client(cadata=pki.ca_pem),
                            server_name="localhost", timeout=10)
        with pytest.raises(TimeoutError, match="session ticket"):
            conn.wait_session(timeout=0.2)
        conn.close()
        with pytest.raises(errors.ConnectionStateError):
            conn.wait_session(timeout=5)


def test_sync_wait_session_is_for_clients(pki: Any) -> None:
    client_ctx = Context.client(cadata=pki.ca_pem)
    with serving(sync.Server((HOST, 0), server_context(pki))) as server, sync.connect(
        server.server_address, client_ctx, server_name="localhost", timeout=10
    ):
        accepted = server.accept(timeout=10)
        with pytest.raises(ValueError, match="only a client"):
            accepted.wait_session(timeout=1)


def test_aio_wait_session(pki: Any) -> None:
    async def main() -> None:
        async def handler(conn: aio.AsyncConnection) -> None:
            with pytest.raises(ValueError, match="only a client"):
                await conn.wait_session()
            async for message in conn:
                await conn.send(message)

        server = await aio.serve(handler, HOST, 0, server_context(pki))
        client_ctx = Context.client(cadata=pki.ca_pem)
        async with await aio.connect(HOST, server.port, client_ctx,
                                     server_name="localhost") as conn:
            session = await asyncio.wait_for(conn.wait_session(), 10)
            assert session is conn.session
        async with await aio.connect(HOST, server.port, client_ctx, server_name="localhost",
                                     session=session) as conn:
            assert conn.handshake is not None and conn.handshake.resumed
        server.close()
        await server.wait_closed()

        quiet = await aio.serve(handler, HOST, 0, server_context(pki, session_tickets=0))
        conn = await aio.connect(HOST, quiet.port, client_ctx, server_name="localhost")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.wait_session(), 0.2)
        waiting = asyncio.ensure_future(conn.wait_session())
        await asyncio.sleep(0.05)
        await conn.close()
        with pytest.raises(errors.ConnectionStateError):
            await asyncio.wait_for(waiting, 5)
        quiet.close()
        await quiet.wait_closed()

    asyncio.run(main())


@pytest.mark.parametrize("front_end", [aio.AsyncConnection, sync.SyncConnection])
def test_a_batch_of_records_is_queued_as_bytes_up_to_max_queued(front_end: type) -> None:
    """A DataReceivedBatch (views of one buffer) reaches recv() as one bytes object per
    record, in order; past max_queued the rest are dropped and counted, as single ones."""
    from dtls.connection import Connection
    from dtls.events import DataReceived, DataReceivedBatch
    from dtls.frontend import FrontEndConnection

    conn = FrontEndConnection(Connection(Context.client(verify=False)), None, None, None)
    conn.max_queued = front_end.max_queued
    batch = DataReceivedBatch(memoryview(b"..one..two..three"), [2, 7, 12], [3, 3, 5])
    assert conn._queue_data(batch)
    assert list(conn._messages) == [b"one", b"two", b"three"]
    assert all(type(m) is bytes for m in conn._messages)
    conn.max_queued = 4
    assert conn._queue_data(batch)  # room for one of the three
    assert not conn._queue_data(DataReceived(b"four"))
    assert list(conn._messages) == [b"one", b"two", b"three", b"one"]
    assert conn.dropped_messages == 3
