"""Pydantic validation errors as :class:`Problem` lines at ``file:line:col``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ivr.dialplan.yaml_source import Path_, Source
from ivr.errors import Problem


def did_you_mean(word: str, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def problems_of(
    source: Source,
    error: ValidationError,
    model: type[BaseModel],
    path: Path_ = (),
    origin: Mapping[str, Path_] | None = None,
) -> list[Problem]:
    """One Problem per pydantic error of ``model`` validated from ``source`` at ``path``.

    ``origin`` maps a top field to where its value really came from (e.g. ``defaults``).
    """
    return [_problem(source, err, model, path, origin) for err in error.errors()]


def _problem(
    source: Source,
    err: Any,
    model: type[BaseModel],
    path: Path_,
    origin: Mapping[str, Path_] | None,
) -> Problem:
    loc: Path_ = tuple(err["loc"])
    where: Path_ = (*path, *loc)
    if origin and loc and str(loc[0]) in origin:
        where = (*origin[str(loc[0])], *loc[1:])
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1]
        fields = _fields_at(model, loc[:-1])
        return source.problem(
            where, f"unknown key {key!r}{did_you_mean(str(key), fields)}", at_key=True
        )
    if kind == "missing":
        return source.problem(where, f"missing required key {loc[-1]!r}")
    message = str(err["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if kind in ("literal_error", "enum") and isinstance(err.get("input"), str | int | float):
        message = f"{err['input']!r}: {message}"  # name the offending value
    if loc and loc[-1] == "terminator" and err.get("input") is None:
        message += " (in YAML, # starts a comment: write terminator: '#')"
    return source.problem(where, message)


def _fields_at(model: type[BaseModel], loc: Path_) -> list[str]:
    """Field names of the (nested) model at ``loc``, for did-you-mean."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
        else:
            return []
    return list(getattr(current, "model_fields", {}))
