"""Embed ivr in an application: your own hook, events in, commands out.

Run: .venv/bin/python examples/embed.py
"""

from __future__ import annotations

from pathlib import Path

from ivr import (
    CallStarted,
    DigitReceived,
    Engine,
    Hooks,
    PlayPrompt,
    PromptFinished,
    Session,
    load_dialplan,
)

ROOT = Path(__file__).resolve().parent.parent

hooks = Hooks()


@hooks.register("check_account")
def check_account(session: Session) -> str:
    """Our own account check: any account, PIN 0000, balance 7 euros."""
    if session.vars.get("pin") == "0000":
        session.vars["balance"] = 7
        return "ok"
    return "wrong"


def main() -> None:
    engine = Engine(load_dialplan(ROOT / "dialplans" / "demo.yaml", hooks=hooks))
    call = engine.new_call("example-1")
    events = [CallStarted(caller="+49 171 1234567", called="100")]
    events += [DigitReceived(digit=k) for k in "2"]
    for event in events:
        print(">>", event)
        for command in call.handle(event):
            print("  <<", command)
    # Finish the playing prompt, then type account and PIN.
    for keys in ("12345#", "0000"):
        for key in keys:
            for command in call.handle(DigitReceived(digit=key)):
                print("  <<", command)
    playing = [c for c in call.handle(DigitReceived(digit="0")) if isinstance(c, PlayPrompt)]
    for command in playing:
        print("  <<", command)
        print("  <<", call.handle(PromptFinished(playback=command.playback)))
    print("outcome:", call.outcome)


if __name__ == "__main__":
    main()
