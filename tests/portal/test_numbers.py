"""Phone numbers: every format a caller presents normalises to one E.164 number; dialled
prefixes become E.164 prefixes for blocking rules."""

from __future__ import annotations

import pytest

from ivr.portal.numbers import prefix_to_e164, to_e164

ERIKA = "+491711234567"


@pytest.mark.parametrize(
    "number",
    [
        "+49 171 1234567",
        "0049 171 1234567",
        "01711234567",
        "+49 (171) 123-4567",
        "0171 1234567",
        "0171/1234567",
        "+491711234567",
    ],
)
def test_every_format_of_one_number_is_the_same_e164(number: str) -> None:
    assert to_e164(number) == ERIKA


def test_other_numbers_stay_different() -> None:
    assert to_e164("+49 89 1234567") == "+49891234567"
    assert to_e164("030 1234567") == "+49301234567"
    assert to_e164("0171 1234568") != ERIKA


def test_the_region_decides_what_a_national_number_means() -> None:
    assert to_e164("01711234567", "DE") == ERIKA
    assert to_e164("01 234 5678", "AT") == "+4312345678"
    # international formats do not depend on the region
    assert to_e164("+49 171 1234567", "AT") == ERIKA


@pytest.mark.parametrize(
    "junk", ["", "   ", "abc", "garbage", "+", "0", "0000000000000000000", "+999 123"]
)
def test_garbage_and_empty_are_none(junk: str) -> None:
    assert to_e164(junk) is None


@pytest.mark.parametrize("value", [None, 4711, 491711234567, 1.5])
def test_non_strings_are_none(value: object) -> None:
    assert to_e164(value) is None  # type: ignore[arg-type]


def test_unhashable_non_strings_are_none_too() -> None:
    assert to_e164(["+49 171 1234567"]) is None  # type: ignore[arg-type]


def test_trailing_letters_never_make_a_different_number() -> None:
    assert to_e164("+49 171 1234567 abc") in (None, ERIKA)


# --- prefixes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prefix", "e164"),
    [
        ("0900", "+49900"),
        ("0137", "+49137"),
        ("0049", "+49"),
        ("0049 30", "+4930"),
        ("0043 1", "+431"),
        ("+4930", "+4930"),
        ("+49 30", "+4930"),
        ("+49-30", "+4930"),
        ("030 1234", "+49301234"),
    ],
)
def test_prefix_to_e164(prefix: str, e164: str) -> None:
    assert prefix_to_e164(prefix) == e164


def test_prefix_uses_the_regions_national_prefix() -> None:
    assert prefix_to_e164("0900", "AT") == "+43900"
    assert prefix_to_e164("1900", "US") == "+1900"
    with pytest.raises(ValueError, match="national"):
        prefix_to_e164("0900", "US")


@pytest.mark.parametrize("text", ["abc", "09x0", "0900a", "+49a", "", "+", "not a prefix"])
def test_letters_and_empty_prefixes_are_a_value_error(text: str) -> None:
    with pytest.raises(ValueError) as info:
        prefix_to_e164(text)
    assert repr(text) in str(info.value)  # the message names what was given


def test_a_prefix_that_is_neither_international_nor_national_is_refused() -> None:
    with pytest.raises(ValueError, match="neither international"):
        prefix_to_e164("4100")


def test_a_bare_international_prefix_is_refused_like_plus() -> None:
    with pytest.raises(ValueError):
        prefix_to_e164("+")
    with pytest.raises(ValueError):
        prefix_to_e164("00")
