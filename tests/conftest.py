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


PORTAL_DIALPLAN = ROOT / "dialplans" / "anywhere_portal.yaml"
PORTAL_EXAMPLES = ROOT / "examples" / "portal"
#: the demo PINs of examples/portal/directory.yaml (fictional)
DEMO_PINS = {"erika": "4711", "max": "2580", "hans": "1357"}


@pytest.fixture(scope="session")
def fast_portal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/portal whose PIN hashes use argon2's minimum cost (tests only).

    The demo PINs stay the same; verifying one costs ~0.05 ms instead of ~100 ms.
    """
    import shutil

    from ivr.portal.directory import YamlDirectory
    from ivr.portal.pin import TEST_HASHER, hash_pin

    folder = tmp_path_factory.mktemp("portal")
    for file in PORTAL_EXAMPLES.glob("*.yaml"):
        shutil.copy(file, folder / file.name)
    directory = YamlDirectory.load(folder / "directory.yaml")
    for employee, pin in DEMO_PINS.items():
        directory.write_pin_hash(employee, hash_pin(pin, TEST_HASHER))
    return folder
