"""Conversion to telephony audio: anti-alias filtering, level, trim, G.711."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from ivr.audio import convert
from ivr.audio.convert import AudioSegment


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> AudioSegment:
    t = np.arange(int(rate * seconds)) / rate
    samples = (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    return AudioSegment(samples.tobytes(), frame_rate=rate, sample_width=2, channels=1)


def level_db(segment: AudioSegment, reference: float) -> float:
    samples = np.array(segment.get_array_of_samples(), dtype=np.float64)[800:-800]
    rms = np.sqrt(np.mean(samples**2))
    return float(20 * np.log10(max(rms, 1e-9) / reference))


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_a_5khz_tone_comes_out_at_least_60_db_down(rate: int) -> None:
    reference = 0.5 * 32767 / np.sqrt(2)
    out = convert.resample(tone(5000, rate))
    assert out.frame_rate == 8000
    assert level_db(out, reference) <= -60


@pytest.mark.parametrize("freq", [300, 1000, 3000])
def test_the_telephone_band_passes(freq: float) -> None:
    reference = 0.5 * 32767 / np.sqrt(2)
    assert level_db(convert.resample(tone(freq, 22050)), reference) > -1.0


def test_without_the_filter_pydub_would_alias() -> None:
    reference = 0.5 * 32767 / np.sqrt(2)
    aliased = tone(5000, 22050).set_frame_rate(8000)
    assert level_db(aliased, reference) > -10  # the trap the filter exists for


def test_level_normalisation_and_peak_ceiling() -> None:
    quiet = convert.to_telephony(tone(440, 8000, amplitude=0.01))
    loud = convert.to_telephony(tone(440, 8000, amplitude=0.9))
    for segment in (quiet, loud):
        body = segment[convert.PAD_MS : -convert.PAD_MS]
        assert body.dBFS == pytest.approx(convert.TARGET_DBFS, abs=0.5)
        assert segment.max_dBFS <= convert.PEAK_CEILING_DBFS + 0.01
    spiky = AudioSegment.silent(duration=500, frame_rate=8000) + tone(440, 8000, 0.02, 0.9)
    spiky = spiky + AudioSegment.silent(duration=500, frame_rate=8000)
    assert convert.normalise_level(spiky).max_dBFS <= convert.PEAK_CEILING_DBFS + 0.01


def test_trim_leaves_a_fixed_pad() -> None:
    padded = AudioSegment.silent(duration=700, frame_rate=8000) + tone(440, 8000, 0.5)
    padded = padded + AudioSegment.silent(duration=900, frame_rate=8000)
    out = convert.pad(convert.strip_silence(padded.set_sample_width(2)))
    assert len(out) == pytest.approx(500 + 2 * convert.PAD_MS, abs=10)


def test_g711_golden_bytes() -> None:
    pcm = struct.pack("<5h", 0, 1000, -1000, 32767, -32768)
    assert convert.encode(pcm, "pcmu") == bytes([0xFF, 0xCE, 0x4E, 0x80, 0x00])
    assert convert.encode(pcm, "pcma") == bytes([0xD5, 0xFA, 0x7A, 0xAA, 0x2A])
    assert convert.encode(pcm, "pcm") == pcm


@pytest.mark.parametrize(("codec", "tag"), [("pcmu", 7), ("pcma", 6)])
def test_g711_wav_header(codec: convert.Codec, tag: int) -> None:
    pcm = struct.pack("<3h", 0, 100, -100)
    data = convert.wav_bytes(pcm, codec)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    fmt_tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", data[20:36])
    assert (fmt_tag, channels, rate, byte_rate, align, bits) == (tag, 1, 8000, 8000, 1, 8)
    assert data[38:42] == b"fact" and struct.unpack("<I", data[46:50])[0] == 3
    assert data[50:54] == b"data" and struct.unpack("<I", data[54:58])[0] == 3
    assert data[58:61] == convert.encode(pcm, codec)


def test_pcm_wav_reads_back_with_the_wave_module() -> None:
    pcm = struct.pack("<4h", 1, -2, 3, -4)
    with wave.open(io.BytesIO(convert.wav_bytes(pcm))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(10) == pcm


def test_any_wav_format_loads() -> None:
    stereo = tone(440, 44100, 0.3).set_channels(2).set_sample_width(1)
    buffer = io.BytesIO()
    stereo.export(buffer, format="wav")
    out = convert.to_telephony(convert.load_wav(buffer.getvalue()))
    assert (out.frame_rate, out.channels, out.sample_width) == (8000, 1, 2)
