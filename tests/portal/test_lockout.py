"""Lockouts after consecutive PIN failures, in memory and in SQLite (which survives a
restart and is shared by the processes of one host)."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.portal.lockout import (
    LONGEST_LOCK,
    PERMANENT,
    LockoutPolicy,
    LockoutStore,
    LockoutStoreUnavailable,
    MemoryLockoutStore,
    SqliteLockoutStore,
)

Store = LockoutStore
POLICY = LockoutPolicy()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory of fresh stores of one kind (PostgreSQL: a new database each)."""
    counter = iter(range(1_000_000))
    if request.param == "memory":
        return MemoryLockoutStore
    if request.param == "postgresql":
        from ivr.portal.lockout_pg import PostgresLockoutStore, init_schema

        cluster = request.getfixturevalue("postgres")

        def postgres_store() -> Store:
            url = cluster.url(cluster.new_database())
            init_schema(url)
            return PostgresLockoutStore(url)

        return postgres_store
    return lambda: SqliteLockoutStore(tmp_path / f"lockouts-{next(counter)}.sqlite")


def test_the_default_policy_is_five_failures_fifteen_minutes() -> None:
    assert (POLICY.failures, POLICY.seconds) == (5, 900)


def test_never_locked_is_zero(make_store: Callable[[], Store]) -> None:
    assert make_store().locked_until("erika") == 0.0


def test_four_failures_do_not_lock(make_store: Callable[[], Store]) -> None:
    store = make_store()
    counts = [store.record_failure("erika", 1000.0 + i, POLICY) for i in range(4)]
    assert counts == [1, 2, 3, 4]
    assert store.locked_until("erika") == 0.0


def test_five_failures_lock_for_900_seconds(make_store: Callable[[], Store]) -> None:
    store = make_store()
    for i in range(4):
        store.record_failure("erika", 1000.0 + i, POLICY)
    assert store.record_failure("erika", 2000.0, POLICY) == 0  # the count resets on lock
    assert store.locked_until("erika") == 2000.0 + 900
    assert store.locked_until("max") == 0.0  # per employee


def test_the_count_starts_anew_after_a_lock(make_store: Callable[[], Store]) -> None:
    store = make_store()
    counts = [store.record_failure("erika", float(i), POLICY) for i in range(7)]
    assert counts == [1, 2, 3, 4, 0, 1, 2]
    assert store.locked_until("erika") == 4.0 + 900  # not extended by failures 6 and 7


def test_another_five_failures_lock_twice_as_long(make_store: Callable[[], Store]) -> None:
    store = make_store()
    for i in range(10):
        store.record_failure("erika", 100.0 * i, POLICY)
    assert store.locked_until("erika") == 900.0 + 2 * 900
    assert store.lockouts("erika") == 2


def test_the_policy_is_honoured(make_store: Callable[[], Store]) -> None:
    store = make_store()
    policy = LockoutPolicy(failures=2, seconds=60)
    assert store.record_failure("hans", 10.0, policy) == 1
    assert store.locked_until("hans") == 0.0
    assert store.record_failure("hans", 11.0, policy) == 0
    assert store.locked_until("hans") == 71.0


def test_reset_clears_lock_and_count(make_store: Callable[[], Store]) -> None:
    store = make_store()
    for i in range(5):
        store.record_failure("erika", float(i), POLICY)
    for i in range(3):
        store.record_failure("erika", 10.0 + i, POLICY)
    store.record_failure("max", 1.0, POLICY)
    store.reset("erika")
    assert store.locked_until("erika") == 0.0
    assert store.record_failure("erika", 20.0, POLICY) == 1  # the count was forgotten too
    assert store.record_failure("max", 2.0, POLICY) == 2  # others untouched
    store.reset("nobody")  # resetting an unknown employee is harmless


# --- SQLite: restart and sharing ---------------------------------------------------------
def test_sqlite_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "lockouts.sqlite"
    store = SqliteLockoutStore(path)
    for i in range(5):
        store.record_failure("erika", 100.0 + i, POLICY)
    for i in range(3):
        store.record_failure("max", 100.0 + i, POLICY)
    del store
    restarted = SqliteLockoutStore(path)
    assert restarted.locked_until("erika") == 104.0 + 900
    assert restarted.record_failure("max", 200.0, POLICY) == 4  # the count survived too


def test_sqlite_is_shared_by_two_instances(tmp_path: Path) -> None:
    path = tmp_path / "lockouts.sqlite"
    one, two = SqliteLockoutStore(path), SqliteLockoutStore(path)
    assert one.record_failure("erika", 1.0, POLICY) == 1
    assert two.record_failure("erika", 2.0, POLICY) == 2
    assert one.record_failure("erika", 3.0, POLICY) == 3
    assert two.record_failure("erika", 4.0, POLICY) == 4
    assert one.record_failure("erika", 5.0, POLICY) == 0
    assert two.locked_until("erika") == 905.0
    two.reset("erika")
    assert one.locked_until("erika") == 0.0


def test_sqlite_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "lockouts.sqlite"
    SqliteLockoutStore(path).record_failure("erika", 1.0, POLICY)
    assert path.is_file()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT employee, failures FROM lockout").fetchall()
    assert rows == [("erika", 1)]


# --- locked_until never decreases --------------------------------------------------------
_NAMES = itertools.count()


def new_store(kind: str, directory: Path) -> Store:
    """A fresh store (a new SQLite file each time: Hypothesis reuses ``tmp_path``)."""
    if kind == "memory":
        return MemoryLockoutStore()
    return SqliteLockoutStore(directory / f"l{next(_NAMES)}.sqlite")


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@PROPERTY
@given(
    steps=st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), max_size=25),
    failures=st.integers(min_value=1, max_value=6),
)
def test_locked_until_never_decreases_as_time_goes_on(
    tmp_path: Path, kind: str, steps: list[float], failures: int
) -> None:
    store = new_store(kind, tmp_path)
    policy = LockoutPolicy(failures=failures, seconds=900)
    now, last = 1_000_000.0, 0.0
    for step in steps:
        now += step
        store.record_failure("erika", now, policy)
        locked = store.locked_until("erika")
        assert locked >= last
        assert locked == 0.0 or locked <= now + policy.lock_seconds(store.lockouts("erika"))
        last = locked


@pytest.mark.parametrize(
    "kind",
    [
        "memory",
        "sqlite",
    ],
)
def test_locked_until_never_decreases_even_when_the_clock_steps_back(
    tmp_path: Path, kind: str
) -> None:
    store = new_store(kind, tmp_path)
    for _ in range(5):
        store.record_failure("erika", 10_000.0, POLICY)
    assert store.locked_until("erika") == 10_900.0
    for _ in range(5):
        store.record_failure("erika", 5_000.0, POLICY)  # the wall clock went back
    assert store.locked_until("erika") == 10_900.0


def test_failures_keep_where_they_came_from(make_store: Callable[[], Store]) -> None:
    store = make_store()
    for i in range(7):
        store.record_failure("erika", 100.0 + i, POLICY, f"+4930555{i} (call c{i})")
    store.record_failure("max", 50.0, POLICY, "+4989111 (call m1)")
    [erika, max_] = store.states()
    assert (erika.employee, erika.failures, erika.locked_until) == ("erika", 2, 104.0 + 900)
    assert [f.source for f in erika.recent][-2:] == ["+49305555 (call c5)", "+49305556 (call c6)"]
    assert [f.at for f in erika.recent] == [100.0 + i for i in range(7)]
    assert (max_.failures, max_.locked_until, len(max_.recent)) == (1, 0.0, 1)
    store.reset("erika")
    assert [s.employee for s in store.states()] == ["max"]


def test_only_the_latest_failures_are_kept(make_store: Callable[[], Store]) -> None:
    store = make_store()
    for i in range(30):
        store.record_failure("erika", float(i), LockoutPolicy(failures=100), f"s{i}")
    [state] = store.states()
    assert [f.source for f in state.recent] == [f"s{i}" for i in range(10, 30)]


def test_sqlite_closes_its_connections(tmp_path: Path) -> None:
    import os

    store = SqliteLockoutStore(tmp_path / "l.sqlite")
    before = len(os.listdir("/proc/self/fd"))
    for i in range(50):
        store.record_failure("erika", float(i), POLICY, "x")
        store.locked_until("erika")
        store.states()
    assert len(os.listdir("/proc/self/fd")) <= before  # none left for the collector


# --- escalation -------------------------------------------------------------------------------
def lock_out(store: Store, now: float, policy: LockoutPolicy = POLICY) -> float:
    """Enough failures at ``now`` for one lockout; when it ends."""
    for _ in range(policy.failures):
        store.record_failure("erika", now, policy, "+4930555 (call c)")
    return store.locked_until("erika")


def test_the_default_escalation_doubles_then_locks_for_good(
    make_store: Callable[[], Store],
) -> None:
    store = make_store()
    now, lengths = 0.0, []
    for _ in range(5):
        until = lock_out(store, now)
        lengths.append(until - now)
        now = until if until != PERMANENT else now
    assert lengths == [900, 1800, 3600, 7200, PERMANENT]
    assert store.lockouts("erika") == 5
    (state,) = store.states()
    assert state.permanent and state.lockouts == 5


def test_a_permanent_lock_outlasts_any_clock_and_only_a_reset_lifts_it(
    make_store: Callable[[], Store],
) -> None:
    store = make_store()
    policy = LockoutPolicy(failures=2, temporary_lockouts=0)  # the first lock is permanent
    assert lock_out(store, 100.0, policy) == PERMANENT
    store.record_failure("erika", 10.0**12, policy)  # years later: still locked
    assert store.locked_until("erika") == PERMANENT
    store.reset("erika")  # ivr portal unlock
    assert (store.locked_until("erika"), store.lockouts("erika")) == (0.0, 0)
    assert lock_out(store, 200.0, policy) == PERMANENT  # the count started anew


def test_a_correct_pin_forgets_the_escalation(make_store: Callable[[], Store]) -> None:
    store = make_store()
    lock_out(store, 0.0)
    lock_out(store, 10_000.0)
    store.reset("erika")  # a correct PIN
    assert lock_out(store, 20_000.0) == 20_000.0 + 900


def test_without_a_permanent_lock_the_escalation_is_capped(
    make_store: Callable[[], Store],
) -> None:
    store = make_store()
    policy = LockoutPolicy(failures=1, escalation=10, temporary_lockouts=None)
    now = 0.0
    for _ in range(40):  # 15 minutes times 10**39 would be absurd (and overflow a float)
        start, now = now, lock_out(store, now, policy)
    assert now - start == LONGEST_LOCK
    assert policy.guesses_before_permanent() is None


@pytest.mark.parametrize(
    ("policy", "guesses"),
    [
        (LockoutPolicy(), 25),
        (LockoutPolicy(failures=3, temporary_lockouts=2), 9),
        (LockoutPolicy(temporary_lockouts=0), 5),
    ],
)
def test_guesses_before_the_permanent_lock(
    make_store: Callable[[], Store], policy: LockoutPolicy, guesses: int
) -> None:
    """An attacker who waits out every temporary lock gets exactly this many guesses."""
    assert policy.guesses_before_permanent() == guesses
    store, now, made = make_store(), 0.0, 0
    while store.locked_until("erika") != PERMANENT:
        now = max(now, store.locked_until("erika"))  # wait the lock out, guess again
        store.record_failure("erika", now, policy)
        made += 1
    assert made == guesses


def test_a_store_written_before_escalation_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE lockout (employee TEXT PRIMARY KEY,"
            " failures INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0)"
        )
        db.execute("INSERT INTO lockout VALUES ('erika', 3, 0)")
    store = SqliteLockoutStore(path)
    assert store.lockouts("erika") == 0
    assert store.record_failure("erika", 1.0, POLICY) == 4  # the old count is kept
    store.record_failure("erika", 2.0, POLICY)
    assert (store.locked_until("erika"), store.lockouts("erika")) == (902.0, 1)


def test_sqlite_counts_every_concurrent_failure(tmp_path: Path) -> None:
    """Workers of one host share the file: a failure is read and written in one write
    transaction, so none overwrites another's count (found by bench/lockout_store.py:
    8 threads x 50 failures were counted as 50)."""
    import threading

    path = tmp_path / "shared.sqlite"
    stores = [SqliteLockoutStore(path) for _ in range(2)]
    never = LockoutPolicy(failures=10**9)
    start = threading.Barrier(8)
    counts: list[int] = []

    def fail(store: SqliteLockoutStore) -> None:
        start.wait(10)
        counts.extend(store.record_failure("erika", 1.0, never) for _ in range(25))

    threads = [threading.Thread(target=fail, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(counts) == list(range(1, 201))
    assert stores[0].states()[0].failures == 200


def test_a_locked_or_broken_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SqliteLockoutStore(path)
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(LockoutStoreUnavailable, match="SQLite"):
        store.record_failure("erika", 1.0, POLICY)
    with pytest.raises(LockoutStoreUnavailable, match="SQLite"):
        store.locked_until("erika")
