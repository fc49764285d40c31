"""Phone numbers: normalise what callers present to E.164 (via ``phonenumbers``), and
turn dialled prefixes and ranges into E.164 prefixes for blocking rules."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "DE"


def to_e164(number: object, region: str = DEFAULT_REGION) -> str | None:
    """``"0171 1234567"``, ``"0049 171 1234567"``, ``"+49 (171) 123-4567"`` ->
    ``"+491711234567"``; None when it is not a possible phone number (letters included:
    no vanity mapping of ``abc`` to digits)."""
    if not isinstance(number, str) or not number.strip() or _LETTERS.search(number):
        return None
    return _to_e164(number, region)


_LETTERS = re.compile(r"[^\W\d_]")


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
    digits = prefix.replace(" ", "").replace("-", "")
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
