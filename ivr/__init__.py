"""ivr — declarative voice menus: dialplans as YAML states, a sans-I/O dialogue core,
a virtual-time simulator and scripted DTMF testing."""

import logging

from ivr.callcontrol import Replaces
from ivr.commands import (
    CancelTimer,
    Command,
    Dial,
    Hangup,
    PlayPrompt,
    PullCall,
    StartTimer,
    StopPrompt,
    Transfer,
)
from ivr.dialogue import Dialogue, Engine
from ivr.dialplan import Dialplan, load_dialplan
from ivr.errors import DialplanError, HookError, IvrError, Problem, UnexpectedEventError
from ivr.events import (
    CallControlResult,
    CallHungUp,
    CallStarted,
    DigitReceived,
    Event,
    PromptFinished,
    TimerFired,
)
from ivr.hooks import Hooks
from ivr.prompts import PromptCatalog, load_catalog
from ivr.secret import Secret
from ivr.session import Session
from ivr.sim import SimCall, Simulator, VirtualClock

__all__ = [
    "CallControlResult",
    "CallHungUp",
    "CallStarted",
    "CancelTimer",
    "Command",
    "Dial",
    "Dialogue",
    "Dialplan",
    "DialplanError",
    "DigitReceived",
    "Engine",
    "Event",
    "Hangup",
    "HookError",
    "Hooks",
    "IvrError",
    "PlayPrompt",
    "Problem",
    "PromptCatalog",
    "PromptFinished",
    "PullCall",
    "Replaces",
    "Secret",
    "Session",
    "SimCall",
    "Simulator",
    "StartTimer",
    "StopPrompt",
    "TimerFired",
    "Transfer",
    "UnexpectedEventError",
    "VirtualClock",
    "load_catalog",
    "load_dialplan",
]

# a library logs, the application decides where to (no "No handlers" warning, no output)
logging.getLogger(__name__).addHandler(logging.NullHandler())
