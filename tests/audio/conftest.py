"""Fixtures for audio tests: a small catalog and a TTS availability guard."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ivr.prompts.catalog import PromptCatalog, load_catalog

#: TTS tests need espeak-ng (make installs it); in CI a missing espeak-ng is a failure
needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and not os.environ.get("CI"),
    reason="espeak-ng not installed (make test installs it)",
)


@pytest.fixture
def small_catalog(tmp_path: Path) -> PromptCatalog:
    """Three prompts, one with a parameter."""
    folder = tmp_path / "de"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "hello: Guten Tag.\ncalls: 'Sie führen {count:number} Gespräche.'\nbye: Auf Wiederhören.\n"
    )
    return load_catalog(folder, "de")
