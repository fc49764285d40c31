"""The YAML directory: 1 to 5 parallel-ringing numbers that are phone numbers, owned by
one employee each; PIN hashes only; lookup by E.164; writing a hash keeps the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.errors import DialplanError, Problem
from ivr.portal.directory import Employee, YamlDirectory
from ivr.portal.pin import TEST_HASHER, hash_pin, verify_pin
from tests.conftest import PORTAL_EXAMPLES


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "directory.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def employee(numbers: str, extra: str = "") -> str:
    """One employee 'x'; ``numbers`` is at line 5, column 14."""
    return f"employees:\n  x:\n    name: X\n    group: G\n    numbers: {numbers}\n{extra}"


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(DialplanError) as info:
        YamlDirectory.load(path)
    return info.value.problems


def copy_examples(tmp_path: Path) -> Path:
    shutil.copy(PORTAL_EXAMPLES / "directory.yaml", tmp_path / "directory.yaml")
    return tmp_path / "directory.yaml"


# --- the example -----------------------------------------------------------------------
def test_the_example_directory() -> None:
    book = YamlDirectory.load(PORTAL_EXAMPLES / "directory.yaml")
    assert sorted(book.employees) == ["erika", "hans", "max"]
    erika = book.employees["erika"]
    assert (erika.id, erika.name, erika.group, erika.area) == (
        "erika",
        "Erika Mustermann",
        "Zentrale",
        "Vertrieb",
    )
    assert erika.e164_numbers() == ["+491711234567", "+49891234567"]
    assert [d.id for d in erika.devices] == ["erika-desk", "erika-soft"]
    assert book.employees["max"].area is None
    assert all((e.pin_hash or "").startswith("$argon2id$") for e in book)


def test_find_by_number_takes_e164() -> None:
    book = YamlDirectory.load(PORTAL_EXAMPLES / "directory.yaml")
    found = book.find_by_number("+491711234567")
    assert found is not None and found.id == "erika"
    found = book.find_by_number("+49891234567")
    assert found is not None and found.id == "erika"  # her second number
    found = book.find_by_number("+49301234567")
    assert found is not None and found.id == "max"
    found = book.find_by_number("+491605550101")
    assert found is not None and found.id == "hans"
    assert book.find_by_number("+491711234568") is None
    assert book.find_by_number("0171 1234567") is None  # normalise first


def test_get() -> None:
    book = YamlDirectory.load(PORTAL_EXAMPLES / "directory.yaml")
    found = book.get("max")
    assert found is not None and found.name == "Max Muster"
    assert book.get("nobody") is None


def test_numbers_in_any_format_are_found(tmp_path: Path) -> None:
    path = write(tmp_path, employee("['0049 30 1234567', '0171/9876543', '+49 (89) 55-501']"))
    book = YamlDirectory.load(path)
    for e164 in ("+49301234567", "+491719876543", "+498955501"):
        assert (found := book.find_by_number(e164)) is not None and found.id == "x"


# --- numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("numbers", "count"),
    [
        ("[]", 0),
        ("['+4930 1', '+4930 2', '+4930 3', '+4930 4', '+4930 5', '+4930 6']", 6),
    ],
)
def test_zero_or_six_numbers_are_errors_at_their_place(
    tmp_path: Path, numbers: str, count: int
) -> None:
    path = write(tmp_path, employee(numbers))
    (problem,) = problems_of(path)
    assert str(problem) == (
        f"{path}:5:14: employees.x.numbers: {count} parallel-ringing numbers: "
        "between 1 and 5 are allowed"
    )


def test_block_style_list_is_located_too(tmp_path: Path) -> None:
    items = "".join(f"      - '+4930 {i}'\n" for i in range(6))
    path = write(tmp_path, "employees:\n  x:\n    name: X\n    group: G\n    numbers:\n" + items)
    (problem,) = problems_of(path)
    assert problem.line == 6 and problem.path == "employees.x.numbers"
    assert "6 parallel-ringing numbers" in problem.message


@pytest.mark.parametrize("count", [1, 5])
def test_one_to_five_numbers_are_fine(tmp_path: Path, count: int) -> None:
    numbers = "[" + ", ".join(f"'+49 30 123456{i}'" for i in range(count)) + "]"
    book = YamlDirectory.load(write(tmp_path, employee(numbers)))
    assert len(book.employees["x"].numbers) == count


@pytest.mark.parametrize("bad", ["hello", "", "+", "0000000000000000000"])
def test_a_non_phone_number_is_an_error(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, employee(f"['+49 30 1234567', '{bad}']"))
    (problem,) = problems_of(path)
    assert str(problem).startswith(f"{path}:5:14: employees.x.numbers: ")
    assert problem.message == f"{bad!r} is not a phone number (region DE)"


def test_a_number_as_yaml_int_is_an_error(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, employee("[+49301234567]")))
    assert problem.path == "employees.x.numbers" and "is not a phone number" in problem.message


def test_the_same_number_for_two_employees_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "employees:\n"
        "  a:\n    name: A\n    group: G\n    numbers: ['+49 30 1234567']\n"
        "  b:\n    name: B\n    group: G\n    numbers: ['+49 40 1234567', '030 1234567']\n",
    )
    (problem,) = problems_of(path)
    assert str(problem) == (
        f"{path}:9:33: employees.b.numbers.1: number +49301234567 already belongs to 'a'"
    )


def test_one_number_twice_for_one_employee_is_an_error(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, employee("['+49 30 1234567', '0049301234567']")))
    assert problem.path == "employees.x.numbers.1" and "already belongs to 'x'" in problem.message


# --- PIN hashes and other fields -----------------------------------------------------------
@pytest.mark.parametrize("pin_hash", ["'4711'", "'$2b$12$abcdefghijklmnopqrstuv'", "'argon2'"])
def test_a_pin_hash_that_is_not_argon2_is_an_error(tmp_path: Path, pin_hash: str) -> None:
    path = write(tmp_path, employee("['+49 30 1234567']", f"    pin_hash: {pin_hash}\n"))
    (problem,) = problems_of(path)
    assert str(problem) == (
        f"{path}:6:15: employees.x.pin_hash: pin_hash must be an argon2 hash "
        "(set it with `ivr portal set-pin`)"
    )
    assert "4711" not in str(problem)  # the would-be PIN is not repeated


def test_an_argon2_hash_is_accepted(tmp_path: Path) -> None:
    digest = hash_pin("4711", TEST_HASHER)
    path = write(tmp_path, employee("['+49 30 1234567']", f"    pin_hash: '{digest}'\n"))
    assert YamlDirectory.load(path).employees["x"].pin_hash == digest


def test_a_corrupt_argon2_hash_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, employee("['+49 30 1234567']", "    pin_hash: '$argon2id$garbage'\n"))
    (problem,) = problems_of(path)
    assert problem.path == "employees.x.pin_hash"


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "employees:\n"
        "  a: {name: A, group: G, numbers: []}\n"
        "  b: {name: B, group: G, numbers: ['hello']}\n"
        "  c: {name: C, group: G, numbers: ['+49 30 1234567'], pin_hash: '4711'}\n"
        "  d: {name: D, group: G, numbers: ['+49 30 1234567'], pinhash: x}\n"
        "  e: just text\n"
        "other: 1\n",
    )
    found = {(p.path, p.line) for p in problems_of(path)}
    assert found == {
        ("other", 7),
        ("employees.a.numbers", 2),
        ("employees.b.numbers", 3),
        ("employees.c.pin_hash", 4),
        ("employees.d.pinhash", 5),
        ("employees.e", 6),
    }


def test_unknown_employee_key_has_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, employee("['+49 30 1234567']", "    pinhash: x\n"))
    (problem,) = problems_of(path)
    assert str(problem) == (
        f"{path}:6:5: employees.x.pinhash: unknown key 'pinhash' (did you mean 'pin_hash'?)"
    )


def test_missing_name_and_missing_employees(tmp_path: Path) -> None:
    path = write(tmp_path, "employees:\n  x:\n    group: G\n    numbers: ['+49 30 1234567']\n")
    (problem,) = problems_of(path)
    assert problem.path == "employees.x.name" and "missing required key 'name'" in problem.message
    (problem,) = problems_of(write(tmp_path, "people: {}\n"))
    assert "needs a mapping 'employees'" in problem.message


def test_employee_model_validates_directly() -> None:
    with pytest.raises(ValueError, match="6 parallel-ringing numbers"):
        Employee(name="X", group="G", numbers=tuple(f"+49 30 123456{i}" for i in range(6)))


# --- writing a PIN hash --------------------------------------------------------------------
def test_write_pin_hash_keeps_comments_and_other_employees(tmp_path: Path) -> None:
    path = copy_examples(tmp_path)
    before_text = path.read_text()
    book = YamlDirectory.load(path)
    before = {e.id: e for e in book}
    digest = hash_pin("13579", TEST_HASHER)
    book.write_pin_hash("erika", digest)

    text = path.read_text()
    comments = [line for line in before_text.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in text for line in comments)
    assert "13579" not in text
    assert text.count(digest) == 1
    # the object and the file agree
    assert book.employees["erika"].pin_hash == digest
    reloaded = YamlDirectory.load(path)
    assert reloaded.employees["erika"].pin_hash == digest
    assert verify_pin(digest, "13579", TEST_HASHER)
    assert reloaded.employees["erika"].model_dump(exclude={"pin_hash"}) == before[
        "erika"
    ].model_dump(exclude={"pin_hash"})
    for other in ("max", "hans"):
        assert reloaded.employees[other] == before[other]


def test_write_pin_hash_adds_a_missing_key(tmp_path: Path) -> None:
    path = write(tmp_path, "# staff\n" + employee("['+49 30 1234567']  # mobile"))
    book = YamlDirectory.load(path)
    assert book.employees["x"].pin_hash is None
    digest = hash_pin("2580", TEST_HASHER)
    book.write_pin_hash("x", digest)
    text = path.read_text()
    assert "# staff" in text and "# mobile" in text
    assert YamlDirectory.load(path).employees["x"].pin_hash == digest


def test_write_pin_hash_for_an_unknown_employee(tmp_path: Path) -> None:
    path = copy_examples(tmp_path)
    before = path.read_text()
    with pytest.raises(KeyError):
        YamlDirectory.load(path).write_pin_hash("nobody", hash_pin("2580", TEST_HASHER))
    assert path.read_text() == before


def test_write_pin_hash_changes_only_the_hash_line(tmp_path: Path) -> None:
    path = copy_examples(tmp_path)
    before = path.read_text().splitlines()
    YamlDirectory.load(path).write_pin_hash("max", hash_pin("2580", TEST_HASHER))
    after = path.read_text().splitlines()
    assert len(after) == len(before)
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert len(changed) == 1 and changed[0][1].lstrip().startswith("pin_hash:")
