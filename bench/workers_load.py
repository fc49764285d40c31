"""SIP load over several portal processes: `ivr serve --workers N` behind Kamailio's
dispatcher, the highest concurrency that holds for each N in one run, and their ratio.

Every N (``--workers 1,2``) takes the same path: SIPp callers dial ``sip:portal@`` a
Kamailio running ``examples/kamailio/dispatcher.cfg`` (one per N, its node list the one
``ivr serve --workers N --dispatcher-list`` wrote, loaded with ``dispatcher.reload``),
which spreads them round robin over the N worker processes (``--no-register``,
``--call-rate 10000``: every call comes from the proxy's one address). So N=1 pays for
the proxy hop exactly as N=2 does. Each level is measured as in ``bench/sip_load.py``
(the same code: ``load_level``): each call ~``--hold`` s, ``4711#`` as RFC 4733 events
after 3 s; failed calls (SIPp), DTMF keys lost (sent minus counted by the workers'
``--stats``), RTP packets/s and jitter p99 (|gap - 20 ms|, a dumpcap capture on
``lo``), CPU of the workers (and their launcher) and of Kamailio, in cores.

A level holds with 0 failed calls, 0 keys lost, >= 49 packets/s per stream and jitter
p99 <= 5 ms. For each N the levels are climbed from ``--levels`` (the first N from the
lowest level, the next from the last N's highest holding level; down when that fails)
until one does not hold, then ``--refine`` bisection steps between the highest that
held and the lowest that did not (10 calls resolution). Bounded: at most
``--max-runs`` levels per N, each one SIPp run of ``calls`` calls.

SIPp, dumpcap, Kamailio and the workers share the machine's CPUs (said in the output).

    .venv/bin/python bench/workers_load.py [--workers 1,2] [--levels 200,300,...] [--hold 15]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sip_load import (  # noqa: E402
    BIN,
    Level,
    Served,
    load_level,
    pids_where,
    portal_copy,
)
from tests.sip.nodes import Dispatcher, options_via  # noqa: E402
from tests.sip.peers import HOST, free_udp_port  # noqa: E402

#: the dispatcher's probing in this benchmark: every second, a node inactive after 2
#: unanswered probes (2 s each), active again after 1 answered one
PROBING = {"ping_interval": 1, "probing_threshold": 2, "inactive_threshold": 1, "fr_timer": 2000}


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive UDP ports of 127.0.0.1 free a moment ago."""
    import socket

    for _ in range(100):
        first = free_udp_port()
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((HOST, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first
    raise RuntimeError(f"no {count} free UDP ports in a row")


class Workers(Served):
    """``ivr serve --workers N``: the launcher and its N workers."""

    def __init__(self, proc: subprocess.Popen[bytes], stats: list[Path], workers: list[int]):
        super().__init__(proc, stats)
        self.workers = workers

    def pids(self) -> list[int]:
        return [self.proc.pid, *self.workers]

    def answered(self) -> list[int]:
        """Calls each worker answered (its --stats, after the stop)."""
        return [json.loads(path.read_text())["answered"] for path in self.stats]

    def stop(self) -> None:
        """SIGTERM to the launcher (it passes it on; --drain 0: the workers stop at once);
        SIGKILL to the launcher and then to each worker by PID if that takes over 30 s."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 10
        for pid in self.workers:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


#: a level during which other programs used more CPU than this is marked "disturbed"
DISTURBED = 0.2


def start_workers(
    count: int, proxy: Dispatcher, first_port: int, work: Path, label: str
) -> Workers:
    """``ivr serve --workers count`` on ports first_port.., its dispatcher list written
    where ``proxy`` reads it; back when the proxy sees every worker active and each
    answers an OPTIONS relayed by the proxy."""
    stats = work / f"{label}-stats.json"
    for old in work.glob(f"{label}-stats.*.json"):
        old.unlink()
    ports = list(range(first_port, first_port + count))
    cmd = [
        str(BIN / "ivr"),
        "--log-level",
        "warning",
        "serve",
        str(ROOT / "dialplans" / "anywhere_portal.yaml"),
        "--portal",
        str(portal_copy(work, label)),
        "--rtp-timeout",
        "0",
        "--rtp-ports",
        "30000-39999",
        # capacity, not admission: all calls come from the proxy's one address
        "--call-rate",
        "10000",
        "--call-burst",
        "10000",
        "--registrar",
        proxy.address,
        "--bind",
        HOST,
        "--no-register",
        "--drain",
        "0",
        "--port",
        str(first_port),
        "--workers",
        str(count),
        "--dispatcher-list",
        str(proxy.list_path),
        "--stats",
        str(stats),
    ]
    log = (work / f"{label}.log").open("ab")
    proc = subprocess.Popen(
        cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    served = Workers(proc, [stats.with_suffix(f".{port}.json") for port in ports], [])
    try:
        deadline = time.monotonic() + 60
        reloaded = False
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"ivr serve --workers {count} exited with {proc.returncode}: "
                    + (work / f"{label}.log").read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: workers not all active: {proxy.states()}")
            served.workers = pids_where(ppid=proc.pid)
            if len(served.workers) == count and not reloaded:
                # the list ivr serve wrote (it overwrote the proxy's own): proxy, use it
                proxy.rpc("dispatcher.reload")
                reloaded = True
            states = proxy.states() if reloaded else {}
            if (
                reloaded
                and sorted(states) == ports
                and all(state.startswith("A") for state in states.values())
                and all(" 200 " in f"{options_via(proxy.port, p) or ''} " for p in ports)
            ):
                break
            time.sleep(0.25)
    except BaseException:
        served.stop()
        raise
    return served


def climb(
    run: Callable[[int], Level | None],
    levels: list[int],
    start: int,
    refine: int,
    max_runs: int,
) -> int:
    """The highest level that holds: from ``start`` (a level of ``levels``) up while
    levels hold (down while they do not), then ``refine`` bisection steps (10 calls
    resolution), at most ``max_runs`` runs. 0 when none held."""
    held: dict[int, bool] = {}

    def holds(calls: int) -> bool:
        if calls not in held:
            if len(held) >= max_runs:
                raise StopIteration
            level = run(calls)
            held[calls] = level is not None and level.holds
        return held[calls]

    def best() -> int:
        return max((c for c, ok in held.items() if ok), default=0)

    try:
        i = levels.index(start)
        if holds(levels[i]):
            while i + 1 < len(levels) and holds(levels[i + 1]):
                i += 1
        else:
            while i > 0 and not holds(levels[i - 1]):
                i -= 1
        for _ in range(refine):
            low = best()
            high = min((c for c, ok in held.items() if not ok and c > low), default=None)
            if high is None or high - low <= 10:
                break
            holds((low + high) // 2 // 10 * 10)
    except StopIteration:
        print(f"  (stopped after --max-runs {max_runs} levels)", flush=True)
    return best()


#: per level: the calls each worker answered ("149+151")
spread: dict[int, str] = {}


def table(levels: list[Level]) -> str:
    head = (
        "| processes | calls | answered per worker | failed | keys lost | pkts/s/stream "
        "| jitter p50 | jitter p99 | ivr CPU (cores) | CPU ms/s per call "
        "| Kamailio CPU (cores) | machine busy (cores) | other programs (cores) | RSS peak "
        "| holds |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {lv.processes} | {lv.calls} | {spread.get(id(lv), '-')} | {lv.failed} "
        f"| {lv.keys_lost} | {lv.pps} "
        f"| {lv.jitter_p50} ms | {lv.jitter_p99} ms | {lv.cpu_cores:.2f} "
        f"| {lv.cpu_per_call_ms_s:.1f} | {lv.proxy_cpu_cores or 0:.2f} | {lv.machine_cores:.2f} "
        f"| {lv.others_cores:.2f}{' (disturbed)' if lv.others_cores > DISTURBED else ''} "
        f"| {lv.rss_peak_mib:.0f} MiB | {'yes' if lv.holds else 'no'} |"
        for lv in levels
    ]
    return "\n".join([head, *rows])


def summary(best: dict[int, int], results: list[Level]) -> str:
    head = (
        "| processes | highest holding concurrency | jitter p99 there | ivr CPU there "
        "| Kamailio CPU there | ratio to 1 process |\n|---|---|---|---|---|---|"
    )
    base = best.get(1) or best.get(min(best))
    rows = []
    for count, calls in best.items():
        at = next((lv for lv in results if lv.processes == count and lv.calls == calls), None)
        jitter = f"{at.jitter_p99} ms" if at else "-"
        cpu = f"{at.cpu_cores:.2f} cores ({at.cpu_per_call_ms_s:.1f} ms/s per call)" if at else "-"
        proxy = f"{at.proxy_cpu_cores or 0:.2f} cores" if at else "-"
        ratio = f"{calls / base:.2f}x" if base else "-"
        rows.append(f"| {count} | {calls} | {jitter} | {cpu} | {proxy} | {ratio} |")
    return "\n".join([head, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2", help="process counts to compare")
    ap.add_argument("--levels", default="200,300,400,500,600,700,800,900,1000,1200")
    ap.add_argument("--hold", type=float, default=15.0, help="seconds per call")
    ap.add_argument("--refine", type=int, default=1, help="bisection steps after the climb")
    ap.add_argument("--max-runs", type=int, default=8, help="levels at most per process count")
    args = ap.parse_args()
    for tool in ("kamailio", "sipp", "dumpcap"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            print(f"needs {tool} (make test installs it)", file=sys.stderr)
            return 2
    counts = [int(x) for x in args.workers.split(",")]
    levels = sorted(int(x) for x in args.levels.split(","))
    results: list[Level] = []
    best: dict[int, int] = {}
    began = time.monotonic()
    print(
        f"{os.cpu_count()} CPUs shared by SIPp, dumpcap, Kamailio (dispatcher.cfg, 1 child) "
        "and the workers; every process count behind the same dispatcher path.\n"
        f"dispatcher probing: {PROBING}; PIN hashes argon2id at minimum cost.",
        flush=True,
    )
    print(table([]), flush=True)
    with tempfile.TemporaryDirectory(prefix="workers-load-") as tmp:
        work = Path(tmp)
        start = levels[0]
        for count in counts:
            first = free_ports(count)
            ports = list(range(first, first + count))
            with Dispatcher(ports, **PROBING) as proxy:

                def run(
                    calls: int, count: int = count, proxy: Dispatcher = proxy, first: int = first
                ) -> Level | None:
                    label = f"w{count}-{calls}"
                    try:
                        served = start_workers(count, proxy, first, work, label)
                        level = load_level(label, calls, args.hold, proxy, "portal", served, work)
                    except Exception as exc:  # a level that breaks is reported, not fatal
                        print(f"{label}: {type(exc).__name__}: {exc}", file=sys.stderr)
                        return None
                    level.processes = count  # the workers (their CPU includes the launcher's)
                    spread[id(level)] = "+".join(map(str, served.answered()))
                    results.append(level)
                    print(table([level]).splitlines()[-1], flush=True)
                    return level

                best[count] = climb(run, levels, start, args.refine, args.max_runs)
            if best[count]:
                start = max((lv for lv in levels if lv <= best[count]), default=levels[0])
    print(f"\nall levels ({time.monotonic() - began:.0f} s):")
    print(table(sorted(results, key=lambda lv: (lv.processes, lv.calls))))
    print(
        "\nhighest concurrency that holds (0 failed, 0 keys lost, >= 49 pkts/s, "
        "jitter p99 <= 5 ms),\nevery process count through Kamailio's dispatcher "
        "(ivr serve --workers N --no-register):"
    )
    print(summary(best, results))
    disturbed = [lv for lv in results if lv.others_cores > DISTURBED]
    if disturbed:
        print(
            f"\n{len(disturbed)} levels disturbed: other programs used > {DISTURBED} cores "
            "during them: "
            + ", ".join(f"{lv.processes}x{lv.calls} ({lv.others_cores:.2f})" for lv in disturbed)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
