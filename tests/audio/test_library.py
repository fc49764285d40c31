"""Rendering the catalog with real TTS, recorded overrides, the cache, fragments."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ivr.audio import convert
from ivr.audio.convert import AudioSegment
from ivr.audio.library import AudioError, Piece, PromptAudio
from ivr.audio.speech import speak
from ivr.audio.tts import Synthesizer, TtsError, Voice
from ivr.cli import main
from ivr.prompts.catalog import PromptCatalog, load_catalog
from tests.audio.conftest import needs_tts
from tests.conftest import ROOT


def recording(path: Path, seconds: float = 0.6, rate: int = 44100) -> None:
    """A stereo 8-bit WAV with a 440 Hz tone, as a studio would not deliver it."""
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.4 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    segment = AudioSegment(samples.tobytes(), frame_rate=rate, sample_width=2, channels=1)
    buffer = io.BytesIO()
    segment.set_channels(2).set_sample_width(1).export(buffer, format="wav")
    path.write_bytes(buffer.getvalue())


@needs_tts
def test_the_whole_catalog_renders_twice_in_one_process(tmp_path: Path) -> None:
    catalog = load_catalog(ROOT / "prompts" / "de", "de")
    for round_ in range(2):
        audio = PromptAudio(catalog, tmp_path / f"cache{round_}")
        summary = audio.render()
        assert summary.failed == []
        assert summary.rendered == len(list(audio.pieces()))
        assert audio.missing() == []
    pcm = audio.pcm("portal_menu", {"code": "*11"})
    assert len(pcm) / 16000 == pytest.approx(
        audio.seconds("portal_menu", {"code": "*11"}), abs=0.01
    )


@needs_tts
def test_recorded_prompts_win_and_a_corrupt_one_is_named(
    tmp_path: Path, small_catalog: PromptCatalog
) -> None:
    recorded = Path(small_catalog.directory) / "recorded"
    recorded.mkdir()
    recording(recorded / "hello.wav")
    (recorded / "bye.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    audio = PromptAudio(small_catalog, tmp_path / "cache")
    summary = audio.render()
    assert summary.recorded == 1
    assert len(summary.failed) == 1 and str(recorded / "bye.wav") in summary.failed[0]
    assert summary.rendered >= 2  # the other prompts and the fragments still rendered
    hello = AudioSegment(audio.pcm("hello"), frame_rate=8000, sample_width=2, channels=1)
    assert len(hello) == pytest.approx(600 + 2 * convert.PAD_MS, abs=15)
    assert "bye" in {name.split("#")[0] for name in audio.missing()}
    with pytest.raises(AudioError, match="ivr prompts render"):
        audio.pcm("bye")


@needs_tts
def test_a_changed_text_re_renders_only_that_piece(
    tmp_path: Path, small_catalog: PromptCatalog
) -> None:
    cache = tmp_path / "cache"
    assert PromptAudio(small_catalog, cache).render().failed == []
    prompts = Path(small_catalog.directory) / "p.yaml"
    prompts.write_text(prompts.read_text().replace("Guten Tag.", "Guten Abend."))
    changed = PromptAudio(load_catalog(small_catalog.directory, "de"), cache).render()
    assert (changed.rendered, changed.failed) == (1, [])
    assert changed.cached == len(list(PromptAudio(small_catalog, cache).pieces())) - 1


@needs_tts
def test_parameters_are_spoken_from_fragments(tmp_path: Path, small_catalog: PromptCatalog) -> None:
    audio = PromptAudio(small_catalog, tmp_path / "cache")
    audio.render()
    two = audio.pcm("calls", {"count": 2})
    assert two != audio.pcm("calls", {"count": 21})
    assert speak("number", 2) == ["zwei"]
    zwei = audio.piece_pcm(Piece("fragment:zwei", "zwei"))
    assert zwei and zwei in two
    assert audio.seconds("calls", {"count": 2}) == pytest.approx(len(two) / 16000, abs=0.01)


def test_missing_voice_is_a_clear_error_within_bounded_time(tmp_path: Path) -> None:
    start = time.monotonic()
    with (
        pytest.raises(TtsError, match=r"prompt 'greeting'.*(espeak-ng|voice)"),
        Synthesizer(Voice(voice="xx/no-such-voice"), timeout=5) as synthesizer,
    ):
        synthesizer.render("Hallo", tmp_path / "x.wav", prompt="greeting")
    assert time.monotonic() - start < 30


def test_missing_directory_and_empty_text_are_refused(tmp_path: Path) -> None:
    with Synthesizer() as synthesizer:
        with pytest.raises(TtsError, match="does not exist"):
            synthesizer.render("Hallo", tmp_path / "nope" / "x.wav", prompt="p")
        with pytest.raises(TtsError, match="empty text"):
            synthesizer.render("  ", tmp_path / "x.wav", prompt="p")


def test_orphan_recordings_are_found(small_catalog: PromptCatalog, tmp_path: Path) -> None:
    recorded = Path(small_catalog.directory) / "recorded"
    recorded.mkdir()
    recording(recorded / "not_a_prompt.wav", seconds=0.1)
    audio = PromptAudio(small_catalog, tmp_path / "cache")
    assert [p.name for p in audio.orphan_recordings()] == ["not_a_prompt.wav"]


# --- issue 11.13: a speech engine that cannot start fails once, fast, with the fix ---------
@pytest.fixture
def no_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pyttsx3 as on a machine without espeak-ng (its espeak driver cannot load
    libespeak-ng): the TTS worker, a child process, imports this stand-in. Each start
    of a worker adds a line to the returned file."""
    fake = tmp_path / "no-espeak"
    (fake / "pyttsx3").mkdir(parents=True)
    (fake / "pyttsx3" / "__init__.py").write_text(
        "import os\n"
        "def init(driverName=None, debug=False):\n"
        "    with open(os.environ['IVR_TEST_TTS_STARTS'], 'a') as starts:\n"
        "        starts.write('start\\n')\n"
        "    raise RuntimeError("
        "'This means you probably do not have eSpeak or eSpeak-ng installed!')\n"
    )
    starts = tmp_path / "starts"
    starts.write_text("")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("IVR_TEST_TTS_STARTS", str(starts))
    return starts


def test_tts_that_cannot_start_fails_once_with_the_install_hint(
    tmp_path: Path, small_catalog: PromptCatalog, no_espeak: Path
) -> None:
    recorded = Path(small_catalog.directory) / "recorded"
    recorded.mkdir()
    recording(recorded / "hello.wav")
    audio = PromptAudio(small_catalog, tmp_path / "cache")
    start = time.monotonic()
    summary = audio.render()
    assert time.monotonic() - start < 10
    assert no_espeak.read_text().count("start") == 1  # not one worker per piece
    assert summary.failed == [summary.unavailable]
    assert (
        "cannot start TTS (RuntimeError: This means you probably do not have" in summary.unavailable
    )
    assert "apt-get install espeak-ng" in summary.unavailable
    assert summary.recorded == 1  # a recording needs no speech engine
    assert summary.rendered == 0
    assert summary.skipped == len(list(audio.pieces())) - 2  # all but the failed one and hello


@pytest.mark.usefixtures("keep_ivr_log_level")
def test_serve_and_render_fail_fast_when_tts_cannot_start(
    tmp_path: Path, small_catalog: PromptCatalog, no_espeak: Path
) -> None:
    plan = Path(small_catalog.directory).parent / "d.yaml"
    plan.write_text(
        "name: d\nlanguage: de\nprompts: de\ninitial: bye\napology: bye\n"
        "states:\n  bye:\n    kind: hangup\n    prompts: bye\n"
    )
    start = time.monotonic()
    result = CliRunner().invoke(main, ["serve", str(plan), "--registrar", "127.0.0.1:5060"])
    assert time.monotonic() - start < 10
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: prompt audio cannot be rendered: prompt '")
    assert "cannot start TTS" in line and line.endswith(
        "install espeak-ng (Debian: apt-get install espeak-ng; `make` does it)"
    )
    assert no_espeak.read_text().count("start") == 1
    result = CliRunner().invoke(
        main,
        ["prompts", "--catalog", small_catalog.directory, "--cache", str(tmp_path / "c"), "render"],
    )
    assert result.exit_code == 2
    pieces = len(list(PromptAudio(small_catalog).pieces()))
    assert f"0 rendered, 0 cached, 0 recorded, 1 failed, {pieces - 1} not tried" in result.stdout
    assert no_espeak.read_text().count("start") == 2
