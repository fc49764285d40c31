"""The examples run as documented."""

from __future__ import annotations

import runpy

import pytest

from tests.conftest import ROOT


def test_embed_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "embed.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "PlayPrompt(prompt='demo_balance'" in out
    assert "'balance': 7" in out
    assert out.rstrip().endswith("outcome: hangup")
