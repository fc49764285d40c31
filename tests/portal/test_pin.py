"""Voicemail PINs: the passcode rules (each refusal names its rule, never the PIN),
salted argon2id hashing and verification that never raises."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from ivr.portal.pin import (
    MAX_LENGTH,
    MIN_LENGTH,
    PRODUCTION_HASHER,
    TEST_HASHER,
    PinRuleError,
    check_pin_rules,
    hash_pin,
    verify_pin,
)

ERIKA_NUMBERS = ["+49 171 1234567", "+49 89 1234567"]
#: a number whose tail is no run, so the own-number rule is the one that refuses
OWN = "+49 171 9518273"

LENGTH = "4 to 8 digits"
DIGITS = "digits 0-9 only"
REPEATED = "one digit repeated"
REPEATS = "repeated digits: a PIN must not contain the same digit more than 2 times"
RUN = "run of more than 2 digits"
OWN_NUMBER = "last digits of your own numbers"


def refusal(pin: str, numbers: list[str] | None = None) -> str:
    with pytest.raises(PinRuleError) as info:
        check_pin_rules(pin, numbers if numbers is not None else [OWN])
    message = str(info.value)
    assert pin not in message, f"the refusal shows the PIN: {message!r}"
    return message


def test_limits_are_four_to_eight() -> None:
    assert (MIN_LENGTH, MAX_LENGTH) == (4, 8)


@pytest.mark.parametrize("pin", ["9", "13", "135", "13579135", "135791357", "1357913579135"])
def test_length(pin: str) -> None:
    if MIN_LENGTH <= len(pin) <= MAX_LENGTH:
        check_pin_rules(pin, [OWN])
    else:
        assert LENGTH in refusal(pin)


@pytest.mark.parametrize("pin", ["13a5", "1357 ", " 1357", "13-57", "+1357", "1357#", "٤٧١١"])
def test_digits_only(pin: str) -> None:
    assert DIGITS in refusal(pin)


def test_an_empty_pin_is_refused() -> None:
    with pytest.raises(PinRuleError, match="digits"):
        check_pin_rules("", [OWN])


@pytest.mark.parametrize("pin", ["1111", "0000", "99999", "77777777"])
def test_one_digit_repeated(pin: str) -> None:
    assert REPEATED in refusal(pin)


@pytest.mark.parametrize("pin", ["51111", "22229", "1000", "90008", "3777", "13572224", "1355513"])
def test_a_run_of_three_equal_digits_is_refused(pin: str) -> None:
    assert REPEATS in refusal(pin)


@pytest.mark.parametrize("pin", ["1155", "9229", "50050", "11335577"])
def test_pairs_of_equal_digits_are_allowed(pin: str) -> None:
    check_pin_rules(pin, [OWN])


def test_the_repeat_limit_is_configurable() -> None:
    check_pin_rules("51113", [OWN], max_repeat=3)
    with pytest.raises(PinRuleError, match="more than 1 times"):
        check_pin_rules("5113", [OWN], max_repeat=1)
    with pytest.raises(PinRuleError, match="more than 3 times"):
        check_pin_rules("511113", [OWN], max_repeat=3)


@pytest.mark.parametrize(
    "pin", ["1234", "5678", "0123", "6789", "4321", "9876", "3210", "9512345", "135654"]
)
def test_ascending_and_descending_runs(pin: str) -> None:
    assert RUN in refusal(pin)


@pytest.mark.parametrize("pin", ["1243", "9786", "12135", "2413"])
def test_runs_of_two_are_allowed(pin: str) -> None:
    check_pin_rules(pin, [OWN])


@pytest.mark.parametrize("pin", ["8273", "3728", "18273", "37281", "9518273", "3728159"])
def test_own_numbers_last_digits_forwards_and_reversed(pin: str) -> None:
    assert OWN_NUMBER in refusal(pin, [OWN])
    check_pin_rules(pin, ["+49 30 5550101"])  # fine for someone else


def test_every_own_number_counts() -> None:
    assert OWN_NUMBER in refusal("8273", ["+49 30 5550101", OWN])
    assert OWN_NUMBER in refusal("8273", ["0171 9518273"])  # any format


@pytest.mark.parametrize("pin", ["4567", "7654", "234567", "765432"])
def test_erikas_number_tail_is_refused(pin: str) -> None:
    """+49 171 1234567: its tails are runs too, so either rule may name itself."""
    message = refusal(pin, ERIKA_NUMBERS)
    assert RUN in message or OWN_NUMBER in message


@pytest.mark.parametrize("pin", ["4711", "2580", "1357", "13579", "90281", "24680135"])
def test_good_pins_are_accepted(pin: str) -> None:
    check_pin_rules(pin, ERIKA_NUMBERS)
    check_pin_rules(pin, [OWN])
    check_pin_rules(pin)


def test_the_rule_error_is_a_value_error() -> None:
    assert issubclass(PinRuleError, ValueError)


# --- hashing ---------------------------------------------------------------------------
def test_hash_is_argon2id_and_does_not_contain_the_pin() -> None:
    digest = hash_pin("4711", TEST_HASHER)
    assert digest.startswith("$argon2id$v=19$")
    assert "4711" not in digest


def test_two_hashes_of_one_pin_differ_by_salt() -> None:
    first, second = hash_pin("4711", TEST_HASHER), hash_pin("4711", TEST_HASHER)
    assert first != second
    salt = lambda digest: digest.split("$")[4]  # noqa: E731
    assert salt(first) != salt(second)
    assert verify_pin(first, "4711", TEST_HASHER) and verify_pin(second, "4711", TEST_HASHER)


def test_verify_right_and_wrong() -> None:
    digest = hash_pin("4711", TEST_HASHER)
    assert verify_pin(digest, "4711", TEST_HASHER) is True
    for wrong in ("4712", "0000", "47110", "471", "", "4711 "):
        assert verify_pin(digest, wrong, TEST_HASHER) is False


def test_verify_reads_the_parameters_from_the_hash() -> None:
    """A hash made with other parameters verifies with any hasher (the hash says how)."""
    digest = hash_pin("2580", TEST_HASHER)
    assert verify_pin(digest, "2580", PasswordHasher(time_cost=2, memory_cost=16))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "4711",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$",
        "$argon2id$v=19$m=8,t=1,p=1$!!!!$!!!!",
        "$2b$12$abcdefghijklmnopqrstuv",
    ],
)
def test_verify_with_a_garbage_hash_is_false(garbage: str) -> None:
    assert verify_pin(garbage, "4711", TEST_HASHER) is False


def test_verify_with_a_truncated_hash_is_false() -> None:
    digest = hash_pin("4711", TEST_HASHER)
    assert verify_pin(digest[:-5], "4711", TEST_HASHER) is False
    assert verify_pin(digest.replace("argon2id", "argon2i"), "4711", TEST_HASHER) is False


def test_verify_with_a_non_ascii_hash_is_false() -> None:
    digest = hash_pin("4711", TEST_HASHER)
    assert verify_pin(digest + "é", "4711", TEST_HASHER) is False


def test_production_hasher_is_memory_hard_argon2id() -> None:
    digest = hash_pin("4711")  # the default: PRODUCTION_HASHER (~0.1 s)
    assert digest.startswith("$argon2id$v=19$m=65536,")
    params = dict(part.split("=") for part in digest.split("$")[3].split(","))
    assert int(params["m"]) == 65536 == PRODUCTION_HASHER.memory_cost
    assert int(params["t"]) >= 2
    assert "4711" not in digest
    assert verify_pin(digest, "4711", TEST_HASHER)
    assert TEST_HASHER.memory_cost < PRODUCTION_HASHER.memory_cost
