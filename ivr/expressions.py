"""Conditions and values over session variables, e.g. ``calls > 1 and not silent``.

A deliberately small, safe subset of Python expression syntax: names (session
variables), literals, ``and``/``or``/``not``, comparisons (``== != < <= > >= in``),
``+ -`` and ``len(x)``. No attribute access, calls (but ``len``), subscripts or
lambdas. The expression is checked once at load time and compiled; an unset
variable reads as ``None``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Call,
)

MAX_LENGTH = 500
_FUNCTIONS: dict[str, Any] = {"len": len}
_GLOBALS: dict[str, Any] = {"__builtins__": {}}


class ExpressionSyntaxError(ValueError):
    """The text is not an expression of the allowed subset."""


class _Variables(dict[str, Any]):
    """Session variables as eval() locals: unknown names read as None."""

    def __missing__(self, key: str) -> Any:
        return _FUNCTIONS.get(key)


@dataclass(frozen=True, slots=True)
class Expression:
    """A checked, compiled expression. ``names`` lists the variables it reads."""

    source: str
    names: frozenset[str]
    _code: CodeType = field(repr=False, compare=False)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate against ``variables``; unset names are ``None``."""
        scope = _Variables(variables)
        return eval(self._code, _GLOBALS, scope)


def compile_expression(source: str) -> Expression:
    """Check ``source`` against the allowed subset and compile it."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionSyntaxError("an expression must be a non-empty string")
    if len(source) > MAX_LENGTH:
        raise ExpressionSyntaxError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionSyntaxError(f"invalid expression {source!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionSyntaxError(f"invalid expression {source!r}: too deeply nested") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionSyntaxError(
                f"invalid expression {source!r}: {type(node).__name__} is not allowed"
            )
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
                raise ExpressionSyntaxError(
                    f"invalid expression {source!r}: only len(...) may be called"
                )
            if node.keywords or len(node.args) != 1:
                raise ExpressionSyntaxError(f"invalid expression {source!r}: len takes one value")
        elif isinstance(node, ast.Name) and node.id not in _FUNCTIONS:
            if node.id.startswith("_"):
                raise ExpressionSyntaxError(
                    f"invalid expression {source!r}: names may not start with '_'"
                )
            names.add(node.id)
    code = compile(tree, "<expression>", "eval")
    return Expression(source=source, names=frozenset(names), _code=code)
