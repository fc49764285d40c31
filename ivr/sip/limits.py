"""Bounds on what one source may cost the user agent: a token bucket per source for new
calls, and log lines that cannot flood the log.

Both are told the time (sans-I/O); both keep bounded state (the least recently seen
sources are forgotten first).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

#: sources remembered at most (the rest start with a full bucket again)
MAX_SOURCES = 4096


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class SourceLimiter:
    """A token bucket per source address: ``rate`` per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0

    def allow(self, source: str, now: float) -> bool:
        """Take a token for ``source``; False when it has none left."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.burst, now)
            if len(self._buckets) > MAX_SOURCES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        self.refused += 1
        return False


class LogThrottle:
    """At most one line per ``interval`` seconds for each kind of event; the lines in
    between are counted and the next line says how many there were."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, now: float, message: str, *args: object) -> None:
        """Log ``message`` for ``kind`` unless one was logged less than ``interval`` ago."""
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, held, now - last if last is not None else 0.0)
        self.logger.warning(message, *args)
