"""JSON-RPC 2.0 over UDP: how the portal asks Kamailio (``jsonrpcs`` module, datagram
transport) about running calls.

Attached to the runtime's I/O loop (:meth:`JsonRpcClient.attach`), requests leave and
replies arrive on the loop's thread like every other datagram; the caller (the dialogue
thread, where hooks run) waits for the replies with a timeout, so a PBX that does not
answer costs that caller the timeout and never stalls media. Not attached (the CLI, a
test), a call uses a socket of its own.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from typing import Any

from ivr.errors import IvrError
from ivr.sip.loop import EventLoop

log = logging.getLogger(__name__)

Address = tuple[str, int]
MAX_DATAGRAM = 65535
Call = tuple[str, Sequence[Any]]
Request = tuple[int, str, list[Any]]  # id, method, params


class RpcError(IvrError):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.code = code
        self.message = message


class RpcUnavailable(IvrError):
    """No usable answer in time (timeout, refused, garbage)."""


def parse_address(text: str) -> Address:
    """``host:port`` -> (host, port); ValueError names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:8090)")
    return host.strip("[]"), int(port)


class JsonRpcClient:
    """Requests to one JSON-RPC datagram server, answered in the order they come."""

    def __init__(self, address: Address, timeout: float = 1.0) -> None:
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._loop: EventLoop | None = None
        self._sock: socket.socket | None = None
        self._pending: dict[int, tuple[str, Future[Any]]] = {}  # loop thread only

    # --- life cycle on a loop ----------------------------------------------------------
    def attach(self, loop: EventLoop) -> None:
        """Send and receive on ``loop`` from now on (called on the loop's thread or
        before it runs)."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(self.address)  # replies from anyone else are not ours
        loop.add_reader(sock, self._readable)
        self._loop, self._sock = loop, sock

    def detach(self) -> None:
        """Stop using the loop; requests still waiting fail."""
        loop, sock = self._loop, self._sock
        self._loop = self._sock = None
        if loop is not None and sock is not None:
            loop.remove_reader(sock)
            sock.close()
        for method, future in self._pending.values():
            future.set_exception(RpcUnavailable(f"{method}: the runtime stopped"))
        self._pending.clear()

    # --- requests ----------------------------------------------------------------------
    def call(self, method: str, *params: Any) -> Any:
        """One request; its ``result`` (:class:`RpcError`, :class:`RpcUnavailable`)."""
        result = self.call_many([(method, params)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several requests at once; each result, or the :class:`RpcError` a request
        got. :class:`RpcUnavailable` when any answer is missing after ``timeout``."""
        requests: list[Request] = []
        with self._ids_lock:
            for method, params in calls:
                requests.append((next(self._ids), method, list(params)))
        if self._loop is None:
            return self._blocking(requests)
        futures: list[Future[Any]] = [Future() for _ in requests]
        loop = self._loop
        loop.post(lambda: self._send_all(requests, futures))
        _done, missing = wait_all(futures, timeout=self.timeout)
        if missing:
            loop.post(lambda: self._forget([r[0] for r in requests]))
            raise RpcUnavailable(
                f"{requests[0][1]}: no answer from {self.address[0]}:{self.address[1]} "
                f"in {self.timeout:g} s"
            )
        out = []
        for future in futures:
            error = future.exception(timeout=0)
            if isinstance(error, RpcUnavailable):
                raise error
            out.append(error if error is not None else future.result(timeout=0))
        return out

    # --- on the loop ---------------------------------------------------------------------
    def _send_all(self, requests: list[Request], futures: list[Future[Any]]) -> None:
        sock = self._sock
        for (ident, method, params), future in zip(requests, futures, strict=True):
            if sock is None:
                future.set_exception(RpcUnavailable(f"{method}: the runtime stopped"))
                continue
            self._pending[ident] = (method, future)
            try:
                sock.send(_encode(ident, method, params))
            except OSError as exc:  # refused (ICMP) or no route
                self._pending.pop(ident, None)
                future.set_exception(RpcUnavailable(f"{method}: {exc}"))

    def _forget(self, idents: list[int]) -> None:
        for ident in idents:
            self._pending.pop(ident, None)

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable: the server is not there
                for method, future in self._pending.values():
                    future.set_exception(RpcUnavailable(f"{method}: {exc}"))
                self._pending.clear()
                return
            self._reply(data)

    def _reply(self, data: bytes) -> None:
        ident, outcome = _decode(data)
        pending = self._pending.pop(ident, None) if ident is not None else None
        if pending is None:
            log.warning("JSON-RPC: a reply that answers no request (%d bytes)", len(data))
            return
        method, future = pending
        if isinstance(outcome, tuple):
            future.set_exception(RpcError(method, *outcome))
        else:
            future.set_result(outcome)

    # --- without a loop ------------------------------------------------------------------
    def _blocking(self, requests: list[Request]) -> list[Any]:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        results: dict[int, Any] = {}
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(self.address)
            deadline = time.monotonic() + self.timeout
            try:
                for ident, method, params in requests:
                    sock.send(_encode(ident, method, params))
                while len(results) < len(requests):
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    got, outcome = _decode(sock.recv(MAX_DATAGRAM))
                    if got is not None:
                        results[got] = outcome
            except OSError as exc:
                raise RpcUnavailable(
                    f"{requests[0][1]}: no answer from {self.address[0]}:{self.address[1]} "
                    f"({exc or 'timeout'})"
                ) from None
        out = []
        for ident, method, _ in requests:
            outcome = results[ident]
            out.append(RpcError(method, *outcome) if isinstance(outcome, tuple) else outcome)
        return out


def _encode(ident: int, method: str, params: list[Any]) -> bytes:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": ident}
    if params:
        request["params"] = params
    return json.dumps(request).encode()


def _decode(data: bytes) -> tuple[int | None, Any]:
    """(id, result) or (id, (code, message)) for an error; id None for garbage."""
    try:
        reply = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), int):
        return None, None
    error = reply.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return reply["id"], (code if isinstance(code, int) else 0, str(error.get("message", "")))
    return reply["id"], reply.get("result")
