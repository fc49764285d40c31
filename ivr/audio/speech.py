"""Spoken parameter values as sequences of pre-rendered fragments (German).

Nothing is synthesised during a call: a number, digits, DTMF keys or a time are spoken
by joining fragments rendered ahead of time — ``*11`` is „Stern eins eins", ``2345``
is „zwei tausend drei hundert fünfundvierzig", ``14:30`` „vierzehn Uhr dreißig".
"""

from __future__ import annotations

from datetime import datetime, time
from functools import cache
from typing import Any

from num2words import num2words

from ivr.errors import IvrError

_KEYS = {"*": "Stern", "#": "Raute", "+": "plus", "A": "A", "B": "B", "C": "C", "D": "D"}
MAX_NUMBER = 999_999


class SpeechError(IvrError):
    """A parameter value cannot be spoken from fragments."""


@cache
def number_word(n: int) -> str:
    """German word for 0..99."""
    return str(num2words(n, lang="de"))


def fragments() -> list[str]:
    """Every fragment text that parameters can need (rendered ahead of time)."""
    words = [number_word(n) for n in range(100)]
    return sorted({*words, "ein", "hundert", "tausend", "Uhr", *_KEYS.values()})


def speak(kind: str, value: Any) -> list[str]:
    """The fragment texts that speak ``value`` as parameter type ``kind``."""
    if kind == "digits":
        return [_key(ch) for ch in str(value) if not ch.isspace()]
    if kind == "keys":
        return [_key(ch) for ch in str(value)]
    if kind == "number":
        return _number(value)
    if kind == "time":
        return _time(value)
    raise SpeechError(f"a {kind} parameter cannot be spoken from fragments ({value!r})")


def _key(ch: str) -> str:
    if ch.isdigit():
        return number_word(int(ch))
    if ch in _KEYS:
        return _KEYS[ch]
    raise SpeechError(f"cannot speak the character {ch!r}")


def _number(value: Any) -> list[str]:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise SpeechError(f"not a whole number: {value!r}") from None
    if not 0 <= n <= MAX_NUMBER:
        raise SpeechError(f"numbers are spoken from 0 to {MAX_NUMBER}, not {n}")
    words: list[str] = []
    thousands, rest = divmod(n, 1000)
    if thousands:
        words += [*_below_thousand(thousands, prefix=True), "tausend"]
    if rest or not thousands:
        words += _below_thousand(rest, prefix=False)
    return words


def _below_thousand(n: int, *, prefix: bool) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words: list[str] = []
    if hundreds:
        words += ["ein" if hundreds == 1 else number_word(hundreds), "hundert"]
    if rest:
        words.append("ein" if rest == 1 and prefix else number_word(rest))
    elif not hundreds:
        words.append(number_word(0))
    return words


def _time(value: Any) -> list[str]:
    if isinstance(value, datetime):
        value = value.time()
    if isinstance(value, str):
        try:
            value = time.fromisoformat(value)
        except ValueError:
            raise SpeechError(f"not a time of day (HH:MM): {value!r}") from None
    if not isinstance(value, time):
        raise SpeechError(f"not a time of day: {value!r}")
    words = [*_number(value.hour), "Uhr"]
    return words + (_number(value.minute) if value.minute else [])
