"""Failed handshakes are visible to the server's application: `on_handshake_failed`
(dtls.aio.serve, dtls.sync.Server) for those that fail after the cookie, `HandshakeFailed`
endpoint events, counters by reason for those refused before it, and `on_alert` with
`AlertLevel` / `AlertDescription` members."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from test_server import Network, client_context, server_context

from dtls import aio, errors, sync
from dtls.iana import AlertDescription, AlertLevel
from dtls.server import ConnectionRemoved, HandshakeFailed, ServerEndpoint

HOST = "127.0.0.1"


def test_endpoint_reports_the_failure_and_its_alert(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki, alpn_protocols=("h3",)))
    net = Network(endpoint)
    addr = ("198.51.100.60", 5000)
    net.add_client(addr, client_context(pki, alpn_protocols=("coap",)))
    net.pump()
    [failed] = net.of(HandshakeFailed)
    assert failed.address == addr and failed.alert is AlertDescription.NO_APPLICATION_PROTOCOL
    assert "ALPN" in failed.reason and not failed.by_peer
    # It comes just before the connection is forgotten.
    assert net.events.index(failed) + 1 == net.events.index(net.of(ConnectionRemoved)[0])


def test_endpoint_reports_a_handshake_timeout(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), handshake_timeout=5.0, cookie_mode="never")
    net = Network(endpoint)
    addr = ("198.51.100.61", 5000)
    net.add_client(addr, client_context(pki))
    net.deliver_to = set()  # the client never hears from the server again
    net.advance(1.0)
    del net.clients[addr]  # and stops sending
    net.advance(10.0)
    [failed] = net.of(HandshakeFailed)
    assert (failed.address, failed.alert, failed.reason) == (addr, None, "handshake timeout")


def test_aio_server_on_handshake_failed_and_enum_alerts(pki: Any) -> None:
    failures: list[tuple[Any, Any, str]] = []
    alerts: list[tuple[Any, Any, bool]] = []

    async def main() -> None:
        async def handler(conn: aio.AsyncConnection) -> None:
            await conn.recv()

        server = await aio.serve(
            handler, HOST, 0, server_context(pki, alpn_protocols=("h3",)),
            on_handshake_failed=lambda addr, alert, reason: failures.append((addr, alert, reason)),
            on_alert=lambda conn, level, description, by_peer: alerts.append(
                (level, description, by_peer)
            ),
        )
        async with server:
            with pytest.raises(errors.AlertReceived):
                await aio.connect(HOST, server.port, client_context(pki, alpn_protocols=("coap",)),
                                  server_name="localhost", timeout=10)
            # Refused before the cookie: counted, no callback (no handshake began).
            with pytest.raises(errors.AlertReceived):
                await aio.connect(HOST, server.port,
                                  client_context(pki, cipher_suites=("TLS_AES_128_CCM_SHA256",)),
                                  server_name="localhost", timeout=10)
            conn = await aio.connect(HOST, server.port,
                                     client_context(pki, alpn_protocols=("h3",)),
                                     server_name="localhost", timeout=10)
            await conn.close()
            for _ in range(100):
                if alerts:
                    break
                await asyncio.sleep(0.02)
            stats = server.stats()
            assert stats.refused_cipher_suite == 1 and stats.handshakes_failed == 1

    asyncio.run(main())
    [(addr, alert, reason)] = failures
    assert addr[0] == HOST and alert is AlertDescription.NO_APPLICATION_PROTOCOL
    assert "ALPN" in reason
    assert alerts == [(AlertLevel.WARNING, AlertDescription.CLOSE_NOTIFY, True)]
    level, description, _ = alerts[0]
    assert type(level) is AlertLevel and type(description) is AlertDescription


def test_sync_server_on_handshake_failed(pki: Any) -> None:
    failures: list[tuple[Any, Any, str]] = []
    called = threading.Event()

    def on_failed(addr: Any, alert: Any, reason: str) -> None:
        failures.append((addr, alert, reason))
        called.set()

    ctx = server_context(pki, alpn_protocols=("h3",))
    with sync.Server((HOST, 0), ctx, handler=lambda conn: None,
                     on_handshake_failed=on_failed) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with pytest.raises(errors.AlertReceived) as raised:
            sync.connect(server.server_address, client_context(pki, alpn_protocols=("coap",)),
                         server_name="localhost", timeout=10)
        assert raised.value.description == AlertDescription.NO_APPLICATION_PROTOCOL
        deadline = time.monotonic() + 5
        while not called.is_set() and time.monotonic() < deadline:
            called.wait(0.05)
    [(addr, alert, reason)] = failures
    assert addr[0] == HOST and alert is AlertDescription.NO_APPLICATION_PROTOCOL and reason
