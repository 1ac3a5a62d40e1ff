"""Two sans-I/O engines joined by an in-memory network on a virtual clock.

`Loopback.run()` moves datagrams between a client and a server `Connection`, fires their
timers in time order, and records every datagram sent (with its fate), so tests can drop,
duplicate, delay or rewrite chosen datagrams and check what the engines did about it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dtls.connection import Connection
from dtls.events import DataReceived, DataReceivedBatch, Event

CLIENT_ADDR = ("192.0.2.1", 5000)
SERVER_ADDR = ("192.0.2.2", 4433)


@dataclass
class Sent:
    """One datagram as it left an endpoint."""

    index: int  # position among all datagrams sent, both directions
    direction: str  # "c2s" or "s2c"
    time: float
    data: bytes
    fate: str = "delivered"  # or "dropped", "duplicated", "misrouted"
    destination: Any = None


# A filter sees each datagram and returns the payloads to deliver (none: dropped; two:
# duplicated; other bytes: rewritten).
Filter = Callable[[Sent], list[bytes]]


@dataclass
class Loopback:
    client: Connection
    server: Connection
    latency: float = 0.01  # one way
    client_addr: Any = CLIENT_ADDR  # where the client is now (tests may move it)
    jitter: float = 0.0  # extra random delay per datagram: reorders them
    batched: bool = False  # deliver what arrives together with one receive_datagrams call
    seed: int = 0
    now: float = 0.0
    filter: Filter | None = None
    sent: list[Sent] = field(default_factory=list)
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    _queue: list[tuple[float, int, str, bytes]] = field(default_factory=list)
    _order: Any = field(default_factory=itertools.count)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def start(self) -> None:
        self.client.connect(SERVER_ADDR, self.now)

    def _collect(self) -> None:
        for name, conn in (("c2s", self.client), ("s2c", self.server)):
            for data, addr in conn.datagrams_to_send(self.now):
                sent = Sent(len(self.sent), name, self.now, data, destination=addr)
                self.sent.append(sent)
                if name == "s2c" and addr != self.client_addr:
                    sent.fate = "misrouted"  # the client is not there (any more)
                    continue
                payloads = self.filter(sent) if self.filter else [data]
                if not payloads:
                    sent.fate = "dropped"
                elif len(payloads) > 1:
                    sent.fate = "duplicated"
                for payload in payloads:
                    delay = self.latency + self._rng.uniform(0, self.jitter)
                    heapq.heappush(
                        self._queue, (self.now + delay, next(self._order), name, payload)
                    )
        for conn, events in ((self.client, self.client_events), (self.server, self.server_events)):
            while (event := conn.next_event()) is not None:
                events.append(event)

    def run(self, until: float = 600.0, max_steps: int = 100_000) -> None:
        """Run until nothing is in flight and no timer is set, or until `until`."""
        self._collect()
        for _ in range(max_steps):
            candidates = []
            if self._queue:
                candidates.append((self._queue[0][0], 0, None))
            for conn in (self.client, self.server):
                timer = conn.get_timer()
                if timer is not None:
                    candidates.append((timer, 1, conn))
            if not candidates:
                return
            when, kind, conn = min(candidates, key=lambda c: (c[0], c[1]))
            if when > until:
                return
            self.now = max(self.now, when)
            if kind == 0 and self.batched:
                self._deliver_batch(when)
            elif kind == 0:
                _, _, direction, payload = heapq.heappop(self._queue)
                if direction == "c2s":
                    self.server.receive_datagram(payload, self.client_addr, self.now)
                else:
                    self.client.receive_datagram(payload, SERVER_ADDR, self.now)
            else:
                assert conn is not None
                conn.handle_timer(self.now)
            self._collect()
        raise AssertionError("loopback did not settle")

    def _deliver_batch(self, when: float) -> None:
        """Every datagram due at `when` going the way of the first, in one call."""
        direction = self._queue[0][2]
        batch = []
        while self._queue and self._queue[0][0] <= when and self._queue[0][2] == direction:
            batch.append(heapq.heappop(self._queue)[3])
        if direction == "c2s":
            self.server.receive_datagrams([(d, self.client_addr) for d in batch], self.now)
        else:
            self.client.receive_datagrams([(d, SERVER_ADDR) for d in batch], self.now)

    def events_of(self, side: str, cls: type) -> list[Any]:
        events = self.client_events if side == "client" else self.server_events
        if cls is DataReceived:  # a batch counts as its records, each as DataReceived
            events = one_per_record(events)
        return [e for e in events if isinstance(e, cls)]


def one_per_record(events: list[Event]) -> list[Event]:
    """`events` with each DataReceivedBatch replaced by a DataReceived per record, its data
    as bytes: what the same datagrams give through `receive_datagram`."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, DataReceivedBatch):
            out += [DataReceived(bytes(view)) for view in event.data]
        else:
            out.append(event)
    return out
