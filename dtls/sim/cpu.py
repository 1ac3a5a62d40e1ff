"""A modelled CPU: a FIFO queue served by `cores` identical cores.

A job runs its engine call when a core takes it, and learns then what the call cost (the
engine's work priced by the timing model); the core is busy for that long, and the job's
results (datagrams, events, timers) are released when it finishes. Jobs of one connection
never overlap, so that its calls stay in order on a multi-core CPU. Datagram jobs beyond
`backlog` waiting are dropped, as a full socket receive buffer drops them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable

from .clock import EventLoop


class Job:
    """One unit of work: `run(now)` does it and returns its cost in seconds;
    `finish(now)` releases its results."""

    __slots__ = ("datagram", "finish", "key", "run")

    def __init__(
        self,
        key: Hashable,
        run: Callable[[float], float],
        finish: Callable[[float], None],
        *,
        datagram: bool = False,
    ) -> None:
        self.key = key  # the connection: jobs with one key run one at a time, in order
        self.run = run
        self.finish = finish
        self.datagram = datagram


class Cpu:
    """FIFO cores on an event loop."""

    def __init__(self, loop: EventLoop, cores: int = 1, backlog: int | None = None) -> None:
        if cores < 1:
            raise ValueError("a CPU needs at least one core")
        self.loop = loop
        self.cores = cores
        self.backlog = backlog
        self.busy = 0.0  # core-seconds of work done
        self.window = (0.0, 0.0)  # busy time inside this interval is also kept apart
        self.busy_in_window = 0.0
        self.jobs = 0
        self.dropped = 0  # datagrams refused: backlog full
        self._free = cores
        self._queue: deque[Job] = deque()
        self._waiting_datagrams = 0
        self._running: set[Hashable] = set()

    def submit(self, job: Job) -> None:
        if job.datagram:
            if self.backlog is not None and self._waiting_datagrams >= self.backlog:
                self.dropped += 1
                return
            self._waiting_datagrams += 1
        self._queue.append(job)
        if self._free:
            self._dispatch()

    def _dispatch(self) -> None:
        queue = self._queue
        now = self.loop.now
        while self._free and queue:
            job = self._take()
            if job is None:
                return
            if job.datagram:
                self._waiting_datagrams -= 1
            self._free -= 1
            self._running.add(job.key)
            cost = job.run(now)
            self.busy += cost
            start, end = self.window
            if now < end and now + cost > start:
                self.busy_in_window += min(now + cost, end) - max(now, start)
            self.jobs += 1
            self.loop.at(now + cost, self._done, job)

    def _take(self) -> Job | None:
        queue = self._queue
        if self.cores == 1 or queue[0].key not in self._running:
            return queue.popleft()
        for i, job in enumerate(queue):
            if job.key not in self._running:
                del queue[i]
                return job
        return None

    def _done(self, job: Job) -> None:
        self._free += 1
        self._running.discard(job.key)
        job.finish(self.loop.now)
        if self._queue:
            self._dispatch()
