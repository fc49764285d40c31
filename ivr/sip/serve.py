"""``ivr serve``: build the engine, the prompt audio and the SIP server; run until a
signal.

Signals: SIGINT stops at once (every call gets BYE); SIGTERM drains — new calls and
OPTIONS are answered 503, running calls go on until they end or ``drain`` seconds
passed (then BYE), and a second SIGTERM or SIGINT stops at once; SIGHUP reloads the
dialplan, the portal configuration and the files it names: new calls get the new
engine, running calls finish on theirs, and a configuration that does not load is
one error line while the old one keeps serving.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import threading
import time
import weakref
from collections import deque
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from ivr.audio.library import PromptAudio
from ivr.dialogue import Engine
from ivr.dialplan.loader import load_dialplan
from ivr.errors import DialplanError, IvrError
from ivr.hooks import check_engine_context
from ivr.sip.server import ServeConfig, SipServer

log = logging.getLogger(__name__)

#: exit status when a thread of the runtime died (EX_SOFTWARE)
THREAD_DIED = 70
#: seconds the BYEs sent when a drain times out get to be answered before we go
BYE_GRACE = 2.0
#: collections after a reload until the engines it replaced are freed (see _refreeze)
REFREEZE_TRIES = 5


def serving_engine(dialplan: Path, portal: Path | None) -> Engine:
    """The engine for real calls: portal lockouts in the portal's store (SQLite or
    PostgreSQL: they outlive the process).

    Raises :class:`ivr.hooks.ContextError` when the dialplan's hooks need services it
    was not given (a portal dialplan without ``portal``)."""
    if portal is None:
        engine = Engine(load_dialplan(dialplan))
    else:
        from ivr.portal.config import load_portal
        from ivr.portal.services import open_lockout_store, portal_engine

        store = open_lockout_store(load_portal(portal))
        engine = portal_engine(dialplan, portal, lockouts=store)
    check_engine_context(engine)
    return engine


def prompt_audio(engine: Engine) -> PromptAudio:
    """The dialplan's prompt audio, rendering what is not cached yet. A speech engine
    that cannot start fails at once, with the fix (not once per prompt piece)."""
    audio = PromptAudio(engine.dialplan.catalog)
    if audio.missing():
        log.info("rendering %d prompt pieces", len(audio.missing()))
        summary = audio.render()
        if summary.unavailable:
            raise IvrError(f"prompt audio cannot be rendered: {summary.unavailable}")
        if summary.failed:
            raise IvrError(f"prompt audio failed: {summary.failed[0]}")
    audio.load()
    return audio


def reload(server: SipServer, dialplan: Path, portal: Path | None) -> Engine | None:
    """Load ``dialplan`` and ``portal`` again (and the prompt audio, rendering what a
    changed catalog lacks); if all is well, new calls of ``server`` get them (the new
    engine is returned). If not: one error line, and the running engine stays (None)."""
    try:
        engine = serving_engine(dialplan, portal)
        audio = prompt_audio(engine)
    except DialplanError as exc:
        problems = "; ".join(str(p) for p in exc.problems) or str(exc)
        _reload_failed(problems)
        return None
    except Exception as exc:  # IvrError, ContextError, OSError, or a loader's own bug
        _reload_failed(f"{type(exc).__name__}: {exc}")
        return None
    server.reload(engine, audio)
    log.warning(
        "reloaded %s%s: new calls use it, running calls finish on the previous one",
        dialplan,
        f" with {portal}" if portal is not None else "",
    )
    return engine


def _reload_failed(why: str) -> None:
    log.error("reload failed, still serving the previous configuration: %s", " ".join(why.split()))


class _Lifecycle:
    """What the signals do to a running server (on the main thread)."""

    def __init__(
        self, server: SipServer, dialplan: Path, portal: Path | None, drain: float
    ) -> None:
        self.server = server
        self.dialplan, self.portal = dialplan, portal
        self.drain = drain
        self.state = "serving"  # -> draining -> stopping
        self.deadline = 0.0
        self.running_at_drain = 0
        #: the engine of the last reload: once it serves and the engines it replaced are
        #: gone, what the reload built is frozen (as start-up's is)
        self.reloaded: Engine | None = None
        #: the engines reloads replaced, until the collector has freed them
        self.replaced: list[weakref.ref[Engine]] = []
        self.collections = 0

    def signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            if self.state == "serving":
                engine = self.server.driver.engine
                new = reload(self.server, self.dialplan, self.portal)
                if new is not None:
                    self.reloaded = new
                    self.replaced.append(weakref.ref(engine))
                    self.collections = 0
            else:
                log.warning("reload ignored: the portal is draining")
        elif signum == signal.SIGTERM and self.state == "serving" and self.drain > 0:
            self._start_draining()
        else:
            if self.state == "draining":
                log.warning("stopping now: %d calls hung up", len(self.server.calls))
            self.state = "stopping"

    def _start_draining(self) -> None:
        self.server.drain()
        self.state = "draining"
        self.deadline = time.monotonic() + self.drain
        self.running_at_drain = len(self.server.calls)
        log.warning(
            "draining: %d calls running, new calls answered 503; stopping when they have "
            "ended or in %g s",
            self.running_at_drain,
            self.drain,
        )

    def tick(self) -> None:
        """Every wake-up: end a drain that is done or out of time; freeze what a
        reload built once the engines it replaced are gone."""
        driver = self.server.driver
        if self.reloaded is not None and driver.engine is self.reloaded and not driver.retiring:
            self._refreeze()
        if self.state != "draining":
            return
        if not self.server.calls:
            self._settle()  # a BYE of ours (e.g. after a pull) is answered
            log.warning("drained: %d calls finished, 0 hung up", self.running_at_drain)
            self.state = "stopping"
        elif time.monotonic() >= self.deadline:
            left = len(self.server.calls)
            self.server.hang_up_all("drain")
            self._settle()
            log.warning(
                "drained: %d calls finished, %d hung up after %g s",
                max(0, self.running_at_drain - left),
                left,
                self.drain,
            )
            self.state = "stopping"

    def _refreeze(self) -> None:
        """The replaced engines were frozen with the rest at start-up (or at the last
        reload), so the collector would never free them: unfreeze, collect, freeze what
        is left. A thread may still hold a replaced engine for a moment (the dialogue
        thread retiring it): then again at the next wake-up, a few times at most."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.replaced = [ref for ref in self.replaced if ref() is not None]
        self.collections += 1
        if not self.replaced or self.collections >= REFREEZE_TRIES:
            if self.replaced:
                log.debug("%d replaced engines still referenced", len(self.replaced))
            self.reloaded = None
            self.replaced = []

    def _settle(self) -> None:
        """Until no call is left and our BYEs are answered, BYE_GRACE seconds at most."""
        grace = time.monotonic() + BYE_GRACE
        while time.monotonic() < grace and not self.server.settled():
            time.sleep(0.02)


def _at(config: ServeConfig) -> str:
    host, port = config.registrar
    return f"{host}:{port}"


def serve(
    dialplan: Path,
    portal: Path | None,
    config: ServeConfig,
    *,
    stats: Path | None = None,
    ready: threading.Event | None = None,
    drain: float = 0.0,
) -> SipServer:
    """Serve until SIGINT, or SIGTERM and the drain (``drain`` seconds at most; 0: stop
    at once); SIGHUP reloads. Returns the server."""
    engine = serving_engine(dialplan, portal)
    server = SipServer(engine, config, prompt_audio(engine))
    # what start-up built (dialplan, catalog, audio, libraries) lives as long as the
    # process: out of the collector's way, a full collection no longer walks it while
    # calls are bridged (measured: ~16 ms -> ~0.1 ms per full collection)
    gc.collect()
    gc.freeze()
    received: deque[int] = deque()
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        wake.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in handled}
    lifecycle = _Lifecycle(server, dialplan, portal, drain)
    dead = None
    try:
        server.start()
        host, port = server.address
        log.warning(
            "serving %s on sip:%s@%s:%d (at most %d calls at once)%s",
            dialplan,
            config.user,
            host,
            port,
            server.max_calls,
            "" if config.register else f"; not registering, taking calls from {_at(config)}",
        )
        if ready is not None:
            ready.set()
        while lifecycle.state != "stopping":
            wake.wait(0.1 if lifecycle.state == "draining" else 0.5)
            wake.clear()
            dead = server.dead_thread()
            if dead is not None:
                break
            while received and lifecycle.state != "stopping":
                lifecycle.signal(received.popleft())
            lifecycle.tick()
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if stats is not None:
            counters = {**asdict(server.stats), "sip": asdict(server.agent.stats)}
            stats.write_text(json.dumps(counters, indent=1))
    if dead is not None:  # a supervisor (systemd, the dispatcher's probe) restarts us
        log.critical("the %s thread died; stopping with exit status %d", dead, THREAD_DIED)
        raise SystemExit(THREAD_DIED)
    return server
