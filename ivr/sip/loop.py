"""One I/O thread for SIP, RTP and timers of every call.

pyVoIP polls with ``sleep(0.01)`` in three threads per call (docs/pyvoip.md);
from ~100 calls the GIL starves them. Here a single ``selectors`` loop waits for all
sockets at once and wakes for the earliest timer; other threads hand it work with
:meth:`EventLoop.post`, which never blocks.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from ivr.sip.timers import Callback, TimerHandle, TimerQueue

log = logging.getLogger(__name__)

Reader = Callable[[socket.socket], None]


class EventLoop:
    """Sockets, timers and posted callbacks, run by one thread (:meth:`run`)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._timers = TimerQueue()
        self._posted: deque[Callback] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        self._running = False
        self.thread: threading.Thread | None = None
        #: called before each wait with the time of the next timer; returns an earlier
        #: deadline of its own (the media pacer) or None
        self.before_wait: Callable[[float], float | None] | None = None

    # --- used from the loop thread ----------------------------------------------
    def add_reader(self, sock: socket.socket, reader: Reader) -> None:
        """Call ``reader(sock)`` whenever ``sock`` is readable."""
        self._selector.register(sock, selectors.EVENT_READ, reader)

    def remove_reader(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (it may be closed afterwards)."""
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` at monotonic time ``when``."""
        return self._timers.at(when, callback)

    def call_later(self, seconds: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` in ``seconds``."""
        return self.call_at(time.monotonic() + seconds, callback)

    # --- used from any thread -----------------------------------------------------
    def post(self, callback: Callback) -> None:
        """Run ``callback`` on the loop thread soon (thread-safe, never blocks)."""
        self._posted.append(callback)
        with contextlib.suppress(OSError):  # full buffer: already woken; closed: stopped
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration."""
        self._running = False
        self.post(lambda: None)

    # --- the loop -------------------------------------------------------------------
    def run(self) -> None:
        """Serve until :meth:`stop`; a callback that raises is logged, never fatal."""
        self._running = True
        self.thread = threading.current_thread()
        while self._running:
            now = time.monotonic()
            deadline = self._timers.next_deadline()
            if deadline is None:
                deadline = now + 1.0
            if self.before_wait is not None:
                try:
                    extra = self.before_wait(now)
                except Exception as exc:  # the pacer or the agent's timers: go on
                    _failed("before waiting", exc)
                    extra = None
                if extra is not None:
                    deadline = min(deadline, extra)
            for key, _ in self._selector.select(max(0.0, deadline - time.monotonic())):
                try:
                    key.data(key.fileobj)
                except Exception as exc:
                    _failed("reading a socket", exc)
            self._run_posted()
            self._run_timers()

    def close(self) -> None:
        """Release the loop's own sockets (after :meth:`run` returned)."""
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _drain_wakeups(self, sock: socket.socket) -> None:
        try:
            while sock.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_posted(self) -> None:
        posted = self._posted
        while posted:
            self._safely(posted.popleft())

    def _run_timers(self) -> None:
        for handle in self._timers.pop_due(time.monotonic()):
            if not handle.cancelled:
                self._safely(handle.callback)

    @staticmethod
    def _safely(callback: Callback) -> None:
        try:
            callback()
        except Exception as exc:
            _failed("in a callback", exc)


def _failed(where: str, exc: Exception) -> None:
    """One line for an error the loop survives (the traceback only when debugging):
    the runtime's own callbacks end the call concerned themselves (SipServer._fail)."""
    log.error("error %s (the loop goes on): %s: %s", where, type(exc).__name__, exc)
    log.debug("traceback", exc_info=exc)
