"""Pydantic validation errors as :class:`Problem` lines at ``file:line:col``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ValidationError

from ivr.errors import Problem
from ivr.yaml_source import Path_, Source


def _has_utc_offset(value: datetime) -> datetime:
    if value.utcoffset() is None:
        bare = value.isoformat()
        raise ValueError(f"{bare} has no UTC offset: write e.g. {bare}+01:00")
    return value


#: a point in time written with its UTC offset (``Z``, ``+01:00``); a bare local time
#: is refused, since it cannot be ordered against the others or mapped to a clock
AwareTime = Annotated[datetime, AfterValidator(_has_utc_offset)]


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


def placed(path: Path_, loc: Path_, origin: Mapping[str, Path_] | None = None) -> Path_:
    """Where ``loc`` inside the config at ``path`` stands in the file: under ``origin``
    of its top field when that field's value came from elsewhere (e.g. ``defaults``)."""
    if origin and loc and str(loc[0]) in origin:
        return (*origin[str(loc[0])], *loc[1:])
    return (*path, *loc)


def _problem(
    source: Source,
    err: Any,
    model: type[BaseModel],
    path: Path_,
    origin: Mapping[str, Path_] | None,
) -> Problem:
    loc: Path_ = tuple(err["loc"])
    where = placed(path, loc, origin)
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
        current = _model_in(field.annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds, however deep (``tuple[tuple[PromptRef, ...], ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
