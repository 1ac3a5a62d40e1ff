"""The virtual clock: a plain event heap.

Events at the same instant run in the order they were scheduled (a sequence number
breaks ties), so a run depends only on its inputs and is reproducible bit for bit.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class EventLoop:
    """Callbacks ordered by virtual time (seconds)."""

    __slots__ = ("_heap", "_order", "events", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self.events = 0  # callbacks run so far
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` at virtual time `when` (never before now)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._order), callback, args))

    def run(self, until: float) -> None:
        """Run events in time order until none are left or the next is after `until`."""
        heap = self._heap
        pop = heapq.heappop
        while heap:
            if heap[0][0] > until:
                self.now = until
                return
            when, _, callback, args = pop(heap)
            self.now = when
            self.events += 1
            callback(*args)

    def __len__(self) -> int:
        return len(self._heap)
