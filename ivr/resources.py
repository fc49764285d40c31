"""Files that ship with the package: the Anywhere Portal's and the demo's dialplans, the
prompt catalogs they name, and the JSON Schema of the dialplan format.

They keep the repository's layout (``dialplans/``, ``prompts/de/``,
``dialplan.schema.json``) under ``ivr/_data`` — in a checkout those are symlinks to the
top-level files, in a wheel copies of them — so a dialplan's relative ``prompts:
../prompts/de`` finds its catalog wherever the package is installed.
"""

from __future__ import annotations

from pathlib import Path

from ivr.errors import IvrError

#: the packaged files, in the repository's layout
DATA_DIR = Path(__file__).resolve().parent / "_data"
#: the packaged dialplans by name (``dialplans/NAME.yaml``)
DIALPLANS = ("anywhere_portal", "demo")
PORTAL_DIALPLAN = "anywhere_portal"


def dialplan_path(name: str = PORTAL_DIALPLAN) -> Path:
    """The packaged dialplan ``name`` (default: the Anywhere Portal's)."""
    if name not in DIALPLANS:
        raise IvrError(f"no packaged dialplan {name!r} (there are: {', '.join(DIALPLANS)})")
    return _existing(DATA_DIR / "dialplans" / f"{name}.yaml")


def portal_dialplan() -> Path:
    """The Anywhere Portal's dialplan, for ``ivr serve/simulate/check --portal CONFIG``
    without a dialplan path."""
    return dialplan_path(PORTAL_DIALPLAN)


def schema_path() -> Path:
    """The JSON Schema of the dialplan format (``ivr schema`` writes the same)."""
    return _existing(DATA_DIR / "dialplan.schema.json")


def catalog_dir(language: str = "de") -> Path:
    """The packaged prompt catalog of ``language``."""
    return _existing(DATA_DIR / "prompts" / language)


def _existing(path: Path) -> Path:
    if not path.exists():
        raise IvrError(f"{path}: not installed with the package (a broken installation?)")
    return path
