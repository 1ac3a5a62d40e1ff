"""ServerEndpoint, sans-I/O: client engines against one endpoint on a virtual clock."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
import tracemalloc
from typing import Any

import pytest
from loopback import one_per_record

from dtls import aio
from dtls import path as path_module
from dtls.config import Context, CookieMode
from dtls.connection import Connection, HandshakeState
from dtls.events import (
    ConnectionClosed,
    ConnectionIdsIssued,
    DataReceived,
    DataReceivedBatch,
    HandshakeCompleted,
    KeyUpdated,
    PeerAddressChanged,
)
from dtls.iana import AlertDescription
from dtls.path import PathChallenge
from dtls.server import (
    ConnectionAccepted,
    ConnectionEvent,
    ConnectionRemoved,
    EndpointEvent,
    EndpointStats,
    ServerEndpoint,
)

SERVER = ("192.0.2.2", 4433)


def server_context(pki: Any, **settings: Any) -> Context:
    ctx = Context.server(**settings)
    ctx.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return ctx


def client_context(pki: Any, **settings: Any) -> Context:
    return Context.client(cadata=pki.ca_pem, **settings)


class Network:
    """Client engines at their addresses and one endpoint, no loss, zero latency."""

    def __init__(self, endpoint: ServerEndpoint) -> None:
        self.endpoint = endpoint
        self.now = 0.0
        self.clients: dict[Any, Connection] = {}
        self.client_events: dict[Any, list[Any]] = {}
        self.events: list[EndpointEvent] = []
        self.to_server: list[tuple[bytes, Any]] = []  # every datagram a client sent
        self.to_clients: list[tuple[bytes, Any]] = []  # every datagram the endpoint sent
        self.deliver_to: set[Any] | None = None  # None: every client receives

    def add_client(self, addr: Any, ctx: Context, *, connect: bool = True) -> Connection:
        conn = Connection(ctx, server_name="localhost")
        self.clients[addr] = conn
        self.client_events[addr] = []
        if connect:
            conn.connect(SERVER, self.now)
        return conn

    def move(self, old: Any, new: Any) -> None:
        """The client at `old` now sends from, and receives at, `new` (a NAT rebinding)."""
        self.clients[new] = self.clients.pop(old)
        self.client_events[new] = self.client_events[old]

    def pump(self) -> None:
        for _ in range(10_000):
            moved = False
            for addr, conn in list(self.clients.items()):
                for data, _ in conn.datagrams_to_send(self.now):
                    self.to_server.append((data, addr))
                    self.endpoint.receive_datagram(data, addr, self.now)
                    moved = True
                while (event := conn.next_event()) is not None:
                    self.client_events[addr].append(event)
            for data, addr in self.endpoint.datagrams_to_send(self.now):
                self.to_clients.append((data, addr))
                moved = True
                client = self.clients.get(addr)
                if client is not None and (self.deliver_to is None or addr in self.deliver_to):
                    client.receive_datagram(data, SERVER, self.now)
            while (ev := self.endpoint.next_event()) is not None:
                self.events.append(ev)
                moved = True
            if not moved:
                return
        raise AssertionError("network did not settle")

    def advance(self, seconds: float) -> None:
        """Run timers (clients' and the endpoint's) in time order for `seconds`."""
        until = self.now + seconds
        self.pump()
        for _ in range(100_000):
            timers = [t for t in (c.get_timer() for c in self.clients.values()) if t is not None]
            server_timer = self.endpoint.get_timer()
            if server_timer is not None:
                timers.append(server_timer)
            when = min(timers, default=None)
            if when is None or when > until:
                self.now = until
                return
            self.now = max(self.now, when)
            for conn in self.clients.values():
                t = conn.get_timer()
                if t is not None and t <= self.now:
                    conn.handle_timer(self.now)
            if server_timer is not None and server_timer <= self.now:
                self.endpoint.handle_timer(self.now)
            self.pump()
        raise AssertionError("timers did not settle")

    def of(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]

    def connection_events(self, cls: type) -> list[tuple[Connection, Any]]:
        return [
            (e.connection, e.event) for e in self.of(ConnectionEvent) if isinstance(e.event, cls)
        ]


def completed(net: Network, addr: Any) -> bool:
    return any(isinstance(e, HandshakeCompleted) for e in net.client_events[addr])


# ---- handshakes through the endpoint ----


@pytest.mark.parametrize("mode", [CookieMode.ALWAYS, CookieMode.NEVER])
def test_handshake_and_echo(pki: Any, mode: str) -> None:
    endpoint = ServerEndpoint(server_context(pki), cookie_mode=mode)
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    client = net.add_client(addr, client_context(pki))
    net.pump()
    assert completed(net, addr)
    stats = endpoint.stats()
    assert stats.cookies_sent == (1 if mode == CookieMode.ALWAYS else 0)
    assert stats.handshakes_started == stats.handshakes_completed == 1
    assert stats.connections_active == 1 and stats.handshakes_active == 0
    # ClientHello, HRR, ClientHello with cookie, ... when cookies are on.
    first_reply = net.to_clients[0][0]
    if mode == CookieMode.ALWAYS:
        assert len(first_reply) <= 3 * len(net.to_server[0][0])
    accepted = net.of(ConnectionAccepted)
    assert len(accepted) == 1 and accepted[0].address == addr
    server_conn = endpoint.connections[addr]
    assert accepted[0].connection is server_conn

    client.send(b"ping")
    net.pump()
    received = net.connection_events(DataReceived)
    assert [(c, e.data) for c, e in received] == [(server_conn, b"ping")]
    server_conn.send(b"pong")
    endpoint.mark_pending(server_conn)
    net.pump()
    assert [e.data for e in net.client_events[addr] if isinstance(e, DataReceived)] == [b"pong"]
    assert endpoint.stats().datagrams_received == len(net.to_server)
    assert endpoint.stats().datagrams_sent == len(net.to_clients)


def test_client_close_removes_connection(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    client = net.add_client(addr, client_context(pki))
    net.pump()
    server_conn = endpoint.connections[addr]
    client.close()
    net.pump()
    removed = net.of(ConnectionRemoved)
    assert [(r.connection, r.reason) for r in removed] == [(server_conn, "closed")]
    assert net.events[-1] == removed[0]  # the last event about it
    assert len(endpoint.connections) == 0
    stats = endpoint.stats()
    assert stats.connections_closed == 1 and stats.connections_active == 0
    assert endpoint.get_timer() is None


def test_key_update_through_endpoint(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    client = net.add_client(addr, client_context(pki))
    net.pump()
    server_conn = endpoint.connections[addr]
    server_conn.update_keys()
    endpoint.mark_pending(server_conn)
    net.advance(5)
    assert server_conn.send_epoch == 4 and client.send_epoch == 4
    assert (server_conn, KeyUpdated("send", 4)) in net.connection_events(KeyUpdated)
    client.send(b"after")
    net.pump()
    assert [e.data for _, e in net.connection_events(DataReceived)] == [b"after"]


def test_auto_cookie_mode_under_load(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), cookie_mode=CookieMode.AUTO, cookie_threshold=1)
    net = Network(endpoint)
    ctx = client_context(pki)
    net.deliver_to = set()  # hold the server's replies: the first handshake stays open
    first = ("198.51.100.1", 5000)
    net.add_client(first, ctx)
    net.pump()
    assert endpoint.stats().cookies_sent == 0 and endpoint.stats().handshakes_active == 1
    assert endpoint.cookies_required()
    second = ("198.51.100.2", 5000)
    net.add_client(second, ctx)
    net.deliver_to = None
    net.pump()
    assert endpoint.stats().cookies_sent == 1  # only the second one, under load
    net.advance(5)  # the first client retransmits its ClientHello
    assert completed(net, first) and completed(net, second)
    assert not endpoint.cookies_required()


# ---- no state for unproven addresses ----


def _client_hello(pki: Any) -> bytes:
    client = Connection(client_context(pki), server_name="localhost")
    client.connect(SERVER, 0.0)
    [(datagram, _)] = client.datagrams_to_send(0.0)
    return datagram


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _flood(pki: Any, count: int, *, trace: bool) -> tuple[float, int]:
    """`count` copies of one ClientHello from random addresses: each gets exactly one
    HelloRetryRequest, to its sender, no larger than 3x the ClientHello, and the endpoint
    keeps nothing. Returns (seconds, bytes of memory growth from 10% to 100%), the growth
    measured by tracemalloc when `trace`, else as resident set size."""
    endpoint = ServerEndpoint(server_context(pki), cookie_mode=CookieMode.ALWAYS)
    hello = _client_hello(pki)
    rng = random.Random(1)
    gc.collect()
    if trace:
        tracemalloc.start()
    memory = tracemalloc.get_traced_memory if trace else lambda: (_rss(), 0)
    start = time.perf_counter()
    baseline = 0
    for i in range(count):
        addr = (f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                rng.randrange(1024, 65536))
        now = 1.0 + i * 1e-4
        endpoint.receive_datagram(hello, addr, now)
        [(reply, to)] = endpoint.datagrams_to_send(now)
        assert to == addr and len(reply) <= 3 * len(hello)
        assert reply[0] == 22 and reply[13] == 2  # a plaintext ServerHello: the HRR
        if i == count // 10:
            baseline = memory()[0]
    elapsed = time.perf_counter() - start
    growth = memory()[0] - baseline
    if trace:
        tracemalloc.stop()
    stats = endpoint.stats()
    assert count == stats.cookies_sent == stats.datagrams_received == stats.datagrams_sent
    assert len(endpoint.connections) == 0 and stats.handshakes_started == 0
    assert not endpoint._routes and not endpoint._peers and not endpoint._timers
    assert endpoint.get_timer() is None
    return elapsed, growth


def test_client_hello_flood_keeps_no_state(pki: Any) -> None:
    _, growth = _flood(pki, 10_000, trace=True)
    assert growth < 500_000  # bounded caches only (e.g. the address encoding cache)


def test_client_hello_flood_100k(pki: Any) -> None:
    elapsed, growth = _flood(pki, 100_000, trace=False)
    print(f"100,000 ClientHellos: {elapsed:.1f} s, resident memory growth {growth} bytes")
    assert growth < 4_000_000


def test_garbage_from_many_sources(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    net = Network(endpoint)
    rng = random.Random(7)
    hello = _client_hello(pki)
    garbage = [
        b"", b"\x16", b"\x17\xfe\xfd", bytes(100), b"\xff" * 1500,
        hello[:40], hello[:-1], hello[:13] + b"\x02" + hello[14:],  # truncated, ServerHello
        b"\x2f" + rng.randbytes(60),  # a unified header with no connection behind it
    ]
    garbage += [rng.randbytes(rng.randrange(1, 1400)) for _ in range(300)]
    garbage += [hello[:i] + bytes([hello[i] ^ 0x55]) + hello[i + 1:]
                for i in range(0, len(hello), 3)]
    for i, data in enumerate(garbage):
        endpoint.receive_datagram(data, (f"203.0.113.{i % 250}", 1000 + i), 1.0)
    stats = endpoint.stats()
    assert stats.handshakes_started == 0 and len(endpoint.connections) == 0
    refused = sum(stats.refused().values())  # ClientHellos flipped into disagreement
    assert stats.garbage_dropped + stats.cookies_sent + refused == len(garbage)
    assert stats.garbage_dropped >= 300
    replies = endpoint.datagrams_to_send(1.0)
    assert len(replies) == stats.cookies_sent + refused - stats.refusals_rate_limited
    net.now = 1.0
    addr = ("198.51.100.9", 4000)
    net.add_client(addr, client_context(pki))
    net.pump()
    assert completed(net, addr)
    # Garbage to a live connection is dropped by it; it keeps working.
    for data in garbage[:50]:
        endpoint.receive_datagram(data, addr, net.now)
    net.clients[addr].send(b"still here")
    net.pump()
    assert [e.data for _, e in net.connection_events(DataReceived)] == [b"still here"]


# ---- limits and timeouts ----


def test_connection_limit(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), max_connections=2)
    net = Network(endpoint)
    ctx = client_context(pki)
    addrs = [("198.51.100.1", 5000 + i) for i in range(3)]
    for addr in addrs:
        net.add_client(addr, ctx)
    net.pump()
    assert [completed(net, a) for a in addrs] == [True, True, False]
    stats = endpoint.stats()
    assert stats.refused_connection_limit >= 1 and stats.connections_active == 2
    net.clients[addrs[0]].close()
    net.advance(3)  # a slot is free: the third client's retransmission gets in
    assert completed(net, addrs[2])


def test_handshake_limit(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), max_handshakes=1, cookie_mode=CookieMode.NEVER)
    net = Network(endpoint)
    ctx = client_context(pki)
    net.deliver_to = set()
    net.add_client(("198.51.100.1", 1), ctx)
    net.add_client(("198.51.100.2", 2), ctx)
    net.pump()
    stats = endpoint.stats()
    assert stats.handshakes_active == 1 and stats.refused_handshake_limit == 1
    net.deliver_to = None
    net.advance(10)
    assert all(completed(net, a) for a in net.clients)


def test_handshake_timeout(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), handshake_timeout=5.0)
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    # The client proves its address (returns the cookie), then disappears.
    client = Connection(client_context(pki), server_name="localhost")
    client.connect(SERVER, 0.0)
    [(hello, _)] = client.datagrams_to_send(0.0)
    endpoint.receive_datagram(hello, addr, 0.0)
    [(hrr, _)] = endpoint.datagrams_to_send(0.0)
    client.receive_datagram(hrr, SERVER, 0.0)
    [(hello2, _)] = client.datagrams_to_send(0.0)
    endpoint.receive_datagram(hello2, addr, 0.0)
    assert endpoint.stats().handshakes_active == 1
    net.advance(4.9)  # the server retransmits its flight meanwhile
    assert endpoint.stats().handshakes_active == 1
    assert endpoint.connections[addr].retransmissions >= 2
    net.advance(0.2)
    stats = endpoint.stats()
    assert stats.handshakes_active == 0 and stats.handshakes_timed_out == 1
    assert [r.reason for r in net.of(ConnectionRemoved)] == ["handshake timeout"]
    assert endpoint.get_timer() is None and not endpoint._timers


def test_idle_timeout(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), idle_timeout=30.0)
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    client = net.add_client(addr, client_context(pki))
    net.pump()
    for _ in range(5):  # traffic keeps it alive, and adds no timer entries
        net.advance(20)
        client.send(b"keepalive")
        net.pump()
    assert len(endpoint._timers) <= 2
    assert endpoint.stats().connections_active == 1
    net.advance(31)
    stats = endpoint.stats()
    assert stats.connections_active == 0 and stats.idle_timeouts == 1
    assert [r.reason for r in net.of(ConnectionRemoved)] == ["idle timeout"]
    # The server said goodbye: the client saw close_notify.
    assert any(isinstance(e, ConnectionClosed) and e.by_peer for e in net.client_events[addr])


def test_rate_limit_per_address(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), rate_limit_per_address=2.0)
    net = Network(endpoint)
    ctx = client_context(pki)
    for port in range(4):  # one host, four ports, at the same instant
        net.add_client(("198.51.100.7", 6000 + port), ctx)
    net.add_client(("198.51.100.8", 6000), ctx)
    net.pump()
    stats = endpoint.stats()
    assert stats.handshakes_started == 3 and stats.rate_limited == 2
    net.advance(5)  # tokens refill; the retransmitted ClientHellos get through
    assert all(completed(net, a) for a in net.clients)


def test_failed_handshake_is_counted_and_removed(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki, alpn_protocols=("h3",)))
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    net.add_client(addr, client_context(pki, alpn_protocols=("coap",)))
    net.pump()
    stats = endpoint.stats()
    assert stats.handshakes_failed == 1 and stats.connections_active == 0
    assert [r.reason for r in net.of(ConnectionRemoved)] == ["failed"]
    assert any(isinstance(e, ConnectionClosed) for e in net.client_events[addr])


# ---- a new association from the address of a live one (RFC 9147 §6) ----


def test_new_association_replaces_old_after_cookie(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), cookie_mode=CookieMode.NEVER)
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    net.add_client(addr, client_context(pki))
    net.pump()
    old = endpoint.connections[addr]
    # A forged ClientHello from that address (an off-path attacker never sees the HRR):
    forged = _client_hello(pki)
    endpoint.receive_datagram(forged, addr, net.now)
    [(hrr, to)] = endpoint.datagrams_to_send(net.now)
    assert to == addr and hrr[13] == 2 and endpoint.connections[addr] is old
    assert old.state is HandshakeState.CONNECTED
    # A delayed copy of the live client's own ClientHello changes nothing either.
    endpoint.receive_datagram(net.to_server[0][0], addr, net.now)
    endpoint.datagrams_to_send(net.now)
    assert endpoint.connections[addr] is old and old.state is HandshakeState.CONNECTED
    # The client restarts on the same port: cookie exchange, then the old one goes.
    net.add_client(addr, client_context(pki))
    net.pump()
    new = endpoint.connections[addr]
    assert new is not old and new.state is HandshakeState.CONNECTED
    assert old.state is HandshakeState.CLOSED
    assert [(r.connection, r.reason) for r in net.of(ConnectionRemoved)] == [(old, "replaced")]
    assert endpoint.stats().connections_replaced == 1
    net.clients[addr].send(b"new")
    net.pump()
    assert [(c, e.data) for c, e in net.connection_events(DataReceived)] == [(new, b"new")]


def test_endpoint_close(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    net = Network(endpoint)
    ctx = client_context(pki)
    for i in range(3):
        net.add_client(("198.51.100.1", 5000 + i), ctx)
    net.pump()
    endpoint.close(net.now)
    net.pump()
    assert len(endpoint.connections) == 0 and endpoint.closed
    assert sorted(r.reason for r in net.of(ConnectionRemoved)) == ["shutdown"] * 3
    for events in net.client_events.values():
        assert any(isinstance(e, ConnectionClosed) and e.by_peer for e in events)


def test_stats_is_frozen(pki: Any) -> None:
    stats = ServerEndpoint(server_context(pki)).stats()
    assert isinstance(stats, EndpointStats)
    with pytest.raises(AttributeError):
        stats.cookies_sent = 3  # type: ignore[misc]


def test_client_context_refused(pki: Any) -> None:
    with pytest.raises(ValueError):
        ServerEndpoint(client_context(pki))


def test_post_quantum_client_through_stateless_cookie(pki: Any) -> None:
    # The X25519MLKEM768 ClientHello is fragmented: the endpoint keeps no state until the
    # first fragment of the second ClientHello returns a valid cookie.
    endpoint = ServerEndpoint(server_context(pki), cookie_mode="always")
    net = Network(endpoint)
    addr = ("198.51.100.20", 4000)
    net.add_client(addr, client_context(pki, groups=("x25519mlkem768",)))
    net.pump()
    assert completed(net, addr)
    stats = endpoint.stats()
    assert stats.cookies_sent == 1 and stats.handshakes_completed == 1


# ---- connection IDs (RFC 9147 §9) and address changes (draft-ietf-tls-dtls-rrc) ----

ATTACKER = ("203.0.113.66", 4444)


def _has_cid(data: bytes) -> bool:
    return data[0] & 0xF0 == 0x30  # a unified header with the C bit


def _data(net: Network, conn: Connection) -> list[bytes]:
    """What `conn` received, a record at a time (a DataReceivedBatch as its records)."""
    events = [e for c, e in net.connection_events(DataReceived | DataReceivedBatch) if c is conn]
    return [e.data for e in one_per_record(events)]


def _client_data(net: Network, addr: Any) -> list[bytes]:
    return [e.data for e in net.client_events[addr] if isinstance(e, DataReceived)]


def _cid_client(net: Network, pki: Any, addr: Any, cid: bytes | None = b"") -> Connection:
    """A client that offers connection_id (b"": it receives none) and completes."""
    client = net.add_client(addr, client_context(pki, connection_id=cid))
    net.pump()
    assert completed(net, addr)
    return client


def test_many_clients_routed_by_cid(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), cid_length=6)
    net = Network(endpoint)
    with_cid = [("198.51.100.1", 5000 + i) for i in range(12)]
    without = [("198.51.100.2", 5000 + i) for i in range(3)]
    for i, addr in enumerate(with_cid):
        net.add_client(addr, client_context(pki, connection_id=b"" if i % 2 else b"c%d" % i))
    for addr in without:
        net.add_client(addr, client_context(pki))
    net.pump()
    assert all(completed(net, a) for a in net.clients)
    server = {a: endpoint.connections[a] for a in net.clients}
    cids = [server[a].local_cid for a in with_cid]
    assert all(c is not None and len(c) == 6 for c in cids) and len(set(cids)) == len(cids)
    assert [net.clients[a].peer_cid for a in with_cid] == cids
    assert all(net.clients[a].peer_cid is None for a in without)
    # Only CIDs in use are routes: one per CID client (RFC 9146 §3).
    assert set(endpoint._by_cid) == set(cids)
    sent_before = len(net.to_server)
    for addr in net.clients:
        net.clients[addr].send(f"from {addr}".encode())
    net.pump()
    for addr in net.clients:
        assert _data(net, server[addr]) == [f"from {addr}".encode()]
    # Every datagram of a CID client carries its own server connection's CID ...
    tagged = 0
    for data, addr in net.to_server:
        if _has_cid(data):
            assert addr in with_cid and data[1:7] == server[addr].local_cid
            tagged += 1
        elif data[0] & 0xE0 == 0x20:  # encrypted without a CID: only from the others
            assert addr in without
    assert tagged > len(with_cid) and len(net.to_server) > sent_before
    # ... and was routed by it.
    stats = endpoint.stats()
    assert stats.datagrams_routed_by_cid == tagged and stats.unknown_cid_dropped == 0
    for addr in with_cid[:3]:
        net.clients[addr].close()
    net.pump()
    assert set(endpoint._by_cid) == set(cids[3:])
    endpoint.close(net.now)
    net.pump()
    assert not endpoint._by_cid and not endpoint._routes


def test_address_change_keeps_connection_after_return_routability_check(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), cid_length=4)
    net = Network(endpoint)
    old, new = ("198.51.100.1", 5000), ("198.51.100.99", 40000)
    client = _cid_client(net, pki, old)
    server_conn = endpoint.connections[old]
    client.send(b"before")
    net.pump()
    net.move(old, new)  # a NAT rebinding: the client now sends from `new`
    net.deliver_to = set()  # and the server's challenge is delayed
    client.send(b"moved")
    net.pump()
    # The record is authentic: processed at once (draft-ietf-tls-dtls-rrc §5) ...
    assert _data(net, server_conn) == [b"before", b"moved"]
    # ... but nothing moves before the new address answers the challenge.
    assert server_conn.peer_address == old and endpoint.connections[old] is server_conn
    assert new not in endpoint.connections and not net.connection_events(PeerAddressChanged)
    challenges = [d for d, to in net.to_clients if to == new]
    assert challenges and endpoint.stats().address_changes == 0
    net.deliver_to = None
    net.advance(3)  # the challenge is sent again; the client answers from `new`
    assert net.connection_events(PeerAddressChanged) == [
        (server_conn, PeerAddressChanged(old, new))
    ]
    assert server_conn.peer_address == new and endpoint.connections[new] is server_conn
    assert old not in endpoint.connections and len(endpoint.connections) == 1
    # The same connection, both ways, on the new path.
    server_conn.send(b"to the new address")
    endpoint.mark_pending(server_conn)
    client.send(b"still me")
    net.pump()
    assert _client_data(net, new) == [b"to the new address"]
    assert _data(net, server_conn) == [b"before", b"moved", b"still me"]
    assert net.to_clients[-1][1] == new
    stats = endpoint.stats()
    assert stats.address_changes == 1 and stats.amplification_dropped == 0
    assert stats.connections_active == 1 and stats.handshakes_started == 1


class _UnboundedChallenge(PathChallenge):
    """A path challenge that ignores the engine's own 3x budget, so that the endpoint's
    limit is what is tested."""

    @property  # type: ignore[override]
    def received(self) -> int:
        return 1 << 30

    @received.setter
    def received(self, value: int) -> None:
        pass


@pytest.mark.parametrize("engine_budget", [True, False])
def test_spoofed_cid_from_attacker_moves_nothing_and_is_not_amplified(
    pki: Any, engine_budget: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not engine_budget:
        monkeypatch.setattr(path_module, "PathChallenge", _UnboundedChallenge)
    endpoint = ServerEndpoint(server_context(pki), cid_length=8)
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    client = _cid_client(net, pki, addr)
    server_conn = endpoint.connections[addr]
    client.send(b"")  # the smallest authentic record: three challenges would exceed 3x it
    [(genuine, _)] = client.datagrams_to_send(net.now)
    # An on-path attacker races a copy from its own address, then replays it many times.
    for _ in range(20):
        endpoint.receive_datagram(genuine, ATTACKER, net.now)
    endpoint.receive_datagram(genuine, addr, net.now)  # the original: a duplicate now
    net.pump()
    assert _data(net, server_conn) == [b""]
    net.advance(30)  # the engine challenges the attacker's address, again and again
    assert server_conn.peer_address == addr and endpoint.connections[addr] is server_conn
    assert not net.connection_events(PeerAddressChanged) and ATTACKER not in endpoint.connections
    # Replays were discarded by the connection: only the first copy earned any budget,
    # and the endpoint kept to three times that (draft-ietf-tls-dtls-rrc §2).
    to_attacker = [d for d, to in net.to_clients if to == ATTACKER]
    assert to_attacker and sum(map(len, to_attacker)) <= 3 * len(genuine)
    stats = endpoint.stats()
    assert stats.address_changes == 0
    # Either the engine keeps within 3x itself, or the endpoint drops what exceeds it.
    assert (stats.amplification_dropped >= 1) == (not engine_budget)
    client.send(b"unharmed")
    net.pump()
    assert _data(net, server_conn) == [b"", b"unharmed"]


def test_unknown_cids_dropped_without_state(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki), cid_length=4)
    net = Network(endpoint)
    addr = ("198.51.100.1", 5000)
    client = _cid_client(net, pki, addr)
    server_conn = endpoint.connections[addr]
    rng = random.Random(3)
    known = server_conn.local_cid
    forged = []
    while len(forged) < 500:
        cid = rng.randbytes(4)
        if cid != known:
            forged.append(bytes([0x30 | rng.randrange(16)]) + cid + rng.randbytes(40))
    sent = len(net.to_clients)
    for i, data in enumerate(forged):  # from strangers, and from the client's own address
        endpoint.receive_datagram(data, addr if i % 5 == 0 else (f"10.0.{i % 256}.1", i), 1.0)
    assert endpoint.datagrams_to_send(1.0) == [] and len(net.to_clients) == sent
    stats = endpoint.stats()
    assert stats.unknown_cid_dropped == len(forged) and stats.garbage_dropped == 0
    assert stats.connections_active == 1 and stats.handshakes_started == 1
    assert list(endpoint._routes) == [addr] and list(endpoint._by_cid) == [known]
    assert server_conn.stats().dropped_failed_authentication == 0  # never reached it
    client.send(b"fine")
    net.pump()
    assert _data(net, server_conn) == [b"fine"]


def test_cid_generator_encodes_worker_id(pki: Any) -> None:
    worker = 7
    counter = itertools.count(1)
    made: list[bytes] = []

    def generator() -> bytes:
        cid = bytes([worker]) + next(counter).to_bytes(3, "big")
        made.append(cid)
        return cid

    endpoint = ServerEndpoint(server_context(pki), cid_generator=generator)
    assert endpoint.cid_length == 4  # from the generator's output
    net = Network(endpoint)
    addrs = [("198.51.100.1", 5000 + i) for i in range(3)]
    for addr in addrs:
        _cid_client(net, pki, addr)
    conn = endpoint.connections[addrs[0]]
    client = net.clients[addrs[0]]
    # Spares, issued later (RFC 9147 §9 NewConnectionId), and asked for by the client.
    spare = conn.issue_connection_ids(2)
    endpoint.mark_pending(conn)
    net.advance(2)
    client.request_connection_ids(2)
    net.advance(2)
    issued = [cid for c, e in net.connection_events(ConnectionIdsIssued) if c is conn
              for cid in e.cids]
    assert issued[:2] == spare and len(issued) == 4
    every = [cid for a in addrs for cid in endpoint.connections[a].local_cids]
    assert len(every) == 7 and len(set(every)) == 7
    assert all(cid[0] == worker for cid in every) and set(every) <= set(made)
    assert all(endpoint._by_cid[cid].connection is conn for cid in conn.local_cids)
    # The client switches to a spare: its records are routed by the new CID.
    for cid in issued:
        assert client.use_next_peer_cid() == cid
        client.send(b"with " + cid)
        net.pump()
        assert net.to_server[-1][0][1:5] == cid
    assert _data(net, conn) == [b"with " + cid for cid in issued]
    client.close()
    net.pump()
    assert not set(conn.local_cids) & set(endpoint._by_cid) and len(endpoint._by_cid) == 2


def test_cids_unique_among_live_connections(pki: Any) -> None:
    # A generator with two values: the endpoint skips the one in use, and refuses a
    # third connection rather than share a CID.
    values = itertools.cycle([b"w1", b"w1", b"w2"])
    endpoint = ServerEndpoint(
        server_context(pki), cid_generator=lambda: next(values), cookie_mode=CookieMode.NEVER
    )
    net = Network(endpoint)
    addrs = [("198.51.100.1", 5000 + i) for i in range(3)]
    for addr in addrs[:2]:
        _cid_client(net, pki, addr)
    assert {endpoint.connections[a].local_cid for a in addrs[:2]} == {b"w1", b"w2"}
    net.add_client(addrs[2], client_context(pki, connection_id=b""))
    net.pump()
    assert not completed(net, addrs[2]) and endpoint.stats().refused_connection_limit >= 1
    with pytest.raises(ValueError):
        ServerEndpoint(server_context(pki), cid_length=4, cid_generator=lambda: b"abc")
    with pytest.raises(ValueError):
        ServerEndpoint(server_context(pki), cid_length=256)


# ---- through real sockets ----


class _Relay:
    """A NAT on loopback: forwards a client's datagrams to `server` from its current
    outside socket, which `rebind` replaces, and replies from any of them back."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.client: Any = None
        self.inside: asyncio.DatagramTransport | None = None
        self.outside: list[asyncio.DatagramTransport] = []
        self.replies: list[int] = []  # datagrams back through each outside socket

    async def _socket(self, receive: Any) -> asyncio.DatagramTransport:
        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                receive(data, addr)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
        return transport

    async def start(self) -> int:
        self.inside = await self._socket(self._from_client)
        await self.rebind()
        return int(self.inside.get_extra_info("sockname")[1])

    async def rebind(self) -> Any:
        index = len(self.outside)
        self.replies.append(0)

        def back(data: bytes, _: Any) -> None:
            self.replies[index] += 1
            assert self.inside is not None
            self.inside.sendto(data, self.client)

        self.outside.append(await self._socket(back))
        return self.outside[-1].get_extra_info("sockname")

    def _from_client(self, data: bytes, addr: Any) -> None:
        self.client = addr
        self.outside[-1].sendto(data, self.server)

    def close(self) -> None:
        for transport in [self.inside, *self.outside]:
            if transport is not None:
                transport.close()


def test_address_change_through_real_sockets(pki: Any) -> None:
    async def main() -> None:
        seen: list[aio.AsyncConnection] = []

        async def echo(conn: aio.AsyncConnection) -> None:
            seen.append(conn)
            async for message in conn:
                await conn.send(message)

        ctx = server_context(pki)
        async with await aio.serve(echo, "127.0.0.1", 0, ctx, cid_length=5) as server:
            relay = _Relay(("127.0.0.1", server.port))
            try:
                port = await relay.start()
                async with await aio.connect(
                    "127.0.0.1", port, client_context(pki, connection_id=b""),
                    server_name="localhost", timeout=10,
                ) as conn:
                    await conn.send(b"one")
                    assert await conn.recv() == b"one"
                    [server_conn] = seen
                    assert len(conn.connection.peer_cid or b"") == 5
                    new = await relay.rebind()
                    assert server_conn.peer_address != new
                    await conn.send(b"two")  # from the new address: challenged there
                    assert await conn.recv() == b"two"
                    while server_conn.peer_address != new:
                        await asyncio.sleep(0.005)
                    await conn.send(b"three")
                    assert await conn.recv() == b"three"
                    assert relay.replies[1] >= 2  # the challenge and the echo, at least
                    stats = server.stats()
                    assert stats.address_changes == 1 and stats.datagrams_routed_by_cid >= 3
                    assert stats.amplification_dropped == 0 and len(seen) == 1
            finally:
                relay.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_batched_receive_matches_one_datagram_at_a_time(pki: Any) -> None:
    """ServerEndpoint.receive_datagrams: runs for one connection go in together; the
    outcome (data per connection, statistics) is that of receive_datagram per datagram."""
    outcomes = []
    for batched in (False, True):
        endpoint = ServerEndpoint(server_context(pki), cid_length=4)
        net = Network(endpoint)
        addrs = [("198.51.100.9", 7000 + i) for i in range(4)]
        for i, addr in enumerate(addrs):
            net.add_client(addr, client_context(pki, connection_id=b"" if i < 2 else None))
        net.pump()
        assert all(completed(net, a) for a in addrs)
        batch: list[tuple[bytes, Any]] = []
        for round_ in range(3):
            for i, addr in enumerate(addrs):
                client = net.clients[addr]
                client.send_batch([b"%d/%d/%d" % (i, round_, n) * 50 for n in range(5)])
                batch += [(d, addr) for d, _ in client.datagrams_to_send(net.now)]
        batch.insert(3, batch[1])  # a duplicate
        batch.insert(7, (b"\x2f\x00\x01garbage", addrs[0]))
        batch.insert(9, (batch[8][0], ("203.0.113.5", 9)))  # a record from elsewhere
        batch.append((b"\x3c\xff\xff\xff\xff" + bytes(40), addrs[2]))  # an unknown CID
        if batched:
            endpoint.receive_datagrams(batch, net.now)
        else:
            for data, addr in batch:
                endpoint.receive_datagram(data, addr, net.now)
        net.pump()
        stats = endpoint.stats()
        outcomes.append((
            [_data(net, endpoint.connections[a]) for a in addrs],
            stats.datagrams_received, stats.bytes_received, stats.datagrams_routed_by_cid,
            stats.garbage_dropped, stats.unknown_cid_dropped,
        ))  # fmt: skip
    assert outcomes[0] == outcomes[1]
    data = outcomes[1][0]
    assert data[3] == [b"3/%d/%d" % (r, n) * 50 for r in range(3) for n in range(5)]
    assert outcomes[1][3] > 0 and outcomes[1][5] == 1


def test_valid_cookie_proves_the_address_and_the_connection_answers_the_rest(pki: Any) -> None:
    """RFC 9147 §5.1: once a ClientHello returns a valid cookie the endpoint keeps state;
    what else is wrong with it is answered by the connection with an alert, not dropped."""
    endpoint = ServerEndpoint(server_context(pki), cookie_mode=CookieMode.ALWAYS)
    addr = ("198.51.100.40", 5000)
    client = Connection(client_context(pki), server_name="localhost")
    client.connect(SERVER, 0.0)
    for data, _ in client.datagrams_to_send(0.0):
        endpoint.receive_datagram(data, addr, 0.0)
    for data, _ in endpoint.datagrams_to_send(0.0):
        client.receive_datagram(data, SERVER, 0.0)  # the cookie HRR
    second = bytearray(client.datagrams_to_send(0.0)[0][0])
    # record header 13, handshake header 12, legacy_version 2, random 32, two empty vectors
    at = 13 + 12 + 2 + 32 + 1 + 1
    count = int.from_bytes(second[at : at + 2], "big") // 2
    second[at + 2 : at + 2 + 2 * count] = b"\x13\x99" * count  # no suite we know
    endpoint.receive_datagram(bytes(second), addr, 0.0)
    replies = [d for d, a in endpoint.datagrams_to_send(0.0) if a == addr]
    assert replies and replies[0][0] == 21  # an alert record (RFC 9846 §6)
    assert replies[0][-1] == AlertDescription.HANDSHAKE_FAILURE
    assert endpoint.stats().handshakes_failed == 1


def test_fragment_claiming_a_huge_client_hello_holds_only_what_arrived(pki: Any) -> None:
    """One 25-byte datagram claiming a 65,536-byte ClientHello (RFC 9147 §5.5): a server
    that makes a connection for it (cookie mode "never") holds the bytes received, not a
    buffer of the claimed length."""
    endpoint = ServerEndpoint(server_context(pki), cookie_mode=CookieMode.NEVER)
    header = bytes([22, 0xFE, 0xFD]) + bytes(8) + (12).to_bytes(2, "big")
    fragment = bytes([1]) + (65536).to_bytes(3, "big") + bytes(2) + bytes(3) + bytes(3)
    datagram = header + fragment
    assert len(datagram) == 25
    addr = ("198.51.100.41", 5000)
    gc.collect()
    tracemalloc.start()
    try:
        endpoint.receive_datagram(datagram, addr, 0.0)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    [conn] = endpoint.connections.values()
    assert conn._reassembler.buffered == 0
    reassembly = snapshot.filter_traces([tracemalloc.Filter(True, "*/dtls/reliability.py")])
    held = sum(stat.size for stat in reassembly.statistics("filename"))
    assert held < 2048, held  # 64 KB (the claimed length) before
    # The rest of the ClientHello never comes: the handshake times out and is forgotten.
    endpoint.handle_timer(endpoint.handshake_timeout + 1)
    assert not endpoint.connections
