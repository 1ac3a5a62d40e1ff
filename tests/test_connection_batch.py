"""Connection.send_batch and Connection.receive_datagrams: the batched data path.

The batched path must behave exactly as the one-datagram path: the same events in the
same order, the same drops and counters, under loss, reordering, duplication, forgery,
KeyUpdate, close_notify, connection IDs and a peer that moves.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from loopback import CLIENT_ADDR, Loopback, one_per_record
from test_connection import handshake, make_pair

from dtls.connection import HandshakeState
from dtls.errors import ConnectionStateError
from dtls.events import (
    ConnectionClosed,
    DataReceived,
    DataReceivedBatch,
    KeyUpdated,
    SessionTicketReceived,
)
from dtls.iana import AlertDescription


def messages(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([1, 17, 300, 1100])) for _ in range(count)]


def established(pki: Any, *, batched: bool, **kwargs: Any) -> Loopback:
    link = make_pair(pki, **kwargs)
    link.batched = batched
    handshake(link)
    return link


def send_both_ways(link: Loopback, payloads: list[bytes], *, batch: int) -> None:
    for i in range(0, len(payloads), batch):
        chunk = payloads[i : i + batch]
        link.client.send_batch(chunk)
        link.server.send_batch([p[::-1] for p in chunk])


def received(link: Loopback, side: str) -> list[bytes]:
    return [e.data for e in link.events_of(side, DataReceived)]


def comparable(event: Any) -> Any:
    # a ticket differs from run to run (fresh keys); every other event must not
    return type(event).__name__ if isinstance(event, SessionTicketReceived) else event


def test_batched_delivery_is_complete_and_in_order(pki: Any) -> None:
    link = established(pki, batched=True)
    payloads = messages(600, seed=1)
    send_both_ways(link, payloads, batch=64)
    link.run(until=link.now + 60)
    assert received(link, "server") == payloads
    assert received(link, "client") == [p[::-1] for p in payloads]
    counters = link.server.record_counters
    assert counters.records_opened >= 600 and counters.failed_authentication == 0


@pytest.mark.parametrize("seed", [3, 4])
def test_batched_path_matches_single_path_under_loss_and_reordering(pki: Any, seed: int) -> None:
    """Same seed, same network: identical events and counters with and without batching,
    with loss, duplication, jitter (reordering) and a KeyUpdate from each side."""
    outcomes, batches = [], []
    for batched in (False, True):
        link = established(pki, batched=batched)
        rng = random.Random(seed)

        def lossy(sent: Any, rng: random.Random = rng) -> list[bytes]:
            roll = rng.random()
            if roll < 0.1:
                return []
            return [sent.data, sent.data] if roll < 0.15 else [sent.data]

        link.filter = lossy
        link.jitter = 0.002  # a burst arrives in random order: 25 records, inside the window
        payloads = messages(300, seed)
        for i in range(0, 300, 25):
            if i == 150:
                link.client.update_keys()
                link.server.update_keys(request_peer_update=False)
            send_both_ways(link, payloads[i : i + 25], batch=25)
            link.run(until=link.now + 0.05)
        link.run(until=link.now + 60)
        counters = link.server.record_counters
        batches.append(len(link.events_of("server", DataReceivedBatch)))
        outcomes.append(
            (
                [comparable(e) for e in one_per_record(link.client_events)],
                [comparable(e) for e in one_per_record(link.server_events)],
                (counters.records_opened, counters.replayed, counters.failed_authentication),
                link.client.send_epoch,
                link.server.send_epoch,
            )
        )
    assert outcomes[0] == outcomes[1]
    assert batches[1] > 10 and batches[0] == 0  # the batched run did take the batch path
    _, server_events, (opened, replayed, _), client_epoch, _ = outcomes[1]
    assert replayed > 0 and client_epoch == 4  # duplicates were dropped; keys moved on
    assert any(isinstance(e, KeyUpdated) for e in server_events)
    assert len([e for e in server_events if isinstance(e, DataReceived)]) > 200
    assert opened > 250


def test_forged_and_replayed_records_in_a_run_are_counted(pki: Any) -> None:
    link = established(pki, batched=True)
    a, b, c = (bytes([i]) * 1000 for i in b"abc")  # one record per datagram
    link.client.send_batch([a, b, c])
    sent = [d for d, _ in link.client.datagrams_to_send(link.now)]
    forged = bytearray(sent[1])
    forged[-1] ^= 1
    server = link.server
    server.receive_datagrams(
        [(sent[0], CLIENT_ADDR), (bytes(forged), CLIENT_ADDR), (sent[0], CLIENT_ADDR),
         (sent[2], CLIENT_ADDR), (b"\x2f\x00", CLIENT_ADDR)],
        link.now,
    )  # fmt: skip
    events = list(iter(server.next_event, None))
    assert [type(e) for e in events] == [DataReceivedBatch]  # one event for the run
    assert [bytes(v) for v in events[0].data] == [a, c]
    counters = server.record_counters
    assert counters.failed_authentication == 1 and counters.replayed == 1
    assert counters.malformed == 1
    assert server.state is HandshakeState.CONNECTED


def test_close_notify_inside_a_run_ends_it(pki: Any) -> None:
    link = established(pki, batched=True)
    link.client.send_batch([b"one", b"two"])
    first = [d for d, _ in link.client.datagrams_to_send(link.now)]
    link.client.close()  # close_notify: a record of the same epoch
    closing = [d for d, _ in link.client.datagrams_to_send(link.now)]
    link.server.receive_datagrams([(d, CLIENT_ADDR) for d in first + closing + first], link.now)
    events = one_per_record(list(iter(link.server.next_event, None)))
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"one", b"two"]
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.CLOSE_NOTIFY
    assert link.server.state is HandshakeState.CLOSED


def test_a_datagram_from_a_new_address_leaves_the_run(pki: Any) -> None:
    """RFC 9147 §9: a record from another address starts the return routability check;
    it is not batched with the records from the peer's address."""
    link = established(pki, batched=True, client_settings={"connection_id": b"\x01\x02"},
                       server_settings={"connection_id": b"\x03\x04"})  # fmt: skip
    x, y, z = (bytes([i]) * 1000 for i in b"xyz")
    link.client.send_batch([x, y, z])
    sent = [d for d, _ in link.client.datagrams_to_send(link.now)]
    moved = ("192.0.2.77", 6000)
    link.server.receive_datagrams(
        [(sent[0], CLIENT_ADDR), (sent[1], moved), (sent[2], CLIENT_ADDR)], link.now
    )
    events = one_per_record(list(iter(link.server.next_event, None)))
    assert [e.data for e in events if isinstance(e, DataReceived)] == [x, y, z]
    assert link.server.peer_address == CLIENT_ADDR  # not moved before the check
    probes = [addr for _, addr in link.server.datagrams_to_send(link.now)]
    assert moved in probes  # the path challenge went to the new address


def test_send_batch_follows_send_rules(pki: Any) -> None:
    link = make_pair(
        pki,
        client_settings={"record_size_limit": 600},
        server_settings={"record_size_limit": 600},
    )
    link.client.send_batch([b"early", b"queued"])  # before the handshake: queued
    handshake(link)
    link.run(until=link.now + 10)
    assert received(link, "server") == [b"early", b"queued"]
    with pytest.raises(ValueError):
        link.client.send_batch([b"ok", bytes(700)])  # over the peer's record_size_limit
    link.client.close()
    with pytest.raises(ConnectionStateError):
        link.client.send_batch([b"late"])


def test_send_batch_near_the_confidentiality_limit_updates_keys(pki: Any) -> None:
    """RFC 9147 §4.5.3: the batch path hands over to `send`, which starts the KeyUpdate."""
    link = established(pki, batched=True, client_settings={"confidentiality_limit": 40})
    below = 29 - link.client._records.send_epochs[3].next_seq  # 3/4 of 40 is 30
    link.client.send_batch([b"m"] * below)
    link.run(until=link.now + 10)
    assert link.client.send_epoch == 3
    link.client.send_batch([b"m"] * 2)  # reaches 3/4 of the limit
    link.run(until=link.now + 10)
    assert link.client.send_epoch == 4
    assert len(received(link, "server")) == below + 2


def test_records_packed_around_a_key_update_match_the_single_path(pki: Any) -> None:
    """Small records share datagrams (RFC 9147 §4.3) with the KeyUpdate between them: the
    run stops after the handshake record, the general path takes the rest of that
    datagram, and events and counters are those of receive_datagram."""
    outcomes = []
    for batched in (False, True):
        link = established(pki, batched=batched)
        client = link.client
        client.send_batch([b"before %d" % i for i in range(5)])
        client.update_keys(request_peer_update=False)
        client.send_batch([b"after %d" % i for i in range(5)])
        sent = [d for d, _ in client.datagrams_to_send(link.now)]
        assert len(sent) < 11  # packed: several records a datagram
        batch = [(d, CLIENT_ADDR) for d in sent + sent[:1]]  # and a replayed datagram
        server = link.server
        if batched:
            server.receive_datagrams(batch, link.now)
        else:
            for data, addr in batch:
                server.receive_datagram(data, addr, link.now)
        events = list(iter(server.next_event, None))
        if batched:
            assert any(isinstance(e, DataReceivedBatch) for e in events)
        counters = server.record_counters
        outcomes.append((
            [comparable(e) for e in one_per_record(events)],
            (counters.records_opened, counters.bytes_opened, counters.replayed,
             counters.malformed, counters.unknown_epoch),
        ))  # fmt: skip
    assert outcomes[0] == outcomes[1]
    data = [e.data for e in outcomes[1][0] if isinstance(e, DataReceived)]
    assert data == [b"before %d" % i for i in range(5)] + [b"after %d" % i for i in range(5)]
    assert outcomes[1][1][2] > 0  # the replayed datagram's records were dropped


def test_send_segments_seals_one_gso_buffer_in_order_with_other_datagrams(pki: Any) -> None:
    """Connection.send_segments: records at a fixed stride in one buffer that
    segments_to_send hands out as it is (UDP GSO), between the datagrams before and after
    it; datagrams_to_send gives the same records one datagram each."""
    link = established(pki, batched=True)
    client, server = link.client, link.server
    stream = bytes(range(256)) * 4  # 1024 bytes: three 300-byte messages and 124
    client.send(b"before")
    client.send_segments(stream, 300)
    client.send(b"after")
    out = client.segments_to_send(link.now)
    assert len(out) == 3 and out[0][1] == len(out[0][0]) and out[2][1] == len(out[2][0])
    data, stride, _ = out[1]
    run = [bytes(data[i : i + stride]) for i in range(0, len(data), stride)]
    assert len(run) == 4 and all(len(d) == stride for d in run[:3]) and len(run[3]) < stride
    datagrams = [bytes(out[0][0]), *run, bytes(out[2][0])]
    server.receive_datagrams([(d, CLIENT_ADDR) for d in datagrams], link.now)
    got = one_per_record(list(iter(server.next_event, None)))
    assert [e.data for e in got] == [b"before", stream[:300], stream[300:600], stream[600:900],
                                     stream[900:], b"after"]  # fmt: skip
    client.send_segments(stream, 300)  # and through datagrams_to_send: one per record
    again = [d for d, _ in client.datagrams_to_send(link.now)]
    assert len(again) == 4 and len(again[0]) == stride
    server.receive_datagrams([(d, CLIENT_ADDR) for d in again], link.now)
    assert b"".join(e.data for e in one_per_record(list(iter(server.next_event, None)))) == stream
    assert client.segments_to_send(link.now) == []


def test_send_segments_before_the_handshake_queues_like_send_batch(pki: Any) -> None:
    link = make_pair(pki)
    link.client.send_segments(b"abcdefgh", 3)
    handshake(link)
    link.run(until=link.now + 10)
    assert received(link, "server") == [b"abc", b"def", b"gh"]


def test_receive_segments_matches_receive_datagrams(pki: Any) -> None:
    """A GRO run opened in place in its buffer: the same data, drops and counters as its
    datagrams through receive_datagrams, with a forged, a replayed and a short segment."""
    outcomes = []
    for in_place in (False, True):
        link = established(pki, batched=True)
        link.client.send_segments(bytes(range(200)) * 30, 1000)  # 6 datagrams
        [(data, stride, _)] = link.client.segments_to_send(link.now)
        segments = [bytearray(data[i : i + stride]) for i in range(0, len(data), stride)]
        segments[2][-1] ^= 1  # forged
        segments.insert(4, bytearray(segments[1]))  # replayed
        segments.append(bytearray(b"\x2f\x00\x05short"))  # the last may be shorter: garbage
        server = link.server
        if in_place:
            buffer = bytearray().join(segments)
            server.receive_segments(buffer, stride, CLIENT_ADDR, link.now)
        else:
            server.receive_datagrams([(bytes(s), CLIENT_ADDR) for s in segments], link.now)
        events = list(iter(server.next_event, None))
        if in_place:
            assert [type(e) for e in events] == [DataReceivedBatch]
        counters = server.record_counters
        outcomes.append((
            [bytes(e.data) for e in one_per_record(events)],
            (counters.records_opened, counters.bytes_opened, counters.replayed,
             counters.failed_authentication, counters.malformed),
        ))  # fmt: skip
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[1][0]) == 5 and outcomes[1][1][2:] == (1, 1, 1)
