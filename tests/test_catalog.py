"""The prompt catalog: ids, duplicates across files, placeholders, rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr import DialplanError, load_catalog
from ivr.prompts.catalog import parse_params


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def test_params_and_render(tmp_path: Path) -> None:
    write(
        tmp_path / "de",
        "a.yaml",
        "menu: 'Drücken Sie {code:keys} oder {n:number}, {num:digits}.'\n"
        "plain: {text: Hallo, note: for the greeting}\n",
    )
    catalog = load_catalog(tmp_path / "de")
    assert catalog.language == "de" and len(catalog) == 2
    assert dict(catalog["menu"].params) == {"code": "keys", "n": "number", "num": "digits"}
    assert catalog.text("menu", {"code": "*11#", "n": 3, "num": "030"}) == (
        "Drücken Sie Stern eins eins Raute oder 3, 0 3 0."
    )
    assert catalog["plain"].note == "for the greeting"
    assert catalog.text("menu") == "Drücken Sie <code?> oder <n?>, <num?>."


@pytest.mark.parametrize("text", ["{x:color}", "{0}", "{a.b}", "{a!r}"])
def test_bad_placeholders(text: str) -> None:
    with pytest.raises(ValueError):
        parse_params(text)


def test_every_problem_with_its_place(tmp_path: Path) -> None:
    folder = tmp_path / "de"
    write(folder, "a.yaml", "hello: Hallo.\nBad-Id: x\nempty: ''\nweird: '{x:color}'\n")
    write(folder, "b.yaml", "hello: Nochmal.\n")
    with pytest.raises(DialplanError) as info:
        load_catalog(folder)
    found = [str(p) for p in info.value.problems]
    assert f"{folder / 'a.yaml'}:2:1: Bad-Id: prompt ids are lower_snake_case" in found
    assert f"{folder / 'a.yaml'}:3:8: empty: prompt text must be a non-empty string" in found
    assert any(f.startswith(f"{folder / 'a.yaml'}:4:8: weird: placeholder") for f in found)
    assert (
        f"{folder / 'b.yaml'}:1:1: hello: duplicate prompt id (first in {folder / 'a.yaml'}:1)"
        in found
    )


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DialplanError, match="prompt catalog directory not found"):
        load_catalog(tmp_path / "nope")
