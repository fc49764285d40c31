"""In-band DTMF: a tone generator (tests, test audio) and a streaming detector for
callers whose phones send keys as tones rather than RFC 4733 events.

The detector looks at 20 ms blocks of 8 kHz audio, stepped by 10 ms (with
non-overlapping blocks 40 ms tones were missed 1 time in 50, measured).
Per block it computes the DFT power at the 8 DTMF frequencies (a vectorised Goertzel)
and accepts a key when, in the style of ITU-T Q.24:

- each group's strongest tone is above ``LEVEL_FLOOR`` and dominates its group by
  ``GROUP_DOMINANCE_DB``;
- both tones are within ``FREQ_TOLERANCE`` of nominal: the frequency is estimated from
  the phase advance between two overlapping 15 ms sub-blocks, so ±1.5 % is accepted and
  ±3.5 % rejected (the threshold sits between them); the tones' amplitudes are then
  corrected for the estimated offset (a tone between bins reads low);
- twist (high group minus low group) lies within ``-NORMAL_TWIST_DB`` ..
  ``+REVERSE_TWIST_DB``;
- the two tones hold at least ``ENERGY_RATIO`` of the block's energy (speech, noise and
  music spread theirs);
- the same key holds for ``MIN_HITS`` consecutive blocks (a tone of 40 ms is always
  seen, 20 ms never), and the key is released after ``RELEASE_MISSES`` blocks without
  it (one long tone is one key; a pause of 40 ms separates two). A running key needs
  only its two tones to keep dominating (hysteresis), so checks that flicker near a
  limit cannot split one tone into two keys.
"""

from __future__ import annotations

import numpy as np

RATE = 8000
LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")  # KEYS[low][high]
BLOCK = 160  # 20 ms
STEP = 80  # 10 ms
LAG = 40  # samples between the two phase sub-blocks (5 ms)
SUB = BLOCK - LAG

LEVEL_FLOOR = 0.01  # tone amplitude, fraction of full scale (~ -40 dBFS)
GROUP_DOMINANCE_DB = 8.0
NORMAL_TWIST_DB = 8.0  # high group may be this much weaker than the low group
REVERSE_TWIST_DB = 4.0  # ... or this much stronger
ENERGY_RATIO = 0.6
FREQ_TOLERANCE = 0.025  # accept <= 1.5 %, reject >= 3.5 %
MIN_HITS = 2
RELEASE_MISSES = 2

_FREQS = np.array(LOW + HIGH)
_N = np.arange(BLOCK)
_BASIS = np.exp(-2j * np.pi * np.outer(_FREQS, _N) / RATE)  # (8, 160)


def _block_key(block: np.ndarray) -> tuple[str | None, bool]:
    """``(key, valid)`` for one 20 ms block: the key whose tones dominate (level and
    group dominance), and whether it passes every acceptance check."""
    energy = float(np.dot(block, block))
    if energy <= 0:
        return None, False
    full = _BASIS @ block  # amplitude at each frequency is 2|C|/N
    amplitude = 2 * np.abs(full) / BLOCK
    low, high = int(np.argmax(amplitude[:4])), 4 + int(np.argmax(amplitude[4:]))
    if min(amplitude[low], amplitude[high]) < LEVEL_FLOOR * 32768:
        return None, False
    for peak, group in ((low, range(4)), (high, range(4, 8))):
        others = max(amplitude[i] for i in group if i != peak)
        if others > 0 and 20 * np.log10(amplitude[peak] / others) < GROUP_DOMINANCE_DB:
            return None, False
    key = KEYS[low][high - 4]
    corrected = []
    for index in (low, high):
        first = _BASIS[index, :SUB] @ block[:SUB]
        second = _BASIS[index, LAG:] @ block[LAG:]
        shift = float(np.angle(second * np.conj(first))) * RATE / (2 * np.pi * LAG)
        if abs(shift) > FREQ_TOLERANCE * _FREQS[index]:
            return key, False
        # a tone off its bin loses amplitude as sinc(offset in bins): undo that
        corrected.append(amplitude[index] / max(abs(float(np.sinc(shift * BLOCK / RATE))), 0.5))
    a_low, a_high = corrected
    twist = 20 * np.log10(a_high / a_low)
    tone_energy = (a_low**2 + a_high**2) / 2 * BLOCK
    valid = -NORMAL_TWIST_DB <= twist <= REVERSE_TWIST_DB and tone_energy / energy >= ENERGY_RATIO
    return key, valid


class DtmfDetector:
    """Feed 8 kHz 16-bit mono audio in any chunk sizes; get keys as they are recognised."""

    def __init__(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None
        self._hits = 0
        self._misses = 0
        self._active: str | None = None

    def feed(self, samples: np.ndarray | bytes) -> list[str]:
        """Take more audio; returns the keys recognised in it (usually none)."""
        if isinstance(samples, bytes | bytearray | memoryview):
            samples = np.frombuffer(bytes(samples), dtype="<i2")
        data = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float64)])
        keys: list[str] = []
        start = 0
        while start + BLOCK <= len(data):
            key = self._track(*_block_key(data[start : start + BLOCK]))
            if key is not None:
                keys.append(key)
            start += STEP
        self._buffer = data[start:]
        return keys

    def _track(self, dominant: str | None, valid: bool) -> str | None:
        if dominant is not None and dominant == self._active:
            self._misses = 0  # hysteresis: a running key only needs its tones to dominate
            return None
        seen = dominant if valid else None
        if seen is None or seen != self._candidate:
            self._misses += 1
            if self._misses >= RELEASE_MISSES:
                self._active = None
            self._candidate, self._hits = seen, (1 if seen is not None else 0)
            return None
        self._hits += 1
        if self._hits >= MIN_HITS and self._active is None:
            self._active, self._misses = seen, 0
            return seen
        return None


def generate(
    keys: str,
    *,
    tone_ms: float = 80,
    gap_ms: float = 80,
    level_dbfs: float = -10.0,
    twist_db: float = 0.0,
    freq_offset: float = 0.0,
    lead_ms: float = 40,
) -> np.ndarray:
    """8 kHz int16 audio of ``keys`` as DTMF tones (each tone at ``level_dbfs`` peak,
    the high tone ``twist_db`` louder, both frequencies scaled by ``1 + freq_offset``)."""
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    parts = [np.zeros(int(RATE * lead_ms / 1000))]
    t = np.arange(int(RATE * tone_ms / 1000)) / RATE
    for key in keys:
        row = next(i for i, group in enumerate(KEYS) if key in group)
        low, high = LOW[row] * (1 + freq_offset), HIGH[KEYS[row].index(key)] * (1 + freq_offset)
        tone = amplitude * np.sin(2 * np.pi * low * t)
        tone += amplitude * 10 ** (twist_db / 20) * np.sin(2 * np.pi * high * t)
        parts += [tone, np.zeros(int(RATE * gap_ms / 1000))]
    audio = np.concatenate(parts)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def add_noise(samples: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``samples`` plus white noise at ``snr_db`` below the signal's power (tone parts)."""
    signal = samples.astype(np.float64)
    active = signal[np.abs(signal) > 0]
    power = float(np.mean(active**2)) if active.size else 1.0
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(signal))
    return np.clip(np.round(signal + noise), -32768, 32767).astype(np.int16)
