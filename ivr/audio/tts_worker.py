"""The TTS worker process: ``python -m ivr.audio.tts_worker VOICE_JSON TIMEOUT``.

Reads one JSON job per line on stdin (``{"text": ..., "path": ...}``), renders it with
one pyttsx3 engine, answers one JSON line (``{"status": "ok"|"error"|"fatal"|"ready",
"message": ...}``) on the original stdout. pyttsx3's own prints go to /dev/null.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def _answer(out: TextIO, status: str, message: str = "") -> None:
    out.write(json.dumps({"status": status, "message": message}) + "\n")
    out.flush()


def main() -> None:  # pragma: no cover - runs in the child process
    from ivr.audio.tts import INSTALL_HINT, wav_complete

    voice: dict[str, Any] = json.loads(sys.argv[1])
    timeout = float(sys.argv[2])
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # pyttsx3 prints "Audio saved to ..." on stdout
    try:
        import pyttsx3

        engine = pyttsx3.init(voice["engine"])
        known = {v.id for v in engine.getProperty("voices")}
        known |= {v.name for v in engine.getProperty("voices")}
    except Exception as exc:
        _answer(out, "fatal", f"cannot start TTS ({type(exc).__name__}: {exc}); {INSTALL_HINT}")
        return
    if voice["voice"] not in known:
        _answer(out, "fatal", f"no voice {voice['voice']!r} in {voice['engine']}; {INSTALL_HINT}")
        return
    engine.setProperty("voice", voice["voice"])
    engine.setProperty("rate", voice["rate"])
    finished: list[bool] = []
    engine.connect("finished-utterance", lambda name, completed: finished.append(completed))
    _answer(out, "ready")
    for line in sys.stdin:
        job = json.loads(line)
        path = Path(job["path"])
        path.unlink(missing_ok=True)
        finished.clear()
        engine.save_to_file(job["text"], str(path))
        engine.runAndWait()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (finished and wav_complete(path)):
            time.sleep(0.005)
        if finished and wav_complete(path):
            _answer(out, "ok")
        else:
            _answer(out, "error", "no complete WAV file within the time limit")


if __name__ == "__main__":  # pragma: no cover
    main()
