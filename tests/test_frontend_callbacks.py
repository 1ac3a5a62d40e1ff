"""Front-end callbacks (on_state_change, on_alert), endpoint statistics, and the CLI's
--json statistics, over real UDP sockets on the loopback interface."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import threading
import time
from typing import Any

import pytest
from test_cli import client as cli_client
from test_cli import dtls_server

from dtls import aio, errors, sync
from dtls.config import Context, CookieMode
from dtls.handshake import HandshakeState
from dtls.iana import AlertDescription, AlertLevel

HOST = "127.0.0.1"
S = HandshakeState


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.server.key_pem)
    return ctx


def client_context(pki: Any, **settings: Any) -> Context:
    return Context.client(cadata=pki.ca_pem, **settings)


class Recorder:
    """Collects what the callbacks were called with."""

    def __init__(self) -> None:
        self.states: list[tuple[HandshakeState, HandshakeState]] = []
        self.alerts: list[tuple[int, int, bool]] = []
        self.lock = threading.Lock()

    def on_state_change(self, conn: Any, old: HandshakeState, new: HandshakeState) -> None:
        with self.lock:
            self.states.append((old, new))

    def on_alert(self, conn: Any, level: int, description: int, by_peer: bool) -> None:
        with self.lock:
            self.alerts.append((level, description, by_peer))

    def callbacks(self) -> dict[str, Any]:
        return {"on_state_change": self.on_state_change, "on_alert": self.on_alert}


def assert_client_walk(states: list[tuple[HandshakeState, HandshakeState]]) -> None:
    """RFC 9846 Appendix A: START, WAIT_SH, ..., CONNECTED, then CLOSED; each step from
    where the previous one ended."""
    assert states[0][0] is S.START and states[-1][1] is S.CLOSED
    assert states[-1] == (S.CONNECTED, S.CLOSED)
    assert all(a[1] is b[0] for a, b in itertools.pairwise(states))
    assert S.WAIT_SH in [new for _, new in states]


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


# ---- asyncio ----


def test_aio_callbacks(pki: Any) -> None:
    client_seen, server_seen = Recorder(), Recorder()

    async def main() -> None:
        async def echo(conn: aio.AsyncConnection) -> None:
            async for message in conn:
                await conn.send(message)

        async with await aio.serve(echo, HOST, 0, server_context(pki),
                                   **server_seen.callbacks()) as server:  # fmt: skip
            ctx = client_context(pki)
            conn = await aio.connect(HOST, server.port, ctx, server_name="localhost",
                                     **client_seen.callbacks())  # fmt: skip
            await conn.send(b"ping")
            assert await conn.recv() == b"ping"
            [server_conn] = server.connections
            assert server_conn.on_alert == server_seen.on_alert
            await conn.close()
            for _ in range(500):
                if server_seen.states:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), 30))
    assert_client_walk(client_seen.states)
    assert client_seen.alerts == []  # our own close_notify is not reported
    # the server connection is handed over CONNECTED: it sees the close only
    assert server_seen.states == [(S.CONNECTED, S.CLOSED)]
    assert server_seen.alerts == [(AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY, True)]


def test_aio_alert_we_send_and_failing_callbacks(
    pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Recorder()

    def broken(*args: Any) -> None:
        raise RuntimeError("a user callback failed")

    async def main() -> None:
        async with await aio.serve(lambda conn: None, HOST, 0, server_context(pki)) as server:
            with pytest.raises(errors.UnknownCA):
                await aio.connect(HOST, server.port, Context.client(), server_name="localhost",
                                  on_alert=seen.on_alert, on_state_change=broken)  # fmt: skip

    with caplog.at_level(logging.ERROR, logger="dtls.aio"):
        asyncio.run(asyncio.wait_for(main(), 30))
    assert seen.alerts == [(AlertLevel.FATAL, AlertDescription.UNKNOWN_CA, False)]
    assert "a user callback failed" in caplog.text


# ---- blocking sockets ----


def test_sync_callbacks(pki: Any) -> None:
    client_seen, server_seen = Recorder(), Recorder()

    def echo(conn: sync.SyncConnection) -> None:
        for message in conn:
            conn.send(message)

    with sync.Server((HOST, 0), server_context(pki), echo, **server_seen.callbacks()) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        conn = sync.connect(server.server_address, client_context(pki), server_name="localhost",
                            timeout=10, **client_seen.callbacks())  # fmt: skip
        conn.send(b"ping")
        assert conn.recv(timeout=5) == b"ping"
        conn.close()
        wait_until(lambda: server_seen.states and server_seen.alerts)
    assert_client_walk(client_seen.states)
    assert server_seen.states == [(S.CONNECTED, S.CLOSED)]
    assert server_seen.alerts == [(AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY, True)]


def test_sync_alert_from_the_peer(pki: Any) -> None:
    seen = Recorder()
    server_ctx = server_context(pki, request_client_certificate=True,
                                cookie_mode=CookieMode.NEVER)  # fmt: skip
    server_ctx.load_verify_locations(cadata=pki.ca_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    with sync.Server((HOST, 0), server_ctx, lambda conn: None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        # RFC 9846 §4.4.2.4: the client is done once its Finished is sent; the server's
        # alert about the missing certificate follows
        conn = sync.connect(server.server_address, client_context(pki),
                            server_name="localhost", timeout=10, **seen.callbacks())  # fmt: skip
        with pytest.raises(errors.DTLSError):
            conn.recv(timeout=10)
    assert seen.alerts == [(AlertLevel.FATAL, AlertDescription.CERTIFICATE_REQUIRED, True)]
    assert seen.states[-1] == (S.CONNECTED, S.CLOSED)


# ---- statistics ----


def test_endpoint_stats_add_up_the_connections(pki: Any) -> None:
    async def main() -> None:
        async def echo(conn: aio.AsyncConnection) -> None:
            async for message in conn:
                await conn.send(message)

        async with await aio.serve(echo, HOST, 0, server_context(pki)) as server:
            conns = []
            for _ in range(2):
                conn = await aio.connect(HOST, server.port, client_context(pki),
                                         server_name="localhost")  # fmt: skip
                for message in (b"a" * 100, b"b" * 1000):
                    await conn.send(message)
                    assert await conn.recv() == message
                conns.append(conn)
            live = [c.connection.stats() for c in server.connections]
            stats = server.stats()
            assert stats.connections_active == 2
            assert stats.records_opened == sum(s.records_opened for s in live) >= 4
            assert stats.bytes_sealed == sum(s.bytes_sealed for s in live) > 2200
            assert stats.records_sealed == sum(s.records_sealed for s in live)
            assert stats.dropped_replayed == stats.dropped_failed_authentication == 0
            assert 0 < stats.handshake_seconds_total == pytest.approx(
                sum(s.handshake_seconds or 0 for s in live)
            )
            for conn in conns:
                await conn.close()
            for _ in range(500):
                if server.stats().connections_active == 0:
                    break
                await asyncio.sleep(0.01)
            after = server.stats()
            # the connections are gone; their counts stay (and grew by the close_notify)
            assert after.connections_active == 0
            assert after.records_opened > stats.records_opened
            assert after.records_sealed > stats.records_sealed
            assert after.handshake_seconds_total == pytest.approx(stats.handshake_seconds_total)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_cli_json_has_the_connection_stats() -> None:
    with dtls_server("--once", "--echo", "--json") as server:
        result = cli_client(server.port, "--no-verify", "--message", "hi")
        assert result.status == 0, result.stderr
        server.wait()
    stats = result.json["stats"]
    assert stats["state"] == "CONNECTED" and stats["records_opened"] >= 1
    assert stats["send_epoch"] == 3 and stats["receive_epochs"][-1] == 3
    [line] = server.reports()
    assert line["stats"]["records_opened"] >= 1 and line["stats"]["bytes_sealed"] > 0
