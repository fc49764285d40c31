"""Several portal nodes behind Kamailio's dispatcher, as real processes on 127.0.0.1.

``Dispatcher`` is Kamailio with ``examples/kamailio/dispatcher.cfg``, its node list
written into its run directory (``dispatcher_list``), with the probe interval,
thresholds and transaction timeout given as defines; ``states()`` asks it (JSON-RPC
``dispatcher.list``) how it sees each node: ``"AP"`` active, ``"IP"`` inactive,
``"TP"`` trying (the second letter: probed).

``PortalNode`` is one ``ivr serve --no-register`` process taking its calls from that
proxy; ``calls()`` are the Call-IDs it took (from its own log, so they survive a
``kill -9``), ``kill()`` sends SIGKILL, ``terminate()`` SIGTERM (with ``--drain``: it
stops taking calls and exits when its calls are over), ``start()`` again restarts it on
the same port. ``options_via`` asks a node through the proxy whether it answers.

Nothing here is a test; see ``test_dispatcher.py`` and ``bench/sip_load.py --workers``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.sip.peers import (
    HOST,
    ROOT,
    Kamailio,
    PeerProcess,
    eventually,
    free_udp_port,
    kill_group,
    sip_options,
    spawn,
)

DISPATCHER_CFG = ROOT / "examples" / "kamailio" / "dispatcher.cfg"
PORTAL_DIALPLAN = ROOT / "dialplans" / "anywhere_portal.yaml"
_BESIDE = Path(sys.executable).parent / "ivr"
IVR = str(_BESIDE) if _BESIDE.exists() else shutil.which("ivr")

#: "INFO ivr.sip.server: call <Call-ID>: incoming (pcma, rfc4733)" — one line per call taken
INCOMING = re.compile(r"\bcall (\S+): incoming \(")


def dispatcher_list(ports: Sequence[int], *, set_id: int = 1) -> str:
    """A dispatcher list naming a node on each of ``ports`` of 127.0.0.1, as the shipped
    examples/kamailio/dispatcher.list does: flag 8 (probed) and a ``duid`` each.
    (``ivr serve --workers`` writes bare destinations; tests/sip/test_workers.py and
    bench/workers_load.py use that one.)"""
    return "".join(
        f"{set_id} sip:{HOST}:{port} 8 0 duid=node{n}\n" for n, port in enumerate(ports, 1)
    )


class Dispatcher(Kamailio):
    """Kamailio dispatching ``sip:portal@`` over nodes on ``nodes`` (ports of
    127.0.0.1): probes every ``ping_interval`` s; ``probing_threshold`` failed probes
    make a node inactive, ``inactive_threshold`` answered ones active again;
    ``fr_timer`` ms is how long any request waits for a first answer."""

    name = "kamailio (dispatcher)"

    def __init__(
        self,
        nodes: Sequence[int],
        *,
        ping_interval: int = 1,
        probing_threshold: int = 1,
        inactive_threshold: int = 1,
        fr_timer: int = 1000,
        port: int | None = None,
        rpc_port: int | None = None,
    ) -> None:
        super().__init__(port, rpc_port=rpc_port, config=DISPATCHER_CFG)
        self.nodes = list(nodes)
        self.defines = {
            "DS_PING_INTERVAL": ping_interval,
            "DS_PROBING_THRESHOLD": probing_threshold,
            "DS_INACTIVE_THRESHOLD": inactive_threshold,
            "FR_TIMER": fr_timer,
        }

    @property
    def list_path(self) -> Path:
        return self.workdir / "dispatcher.list"

    def command(self) -> list[str]:
        cmd = super().command()
        defines = ["-A", f'DISPATCHER_LIST="{self.list_path}"']
        for name, value in self.defines.items():
            defines += ["-A", f"{name}={value}"]
        return cmd[:3] + defines + cmd[3:]  # after "kamailio -f CFG"

    def start(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kamailio-")
        self.list_path.write_text(dispatcher_list(self.nodes))
        super().start()

    def states(self) -> dict[int, str]:
        """Each node's port and its state as the dispatcher sees it ("AP", "IP", "TP" ...)."""
        result = self.rpc("dispatcher.list")
        out: dict[int, str] = {}
        for record in result.get("RECORDS", []):
            for target in record["SET"]["TARGETS"]:
                dest = target["DEST"]
                out[int(str(dest["URI"]).rsplit(":", 1)[1])] = str(dest["FLAGS"])
        return out

    def active(self, port: int) -> bool:
        return self.states().get(port, "").startswith("A")

    def inactive(self, port: int) -> bool:
        return self.states().get(port, "").startswith("I")


def options_via(proxy_port: int, node_port: int, *, timeout: float = 0.5) -> str | None:
    """An OPTIONS for the node sent through the proxy (a node takes SIP only from its
    proxy): the answer's status line, or None."""
    return sip_options(node_port, via=proxy_port, timeout=timeout)


class IvrServe(PeerProcess):
    """An ``ivr serve`` process of a test: its log and ``--stats`` file in its run
    directory, signalled by its PID only; subclasses give ``command()``."""

    name = "ivr serve"

    @property
    def log_path(self) -> Path:
        return self.workdir / "ivr.log"

    @property
    def stats_path(self) -> Path:
        return self.workdir / "stats.json"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (FileNotFoundError, RuntimeError):
            return ""

    def lines(self, pattern: str = "") -> list[str]:
        """The log's lines that contain ``pattern``."""
        return [line for line in self.log().splitlines() if pattern in line]

    def describe(self) -> str:
        return f"$ {' '.join(self.command())}\n{self.log()[-4000:]}"

    def calls(self) -> list[str]:
        """Call-IDs of every call it took, in all its runs (from its log)."""
        return INCOMING.findall(self.log())

    def stats(self) -> dict[str, Any]:
        """The counters its last run wrote at exit (``--stats``)."""
        data: dict[str, Any] = json.loads(self.stats_path.read_text())
        return data

    def signal(self, signum: int) -> None:
        """``kill -SIGNUM PID``."""
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int | None:
        """Its exit status once it has exited within ``timeout`` seconds, else None."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._proc is not None:
            kill_group(self._proc, grace=5.0)
            self._proc = None


class PortalNode(IvrServe):
    """``ivr serve DIALPLAN --portal CONFIG --no-register`` on 127.0.0.1:``port``,
    taking its calls from the proxy on ``proxy_port``; ``drain``: seconds a SIGTERM
    waits for running calls (``--drain``). Its log (INFO) and ``--stats`` file are in
    its run directory and kept across restarts."""

    def __init__(
        self,
        portal_config: Path,
        proxy_port: int,
        *,
        port: int | None = None,
        drain: float | None = 30.0,
        rtp_ports: tuple[int, int] = (20000, 29999),
        extra: Sequence[str] = (),
        ready_timeout: float = 30.0,
    ) -> None:
        if IVR is None:
            raise RuntimeError("no ivr command beside this Python")
        self.portal_config = portal_config
        self.proxy_port = proxy_port
        self.port = port if port is not None else free_udp_port()
        self.drain = drain
        self.rtp_ports = rtp_ports
        self.extra = list(extra)
        self.ready_timeout = ready_timeout

    def command(self) -> list[str]:
        assert IVR is not None
        cmd = [IVR, "--log-level", "info", "serve", str(PORTAL_DIALPLAN)]
        cmd += ["--portal", str(self.portal_config)]
        cmd += ["--registrar", f"{HOST}:{self.proxy_port}", "--bind", HOST]
        cmd += ["--port", str(self.port), "--no-register"]
        cmd += ["--rtp-ports", f"{self.rtp_ports[0]}-{self.rtp_ports[1]}"]
        cmd += ["--stats", str(self.stats_path)]
        if self.drain is not None:
            cmd += ["--drain", f"{self.drain:g}"]
        return cmd + self.extra

    def answering(self) -> bool:
        """It answers OPTIONS relayed by its proxy with 200."""
        status = options_via(self.proxy_port, self.port, timeout=0.3)
        return status is not None and " 200 " in f"{status} "

    def start(self) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ivr-node-")
        if self.running:
            raise RuntimeError(f"{self.name} on port {self.port} is already running")
        self._proc = spawn(self.command(), self.workdir, self.log_path)
        if not eventually(lambda: self._answering_or_gone(), self.ready_timeout, interval=0.1):
            raise TimeoutError(
                f"{self.name} did not answer OPTIONS on {HOST}:{self.port} within "
                f"{self.ready_timeout} s:\n{self.describe()}"
            )
        self._check_alive()

    def _answering_or_gone(self) -> bool:
        return self._proc is None or self._proc.poll() is not None or self.answering()

    def kill(self) -> None:
        """SIGKILL to the node's process (``kill -9 PID``), and reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.wait(10)

    def terminate(self) -> None:
        """SIGTERM to the node's process: with ``--drain`` it finishes its calls first."""
        os.kill(self.pid, signal.SIGTERM)
