"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dialogue import Engine
from ivr.dialplan import load_dialplan

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dialplans" / "demo.yaml"


@pytest.fixture(scope="session")
def demo_engine() -> Engine:
    """An engine of the demo dialplan, shared by the session's tests."""
    return Engine(load_dialplan(DEMO))
