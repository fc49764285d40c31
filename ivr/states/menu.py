"""``menu``: a prompt and options — single keys or multi-key codes such as ``*11`` —
each leading to a state, plus an optional free ``entry`` (e.g. a number to dial, ended
with ``#``).

Overlapping codes (``*1`` and ``*11``): the longer code wins when its next key comes
within ``interdigit_timeout``; the shorter one is taken when that timeout passes (or
on the terminator). A key sequence that starts no option (and no entry) is a no-match
at once.

Example::

    main:
      kind: menu
      prompt: main_menu
      options:
        "1": sales
        "*11": pull
      entry: {into: number, pattern: "0[0-9]{3,19}", next: dial_out}
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from ivr.states.base import Call, Edge, Regex, StateName
from ivr.states.collect import VARIABLE
from ivr.states.input import InputState

CODE = re.compile(r"^[0-9*#A-D]{1,16}$")


class MenuEntry(BaseModel):
    """Free digits typed in a menu (not an option code), stored in a variable."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    into: str = Field(pattern=VARIABLE, description="session variable that receives the digits")
    min_digits: int = Field(default=1, ge=1, le=128, description="fewest keys accepted")
    max_digits: int = Field(default=20, ge=1, le=128, description="input ends at this many keys")
    pattern: Regex | None = Field(default=None, description="full-match regular expression")
    next: StateName = Field(description="state after a valid entry")

    def accepts(self, digits: str) -> bool:
        """True when ``digits`` is a valid entry."""
        return self.min_digits <= len(digits) <= self.max_digits and (
            self.pattern is None or self.pattern.fullmatch(digits) is not None
        )


class Menu(InputState):
    """Options by key code, with an optional free entry."""

    kind: Literal["menu"] = "menu"
    options: dict[str, StateName] = Field(
        default_factory=dict,
        description="key code (one or more of 0-9 * # A-D) -> state",
        examples=[{"1": "sales", "*11": "pull"}],
    )
    entry: MenuEntry | None = Field(
        default=None, description="free digits that are not an option (e.g. a number to dial)"
    )
    _prefixes: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("options")
    @classmethod
    def _valid_codes(cls, options: dict[str, str]) -> dict[str, str]:
        for code in options:
            if not CODE.match(code):
                raise ValueError(f"option {code!r}: a code is 1-16 keys of 0-9 * # A-D")
        return options

    def model_post_init(self, context: object) -> None:
        self._prefixes = frozenset(code[:i] for code in self.options for i in range(1, len(code)))

    def overlaps(self) -> list[tuple[str, str]]:
        """Pairs (short, long) of codes where one is a prefix of the other."""
        return sorted(
            (short, long)
            for short in self.options
            for long in self.options
            if short != long and long.startswith(short)
        )

    def edges(self) -> list[Edge]:
        edges = [
            Edge(f"option:{code}", target, ("options", code))
            for code, target in self.options.items()
        ]
        if self.entry is not None:
            edges.append(Edge("entry", self.entry.next, ("entry", "next")))
        return edges + super().edges()

    def key(self, call: Call, key: str) -> bool:
        digits = call.scratch["digits"]
        candidate = digits + key
        in_options = candidate in self.options
        if in_options and candidate not in self._prefixes:
            call.goto(f"option:{candidate}")
            return False
        if in_options or candidate in self._prefixes:
            call.scratch["digits"] = candidate
            return True
        if self.terminator and key == self.terminator:
            self.finish(call, digits)
            return False
        if self.entry is not None and (not digits or digits not in self._prefixes):
            call.scratch["digits"] = candidate
            if len(candidate) >= self.entry.max_digits:
                self.finish(call, candidate)
                return False
            return True
        self.no_match(call)
        return False

    def finish(self, call: Call, digits: str) -> None:
        if digits in self.options:
            call.goto(f"option:{digits}")
        elif self.entry is not None and self.entry.accepts(digits):
            call.vars[self.entry.into] = digits
            call.goto("entry")
        else:
            self.no_match(call)
