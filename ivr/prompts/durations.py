"""How long a prompt plays: from rendered audio when there is some, else an estimate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ivr.prompts.catalog import PromptCatalog

#: seconds per character of German text at espeak-ng's default rate (~14 chars/s)
SECONDS_PER_CHAR = 0.07
#: fixed pad per prompt (leading/trailing silence)
PAD_SECONDS = 0.3

AudioDuration = Callable[[str, Mapping[str, Any]], float | None]


def estimate_seconds(text: str) -> float:
    """A prompt's duration estimated from its text length."""
    return round(PAD_SECONDS + SECONDS_PER_CHAR * len(text), 2)


class PromptDurations:
    """Durations by prompt id and parameters; ``audio`` (when given) wins over estimates."""

    def __init__(self, catalog: PromptCatalog, audio: AudioDuration | None = None) -> None:
        self.catalog = catalog
        self.audio = audio

    def __call__(self, prompt_id: str, params: Mapping[str, Any]) -> float:
        if self.audio is not None:
            seconds = self.audio(prompt_id, params)
            if seconds is not None:
                return seconds
        return estimate_seconds(self.catalog.text(prompt_id, params))
