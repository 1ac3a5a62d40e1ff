"""One server on every core: worker processes on one port, supervised by the parent.

`Supervisor.start` (what `dtls.aio.serve(..., workers=N)` returns) makes the reuseport
group of N UDP sockets in index order (`dtls.reuseport`), attaches the CID steering
program, and forks one worker process per socket. Each worker runs a `dtls.aio` server on
its socket whose connections get CIDs carrying its index (and the host id,
`dtls.cid_layout`), so records with a CID reach the worker holding the connection
whatever their source address; ClientHellos and records without a CID are spread by the
kernel's 4-tuple hash. The workers share the parent's server secret
(`dtls.server_secret`): cookies and tickets of one are accepted by all; 0-RTT only by
the ticket's issuer (RFC 9846 §8).

The parent keeps every socket open (closing one would renumber the group), restarts a
worker that dies, collects each worker's `stats()` over a pipe, and on `close()` drains:
each worker stops taking handshakes, sends close_notify to its peers and exits within
`drain_timeout` (else it is killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from .aio import Serving
from .cid_layout import MAX_WORKERS, CidLayout
from .config import Context
from .reuseport import attach_cid_steering, cid_steering_program, reuseport_group
from .server import EndpointStats

__all__ = ["Supervisor", "WorkerStats", "worker_count"]

logger = logging.getLogger("dtls.workers")

STATS_INTERVAL = 0.25  # seconds between a worker's stats reports
RESTART_DELAY = 0.2  # seconds before a dead worker is started again (doubling, to 5 s)
_GAUGES = ("connections_active", "handshakes_active", "pool_in_use", "pool_peak")


def worker_count(value: int | str) -> int:
    """`--workers`: a number, or "auto" for the number of CPUs."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
    count = int(value)
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"workers must be 1 to {MAX_WORKERS} (or auto)")
    return count


@dataclass(frozen=True)
class WorkerStats:
    """One worker's latest report."""

    index: int
    pid: int
    alive: bool
    #: times this worker was started again after it died
    restarts: int
    stats: EndpointStats


class _Worker:
    """The parent's handle on one worker process and its socket."""

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.process: Any = None
        self.pipe: Pipe | None = None
        self.stats = EndpointStats()  # the running process's latest report
        self.retired: dict[str, float] = {}  # counters of its processes that ended
        self.restarts = 0
        self.delay = RESTART_DELAY
        self.started = 0.0


class Supervisor(Serving):
    """The parent of the worker processes (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run_worker: Callable[[int, socket.socket, Pipe], None],
        socks: list[socket.socket],
        layout: CidLayout,
        *,
        steering: bool,
        drain_timeout: float,
    ) -> None:
        self.loop = loop
        self.layout = layout
        #: whether the CID steering program is attached (else: the kernel's hash only)
        self.steering = steering
        self.drain_timeout = drain_timeout
        self._run_worker = run_worker
        self._workers = [_Worker(i, sock) for i, sock in enumerate(socks)]
        self._closed = False
        self._done: asyncio.Future[None] = loop.create_future()
        self._fork = multiprocessing.get_context("fork")

    @classmethod
    async def start(
        cls,
        handler: Callable[[Any], Awaitable[None] | None],
        host: str | None,
        port: int,
        context: Context,
        *,
        workers: int = 2,
        cid_layout: CidLayout | None = None,
        drain_timeout: float = 10.0,
        on_state_change: Any = None,
        on_alert: Any = None,
        on_handshake_failed: Any = None,
        **endpoint_options: Any,
    ) -> Supervisor:
        """Bind `workers` sockets on `host`:`port` (its first address), start a worker on
        each and return once they run. `cid_layout`: the CIDs' host id and length (the
        worker index is set per worker); `endpoint_options` go to each worker's
        `ServerEndpoint` (max_connections is per worker)."""
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1 to {MAX_WORKERS}")
        loop = asyncio.get_running_loop()
        layout = cid_layout or CidLayout()
        # Resolved here, not in the loop's thread pool: no threads when the workers fork.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, address = infos[0][0], infos[0][4]
        socks = reuseport_group(family, address, workers)
        steering = workers > 1 and attach_cid_steering(
            socks[0], cid_steering_program(layout, workers)
        )
        context.server_secret()  # made here, so that every worker has the same one
        options = dict(endpoint_options)
        callbacks = {"on_state_change": on_state_change, "on_alert": on_alert,
                     "on_handshake_failed": on_handshake_failed}

        def run_worker(index: int, sock: socket.socket, pipe: Pipe) -> None:
            plan = _WorkerPlan(handler, context, layout.for_worker(index), drain_timeout,
                               options, callbacks)
            _worker_main(plan, sock, pipe)

        supervisor = cls(loop, run_worker, socks, layout, steering=steering,
                         drain_timeout=drain_timeout)
        for worker in supervisor._workers:
            supervisor._spawn(worker)
        return supervisor

    # ---- the API of dtls.aio.Server ----
    @property
    def port(self) -> int:
        return int(self._workers[0].sock.getsockname()[1])

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(w.sock for w in self._workers)

    @property
    def pids(self) -> list[int | None]:
        """Each worker's process id (None while it is being restarted)."""
        return [w.process.pid if w.process is not None else None for w in self._workers]

    def worker_stats(self) -> list[WorkerStats]:
        """Each worker's counters (its latest report, at most STATS_INTERVAL old, plus
        those of its processes that ended) and current gauges."""
        out = []
        for w in self._workers:
            totals = dict(w.retired)
            for name, value in vars(w.stats).items():
                totals[name] = totals.get(name, 0) + value
            out.append(WorkerStats(
                w.index, w.process.pid if w.process else 0,
                w.process is not None and w.process.is_alive(), w.restarts,
                EndpointStats(**totals),  # type: ignore[arg-type]
            ))
        return out

    def stats(self) -> EndpointStats:
        """The workers' `worker_stats` added up."""
        totals: dict[str, float] = {}
        for worker in self.worker_stats():
            for name, value in vars(worker.stats).items():
                totals[name] = totals.get(name, 0) + value
        return EndpointStats(**totals)  # type: ignore[arg-type]

    async def refresh(self, timeout: float = 2.0) -> None:
        """Ask every live worker for a report now and wait for them (or `timeout`)."""
        waiting = []
        for worker in self._workers:
            if worker.pipe is not None and worker.process is not None:
                with contextlib.suppress(OSError):
                    worker.pipe.send("stats")
                    waiting.append((worker, worker.stats))
        deadline = self.loop.time() + timeout
        while waiting and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
            waiting = [(w, old) for w, old in waiting if w.stats is old and w.process]

    def is_serving(self) -> bool:
        return not self._closed

    def close(self) -> None:
        """Drain: every worker stops taking handshakes, sends close_notify to its peers
        and exits (within drain_timeout, else it is killed). `wait_closed` waits."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            if worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        self.loop.create_task(self._reap())

    # ---- processes ----
    def _spawn(self, worker: _Worker) -> None:
        parent, child = self._fork.Pipe()
        process = self._fork.Process(
            target=self._run_worker, args=(worker.index, worker.sock, child),
            name=f"dtls-worker-{worker.index}", daemon=True,
        )
        process.start()
        child.close()
        worker.process, worker.pipe, worker.started = process, parent, time.monotonic()
        self.loop.add_reader(process.sentinel, self._exited, worker)
        self.loop.add_reader(parent.fileno(), self._report, worker)

    def _report(self, worker: _Worker) -> None:
        pipe = worker.pipe
        assert pipe is not None
        try:
            while pipe.poll():
                report = pipe.recv()
                worker.stats = EndpointStats(**report)
        except (EOFError, OSError):
            self.loop.remove_reader(pipe.fileno())

    def _exited(self, worker: _Worker) -> None:
        process, pipe = worker.process, worker.pipe
        self.loop.remove_reader(process.sentinel)
        process.join()
        if pipe is not None:
            self._report(worker)  # its last words
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(pipe.fileno())
            pipe.close()
        for name, value in vars(worker.stats).items():
            if name not in _GAUGES:
                worker.retired[name] = worker.retired.get(name, 0) + value
        worker.stats = EndpointStats()
        worker.process = worker.pipe = None
        if self._closed:
            return
        logger.warning("worker %d (pid %d) exited with %s: starting it again",
                       worker.index, process.pid, process.exitcode)
        worker.restarts += 1
        # A worker that keeps dying right after its start is restarted ever more slowly.
        quick = time.monotonic() - worker.started < 1.0
        worker.delay = min(5.0, worker.delay * 2) if quick else RESTART_DELAY
        self.loop.call_later(worker.delay, self._respawn, worker)

    def _respawn(self, worker: _Worker) -> None:
        if not self._closed and worker.process is None:
            self._spawn(worker)

    async def _reap(self) -> None:
        deadline = self.loop.time() + self.drain_timeout + 1.0
        while any(w.process is not None for w in self._workers):
            if self.loop.time() >= deadline:
                for worker in self._workers:
                    if worker.process is not None:
                        logger.warning("worker %d did not drain in time: killed", worker.index)
                        worker.process.kill()
                deadline = float("inf")
            await asyncio.sleep(0.02)
        for worker in self._workers:
            worker.sock.close()
        if not self._done.done():
            self._done.set_result(None)


# ---- in the worker process ----


@dataclass(frozen=True)
class _WorkerPlan:
    """What a worker process runs: the same for every worker but its CID layout."""

    handler: Callable[[Any], Awaitable[None] | None]
    context: Context
    layout: CidLayout
    drain_timeout: float
    options: dict[str, Any]
    callbacks: dict[str, Any]


def _worker_main(plan: _WorkerPlan, sock: socket.socket, pipe: Pipe) -> None:
    # The parent's signal wakeup fd (its event loop's) must not hear our signals.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the parent, which drains us
    _drain_when_parent_dies()
    asyncio.run(_serve_worker(plan, sock, pipe))


def _drain_when_parent_dies() -> None:
    """Linux prctl(PR_SET_PDEATHSIG, SIGTERM): a worker whose parent was killed drains
    and exits rather than serve on unsupervised."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    if os.getppid() == 1:  # the parent died before that
        os.kill(os.getpid(), signal.SIGTERM)


async def _serve_worker(plan: _WorkerPlan, sock: socket.socket, pipe: Pipe) -> None:
    from . import aio

    loop = asyncio.get_running_loop()
    context, layout = plan.context, plan.layout
    context.ticket_keys().issuer = layout.issuer  # RFC 9846 §8: 0-RTT only here
    options = {**plan.options, "cid_generator": layout.generate}
    server = await aio.serve(plan.handler, None, 0, context, sockets=[sock],
                             **plan.callbacks, **options)
    draining = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, draining.set)

    def report() -> None:
        with contextlib.suppress(OSError, ValueError):
            pipe.send(dataclasses.asdict(server.stats()))

    def request() -> None:
        try:
            while pipe.poll():
                pipe.recv()
                report()
        except (EOFError, OSError):
            draining.set()  # the parent is gone

    loop.add_reader(pipe.fileno(), request)

    async def reports() -> None:
        while True:
            report()
            await asyncio.sleep(STATS_INTERVAL)

    reporter = loop.create_task(reports())
    await draining.wait()
    # Drain: no new handshakes, close_notify to every peer (ServerEndpoint.close), then
    # the handlers get until the timeout to return.
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), plan.drain_timeout)
    reporter.cancel()
    report()
