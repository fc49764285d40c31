"""``ivr serve``: build the engine, the prompt audio and the SIP server; run until a
signal."""

from __future__ import annotations

import gc
import json
import logging
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from ivr.audio.library import PromptAudio
from ivr.dialogue import Engine
from ivr.dialplan.loader import load_dialplan
from ivr.errors import IvrError
from ivr.hooks import check_engine_context
from ivr.sip.server import ServeConfig, SipServer

log = logging.getLogger("ivr.sip")

#: exit status when a thread of the runtime died (EX_SOFTWARE)
THREAD_DIED = 70


def serving_engine(dialplan: Path, portal: Path | None) -> Engine:
    """The engine for real calls: portal lockouts in SQLite (they outlive the process).

    Raises :class:`ivr.hooks.ContextError` when the dialplan's hooks need services it
    was not given (a portal dialplan without ``portal``)."""
    if portal is None:
        engine = Engine(load_dialplan(dialplan))
    else:
        from ivr.portal.config import load_portal
        from ivr.portal.lockout import SqliteLockoutStore
        from ivr.portal.services import default_store_path, portal_engine

        store = SqliteLockoutStore(default_store_path(load_portal(portal)))
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


def serve(
    dialplan: Path,
    portal: Path | None,
    config: ServeConfig,
    *,
    stats: Path | None = None,
    ready: threading.Event | None = None,
) -> SipServer:
    """Serve until SIGINT/SIGTERM (or ``ready`` callers stop it); returns the server."""
    engine = serving_engine(dialplan, portal)
    server = SipServer(engine, config, prompt_audio(engine))
    # what start-up built (dialplan, catalog, audio, libraries) lives as long as the
    # process: out of the collector's way, a full collection no longer walks it while
    # calls are bridged (measured: ~16 ms -> ~0.1 ms per full collection)
    gc.collect()
    gc.freeze()
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    dead = None
    try:
        server.start()
        host, port = server.address
        log.warning(
            "serving %s on sip:%s@%s:%d (at most %d calls at once)",
            dialplan,
            config.user,
            host,
            port,
            server.max_calls,
        )
        if ready is not None:
            ready.set()
        while not done.wait(0.5):
            dead = server.dead_thread()
            if dead is not None:
                break
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
