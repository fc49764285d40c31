"""Call-progress tones the runtime plays itself (not prompts): the ringback a caller
hears while a call-back rings.

The German ringback [Freiton] is 425 Hz, 1 s on, 4 s off (ITU-T E.180 Supplement 2,
Germany); other countries differ (US 440+480 Hz, 2 s on, 4 s off), hence the
parameters.
"""

from __future__ import annotations

import numpy as np

RATE = 8000


def ringback(
    frequencies: tuple[float, ...] = (425.0,),
    on: float = 1.0,
    off: float = 4.0,
    level_dbfs: float = -16.0,
) -> bytes:
    """One cadence (tone, then silence) as 8 kHz 16-bit PCM; the tone ramps in and out
    over 5 ms so it does not click."""
    t = np.arange(int(RATE * on)) / RATE
    amplitude = 32767 * 10 ** (level_dbfs / 20) / len(frequencies)
    tone = sum(amplitude * np.sin(2 * np.pi * f * t) for f in frequencies)
    ramp = np.minimum(1.0, np.minimum(np.arange(t.size), np.arange(t.size)[::-1]) / (RATE / 200))
    samples = np.concatenate([tone * ramp, np.zeros(int(RATE * off))])
    return np.round(samples).astype("<i2").tobytes()
