"""Two portal nodes sharing their lockouts in PostgreSQL, with real SIPp callers.

Each node is an in-process SIP server (no registration; SIPp calls it directly) with
its own engine built the way ``ivr serve`` builds it (``serving_engine``), so each has
its own :class:`PostgresLockoutStore` — named by the portal file's ``lockout_store`` or
by the ``IVR_LOCKOUT_STORE`` environment variable — on one database. What a caller got
is read from the node: the dialogue outcomes it delivered (the prompts played, how the
call ended), its stats, and the RTP that reached the caller's audio port.

The last test stops PostgreSQL under a running node (a cluster of its own, not the
session's): PIN entry is refused with the "temporarily unavailable" prompt and the call
ends — no PIN is checked that cannot be counted — with one error line per call and no
traceback; started again, the same node admits the right PIN.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.audio.library import PromptAudio
from ivr.commands import PlayPrompt
from ivr.portal.lockout import LockState
from ivr.portal.lockout_pg import PostgresLockoutStore, init_schema
from ivr.portal.services import LOCKOUT_STORE_ENV, PortalServices
from ivr.sip.driver import Outcome
from ivr.sip.serve import prompt_audio, serving_engine
from ivr.sip.server import ServeConfig, SipServer
from tests.conftest import PORTAL_DIALPLAN
from tests.postgres import PostgresCluster, find_bin_dir
from tests.sip.callers import RtpSink, Step, loudness, scenario
from tests.sip.conftest import ERIKA
from tests.sip.peers import SippProcess, SippResult, eventually, sip_options, sipp_popen
from tests.sip.test_e2e import needs_kamailio_and_sipp

pytestmark = [
    needs_kamailio_and_sipp,
    pytest.mark.skipif(find_bin_dir() is None, reason="needs PostgreSQL's initdb"),
    pytest.mark.timeout(120),
]

#: the demo directory's id of the employee behind ERIKA's number, and her PIN
EMPLOYEE = "erika"
PIN = "4711"
WRONG = "1111"
#: a password in the store's URL (trust auth ignores it): never in a log line
SECRET = "s3cret-pw"

WRONG_THEN_HANG_UP: list[Step] = [
    ("pause", 300),
    ("keys", WRONG + "#"),
    ("pause", 1500),
    ("hangup",),
]
_AUDIO: dict[str, PromptAudio] = {}


@dataclass
class Node:
    """One portal node: its server and every outcome its dialogues delivered."""

    server: SipServer
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)

    @property
    def target(self) -> str:
        host, port = self.server.address
        return f"{host}:{port}"

    @property
    def services(self) -> PortalServices:
        services = self.server.driver.engine.context
        assert isinstance(services, PortalServices)
        return services

    def calls(self) -> list[str]:
        """The Call-IDs of the calls the node's dialogues saw, first seen first."""
        return list(dict.fromkeys(key for key, _ in list(self.outcomes)))

    def played(self, call_id: str) -> list[PlayPrompt]:
        return [
            command
            for key, outcome in list(self.outcomes)
            if key == call_id
            for command in outcome.commands
            if isinstance(command, PlayPrompt)
        ]

    def prompts(self, call_id: str) -> list[str]:
        return [command.prompt for command in self.played(call_id)]

    def packets_of(self, call_id: str, prompt: str) -> int:
        """How many 20 ms packets the node had for ``prompt`` in this call."""
        for key, outcome in list(self.outcomes):
            for command in outcome.commands:
                if key == call_id and isinstance(command, PlayPrompt) and command.prompt == prompt:
                    return len(outcome.audio[command.playback])
        raise AssertionError(f"{prompt} was not played in call {call_id}")

    def ending(self, call_id: str) -> str | None:
        """How the dialogue of ``call_id`` ended (its outcome), None while it runs."""
        for key, outcome in list(self.outcomes):
            if key == call_id and outcome.ended:
                return outcome.outcome
        return None


def start_node(config: Path) -> Node:
    """A started node serving the portal of ``config`` as ``ivr serve --no-register``
    would: the engine and its lockout store from ``serving_engine``."""
    engine = serving_engine(PORTAL_DIALPLAN, config)
    audio = _AUDIO.get("de")
    if audio is None:
        audio = _AUDIO["de"] = prompt_audio(engine)
    server = SipServer(
        engine,
        ServeConfig(registrar=("127.0.0.1", 9), trust=("127.0.0.1/32",), port=0, register=False),
        audio,
    )
    node = Node(server)
    deliver = server.driver.deliver

    def recording(key: str, outcome: Outcome) -> None:
        node.outcomes.append((key, outcome))
        deliver(key, outcome)

    server.driver.deliver = recording
    server.start()
    return node


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """The nodes a test starts (``nodes.append``), stopped at its end."""
    started: list[Node] = []
    yield started
    for node in started:
        node.server.stop()


@pytest.fixture(autouse=True)
def no_store_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCKOUT_STORE_ENV, raising=False)


@pytest.fixture
def sink() -> Iterator[RtpSink]:
    """The callers' audio port (calls that check what they heard take their own)."""
    audio = RtpSink()
    yield audio
    audio.close()


def portal_config(portal_dir: Path, name: str, **changes: Any) -> Path:
    """A copy of the portal's ``portal.yaml`` with ``changes`` (``pin_policy`` merged)."""
    config = yaml.safe_load((portal_dir / "portal.yaml").read_text())
    policy = {**config.get("pin_policy", {}), **changes.pop("pin_policy", {})}
    config.update(changes, pin_policy=policy)
    path = portal_dir / name
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def callers(
    node: Node,
    work: Path,
    steps: list[Step],
    expect: str,
    sink: RtpSink,
    *,
    calls: int = 1,
    name: str,
) -> SippProcess:
    """``calls`` SIPp callers with ERIKA's number, all at once, straight to ``node``."""
    xml = work / f"{name}.xml"
    xml.write_text(scenario(steps, expect))
    keys = {"caller": ERIKA, "sink_port": str(sink.port), "codec_pt": "8"}
    return sipp_popen(
        xml,
        node.target,
        service="portal",
        keys=keys,
        calls=calls,
        limit=calls,
        rate=50,
        timeout=60,
    )


def finished(sipp: SippProcess, calls: int = 1) -> SippResult:
    result = sipp.wait()
    assert result.ok and result.successful == calls, result.describe()
    return result


def erika(store: PostgresLockoutStore) -> LockState | None:
    return next((s for s in store.states() if s.employee == EMPLOYEE), None)


def heard(sink: RtpSink) -> list[bytes]:
    """The PCMA payloads the caller's audio port got so far (after the portal's BYE:
    everything)."""
    time.sleep(0.2)  # the last packets are on their way
    return [payload for pt, payload in sink.packets() if pt == 8]


# --- the lockout is shared -------------------------------------------------------------
def test_five_wrong_pins_on_node_a_lock_the_employee_on_node_b(
    postgres_url: str,
    portal_dir: Path,
    tmp_path: Path,
    nodes: list[Node],
    sink: RtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # node A names the database in its portal file, node B in the environment (which
    # comes first: its file names an SQLite file that must stay unused)
    nodes.append(a := start_node(portal_config(portal_dir, "a.yaml", lockout_store=postgres_url)))
    monkeypatch.setenv(LOCKOUT_STORE_ENV, postgres_url)
    unused = portal_dir / "unused.sqlite"
    nodes.append(b := start_node(portal_config(portal_dir, "b.yaml", lockout_store=unused.name)))
    for node in (a, b):
        store = node.services.lockouts
        assert isinstance(store, PostgresLockoutStore) and store.dsn == postgres_url
    observer = PostgresLockoutStore(postgres_url)

    # four callers at once key a wrong PIN on A and hang up; a fifth's wrong PIN locks
    with callers(a, tmp_path, WRONG_THEN_HANG_UP, "bye", sink, calls=4, name="four") as four:
        finished(four, 4)
    assert eventually(lambda: (s := erika(observer)) and s.failures == 4, 10), erika(observer)
    assert observer.locked_until(EMPLOYEE) == 0.0
    fifth_call: list[Step] = [("pause", 300), ("keys", WRONG + "#")]
    with callers(a, tmp_path, fifth_call, "bye", sink, name="fifth") as fifth:
        assert eventually(lambda: observer.locked_until(EMPLOYEE) > time.time(), 15)
        # the sixth call reaches node B, while A still tells the fifth caller
        b_sink = RtpSink()
        try:
            with callers(b, tmp_path, [], "bye", b_sink, name="sixth") as sixth:
                finished(sixth)
            b_audio = heard(b_sink)
        finally:
            b_sink.close()
        finished(fifth)

    on_a = a.calls()
    assert len(on_a) == 5 and a.server.stats.calls == 5
    assert [a.prompts(c).count("portal_pin_wrong") for c in on_a].count(1) == 4
    [locking] = [c for c in on_a if "portal_locked" in a.prompts(c)]
    assert a.prompts(locking)[-1] == "portal_locked" and a.ending(locking) == "refused"

    # B: not asked for a PIN, told it is locked, hung up; all of the prompt arrived
    [sixth_call] = b.calls()
    assert b.prompts(sixth_call) == ["portal_locked"]
    assert b.ending(sixth_call) == "refused"
    assert b.server.stats.ended == {"refused": 1} and b.server.stats.keys == 0
    assert len(b_audio) >= b.packets_of(sixth_call, "portal_locked")
    assert loudness(b_audio, 8) > 500

    state = erika(observer)
    assert state is not None and state.lockouts == 1 and state.failures == 0
    assert len(state.recent) == 5
    assert {re.sub(r".*\(call (.*)\)$", r"\1", f.source) for f in state.recent} == set(on_a)
    assert not unused.exists()


def test_twenty_concurrent_wrong_pins_over_two_nodes_count_twenty(
    postgres_url: str, portal_dir: Path, tmp_path: Path, nodes: list[Node], sink: RtpSink
) -> None:
    # no lock may cut in: 100 failures lock (the most a portal allows)
    config = portal_config(
        portal_dir, "shared.yaml", lockout_store=postgres_url, pin_policy={"lockout_failures": 100}
    )
    nodes.append(a := start_node(config))
    nodes.append(b := start_node(config))
    observer = PostgresLockoutStore(postgres_url)
    with (
        callers(a, tmp_path, WRONG_THEN_HANG_UP, "bye", sink, calls=10, name="a") as on_a,
        callers(b, tmp_path, WRONG_THEN_HANG_UP, "bye", sink, calls=10, name="b") as on_b,
    ):
        finished(on_a, 10)
        finished(on_b, 10)
    assert eventually(lambda: (s := erika(observer)) and s.failures >= 20, 10), erika(observer)
    assert (a.server.stats.calls, b.server.stats.calls) == (10, 10)
    for node in (a, b):  # every caller's PIN was checked, and found wrong
        assert all(node.prompts(c).count("portal_pin_wrong") == 1 for c in node.calls())
    time.sleep(0.5)  # nothing more is on its way
    state = erika(observer)
    assert state is not None
    assert (state.failures, state.lockouts, state.locked_until) == (20, 0, 0.0)
    counted = {re.sub(r".*\(call (.*)\)$", r"\1", f.source) for f in state.recent}
    assert counted == set(a.calls()) | set(b.calls()) and len(counted) == 20


# --- PostgreSQL goes away, and comes back ------------------------------------------------
@pytest.fixture(scope="module")
def stoppable() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: the test stops and starts it."""
    with PostgresCluster() as cluster:
        yield cluster


def test_postgresql_stopped_refuses_pin_entry_and_started_again_serves(
    stoppable: PostgresCluster,
    portal_dir: Path,
    tmp_path: Path,
    nodes: list[Node],
    sink: RtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = stoppable.url(stoppable.new_database())
    init_schema(plain)
    url = plain.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)
    nodes.append(node := start_node(portal_config(portal_dir, "pg.yaml", lockout_store=url)))
    store = node.services.lockouts
    assert isinstance(store, PostgresLockoutStore)
    observer = PostgresLockoutStore(plain)
    threads = threading.active_count()
    caplog.set_level(logging.INFO)

    # a caller is in the greeting (admitted, the store answered) when PostgreSQL stops;
    # then keys the right PIN
    mid_sink = RtpSink()
    try:
        mid_steps: list[Step] = [("pause", 3500), ("keys", PIN + "#")]
        with callers(node, tmp_path, mid_steps, "bye", mid_sink, name="mid") as mid:
            assert eventually(
                lambda: node.calls() and "portal_welcome" in node.prompts(node.calls()[0]), 10
            )
            [mid_call] = node.calls()
            stoppable.stop()
            # three callers more while it is down, each keying the right PIN
            new_steps: list[Step] = [("pause", 300), ("keys", PIN + "#")]
            with callers(node, tmp_path, new_steps, "bye", sink, calls=3, name="down") as more:
                finished(more, 3)
            finished(mid)
        mid_audio = heard(mid_sink)
    finally:
        mid_sink.close()
    down = [c for c in node.calls() if c != mid_call]
    assert len(down) == 3

    # the caller in the greeting was asked for the PIN, which was never checked
    assert "portal_enter_pin" in node.prompts(mid_call)
    assert node.prompts(mid_call)[-1] == "portal_pin_unavailable"
    assert len(mid_audio) >= node.packets_of(mid_call, "portal_pin_unavailable")
    # the new callers were not asked for one
    for call in down:
        assert node.prompts(call) == ["portal_pin_unavailable"]
    for call in [mid_call, *down]:
        assert "portal_menu" not in node.prompts(call)
        assert node.ending(call) == "refused"
    assert node.server.stats.ended == {"refused": 4}

    # one informative error line per call, no traceback, no password
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(r.getMessage().split(":")[0] for r in errors) == sorted(
        f"call {c}" for c in [mid_call, *down]
    ), [r.getMessage() for r in errors]
    for record in errors:
        assert "PIN entry refused, lockout store unavailable: PostgreSQL: " in record.getMessage()
        assert record.name.startswith("ivr.portal")
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]

    # the node is up: answers OPTIONS, both threads alive, no call left
    assert node.server.dead_thread() is None
    assert (sip_options(node.server.address[1]) or "").startswith("SIP/2.0 200")
    assert eventually(lambda: not node.server.calls and node.server.driver.active == 0, 5)
    assert threading.active_count() <= threads + 1  # nothing piles up (+1: the store's probe)

    # PostgreSQL back: the same node, the same store object, the right PIN admits
    stoppable.start()
    # the store's background probe finds it (every retry_interval); calls fail fast until then
    assert eventually(lambda: store.reachable, 15)
    caplog.clear()
    steps: list[Step] = [("pause", 300), ("keys", PIN + "#"), ("pause", 1500), ("hangup",)]
    with callers(node, tmp_path, steps, "bye", sink, name="back") as back:
        finished(back)
    [again] = [c for c in node.calls() if c not in (mid_call, *down)]
    assert "portal_menu" in node.prompts(again)
    assert "portal_pin_unavailable" not in node.prompts(again)
    assert node.ending(again) == "caller_hangup"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert erika(observer) is None  # nothing was counted while down; the right PIN reset
