"""Rendered prompt audio: render the catalog ahead of time into a cache, and assemble a
prompt with its parameters from cached pieces during a call (no synthesis then).

A prompt's text is split at its placeholders; each text piece is rendered (or taken
from a recording, ``prompts/de/recorded/<id>.wav``, which wins for prompts without
parameters), and parameter values are spoken by joining pre-rendered fragments
(:mod:`ivr.audio.speech`). Cache files are named by a hash of everything that changes
the sound — text (or the recording's content), voice, rate, engine and version, output
format, pipeline version — so a changed text re-renders only that piece.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.audio import convert
from ivr.audio.speech import SpeechError, fragments, speak
from ivr.audio.tts import Synthesizer, TtsError, TtsUnavailable, Voice, engine_version
from ivr.errors import IvrError
from ivr.prompts.catalog import PromptCatalog

PIPELINE_VERSION = "1"
MANIFEST = "manifest.json"
CACHE_DIR_NAME = ".cache"
RECORDED_DIR = "recorded"


class AudioError(IvrError):
    """Prompt audio is missing, or a recording is unreadable (the message names it)."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One renderable piece: a prompt's text piece, a recording, or a fragment."""

    name: str  # e.g. "portal_menu#0", "portal_refused", "fragment:eins"
    text: str
    recording: Path | None = None


@dataclass(slots=True)
class RenderSummary:
    """What ``render`` did."""

    rendered: int = 0
    cached: int = 0
    recorded: int = 0
    failed: list[str] = field(default_factory=list)
    #: pieces not tried because the speech engine cannot start (see ``unavailable``)
    skipped: int = 0
    #: why the speech engine cannot start (with the fix), when it cannot
    unavailable: str = ""


def default_cache_dir(catalog: PromptCatalog) -> Path:
    """``<catalog directory>/.cache``."""
    return Path(catalog.directory) / CACHE_DIR_NAME


def _split(text: str) -> list[tuple[str, str | None]]:
    """``("text", None)`` and ``("", param)`` parts of a prompt text, in order."""
    parts: list[tuple[str, str | None]] = []
    for literal, name, _spec, _conv in string.Formatter().parse(text):
        if literal.strip():
            parts.append((literal.strip(), None))
        if name is not None:
            parts.append(("", name))
    return parts


class PromptAudio:
    """The audio of one catalog: render it, and assemble prompts from the cache."""

    def __init__(
        self,
        catalog: PromptCatalog,
        cache_dir: str | Path | None = None,
        voice: Voice | None = None,
    ) -> None:
        self.catalog = catalog
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(catalog)
        self.voice = voice or Voice()
        self.recorded_dir = Path(catalog.directory) / RECORDED_DIR
        self._engine = engine_version()
        self._manifest: dict[str, float] = {}  # cache key -> seconds
        self._pcm: dict[str, bytes] = {}  # cache key -> 8 kHz 16-bit PCM (loaded)
        self._keys: dict[str, str] = {}  # piece name -> cache key
        self._load_manifest()

    # --- what there is to render -------------------------------------------------
    def recording(self, prompt_id: str) -> Path | None:
        """The recorded override of a prompt, if there is one."""
        path = self.recorded_dir / f"{prompt_id}.wav"
        return path if path.is_file() else None

    def pieces(self) -> Iterator[Piece]:
        """Every piece of the catalog and every fragment, in a stable order."""
        for prompt_id in sorted(self.catalog):
            prompt = self.catalog[prompt_id]
            recording = self.recording(prompt_id)
            if recording is not None and not prompt.params:
                yield Piece(prompt_id, prompt.text, recording)
                continue
            for i, (text, param) in enumerate(_split(prompt.text)):
                if param is None:
                    yield Piece(f"{prompt_id}#{i}", text)
        for word in fragments():
            yield Piece(f"fragment:{word}", word)

    def orphan_recordings(self) -> list[Path]:
        """Recordings whose prompt id is not in the catalog (no text)."""
        if not self.recorded_dir.is_dir():
            return []
        return sorted(p for p in self.recorded_dir.glob("*.wav") if p.stem not in self.catalog)

    def key(self, piece: Piece) -> str:
        """The cache key of ``piece``: a hash of everything that changes its sound."""
        if piece.name not in self._keys:
            source = (
                hashlib.sha256(piece.recording.read_bytes()).hexdigest()
                if piece.recording is not None
                else piece.text
            )
            parts = [PIPELINE_VERSION, "pcm16/8000/mono", source]
            if piece.recording is None:
                parts += [self.voice.engine, self.voice.voice, str(self.voice.rate), self._engine]
            digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
            self._keys[piece.name] = digest
        return self._keys[piece.name]

    def _path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.wav"

    # --- rendering ---------------------------------------------------------------
    def render(
        self, *, force: bool = False, progress: Callable[[Piece], None] | None = None
    ) -> RenderSummary:
        """Render every piece that is not cached (all with ``force``).

        A speech engine that cannot start fails once (``unavailable``, also the first
        of ``failed``): the remaining pieces to synthesise are ``skipped``, not each
        tried again; recordings are still converted."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        summary = RenderSummary()
        synthesizer: Synthesizer | None = None
        try:
            for piece in self.pieces():
                if progress is not None:
                    progress(piece)
                key = self.key(piece)
                if not force and key in self._manifest and self._path(key).is_file():
                    summary.cached += 1
                    continue
                if piece.recording is None and summary.unavailable:
                    summary.skipped += 1
                    continue
                try:
                    if piece.recording is not None:
                        segment = self._from_recording(piece.recording)
                        summary.recorded += 1
                    else:
                        synthesizer = synthesizer or Synthesizer(self.voice)
                        segment = self._synthesise(synthesizer, piece)
                        summary.rendered += 1
                except TtsUnavailable as exc:
                    summary.unavailable = str(exc)
                    summary.failed.append(str(exc))
                    continue
                except (AudioError, TtsError) as exc:
                    summary.failed.append(str(exc))
                    continue
                self._path(key).write_bytes(convert.wav_bytes(segment.raw_data))
                self._manifest[key] = round(len(segment) / 1000, 3)
        finally:
            if synthesizer is not None:
                synthesizer.close()
            self._save_manifest()
        return summary

    def _synthesise(self, synthesizer: Synthesizer, piece: Piece) -> Any:
        raw = self.cache_dir / f"tts-{self.key(piece)}.wav"
        try:
            synthesizer.render(piece.text, raw, prompt=piece.name)
            segment = convert.load_wav(str(raw))
            if len(segment) == 0:
                raise TtsError(f"prompt {piece.name!r}: the speech engine wrote no audio")
            return convert.to_telephony(segment)
        finally:
            raw.unlink(missing_ok=True)

    def _from_recording(self, path: Path) -> Any:
        try:
            return convert.to_telephony(convert.load_wav(str(path)))
        except Exception as exc:  # pydub/wave raise many kinds for a bad file
            raise AudioError(
                f"{path}: unreadable recording ({type(exc).__name__}: {exc})"
            ) from None

    def _load_manifest(self) -> None:
        path = self.cache_dir / MANIFEST
        if path.is_file():
            try:
                self._manifest = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, AttributeError):
                self._manifest = {}

    def _save_manifest(self) -> None:
        (self.cache_dir / MANIFEST).write_text(json.dumps(self._manifest, sort_keys=True, indent=0))

    # --- using the cache ---------------------------------------------------------
    def missing(self) -> list[str]:
        """Names of pieces without cached audio."""
        return [p.name for p in self.pieces() if self.key(p) not in self._manifest]

    def load(self) -> int:
        """Read every cached piece into memory (warm start); returns how many."""
        for piece in self.pieces():
            key = self.key(piece)
            if key in self._manifest and key not in self._pcm:
                self._pcm[key] = self._read(key)
        return len(self._pcm)

    def piece_pcm(self, piece: Piece) -> bytes:
        """The cached audio of one piece (8 kHz 16-bit PCM)."""
        return self._read(self.key(piece))

    def _read(self, key: str) -> bytes:
        data = self._path(key).read_bytes()
        return data[44:]  # our own canonical files: 44-byte header, then PCM

    def _plan(self, prompt_id: str, params: Mapping[str, Any]) -> list[str]:
        """The cache keys that make up ``prompt_id`` with ``params``."""
        prompt = self.catalog[prompt_id]
        recording = self.recording(prompt_id)
        if recording is not None and not prompt.params:
            return [self.key(Piece(prompt_id, prompt.text, recording))]
        keys = []
        for i, (text, param) in enumerate(_split(prompt.text)):
            if param is None:
                keys.append(self.key(Piece(f"{prompt_id}#{i}", text)))
            else:
                for word in speak(prompt.params[param], params.get(param)):
                    keys.append(self.key(Piece(f"fragment:{word}", word)))
        return keys

    def seconds(self, prompt_id: str, params: Mapping[str, Any]) -> float | None:
        """Duration of the assembled prompt, or None when a piece is not rendered."""
        try:
            keys = self._plan(prompt_id, params)
        except (KeyError, SpeechError):
            return None
        if any(key not in self._manifest for key in keys):
            return None
        return round(sum(self._manifest[key] for key in keys), 3)

    def pcm(self, prompt_id: str, params: Mapping[str, Any] | None = None) -> bytes:
        """The prompt as 8 kHz mono 16-bit PCM, its parameters spoken from fragments."""
        try:
            keys = self._plan(prompt_id, params or {})
        except SpeechError as exc:
            raise AudioError(f"prompt {prompt_id!r}: {exc}") from None
        chunks = []
        for key in keys:
            if key not in self._pcm:
                if key not in self._manifest:
                    raise AudioError(
                        f"prompt {prompt_id!r} has no rendered audio: run `ivr prompts render`"
                    )
                self._pcm[key] = self._read(key)
            chunks.append(self._pcm[key])
        return b"".join(chunks)

    def wav(
        self, prompt_id: str, params: Mapping[str, Any] | None = None, codec: convert.Codec = "pcm"
    ) -> bytes:
        """The prompt as a WAV file: 16-bit PCM, or G.711 (``pcmu``/``pcma``)."""
        return convert.wav_bytes(self.pcm(prompt_id, params), codec)
