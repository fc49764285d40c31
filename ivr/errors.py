"""The error hierarchy, split by who is to blame.

- :class:`DialplanError` — the dialplan file's author (bad YAML, unknown state, ...).
- :class:`UnexpectedEventError` — a runtime fed an event that cannot happen now.
- :class:`HookError` — an application hook raised or returned something unusable.
- :class:`CallControlError` — a pull or call-back failed in a way the dialplan has no
  branch for.
"""

from __future__ import annotations

from dataclasses import dataclass


class IvrError(Exception):
    """Base of every error this library raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of validation: an error or a warning at a place in a file."""

    message: str
    file: str = ""
    line: int = 0
    column: int = 0
    path: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where = f"{where}:{self.line}:{self.column}"
        parts = [p for p in (where, self.path) if p]
        prefix = ": ".join(parts)
        label = "" if self.severity == "error" else f"{self.severity}: "
        return f"{prefix}: {label}{self.message}" if prefix else f"{label}{self.message}"


class DialplanError(IvrError):
    """A dialplan (or prompt catalog) is broken; carries every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))


class UnexpectedEventError(IvrError):
    """An event arrived that the dialogue cannot accept in its current state."""


class HookError(IvrError):
    """An application hook raised, or returned a result the dialplan has no branch for."""


class CallControlError(IvrError):
    """A pull or dial ended with a result the dialplan has no branch for."""
