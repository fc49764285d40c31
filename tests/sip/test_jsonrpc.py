"""The JSON-RPC datagram client: on the I/O loop and on its own, against a small server
of the test (answers, errors, silence, garbage, a dead port)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ivr.sip.jsonrpc import JsonRpcClient, RpcError, RpcUnavailable, parse_address
from ivr.sip.loop import EventLoop

Handler = Callable[[dict[str, Any]], list[bytes]]


class Server:
    """A UDP JSON-RPC server on loopback; ``handler`` turns a request into datagrams."""

    def __init__(self, handler: Handler) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            request = json.loads(data)
            self.requests.append(request)
            for reply in self.handler(request):
                self.sock.sendto(reply, source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def result(request: dict[str, Any], value: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": value, "id": request["id"]}).encode()


def echo(request: dict[str, Any]) -> list[bytes]:
    if request["method"] == "fail":
        error = {"code": 500, "message": "Not found"}
        return [json.dumps({"jsonrpc": "2.0", "error": error, "id": request["id"]}).encode()]
    if request["method"] == "silent":
        return []
    if request["method"] == "garbage":
        return [b"\xff\x00 not json", b'{"id": "text"}', result(request, "late but fine")]
    return [result(request, {"method": request["method"], "params": request.get("params")})]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(echo)
    yield srv
    srv.close()


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    event_loop = EventLoop()
    thread = threading.Thread(target=event_loop.run, daemon=True)
    thread.start()
    yield event_loop
    event_loop.stop()
    thread.join(5)
    event_loop.close()


@pytest.fixture(params=["own socket", "on the loop"])
def client(request: pytest.FixtureRequest, server: Server) -> Iterator[JsonRpcClient]:
    rpc = JsonRpcClient(server.address, timeout=0.5)
    if request.param == "on the loop":
        event_loop: EventLoop = request.getfixturevalue("loop")
        rpc.attach(event_loop)
        yield rpc
        event_loop.post(rpc.detach)
    else:
        yield rpc


def test_a_call_returns_its_result(client: JsonRpcClient, server: Server) -> None:
    got = client.call("dlg.list_match", "turi", "sw", "sip:1001@")
    assert got == {"method": "dlg.list_match", "params": ["turi", "sw", "sip:1001@"]}
    assert server.requests[-1]["jsonrpc"] == "2.0"


def test_several_calls_at_once_keep_their_order(client: JsonRpcClient) -> None:
    got = client.call_many([("a", [1]), ("b", []), ("fail", [])])
    assert got[0] == {"method": "a", "params": [1]}
    assert got[1] == {"method": "b", "params": None}
    assert isinstance(got[2], RpcError) and got[2].message == "Not found"


def test_an_error_reply_raises_rpc_error(client: JsonRpcClient) -> None:
    with pytest.raises(RpcError, match="fail: error 500: Not found"):
        client.call("fail")


def test_silence_is_unavailable_after_the_timeout(client: JsonRpcClient) -> None:
    with pytest.raises(RpcUnavailable, match="no answer"):
        client.call("silent")
    assert client.call("ping") == {"method": "ping", "params": None}  # still usable


def test_garbage_replies_are_skipped(client: JsonRpcClient) -> None:
    assert client.call("garbage") == "late but fine"


def test_a_dead_port_is_unavailable(loop: EventLoop) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()
    for attached in (False, True):
        rpc = JsonRpcClient(dead, timeout=0.3)
        if attached:
            rpc.attach(loop)
        with pytest.raises(RpcUnavailable):
            rpc.call("dlg.list")
        if attached:
            loop.post(rpc.detach)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8090", ("127.0.0.1", 8090)), ("[::1]:8090", ("::1", 8090))],
)
def test_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:", ":8090", "host:0", "h:99999", "h:x"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_address(text)
