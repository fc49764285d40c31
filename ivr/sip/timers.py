"""A queue of timers on a clock the caller owns: no thread, no clock read.

The SIP user agent (sans-I/O) and the I/O loop both keep their timers here; each is
told the time (``run_due(now)``) and asked for its next deadline.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

Callback = Callable[[], None]


class TimerHandle:
    """A scheduled callback; ``cancel()`` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Callbacks ordered by due time; cancelled ones are dropped lazily."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return sum(1 for _, _, handle in self._heap if not handle.cancelled)

    def at(self, when: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` once ``run_due`` is called with a time >= ``when``."""
        handle = TimerHandle(when, callback)
        heapq.heappush(self._heap, (when, next(self._order), handle))
        return handle

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[TimerHandle]:
        """Remove and return every live timer due by ``now``, earliest first (the
        caller runs them, so that one failing callback cannot stop the others)."""
        heap = self._heap
        due: list[TimerHandle] = []
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if not handle.cancelled:
                due.append(handle)
        return due
