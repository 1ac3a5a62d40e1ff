"""The modelled network: one `Link` per direction between the clients and the server.

A datagram handed to a link is, in this order:
1. dropped if its IP packet (payload + `overhead`) exceeds the `mtu` (no fragmentation:
   DTLS sizes its own datagrams, RFC 9147 §4.4);
2. queued for the transmitter, which the clients share (the server's access link): tail
   drop when `queue` datagrams wait; serialised at `bandwidth` bit/s;
3. lost at random: independently with probability `loss`, or by a two-state
   Gilbert-Elliott chain per client (`burst`) for bursty loss;
4. duplicated with probability `duplicate`;
5. delivered after `latency` plus a uniform jitter in [0, `jitter`], plus `reorder_delay`
   for the fraction `reorder` of datagrams held back so that later ones overtake them.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

# A deterministic drop rule for tests: (direction "c2s"/"s2c", client index, index of the
# datagram in that client's flow and direction) -> dropped. Replaces the random loss.
DropRule = Callable[[str, int, int], bool]
Deliver = Callable[[bytes, int], None]


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss: a good and a bad state, switching before each datagram.

    The long-run share of time in the bad state is p_bad / (p_bad + p_good); in it a
    datagram is lost with probability `loss_bad`, in the good state with the link's `loss`.
    """

    p_bad: float  # good -> bad, per datagram
    p_good: float  # bad -> good, per datagram
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_bad", "p_good", "loss_bad"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Gilbert-Elliott {name} must be a probability, not {value}")
        if self.p_bad + self.p_good == 0.0:
            raise ValueError("Gilbert-Elliott chain needs p_bad or p_good above zero")

    def mean_loss(self, loss_good: float) -> float:
        """The long-run loss rate."""
        bad = self.p_bad / (self.p_bad + self.p_good)
        return bad * self.loss_bad + (1.0 - bad) * loss_good


@dataclass(frozen=True)
class LinkModel:
    """One direction of the network. Defaults are the original design's: 1 ms, 0.1 %
    loss, 1 Gbit/s."""

    latency: float = 0.001  # seconds, one way
    jitter: float = 0.0  # seconds, uniform extra delay
    bandwidth: float | None = 1e9  # bit/s; None: no serialisation delay, no queue
    queue: int = 256  # datagrams waiting for the transmitter, at most
    loss: float = 0.001
    burst: GilbertElliott | None = None
    reorder: float = 0.0
    reorder_delay: float = 0.001  # seconds a reordered datagram is held back
    duplicate: float = 0.0
    mtu: int = 1500  # largest IP packet, bytes
    overhead: int = 28  # IPv4 + UDP header bytes per datagram

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, not {value}")
        if self.latency < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("latency, jitter and reorder_delay must not be negative")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive (or None for unlimited)")
        if self.queue < 1 or self.mtu < 1 or self.overhead < 0:
            raise ValueError("queue and mtu must be positive, overhead not negative")

    @property
    def mean_loss(self) -> float:
        return self.burst.mean_loss(self.loss) if self.burst else self.loss


@dataclass
class LinkStats:
    """What one direction carried and dropped."""

    datagrams: int = 0  # handed to the link
    bytes: int = 0  # UDP payload bytes handed to the link
    records: int = 0  # DTLS records in those datagrams
    delivered: int = 0  # copies delivered, duplicates included
    lost: int = 0  # random (or rule) loss
    queue_drops: int = 0
    mtu_drops: int = 0
    duplicated: int = 0
    reordered: int = 0

    def add(self, other: LinkStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Link:
    """A running link: schedules deliveries on an event loop."""

    model: LinkModel
    direction: str  # "c2s" or "s2c"
    rng: random.Random
    schedule: Callable[..., None]  # EventLoop.at
    deliver: Deliver  # called with (datagram, client index) on arrival
    drop: DropRule | None = None
    trace: list[tuple[Any, ...]] | None = None  # (time, direction, client, size, fate)
    stats: LinkStats = field(default_factory=LinkStats)
    _busy_until: float = 0.0
    _waiting: deque[float] = field(default_factory=deque)  # departure times queued
    _bad: dict[int, bool] = field(default_factory=dict)  # Gilbert-Elliott state per client
    _index: dict[int, int] = field(default_factory=dict)  # datagrams per client (drop rule)

    def send(self, now: float, data: bytes, flow: int, records: int) -> None:
        """Hand one datagram of client `flow`'s association to the link at `now`."""
        model = self.model
        stats = self.stats
        size = len(data)
        stats.datagrams += 1
        stats.bytes += size
        stats.records += records
        index = self._index.get(flow, 0)
        self._index[flow] = index + 1
        if size + model.overhead > model.mtu:
            stats.mtu_drops += 1
            self._note(now, flow, size, "mtu")
            return
        depart = now
        if model.bandwidth is not None:
            waiting = self._waiting
            while waiting and waiting[0] <= now:
                waiting.popleft()
            if len(waiting) >= model.queue:
                stats.queue_drops += 1
                self._note(now, flow, size, "queue")
                return
            depart = max(now, self._busy_until) + (size + model.overhead) * 8 / model.bandwidth
            self._busy_until = depart
            waiting.append(depart)
        if self._lost(flow, index):
            stats.lost += 1
            self._note(now, flow, size, "lost")
            return
        rng = self.rng
        copies = 2 if model.duplicate and rng.random() < model.duplicate else 1
        if copies == 2:
            stats.duplicated += 1
        self._note(now, flow, size, "sent" if copies == 1 else "duplicated")
        for _ in range(copies):
            delay = model.latency
            if model.jitter:
                delay += rng.uniform(0.0, model.jitter)
            if model.reorder and rng.random() < model.reorder:
                delay += model.reorder_delay
                stats.reordered += 1
            self.schedule(depart + delay, self._arrive, data, flow)

    def _note(self, now: float, flow: int, size: int, fate: str) -> None:
        if self.trace is not None:
            self.trace.append((now, self.direction, flow, size, fate))

    def _arrive(self, data: bytes, flow: int) -> None:
        self.stats.delivered += 1
        self.deliver(data, flow)

    def _lost(self, flow: int, index: int) -> bool:
        if self.drop is not None:
            return self.drop(self.direction, flow, index)
        model = self.model
        burst = model.burst
        if burst is None:
            return model.loss > 0.0 and self.rng.random() < model.loss
        bad = self._bad.get(flow, False)
        # switch state, then lose with the new state's probability
        bad = self.rng.random() >= burst.p_good if bad else self.rng.random() < burst.p_bad
        self._bad[flow] = bad
        return self.rng.random() < (burst.loss_bad if bad else model.loss)
