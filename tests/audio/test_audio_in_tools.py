"""Rendered audio as the tools see it: ivr check's warnings, simulator durations."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from ivr.audio.library import PromptAudio
from ivr.cli import main
from ivr.dialogue import Engine
from ivr.dialplan import load_dialplan
from ivr.sim import Simulator
from ivr.testing import durations_for
from tests.audio.conftest import needs_tts
from tests.audio.test_library import recording
from tests.conftest import DEMO, ROOT


def demo_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts", ignore=shutil.ignore_patterns(".cache"))
    (tmp_path / "dialplans").mkdir()
    shutil.copy(DEMO, tmp_path / "dialplans" / "demo.yaml")
    return tmp_path / "dialplans" / "demo.yaml"


def test_check_is_quiet_before_rendering_and_names_orphan_recordings(tmp_path: Path) -> None:
    plan = demo_copy(tmp_path)
    result = CliRunner().invoke(main, ["check", str(plan)])
    assert (result.exit_code, result.stderr) == (0, "")
    recorded = tmp_path / "prompts" / "de" / "recorded"
    recorded.mkdir()
    recording(recorded / "no_such_prompt.wav", seconds=0.1)
    result = CliRunner().invoke(main, ["check", str(plan)])
    assert result.exit_code == 0
    assert (
        "warning: recording no_such_prompt.wav has no prompt text in the catalog" in result.stderr
    )


@needs_tts
def test_check_warns_about_prompts_without_audio_and_durations_come_from_audio(
    tmp_path: Path,
) -> None:
    plan_path = demo_copy(tmp_path)
    catalog_dir = tmp_path / "prompts" / "de"
    plan = load_dialplan(plan_path)
    audio = PromptAudio(plan.catalog)
    assert audio.render().failed == []
    result = CliRunner().invoke(main, ["check", str(plan_path)])
    assert (result.exit_code, result.stderr) == (0, "")
    text = (catalog_dir / "demo.yaml").read_text()
    (catalog_dir / "demo.yaml").write_text(
        text.replace("Willkommen beim", "Herzlich willkommen beim")
    )
    result = CliRunner().invoke(main, ["check", str(plan_path)])
    assert "warning: 1 prompts have no rendered audio (demo_welcome)" in result.stderr
    engine = Engine(load_dialplan(plan_path))
    durations = durations_for(engine)
    rendered = PromptAudio(engine.dialplan.catalog).seconds("goodbye", {})
    assert rendered is not None and durations("goodbye", {}) == rendered
    call = Simulator(engine, durations=durations).run("0", caller="1")
    goodbye = next(line for line in call.lines if line.get("id") == "goodbye")
    assert goodbye["seconds"] == rendered
