"""``collect``: gather digits into a session variable.

Input ends on the terminator key, on reaching ``max_digits``, or on the inter-digit
timeout; it is then accepted when it has at least ``min_digits`` keys and matches
``pattern`` (a full-match regular expression), else it is a no-match. With
``secret: true`` the keys are masked in transcripts, logs and errors and the value is
stored as :class:`ivr.Secret`.

Example::

    pin:
      kind: collect
      prompt: enter_pin
      into: pin
      min_digits: 4
      max_digits: 8
      pattern: "[0-9]+"
      secret: true
      next: check_pin
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ivr.secret import Secret
from ivr.states.base import Call, Edge, Regex, StateName
from ivr.states.input import InputState

VARIABLE = r"^[A-Za-z][A-Za-z0-9_]*$"


class Collect(InputState):
    """Collect digits into a variable (VoiceXML ``<field>``, FreeSWITCH play_and_get_digits)."""

    kind: Literal["collect"] = "collect"
    into: str = Field(pattern=VARIABLE, description="session variable that receives the digits")
    min_digits: int = Field(default=1, ge=0, le=128, description="fewest keys accepted")
    max_digits: int = Field(
        default=20, ge=1, le=128, description="input ends when this many keys were pressed"
    )
    pattern: Regex | None = Field(
        default=None,
        description="regular expression the whole input must match",
        examples=["[0-9]{4,8}"],
    )
    secret: bool = Field(default=False, description="mask the keys everywhere (PINs)")
    next: StateName = Field(description="state after valid input")

    @model_validator(mode="after")
    def _digit_range(self) -> Collect:
        if self.min_digits > self.max_digits:
            raise ValueError(
                f"min_digits ({self.min_digits}) is greater than max_digits ({self.max_digits})"
            )
        return self

    def edges(self) -> list[Edge]:
        return [Edge("next", self.next, ("next",)), *super().edges()]

    def is_secret(self) -> bool:
        return self.secret

    def key(self, call: Call, key: str) -> bool:
        if self.terminator and key == self.terminator:
            self.finish(call, call.scratch["digits"])
            return False
        digits = call.scratch["digits"] = call.scratch["digits"] + key
        if len(digits) >= self.max_digits:
            self.finish(call, digits)
            return False
        return True

    def finish(self, call: Call, digits: str) -> None:
        if len(digits) < self.min_digits or (
            self.pattern is not None and self.pattern.fullmatch(digits) is None
        ):
            self.no_match(call)
            return
        call.vars[self.into] = Secret(digits) if self.secret else digits
        call.goto("next")
