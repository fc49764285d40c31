"""Dialplan files: loading with positions, validation, the immutable model."""

from ivr.dialplan.loader import load_dialplan
from ivr.dialplan.model import Dialplan

__all__ = ["Dialplan", "load_dialplan"]
