"""Blocking profiles [Sperrprofil]: prefixes and number ranges [Rufnummerngassen] per
direction; numbers in any format; malformed rules refused."""

from __future__ import annotations

import pytest

from ivr.portal.blocking import BlockingProfile, NumberRule

PREMIUM = BlockingProfile(name="Standard", outgoing=(NumberRule.parse("0900"),))
RANGE = BlockingProfile(incoming=(NumberRule.parse("0301234000-0301234999"),))


@pytest.mark.parametrize(
    "number",
    ["0900 123456", "0900123456", "+49 900 123456", "0049 900 123456", "+49 (900) 123-456"],
)
def test_a_prefix_blocks_outgoing_in_any_format(number: str) -> None:
    assert PREMIUM.blocks("outgoing", number)


@pytest.mark.parametrize("direction", ["incoming", "forwarded"])
def test_an_outgoing_rule_does_not_block_other_directions(direction: str) -> None:
    assert not PREMIUM.blocks(direction, "0900 123456")  # type: ignore[arg-type]


@pytest.mark.parametrize("number", ["0901 123456", "030 900123", "+43 900 123456", "0171 9001234"])
def test_a_prefix_blocks_only_numbers_beginning_with_it(number: str) -> None:
    assert not PREMIUM.blocks("outgoing", number)


def test_rule_text_and_e164_bounds() -> None:
    rule = NumberRule.parse("0900")
    assert (rule.text, rule.low, rule.high) == ("0900", "+49900", "+49900")
    rule = NumberRule.parse("0301234000-0301234999")
    assert (rule.low, rule.high) == ("+49301234000", "+49301234999")
    assert NumberRule.parse("030 1234000 - 030 1234999") == NumberRule(
        "030 1234000 - 030 1234999", "+49301234000", "+49301234999"
    )


@pytest.mark.parametrize(
    ("number", "blocked"),
    [
        ("030 1234000", True),  # lower boundary
        ("030 1234999", True),  # upper boundary
        ("030 1234500", True),
        ("+49 30 1234567", True),
        ("0049301234321", True),
        ("030 1233999", False),  # just below
        ("030 1235000", False),  # just above
        ("030 9999999", False),
        ("040 1234500", False),
    ],
)
def test_range_inside_outside_and_boundaries(number: str, blocked: bool) -> None:
    assert RANGE.blocks("incoming", number) is blocked
    assert not RANGE.blocks("outgoing", number)


def test_a_range_covers_longer_numbers_within_it() -> None:
    """Ranges compare the leading digits: an extension behind a blocked number is blocked."""
    assert RANGE.blocks("incoming", "030 1234500 12")


def test_an_empty_profile_blocks_nothing() -> None:
    empty = BlockingProfile()
    for direction in ("incoming", "outgoing", "forwarded"):
        assert not empty.blocks(direction, "0900 123456")  # type: ignore[arg-type]


def test_several_rules_and_directions() -> None:
    profile = BlockingProfile(
        incoming=(NumberRule.parse("0171"),),
        outgoing=(NumberRule.parse("0900"), NumberRule.parse("0137")),
        forwarded=(NumberRule.parse("+44"),),
    )
    assert profile.blocks("incoming", "+49 171 1234567")
    assert profile.blocks("outgoing", "0137 1234567")
    assert profile.blocks("outgoing", "0900 5555555")
    assert not profile.blocks("outgoing", "0171 1234567")
    assert profile.blocks("forwarded", "0044 20 7946 0000")
    assert not profile.blocks("incoming", "0044 20 7946 0000")


@pytest.mark.parametrize("number", ["", "garbage", "+", "0", "12ab", "0000000000000000000"])
def test_unparsable_numbers_are_not_blocked(number: str) -> None:
    everything = BlockingProfile(
        incoming=(NumberRule.parse("0049"), NumberRule.parse("+1")),
        outgoing=(NumberRule.parse("0049"),),
    )
    assert not everything.blocks("incoming", number)
    assert not everything.blocks("outgoing", number)


@pytest.mark.parametrize(
    "rule",
    [
        "",
        "abc",
        "09x0",
        "4100",  # neither international nor national
        "0301234999-0301234000",  # low > high
        "030123-0301234999",  # ends of different length
        "0301234000-",
        "-0301234999",
        "0301234000-abc",
        "+",
    ],
)
def test_malformed_rules_raise_value_error(rule: str) -> None:
    with pytest.raises(ValueError):
        NumberRule.parse(rule)


def test_the_error_names_the_malformed_range() -> None:
    with pytest.raises(ValueError, match="'0301234999-0301234000'"):
        NumberRule.parse("0301234999-0301234000")
    with pytest.raises(ValueError, match="'09x0'"):
        NumberRule.parse("09x0")


def test_rules_use_the_region() -> None:
    rule = NumberRule.parse("0900", region="AT")
    assert rule.low == "+43900"
    profile = BlockingProfile(outgoing=(rule,))
    assert profile.blocks("outgoing", "0900 123456", region="AT")
    assert not profile.blocks("outgoing", "0900 123456")  # +49 900 in Germany
