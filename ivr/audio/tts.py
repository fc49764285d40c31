"""Offline text-to-speech with pyttsx3 on its espeak-ng driver, made robust.

pyttsx3 2.99 has measured traps (listed in docs/prompt-audio.md): the first ``runAndWait()``
can return before the file exists, a second ``save_to_file`` cancels the first, it
hangs when the output directory is missing or after a fork, and voice errors are
swallowed. So rendering runs in ONE worker process (``python -m ivr.audio.tts_worker``) that owns
one engine and renders one text at a time: it waits for the ``finished-utterance``
callback and for a complete WAV file, within a bounded time. A worker that hangs or
dies is killed and replaced, and the prompt retried; after the retries a
:class:`TtsError` names the prompt and the fix. A worker that cannot start at all
(espeak-ng or the voice missing) is :class:`TtsUnavailable`: no retry, and no other
prompt can be rendered either.
"""

from __future__ import annotations

import json
import select
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ivr.errors import IvrError

INSTALL_HINT = "install espeak-ng (Debian: apt-get install espeak-ng; `make` does it)"


class TtsError(IvrError):
    """A prompt could not be synthesised; the message names the prompt and the fix."""


class TtsUnavailable(TtsError):
    """The speech engine cannot start at all (espeak-ng or the voice missing): nothing
    can be synthesised until the fix the message names."""


@dataclass(frozen=True, slots=True)
class Voice:
    """What changes the sound of synthesised speech (part of the cache key)."""

    engine: str = "espeak"
    voice: str = "gmw/de"
    rate: int = 160


def engine_version() -> str:
    """pyttsx3's version and espeak-ng's (for the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pyttsx3_version = version("pyttsx3")
    except PackageNotFoundError:
        pyttsx3_version = "missing"
    espeak = "unknown"
    for path in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        found = sorted(Path(path).glob("libespeak-ng.so.*.*")) if Path(path).is_dir() else []
        if found:
            espeak = found[-1].name
            break
    return f"pyttsx3-{pyttsx3_version}+{espeak}"


def wav_complete(path: Path) -> bool:
    """True when ``path`` is a WAV whose RIFF size matches the file (fully written) and
    that holds audio (a header alone — espeak once wrote one under load — is not done)."""
    try:
        with path.open("rb") as wav:
            head = wav.read(12)
            size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    riff_size = struct.unpack("<I", head[4:8])[0]
    return size > 44 and riff_size + 8 <= size


class Synthesizer:
    """Renders texts to WAV files through a worker process. Use as a context manager."""

    def __init__(self, voice: Voice | None = None, *, timeout: float = 20.0, retries: int = 2):
        self.voice = voice or Voice()
        self.timeout = timeout
        self.retries = retries
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[str]:
        voice = json.dumps(
            {"engine": self.voice.engine, "voice": self.voice.voice, "rate": self.voice.rate}
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "ivr.audio.tts_worker", voice, str(self.timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._process = process
        status, message = self._receive(self.timeout + 10)
        if status != "ready":
            self._kill()
            if status != "fatal":  # the worker died or hung before it could say why
                message = f"cannot start TTS: {message or 'the worker did not start'}"
            raise TtsUnavailable(message)
        return process

    def _receive(self, timeout: float) -> tuple[str, str]:
        """One answer line from the worker, or ("hung", ...) after ``timeout``."""
        assert self._process is not None and self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            return "hung", f"no answer within {timeout:g} s (worker hung)"
        line = self._process.stdout.readline()
        if not line:
            return "died", f"worker died (exit code {self._process.poll()})"
        answer = json.loads(line)
        return str(answer["status"]), str(answer["message"])

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def close(self) -> None:
        """Stop the worker."""
        if self._process is not None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.close()
                self._process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._kill()

    def render(self, text: str, path: Path, *, prompt: str = "") -> None:
        """Synthesise ``text`` into the WAV file ``path`` (its directory must exist)."""
        if not text.strip():
            raise TtsError(f"prompt {prompt!r}: empty text")
        if not path.parent.is_dir():
            raise TtsError(f"prompt {prompt!r}: directory {path.parent} does not exist")
        problem = "unknown"
        for _attempt in range(self.retries + 1):
            try:
                process = self._process or self._start()
            except TtsUnavailable as exc:
                raise TtsUnavailable(f"prompt {prompt!r}: {exc}") from None
            try:
                assert process.stdin is not None
                process.stdin.write(json.dumps({"text": text, "path": str(path)}) + "\n")
                process.stdin.flush()
            except OSError as exc:
                status, problem = "died", f"worker died ({type(exc).__name__})"
            else:
                status, problem = self._receive(self.timeout + 5)
            if status == "ok":
                return
            self._kill()
        raise TtsError(
            f"prompt {prompt!r}: synthesis failed after {self.retries + 1} tries: {problem}"
        )
