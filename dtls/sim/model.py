"""Scenarios and the simulation that runs them: real `Connection`s on a virtual clock.

N clients, each with its own modelled CPU, connect to one server (one CPU with `server_cores`
cores) over an uplink and a downlink (`dtls.sim.network`). Every client and every server-
side association is a real `dtls.Connection` driven exactly as a front-end drives it:
datagrams in, `datagrams_to_send`, `get_timer`/`handle_timer` for the retransmission timer
of RFC 9147 §5.8, events out. Each call is a job on the endpoint's CPU; its cost is the
work the call was seen to do (`dtls.sim.work`) priced by the timing model, and what it
produced is released when the job ends. After its handshake a client can send traffic (at
a constant rate, or in bulk) and update its keys (RFC 9147 §8) every so many records.

Timing conventions. An engine call runs when a core takes its job (`now` is that time) and
its datagrams leave when the job's cost has elapsed; the engine arms a flight's timer from
`now`, so the timer runs from when the CPU started on the flight, one job's cost early.
Events at the same instant run in the order they were scheduled. With no processing cost
at all, a server's timer and a retransmitted ClientHello can expire at the same instant
(the two RTOs are equal): a tie real processing time never produces.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Context, CookieMode, parse_cipher_suites, parse_groups
from ..connection import Connection, HandshakeState
from ..crypto import TrustStore
from ..events import (
    ConnectionClosed,
    DataReceived,
    Event,
    HandshakeCompleted,
    KeyUpdated,
)
from .clock import EventLoop
from .cpu import Cpu, Job
from .credentials import SERVER_NAME, credentials
from .network import DropRule, Link, LinkModel
from .report import HandshakeRecord, Result
from .timing import DESIGN, Prices, TimingModel
from .work import Observer, snapshot

SERVER_ADDRESS = ("10.0.0.1", 4433)
# Virtual time 0 on the wall clock the engine reads for ticket lifetimes, and the fixed
# date certificates are checked at, so that nothing depends on when a run happens.
WALL_CLOCK_EPOCH = 1_800_000_000.0
CERTIFICATE_TIME = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)

ARRIVALS = ("poisson", "uniform", "burst")
TRAFFIC = ("none", "constant", "bulk")


@dataclass(frozen=True)
class Scenario:
    """Everything a run depends on. Times in seconds, rates per second."""

    clients: int = 100
    arrival: str = "poisson"  # "poisson" or "uniform" at arrival_rate; "burst": all at 0
    arrival_rate: float = 100.0  # new clients per second
    uplink: LinkModel = field(default_factory=LinkModel)  # clients to server
    downlink: LinkModel = field(default_factory=LinkModel)
    timing: TimingModel = DESIGN
    server_cores: int = 1
    rx_backlog: int = 1024  # datagrams waiting for an endpoint's CPU, at most
    suite: str = "TLS_AES_128_GCM_SHA256"
    group: str = "secp256r1"
    signature: str = "ecdsa-p256"  # "ecdsa-p256" or "ed25519"
    mutual: bool = False  # client certificates (RFC 9846 §4.3.2)
    cookie: bool = False  # stateless cookie HelloRetryRequest for every client (RFC 9147 §5.1)
    session_tickets: int = 1  # NewSessionTickets the server sends after the handshake
    max_datagram_size: int = 1200
    initial_retransmit_timeout: float = 1.0  # RFC 9147 §5.8.2
    max_retransmit_timeout: float = 60.0
    max_retransmissions: int = 10
    traffic: str = "none"  # after the handshake: "constant", "bulk" or "none"
    messages: int = 100  # application records per client
    message_size: int = 1000  # bytes per record
    message_rate: float = 100.0  # records per second per client ("constant")
    echo: bool = False  # the server sends every record back
    key_update_every: int = 0  # a client KeyUpdate after this many records (0: never)
    seed: int = 1
    time_limit: float = 3600.0

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError("a scenario needs at least one client")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}")
        if self.traffic not in TRAFFIC:
            raise ValueError(f"traffic must be one of {TRAFFIC}")
        if self.arrival != "burst" and self.arrival_rate <= 0:
            raise ValueError("arrival_rate must be positive")
        if self.traffic == "constant" and self.message_rate <= 0:
            raise ValueError("message_rate must be positive")
        if self.server_cores < 1:
            raise ValueError("server_cores must be at least 1")

    def describe(self) -> dict[str, Any]:
        """The scenario as plain data (for JSON reports)."""
        out = dataclasses.asdict(self)
        out["timing"] = self.timing.name
        return out


def simulate(scenario: Scenario, *, drop: DropRule | None = None,
             trace: list[tuple[Any, ...]] | None = None) -> Result:
    """Run `scenario` to its end and return what it measured. `drop` replaces random loss
    by a rule (see `dtls.sim.network.DropRule`); `trace`, if given, receives a tuple
    (time, direction, client, size, fate) per datagram handed to the network."""
    return Simulation(scenario, drop=drop, trace=trace).run()


def make_contexts(scenario: Scenario, wall_clock: Callable[[], float]) -> tuple[Context, Context]:
    """The client and server contexts of a scenario, with the simulated credentials."""
    s = scenario
    creds = credentials(s.signature)
    settings: dict[str, Any] = dict(
        cipher_suites=parse_cipher_suites(s.suite),
        groups=parse_groups(s.group),
        max_datagram_size=s.max_datagram_size,
        initial_retransmit_timeout=s.initial_retransmit_timeout,
        max_retransmit_timeout=s.max_retransmit_timeout,
        max_retransmissions=s.max_retransmissions,
        certificate_time=lambda: CERTIFICATE_TIME,
    )
    names = {f.name for f in dataclasses.fields(Context)}
    if "wall_clock" in names:
        settings["wall_clock"] = wall_clock
    client = Context.client(**settings)
    client.trust = TrustStore.from_certificates([creds.ca])
    cookie_mode = CookieMode.ALWAYS if s.cookie else CookieMode.NEVER
    server_settings = dict(settings, cookie_mode=cookie_mode)
    if "session_tickets" in names:
        server_settings["session_tickets"] = s.session_tickets
    server = Context.server(**server_settings)
    server.certificate_chain = list(creds.server_chain)
    server.private_key = creds.server_key
    if s.mutual:
        client.certificate_chain = list(creds.client_chain)
        client.private_key = creds.client_key
        server.trust = TrustStore.from_certificates([creds.ca])
        server.request_client_certificate = True
        server.verify_mode = client.verify_mode  # CERT_REQUIRED
    return client, server


def client_address(index: int) -> tuple[str, int]:
    return (f"10.{1 + (index >> 16)}.{(index >> 8) & 255}.{index & 255}", 50000)


_RECEIVE, _TIMER, _CONNECT, _SEND = range(4)


class Endpoint:
    """One `Connection` (a client, or the server's association with one client), the CPU
    it runs on and the link it sends on."""

    __slots__ = ("_events", "_last_timer_run", "_outputs", "_records", "_timer", "conn",
                 "cpu", "index", "is_client", "link", "make", "observer", "peer", "sim")

    def __init__(self, sim: Simulation, index: int, is_client: bool, cpu: Cpu, link: Link,
                 make: Callable[[], Connection], observer: Observer, peer: Any) -> None:
        self.sim = sim
        self.index = index
        self.is_client = is_client
        self.cpu = cpu
        self.link = link
        self.make = make
        self.observer = observer
        self.peer = peer  # the address the peer's datagrams come from
        self.conn: Connection | None = None
        self._timer: float | None = None
        self._last_timer_run = -1.0
        self._outputs: list[bytes] = []
        self._records: list[int] = []
        self._events: list[Event] = []

    def submit(self, kind: int, arg: Any = None) -> None:
        self.cpu.submit(Job(self, lambda now: self._call(now, kind, arg), self._release,
                            datagram=kind == _RECEIVE))

    def _call(self, now: float, kind: int, arg: Any) -> float:
        conn = self.conn
        if conn is None:
            conn = self.conn = self.make()
        before = snapshot(conn)
        try:
            if kind == _RECEIVE:
                conn.receive_datagram(arg, self.peer, now)
            elif kind == _TIMER:
                self._last_timer_run = now
                conn.handle_timer(now)
            elif kind == _CONNECT:
                conn.connect(self.peer, now)
            else:
                self.sim.send_application_data(self, conn, arg)
        except Exception as exc:  # an engine bug: count it, keep the run going
            self.sim.engine_error(self, kind, exc)
        events = []
        while (event := conn.next_event()) is not None:
            events.append(event)
            if (
                not self.is_client
                and self.sim.scenario.echo
                and isinstance(event, DataReceived)
                and conn.state is HandshakeState.CONNECTED
            ):
                conn.send(event.data)
        outputs = [data for data, _ in conn.datagrams_to_send(now)]
        work, records = self.observer.observe(conn, before, outputs, events)
        self._outputs, self._records, self._events = outputs, records, events
        return self.sim.prices.seconds(work)

    def _release(self, now: float) -> None:
        outputs, records, events = self._outputs, self._records, self._events
        self._outputs, self._records, self._events = [], [], []
        for data, count in zip(outputs, records, strict=True):
            self.link.send(now, data, self.index, count)
        for event in events:
            self.sim.on_event(self, event, now)
        if outputs or events:
            self.sim.end = max(self.sim.end, now)
        assert self.conn is not None
        timer = self.conn.get_timer()
        if timer is not None and timer != self._timer and timer > self._last_timer_run:
            self._timer = timer
            self.sim.loop.at(timer, self._timer_expired, timer)

    def _timer_expired(self, when: float) -> None:
        if self._timer == when:
            self._timer = None
            self.submit(_TIMER)


class Simulation:
    """One run of a scenario (use `simulate`)."""

    def __init__(self, scenario: Scenario, *, drop: DropRule | None = None,
                 trace: list[tuple[Any, ...]] | None = None) -> None:
        s = self.scenario = scenario
        self.loop = loop = EventLoop()
        self.prices: Prices = s.timing.prices(s.suite, s.group, s.signature)
        self.client_context, self.server_context = make_contexts(
            s, lambda: WALL_CLOCK_EPOCH + loop.now
        )
        self.end = 0.0
        self.result = Result()
        self._payload = bytes(s.message_size)
        self._first_send: float | None = None
        self._last_delivery = 0.0
        self.uplink = Link(s.uplink, "c2s", random.Random(f"{s.seed}:c2s"), loop.at,
                           self._to_server, drop, trace=trace)
        self.downlink = Link(s.downlink, "s2c", random.Random(f"{s.seed}:s2c"), loop.at,
                             self._to_client, drop, trace=trace)
        self.server_cpu = Cpu(loop, s.server_cores, s.rx_backlog)
        self.client_cpus: list[Cpu] = []
        server_observer = Observer(False, s.mutual, s.session_tickets)
        client_observer = Observer(True, s.mutual)
        self.clients: list[Endpoint] = []
        self.servers: list[Endpoint] = []
        for i in range(s.clients):
            cpu = Cpu(loop, 1, s.rx_backlog)
            self.client_cpus.append(cpu)
            self.clients.append(Endpoint(
                self, i, True, cpu, self.uplink, self._new_client, client_observer,
                SERVER_ADDRESS,
            ))
            self.servers.append(Endpoint(
                self, i, False, self.server_cpu, self.downlink, self._new_server,
                server_observer, client_address(i),
            ))
        self.records = [HandshakeRecord(i, 0.0) for i in range(s.clients)]
        self._sent = [0] * s.clients

    # ---- wiring ----
    def _new_client(self) -> Connection:
        return Connection(self.client_context, server_name=SERVER_NAME)

    def _new_server(self) -> Connection:
        return Connection(self.server_context)

    def _to_server(self, data: bytes, client: int) -> None:
        self.servers[client].submit(_RECEIVE, data)

    def _to_client(self, data: bytes, client: int) -> None:
        self.clients[client].submit(_RECEIVE, data)

    def _arrivals(self) -> list[float]:
        s = self.scenario
        if s.arrival == "burst":
            return [0.0] * s.clients
        if s.arrival == "uniform":
            return [i / s.arrival_rate for i in range(s.clients)]
        rng = random.Random(f"{s.seed}:arrivals")
        times, t = [], 0.0
        for _ in range(s.clients):
            times.append(t)
            t += rng.expovariate(s.arrival_rate)
        return times

    def _start(self, client: int) -> None:
        self.records[client].start = self.loop.now
        self.clients[client].submit(_CONNECT)

    # ---- events ----
    def on_event(self, endpoint: Endpoint, event: Event, now: float) -> None:
        record = self.records[endpoint.index]
        result = self.result
        if isinstance(event, HandshakeCompleted):
            if endpoint.is_client:
                record.client_done = now
                client, server = endpoint.conn, self.servers[endpoint.index].conn
                assert client is not None
                record.retransmissions_at_done = client.retransmissions + (
                    server.retransmissions if server is not None else 0
                )
                self._start_traffic(endpoint, now)
            else:
                record.server_done = now
        elif isinstance(event, DataReceived):
            result.app_records_delivered += 1
            result.app_bytes_delivered += len(event.data)
            self._last_delivery = now
        elif isinstance(event, KeyUpdated):
            result.key_updates += 1
        elif isinstance(event, ConnectionClosed) and event.error and record.failure is None:
            side = "client" if endpoint.is_client else "server"
            record.failure = f"{side}: {event.reason}"

    def engine_error(self, endpoint: Endpoint, kind: int, exc: Exception) -> None:
        call = ("receive_datagram", "handle_timer", "connect", "send")[kind]
        side = "client" if endpoint.is_client else "server"
        text = f"{side} {call} raised {type(exc).__name__}: {exc}"
        errors = self.result.engine_errors
        errors[text] = errors.get(text, 0) + 1
        record = self.records[endpoint.index]
        if record.failure is None:
            record.failure = text

    # ---- application traffic ----
    def _start_traffic(self, client: Endpoint, now: float) -> None:
        s = self.scenario
        if s.traffic == "bulk":
            client.submit(_SEND, s.messages)
        elif s.traffic == "constant":
            for k in range(s.messages):
                self.loop.at(now + k / s.message_rate, client.submit, _SEND, 1)

    def send_application_data(self, client: Endpoint, conn: Connection, count: int) -> None:
        s = self.scenario
        result = self.result
        if self._first_send is None:
            self._first_send = self.loop.now
        for _ in range(count):
            if conn.state is not HandshakeState.CONNECTED:
                return
            conn.send(self._payload)
            result.app_records_sent += 1
            result.app_bytes_sent += len(self._payload)
            sent = self._sent[client.index] = self._sent[client.index] + 1
            if s.key_update_every and sent % s.key_update_every == 0:
                conn.update_keys()

    # ---- the run ----
    def run(self) -> Result:
        arrivals = self._arrivals()
        for i, when in enumerate(arrivals):
            self.loop.at(when, self._start, i)
        self.server_cpu.window = (arrivals[0], arrivals[-1])
        self.loop.run(self.scenario.time_limit)
        return self._finish()

    def _finish(self) -> Result:
        result = self.result
        for record, client, server in zip(self.records, self.clients, self.servers, strict=True):
            if client.conn is not None:
                record.client_retransmissions = client.conn.retransmissions
            if server.conn is not None:
                record.server_retransmissions = server.conn.retransmissions
            if not record.completed and record.failure is None:
                record.failure = "incomplete at the time limit"
        result.handshakes = self.records
        result.uplink = self.uplink.stats
        result.downlink = self.downlink.stats
        cpu = self.server_cpu
        result.server_busy = cpu.busy
        start, end = cpu.window
        if end > start:  # utilisation while clients arrive: the load the rate makes
            result.server_load_busy = cpu.busy_in_window
            result.server_load_capacity = cpu.cores * (end - start)
        else:  # all at once: over the whole run
            result.server_load_busy = cpu.busy
            result.server_load_capacity = cpu.cores * self.end
        result.client_busy = sum(cpu.busy for cpu in self.client_cpus)
        result.rx_dropped = self.server_cpu.dropped + sum(c.dropped for c in self.client_cpus)
        if self._first_send is not None and self._last_delivery > self._first_send:
            result.traffic_time = self._last_delivery - self._first_send
        result.end = self.end
        result.events = self.loop.events
        return result
