"""The prompt catalog: stable prompt ids mapped to texts with typed parameters.

A catalog is a directory of YAML files (``prompts/de/*.yaml``), each a mapping of
prompt id to text, or to ``{text: ..., note: ...}``. Spoken values are parameters
written ``{name:type}`` with type ``number``, ``digits``, ``keys``, ``time`` or ``text``
(``{name}`` alone is ``text``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.errors import DialplanError, Problem
from ivr.yaml_source import read_yaml

PARAM_TYPES = ("number", "digits", "keys", "time", "text")
PROMPT_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_DIGIT_WORDS_DE = (
    "null",
    "eins",
    "zwei",
    "drei",
    "vier",
    "fünf",
    "sechs",
    "sieben",
    "acht",
    "neun",
)
_KEY_WORDS_DE = {
    "*": "Stern",
    "#": "Raute",
    **{str(digit): word for digit, word in enumerate(_DIGIT_WORDS_DE)},
}


@dataclass(frozen=True, slots=True)
class PromptText:
    """One prompt: its id, text, parameter types and where it was defined."""

    id: str
    text: str
    params: Mapping[str, str] = field(default_factory=dict)
    file: str = ""
    line: int = 0
    note: str = ""

    def render(self, values: Mapping[str, Any]) -> str:
        """The text with parameter values filled in (as a transcript shows it)."""
        return _FORMATTER.vformat(self.text, (), _Values(values, self.params))


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return str(value)


_FORMATTER = _Formatter()


class _Values(dict[str, Any]):
    """Parameter values shown as a caller would hear them written down."""

    def __init__(self, values: Mapping[str, Any], types: Mapping[str, str]) -> None:
        super().__init__(values)
        self.types = types

    def __missing__(self, key: str) -> str:
        return f"<{key}?>"

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            return self.__missing__(key)
        value = super().__getitem__(key)
        if self.types.get(key) == "keys":
            return " ".join(_KEY_WORDS_DE.get(ch, ch) for ch in str(value))
        if self.types.get(key) == "digits":
            return " ".join(str(value))
        return value


def parse_params(text: str) -> dict[str, str]:
    """``"Sie haben {count:number} Anrufe"`` -> ``{"count": "number"}``.

    Raises ValueError for a bad placeholder.
    """
    params: dict[str, str] = {}
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.isidentifier() or conversion:
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"bad placeholder {{{written}}}: use {{name}} or {{name:type}}")
        kind = spec or "text"
        if kind not in PARAM_TYPES:
            raise ValueError(
                f"placeholder {{{name}:{spec}}}: unknown type {spec!r} "
                f"(one of {', '.join(PARAM_TYPES)})"
            )
        if params.get(name, kind) != kind:
            raise ValueError(f"placeholder {{{name}}} is used with two types")
        params[name] = kind
    return params


class CatalogNotFoundError(DialplanError):
    """The prompt catalog directory does not exist (or is no directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)
        super().__init__(Problem("prompt catalog directory not found", file=self.directory))


@dataclass(frozen=True, slots=True)
class PromptCatalog:
    """All prompts of one language, by id."""

    language: str
    directory: str
    prompts: Mapping[str, PromptText]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.prompts

    def __getitem__(self, prompt_id: str) -> PromptText:
        return self.prompts[prompt_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def text(self, prompt_id: str, values: Mapping[str, Any] | None = None) -> str:
        """The rendered text of ``prompt_id`` (``values`` fill its parameters)."""
        return self.prompts[prompt_id].render(values or {})


def load_catalog(directory: str | Path, language: str = "") -> PromptCatalog:
    """Load every ``*.yaml`` in ``directory``; all problems are reported together."""
    folder = Path(directory)
    try:
        found = folder.is_dir()
    except OSError:  # e.g. a name too long for the file system
        found = False
    if not found:
        raise CatalogNotFoundError(folder)
    prompts: dict[str, PromptText] = {}
    problems: list[Problem] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            source = read_yaml(path)
        except DialplanError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(source.data, dict):
            problems.append(source.problem((), "a prompt file must be a mapping of id: text"))
            continue
        for prompt_id, entry in source.data.items():
            where = (prompt_id,)
            text, note = entry, ""
            if isinstance(entry, dict):
                unknown = set(entry) - {"text", "note"}
                if unknown:
                    problems.append(
                        source.problem((*where, sorted(unknown)[0]), "unknown key", at_key=True)
                    )
                text, note = entry.get("text"), str(entry.get("note") or "")
            if not PROMPT_ID.match(str(prompt_id)):
                problems.append(
                    source.problem(where, "prompt ids are lower_snake_case", at_key=True)
                )
                continue
            if not isinstance(text, str) or not text.strip():
                problems.append(source.problem(where, "prompt text must be a non-empty string"))
                continue
            try:
                params = parse_params(text)
            except ValueError as exc:
                problems.append(source.problem(where, str(exc)))
                continue
            position = source.keys[where]
            if prompt_id in prompts:
                first = prompts[prompt_id]
                problems.append(
                    source.problem(
                        where,
                        f"duplicate prompt id (first in {first.file}:{first.line})",
                        at_key=True,
                    )
                )
                continue
            prompts[prompt_id] = PromptText(
                id=prompt_id,
                text=" ".join(text.split()),
                params=params,
                file=str(path),
                line=position.line,
                note=note,
            )
    if problems:
        raise DialplanError(problems)
    return PromptCatalog(language=language or folder.name, directory=str(folder), prompts=prompts)
