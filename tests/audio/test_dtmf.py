"""In-band DTMF: generator and Q.24-style detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.audio.dtmf import DtmfDetector, add_noise, generate
from ivr.audio.library import PromptAudio
from ivr.prompts.catalog import load_catalog
from tests.audio.conftest import needs_tts
from tests.conftest import ROOT

ALL = "0123456789*#ABCD"


def detect(audio: np.ndarray | bytes, chunk: int = 160) -> str:
    detector = DtmfDetector()
    data = audio if isinstance(audio, np.ndarray) else np.frombuffer(audio, dtype="<i2")
    return "".join(
        k for i in range(0, len(data), chunk) for k in detector.feed(data[i : i + chunk])
    )


def test_all_16_keys_clean() -> None:
    assert detect(generate(ALL)) == ALL


@pytest.mark.parametrize("seed", range(5))
def test_all_16_keys_at_15_db_snr(seed: int) -> None:
    assert detect(add_noise(generate(ALL), 15, seed)) == ALL


@pytest.mark.parametrize("offset", [0.015, -0.015])
def test_frequency_deviation_of_1_5_percent_is_accepted(offset: float) -> None:
    assert detect(generate(ALL, freq_offset=offset)) == ALL


@pytest.mark.parametrize("offset", [0.035, -0.035, 0.05])
def test_frequency_deviation_of_3_5_percent_is_rejected(offset: float) -> None:
    assert detect(generate(ALL, freq_offset=offset)) == ""


@pytest.mark.parametrize("twist", [-7.0, -4.0, 0.0, 3.5])
def test_twist_inside_the_limits_is_accepted(twist: float) -> None:
    assert detect(generate(ALL, twist_db=twist)) == ALL


@pytest.mark.parametrize("twist", [-10.0, 6.0])
def test_twist_outside_the_limits_is_rejected(twist: float) -> None:
    assert detect(generate(ALL, twist_db=twist)) == ""


def test_40_ms_tones_are_detected_and_20_ms_are_not() -> None:
    assert detect(generate("5", tone_ms=40)) == "5"
    assert detect(generate("5", tone_ms=20)) == ""


def test_a_held_key_counts_once_and_a_40_ms_pause_separates_two() -> None:
    assert detect(generate("7", tone_ms=500)) == "7"
    assert detect(generate("77", tone_ms=60, gap_ms=40)) == "77"


def test_odd_chunks_and_bytes_input() -> None:
    audio = generate("4711#")
    assert detect(audio, chunk=37) == "4711#"
    assert detect(audio.astype("<i2").tobytes(), chunk=1000) == "4711#"


def test_no_keys_on_noise_and_silence() -> None:
    rng = np.random.default_rng(3)
    for sigma in (300.0, 3000.0, 12000.0):
        assert detect(rng.normal(0, sigma, 8000 * 5).astype(np.int16)) == ""
    assert detect(np.zeros(8000, dtype=np.int16)) == ""


def test_no_keys_on_speech_like_harmonics() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(8000 * 4) / 8000
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)  # a wandering fundamental
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    voice = sum(np.sin(k * phase) / k for k in range(1, 30))
    formants = 1 + np.sin(2 * np.pi * 3 * t)
    audio = (6000 * voice * formants + rng.normal(0, 200, len(t))).astype(np.int16)
    assert detect(audio) == ""


@needs_tts
def test_no_keys_on_the_rendered_german_prompts(tmp_path: Path) -> None:
    audio = PromptAudio(load_catalog(ROOT / "prompts" / "de", "de"), tmp_path / "cache")
    assert audio.render().failed == []
    speech = b"".join(audio.piece_pcm(piece) for piece in audio.pieces())
    assert len(speech) / 16000 > 60  # over a minute of German speech
    assert detect(speech) == ""


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=ALL, max_size=8), st.integers(1, 400), st.integers(0, 2**16))
def test_any_keys_any_chunking_come_back(keys: str, chunk: int, seed: int) -> None:
    assert detect(add_noise(generate(keys), 20, seed), chunk=chunk) == keys
