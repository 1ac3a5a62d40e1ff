"""A fragmented first ClientHello is answered by a server that requires cookies: the
endpoint reassembles it within a small global budget (RFC 9147 §5.1, §5.5), then sends
the cookie HelloRetryRequest as for an unfragmented one. Spoofed fragments only evict
each other."""

from __future__ import annotations

import gc
import os
import random
import time
import tracemalloc
from typing import Any

import pytest
from test_server import SERVER, Network, client_context, completed, server_context

from dtls.connection import Connection
from dtls.events import HandshakeCompleted, SessionTicketReceived
from dtls.iana import (
    DTLS13_VERSION,
    CipherSuite,
    ContentType,
    HandshakeType,
    NamedGroup,
    SignatureScheme,
)
from dtls.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    ClientHello,
    KeyShareEntry,
    ServerHello,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_handshake_body,
    encode_handshake_fragment,
)
from dtls.record_py import PLAINTEXT_HEADER_LEN, seal_plaintext, split_datagram
from dtls.server import (
    MAX_PARTIAL_CLIENT_HELLO_BYTES,
    MAX_PARTIAL_CLIENT_HELLOS,
    PARTIAL_CLIENT_HELLO_LIFETIME,
    ServerEndpoint,
)

ADDR = ("198.51.100.50", 5000)


def _client_hello_body(datagram: bytes) -> tuple[int, bytes]:
    """(message_seq, body) of the unfragmented ClientHello in a datagram."""
    [span] = split_datagram(datagram)[0]
    [frag] = decode_handshake_fragments(
        datagram[span.offset + PLAINTEXT_HEADER_LEN : span.offset + span.length]
    )
    assert frag.msg_type == HandshakeType.CLIENT_HELLO and frag.fragment_length == frag.length
    return frag.message_seq, frag.fragment


def _fragments(message_seq: int, body: bytes, size: int, first_record: int = 0) -> list[bytes]:
    """The ClientHello in datagrams of one fragment of `size` bytes each (RFC 9147 §5.5)."""
    return [
        seal_plaintext(
            ContentType.HANDSHAKE,
            first_record + i,
            encode_handshake_fragment(
                HandshakeType.CLIENT_HELLO, len(body), message_seq, at, body[at : at + size]
            ),
        )
        for i, at in enumerate(range(0, len(body), size))
    ]


def test_resumption_at_mtu_256_fragments_the_first_client_hello_and_completes(pki: Any) -> None:
    # A ticket makes the first ClientHello larger than 256 bytes even without a key share.
    endpoint = ServerEndpoint(server_context(pki))  # cookie mode "always", the default
    net = Network(endpoint)
    first = ("198.51.100.51", 5000)
    net.add_client(first, client_context(pki))
    net.advance(0.5)
    tickets = [e for e in net.client_events[first] if isinstance(e, SessionTicketReceived)]
    session = tickets[0].session
    addr = ("198.51.100.52", 5000)
    conn = Connection(client_context(pki, max_datagram_size=256), server_name="localhost",
                      session=session)
    net.clients[addr], net.client_events[addr] = conn, []
    conn.connect(SERVER, net.now)
    net.pump()
    hellos = [d for d, a in net.to_server if a == addr and d[0] == ContentType.HANDSHAKE]
    assert len(hellos) >= 2 and all(len(d) <= 256 for d in hellos)  # it was fragmented
    assert completed(net, addr)
    [done] = [e for e in net.client_events[addr] if isinstance(e, HandshakeCompleted)]
    assert done.resumed
    stats = endpoint.stats()
    assert stats.cookies_sent == 2 and stats.client_hellos_reassembled >= 1
    assert stats.partial_client_hellos == stats.partial_client_hello_bytes == 0


def test_fragments_in_any_order_get_one_cookie_retry(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    net = Network(endpoint)
    client = net.add_client(ADDR, client_context(pki), connect=False)
    client.connect(SERVER, 0.0)
    [datagram] = [d for d, _ in client.datagrams_to_send(0.0)]
    message_seq, body = _client_hello_body(datagram)
    pieces = _fragments(message_seq, body, 45, first_record=0)
    assert len(pieces) == 4
    order = [2, 0, 3, 2, 1]  # out of order, one duplicate; the last one completes it
    for n, index in enumerate(order):
        endpoint.receive_datagram(pieces[index], ADDR, 0.01 * n)
        replies = endpoint.datagrams_to_send(0.01 * n)
        if n < len(order) - 1:
            assert replies == []
            assert endpoint.stats().partial_client_hellos == 1
    [(hrr, to)] = replies
    assert to == ADDR and hrr[13] == HandshakeType.SERVER_HELLO  # the cookie HRR
    assert hrr[5:11] == (3).to_bytes(6, "big")  # the highest record number it answers
    stats = endpoint.stats()
    assert stats.client_hellos_reassembled == 1 and stats.cookies_sent == 1
    assert stats.client_hello_fragments_buffered == len(order)
    assert stats.partial_client_hellos == stats.partial_client_hello_bytes == 0
    assert not endpoint.connections  # still no state: the cookie comes back first
    # The client goes on from the HelloRetryRequest as it would for an unfragmented one.
    client.receive_datagram(hrr, SERVER, net.now)
    net.pump()
    assert completed(net, ADDR)


def test_partial_client_hello_expires_and_is_replaced(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    client = Connection(client_context(pki), server_name="localhost")
    client.connect(SERVER, 0.0)
    message_seq, body = _client_hello_body(client.datagrams_to_send(0.0)[0][0])
    first, *rest = _fragments(message_seq, body, 100)
    endpoint.receive_datagram(first, ADDR, 0.0)
    # Too late: the first fragment was forgotten, the rest starts a new partial one.
    for data in rest:
        endpoint.receive_datagram(data, ADDR, PARTIAL_CLIENT_HELLO_LIFETIME)
    stats = endpoint.stats()
    assert endpoint.datagrams_to_send(PARTIAL_CLIENT_HELLO_LIFETIME) == []
    assert stats.partial_client_hellos_expired == 1 and stats.partial_client_hellos == 1
    assert stats.partial_client_hello_bytes == len(body) - 100
    # Another ClientHello from the address (a new message_seq) replaces it.
    other = _fragments(message_seq + 1, body, 100)
    endpoint.receive_datagram(other[0], ADDR, PARTIAL_CLIENT_HELLO_LIFETIME + 0.1)
    stats = endpoint.stats()
    assert stats.partial_client_hellos_evicted == 1 and stats.partial_client_hello_bytes == 100


def test_a_fragment_that_cannot_be_a_first_client_hello_is_dropped(pki: Any) -> None:
    endpoint = ServerEndpoint(server_context(pki))
    huge = seal_plaintext(
        ContentType.HANDSHAKE, 0,
        encode_handshake_fragment(HandshakeType.CLIENT_HELLO, 1 << 20, 0, 0, bytes(100)),
    )
    endpoint.receive_datagram(huge, ADDR, 0.0)  # claims more than one record holds
    stats = endpoint.stats()
    assert stats.garbage_dropped == 1 and stats.partial_client_hellos == 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_100k_spoofed_fragments_stay_within_the_budget(pki: Any) -> None:
    """100,000 first-ClientHello fragments from as many spoofed addresses: the endpoint
    never holds more than its budget, answers none of them, keeps no other state, and its
    resident memory stays flat; then what is left expires."""
    endpoint = ServerEndpoint(server_context(pki))
    body = _post_quantum_client_hello()
    assert len(body) > 1300  # the ML-KEM share: fragmented at 1200
    small = _fragments(0, body, 200)
    large = _fragments(0, body, 1100)
    pieces = [large[0], large[1], small[0], small[3]]
    rng = random.Random(3)
    count = 100_000
    gc.collect()
    started = time.perf_counter()
    baseline = 0
    for i in range(count):
        addr = (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", rng.randrange(1024, 65536))
        endpoint.receive_datagram(pieces[i % len(pieces)], addr, 1.0 + i * 1e-5)
        if i % 1000 == 0:
            stats = endpoint.stats()
            assert stats.partial_client_hellos <= MAX_PARTIAL_CLIENT_HELLOS
            assert stats.partial_client_hello_bytes <= MAX_PARTIAL_CLIENT_HELLO_BYTES
        if i == count // 10:
            baseline = _rss()
    elapsed = time.perf_counter() - started
    growth = _rss() - baseline
    print(f"{count} spoofed fragments: {elapsed:.1f} s, RSS growth {growth} B")
    assert growth < 4_000_000, growth  # no more than noise: the budget was full at 10%
    stats = endpoint.stats()
    assert stats.client_hello_fragments_buffered == count
    assert stats.partial_client_hellos == MAX_PARTIAL_CLIENT_HELLOS
    assert stats.partial_client_hellos_evicted == count - MAX_PARTIAL_CLIENT_HELLOS
    assert stats.client_hellos_reassembled == stats.cookies_sent == stats.garbage_dropped == 0
    assert stats.datagrams_sent == 0 and endpoint.datagrams_to_send(3.0) == []
    assert not endpoint.connections and endpoint.get_timer() is None
    # A lifetime later the next fragment finds them all expired.
    later = 1.0 + count * 1e-5 + PARTIAL_CLIENT_HELLO_LIFETIME
    endpoint.receive_datagram(pieces[0], ("198.51.100.54", 5000), later)
    stats = endpoint.stats()
    assert stats.partial_client_hellos_expired == MAX_PARTIAL_CLIENT_HELLOS
    assert stats.partial_client_hellos == 1 and stats.partial_client_hello_bytes == 1100
    # The budget still leaves room for a real client.
    net = Network(endpoint)
    net.now = later
    addr = ("198.51.100.53", 5000)
    net.add_client(addr, client_context(pki))
    net.pump()
    assert completed(net, addr)


def test_spoofed_fragments_keep_no_memory_past_the_budget(pki: Any) -> None:
    """The same, traced, with large fragments: Python allocations stay flat once the byte
    budget is full."""
    endpoint = ServerEndpoint(server_context(pki))
    large = _fragments(0, _post_quantum_client_hello(), 1100)
    gc.collect()
    tracemalloc.start()
    try:
        baseline = 0
        for i in range(3000):
            endpoint.receive_datagram(large[0], (f"10.9.{i >> 8}.{i & 255}", 4000), 1.0)
            if i == 600:
                baseline = tracemalloc.get_traced_memory()[0]
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    stats = endpoint.stats()
    # 1,100 bytes each: the byte budget binds before the count does
    assert stats.partial_client_hellos == MAX_PARTIAL_CLIENT_HELLO_BYTES // 1100
    assert stats.partial_client_hello_bytes == 1100 * stats.partial_client_hellos
    assert stats.partial_client_hellos_evicted == 3000 - stats.partial_client_hellos
    assert growth < 50_000, growth


def _post_quantum_client_hello() -> bytes:
    """A ClientHello body with an X25519MLKEM768 share (random bytes of its length)."""
    group = NamedGroup.X25519MLKEM768
    hello = ClientHello(
        random=os.urandom(32),
        cipher_suites=[CipherSuite.TLS_AES_128_GCM_SHA256],
        supported_versions=[DTLS13_VERSION],
        supported_groups=[group],
        key_share=[KeyShareEntry(group, os.urandom(1216))],
        signature_algorithms=[SignatureScheme.ECDSA_SECP256R1_SHA256],
        server_name="localhost",
    )
    return encode_handshake_body(hello)


@pytest.mark.parametrize("mtu", [1200, 256])
def test_post_quantum_share_in_a_fragmented_first_client_hello(pki: Any, mtu: int) -> None:
    """fragment_first_client_hello: the X25519MLKEM768 share goes in the first ClientHello
    however many datagrams it takes; the default server (cookie mode "always") reassembles
    it, and its one HelloRetryRequest is for the cookie, not for a group."""
    endpoint = ServerEndpoint(server_context(pki, max_datagram_size=mtu))
    net = Network(endpoint)
    ctx = client_context(pki, key_share_groups=("x25519mlkem768",),
                         fragment_first_client_hello=True, max_datagram_size=mtu)
    net.add_client(ADDR, ctx)
    net.pump()
    assert completed(net, ADDR)
    [done] = [e for e in net.client_events[ADDR] if isinstance(e, HandshakeCompleted)]
    assert done.group == "x25519mlkem768"
    assert all(len(d) <= mtu for d, _ in net.to_server + net.to_clients)
    hrrs = [d for d, _ in net.to_clients if d[13] == HandshakeType.SERVER_HELLO
            and HELLO_RETRY_REQUEST_RANDOM in d]
    [hrr] = hrrs  # one round trip for the cookie, none for the group
    [span] = split_datagram(hrr)[0]
    [frag] = decode_handshake_fragments(hrr[span.offset + 13 : span.offset + span.length])
    retry = decode_handshake_body(HandshakeType.SERVER_HELLO, frag.fragment)
    assert isinstance(retry, ServerHello) and retry.selected_group is None
    assert retry.cookie is not None
    stats = endpoint.stats()
    assert stats.cookies_sent == 1 and stats.client_hellos_reassembled == 1
    assert stats.handshakes_completed == 1
