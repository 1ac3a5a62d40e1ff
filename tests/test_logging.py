"""Logging through `logging` ("dtls.*" loggers): handshake failures at INFO with the peer,
the alert and the reason; state changes, retransmissions and drops at DEBUG; never a
secret. The CLI shows them with -v / -vv."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Any

import pytest

from dtls import Connection, Context, aio, cli, errors
from dtls.server import ServerEndpoint

HOST = "127.0.0.1"


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


async def echo(conn: aio.AsyncConnection) -> None:
    async for message in conn:
        await conn.send(message)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == level and r.name.startswith("dtls")]


def test_handshake_failure_is_logged_at_info_on_both_sides(
    pki: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dtls")
    srv = server_context(pki, cadata=pki.ca_pem, require_client_certificate=True)

    async def main() -> tuple[int, int]:
        async with await aio.serve(echo, HOST, 0, srv) as server:
            conn = await aio.connect(HOST, server.port, Context.client(cadata=pki.ca_pem),
                                     server_name="localhost", timeout=5)
            with pytest.raises(errors.DTLSError):
                await asyncio.wait_for(conn.recv(), 5)  # the server's alert ends it
            await conn.close()
            return server.port, conn.local_address[1]

    server_port, client_port = asyncio.run(main())
    info = messages(caplog, logging.INFO)
    # the server's engine: the client's address, the reason, the alert it sent
    assert (f"('{HOST}', {client_port}): handshake failed: client sent no certificate "
            "(certificate_required sent)") in info
    # the client's engine: the server's address and the alert it received
    assert any(m.startswith(f"('{HOST}', {server_port}): connection failed: ")
               and m.endswith("(certificate_required received)") for m in info), info
    assert not messages(caplog, logging.DEBUG)  # INFO asked for: no DEBUG records


def test_debug_shows_states_and_no_secret(pki: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dtls")
    keylog: list[str] = []
    srv = server_context(pki, keylog=keylog.append)

    async def main() -> int:
        async with await aio.serve(echo, HOST, 0, srv) as server:
            ctx = Context.client(cadata=pki.ca_pem, keylog=keylog.append)
            async with await aio.connect(HOST, server.port, ctx, server_name="localhost",
                                         timeout=5) as conn:
                await conn.send(b"logged")
                assert await asyncio.wait_for(conn.recv(), 5) == b"logged"
                await conn.update_keys()
            return server.port

    port = asyncio.run(main())
    debug = messages(caplog, logging.DEBUG)
    assert f"('{HOST}', {port}): state START -> WAIT_SH" in debug
    assert f"('{HOST}', {port}): state WAIT_SH -> CONNECTED" in debug
    assert f"('{HOST}', {port}): handshake complete" in debug
    assert f"('{HOST}', {port}): connection closed: closed" in debug  # close_notify sent
    # secrets: every traffic secret and client random of the key log, in hex and raw
    secrets = {part for line in keylog for part in line.split()[1:]}
    assert len(secrets) >= 5
    text = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    for secret in secrets:
        assert secret not in text and secret.upper() not in text
        assert repr(bytes.fromhex(secret)) not in text


def test_retransmission_is_logged(pki: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dtls.connection")
    client = Connection(Context.client(cadata=pki.ca_pem), server_name="localhost")
    client.connect(("192.0.2.1", 4433), 0.0)
    assert client.datagrams_to_send(0.0)  # the ClientHello, lost
    timer = client.get_timer()
    assert timer is not None
    client.handle_timer(timer)
    assert client.datagrams_to_send(timer)  # sent again
    assert "('192.0.2.1', 4433): retransmission 1 (RFC 9147 §5.8)" in messages(
        caplog, logging.DEBUG)


def test_endpoint_logs_drops_at_debug(pki: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dtls.server")
    endpoint = ServerEndpoint(server_context(pki))
    # a handshake record header with a body that is no ClientHello
    endpoint.receive_datagram(bytes.fromhex("16fefd0000000000000000000401000000"),
                              ("192.0.2.7", 999), 0.0)
    assert endpoint.stats().garbage_dropped == 1
    assert ("('192.0.2.7', 999): datagram dropped: not a ClientHello we can answer"
            in messages(caplog, logging.DEBUG))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("verbosity", ["", "-v", "-vv"])
def test_cli_verbose(verbosity: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    args = ["client", f"{HOST}:{port}", "--no-verify", "--no-stdin"]
    status = cli.main(args + ([verbosity] if verbosity else []))
    err = capsys.readouterr().err
    assert status == 1
    logged = re.findall(r"^dtls: dtls(?:\.\w+)?: .*$", err, re.M)
    if not verbosity:
        assert logged == []
    else:
        assert f"dtls: dtls.aio: nothing listens on {HOST}:{port}" in logged
        states = [line for line in logged if "state START -> WAIT_SH" in line]
        assert bool(states) == (verbosity == "-vv")
    assert logging.getLogger("dtls").handlers == []  # main() leaves logging as it was
