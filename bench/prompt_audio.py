"""Prompt audio: cold render of the whole German catalog, warm start from the cache.

Run from the repository root::

    .venv/bin/python bench/prompt_audio.py

Cold: every piece (prompt texts and parameter fragments) rendered into an empty cache
through the pyttsx3 worker and the 8 kHz pipeline. Baseline, in the same run: the same
texts through the ``espeak-ng`` command line, one process per piece, WAV only (no
conversion). Warm start: a new :class:`PromptAudio` loading every cached piece into
memory, ready to play (goal <= 1 s).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ivr.audio.library import PromptAudio
from ivr.prompts.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent
WARM_GOAL_S = 1.0


def main() -> int:
    catalog = load_catalog(ROOT / "prompts" / "de", "de")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        audio = PromptAudio(catalog, cache)
        pieces = list(audio.pieces())
        start = time.perf_counter()
        summary = audio.render()
        cold = time.perf_counter() - start
        if summary.failed:
            print("render failed:", *summary.failed, sep="\n  ")
            return 1
        seconds_of_audio = sum(audio.seconds(p, {}) or 0 for p in catalog if not catalog[p].params)
        warm = []
        for _ in range(5):
            start = time.perf_counter()
            loaded = PromptAudio(catalog, cache).load()
            warm.append(time.perf_counter() - start)
        baseline = None
        espeak = shutil.which("espeak-ng")
        if espeak:
            start = time.perf_counter()
            for i, piece in enumerate(pieces):
                out = Path(tmp) / f"cli{i}.wav"
                subprocess.run([espeak, "-v", "de", "-w", str(out), piece.text], check=True)
            baseline = time.perf_counter() - start
    print(f"command:  {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python:   {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}"
    )
    fragments = sum(1 for p in pieces if p.name.startswith("fragment:"))
    print(
        f"catalog:  {len(catalog)} prompts -> {len(pieces)} pieces ({fragments} of them "
        f"parameter fragments); parameterless prompts hold {seconds_of_audio:.0f} s of audio"
    )
    print(
        f"cold render (pyttsx3 worker + FIR/8 kHz/level/trim): {cold:6.2f} s "
        f"({cold / len(pieces) * 1000:.1f} ms per piece)"
    )
    if baseline is not None:
        print(
            f"baseline espeak-ng CLI, one process per piece, raw WAV: {baseline:6.2f} s "
            f"-> ivr / baseline = {cold / baseline:.2f}x"
        )
    best = min(warm)
    print(
        f"warm start (load {loaded} cached pieces):            {best * 1000:6.1f} ms "
        f"(goal <= {WARM_GOAL_S:g} s: {'met' if best <= WARM_GOAL_S else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
