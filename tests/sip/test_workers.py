"""``ivr serve --workers N``: N serving processes on PORT..PORT+N-1 and the Kamailio
dispatcher list naming them; a worker killed with ``kill -9`` is started again; SIGHUP
and SIGTERM reach every worker, and after SIGTERM all exit and the launcher exits 0.
Real processes (the launcher in its own session, a worker signalled by its PID)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.sip.callers import Step
from tests.sip.peers import HOST, eventually, free_udp_ports
from tests.sip.test_node import (
    Callers,
    ServeProcess,
    answers_200,
    callers,
    needs_sipp,
)

__all__ = ["callers"]  # the fixture
pytestmark = [needs_sipp, pytest.mark.timeout(120)]

#: the launcher's "worker on port 5080 started (pid 1234)"
STARTED = re.compile(r"worker on port (\d+) started \(pid (\d+)\)")


def started(launcher: ServeProcess) -> dict[int, list[int]]:
    """Port -> the PIDs of the workers started on it, in order."""
    out: dict[int, list[int]] = {}
    for port, pid in STARTED.findall(launcher.log()):
        out.setdefault(int(port), []).append(int(pid))
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_workers_serve_restart_and_stop_together(
    portal_dir: Path, tmp_path: Path, callers: Callers
) -> None:
    base = free_udp_ports(2)
    ports = [base, base + 1]
    listing = tmp_path / "dispatcher.list"
    extra = ["--workers", "2", "--dispatcher-list", str(listing), "--drain", "10"]
    launcher = ServeProcess(portal_dir / "portal.yaml", port=base, extra=extra, answering=ports)
    with launcher:
        # the list Kamailio's dispatcher loads: set 1, both workers
        entries = [line for line in listing.read_text().splitlines() if not line.startswith("#")]
        assert entries == [f"1 sip:{HOST}:{port}" for port in ports], listing.read_text()
        first = started(launcher)
        assert sorted(first) == ports and all(len(p) == 1 for p in first.values()), launcher.log()
        pids = {port: first[port][0] for port in ports}
        assert launcher.pid not in pids.values()
        assert all(alive(pid) for pid in pids.values())
        # each worker names itself in its lines of the shared log
        assert eventually(
            lambda: all(launcher.lines(f"[{port}] ivr.sip.serve: serving") for port in ports), 10
        ), launcher.log()

        # kill -9 the second worker: it is started again on its port
        os.kill(pids[base + 1], signal.SIGKILL)
        assert eventually(lambda: len(started(launcher).get(base + 1, [])) == 2, 20), (
            launcher.describe()
        )
        assert launcher.lines(f"worker on port {base + 1} (pid {pids[base + 1]}) died")
        again = started(launcher)[base + 1][1]
        assert again != pids[base + 1]
        assert eventually(lambda: answers_200(base + 1), 30), launcher.describe()
        assert answers_200(base) and started(launcher)[base] == [pids[base]]

        # both take calls (the restarted one too)
        steps: list[Step] = [("pause", 300), ("keys", "4711#"), ("pause", 500), ("hangup",)]
        runs = [callers.start(steps, "bye", port=port)[0] for port in ports]
        for run in runs:
            result = run.wait()
            assert result.ok, result.describe() + launcher.describe()
        for port in ports:
            assert [x for x in launcher.lines(f"[{port}] ivr.portal.hooks:") if "PIN accepted" in x]

        # SIGHUP reaches each worker: each reloads
        launcher.signal(signal.SIGHUP)
        assert eventually(
            lambda: all(launcher.lines(f"[{port}] ivr.sip.serve: reloaded ") for port in ports), 30
        ), launcher.log()

        # SIGTERM: each drains (nothing running) and exits; then the launcher, with 0
        launcher.signal(signal.SIGTERM)
        assert launcher.wait(40) == 0, launcher.describe()
        assert not alive(pids[base]) and not alive(again)
        assert not answers_200(base) and not answers_200(base + 1)
        log = launcher.log()
        assert all(f"[{port}] ivr.sip.serve: drained" in log for port in ports), log
        assert "all 2 workers stopped" in log and "not cleanly" not in log, log
        assert "Traceback" not in log, log


# --- the supervisor with stand-in workers (fast) ---------------------------------------

#: a stand-in worker: SIGTERM ends it with 0 (``ignore``: SIGTERM is ignored)
_CHILD = """
import os, pathlib, signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pathlib.Path(sys.argv[2], f"ready-{os.getpid()}").touch()
time.sleep(600)
"""

#: the launcher: a Supervisor of two stand-ins (ports 1 and 2), its options from argv
_LAUNCHER = """
import logging, sys
from ivr.sip import workers
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
child, mode, ready = sys.argv[1:4]
backoff, grace = float(sys.argv[4]), float(sys.argv[5])
workers.STOP_GRACE = grace
command = [sys.executable, child, mode, ready]
supervisor = workers.Supervisor(lambda port: command, [1, 2], drain=0.5)
for worker in supervisor.workers:
    worker.backoff = backoff
sys.exit(supervisor.run())
"""


class Launcher(ServeProcess):
    """A :class:`~ivr.sip.workers.Supervisor` of stand-in workers, as a process."""

    name = "supervisor"

    def __init__(self, workdir: Path, mode: str, *, backoff: float, grace: float) -> None:
        super().__init__(workdir, answering=())
        (workdir / "child.py").write_text(_CHILD)
        (workdir / "launcher.py").write_text(_LAUNCHER)
        self.ready = workdir / "ready"
        self.ready.mkdir()
        child = str(workdir / "child.py")
        self.args = [child, mode, str(self.ready), f"{backoff:g}", f"{grace:g}"]
        self.script = workdir / "launcher.py"

    def command(self) -> list[str]:
        import sys

        return [sys.executable, str(self.script), *self.args]

    def workers(self, count: int = 2) -> dict[int, list[int]]:
        """Port -> PIDs, once ``count`` workers have started and set their SIGTERM."""

        def ready() -> bool:
            pids = [pid for pids in started(self).values() for pid in pids]
            return len(pids) >= count and all(
                (self.ready / f"ready-{pid}").exists() for pid in pids
            )

        assert eventually(ready, 20), self.describe()
        return started(self)


def test_a_worker_that_died_just_before_the_stop_is_not_a_failed_stop(tmp_path: Path) -> None:
    with Launcher(tmp_path, "exit", backoff=60, grace=15) as launcher:
        pids = launcher.workers()
        os.kill(pids[1][0], signal.SIGKILL)
        assert eventually(lambda: launcher.lines("died (signal SIGKILL)"), 10), launcher.log()
        launcher.signal(signal.SIGTERM)  # while it waits to be started again
        assert launcher.wait(20) == 0, launcher.describe()
        assert started(launcher) == pids  # not started again once stopping
        assert not alive(pids[2][0])
        assert "all 2 workers stopped\n" in launcher.log(), launcher.log()


def test_workers_that_do_not_stop_are_killed_and_the_stop_failed(tmp_path: Path) -> None:
    with Launcher(tmp_path, "ignore", backoff=1, grace=0.5) as launcher:
        pids = launcher.workers()
        launcher.signal(signal.SIGTERM)
        assert launcher.wait(20) == 1, launcher.describe()
        assert not any(alive(p[0]) for p in pids.values())
        assert len(launcher.lines("did not stop in time; killing it")) == 2, launcher.log()
        assert "(2 not cleanly)" in launcher.log()


def test_workers_stop_when_the_launcher_is_killed(tmp_path: Path) -> None:
    with Launcher(tmp_path, "exit", backoff=1, grace=15) as launcher:
        pids = launcher.workers()
        launcher.signal(signal.SIGKILL)
        assert launcher.wait(10) == -signal.SIGKILL
        # each got SIGTERM from the kernel (PR_SET_PDEATHSIG) and ended
        assert eventually(lambda: not any(alive(p[0]) for p in pids.values()), 10)


def test_a_worker_runs_the_launchers_serve_options_on_its_own_port(portal_dir: Path) -> None:
    """What `ivr serve --workers` gives each worker (``_serve_arguments``) parses back to
    the launcher's options: all of them, but its own --port and --stats, no --workers
    and no dispatcher list, and the password not on the command line."""
    from ivr.cli import _serve_arguments, main, serve
    from tests.sip.nodes import PORTAL_DIALPLAN

    given = [str(PORTAL_DIALPLAN), "--portal", str(portal_dir / "portal.yaml")]
    given += ["--registrar", "127.0.0.1:5060", "--password", "s3cret", "--port", "5080"]
    given += ["--trust", "10.0.0.0/8", "--trust", "192.168.0.0/16", "--rtp-latch-any"]
    given += ["--no-register", "--inband", "off", "--identity", "from", "--drain", "7.5"]
    given += ["--domain", "example.org", "--rtp-ports", "30000-30999", "--max-calls", "9"]
    given += ["--workers", "2", "--dispatcher-list", "ds.list", "--dispatcher-set", "4"]
    given += ["--stats", "out/stats.json"]
    with main.make_context("ivr", ["--log-level", "info", "serve"]) as parent:
        launcher = serve.make_context("serve", list(given), parent=parent)
        argv = _serve_arguments(launcher, 5081)
    assert "s3cret" not in argv
    assert argv[:3] == ["--log-level", "info", "serve"]
    with main.make_context("ivr", ["--log-level", "info", "serve"]) as parent:
        worker = serve.make_context("serve", argv[3:], parent=parent)
    own = {"port", "stats", "workers", "dispatcher_list", "dispatcher_set", "password"}
    assert {k: v for k, v in worker.params.items() if k not in own} == {
        k: v for k, v in launcher.params.items() if k not in own
    }
    assert worker.params["port"] == 5081 and worker.params["workers"] == 0
    assert worker.params["stats"] == str(Path("out/stats.5081.json"))
    assert worker.params["dispatcher_list"] is None and worker.params["password"] == ""
    assert worker.params["register"] is False and worker.params["rtp_latch_any"] is True
    assert worker.params["trust"] == ("10.0.0.0/8", "192.168.0.0/16")
