"""A client's handshake that cannot succeed fails at once, saying why, in both front-ends:
a server's fatal alert is a refusal (dtls.errors.HandshakeRefused), and the ICMP port
unreachable a closed loopback port answers with (ECONNREFUSED on the connected socket)
is "nothing listens on HOST:PORT" instead of a wait for the timeout."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dtls import Context, aio, errors, sync
from dtls.iana import AlertDescription

HOST = "127.0.0.1"


def _alert_record(description: int) -> bytes:
    """A DTLSPlaintext fatal alert at epoch 0 (RFC 9147 §4, RFC 9846 §6)."""
    return bytes.fromhex("15fefd" "0000" "000000000000" "0002") + bytes([2, description])


class AlertingServer:
    """Answers every datagram with one fatal alert (what a server that cannot agree
    sends, RFC 9846 §4.1.1); counts what it received."""

    def __init__(self, description: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.reply = _alert_record(description)
        self.received = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                _, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.received += 1
            self.sock.sendto(self.reply, addr)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def alerting() -> Iterator[Any]:
    servers: list[AlertingServer] = []

    def make(description: int) -> AlertingServer:
        servers.append(AlertingServer(description))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def closed_port() -> int:
    """A loopback UDP port nothing listens on (the kernel answers ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def client_context() -> Context:
    return Context.client(verify=False)


# ---- a server's fatal alert ----


@pytest.mark.parametrize(
    ("alert", "message"),
    [
        (AlertDescription.HANDSHAKE_FAILURE,
         "the server refused: handshake_failure (no common cipher suite, group or signature "
         "scheme?)"),
        (AlertDescription.PROTOCOL_VERSION,
         "the server refused: protocol_version (it does not speak DTLS 1.3?)"),
        (AlertDescription.DECODE_ERROR, "the server refused: decode_error"),
    ],
)
def test_aio_connect_reports_the_alert_at_once(alerting: Any, alert: int, message: str) -> None:
    server = alerting(alert)

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(errors.HandshakeRefused) as caught:
            await aio.connect(HOST, server.port, client_context(), timeout=10)
        assert time.monotonic() - started < 1.0
        assert str(caught.value) == message
        assert caught.value.description == alert
        assert isinstance(caught.value, errors.AlertReceived)  # what callers caught before

    asyncio.run(main())
    assert server.received == 1  # no retransmission: the client gave up on the alert


def test_sync_connect_reports_the_alert_at_once(alerting: Any) -> None:
    server = alerting(AlertDescription.INSUFFICIENT_SECURITY)
    fds = open_fds()
    started = time.monotonic()
    with pytest.raises(errors.HandshakeRefused,
                       match=r"^the server refused: insufficient_security \(it wants"):
        sync.connect((HOST, server.port), client_context(), timeout=10)
    assert time.monotonic() - started < 1.0
    assert open_fds() == fds  # the client's socket and wake-up pair are closed


# ---- nothing listens ----


def test_aio_connect_to_a_closed_port_fails_within_a_second() -> None:
    port = closed_port()

    async def main() -> None:
        fds, tasks = open_fds(), asyncio.all_tasks()
        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError, match=f"^.*nothing listens on {HOST}:{port}$"):
            await aio.connect(HOST, port, client_context(), timeout=10)
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0)
        assert open_fds() == fds and asyncio.all_tasks() == tasks

    asyncio.run(main())


def test_aio_connect_to_a_closed_ipv6_port() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no ::1")

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError, match=rf"nothing listens on \[::1\]:{port}"):
            await aio.connect("::1", port, client_context(), timeout=10)

    asyncio.run(main())


def test_sync_connect_to_a_closed_port_fails_within_a_second() -> None:
    port = closed_port()
    fds = open_fds()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError) as caught:
        sync.connect((HOST, port), client_context(), timeout=10)
    assert time.monotonic() - started < 1.0
    assert caught.value.strerror == f"nothing listens on {HOST}:{port}"
    assert open_fds() == fds
    assert not [t for t in threading.enumerate() if t.name == "dtls-client-io"]


def test_a_refusal_after_the_server_answered_is_not_nothing_listens() -> None:
    """Once the server said something, a later ICMP error (it went away mid-handshake) is
    loss to recover from, not proof that nothing listens: the handshake times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]

    def answer_once_then_go() -> None:
        _, addr = sock.recvfrom(65536)
        sock.sendto(b"\x00not a record", addr)  # heard from (dropped as malformed)
        time.sleep(0.1)
        sock.close()  # the retransmission meets a closed port

    thread = threading.Thread(target=answer_once_then_go, daemon=True)
    thread.start()
    ctx = Context.client(verify=False, initial_retransmit_timeout=0.2)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await aio.connect(HOST, port, ctx, timeout=1.0)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started >= 0.9
    thread.join()
