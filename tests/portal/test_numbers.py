"""Phone numbers: every format a caller presents normalises to one E.164 number; dialled
prefixes become E.164 prefixes for blocking rules."""

from __future__ import annotations

import pytest

from ivr.portal.numbers import is_number_text, prefix_to_e164, to_e164, valid_e164

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


# --- one character policy for every number field ----------------------------------------
#: digits of other scripts (fullwidth, Arabic-Indic, Devanagari, superscript), letters
#: and control characters: refused by every number field alike
FOREIGN = [
    "\uff10\uff11\uff17\uff11 1234567",  # fullwidth 0171
    "+\uff14\uff19 171 1234567",  # fullwidth 49
    "+49 171 \u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic-Indic 1234567
    "0171 \u0967\u0968\u0969\u096a\u096b\u096c\u096d",  # Devanagari 1234567
    "0171 123456\u00b2",  # superscript two
    "0171\n1234567",  # a line break inside the field
    "0171 1234567\x00",
    "0171 CALLNOW",
]


@pytest.mark.parametrize("text", FOREIGN)
def test_every_number_field_refuses_the_same_characters(text: str) -> None:
    from ivr.portal.blocking import NumberRule
    from ivr.portal.directory import Employee

    assert to_e164(text) is None  # a caller's number
    with pytest.raises(ValueError):
        NumberRule.parse(text)  # a blocking rule
    with pytest.raises(ValueError):
        Employee(name="E", group="G", numbers=(text,))  # a directory number
    assert not is_number_text(text)  # the portal's number and number block use this too


@pytest.mark.parametrize(
    "text", ["0171 1234567", "+49 (171) 123-4567", "0171/1234567", "0171.123.4567", " 01711234567 "]
)
def test_every_number_field_takes_the_same_separators(text: str) -> None:
    from ivr.portal.blocking import NumberRule
    from ivr.portal.directory import Employee

    assert to_e164(text) == ERIKA
    if "-" not in text:  # in a blocking rule, "-" joins the ends of a range
        assert NumberRule.parse(text).low == ERIKA
    assert Employee(name="E", group="G", numbers=(text,)).e164_numbers() == [ERIKA]
    assert is_number_text(text)


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("000", None),
        ("0900123456", None),  # too short for a German premium-rate number
        ("09001234567", "+499001234567"),
        ("0049 30 1234567", "+49301234567"),
        ("+49 30 1234567", "+49301234567"),
        ("0123", None),
    ],
)
def test_valid_numbers_are_assigned_in_their_plan(number: str, valid: str | None) -> None:
    assert valid_e164(number) == valid
