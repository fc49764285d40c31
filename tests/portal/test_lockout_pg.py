"""The PostgreSQL lockout store against a real (throwaway) PostgreSQL cluster.

What the shared contract in ``test_lockout.py`` cannot show: several store objects
(as on several portal nodes) counting concurrent failures of one employee without
losing one, what a store does while the server is gone and after it is back, and
the schema that ``ivr portal db init`` creates.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.portal.lockout import LockoutPolicy, LockoutStoreUnavailable
from ivr.portal.lockout_pg import SCHEMA_VERSION, PostgresLockoutStore, init_schema
from tests.postgres import PostgresCluster, find_bin_dir

pytestmark = pytest.mark.skipif(find_bin_dir() is None, reason="needs PostgreSQL's initdb")

NOW = 1_000_000.0
THREADS = 20
#: a password in a URL: it must never show in a message (trust auth ignores it)
SECRET = "s3cret-pw"


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


def concurrent_failures(
    stores: list[PostgresLockoutStore], employee: str, policy: LockoutPolicy
) -> list[int]:
    """``THREADS`` threads, spread over ``stores``, each recording one failure of
    ``employee`` at the same moment: what each record_failure returned."""
    start = threading.Barrier(THREADS)
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        store = stores[n % len(stores)]
        try:
            store.locked_until(employee)  # connected before the race starts
            start.wait(10)
            count = store.record_failure(employee, NOW, policy, f"thread {n}")
            with lock:
                results.append(count)
        except BaseException as exc:  # reported by the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for store in stores:
        store.close()  # every thread's connection
    assert not errors, errors
    assert len(results) == THREADS
    return results


def test_concurrent_failures_on_two_stores_are_all_counted(postgres_url: str) -> None:
    stores = [PostgresLockoutStore(postgres_url), PostgresLockoutStore(postgres_url)]
    results = concurrent_failures(stores, "erika", LockoutPolicy(failures=1000))
    # serialized on the row: every failure saw a different count, 1 to 20
    assert sorted(results) == list(range(1, THREADS + 1))
    [state] = PostgresLockoutStore(postgres_url).states()
    assert (state.employee, state.failures, state.locked_until) == ("erika", THREADS, 0.0)
    assert len(state.recent) == THREADS
    assert {f.source for f in state.recent} == {f"thread {n}" for n in range(THREADS)}


def test_twenty_concurrent_failures_lock_exactly_four_times(postgres_url: str) -> None:
    policy = LockoutPolicy()  # 5 failures lock
    stores = [PostgresLockoutStore(postgres_url), PostgresLockoutStore(postgres_url)]
    results = concurrent_failures(stores, "erika", policy)
    # 1, 2, 3, 4, then 0 (this one locked), four times over
    assert Counter(results) == {0: 4, 1: 4, 2: 4, 3: 4, 4: 4}
    store = PostgresLockoutStore(postgres_url)
    assert store.lockouts("erika") == 4
    # the fourth lock is the longest (escalated three times), and none is permanent
    assert store.locked_until("erika") == NOW + policy.lock_seconds(4)
    [state] = store.states()
    assert state.failures == 0 and state.lockouts == 4


def test_no_server_raises_unavailable_at_once_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://postgres:{SECRET}@/portal?host={tmp_path}&port=5432"
    store = PostgresLockoutStore(url, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(LockoutStoreUnavailable) as caught:
        store.record_failure("erika", NOW, LockoutPolicy(), "test")
    assert time.monotonic() - started < 10  # bounded: never a hang
    message = str(caught.value)
    assert message.startswith("PostgreSQL: ") and SECRET not in message
    assert "\n" not in message
    # right after a failed connect the store does not even try: at once, the same error
    with pytest.raises(LockoutStoreUnavailable, match="not reachable"):
        store.locked_until("erika")
    for operation in (store.states, lambda: store.reset("erika"), lambda: store.lockouts("x")):
        with pytest.raises(LockoutStoreUnavailable) as caught:
            operation()
        assert SECRET not in str(caught.value)


def test_init_schema_without_a_server_raises_unavailable(tmp_path: Path) -> None:
    url = f"postgresql://postgres:{SECRET}@/portal?host={tmp_path}&port=5432"
    with pytest.raises(LockoutStoreUnavailable) as caught:
        init_schema(url, timeout=1)
    assert SECRET not in str(caught.value)


@pytest.fixture(scope="module")
def stoppable() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: its tests stop and start it."""
    with PostgresCluster() as cluster:
        yield cluster


def test_a_stopped_server_then_restarted_serves_the_same_store_again(
    stoppable: PostgresCluster,
) -> None:
    url = with_password(stoppable.url(stoppable.new_database()))
    init_schema(url)
    store = PostgresLockoutStore(url, timeout=1.0, retry_interval=0.2)
    policy = LockoutPolicy()
    assert store.record_failure("erika", NOW, policy, "before") == 1  # connected
    stoppable.stop()
    try:
        for operation in (
            lambda: store.record_failure("erika", NOW, policy, "while down"),
            lambda: store.locked_until("erika"),
            store.states,
        ):
            with pytest.raises(LockoutStoreUnavailable) as caught:
                operation()
            assert caught.value.__cause__ is None  # no psycopg traceback chained
            assert SECRET not in str(caught.value)
    finally:
        stoppable.start()

    def works() -> bool:
        try:
            return store.record_failure("erika", NOW, policy, "after") == 2
        except LockoutStoreUnavailable:
            return False

    deadline = time.monotonic() + 15
    while not works():
        assert time.monotonic() < deadline, "the store did not recover"
        time.sleep(0.1)
    # nothing was counted while the server was down, nothing twice after
    [state] = store.states()
    assert state.failures == 2
    assert [f.source for f in state.recent] == ["before", "after"]


def test_missing_schema_names_the_command(postgres: PostgresCluster) -> None:
    url = postgres.url(postgres.new_database())  # no init_schema
    store = PostgresLockoutStore(url)
    operations = (
        lambda: store.record_failure("erika", NOW, LockoutPolicy(), "test"),
        lambda: store.locked_until("erika"),
        lambda: store.lockouts("erika"),
        lambda: store.reset("erika"),
        store.states,
    )
    for operation in operations:
        with pytest.raises(LockoutStoreUnavailable, match="`ivr portal db init`"):
            operation()
    # and once the schema is there, the same store object works
    assert "migrated from version 0" in init_schema(url)
    assert store.record_failure("erika", NOW, LockoutPolicy(), "test") == 1


def test_init_schema_is_idempotent_and_keeps_the_data(postgres: PostgresCluster) -> None:
    url = postgres.url(postgres.new_database())
    assert init_schema(url) == f"lockout schema migrated from version 0 to {SCHEMA_VERSION}"
    store = PostgresLockoutStore(url)
    store.record_failure("erika", NOW, LockoutPolicy(), "kept")
    for _ in range(2):
        assert init_schema(url) == f"lockout schema is up to date (version {SCHEMA_VERSION})"
    [state] = store.states()
    assert state.failures == 1 and [f.source for f in state.recent] == ["kept"]


def test_concurrent_init_schema_runs_are_safe(postgres: PostgresCluster) -> None:
    """Nodes of several machines may run ``ivr portal db init`` at once (its docstring:
    "one migrator at a time, even from several machines")."""
    url = postgres.url(postgres.new_database())
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait(10)
        try:
            results.append(init_schema(url))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 8
    assert sum("migrated" in r for r in results) == 1, results
    assert PostgresLockoutStore(url).states() == []


def test_a_silent_server_stalls_one_operation_not_every_call() -> None:
    """A host that takes the connection but never answers (a hung server, a filtering
    firewall): the first operation waits its connect timeout, the next fail at once
    while a background probe keeps trying."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nobody ever speaks PostgreSQL
    try:
        port = silent.getsockname()[1]
        store = PostgresLockoutStore(
            f"postgresql://postgres@127.0.0.1:{port}/portal", timeout=1.0, retry_interval=0.2
        )
        started = time.monotonic()
        with pytest.raises(LockoutStoreUnavailable):
            store.locked_until("erika")
        first = time.monotonic() - started
        assert not store.reachable
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(LockoutStoreUnavailable, match="not reachable"):
                store.record_failure("erika", NOW, LockoutPolicy(), "x")
        later = time.monotonic() - started
        assert later < first  # 20 calls together cost less than the one that waited
        prober = store._prober
        assert prober is not None and prober.is_alive()
        store.close()  # stops the probe (after its current attempt)
        prober.join(10)
        assert not prober.is_alive()
    finally:
        silent.close()
