"""Lockout store cost: PostgreSQL (shared by every portal node) vs SQLite (one host).

In one run, against the stores as the portal uses them — ``PostgresLockoutStore`` on a
throwaway cluster (``tests/postgres.py``, ``durable=True``: fsync and synchronous
commit on, PostgreSQL's defaults; Unix socket; schema by ``init_schema``) and
``SqliteLockoutStore`` (a file in a temporary directory on the same disk; a connection
per operation, as the store does) — the latency of

* a PIN failure: ``record_failure`` (the default policy: every 5th locks, the lock
  escalates, after 4 temporary locks it is permanent — the statements the portal runs);
* a check: ``locked_until`` (what every PIN entry asks first);

single-threaded, with ``--threads`` threads at once on different employees, and with
``--threads`` threads at once on one employee (all failures queue on one row, or on
SQLite's database lock). Mean and p99 in ms per operation, operations per second over
all threads, and the ratio PostgreSQL / SQLite. After each failure run the counts are
checked: lockouts x 5 + failures left must equal the failures recorded (no lost
increments). Threads of one Python process stand in for calls on several nodes (the
GIL is released while waiting for the database).

Bounded: ``--ops`` operations per thread, and each case stops after ``--cap`` seconds.

    .venv/bin/python bench/lockout_store.py [--ops 500] [--threads 8] [--cap 20]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sip_load import foreign_cpu, pids_where  # noqa: E402
from ivr.portal.lockout import LockoutPolicy, LockoutStore, SqliteLockoutStore  # noqa: E402
from ivr.portal.lockout_pg import PostgresLockoutStore, init_schema  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402

POLICY = LockoutPolicy()
#: the PostgreSQL server's postmaster (its processes are not "other programs")
postmaster: list[int] = []


@dataclass
class Case:
    store: str
    operation: str  # "failure" | "check"
    threads: int
    employees: str  # "different" | "one"
    ops: int
    mean_ms: float
    p99_ms: float
    ops_per_s: float
    lost: int | None  # failures not counted (failure runs only)
    others_cores: float = 0.0  # CPU other programs used meanwhile
    errors: int = 0  # operations that raised (not in the latencies)
    error: str = ""  # the first one


def run_case(
    store: LockoutStore,
    name: str,
    operation: str,
    threads: int,
    same_employee: bool,
    ops: int,
    cap: float,
    tag: str,
) -> Case:
    """``threads`` threads, each ``ops`` operations (or until ``cap`` s have passed)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    failed: list[str] = []  # operations that raised
    start = threading.Barrier(threads + 1)
    employees = [f"{tag}-e0" if same_employee else f"{tag}-e{n}" for n in range(threads)]

    def work(n: int) -> None:
        employee = employees[n]
        own = latencies[n]
        op: Callable[[], object]
        if operation == "failure":

            def op() -> object:
                return store.record_failure(employee, time.time(), POLICY, "+4930123 call-x")
        else:

            def op() -> object:
                return store.locked_until(employee)

        try:
            store.locked_until(employee)  # warm: PostgreSQL's connection of this thread
            start.wait()
            deadline = time.monotonic() + cap
            for _ in range(ops):
                t0 = time.perf_counter()
                try:
                    op()
                except Exception as exc:  # counted and named, not measured
                    failed.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
                else:
                    own.append(time.perf_counter() - t0)
                if time.monotonic() > deadline:
                    break
        except BaseException as exc:  # reported, the case is not measured
            errors.append(exc)
            start.abort()

    pool = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed: below
        start.wait()
    began = time.perf_counter()
    others0 = foreign_cpu()
    for thread in pool:
        thread.join(cap + 60)
    wall = time.perf_counter() - began
    close = getattr(store, "close", None)
    if close is not None:
        close()  # every thread's PostgreSQL connection (all threads are done)
    others1 = foreign_cpu()
    server_pids = {*postmaster, *(p for m in postmaster for p in pids_where(ppid=m))}
    # PostgreSQL's server processes are not ours (pg_ctl detaches them): not counted
    others = sum(
        others1[pid] - others0[pid]
        for pid in others1.keys() & others0.keys()
        if pid not in server_pids
    )
    if errors:
        raise RuntimeError(f"{name} {operation}: {errors[0]!r}")
    all_ms = sorted(x * 1000 for own in latencies for x in own)
    lost = None
    if operation == "failure":
        by_employee: dict[str, int] = {}
        for n, own in enumerate(latencies):
            by_employee[employees[n]] = by_employee.get(employees[n], 0) + len(own)
        states = {s.employee: s for s in store.states()}
        lost = 0
        for employee, recorded in by_employee.items():
            state = states.get(employee)
            counted = state.lockouts * POLICY.failures + state.failures if state else 0
            lost += recorded - counted
    return Case(
        store=name,
        operation=operation,
        threads=threads,
        employees="one" if same_employee or threads == 1 else "different",
        ops=len(all_ms),
        mean_ms=statistics.fmean(all_ms) if all_ms else float("nan"),
        p99_ms=all_ms[min(len(all_ms) - 1, int(len(all_ms) * 0.99))] if all_ms else float("nan"),
        ops_per_s=len(all_ms) / wall,
        lost=lost,
        others_cores=others / wall,
        errors=len(failed),
        error=failed[0] if failed else "",
    )


def table(cases: list[Case]) -> str:
    head = (
        "| store | operation | threads | employees | ops | mean | p99 | ops/s (all threads) "
        "| lost increments | errors | other programs (cores) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {c.store} | {c.operation} | {c.threads} | {c.employees} | {c.ops} "
        f"| {c.mean_ms:.3f} ms | {c.p99_ms:.3f} ms | {c.ops_per_s:.0f} "
        f"| {'-' if c.lost is None else c.lost} | {c.errors} | {c.others_cores:.2f} |"
        for c in cases
    ]
    return "\n".join([head, *rows])


def ratios(cases: list[Case]) -> str:
    head = (
        "| operation | threads | employees | mean PG / SQLite | p99 PG / SQLite "
        "| ops/s PG / SQLite |\n|---|---|---|---|---|---|"
    )
    rows = []
    for pg in (c for c in cases if c.store == "postgresql"):
        lite = next(
            (
                c
                for c in cases
                if c.store == "sqlite"
                and (c.operation, c.threads, c.employees)
                == (pg.operation, pg.threads, pg.employees)
            ),
            None,
        )
        if lite is None:
            continue
        rows.append(
            f"| {pg.operation} | {pg.threads} | {pg.employees} "
            f"| {pg.mean_ms / lite.mean_ms:.2f}x | {pg.p99_ms / lite.p99_ms:.2f}x "
            f"| {pg.ops_per_s / lite.ops_per_s:.2f}x |"
        )
    return "\n".join([head, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=500, help="operations per thread and case")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--cap", type=float, default=20.0, help="seconds at most per case")
    args = ap.parse_args()
    cases: list[Case] = []
    shapes = [(1, False), (args.threads, False), (args.threads, True)]
    began = time.monotonic()
    with PostgresCluster(durable=True) as cluster, tempfile.TemporaryDirectory() as tmp:
        database = cluster.new_database()
        init_schema(cluster.url(database))
        postmaster.append(int((cluster.data / "postmaster.pid").read_text().split()[0]))
        version = cluster._run("postgres", "--version").stdout.strip()
        stores: dict[str, LockoutStore] = {
            "sqlite": SqliteLockoutStore(Path(tmp) / "lockout.db"),
            "postgresql": PostgresLockoutStore(cluster.url(database)),
        }
        print(
            f"{version}, durable (fsync, synchronous_commit on), Unix socket; SQLite "
            f"{__import__('sqlite3').sqlite_version} file in {tmp} (same disk); "
            f"policy {POLICY}",
            flush=True,
        )
        print(table([]), flush=True)
        for operation in ("failure", "check"):
            for threads, same in shapes:
                for name, store in stores.items():
                    # the checks read the rows the failure runs of the same shape left
                    tag = f"t{threads}{'one' if same else 'many'}"
                    case = run_case(store, name, operation, threads, same, args.ops, args.cap, tag)
                    cases.append(case)
                    print(table([case]).splitlines()[-1], flush=True)
    print(f"\nall cases ({time.monotonic() - began:.0f} s):")
    print(table(cases))
    print("\nPostgreSQL / SQLite:")
    print(ratios(cases))
    for c in cases:
        if c.errors:
            print(f"{c.store} {c.operation} x{c.threads} {c.employees}: {c.errors} x {c.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
