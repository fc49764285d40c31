"""Blocking profiles [Sperrprofil]: number ranges [Rufnummerngassen] and prefixes that
block incoming, outgoing or forwarded calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import phonenumbers

from ivr.portal.numbers import DEFAULT_REGION, prefix_to_e164, to_e164

#: the most digits an E.164 number has (ITU-T E.164)
E164_DIGITS = 15
_COUNTRY_CODES = tuple(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)

Direction = Literal["incoming", "outgoing", "forwarded"]


@dataclass(frozen=True, slots=True)
class NumberRule:
    """A prefix (``0900``) or an inclusive range of equal-length numbers
    (``030 1234000-030 1234999``), held as E.164 text."""

    text: str
    low: str
    high: str

    @classmethod
    def parse(cls, text: str, region: str = DEFAULT_REGION) -> NumberRule:
        """Parse ``"0900"`` or ``"0301234000-0301234999"``; ValueError when malformed
        or when the rule cannot match a real number (so it would never block)."""
        if "-" in text.strip().lstrip("+"):
            first, _, last = text.replace(" ", "").partition("-")
            low, high = prefix_to_e164(first, region), prefix_to_e164(last, region)
            if len(low) != len(high) or low > high:
                raise ValueError(f"range {text!r}: both ends need equal length, low <= high")
        else:
            low = high = prefix_to_e164(text, region)
        for end in {low, high}:
            problem = _unmatchable(end)
            if problem:
                raise ValueError(f"rule {text!r} cannot match a real number: {problem}")
        return cls(text, low, high)

    def matches(self, e164: str) -> bool:
        """True when ``e164`` starts with the prefix or falls in the range."""
        head = e164[: len(self.low)]
        return self.low <= head <= self.high


@dataclass(frozen=True, slots=True)
class BlockingProfile:
    """Rules per direction; an empty profile blocks nothing."""

    name: str = ""
    incoming: tuple[NumberRule, ...] = field(default=())
    outgoing: tuple[NumberRule, ...] = field(default=())
    forwarded: tuple[NumberRule, ...] = field(default=())

    def blocks(self, direction: Direction, number: str, region: str = DEFAULT_REGION) -> bool:
        """True when ``number`` (any format) is blocked for ``direction``.

        A number that cannot be normalised matches no rule (validate numbers first)."""
        e164 = to_e164(number, region)
        if e164 is None:
            return False
        return any(rule.matches(e164) for rule in getattr(self, direction))


def _unmatchable(prefix: str) -> str | None:
    """Why no E.164 number can begin with ``prefix`` (``+4990...``), or None."""
    digits = prefix[1:]
    if len(digits) > E164_DIGITS:
        return f"{prefix} is longer than any phone number ({E164_DIGITS} digits)"
    if not any(code.startswith(digits) or digits.startswith(code) for code in _COUNTRY_CODES):
        return f"{prefix} begins with no country code"
    return None
