"""The one-call paths of the application epoch (`Connection.send` / `receive_datagram`
through `RecordLayer.app_send` / `app_receive`): the same bytes, drops, counters, limits
and events as the general path (RFC 9147 §4, §4.5.1, §4.5.3, §8, §9)."""

from __future__ import annotations

from typing import Any

import pytest
from loopback import CLIENT_ADDR, Loopback
from test_connection import handshake, make_pair

from dtls.events import ConnectionClosed, DataReceived
from dtls.handshake import FlightKind
from dtls.iana import AlertDescription
from dtls.record_layer import RecordLayer

CIDS = {
    "no-cid": ({}, {}),
    "cid": ({"connection_id": b"client-1"}, {"connection_id": b"srv-0001"}),
}


def general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections made from now on never take the one-call paths."""
    monkeypatch.setattr(RecordLayer, "_start_app_send", lambda self, state: None)
    monkeypatch.setattr(RecordLayer, "_start_app_receive", lambda self, state: None)


def established(pki: Any, cids: str, **settings: Any) -> Loopback:
    client, server = CIDS[cids]
    link = make_pair(pki, client_settings=dict(client),
                     server_settings={**server, **settings})  # fmt: skip
    handshake(link)
    link.run(until=link.now + 5)
    return link


def counters(conn: Any, before: tuple[int, ...] = (0,) * 9) -> tuple[Any, ...]:
    """What the connection counted (since `before`), its state and epochs."""
    s = conn.stats()
    now = (s.records_sealed, s.bytes_sealed, s.records_opened, s.bytes_opened,
           s.dropped_malformed, s.dropped_replayed, s.dropped_failed_authentication,
           s.dropped_unknown_epoch, s.retransmissions)  # fmt: skip
    counted = tuple(a - b for a, b in zip(now, before, strict=True))
    return (*counted, s.state, s.send_epoch, s.receive_epochs, s.replay_window_next)


def damaged_stream(link: Loopback, fast: bool) -> tuple[Any, ...]:
    """Records from the client, delivered to the server reordered, replayed, forged,
    truncated, joined, from an older epoch after a KeyUpdate and after a CID change."""
    client, server, now = link.client, link.server, link.now

    def sent(payload: bytes) -> bytes:
        client.send(payload)
        ((datagram, _),) = client.datagrams_to_send(now)
        return datagram

    def deliver(datagram: bytes) -> None:
        server.receive_datagram(datagram, CLIENT_ADDR, now)

    link.run(until=link.now + 5)
    start = len(link.server_events)
    before = counters(server)[:9], counters(client)[:9]
    d = [sent(b"m%d" % i) for i in range(10)]
    assert (client._records.app_send is not None) is fast
    deliver(d[0])
    assert (server._records.app_receive is not None) is fast
    for i in (2, 1, 1, 0):  # reordered, then replayed
        deliver(d[i])
    forged = bytearray(d[3])
    forged[-1] ^= 1
    deliver(bytes(forged))
    deliver(d[3][:-3])  # truncated: its length field no longer fits
    deliver(d[3][:5])
    deliver(d[3])
    deliver(d[4] + d[5])  # two records in one datagram
    deliver(d[6] + b"\x2f")  # trailing garbage
    deliver(bytes([d[7][0] ^ 3]) + d[7][1:])  # another epoch's bits
    deliver(b"")
    deliver(b"\x17\xfe\xfd" + bytes(20))
    # a KeyUpdate mid-stream (RFC 9147 §8), then a late record of the older epoch
    client.update_keys()
    link.run(until=link.now + 5)
    now = link.now
    deliver(d[8])
    new = [sent(b"n%d" % i) for i in range(4)]
    for datagram in (new[1], new[0], new[0], d[9], new[2]):
        deliver(datagram)
    # the peer moves to a CID we issued (RFC 9147 §9)
    if server.local_cid:
        server.issue_connection_ids(1)
        link.run(until=link.now + 5)
        now = link.now
        assert client.use_next_peer_cid() is not None
        later = [sent(b"c%d" % i) for i in range(3)]
        for datagram in (later[0], later[2], later[1], later[1], new[3]):
            deliver(datagram)
    link.run(until=link.now + 5)
    got = link.server_events[start:]
    return ([e.data for e in got if isinstance(e, DataReceived)],
            counters(server, before[0]), counters(client, before[1]),
            [type(e).__name__ for e in got if not isinstance(e, DataReceived)])  # fmt: skip


@pytest.mark.parametrize("cids", list(CIDS))
@pytest.mark.parametrize("integrity_limit", [None, 2], ids=["limits", "integrity-limit-2"])
def test_drops_counters_and_events_match_the_general_path(
    pki: Any, cids: str, integrity_limit: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With integrity_limit 2, the forgery reaches half of it: each datagram after it asks
    for new keys (RFC 9147 §4.5.3), on either path."""
    settings = {"integrity_limit": integrity_limit}
    fast = damaged_stream(established(pki, cids, **settings), fast=True)
    general_only(monkeypatch)
    general = damaged_stream(established(pki, cids, **settings), fast=False)
    got, stats, client_stats, other = fast
    assert (got, stats, client_stats) == general[:3]
    assert other == general[3] and "KeyUpdated" in other
    assert b"m3" in got and b"n2" in got and got.count(b"m1") == 1
    assert stats[5] >= 3 and stats[6] == 1  # replays and the forgery, counted


@pytest.mark.parametrize("cids", list(CIDS))
def test_fast_records_are_the_general_path_bytes(pki: Any, cids: str) -> None:
    link = established(pki, cids)
    client = link.client
    client.send(b"first")  # the general path's, which sets up the fast one
    client.datagrams_to_send(link.now)
    state = client._records.app_send
    assert state is not None and state.epoch == 3
    for payload in (b"x", b"y" * 1200, bytearray(b"z" * 100), memoryview(b"w" * 17)):
        seq = state.next_seq
        client.send(payload)
        ((datagram, _),) = client.datagrams_to_send(link.now)
        assert state.next_seq == seq + 1
        assert state.cipher is not None
        assert datagram == state.cipher.seal(3, seq, 23, payload,
                                             cid=client._records.send_cid)  # fmt: skip


def test_small_records_still_share_a_datagram(pki: Any) -> None:
    """RFC 9147 §4.3: records sent one after another fill one datagram."""
    link = established(pki, "no-cid")
    link.client.send(b"a")
    link.client.datagrams_to_send(link.now)
    for payload in (b"b", b"c", b"d"):
        link.client.send(payload)
    assert len(link.client.datagrams_to_send(link.now)) == 1


def test_integrity_limit_on_the_fast_path(pki: Any) -> None:
    """RFC 9147 §4.5.3: forgeries opened in one call still count towards the limit."""
    link = established(pki, "cid", integrity_limit=8)
    link.client.send(b"genuine")
    link.run(until=link.now + 5)
    assert link.server._records.app_receive is not None
    link.client.send(b"again")
    record = link.client.datagrams_to_send(link.now)[0][0]
    forged = record[:-1] + bytes([record[-1] ^ 1])
    for _ in range(8):
        link.server.receive_datagram(forged, CLIENT_ADDR, link.now)
    closed = [e for e in iter(link.server.next_event, None) if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert == AlertDescription.BAD_RECORD_MAC
    assert link.server.record_counters.failed_authentication == 8


def test_confidentiality_limit_on_the_fast_path(pki: Any) -> None:
    """RFC 9147 §4.5.3: at 3/4 of the limit `send` starts a KeyUpdate."""
    link = make_pair(pki, client_settings={"confidentiality_limit": 40})
    handshake(link)
    for i in range(200):
        link.client.send(b"%d" % i)
        if i % 5 == 4:
            link.run(until=link.now + 5)
    link.run(until=link.now + 5)
    assert link.client.send_epoch >= 8  # one KeyUpdate per 30 records
    got = [e.data for e in link.events_of("server", DataReceived)]
    assert got == [b"%d" % i for i in range(200)]


def test_closed_connection_refuses_on_the_fast_path(pki: Any) -> None:
    link = established(pki, "no-cid")
    link.client.send(b"a")
    link.run(until=link.now + 5)
    assert link.client._records.app_send is not None
    link.client.close()
    with pytest.raises(Exception, match="closed"):
        link.client.send(b"late")
    link.run(until=link.now + 5)
    link.server.receive_datagram(b"\x2f" * 40, CLIENT_ADDR, link.now)  # closed: ignored


def test_half_the_integrity_limit_asks_for_new_keys_on_the_fast_path(pki: Any) -> None:
    """RFC 9147 §4.5.3: once half the forgeries a key may take were seen, every datagram
    that arrives, also one opened in one call, asks for new keys until they come."""
    link = established(pki, "no-cid", integrity_limit=4)
    link.client.send(b"a")
    link.run(until=link.now + 5)
    server = link.server
    assert server._records.app_receive is not None
    state = server._records.receive_epochs[3]
    state.failures = server._records.counters.failed_authentication = 2  # as two forgeries
    link.client.send(b"b")
    ((datagram, _),) = link.client.datagrams_to_send(link.now)
    assert not server._awaiting_ack(FlightKind.KEY_UPDATE)
    server.receive_datagram(datagram, CLIENT_ADDR, link.now)
    assert server._awaiting_ack(FlightKind.KEY_UPDATE)
    assert [e.data for e in iter(server.next_event, None) if isinstance(e, DataReceived)] == [b"b"]


def test_data_received_has_no_dict_and_stays_the_dataclass_event() -> None:
    """`DataReceived` keeps its fields in slots (one per record: no __dict__ to make), and
    stays the frozen dataclass event: equal, hashable, picklable, copied with replace."""
    import dataclasses
    import pickle

    from dtls.events import DataReceived, Event, data_received

    event = data_received(b"payload")
    assert not hasattr(event, "__dict__") and isinstance(event, Event)
    assert event == DataReceived(b"payload") and hash(event) == hash(DataReceived(b"payload"))
    assert pickle.loads(pickle.dumps(event)) == event
    assert dataclasses.replace(event, early=True) == DataReceived(b"payload", early=True)
    assert [f.name for f in dataclasses.fields(event)] == ["data", "early"]
