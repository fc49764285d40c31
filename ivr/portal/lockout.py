"""Consecutive PIN failures across calls, and the lockout they cause.

A small store interface with two implementations: :class:`SqliteLockoutStore` (the
default: survives a restart, one file shared by the processes of one host) and
:class:`MemoryLockoutStore` (tests, the simulator). Times are seconds from the
runtime's clock (virtual in the simulator).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """``failures`` consecutive wrong PINs lock an employee for ``seconds``."""

    failures: int = 5
    seconds: float = 15 * 60


class LockoutStore(Protocol):
    """Where failure counts and lockouts live."""

    def locked_until(self, employee: str) -> float:
        """When the employee's lockout ends (0 when never locked)."""

    def record_failure(self, employee: str, now: float, policy: LockoutPolicy) -> int:
        """Count one failure; lock when the policy's count is reached. Returns the count."""

    def reset(self, employee: str) -> None:
        """A correct PIN (or an admin's unlock): forget failures and lockout."""


class MemoryLockoutStore:
    """Lockouts in a dict (per process; for tests and the simulator)."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._locked: dict[str, float] = {}

    def locked_until(self, employee: str) -> float:
        return self._locked.get(employee, 0.0)

    def record_failure(self, employee: str, now: float, policy: LockoutPolicy) -> int:
        count = self._failures.get(employee, 0) + 1
        if count >= policy.failures:
            # never shorten a lock (a clock stepped back, a late failure): as SQLite does
            self._locked[employee] = max(self._locked.get(employee, 0.0), now + policy.seconds)
            count = 0
        self._failures[employee] = count
        return count

    def reset(self, employee: str) -> None:
        self._failures.pop(employee, None)
        self._locked.pop(employee, None)


class SqliteLockoutStore:
    """Lockouts in an SQLite file; each operation is its own short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS lockout ("
                " employee TEXT PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0,"
                " locked_until REAL NOT NULL DEFAULT 0)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level="IMMEDIATE")

    def locked_until(self, employee: str) -> float:
        with self._connect() as db:
            row = db.execute(
                "SELECT locked_until FROM lockout WHERE employee = ?", (employee,)
            ).fetchone()
        return float(row[0]) if row else 0.0

    def record_failure(self, employee: str, now: float, policy: LockoutPolicy) -> int:
        with self._connect() as db:
            row = db.execute(
                "SELECT failures FROM lockout WHERE employee = ?", (employee,)
            ).fetchone()
            count = (row[0] if row else 0) + 1
            locked = 0.0
            if count >= policy.failures:
                locked, count = now + policy.seconds, 0
            db.execute(
                "INSERT INTO lockout (employee, failures, locked_until) VALUES (?, ?, ?)"
                " ON CONFLICT(employee) DO UPDATE SET failures = excluded.failures,"
                " locked_until = MAX(lockout.locked_until, excluded.locked_until)",
                (employee, count, locked),
            )
        return count

    def reset(self, employee: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM lockout WHERE employee = ?", (employee,))
