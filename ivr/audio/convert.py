"""Telephony audio from any WAV: mono, anti-alias filtered, 8 kHz 16-bit, trimmed to a
fixed pad, level-normalised — and G.711 (µ-law / A-law) WAV files without ffmpeg.

``pydub``'s ``set_frame_rate`` resamples without an anti-alias filter (a 5 kHz tone
comes out at -1.5 dB, aliased to 3 kHz), so a windowed-sinc FIR low-pass (Kaiser,
255 taps) runs first.

Loudness: every prompt is scaled to an RMS of ``TARGET_DBFS`` (-18 dBFS), unless that
would push its peak above ``PEAK_CEILING_DBFS`` (-1 dBFS), in which case the peak sets
the gain. Silence below ``SILENCE_DBFS`` is trimmed from both ends and ``PAD_MS`` of
silence put back.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Literal

import numpy as np

with warnings.catch_warnings():  # pydub warns about ffmpeg, which we never need
    warnings.simplefilter("ignore")
    from pydub import AudioSegment
    from pydub.silence import detect_leading_silence

import audioop  # Python 3.13 removed it; the audioop-lts dependency provides it there

RATE = 8000
SAMPLE_WIDTH = 2
#: low-pass cutoff before resampling to 8 kHz (the telephone band ends at 3.4 kHz)
CUTOFF_HZ = 3600.0
FIR_TAPS = 255
KAISER_BETA = 8.6
TARGET_DBFS = -18.0
PEAK_CEILING_DBFS = -1.0
SILENCE_DBFS = -45.0
PAD_MS = 60

Codec = Literal["pcm", "pcmu", "pcma"]
_FORMAT_TAG = {"pcma": 6, "pcmu": 7}


def lowpass(samples: np.ndarray, rate: int, cutoff: float = CUTOFF_HZ) -> np.ndarray:
    """Windowed-sinc FIR low-pass of float ``samples`` (same length, zero phase)."""
    n = np.arange(FIR_TAPS) - (FIR_TAPS - 1) / 2
    taps = np.sinc(2 * cutoff / rate * n) * np.kaiser(FIR_TAPS, KAISER_BETA)
    taps /= taps.sum()
    return np.convolve(samples, taps, mode="same")


def to_telephony(segment: AudioSegment) -> AudioSegment:
    """``segment`` as 8 kHz mono 16-bit: filtered, resampled, trimmed, normalised."""
    return pad(normalise_level(strip_silence(resample(segment))))


def resample(segment: AudioSegment) -> AudioSegment:
    """Mono 16-bit at 8 kHz; above 8 kHz the FIR low-pass runs before resampling."""
    segment = segment.set_channels(1).set_sample_width(SAMPLE_WIDTH)
    if segment.frame_rate > RATE:
        samples = np.array(segment.get_array_of_samples(), dtype=np.float64)
        filtered = lowpass(samples, segment.frame_rate)
        clipped = np.clip(np.round(filtered), -32768, 32767).astype("<i2")
        segment = segment._spawn(clipped.tobytes())
    return segment.set_frame_rate(RATE) if segment.frame_rate != RATE else segment


def strip_silence(segment: AudioSegment) -> AudioSegment:
    """Cut leading and trailing silence (below ``SILENCE_DBFS``)."""
    start = detect_leading_silence(segment, silence_threshold=SILENCE_DBFS, chunk_size=5)
    end = detect_leading_silence(segment.reverse(), silence_threshold=SILENCE_DBFS, chunk_size=5)
    return segment[start : max(start, len(segment) - end)]


def pad(segment: AudioSegment, pad_ms: int = PAD_MS) -> AudioSegment:
    """``pad_ms`` of silence before and after ``segment``."""
    silence = AudioSegment.silent(duration=pad_ms, frame_rate=RATE).set_sample_width(SAMPLE_WIDTH)
    return silence + segment + silence


def normalise_level(segment: AudioSegment) -> AudioSegment:
    """Scale to ``TARGET_DBFS`` RMS, keeping the peak at or below ``PEAK_CEILING_DBFS``."""
    if segment.rms == 0:
        return segment
    gain = TARGET_DBFS - segment.dBFS
    gain = min(gain, PEAK_CEILING_DBFS - segment.max_dBFS)
    return segment.apply_gain(gain)


def load_wav(data: bytes | str) -> AudioSegment:
    """Read a WAV file (path or bytes) of any rate, width and channel count."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with warnings.catch_warnings():  # pydub probes for ffprobe on odd files
        warnings.simplefilter("ignore")
        return AudioSegment.from_wav(source)


def encode(pcm16: bytes, codec: Codec) -> bytes:
    """16-bit linear PCM to ``codec`` payload (G.711 µ-law / A-law, or unchanged)."""
    if codec == "pcmu":
        return audioop.lin2ulaw(pcm16, SAMPLE_WIDTH)
    if codec == "pcma":
        return audioop.lin2alaw(pcm16, SAMPLE_WIDTH)
    return pcm16


def decode(payload: bytes, codec: Codec) -> bytes:
    """G.711 payload (µ-law / A-law) back to 16-bit linear PCM."""
    if codec == "pcmu":
        return audioop.ulaw2lin(payload, SAMPLE_WIDTH)
    if codec == "pcma":
        return audioop.alaw2lin(payload, SAMPLE_WIDTH)
    return payload


def law_table(source: Codec, target: Codec) -> bytes | None:
    """A 256-byte ``bytes.translate`` table from one G.711 law to the other (through
    16-bit linear, as a transcoder does); None when nothing changes."""
    if source == target:
        return None
    return bytes(encode(decode(bytes([b]), source), target)[0] for b in range(256))


def wav_bytes(pcm16: bytes, codec: Codec = "pcm", rate: int = RATE) -> bytes:
    """A complete mono WAV file: 16-bit PCM, or G.711 (format tag 7 µ-law, 6 A-law)."""
    if codec == "pcm":
        fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
        chunks = [b"fmt " + struct.pack("<I", len(fmt)) + fmt]
        payload = pcm16
    else:
        payload = encode(pcm16, codec)
        fmt = struct.pack("<HHIIHHH", _FORMAT_TAG[codec], 1, rate, rate, 1, 8, 0)
        fact = struct.pack("<I", len(payload))
        chunks = [
            b"fmt " + struct.pack("<I", len(fmt)) + fmt,
            b"fact" + struct.pack("<I", len(fact)) + fact,
        ]
    data = (
        b"data" + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")
    )
    body = b"WAVE" + b"".join(chunks) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body
