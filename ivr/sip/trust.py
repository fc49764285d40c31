"""The trust boundary: who may talk to the portal, and whose word on the caller counts.

A portal sits behind the PBX's proxy (Kamailio). Requests are taken only from trusted
addresses: the proxy the portal registers at (exactly its IP and port) and the networks
given with ``--trust`` (any port); anything else is dropped without an answer. From a
trusted source the caller is who the proxy asserts (RFC 3325 ``P-Asserted-Identity``),
depending on the identity mode:

| mode | caller number |
|---|---|
| ``pai`` (default) | P-Asserted-Identity; the From user only when the request carries none |
| ``pai-only`` | P-Asserted-Identity; without one the caller is anonymous (the portal refuses) |
| ``from`` | the From user; P-Asserted-Identity is ignored |
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ivr.sip.message import Message

IDENTITY_MODES = ("pai", "pai-only", "from")
_USER = re.compile(r"<?\s*(?:sips?|tel):([^@;>\s]+)", re.IGNORECASE)

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Trust:
    """Which sources may send us SIP: exact addresses (the proxy) and networks."""

    addresses: frozenset[Address] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, proxies: Iterable[Address], networks: Iterable[str] = ()) -> Trust:
        """Trust ``proxies`` (IP, port) and every address in ``networks`` (CIDR text;
        ValueError names a bad one)."""
        parsed = []
        for text in networks:
            try:
                parsed.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"{text!r} is not a network (e.g. 10.0.0.0/24)") from None
        return cls(frozenset(proxies), tuple(parsed))

    def allows(self, source: Address) -> bool:
        if source in self.addresses:
            return True
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(source[0])
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def caller_number(request: Message, mode: str = "pai") -> str:
    """The caller as the identity mode says (see the module docstring); '' when
    anonymous."""
    if mode not in IDENTITY_MODES:
        raise ValueError(f"identity mode must be one of {', '.join(IDENTITY_MODES)}")
    if mode != "from":
        for value in request.all("P-Asserted-Identity"):
            match = _USER.search(value)
            if match:
                return match.group(1)
        if mode == "pai-only":
            return ""
    return request.caller
