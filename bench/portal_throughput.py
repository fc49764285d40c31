"""Throughput of the Anywhere Portal through the simulator, on one CPU core.

Run from the repository root::

    .venv/bin/python bench/portal_throughput.py [--calls N] [--repeats R]

Runs the portal call mix (PIN right, wrong then right, outgoing allowed, blocked then
pull, refused caller, silent *11) round-robin through :class:`ivr.sim.Simulator` and
prints complete calls per second (goal: >= 5,000/s). A memory-hard PIN hash is slow on
purpose, so the mix runs on a copy of the demo directory whose hashes use argon2's
minimum parameters — the output says so — and the production KDF's cost per PIN attempt
is measured and printed separately.
"""

from __future__ import annotations

import argparse
import gc
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

from argon2 import PasswordHasher

from ivr.dialogue import Engine
from ivr.portal.demo import copy_with_cheap_hashes
from ivr.portal.pin import PRODUCTION_HASHER, TEST_HASHER
from ivr.portal.services import portal_engine
from ivr.sim import Simulator

ROOT = Path(__file__).resolve().parent.parent
DIALPLAN = ROOT / "dialplans" / "anywhere_portal.yaml"
EXAMPLES = ROOT / "examples" / "portal"
ERIKA = "+491711234567"
#: (portal config, caller, keys, expected outcome)
MIX = (
    ("portal.yaml", ERIKA, "4711# *11", "pulled"),
    ("portal.yaml", ERIKA, "1111# 4711# *11", "pulled"),
    ("portal.yaml", ERIKA, "4711# 0301234567#", "dialed"),
    ("portal.yaml", ERIKA, "4711# 0900123456# *11", "pulled"),
    ("portal.yaml", "+49 40 1111111", "", "refused"),
    ("silent.yaml", ERIKA, "*11", "pulled"),
)
GOAL = 5000


def kdf_ms(hasher: PasswordHasher, repeats: int = 5) -> float:
    """Best time of one PIN verification with ``hasher``'s parameters, in ms."""
    stored = hasher.hash("4711")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        hasher.verify(stored, "4711")
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # wrong-PIN warnings would flood the output
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_with_cheap_hashes(EXAMPLES, Path(tmp))
        engines: dict[str, Engine] = {
            config: portal_engine(DIALPLAN, folder / config) for config in {row[0] for row in MIX}
        }
        # no call-control effects: every repeat of a script must meet the same PBX state
        sims = {
            config: Simulator(engine, effects=lambda command, session: None)
            for config, engine in engines.items()
        }
        for config, caller, keys, outcome in MIX:  # warm-up, and check the mix is right
            got = sims[config].run(keys, caller=caller).outcome
            if got != outcome:
                print(f"mix broken: {keys!r} from {caller} gave {got}, expected {outcome}")
                return 1
        per_script = {row: float("inf") for row in MIX}
        events = {row: 0 for row in MIX}
        best_total = float("inf")
        rounds = max(1, args.calls // len(MIX))
        for _ in range(args.repeats):
            gc.collect()
            total = 0.0
            for row in MIX:
                config, caller, keys, _outcome = row
                run = sims[config].run
                start = time.perf_counter()
                for _ in range(rounds):
                    call = run(keys, caller=caller)
                took = time.perf_counter() - start
                per_script[row] = min(per_script[row], took / rounds)
                events[row] = sum(1 for line in call.lines if line["type"] in _EVENT_LINES) + 1
                total += took
            best_total = min(best_total, total / (rounds * len(MIX)))
    production = kdf_ms(PRODUCTION_HASHER)
    minimum = kdf_ms(TEST_HASHER)
    print(f"command:  {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python:   {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, one process"
    )
    print("PIN KDF:  argon2id at its MINIMUM test parameters (t=1, m=8 KiB, p=1) for the mix;")
    print("          the production cost per PIN attempt is measured below\n")
    print(f"{'portal':<13}{'caller':<17}{'keys':<24}{'events':>7}{'µs/call':>10}{'calls/s':>10}")
    for row in MIX:
        config, caller, keys, _ = row
        print(
            f"{config:<13}{caller:<17}{keys!r:<24}{events[row]:>7}"
            f"{per_script[row] * 1e6:>10.1f}{1 / per_script[row]:>10,.0f}"
        )
    rate = 1 / best_total
    print(
        f"\nportal mix:          {rate:,.0f} complete calls/s on one core "
        f"(goal >= {GOAL:,}: {'met' if rate >= GOAL else 'NOT met'})"
    )
    print(
        f"production PIN KDF:  {production:.1f} ms per attempt (argon2id t=3, m=64 MiB, p=4);"
        f" minimum parameters {minimum * 1000:.0f} µs"
    )
    print(
        f"with production KDF: a PIN call costs ~{production:.0f} ms of CPU more, i.e. "
        f"~{1000 / production:.0f} PIN verifications/s per core"
    )
    return 0


#: transcript lines that stand for an event fed to the dialogue (plus CallStarted)
_EVENT_LINES = frozenset({"key", "timeout", "caller_hangup"})

if __name__ == "__main__":
    sys.exit(main())
