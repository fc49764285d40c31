"""Hooks of the demo dialplan (``dialplans/demo.yaml``): a tiny fictional account lookup."""

from __future__ import annotations

from ivr.hooks import Hooks
from ivr.secret import Secret
from ivr.session import Session

hooks = Hooks()

#: demo accounts: account number -> (PIN, balance in euros). Fictional.
ACCOUNTS = {"12345": ("1234", 42)}


@hooks.register("check_account")
def check_account(session: Session) -> str:
    """``ok`` (and ``balance`` set) when account and PIN match, else ``wrong``."""
    account = ACCOUNTS.get(str(session.vars.get("account", "")))
    pin = session.vars.get("pin")
    if account is None or not isinstance(pin, Secret) or pin != account[0]:
        return "wrong"
    session.vars["balance"] = account[1]
    return "ok"
