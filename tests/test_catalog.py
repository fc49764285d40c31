"""The prompt catalog: ids, duplicates across files, placeholders, rendering, places."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr import DialplanError, load_catalog
from ivr.prompts.catalog import PARAM_TYPES, PromptText, parse_params


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(folder: Path) -> list[str]:
    with pytest.raises(DialplanError) as info:
        load_catalog(folder)
    found = [str(p) for p in info.value.problems]
    assert all("\n" not in f for f in found)
    return found


# --- loading ----------------------------------------------------------------------------
def test_a_catalog_loads_texts_params_notes_and_places(tmp_path: Path) -> None:
    folder = tmp_path / "de"
    first = write(
        folder,
        "a.yaml",
        "# greeting first\n"
        "menu: 'Drücken Sie {code:keys} oder {n:number}, {num:digits}.'\n"
        "plain: {text: Hallo, note: for the greeting}\n",
    )
    second = write(folder, "b.yaml", "long: >\n  Eine Zeile\n    und  noch eine.\n")
    catalog = load_catalog(folder)
    assert catalog.language == "de"
    assert catalog.directory == str(folder)
    assert list(catalog) == ["menu", "plain", "long"]
    assert len(catalog) == 3 and "menu" in catalog and "nope" not in catalog
    menu = catalog["menu"]
    assert dict(menu.params) == {"code": "keys", "n": "number", "num": "digits"}
    assert (menu.file, menu.line, menu.note) == (str(first), 2, "")
    assert catalog["plain"] == PromptText(
        id="plain", text="Hallo", params={}, file=str(first), line=3, note="for the greeting"
    )
    long = catalog["long"]
    assert (long.text, long.file, long.line) == ("Eine Zeile und noch eine.", str(second), 1)


def test_the_language_is_the_folder_name_unless_given(tmp_path: Path) -> None:
    write(tmp_path / "fr", "a.yaml", "hi: Salut.\n")
    assert load_catalog(tmp_path / "fr").language == "fr"
    assert load_catalog(tmp_path / "fr", language="fr-CA").language == "fr-CA"


def test_only_yaml_files_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "de"
    write(folder, "a.yaml", "hi: Hallo.\n")
    write(folder, "b.yml", "Not An Id: x\n")
    write(folder, "README.md", "# notes\n")
    (folder / "sub").mkdir()
    write(folder / "sub", "c.yaml", "Bad: x\n")
    assert list(load_catalog(folder)) == ["hi"]


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "nope"
    with pytest.raises(DialplanError) as info:
        load_catalog(folder)
    assert [str(p) for p in info.value.problems] == [
        f"{folder}: prompt catalog directory not found"
    ]


def test_a_file_is_not_a_catalog_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "hi: Hallo.\n")
    assert problems(path) == [f"{path}: prompt catalog directory not found"]


# --- ids --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prompt_id", ["Hello", "helloWorld", "_hello", "hello-world", "1st", "hello world", "grüße"]
)
def test_ids_must_be_lower_snake_case(tmp_path: Path, prompt_id: str) -> None:
    path = write(tmp_path / "de", "a.yaml", f"ok: Gut.\n'{prompt_id}': Text.\n")
    assert problems(tmp_path / "de") == [
        f"{path}:2:1: {prompt_id}: prompt ids are lower_snake_case"
    ]


@pytest.mark.parametrize("prompt_id", ["a", "x1", "main_menu", "pin_2_wrong", "trailing_"])
def test_lower_snake_case_ids_load(tmp_path: Path, prompt_id: str) -> None:
    write(tmp_path / "de", "a.yaml", f"{prompt_id}: Text.\n")
    assert list(load_catalog(tmp_path / "de")) == [prompt_id]


def test_ids_keep_their_spelling_as_written(tmp_path: Path) -> None:
    path = write(tmp_path / "de", "a.yaml", "yes: ja\n1: eins\n")
    assert problems(tmp_path / "de") == [f"{path}:2:1: 1: prompt ids are lower_snake_case"]
    write(tmp_path / "de", "a.yaml", "yes: ja\nno: nein\n")
    assert list(load_catalog(tmp_path / "de")) == ["yes", "no"]


def test_duplicate_ids_across_two_files_name_both_places(tmp_path: Path) -> None:
    folder = tmp_path / "de"
    first = write(folder, "a.yaml", "hi: Hallo.\nhello: Hallo.\n")
    second = write(folder, "b.yaml", "bye: Tschüss.\n\nhello: Nochmal hallo.\n")
    assert problems(folder) == [f"{second}:3:1: hello: duplicate prompt id (first in {first}:2)"]


def test_a_duplicate_id_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path / "de", "a.yaml", "hi: Hallo.\nbye: x\nhi: Nochmal.\n")
    assert problems(tmp_path / "de") == [
        f"{path}:3:1: hi: duplicate key 'hi' (first defined at line 1)"
    ]


# --- texts and entries ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "where_what"),
    [
        ("''", "1:5: hi: prompt text must be a non-empty string"),
        ("'   '", "1:5: hi: prompt text must be a non-empty string"),
        ("", "1:4: hi: prompt text must be a non-empty string"),
        ("42", "1:5: hi: prompt text must be a non-empty string"),
        ("[Hallo]", "1:5: hi: prompt text must be a non-empty string"),
        ("{note: no text}", "1:5: hi: prompt text must be a non-empty string"),
        ("{text: Hallo, nte: x}", "1:19: hi.nte: unknown key"),
    ],
    ids=["empty", "blank", "null", "number", "list", "no-text", "unknown-key"],
)
def test_bad_entries(tmp_path: Path, entry: str, where_what: str) -> None:
    path = write(tmp_path / "de", "a.yaml", f"hi: {entry}\n")
    assert problems(tmp_path / "de") == [f"{path}:{where_what}"]


def test_a_prompt_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "de", "a.yaml", "- hi\n- bye\n")
    assert problems(tmp_path / "de") == [f"{path}:1:1: a prompt file must be a mapping of id: text"]


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "de"
    a = write(folder, "a.yaml", "hello: Hallo.\nBad-Id: x\nempty: ''\nweird: '{x:color}'\n")
    b = write(folder, "b.yaml", "hello: Nochmal.\n")
    c = write(folder, "c.yaml", "")
    d = write(folder, "d.yaml", "a: [1\n")
    e = write(folder, "e.yaml", "fine: Gut.\n")
    assert problems(folder) == [
        f"{a}:2:1: Bad-Id: prompt ids are lower_snake_case",
        f"{a}:3:8: empty: prompt text must be a non-empty string",
        f"{a}:4:8: weird: placeholder {{x:color}}: unknown type 'color'"
        f" (one of {', '.join(PARAM_TYPES)})",
        f"{b}:1:1: hello: duplicate prompt id (first in {a}:1)",
        f"{c}: file is empty",
        f"{d}:2:1: YAML syntax error: did not find expected ',' or ']'",
    ]
    assert e.exists()


# --- placeholders -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{x:badtype}", "placeholder {x:badtype}: unknown type 'badtype'"
         " (one of number, digits, keys, time, text)"),
        ("{n:Number}", "placeholder {n:Number}: unknown type 'Number'"
         " (one of number, digits, keys, time, text)"),
        ("{0}", "bad placeholder {0}: use {name} or {name:type}"),
        ("{}", "bad placeholder {}: use {name} or {name:type}"),
        ("{a.b}", "bad placeholder {a.b}: use {name} or {name:type}"),
        ("{a[0]}", "bad placeholder {a[0]}: use {name} or {name:type}"),
        ("{a b}", "bad placeholder {a b}: use {name} or {name:type}"),
        ("Preis {n:number", "unmatched '{' in format spec"),
        ("Preis {n", "expected '}' before end of string"),
        ("a } b", "Single '}' encountered in format string"),
    ],
)  # fmt: skip
def test_bad_placeholders_are_errors_at_the_text(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "de", "a.yaml", f"ok: Gut.\nprice: '{text}'\n")
    assert problems(tmp_path / "de") == [f"{path}:2:8: price: {message}"]
    with pytest.raises(ValueError, match=r"placeholder|expected|Single|unmatched"):
        parse_params(text)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("Kein Platzhalter.", {}),
        ("Hallo {name}.", {"name": "text"}),
        ("{name:text}", {"name": "text"}),
        ("{n:number} Anrufe", {"n": "number"}),
        ("Nummer {num:digits}", {"num": "digits"}),
        ("Drücken Sie {code:keys}", {"code": "keys"}),
        ("um {at:time}", {"at": "time"}),
        ("{a:number} und {b:digits} und {a:number}", {"a": "number", "b": "digits"}),
        ("{{wörtlich}} {x}", {"x": "text"}),
    ],
)
def test_params_are_parsed(text: str, params: dict[str, str]) -> None:
    assert parse_params(text) == params


def test_params_of_a_loaded_prompt(tmp_path: Path) -> None:
    write(tmp_path / "de", "a.yaml", "calls: 'Sie haben {count:number} Anrufe von {who}.'\n")
    assert dict(load_catalog(tmp_path / "de")["calls"].params) == {
        "count": "number",
        "who": "text",
    }


# --- rendering --------------------------------------------------------------------------
def prompt(text: str) -> PromptText:
    return PromptText(id="p", text=text, params=parse_params(text))


@pytest.mark.parametrize(
    ("text", "values", "rendered"),
    [
        ("Nummer {num:digits}.", {"num": "0301234"}, "Nummer 0 3 0 1 2 3 4."),
        ("Nummer {num:digits}.", {"num": 4711}, "Nummer 4 7 1 1."),
        ("Drücken Sie {code:keys}.", {"code": "*11"}, "Drücken Sie Stern eins eins."),
        ("Drücken Sie {code:keys}.", {"code": "#"}, "Drücken Sie Raute."),
        (
            "{code:keys}",
            {"code": "0123456789*#"},
            "null eins zwei drei vier fünf sechs sieben acht neun Stern Raute",
        ),
        ("{code:keys}", {"code": "A1"}, "A eins"),
        ("Sie haben {n:number} Anrufe.", {"n": 12}, "Sie haben 12 Anrufe."),
        ("Hallo {who}!", {"who": "Frau Müller"}, "Hallo Frau Müller!"),
        ("Um {at:time} Uhr", {"at": "12:30"}, "Um 12:30 Uhr"),
        ("Nummer {num:digits}.", {}, "Nummer <num?>."),
        ("{a} und {{b}}", {"a": "x"}, "x und {b}"),
    ],
)
def test_render_fills_values(text: str, values: dict[str, object], rendered: str) -> None:
    assert prompt(text).render(values) == rendered


def test_catalog_text_renders_by_id(tmp_path: Path) -> None:
    write(
        tmp_path / "de",
        "a.yaml",
        "menu: 'Drücken Sie {code:keys} oder {n:number}, {num:digits}.'\n",
    )
    catalog = load_catalog(tmp_path / "de")
    assert catalog.text("menu", {"code": "*11#", "n": 3, "num": "030"}) == (
        "Drücken Sie Stern eins eins Raute oder 3, 0 3 0."
    )
    assert catalog.text("menu") == "Drücken Sie <code?> oder <n?>, <num?>."


# --- bugs -------------------------------------------------------------------------------
def test_a_parameter_with_two_types_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "de", "a.yaml", "calls: 'Sie haben {n} ({n:number}) Anrufe.'\n")
    (found,) = problems(tmp_path / "de")
    assert found.startswith(f"{path}:1:8: calls: ")


def test_a_conversion_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"\{a!r\}"):
        parse_params("Hallo {a!r}")


def test_a_null_note_is_no_note(tmp_path: Path) -> None:
    write(tmp_path / "de", "a.yaml", "hi: {text: Hallo, note: ~}\n")
    assert load_catalog(tmp_path / "de")["hi"].note == ""


def test_a_too_long_directory_name_is_a_dialplan_error(tmp_path: Path) -> None:
    folder = tmp_path / ("x" * 300)
    assert len(problems(folder)) == 1
