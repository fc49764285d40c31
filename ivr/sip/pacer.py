"""One pacer for the media of every call: 20 ms packets on time, without a thread per
call and without drift.

pyVoIP runs three polling threads per call and its sender drifts slow (49.67 packets/s;
docs/pyvoip.md, bug 15); from ~100 calls the GIL starves it. Here one loop owns
all outgoing streams: each stream's next packet is due at ``start + n * 20 ms`` (so
lateness never accumulates), ``due(now)`` returns every packet due by ``now``, and a
stream that fell further behind than ``MAX_CATCH_UP`` packets skips ahead instead of
bursting. The pacer reads no clock and opens no socket: the runtime calls it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

PACKET_SECONDS = 0.020
#: a stream this many packets late skips ahead rather than sending a burst
MAX_CATCH_UP = 5

#: what a stream plays: any object the runtime sends for one 20 ms packet
Chunk = object
OnDrained = Callable[[Hashable], None]


@dataclass(slots=True)
class _Stream:
    key: Hashable
    start: float
    sent: int = 0
    queue: deque[Chunk] = field(default_factory=deque)
    generation: int = 0


class Pacer:
    """Schedules 20 ms chunks of many streams; the caller sends what ``due`` returns."""

    def __init__(self, on_drained: OnDrained | None = None) -> None:
        self._streams: dict[Hashable, _Stream] = {}
        self._heap: list[tuple[float, int, Hashable, int]] = []
        self._order = itertools.count()
        self.on_drained = on_drained
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._streams)

    def play(self, key: Hashable, chunks: list[Chunk], now: float) -> None:
        """Queue ``chunks`` (20 ms each) for stream ``key``; starts it if idle."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(key=key, start=now)
        idle = not stream.queue
        stream.queue.extend(chunks)
        if idle and chunks:
            stream.start, stream.sent = max(now, self._next_time(stream)), 0
            stream.generation += 1
            self._push(stream)

    def stop(self, key: Hashable) -> None:
        """Drop what stream ``key`` still had to play (barge-in): nothing more is sent."""
        stream = self._streams.get(key)
        if stream is not None:
            stream.queue.clear()
            stream.generation += 1

    def remove(self, key: Hashable) -> None:
        """Forget stream ``key`` (the call ended)."""
        self.stop(key)
        self._streams.pop(key, None)

    def next_wakeup(self) -> float | None:
        """When the next packet is due, or None when nothing plays."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[tuple[Hashable, Chunk]]:
        """Every ``(stream, chunk)`` due by ``now``, in time order."""
        out: list[tuple[Hashable, Chunk]] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return out
            when, _, key, _generation = heapq.heappop(self._heap)
            stream = self._streams[key]
            late = int((now - when) / PACKET_SECONDS)
            if late > MAX_CATCH_UP:  # skip ahead, never burst
                skip = min(late - MAX_CATCH_UP, len(stream.queue) - 1)
                for _ in range(max(0, skip)):
                    stream.queue.popleft()
                stream.sent += max(0, skip)
                self.skipped += max(0, skip)
            out.append((key, stream.queue.popleft()))
            stream.sent += 1
            if stream.queue:
                self._push(stream)
            elif self.on_drained is not None:
                self.on_drained(key)

    def _next_time(self, stream: _Stream) -> float:
        return stream.start + stream.sent * PACKET_SECONDS

    def _push(self, stream: _Stream) -> None:
        entry = (self._next_time(stream), next(self._order), stream.key, stream.generation)
        heapq.heappush(self._heap, entry)

    def _drop_stale(self) -> None:
        while self._heap:
            _, _, key, generation = self._heap[0]
            stream = self._streams.get(key)
            if stream is not None and stream.generation == generation and stream.queue:
                return
            heapq.heappop(self._heap)
