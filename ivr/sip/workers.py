"""``ivr serve --workers N``: N serving processes of one configuration, one per port
(PORT..PORT+N-1, so one machine uses all its cores), the Kamailio dispatcher list that
names them, and their supervision.

The launcher forwards SIGTERM (drain), SIGHUP (reload) and SIGINT (stop now) to every
worker, restarts a worker that dies while nobody asked it to stop (back-off 1 s
doubling to 30 s, back to 1 s once it ran 30 s), and returns when every worker has
exited after a stop. Workers run in their own sessions, so a terminal's Ctrl-C reaches
the launcher only and each worker gets each signal once; they get SIGTERM if the
launcher dies (Linux). Only the processes it started are signalled, by their PIDs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
#: a worker that ran this long before dying is restarted after BACKOFF_FIRST again
STABLE = 30.0
#: seconds a worker may take beyond its drain before it is killed
STOP_GRACE = 15.0
_PR_SET_PDEATHSIG = 1

Command = Callable[[int], list[str]]
Environment = Callable[[int], Mapping[str, str]]


def dispatcher_list(host: str, ports: Sequence[int], setid: int = 1) -> str:
    """Kamailio's dispatcher list (``dispatcher`` module, ``ds_list_file``): one
    ``SETID sip:HOST:PORT`` line per worker."""
    lines = [
        "# Kamailio dispatcher list, written by `ivr serve --workers`",
        "# setid destination",
    ]
    lines += [f"{setid} sip:{host}:{port}" for port in ports]
    return "\n".join(lines) + "\n"


def write_dispatcher_list(path: Path, host: str, ports: Sequence[int], setid: int = 1) -> None:
    """Write the list atomically (Kamailio may reload it any time: ``dispatcher.reload``)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(dispatcher_list(host, ports, setid), encoding="utf-8")
    os.replace(temporary, path)


@dataclass(slots=True)
class Worker:
    """One serving process on ``port`` (the launcher's view)."""

    port: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = BACKOFF_FIRST
    #: when a worker that died unexpectedly is started again (None: not waiting)
    restart_at: float | None = None
    #: the exit status after a stop (None: still running, or not stopped)
    status: int | None = None


class Supervisor:
    """Starts, restarts and signals the workers; :meth:`run` until all have stopped."""

    def __init__(
        self,
        command: Command,
        ports: Sequence[int],
        *,
        env: Environment | None = None,
        drain: float = 0.0,
    ) -> None:
        """``command(port)``: the command line of the worker on ``port``; ``env(port)``:
        its environment (default: ours); ``drain``: the workers' drain, which bounds
        how long a stop may take before they are killed."""
        self.command = command
        self.workers = [Worker(port) for port in ports]
        self.env = env
        self.drain = drain
        self.stopping = False
        self.kill_at: float | None = None
        self._received: deque[int] = deque()
        self._wake = threading.Event()

    def run(self) -> int:
        """Serve until stopped; 0 when every worker exited 0 after the stop, else 1."""
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, self._on_signal) for s in handled}
        try:
            for worker in self.workers:
                self._start(worker)
            while not (self.stopping and all(w.proc is None for w in self.workers)):
                self._wake.wait(0.2)
                self._wake.clear()
                while self._received:
                    self._forward(self._received.popleft())
                self._reap()
                self._restart_due()
                self._kill_late()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._kill_all()
        failed = [w for w in self.workers if w.status != 0]
        log.warning(
            "all %d workers stopped%s",
            len(self.workers),
            f" ({len(failed)} not cleanly)" if failed else "",
        )
        return 1 if failed else 0

    # --- signals ---------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._received.append(signum)
        self._wake.set()

    def _forward(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum != signal.SIGHUP and not self.stopping:
            self.stopping = True
            grace = self.drain if signum == signal.SIGTERM else 0.0
            self.kill_at = time.monotonic() + grace + STOP_GRACE
            for worker in self.workers:
                worker.restart_at = None  # no restarts once stopping
                if worker.proc is None and worker.status is None:
                    # it died before the stop (logged then) and waited to be started
                    # again: nothing to stop, which is no failed stop
                    worker.status = 0
        running = [w for w in self.workers if w.proc is not None]
        log.warning("%s: passing it on to %d workers", name, len(running))
        for worker in running:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.proc.pid, signum)

    # --- the workers -----------------------------------------------------------------
    def _start(self, worker: Worker) -> None:
        worker.restart_at = None
        parent = os.getpid()
        worker.proc = subprocess.Popen(
            self.command(worker.port),
            env=self.env(worker.port) if self.env is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: _die_with(parent),
        )
        worker.started = time.monotonic()
        log.warning("worker on port %d started (pid %d)", worker.port, worker.proc.pid)

    def _reap(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            worker.proc = None
            status = proc.returncode
            if self.stopping:
                # killed by the SIGTERM we passed on before it could install its handler
                # (just started): it had no calls, so that is a clean stop too
                worker.status = 0 if status == -signal.SIGTERM else status
                if worker.status != 0:
                    log.warning("worker on port %d exited with status %d", worker.port, status)
                continue
            if now - worker.started >= STABLE:
                worker.backoff = BACKOFF_FIRST
            log.error(
                "worker on port %d (pid %d) died (%s); restarting in %g s",
                worker.port,
                proc.pid,
                _how(status),
                worker.backoff,
            )
            worker.restart_at = now + worker.backoff
            worker.backoff = min(worker.backoff * 2, BACKOFF_MAX)

    def _restart_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None and worker.restart_at <= now:
                self._start(worker)

    def _kill_late(self) -> None:
        if self.kill_at is None or time.monotonic() < self.kill_at:
            return
        for worker in self.workers:
            if worker.proc is not None:
                log.error(
                    "worker on port %d (pid %d) did not stop in time; killing it",
                    worker.port,
                    worker.proc.pid,
                )
        self._kill_all()

    def _kill_all(self) -> None:
        """SIGKILL every worker still running (ours, by PID) and reap it."""
        for worker in self.workers:
            proc = worker.proc
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            worker.proc = None
            worker.status = proc.returncode if worker.status is None else worker.status


def _how(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-status).name}"
        return f"signal {-status}"
    return f"exit status {status}"


def _die_with(parent: int) -> None:
    """In the child before exec: SIGTERM (a drain) when the launcher dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
