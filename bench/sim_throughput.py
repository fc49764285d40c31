"""Throughput of the ivr core on one CPU core: simulator, bare ``Dialogue.handle``, and
the ``transitions`` floor underneath it.

Run from the repository root::

    .venv/bin/python bench/sim_throughput.py [--calls N] [--repeats R] [--json]

What it measures (each section runs ``--calls`` calls in all, split into ``--repeats``
timed repeats after a warm-up; each time reported is its own best over the repeats;
single process, garbage collector left on):

1. ``simulator``: complete scripted calls through :class:`ivr.sim.Simulator` (virtual
   clock, transcript) for a round-robin mix of demo-dialplan scripts.
2. ``handle replay``: the events the simulator fed to each dialogue (recorded once),
   replayed with ``Dialogue.handle`` on fresh dialogues -- with and without the cost
   of ``engine.new_call()``.
3. ``bare transitions``: the same triggers, in the same order, fired with
   ``machine.events[name].trigger(model)`` on a bare shared ``transitions.Machine`` of
   the same states and transitions (one plain model added and removed per call): what
   the dialogue's transitions alone cost. Reported with the ratio ivr / bare per call.
4. ``new_call``: ``engine.new_call()`` + removal of the model, with 0 and with many
   other calls live on the shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transitions import Machine

from ivr.dialogue import Dialogue, Engine
from ivr.dialplan import load_dialplan
from ivr.events import Event
from ivr.sim import Simulator

ROOT = Path(__file__).resolve().parent.parent
DIALPLAN = ROOT / "dialplans" / "demo.yaml"
CALLER = "+4917112345"
#: the call mix, round-robin (empty script: a silent caller, no-input until hang-up)
SCRIPTS = ("1", "2 12345# 1234 0", "now=2 12345# 9999", "", "wait=2 hangup", "3 3 3")
#: the goal: complete simulated calls per second for a call of about GOAL_EVENTS events
GOAL_CALLS_PER_S = 5000
GOAL_EVENTS = 20
#: calls run to warm a section up before its timed repeats
WARMUP_CALLS = 600
#: other calls live on the shared machine while new_call + removal is timed
LIVE_CALLS = (0, 1000, 10000)


# --- recording ------------------------------------------------------------------------
@dataclass
class Recorded:
    """One script's call as the simulator drove it."""

    script: str
    events: list[Event]
    triggers: list[str]
    outcome: str | None
    final_state: str
    lines: int


def record(plan: Any, script: str) -> Recorded:
    """Run ``script`` once on a private engine, capturing the events and triggers."""
    engine = Engine(plan)
    events: list[Event] = []
    triggers: list[str] = []
    recorded: list[Dialogue] = []
    make_call = engine.new_call

    def new_call(call_id: str = "") -> Dialogue:
        dialogue = make_call(call_id)
        handle = dialogue.handle

        def recording_handle(event: Event) -> list[Any]:
            events.append(event)
            return handle(event)

        dialogue.handle = recording_handle  # type: ignore[method-assign]
        recorded.append(dialogue)
        return dialogue

    engine.new_call = new_call  # type: ignore[method-assign]
    engine.listeners.append(lambda _d, trigger, _s, _t: triggers.append(trigger))
    call = Simulator(engine).run(script, caller=CALLER)
    (dialogue,) = recorded
    return Recorded(script, events, triggers, call.outcome, dialogue.state, len(call.lines))


# --- timing -----------------------------------------------------------------------------
@dataclass
class Timing:
    """Best-of-repeats totals (seconds): the whole mix and each script's share of it."""

    total: float = float("inf")
    per_script: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def keep_best(self, total: float, per_script: dict[str, float], **extra: float) -> None:
        self.total = min(self.total, total)
        for key, value in per_script.items():
            self.per_script[key] = min(self.per_script.get(key, float("inf")), value)
        for key, value in extra.items():
            self.extra[key] = min(self.extra.get(key, float("inf")), value)


@dataclass
class Section:
    """One timed section: ``run`` times one repeat; ``warmup`` runs a short one."""

    warmup: Callable[[], Any]
    run: Callable[[], tuple[Any, ...]]
    timing: Timing = field(default_factory=Timing)


def best_of(repeats: int, sections: list[Section]) -> None:
    """Warm every section up, then run the repeats round-robin over the sections (so a
    burst of noise from a neighbour on the machine spoils one repeat of each, not every
    repeat of one), keeping each section's best."""
    for section in sections:
        section.warmup()
    for _ in range(repeats):
        for section in sections:
            gc.collect()
            total, per_script, *extra = section.run()
            section.timing.keep_best(total, per_script, **dict(extra))


def schedule(calls: int) -> list[int]:
    """Script index of each call of the round-robin mix."""
    return [i % len(SCRIPTS) for i in range(calls)]


def bench_simulator(engine: Engine, recs: list[Recorded], calls: int) -> Section:
    """Complete simulated calls; ``calls`` per repeat."""
    sim = Simulator(engine)
    scripts = [r.script for r in recs]
    outcomes = [r.outcome for r in recs]
    order = schedule(calls)
    clock = time.perf_counter

    def run(order: list[int]) -> tuple[float, dict[str, float]]:
        spent = [0.0] * len(scripts)
        start = clock()
        for i in order:
            t0 = clock()
            call = sim.run(scripts[i], caller=CALLER)
            spent[i] += clock() - t0
            if call.outcome != outcomes[i]:
                raise SystemExit(f"script {scripts[i]!r}: outcome {call.outcome!r}")
        total = clock() - start
        return total, dict(zip(scripts, spent, strict=True))

    return Section(lambda: run(order[:WARMUP_CALLS]), lambda: run(order))


def bench_replay(engine: Engine, recs: list[Recorded], calls: int) -> Section:
    """Replay recorded events: per call ``new_call`` + every ``handle``; and handle only."""
    scripts = [r.script for r in recs]
    events = [r.events for r in recs]
    outcomes = [r.outcome for r in recs]
    order = schedule(calls)
    new_call = engine.new_call
    clock = time.perf_counter

    def run(order: list[int]) -> tuple[float, dict[str, float], tuple[str, float]]:
        spent = [0.0] * len(scripts)
        handling = 0.0
        start = clock()
        for i in order:
            t0 = clock()
            dialogue = new_call("bench")
            t1 = clock()
            handle = dialogue.handle
            for event in events[i]:
                handle(event)
            t2 = clock()
            spent[i] += t2 - t0
            handling += t2 - t1
            if dialogue.outcome != outcomes[i]:
                raise SystemExit(f"replay {scripts[i]!r}: outcome {dialogue.outcome!r}")
        total = clock() - start
        if engine.machine.models:
            raise SystemExit(f"{len(engine.machine.models)} ended calls left on the machine")
        return total, dict(zip(scripts, spent, strict=True)), ("handle_only", handling)

    return Section(lambda: run(order[:WARMUP_CALLS]), lambda: run(order))


class _UnboundMachine(Machine):  # type: ignore[misc]
    """A bare Machine that binds no trigger or state methods onto its models."""

    def _add_trigger_to_model(self, trigger: str, model: Any) -> None:
        pass

    def _add_model_to_state(self, state: Any, model: Any) -> None:
        pass


class _Model:
    """A bare model: transitions sets ``state`` on it."""

    state: str


def bare_machine(engine: Engine, cls: type[Machine]) -> Machine:
    """A machine with the states and transitions of ``engine``'s, and no callbacks."""
    return cls(
        model=None,
        states=list(engine.machine.states),
        transitions=[
            {"trigger": name, "source": source, "dest": dest}
            for name, source, dest in engine.triggers()
        ],
        initial=engine.machine.initial,
        auto_transitions=False,
        queued=True,
        send_event=True,
    )


def bench_bare(machine: Machine, recs: list[Recorded], calls: int) -> Section:
    """The recorded triggers of each call on a bare machine, one model per call."""
    scripts = [r.script for r in recs]
    finals = [r.final_state for r in recs]
    events = machine.events
    triggers = [[events[name].trigger for name in r.triggers] for r in recs]
    order = schedule(calls)
    add, remove = machine.add_model, machine.remove_model
    clock = time.perf_counter

    def run(order: list[int]) -> tuple[float, dict[str, float], tuple[str, float]]:
        spent = [0.0] * len(scripts)
        triggering = 0.0
        start = clock()
        for i in order:
            t0 = clock()
            model = _Model()
            add(model)
            t1 = clock()
            for trigger in triggers[i]:
                trigger(model)
            t2 = clock()
            remove(model)
            spent[i] += clock() - t0
            triggering += t2 - t1
            if model.state != finals[i]:
                raise SystemExit(f"bare {scripts[i]!r}: ended in {model.state!r}")
        total = clock() - start
        return total, dict(zip(scripts, spent, strict=True)), ("triggers_only", triggering)

    return Section(lambda: run(order[:WARMUP_CALLS]), lambda: run(order))


def bench_new_call(engine: Engine, live: int, calls: int) -> tuple[Section, int]:
    """``new_call()`` + ``remove_model`` with ``live`` other calls on the machine (added
    before and removed after each repeat, untimed); returns the section and its calls."""
    # list scans make this O(live): bound the work per repeat
    n = min(calls, max(200, 4_000_000 // max(live, 1)))
    new_call, remove = engine.new_call, engine.machine.remove_model
    clock = time.perf_counter

    def run(n: int) -> tuple[float, dict[str, float]]:
        others = [new_call(f"live{i}") for i in range(live)]
        try:
            start = clock()
            for _ in range(n):
                remove(new_call("bench"))
            return clock() - start, {}
        finally:
            for dialogue in others:
                remove(dialogue)

    return Section(lambda: run(min(n, WARMUP_CALLS)), lambda: run(n)), n


# --- report -------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls",
        type=int,
        default=20000,
        help="calls per section, split evenly over the repeats (default 20000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per section; the best is kept (5)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.calls < len(SCRIPTS) * args.repeats:
        parser.error(f"--repeats must be >= 1 and --calls >= {len(SCRIPTS)} x repeats")
    repeats = args.repeats
    calls = args.calls // repeats  # per repeat
    wall = time.perf_counter()

    plan = load_dialplan(str(DIALPLAN))
    recs = [record(plan, script) for script in SCRIPTS]
    engine = Engine(plan)

    sections = [
        bench_simulator(engine, recs, calls),
        bench_replay(engine, recs, calls),
        bench_bare(bare_machine(engine, _UnboundMachine), recs, calls),
        bench_bare(bare_machine(engine, Machine), recs, calls),
    ]
    new_calls = {live: bench_new_call(engine, live, calls) for live in LIVE_CALLS}
    best_of(repeats, sections + [section for section, _ in new_calls.values()])
    sim, replay, bare, bound = (section.timing for section in sections)
    new_call = {live: section.timing.total / n for live, (section, n) in new_calls.items()}

    per_script_calls = {s: schedule(calls).count(i) for i, s in enumerate(SCRIPTS)}
    n_events = sum(len(r.events) * per_script_calls[r.script] for r in recs)
    n_triggers = sum(len(r.triggers) * per_script_calls[r.script] for r in recs)
    goal = min(recs, key=lambda r: abs(len(r.events) - GOAL_EVENTS))
    goal_rate = per_script_calls[goal.script] / sim.per_script[goal.script]
    sim_us_per_event = sim.total / n_events * 1e6

    def row(r: Recorded | None) -> dict[str, Any]:
        if r is None:  # the mix
            n, ev, tr = calls, n_events, n_triggers
            s, p, b, u = sim.total, replay.total, bare.total, bound.total
            handle_only: float | None = replay.extra["handle_only"]
            triggers_only: float | None = bare.extra["triggers_only"]
        else:
            n = per_script_calls[r.script]
            ev, tr = len(r.events) * n, len(r.triggers) * n
            s, p = sim.per_script[r.script], replay.per_script[r.script]
            b, u = bare.per_script[r.script], bound.per_script[r.script]
            handle_only = triggers_only = None
        return {
            "script": "mix" if r is None else r.script,
            "calls_per_repeat": n,
            "events_per_call": ev / n,
            "triggers_per_call": tr / n,
            "outcome": None if r is None else r.outcome,
            "transcript_lines_per_call": None if r is None else r.lines,
            "sim_us_per_call": s / n * 1e6,
            "sim_calls_per_s": n / s,
            "sim_us_per_event": s / ev * 1e6,
            "handle_us_per_call": p / n * 1e6,
            "handle_us_per_event": p / ev * 1e6,
            "handle_only_us_per_event": None if handle_only is None else handle_only / ev * 1e6,
            "bare_us_per_call": b / n * 1e6,
            "bare_us_per_trigger": b / tr * 1e6,
            "bare_trigger_only_us": None if triggers_only is None else triggers_only / tr * 1e6,
            "bare_bound_us_per_call": u / n * 1e6,
            "ratio_handle_vs_bare": p / b,
            "ratio_sim_vs_bare": s / b,
        }

    rows = [row(None), *(row(r) for r in recs)]
    result = {
        "command": shlex.join(sys.orig_argv),
        "machine": machine_info(),
        "dialplan": str(DIALPLAN.relative_to(ROOT)),
        "calls": calls * repeats,
        "calls_per_repeat": calls,
        "repeats": repeats,
        "rows": rows,
        "new_call_us": {str(live): t * 1e6 for live, t in new_call.items()},
        "goal": {
            "calls_per_s": GOAL_CALLS_PER_S,
            "events_per_call": GOAL_EVENTS,
            "script": goal.script,
            "script_events": len(goal.events),
            "measured_calls_per_s": goal_rate,
            "mix_extrapolated_calls_per_s": 1e6 / (sim_us_per_event * GOAL_EVENTS),
            "met": goal_rate >= GOAL_CALLS_PER_S,
        },
        "wall_seconds": time.perf_counter() - wall,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"command:  {result['command']}")
    print(f"python:   {m['python']}")
    print(
        f"machine:  {m['processor']} {m['cpu_model']}, {m['cpu_count']} CPUs, {m['system']}; "
        "one process, one core"
    )
    print(
        f"runs:     {result['dialplan']}; per section {result['calls']} calls = "
        f"{result['repeats']} repeats x {result['calls_per_repeat']} "
        f"(round-robin over {len(SCRIPTS)} scripts), best of the repeats, gc on, after warm-up"
    )
    print()
    head = (
        f"{'script':<20} {'ev/call':>7} {'tr/call':>7} │ {'sim µs/call':>11} {'sim calls/s':>11}"
        f" │ {'handle µs/call':>14} {'µs/event':>8} │ {'bare µs/call':>12} {'ivr/bare':>8}"
    )
    print(head)
    print("─" * len(head))
    for r in result["rows"]:
        name = "mix (all scripts)" if r["script"] == "mix" else repr(r["script"])
        print(
            f"{name:<20} {r['events_per_call']:>7.1f} {r['triggers_per_call']:>7.1f} │ "
            f"{r['sim_us_per_call']:>11.1f} {r['sim_calls_per_s']:>11,.0f} │ "
            f"{r['handle_us_per_call']:>14.1f} {r['handle_us_per_event']:>8.2f} │ "
            f"{r['bare_us_per_call']:>12.1f} {r['ratio_handle_vs_bare']:>7.1f}x"
        )
    mix = result["rows"][0]
    print()
    print(
        f"simulator:        {mix['sim_calls_per_s']:,.0f} complete calls/s for the mix, "
        f"{mix['sim_us_per_event']:.2f} µs per event fed to the dialogue"
    )
    print(
        f"Dialogue.handle:  {mix['handle_us_per_event']:.2f} µs/event incl. new_call, "
        f"{mix['handle_only_us_per_event']:.2f} µs/event handle() alone "
        f"({1e6 / mix['handle_us_per_call']:,.0f} calls/s)"
    )
    print(
        f"bare transitions: {mix['bare_trigger_only_us']:.2f} µs per trigger() alone, "
        f"{mix['bare_us_per_trigger']:.2f} µs/trigger incl. add/remove model; "
        f"{mix['bare_us_per_call']:.1f} µs/call unbound, "
        f"{mix['bare_bound_us_per_call']:.1f} µs/call with a plain Machine that binds "
        "triggers onto the model"
    )
    print(
        f"ratio per call:   ivr handle / bare transitions = {mix['ratio_handle_vs_bare']:.1f}x,"
        f" simulator / bare transitions = {mix['ratio_sim_vs_bare']:.1f}x"
    )
    live = ", ".join(
        f"{us:.1f} µs with {int(n):,} calls live" for n, us in result["new_call_us"].items()
    )
    print(f"new_call+remove:  {live}")
    g = result["goal"]
    verdict = "MET" if g["met"] else "NOT MET"
    print(
        f"goal:             >= {g['calls_per_s']:,} calls/s for a ~{g['events_per_call']}-event "
        f"call: {verdict} — {g['script']!r} ({g['script_events']} events) runs "
        f"{g['measured_calls_per_s']:,.0f} calls/s; the mix's µs/event gives "
        f"{g['mix_extrapolated_calls_per_s']:,.0f} calls/s at {g['events_per_call']} events"
    )
    print(f"wall time:        {result['wall_seconds']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
