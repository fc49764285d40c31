"""Phone numbers: normalise what callers present to E.164 (via ``phonenumbers``), and
turn dialled prefixes and ranges into E.164 prefixes for blocking rules.

Every number field — a caller's number, directory numbers, blocking rules, the portal's
number — takes the same characters: ASCII digits, one leading ``+``, and the usual
separators (space, ``-``, ``/``, ``.``, parentheses). Anything else is refused the same
way everywhere: letters (no vanity mapping), and digits of other scripts (fullwidth
digits, Arabic-Indic digits), which ``phonenumbers`` would silently read as ASCII while
a blocking rule written with them never matched — a fail-open."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "DE"


def to_e164(number: object, region: str = DEFAULT_REGION) -> str | None:
    """``"0171 1234567"``, ``"0049 171 1234567"``, ``"+49 (171) 123-4567"`` ->
    ``"+491711234567"``; None when it is not a possible phone number or has characters
    a number field does not take (see the module docstring)."""
    if not isinstance(number, str) or not is_number_text(number):
        return None
    return _to_e164(number, region)


def valid_e164(number: object, region: str = DEFAULT_REGION) -> str | None:
    """Like :func:`to_e164`, but only for numbers ``phonenumbers`` knows to be assigned
    in their country's plan (valid, not merely of a possible length): ``000`` and
    ``0900123456`` are not, ``+49 900 1234567`` is."""
    e164 = to_e164(number, region)
    if e164 is None or not phonenumbers.is_valid_number(phonenumbers.parse(e164)):
        return None
    return e164


def is_number_text(text: str) -> bool:
    """Whether ``text`` holds only what a number field takes (and some digit)."""
    return bool(_NUMBER_TEXT.fullmatch(text.strip())) and any(c.isdigit() for c in text)


_NUMBER_TEXT = re.compile(r"\+?[0-9 ()\-/.]+", re.ASCII)


@lru_cache(maxsize=4096)  # parsing costs ~50 µs; callers and dialled numbers repeat
def _to_e164(number: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def prefix_to_e164(prefix: str, region: str = DEFAULT_REGION) -> str:
    """A dialled prefix as an E.164 prefix: ``"0900"`` -> ``"+49900"``,
    ``"0049"`` -> ``"+49"``, ``"+4930"`` stays. Raises ValueError for other text."""
    if not is_number_text(prefix):
        raise ValueError(f"not a number prefix: {prefix!r} (ASCII digits, a leading +)")
    digits = "".join(ch for ch in prefix if ch == "+" or ch.isdigit())
    if digits.startswith("+") and digits[1:].isdigit():
        return digits
    if not digits.isdigit():
        raise ValueError(f"not a number prefix: {prefix!r}")
    if digits.startswith("00"):
        if len(digits) == 2:
            raise ValueError(f"not a number prefix: {prefix!r} (a country code must follow)")
        return "+" + digits[2:]
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    national = (metadata.national_prefix if metadata else None) or "0"
    if digits.startswith(national):
        return f"+{phonenumbers.country_code_for_region(region)}{digits[len(national) :]}"
    raise ValueError(
        f"prefix {prefix!r} is neither international (+, 00) nor national ({national}...)"
    )
