"""The optional parts of the distribution (its "extras") and the error a command gives
when the one it needs is not installed.

The core install runs ``ivr check/simulate/test/schema/graph``; prompt audio, real calls
and the Anywhere Portal need more packages, imported only where they are used.
"""

from __future__ import annotations

from ivr.errors import IvrError

#: the distribution's name on the package index (the import package is ``ivr``)
DISTRIBUTION = "ivr-dialplan"

#: extra -> the top-level modules it brings (what a ModuleNotFoundError names)
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "audio": frozenset(("numpy", "pydub", "pyttsx3", "num2words", "audioop")),
    "sip": frozenset(("pyVoIP",)),
    "portal": frozenset(("phonenumbers", "argon2", "ruamel", "psycopg", "tzdata")),
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def extra_of(error: ImportError) -> str | None:
    """The extra that brings the module ``error`` found missing, or None (not ours)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.partition(".")[0]
    return next((extra for extra, modules in EXTRA_MODULES.items() if top in modules), None)


class MissingExtra(IvrError):
    """What ``what`` (a command, a feature) needs is in an extra that is not installed."""

    def __init__(self, extra: str, what: str, module: str = "") -> None:
        self.extra = extra
        self.what = what
        self.module = module
        super().__init__(f"{what} needs the {extra} extra: {install_hint(extra)}")

    @classmethod
    def of(cls, error: ImportError, what: str) -> MissingExtra | None:
        """The MissingExtra an import error means, or None when it is not about an extra."""
        extra = extra_of(error)
        return cls(extra, what, error.name or "") if extra is not None else None
