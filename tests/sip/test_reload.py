"""SIGHUP reloads ``ivr serve``: the dialplan, the portal configuration and its files
(the directory with the PIN hashes) are loaded and checked again; new calls get the new
configuration while a call running across the reload finishes on its own; a
configuration that does not load is one clear error line, and the old one keeps
serving. A real process, SIPp callers; the engine's hand-over in process as well."""

from __future__ import annotations

import gc
import re
import signal
import subprocess
import weakref
from pathlib import Path

import pytest

from ivr.sip.serve import _Lifecycle
from tests.sip.callers import Step
from tests.sip.conftest import start_server
from tests.sip.peers import eventually
from tests.sip.test_node import (
    IVR,
    PORTAL_DIALPLAN,
    Callers,
    ServeProcess,
    callers,
    needs_sipp,
    options,
)

__all__ = ["callers"]  # the fixture
pytestmark = [pytest.mark.timeout(120)]

NEW_PIN = "8642"  # Erika's new PIN (the demo's is 4711)


#: a caller who pulls her call with this PIN (REFER only after a correct PIN)
def pulls_with(pin: str, wait_ms: int = 500) -> list[Step]:
    return [("pause", wait_ms), ("keys", f"{pin}#"), ("pause", 500), ("keys", "*11")]


def keys_only(pin: str) -> list[Step]:
    """A caller who keys a PIN and hangs up a while later."""
    return [("pause", 500), ("keys", f"{pin}#"), ("pause", 1500), ("hangup",)]


def set_pin(directory: Path, employee: str, pin: str) -> None:
    """``ivr portal set-pin DIRECTORY EMPLOYEE``, the PIN on standard input."""
    assert IVR is not None
    done = subprocess.run(
        [IVR, "portal", "set-pin", str(directory), employee],
        input=f"{pin}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def lines_of(node: ServeProcess, call_id: str) -> str:
    return "\n".join(node.lines(f"call {call_id}:"))


@needs_sipp
def test_a_new_pin_works_on_the_next_call_while_a_running_call_finishes(
    portal_dir: Path, callers: Callers
) -> None:
    with ServeProcess(portal_dir / "portal.yaml") as node:
        callers.port = node.port
        # a call answered before the reload, keying the PIN it knows after it
        running, _ = callers.start(pulls_with("4711", wait_ms=5000), "refer")
        assert eventually(lambda: node.calls(), 15), node.describe()
        set_pin(portal_dir / "directory.yaml", "erika", NEW_PIN)
        node.signal(signal.SIGHUP)
        assert eventually(lambda: node.lines("reloaded "), 20), node.describe()

        new, _ = callers.start(pulls_with(NEW_PIN), "refer")
        old, _ = callers.start(keys_only("4711"), "bye")
        for sipp in (new, old, running):
            result = sipp.wait()
            assert result.ok, result.describe() + node.describe()
        (running_id,) = callers.call_ids(running)
        (new_id,) = callers.call_ids(new)
        (old_id,) = callers.call_ids(old)
        assert "PIN accepted" in lines_of(node, new_id), node.describe()
        assert "wrong PIN for erika" in lines_of(node, old_id), node.describe()
        # the running call took the PIN of its configuration, after the reload
        log = node.log()
        accepted = log.index(f"call {running_id}: PIN accepted")
        assert log.index("reloaded ") < accepted, log
        assert "REFER" in lines_of(node, running_id)
        assert not node.lines("ERROR") and "Traceback" not in log, log
        node.signal(signal.SIGTERM)
        assert node.wait(20) == 0, node.describe()


def broken_files(portal_dir: Path, dialplan: Path) -> list[tuple[Path, str]]:
    """Each file of the configuration and a broken version of it."""
    portal = (portal_dir / "portal.yaml").read_text()
    directory = (portal_dir / "directory.yaml").read_text()
    text = dialplan.read_text()
    erika = directory.index("pin_hash:", directory.index("erika:"))
    plain = directory[:erika] + 'pin_hash: "4711"  # ' + directory[erika + len("pin_hash: ") :]
    return [
        (portal_dir / "directory.yaml", "employees:\n  erika: [unclosed\n"),
        (portal_dir / "directory.yaml", plain),  # a PIN, not its hash
        (portal_dir / "portal.yaml", portal.replace("lockout_failures: 5", "lockout_failures: -5")),
        (portal_dir / "portal.yaml", portal.replace("directory.yaml", "missing.yaml")),
        (dialplan, text.replace("initial: identify", "initial: nowhere")),
        (dialplan, re.sub(r"(?m)^prompts: .*$", "prompts: /nonexistent/de", text)),
        (dialplan, text + "\n  - this is: [not yaml\n"),
    ]


@needs_sipp
def test_a_broken_configuration_is_one_error_line_and_the_old_one_serves(
    portal_dir: Path, callers: Callers, tmp_path: Path
) -> None:
    dialplan = tmp_path / "anywhere_portal.yaml"
    prompts = PORTAL_DIALPLAN.parent.parent / "prompts" / "de"
    dialplan.write_text(
        PORTAL_DIALPLAN.read_text().replace("prompts: ../prompts/de", f"prompts: {prompts}")
    )
    with ServeProcess(portal_dir / "portal.yaml", dialplan=dialplan) as node:
        callers.port = node.port
        for path, broken in broken_files(portal_dir, dialplan):
            good = path.read_text()
            path.write_text(broken)
            before = len(node.log().splitlines())
            node.signal(signal.SIGHUP)
            failed = eventually(lambda: node.lines("reload failed"), 20)
            assert failed, node.describe()
            new = node.log().splitlines()[before:]
            errors = [line for line in new if line.startswith(("ERROR", "CRITICAL"))]
            assert len(errors) == 1, new
            assert "still serving the previous configuration" in errors[0]
            assert "Traceback" not in node.log()
            path.write_text(good)
            # the next failure is told apart from this one
            node.log_path.write_text("")
        assert node.running and options(node.port).startswith("SIP/2.0 200 ")
        # the old configuration (Erika's PIN 4711) serves
        sipp, _ = callers.start(pulls_with("4711"), "refer")
        result = sipp.wait()
        assert result.ok, result.describe() + node.describe()
        assert node.lines("PIN accepted") and not node.lines("reloaded ")


def test_what_a_reload_replaced_is_collected_once_its_calls_are_over(
    portal_dir: Path,
) -> None:
    """serve() freezes what start-up built (gc.freeze); after a reload the replaced
    engine must not stay in the frozen generation for ever."""
    server = start_server(portal_dir)
    try:
        old = weakref.ref(server.driver.engine)
        gc.collect()
        gc.freeze()
        try:
            lifecycle = _Lifecycle(server, PORTAL_DIALPLAN, portal_dir / "portal.yaml", 0)
            lifecycle.signal(signal.SIGHUP)
            lifecycle.tick()  # at once, as the serving loop does: maybe before the swap

            def replaced() -> bool:
                lifecycle.tick()
                return old() is None

            assert eventually(replaced, 10), gc.get_referrers(old())
            assert server.driver.engine is not None
        finally:
            gc.unfreeze()
    finally:
        server.stop()
