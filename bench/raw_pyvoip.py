"""Baseline for the load benchmark: a plain pyVoIP 1.6.8 answering machine.

This is what a typical user writes with pyVoIP: register a ``VoIPPhone``, answer every
incoming call in the callback, queue a WAV prompt with ``write_audio`` and poll
``get_dtmf()`` until the caller hangs up. It deliberately contains no fixes to pyVoIP
(the bug table in docs/pyvoip.md) beyond what is needed to run at all:

* ``pyVoIP.VoIP`` is imported before anything else of pyVoIP (circular import, bug 18);
* ``phone.stop()`` may block ~30 s on de-REGISTER (bug 14), so it runs in a helper thread
  that is waited for at most 3 s before the process exits with ``os._exit`` (pyVoIP's
  threads are not daemon threads and would keep the interpreter alive).

Run from the repository root, with a registrar (e.g. Kamailio) on 127.0.0.1::

    .venv/bin/python bench/raw_pyvoip.py --registrar 127.0.0.1:5060 --user portal \\
        --password x --bind 127.0.0.1 --port 5080 --wav prompt.wav --stats /tmp/stats.json

On SIGTERM/SIGINT it writes ``{"calls", "keys", "keys_per_call", "threads_peak"}`` as
JSON to ``--stats`` and exits. ``keys_per_call`` has one entry per answered call, in
answer order, including calls still up at that moment; ``threads_peak`` is
``threading.active_count()`` sampled every 0.2 s and at each answer.
"""

from __future__ import annotations

import argparse
import audioop  # deprecated in 3.11+, removed in 3.13 (pyVoIP needs it too)
import contextlib
import json
import os
import signal
import sys
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from types import FrameType

# pyVoIP.VoIP must be imported before pyVoIP.SIP (circular import); this line does it.
from pyVoIP.VoIP import CallState, InvalidStateError, VoIPCall, VoIPPhone

CALL_LIMIT_S = 60.0


def load_wav(path: Path) -> bytes:
    """Read an 8 kHz mono 16-bit WAV and return pyVoIP's 8-bit unsigned linear audio."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
            raise SystemExit(
                f"{path}: need 8 kHz mono 16-bit, got {w.getframerate()} Hz, "
                f"{w.getnchannels()} ch, {8 * w.getsampwidth()} bit"
            )
        pcm = w.readframes(w.getnframes())
    return audioop.bias(audioop.lin2lin(pcm, 2, 1), 1, 128)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.keys_per_call: list[int] = []
        self.threads_peak = threading.active_count()

    def sample_threads(self) -> None:
        n = threading.active_count()
        with self.lock:
            self.threads_peak = max(self.threads_peak, n)

    def as_dict(self) -> dict[str, object]:
        with self.lock:
            return {
                "calls": self.calls,
                "keys": sum(self.keys_per_call),
                "keys_per_call": list(self.keys_per_call),
                "threads_peak": self.threads_peak,
            }


def make_callback(audio: bytes, stats: Stats) -> Callable[[VoIPCall], None]:
    def answer(call: VoIPCall) -> None:
        try:
            call.answer()
        except InvalidStateError:
            return
        with stats.lock:
            stats.calls += 1
            index = len(stats.keys_per_call)
            stats.keys_per_call.append(0)
        stats.sample_threads()
        call.write_audio(audio)
        deadline = time.monotonic() + CALL_LIMIT_S
        while call.state != CallState.ENDED and time.monotonic() < deadline:
            if call.get_dtmf():
                with stats.lock:
                    stats.keys_per_call[index] += 1
            else:
                time.sleep(0.01)
        while call.get_dtmf():  # keys that arrived between the last poll and the BYE
            with stats.lock:
                stats.keys_per_call[index] += 1
        if call.state == CallState.ANSWERED:
            with contextlib.suppress(InvalidStateError):
                call.hangup()

    return answer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registrar", required=True, help="HOST:PORT of the registrar")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--bind", default="127.0.0.1", help="local IP address")
    ap.add_argument("--port", type=int, default=5080, help="local SIP port")
    ap.add_argument("--wav", type=Path, required=True)
    ap.add_argument("--stats", type=Path, required=True)
    ap.add_argument("--rtp-low", type=int, default=10000)
    ap.add_argument("--rtp-high", type=int, default=20000)
    args = ap.parse_args(argv)

    host, _, port = args.registrar.rpartition(":")
    audio = load_wav(args.wav)
    stats = Stats()
    phone = VoIPPhone(
        host,
        int(port),
        args.user,
        args.password,
        myIP=args.bind,
        callCallback=make_callback(audio, stats),
        sipPort=args.port,
        rtpPortLow=args.rtp_low,
        rtpPortHigh=args.rtp_high,
    )

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    phone.start()
    print(f"registered as {args.user} at {args.registrar}", file=sys.stderr, flush=True)
    while not done.wait(0.2):
        stats.sample_threads()

    stopper = threading.Thread(target=phone.stop, name="phone-stop", daemon=True)
    stopper.start()
    stopper.join(3.0)
    args.stats.write_text(json.dumps(stats.as_dict(), indent=2) + "\n")
    print(json.dumps(stats.as_dict()), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(0)  # pyVoIP's non-daemon threads would otherwise keep the process alive


if __name__ == "__main__":
    sys.exit(main())
