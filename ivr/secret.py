"""A value that must never be shown: PINs and other secret input."""

from __future__ import annotations

import hmac

MASK = "•"


class Secret:
    """Wraps secret digits. ``str``/``repr`` are masked; ``reveal()`` gives the value.

    Comparison with ``==`` runs in constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: use it, never log it."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(Secret)

    def __str__(self) -> str:
        return MASK * 4

    def __repr__(self) -> str:
        return "Secret('****')"

    def __format__(self, spec: str) -> str:
        return str(self)
