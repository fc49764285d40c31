"""The demo data's fictional PINs, and a fast copy of the demo portal for tests and
benchmarks (minimum-cost PIN hashes: never for production)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ivr.portal.directory import YamlDirectory
from ivr.portal.pin import TEST_HASHER, hash_pin

#: the PINs of examples/portal/directory.yaml (fictional demo values)
DEMO_PINS = {"erika": "4711", "max": "2580", "hans": "1357"}


def copy_with_cheap_hashes(source: Path, target: Path) -> Path:
    """Copy the portal files of ``source`` into ``target`` and re-hash the demo PINs with
    argon2's minimum parameters (verifying one then costs microseconds, not ~100 ms)."""
    for file in source.glob("*.yaml"):
        shutil.copy(file, target / file.name)
    directory = YamlDirectory.load(target / "directory.yaml")
    for employee, pin in DEMO_PINS.items():
        directory.write_pin_hash(employee, hash_pin(pin, TEST_HASHER))
    return target
