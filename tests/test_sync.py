"""dtls.sync over real UDP sockets on the loopback interface."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dtls import errors
from dtls.config import Context, CookieMode
from dtls.sync import Server, SyncConnection, connect

HOST = "127.0.0.1"


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


def client_context(pki: Any, **settings: Any) -> Context:
    return Context.client(cadata=pki.ca_pem, **settings)


def echo(conn: SyncConnection) -> None:
    for message in conn:
        conn.send(message)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def dtls_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dtls-")]


class Serving:
    """A Server running serve_forever in a thread for the length of a with block."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.server._loop_running and time.monotonic() < deadline:
            time.sleep(0.001)  # serving, with its selector open (for the fd counts)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def echo_server(pki: Any) -> Iterator[Server]:
    with Serving(Server((HOST, 0), server_context(pki), echo)) as server:
        yield server


def test_handshake_and_echo(pki: Any, echo_server: Server) -> None:
    fds = open_fds()
    with connect(echo_server.server_address, client_context(pki), server_name="localhost",
                 timeout=10) as conn:
        assert conn.cipher_suite == "TLS_AES_128_GCM_SHA256"
        assert conn.peer_certificates[0] == pki.server.cert
        for message in [b"hello", b"", bytes(range(256)) * 64]:
            conn.send(message)
            assert conn.recv(timeout=5) == message
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.05)
        conn.send(b"still usable after a recv timeout")
        assert conn.recv(timeout=5) == b"still usable after a recv timeout"
    assert conn.closed
    with pytest.raises(errors.ConnectionStateError):
        conn.send(b"closed")
    with pytest.raises(errors.ConnectionStateError):
        conn.recv(timeout=1)
    assert not [t for t in dtls_threads() if t.name == "dtls-client-io"]
    assert open_fds() == fds
    time.sleep(0.1)
    stats = echo_server.stats()
    assert stats.handshakes_completed == 1 and stats.connections_active == 0
    assert stats.cookies_sent == 1


def test_accept(pki: Any) -> None:
    with Server((HOST, 0), server_context(pki), cookie_mode=CookieMode.NEVER) as server:
        with pytest.raises(TimeoutError):
            server.accept(timeout=0.1)
        results: list[Any] = []

        def client() -> None:
            with connect(server.server_address, client_context(pki), server_name="localhost",
                         timeout=10) as conn:
                conn.send(b"to accept()")
                results.append(conn.recv(timeout=5))

        thread = threading.Thread(target=client)
        thread.start()
        conn = server.accept(timeout=10)
        assert conn.recv(timeout=5) == b"to accept()"
        conn.send(b"accepted")
        thread.join(10)
        assert results == [b"accepted"]
        assert server.stats().cookies_sent == 0
    with pytest.raises(errors.ConnectionStateError):
        server.accept(timeout=0.1)


def test_mutual_authentication(pki: Any) -> None:
    seen: list[Any] = []

    def handler(conn: SyncConnection) -> None:
        seen.append(conn.peer_certificates)
        echo(conn)

    srv = server_context(pki, cadata=pki.ca_pem, require_client_certificate=True)
    with Serving(Server((HOST, 0), srv, handler)) as server:
        cli = client_context(pki)
        cli.load_cert_chain(certdata=pki.client.chain_pem, keydata=pki.client.key_pem)
        with connect(server.server_address, cli, server_name="localhost", timeout=10) as conn:
            conn.send(b"mutual")
            assert conn.recv(timeout=5) == b"mutual"
        assert seen[0][0] == pki.client.cert
        with pytest.raises(errors.DTLSError):  # no client certificate: refused
            conn = connect(server.server_address, client_context(pki),
                           server_name="localhost", timeout=10)
            conn.recv(timeout=5)


def test_handshake_failure_raises_dtls_error(pki: Any, echo_server: Server) -> None:
    with pytest.raises(errors.CertificateError):
        connect(echo_server.server_address, Context.client(cadata=pki.other_root.cert_pem),
                server_name="localhost", timeout=10)
    assert not [t for t in dtls_threads() if t.name == "dtls-client-io"]


def test_timeout_when_no_server_answers(pki: Any) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    fds = open_fds()
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(silent.getsockname(), client_context(pki), server_name="localhost",
                    timeout=1.0)
        assert 0.9 < time.monotonic() - start < 3.0
    finally:
        silent.close()
    assert open_fds() == fds - 1
    assert not [t for t in dtls_threads() if t.name == "dtls-client-io"]


def test_reader_and_writer_threads(pki: Any, echo_server: Server) -> None:
    """One thread sends (and updates keys mid-stream), another receives, at once; every
    byte comes back in order."""
    rng = random.Random(5)
    messages = [i.to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 1000)) for i in range(400)]
    received: list[bytes] = []
    failures: list[BaseException] = []
    with connect(echo_server.server_address, client_context(pki), server_name="localhost",
                 timeout=10) as conn:

        def reader() -> None:
            try:
                for _ in messages:
                    received.append(conn.recv(timeout=10))
            except BaseException as exc:
                failures.append(exc)

        def writer() -> None:
            try:
                for i, message in enumerate(messages):
                    conn.send(message)
                    if i in (100, 250):
                        conn.update_keys(timeout=10)
                    if i % 25 == 0:
                        time.sleep(0.002)  # let echoes come back: no buffer overrun
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures
        assert received == messages
        assert conn.connection.send_epoch == 5


def test_idle_client_answers_server_key_update(pki: Any) -> None:
    """The client application reads nothing, yet its I/O thread acknowledges the
    server's KeyUpdate (RFC 9147 §8) and answers the requested update."""
    server_conns: list[SyncConnection] = []
    ready = threading.Event()
    done = threading.Event()

    def handler(conn: SyncConnection) -> None:
        server_conns.append(conn)
        ready.set()
        done.wait(10)

    with Serving(Server((HOST, 0), server_context(pki), handler)) as server, connect(
        server.server_address, client_context(pki), server_name="localhost", timeout=10
    ) as conn:
        assert ready.wait(10)
        server_conns[0].update_keys(timeout=5)  # needs the client's ACK
        assert server_conns[0].connection.send_epoch == 4
        deadline = time.monotonic() + 5
        while conn.connection.send_epoch != 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.connection.send_epoch == 4  # the client updated on request too
        server_conns[0].send(b"new keys")
        assert conn.recv(timeout=5) == b"new keys"
        done.set()


def test_server_shutdown_closes_connections(pki: Any) -> None:
    server = Server((HOST, 0), server_context(pki), echo)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    conn = connect(server.server_address, client_context(pki), server_name="localhost",
                   timeout=10)
    conn.send(b"before")
    assert conn.recv(timeout=5) == b"before"
    server.shutdown()
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(errors.ConnectionStateError):  # close_notify from the server
        conn.recv(timeout=5)
    assert list(conn) == []
    conn.close()
    assert not dtls_threads()


def test_many_clients_in_threads(pki: Any, echo_server: Server) -> None:
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with connect(echo_server.server_address, client_context(pki),
                         server_name="localhost", timeout=20) as conn:
                for i in range(5):
                    message = b"%d:%d:" % (index, i) + os.urandom(index * 10)
                    conn.send(message)
                    assert conn.recv(timeout=10) == message
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert echo_server.stats().handshakes_completed == 20


def test_connection_limit(pki: Any) -> None:
    with Serving(Server((HOST, 0), server_context(pki), echo, max_connections=1)) as server:
        first = connect(server.server_address, client_context(pki), server_name="localhost",
                        timeout=10)
        with pytest.raises(TimeoutError):
            connect(server.server_address, client_context(pki), server_name="localhost",
                    timeout=1.0)
        assert server.stats().refused_connection_limit >= 1
        first.close()
        time.sleep(0.05)
        with connect(server.server_address, client_context(pki), server_name="localhost",
                     timeout=10) as second:
            second.send(b"room again")
            assert second.recv(timeout=5) == b"room again"


def test_resumption_with_a_session_ticket(pki: Any, echo_server: Server) -> None:
    cli = client_context(pki)
    with connect(echo_server.server_address, cli, server_name="localhost", timeout=10) as first:
        first.send(b"first")
        assert first.recv(timeout=5) == b"first"
        assert first.session is not None
    with connect(echo_server.server_address, cli, server_name="localhost", timeout=10,
                 session=first.session) as second:
        assert second.handshake is not None and second.handshake.resumed
        second.send(b"resumed")
        assert second.recv(timeout=5) == b"resumed"


def test_link_splits_gro_runs() -> None:
    """A blocking front-end's socket reads with UDP GRO too: a coalesced burst (sent here
    with UDP GSO) comes out of _read as its datagrams, with the sender's address."""
    from dtls import sync
    from dtls.record import gso_supported, send_segments

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    link = sync._Link(receiver)
    try:
        if not link.gro or not gso_supported(sender):
            pytest.skip("the kernel refuses UDP_GRO or UDP_SEGMENT")
        payload = b"".join(bytes([i]) * 700 for i in range(30)) + b"end"
        send_segments(sender, payload, 700, receiver.getsockname())
        got: list[tuple[bytes, Any]] = []
        deadline = time.monotonic() + 5
        while len(got) < 31 and time.monotonic() < deadline:
            got += link._read()
        here = sender.getsockname()
        assert got == [(bytes([i]) * 700, here) for i in range(30)] + [(b"end", here)]
    finally:
        link.close_socket()
        sender.close()


def test_send_batch(pki: Any, echo_server: Server) -> None:
    messages = [bytes([i % 251]) * (1 + i * 13 % 1000) for i in range(200)]
    with connect(echo_server.server_address, client_context(pki), server_name="localhost",
                 timeout=10) as conn:
        for i in range(0, len(messages), 40):
            conn.send_batch(messages[i : i + 40])
            assert [conn.recv(timeout=5) for _ in range(40)] == messages[i : i + 40]
    with pytest.raises(errors.ConnectionStateError):
        conn.send_batch([b"closed"])
