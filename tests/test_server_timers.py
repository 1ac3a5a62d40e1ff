"""The endpoint works out a connection's timer when its output is collected, or at
get_timer / handle_timer if those come first: either way it answers as the connection."""

from __future__ import annotations

from typing import Any

from test_server import SERVER, client_context, server_context

from dtls.connection import Connection
from dtls.server import ServerEndpoint

CLIENT = ("192.0.2.1", 5000)


def _second_client_hello(pki: Any, endpoint: ServerEndpoint) -> tuple[Connection, bytes]:
    client = Connection(client_context(pki))
    client.connect(SERVER, 0.0)
    for data, _ in client.datagrams_to_send(0.0):
        endpoint.receive_datagram(data, CLIENT, 0.0)
    for data, _ in endpoint.datagrams_to_send(0.0):  # the cookie HelloRetryRequest
        client.receive_datagram(data, SERVER, 0.0)
    (ch2, _), = client.datagrams_to_send(0.0)
    return client, ch2


def test_get_timer_before_the_output_is_collected(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), handshake_timeout=5.0)
    _, ch2 = _second_client_hello(pki, endpoint)
    assert endpoint.get_timer() is None
    endpoint.receive_datagram(ch2, CLIENT, 0.0)
    (conn,) = endpoint.connections.values()
    expected = min(t for t in (conn.get_timer(), 5.0) if t is not None)
    assert endpoint.get_timer() == expected  # the flight is not collected yet
    endpoint.datagrams_to_send(0.0)
    assert endpoint.get_timer() == min(t for t in (conn.get_timer(), 5.0) if t is not None)


def test_handle_timer_before_the_output_is_collected(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), handshake_timeout=5.0)
    _, ch2 = _second_client_hello(pki, endpoint)
    endpoint.receive_datagram(ch2, CLIENT, 0.0)
    assert len(endpoint.connections) == 1
    endpoint.handle_timer(5.0)  # the handshake timeout, though never collected before
    assert not endpoint.connections
    assert endpoint.stats().handshakes_timed_out == 1
