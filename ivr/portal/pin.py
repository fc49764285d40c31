"""Voicemail PINs: memory-hard hashing (argon2id), constant-time verification, and the
passcode rules BroadWorks-based voice portals enforce when a PIN is set."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 4
MAX_LENGTH = 8
#: the longest ascending or descending run allowed (1-2-3 is a run of 3: refused)
MAX_RUN = 2
#: the longest run of one digit allowed by default (5-1-1-1 has a run of 3: refused)
DEFAULT_MAX_REPEAT = 2

#: production parameters: argon2-cffi's defaults (RFC 9106 low-memory profile, 64 MiB)
PRODUCTION_HASHER = PasswordHasher()
#: the smallest parameters argon2 accepts: for tests and benchmarks only
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class PinRuleError(ValueError):
    """A new PIN breaks a passcode rule; the message names the rule (never the PIN)."""


def hash_pin(pin: str, hasher: PasswordHasher = PRODUCTION_HASHER) -> str:
    """The argon2id hash of ``pin`` (with a random salt)."""
    return hasher.hash(pin)


def verify_pin(pin_hash: str, pin: str, hasher: PasswordHasher = PRODUCTION_HASHER) -> bool:
    """True when ``pin`` matches ``pin_hash`` (argon2 compares in constant time)."""
    try:
        return hasher.verify(pin_hash, pin)
    except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeError):
        return False


def check_pin_rules(
    pin: str, own_numbers: Iterable[str] = (), max_repeat: int = DEFAULT_MAX_REPEAT
) -> None:
    """Raise :class:`PinRuleError` naming the first rule ``pin`` breaks.

    Rules: 4-8 digits; not one digit repeated; no run of more than ``max_repeat`` equal
    digits; no ascending or descending run of more than 2 digits; not the last digits
    of one of the employee's own numbers, forwards or reversed.
    """
    if not pin.isdigit() or not pin.isascii():
        raise PinRuleError("a PIN consists of digits 0-9 only")
    if not MIN_LENGTH <= len(pin) <= MAX_LENGTH:
        raise PinRuleError(f"a PIN has {MIN_LENGTH} to {MAX_LENGTH} digits")
    if len(set(pin)) == 1:
        raise PinRuleError("a PIN must not be one digit repeated")
    longest_repeat = max(len(list(group)) for _, group in itertools.groupby(pin))
    if longest_repeat > max_repeat:
        raise PinRuleError(
            f"repeated digits: a PIN must not contain the same digit more than {max_repeat} "
            "times in a row"
        )
    run_up = run_down = 1
    for previous, current in itertools.pairwise(pin):
        step = int(current) - int(previous)
        run_up = run_up + 1 if step == 1 else 1
        run_down = run_down + 1 if step == -1 else 1
        if max(run_up, run_down) > MAX_RUN:
            raise PinRuleError(
                "sequential digits: a PIN must not contain an ascending or descending run "
                f"of more than {MAX_RUN} digits"
            )
    for number in own_numbers:
        digits = "".join(ch for ch in number if ch.isdigit())
        tail = digits[-len(pin) :]
        if len(tail) == len(pin) and pin in (tail, tail[::-1]):
            raise PinRuleError(
                "own number: a PIN must not be the last digits of your own numbers, "
                "forwards or reversed"
            )
