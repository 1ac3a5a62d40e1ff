"""dtls.sim: the discrete-event model around the real engine.

The checks the issue asks for: reproducibility bit for bit; round-trip arithmetic without
loss or processing cost; agreement with an exact computation over the RFC 9147 §5.8
retransmission schedule under independent loss; agreement with real connections over
UDP loopback through a lossy relay; 1,000 handshakes over 1 % loss in at most 10 s.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import json
import random
import select
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from dtls.connection import Connection, HandshakeState
from dtls.sim import (
    DESIGN,
    ZERO,
    GilbertElliott,
    LinkModel,
    Result,
    Scenario,
    TimingModel,
    accelerate,
    simulate,
    sweep,
)
from dtls.sim.calibrate import calibrate
from dtls.sim.cli import main
from dtls.sim.clock import EventLoop
from dtls.sim.credentials import ECDSA_P256_LENGTH, SERVER_NAME, credentials
from dtls.sim.model import make_contexts
from dtls.sim.network import Link
from dtls.sim.sweep import parse_duration, parse_rate, parse_values, with_parameter

IDEAL = LinkModel(latency=0.01, bandwidth=None, loss=0.0)


def _lossy(p: float, latency: float = 0.01) -> LinkModel:
    return LinkModel(latency=latency, bandwidth=None, loss=p)


# ---- reproducibility ----


def _busy_scenario(seed: int) -> Scenario:
    link = LinkModel(latency=0.002, jitter=0.001, bandwidth=50e6, loss=0.02,
                     burst=GilbertElliott(0.01, 0.3, 0.5), reorder=0.05, duplicate=0.02)
    return Scenario(clients=30, arrival_rate=300, uplink=link, downlink=link, seed=seed,
                    traffic="constant", messages=20, message_rate=200, echo=True,
                    key_update_every=8, cookie=True, initial_retransmit_timeout=0.2)


def test_same_seed_same_results_bit_for_bit() -> None:
    first = simulate(_busy_scenario(7))
    again = simulate(_busy_scenario(7))
    assert first.summary() == again.summary()
    assert [dataclasses.astuple(h) for h in first.handshakes] == [
        dataclasses.astuple(h) for h in again.handshakes
    ]
    assert first.events == again.events
    # and the seed matters
    other = simulate(_busy_scenario(8))
    assert other.summary() != first.summary()
    s = first.summary()
    assert s["key_updates"] > 0 and s["app_bytes_delivered"] > 0 and s["c2s_lost"] > 0


def test_credentials_have_fixed_sizes() -> None:
    creds = credentials("ecdsa-p256")
    assert len(creds.server_chain[0].signature) == ECDSA_P256_LENGTH
    assert all(
        len(creds.server_key.sign(bytes([i]), _ecdsa())) == ECDSA_P256_LENGTH for i in range(20)
    )


def _ecdsa() -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.ECDSA(hashes.SHA256())


# ---- round-trip arithmetic ----


@pytest.mark.parametrize("cookie", [False, True])
def test_handshake_times_are_round_trip_arithmetic(cookie: bool) -> None:
    """No loss, no processing: the client is done one round trip (two with a cookie
    HelloRetryRequest) plus the serialisation of each flight after it starts; the server
    half a round trip and the client's Finished later."""
    latency, bandwidth = 0.005, 10e6
    link = LinkModel(latency=latency, bandwidth=bandwidth, loss=0.0)
    trace: list[tuple[Any, ...]] = []
    result = simulate(
        Scenario(clients=1, uplink=link, downlink=link, timing=ZERO, cookie=cookie),
        trace=trace,
    )
    (h,) = result.handshakes
    assert h.start == 0.0

    def serialise(size: int) -> float:
        return (size + link.overhead) * 8 / bandwidth

    up = [size for _, d, _, size, _ in trace if d == "c2s"]
    down = [size for _, d, _, size, _ in trace if d == "s2c"]
    flights = 2 if cookie else 1  # [ClientHello, HelloRetryRequest,] ClientHello, server flight
    expected = 0.0
    for k in range(flights):
        expected += serialise(up[k]) + latency  # a ClientHello reaches the server
        expected += serialise(down[k]) + latency  # its answer (one datagram) reaches the client
    assert h.client_done == pytest.approx(expected, rel=0, abs=1e-12)
    assert h.client_done == pytest.approx(2 * flights * latency, abs=2e-3)  # sanity
    finished = up[flights]
    assert h.server_done == pytest.approx(expected + serialise(finished) + latency, abs=1e-12)
    assert h.client_retransmissions == h.server_retransmissions == 0


def test_processing_costs_add_to_the_round_trip() -> None:
    """With the design's figures: server 500 us ECDH + 200 us sign; client 500 us ECDH +
    300 us chain check + 300 us CertificateVerify check (plus nanoseconds of AEAD)."""
    result = simulate(Scenario(clients=1, uplink=IDEAL, downlink=IDEAL, timing=DESIGN))
    (h,) = result.handshakes
    s = result.summary()
    assert s["server_cpu_per_handshake"] == pytest.approx(700e-6, abs=2e-6)
    assert s["client_cpu_per_handshake"] == pytest.approx(1100e-6, abs=2e-6)
    assert h.client_done == pytest.approx(0.02 + 700e-6 + 1100e-6, abs=5e-6)


@pytest.mark.parametrize(("mutual", "cookie", "client", "server"), [
    (False, False, 8, 8),  # CH; SH EE Cert CV Fin(2) NST | CH SH EE Cert CV Fin; Fin; NST
    (False, True, 10, 10),  # + HelloRetryRequest made and answered (2 each)
    (True, False, 11, 11),  # + CertificateRequest, client Certificate, CertificateVerify
])
def test_handshake_messages_observed(mutual: bool, cookie: bool, client: int,
                                     server: int) -> None:
    timing = ZERO.with_message_cost(1e-6)  # CPU microseconds = messages counted
    result = simulate(Scenario(clients=1, uplink=IDEAL, downlink=IDEAL, timing=timing,
                               mutual=mutual, cookie=cookie))
    assert result.handshakes[0].completed
    assert round(result.client_busy * 1e6, 6) == client
    assert round(result.server_busy * 1e6, 6) == server


# ---- loss: the model against a direct computation ----


def exact_client_completion(
    p: float, latency: float, rto: float, rto_max: float, max_retransmissions: int,
    eps: float = 1e-10,
) -> tuple[dict[float, float], float, float, float]:
    """The exact distribution of the client's completion time, by enumerating every loss
    outcome (branches below `eps` are cut): {time: probability}, P(failure), mass cut,
    and E[retransmissions at completion; completed], client and server together.

    The flight model, as RFC 9147 §5.8 and the engine define it, with independent loss p
    per datagram, one-way `latency` and the server's flight in one datagram: the client
    sends its ClientHello at 0 and on each timer expiry (timer `rto`, doubled before each
    retransmission, capped at `rto_max`), and gives up when the timer expires after
    1 + max_retransmissions sends. The first ClientHello to arrive makes the server send
    its flight and arm its own timer (same schedule); a later ClientHello makes it resend
    at once and re-arm with the current value, unless it sent the flight less than half
    a timer value before (once per retransmitted flight, not per copy). Either side gives
    up when its timer expires after max_retransmissions timer-driven resends. The client
    completes when a copy of the server's flight arrives. Events at the same instant
    happen in the order they were scheduled, as in the simulator.
    """
    done: dict[float, float] = defaultdict(float)
    totals = {"fail": 0.0, "cut": 0.0, "retx": 0.0}
    Event = tuple[float, int, str]

    def explore(prob: float, events: list[Event], seq: int, c_sends: int, c_rto: float,
                s_state: int, s_sends: int, s_rto: float, s_deadline: float | None,
                s_timer: float | None, s_last: float, s_timeouts: int) -> None:
        while True:  # s_state: 0 no connection yet, 1 waiting for Finished, 2 gave up
            if prob < eps:
                totals["cut"] += prob
                return
            when, _, kind = heapq.heappop(events)
            if kind == "flight":
                done[when] += prob
                totals["retx"] += prob * (c_sends - 1 + max(0, s_sends - 1))
                return
            if kind == "client timer":
                if c_sends > max_retransmissions:
                    totals["fail"] += prob
                    return
                c_rto = min(2 * c_rto, rto_max)
                c_sends += 1
                sent = "hello"
            elif kind == "hello":
                if s_state == 2:
                    continue
                if s_state == 1 and when - s_last < s_rto / 2:
                    continue  # resent moments ago: this copy asks for nothing new
                s_state = 1
                s_sends += 1
                s_last = when
                s_deadline = when + s_rto
                sent = "flight"
            else:  # the server's timer
                if s_state != 1 or when != s_deadline or when != s_timer:
                    continue
                s_timer = None
                if s_timeouts >= max_retransmissions:
                    s_state = 2
                    continue
                s_timeouts += 1
                s_rto = min(2 * s_rto, rto_max)
                s_sends += 1
                s_last = when
                s_deadline = when + s_rto
                sent = "flight"
            for q, delivered in ((prob * (1 - p), True), (prob * p, False)):
                branch = list(events)
                n = seq
                if delivered:
                    heapq.heappush(branch, (when + latency, n, sent))
                    n += 1
                timer = s_timer
                if kind == "client timer":
                    heapq.heappush(branch, (when + c_rto, n, "client timer"))
                    n += 1
                elif s_deadline != timer:
                    timer = s_deadline
                    assert s_deadline is not None
                    heapq.heappush(branch, (s_deadline, n, "server timer"))
                    n += 1
                explore(q, branch, n, c_sends, c_rto, s_state, s_sends, s_rto, s_deadline,
                        timer, s_last, s_timeouts)
            return

    for q, delivered in ((1 - p, True), (p, False)):
        first: list[Event] = [(0.0 + latency, 0, "hello")] if delivered else []
        first.append((0.0 + rto, 1, "client timer"))
        heapq.heapify(first)
        explore(q, first, 2, 1, rto, 0, 0, rto, None, None, 0.0, 0)
    completed = sum(done.values())
    return dict(done), totals["fail"], totals["cut"], totals["retx"] / completed


def test_loss_agrees_with_exact_retransmission_schedule() -> None:
    """1,000 handshakes at 30 % independent loss against the exact distribution.

    Tolerances: every simulated completion time is an atom of the exact distribution (to
    the bit: a change in the timer schedule fails at once); the largest CDF difference
    (Kolmogorov-Smirnov distance) below the 1 % critical value 1.63/sqrt(n); completion
    rate within 1/n of the exact one; mean retransmissions within 3 standard errors. A
    loss rate 10-20 % off (p = 0.27 or 0.36 modelled as 0.3) fails the KS bound."""
    p, latency, n = 0.3, 0.01, 1000
    result = simulate(Scenario(clients=n, arrival="burst", uplink=_lossy(p, latency),
                               downlink=_lossy(p, latency), timing=ZERO))
    atoms, fail, cut, mean_retx = exact_client_completion(p, latency, 1.0, 60.0, 10)
    assert cut < 1e-6
    times = sorted(h.client_done - h.start for h in result.handshakes
                   if h.client_done is not None)
    assert set(times) <= set(atoms)
    assert abs(len(times) / n - (1 - fail - cut)) <= 1 / n
    cdf = distance = 0.0
    for t in sorted(atoms):
        cdf += atoms[t]
        distance = max(distance, abs(cdf - bisect.bisect_right(times, t) / n))
    assert distance < 1.63 / n**0.5
    assert distance > 0  # a sample is not the distribution itself
    retx = [h.retransmissions_at_done for h in result.handshakes if h.client_done is not None]
    mean = sum(retx) / len(retx)
    sd = (sum((r - mean) ** 2 for r in retx) / (len(retx) - 1)) ** 0.5
    assert abs(mean - mean_retx) < 3 * sd / len(retx) ** 0.5


def test_exact_computation_sanity() -> None:
    atoms, fail, cut, _ = exact_client_completion(0.3, 0.01, 1.0, 60.0, 10)
    assert sum(atoms.values()) + fail + cut == pytest.approx(1.0, abs=1e-12)
    assert atoms[0.02] == pytest.approx(0.49)  # both first datagrams arrive
    no_loss, fail0, _, retx0 = exact_client_completion(0.0, 0.01, 1.0, 60.0, 10)
    assert no_loss == {0.02: 1.0} and fail0 == 0 and retx0 == 0


# ---- the model against real connections over UDP loopback through a lossy relay ----


def _drop_rule(seed: int, p: float) -> Callable[[str, int, int], bool]:
    def drop(direction: str, client: int, index: int) -> bool:
        return random.Random(f"{seed}:{direction}:{client}:{index}").random() < p

    return drop


def _run_over_relay(scenario: Scenario, drop: Callable[[str, int, int], bool],
                    deadline: float = 30.0) -> list[tuple[int, int]]:
    """Real client and server connections over 127.0.0.1, each client through its own
    relay port that drops datagrams by `drop`; returns (client, server) retransmissions
    once every association is established and no flight is waiting (no timer within
    30 s: only receive-epoch expiry is left)."""
    client_ctx, server_ctx = make_contexts(scenario, time.time)
    server_sock = _udp()
    server_addr = server_sock.getsockname()
    clients = [_udp() for _ in range(scenario.clients)]
    relays = [_udp() for _ in range(scenario.clients)]
    relay_of = {r.getsockname(): i for i, r in enumerate(relays)}
    index: dict[tuple[str, int], int] = defaultdict(int)
    conns = [Connection(client_ctx, server_name=SERVER_NAME) for _ in clients]
    servers: dict[Any, Connection] = {}
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    def flush() -> None:
        for i, conn in enumerate(conns):
            for data, _ in conn.datagrams_to_send(now()):
                clients[i].sendto(data, relays[i].getsockname())
        for addr, conn in servers.items():
            for data, _ in conn.datagrams_to_send(now()):
                server_sock.sendto(data, addr)

    for i, conn in enumerate(conns):
        conn.connect(relays[i].getsockname(), now())
    flush()
    sockets = [server_sock, *clients, *relays]
    while True:
        all_conns = conns + list(servers.values())
        timers = [c.get_timer() for c in all_conns]
        settled = len(servers) == len(conns) and all(
            c.state in _FINAL and (t is None or t > now() + 30)
            for c, t in zip(all_conns, timers, strict=True)
        )
        if settled:
            break
        assert now() < deadline, "the relay run did not settle"
        soonest = min((t for t in timers if t is not None), default=now() + 0.1)
        readable, _, _ = select.select(sockets, [], [], max(0.0, min(soonest - now(), 0.1)))
        for sock in readable:
            data, source = sock.recvfrom(65536)
            if sock is server_sock:
                if source not in servers:
                    servers[source] = Connection(server_ctx)
                servers[source].receive_datagram(data, source, now())
            elif sock in clients:
                conns[clients.index(sock)].receive_datagram(data, server_addr, now())
            else:  # a relay: forward unless the rule drops it
                i = relay_of[sock.getsockname()]
                direction = "s2c" if source == server_addr else "c2s"
                k = index[direction, i]
                index[direction, i] = k + 1
                if not drop(direction, i, k):
                    target = clients[i].getsockname() if direction == "s2c" else server_addr
                    sock.sendto(data, target)
        for conn in conns + list(servers.values()):
            timer = conn.get_timer()
            if timer is not None and timer <= now():
                conn.handle_timer(now())
        flush()
    by_client = {relay_of[addr]: conn for addr, conn in servers.items()}
    for sock in sockets:
        sock.close()
    return [(c.retransmissions, by_client[i].retransmissions) for i, c in enumerate(conns)]


_FINAL = (HandshakeState.CONNECTED, HandshakeState.CLOSED)


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_relay_over_loopback_matches_the_model() -> None:
    """The same drop rule (by datagram index per client and direction) on real sockets
    and in the model. The model charges 100 us per handshake message: with no cost at all,
    the server's timer and a retransmitted ClientHello expire at the same instant, an
    ordering tie real processing time never produces. Tolerance: per-association counts
    equal for at least 7 of 8 clients, and the total within max(2, 10 %): wall-clock
    scheduling on a shared machine may still swap a timer and an arrival. (Measured:
    identical counts for every client, seeds 1-12.)"""
    scenario = Scenario(
        clients=8, arrival="burst", timing=ZERO.with_message_cost(100e-6),
        uplink=LinkModel(latency=0.0001, bandwidth=None, loss=0.0),
        downlink=LinkModel(latency=0.0001, bandwidth=None, loss=0.0),
        initial_retransmit_timeout=0.2, max_retransmit_timeout=2.0,
    )
    drop = _drop_rule(seed=7, p=0.2)
    model = simulate(scenario, drop=drop)
    assert all(h.completed for h in model.handshakes)
    modelled = [(h.client_retransmissions, h.server_retransmissions) for h in model.handshakes]
    real = _run_over_relay(scenario, drop)
    total = sum(c + s for c, s in modelled)
    assert total > 10
    assert sum(m == r for m, r in zip(modelled, real, strict=True)) >= 7, (modelled, real)
    assert abs(sum(c + s for c, s in real) - total) <= max(2, 0.1 * total), (modelled, real)


# ---- load, CPUs, accelerator ----


def test_server_load_delays_handshakes() -> None:
    """The design's figures make a server handshake 0.7 ms: ~1,400/s per core. At 1,200
    arrivals/s the queue builds; at 200/s it does not; two cores or an accelerator help."""
    base = Scenario(clients=150, uplink=IDEAL, downlink=IDEAL)
    light = simulate(dataclasses.replace(base, arrival_rate=200)).summary()
    heavy = simulate(dataclasses.replace(base, arrival_rate=1200)).summary()
    two = simulate(dataclasses.replace(base, arrival_rate=1200, server_cores=2)).summary()
    fast = simulate(dataclasses.replace(base, arrival_rate=1200,
                                        timing=accelerate(DESIGN))).summary()
    assert light["client_time_p95"] < 0.0225
    assert heavy["client_time_p95"] > light["client_time_p95"] + 0.001
    assert heavy["server_cpu_utilisation"] > 3 * light["server_cpu_utilisation"]
    assert two["client_time_p95"] < heavy["client_time_p95"]
    assert fast["client_time_p95"] < two["client_time_p95"]


def test_overload_fills_the_receive_backlog() -> None:
    result = simulate(Scenario(clients=200, arrival="burst", uplink=IDEAL, downlink=IDEAL,
                               rx_backlog=50, initial_retransmit_timeout=0.2))
    s = result.summary()
    assert s["rx_dropped"] > 0
    assert s["retransmissions_per_handshake"] > 0


# ---- the network model ----


class _Sink:
    def __init__(self) -> None:
        self.loop = EventLoop()
        self.arrivals: list[tuple[float, bytes]] = []

    def deliver(self, data: bytes, flow: int) -> None:
        self.arrivals.append((self.loop.now, data))


def test_gilbert_elliott_loss_rate_and_bursts() -> None:
    burst = GilbertElliott(p_bad=0.02, p_good=0.25, loss_bad=0.8)
    model = LinkModel(bandwidth=None, loss=0.01, burst=burst)
    sink = _Sink()
    link = Link(model, "c2s", random.Random(3), sink.loop.at, sink.deliver)
    lost = []
    for _ in range(100_000):
        before = link.stats.lost
        link.send(0.0, b"x", 0, 1)
        lost.append(link.stats.lost > before)
    rate = sum(lost) / len(lost)
    assert rate == pytest.approx(model.mean_loss, rel=0.1)
    # losses cluster: P(loss | previous lost) far above the mean rate
    after_loss = [b for a, b in itertools.pairwise(lost) if a]
    assert sum(after_loss) / len(after_loss) > 5 * rate


def test_bandwidth_queue_and_mtu() -> None:
    model = LinkModel(latency=0.001, bandwidth=8e6, queue=3, loss=0.0, mtu=600)
    sink = _Sink()
    link = Link(model, "s2c", random.Random(1), sink.loop.at, sink.deliver)
    for _ in range(5):
        link.send(0.0, bytes(972), 0, 1)  # 1000 bytes on the wire: 1 ms each at 8 Mbit/s
    link.send(0.0, bytes(200), 0, 1)
    assert link.stats.mtu_drops == 5  # 972 + 28 > 600
    sink.loop.run(1.0)
    ((when, data),) = sink.arrivals
    assert data == bytes(200) and when == pytest.approx(0.001 + 228 * 8 / 8e6)
    model = dataclasses.replace(model, mtu=1500)
    link = Link(model, "s2c", random.Random(1), sink.loop.at, sink.deliver)
    sink.arrivals.clear()
    for _ in range(5):
        link.send(sink.loop.now, bytes(972), 0, 1)
    assert link.stats.queue_drops == 2
    sink.loop.run(2.0)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sink.arrivals)]
    assert gaps == [pytest.approx(0.001)] * 2


def test_mtu_below_the_server_flight_fails_the_handshake() -> None:
    link = LinkModel(latency=0.001, bandwidth=None, loss=0.0, mtu=576)
    result = simulate(Scenario(clients=1, uplink=link, downlink=link, timing=ZERO,
                               max_retransmissions=2, initial_retransmit_timeout=0.1))
    s = result.summary()
    assert s["failed"] == 1 and s["s2c_mtu_drops"] == 3
    assert "timed out" in next(iter(result.failures()))
    ok = simulate(Scenario(clients=1, uplink=link, downlink=link, timing=ZERO,
                           max_datagram_size=548))
    assert ok.summary()["completed"] == 1


def test_duplication_and_reordering_are_harmless_to_the_handshake() -> None:
    link = LinkModel(latency=0.005, jitter=0.004, bandwidth=None, loss=0.0, duplicate=0.3,
                     reorder=0.3, reorder_delay=0.01)
    s = simulate(Scenario(clients=40, uplink=link, downlink=link)).summary()
    assert s["completed"] == 40
    assert s["c2s_duplicated"] > 0 and s["s2c_duplicated"] > 0


# ---- traffic and key updates ----


def test_constant_traffic_goodput_and_key_updates() -> None:
    result = simulate(Scenario(clients=4, arrival="burst", uplink=IDEAL, downlink=IDEAL,
                               traffic="constant", messages=50, message_rate=100,
                               message_size=500, key_update_every=10))
    s = result.summary()
    assert s["app_delivery_ratio"] == 1.0
    assert s["app_bytes_delivered"] == 4 * 50 * 500
    # four clients at 100 records/s of 500 bytes for ~0.5 s
    assert s["goodput_bps"] == pytest.approx(4 * 100 * 500 * 8, rel=0.1)
    # each KeyUpdate (RFC 9147 §8) asks for one back: 4 events per update, 5 per client
    assert s["key_updates"] == 4 * 5 * 4


def test_bulk_traffic_over_a_slow_link_loses_to_the_queue() -> None:
    link = LinkModel(latency=0.001, bandwidth=1e6, queue=20, loss=0.0)
    s = simulate(Scenario(clients=1, uplink=link, downlink=link, traffic="bulk",
                          messages=100, message_size=1000)).summary()
    assert s["c2s_queue_drops"] > 0
    assert 0 < s["app_delivery_ratio"] < 1
    assert s["goodput_bps"] == pytest.approx(1e6, rel=0.15)


# ---- timing models ----


def test_timing_json_round_trip_and_missing_entries(tmp_path: Any) -> None:
    path = tmp_path / "t.json"
    DESIGN.save(path)
    assert TimingModel.load(path) == DESIGN
    with pytest.raises(KeyError, match="no signature cost for 'ed25519'"):
        simulate(Scenario(clients=1, signature="ed25519"))


def test_calibrate_measures_this_host() -> None:
    model = calibrate(0.4, suites=[0x1301], groups=["secp256r1"], signatures=["ed25519"])
    aead = model.aead["TLS_AES_128_GCM_SHA256"]
    assert 0 < aead.per_record < 1e-3 and 0 < aead.per_byte < 1e-6
    assert 1e-6 < model.key_exchange["secp256r1"].agree < 0.05
    assert 1e-6 < model.signature["ed25519"].verify < 0.05
    assert 0 < model.message < 0.05
    s = simulate(Scenario(clients=5, signature="ed25519", timing=model)).summary()
    assert s["completed"] == 5 and s["server_cpu_per_handshake"] > 0


# ---- sweeps and the command line ----


def test_parameters_and_units() -> None:
    assert parse_duration("250us") == pytest.approx(250e-6)
    assert parse_duration("2ms") == pytest.approx(0.002)
    assert parse_rate("1G") == 1e9 and parse_rate("none") is None
    assert parse_values("loss", "0:0.3:0.1") == [0.0, 0.1, 0.2, 0.3]
    assert parse_values("loss", "1%,5%") == [0.01, 0.05]
    s = with_parameter(Scenario(), "uplink.latency", 0.05)
    assert s.uplink.latency == 0.05 and s.downlink.latency == 0.001
    assert with_parameter(Scenario(), "loss", 0.1).downlink.loss == 0.1
    with pytest.raises(ValueError):
        with_parameter(Scenario(), "nonsense", 1)


def test_sweep_pools_seeds() -> None:
    points = sweep(Scenario(clients=10, uplink=IDEAL, downlink=IDEAL), "loss", [0.0, 0.2],
                   seeds=2)
    assert [v for v, _ in points] == [0.0, 0.2]
    (_, clean), (_, lossy) = points
    assert isinstance(clean, Result) and clean.runs == 2 and len(clean.handshakes) == 20
    assert clean.summary()["retransmissions_per_handshake"] == 0
    assert lossy.summary()["retransmissions_per_handshake"] > 0


def test_cli_run_and_sweep(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--clients", "5", "--loss", "0"]) == 0
    out = capsys.readouterr().out
    assert "client_time_median" in out and "completed" in out
    path = tmp_path / "sweep.json"
    assert main(["--clients", "5", "--sweep", "latency=1ms,10ms", "--format", "json",
                 "--output", str(path), "--no-progress"]) == 0
    doc = json.loads(path.read_text())
    assert [p["value"] for p in doc["points"]] == [0.001, 0.01]
    assert doc["points"][1]["client_time_median"] > doc["points"][0]["client_time_median"]
    assert main(["--clients", "3", "--sweep", "loss=0,0.1", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("loss,runs,handshakes") and len(lines) == 3
    with pytest.raises(SystemExit):
        main(["--sweep", "nonsense=1,2"])


def test_cli_plot(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "loss.png"
    assert main(["--clients", "5", "--sweep", "loss=0,0.1,0.2", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- speed ----


def test_thousand_handshakes_at_one_percent_loss_within_ten_seconds() -> None:
    """The issue's budget, measured as this process's CPU time (other jobs on the machine
    do not count against it)."""
    link = LinkModel(loss=0.01)
    simulate(Scenario(clients=1))  # credentials and caches
    start = time.process_time()
    result = simulate(Scenario(clients=1000, arrival_rate=1000, uplink=link, downlink=link))
    elapsed = time.process_time() - start
    assert result.summary()["completed"] >= 990
    assert elapsed <= 10.0, f"{elapsed:.1f} s"
