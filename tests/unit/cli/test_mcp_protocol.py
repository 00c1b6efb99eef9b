"""The MCP server's protocol, without a process: lines in, lines out. Nothing here starts a
faultbox run (tests/e2e/test_mcp.py does)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from faultbox.cli.mcp import PROTOCOL_VERSIONS, Server


class Wire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.server = Server(self.sent.append)

    def feed(self, line: bytes | str | dict[str, Any]) -> list[dict[str, Any]]:
        """Answers to one line (after the tool calls it started have answered)."""
        before = len(self.sent)
        raw = line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()
        self.server.handle_line(raw + b"\n")
        self.server.finish(cancel=False)
        out = []
        for data in self.sent[before:]:
            assert data.endswith(b"\n") and b"\n" not in data[:-1], "one message a line"
            out.append(json.loads(data))
        return out

    def one(self, line: bytes | str | dict[str, Any]) -> dict[str, Any]:
        [answer] = self.feed(line)
        assert answer["jsonrpc"] == "2.0"
        return answer


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire()
    yield w
    w.server.close()


def req(rid: Any, method: str, params: Any = None) -> dict[str, Any]:
    out = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        out["params"] = params
    return out


def code(answer: dict[str, Any]) -> tuple[Any, int]:
    return answer["id"], answer["error"]["code"]


def test_initialize_agrees_on_a_version(wire: Wire) -> None:
    for asked in PROTOCOL_VERSIONS:
        result = wire.one(req(1, "initialize", {"protocolVersion": asked, "capabilities": {}}))["result"]
        assert result["protocolVersion"] == asked
    newest = wire.one(req(2, "initialize", {"protocolVersion": "2099-01-01"}))["result"]
    assert newest["protocolVersion"] == PROTOCOL_VERSIONS[0]
    assert newest["serverInfo"]["name"] == "faultbox"
    assert set(newest["capabilities"]) == {"tools", "resources"}
    assert wire.feed({"jsonrpc": "2.0", "method": "notifications/initialized"}) == []
    assert wire.server.initialized


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"not json", (None, -32700)),
        (b"{", (None, -32700)),
        (b'\xff{"a": 1}', (None, -32700)),
        (b"[" * 100_000, (None, -32700)),  # nested too deep
        (b"[]", (None, -32600)),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', (None, -32600)),
        (b'"ping"', (None, -32600)),
        (b'{"jsonrpc": "2.0", "id": 1}', (1, -32600)),
        (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', (None, -32600)),
        (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', (None, -32600)),
        (b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}', (None, -32600)),
        (b'{"jsonrpc": "1.0", "id": 2, "method": "ping"}', (2, -32600)),
        (b'{"id": 2, "method": "ping"}', (2, -32600)),
        (b'{"jsonrpc": "2.0", "id": 3, "method": 7}', (3, -32600)),
        (b'{"jsonrpc": "2.0", "id": "a", "method": "tools/lsit"}', ("a", -32601)),
        (b'{"jsonrpc": "2.0", "id": 4, "method": "prompts/list"}', (4, -32601)),
        (b'{"jsonrpc": "2.0", "id": 5, "method": "ping", "params": [1]}', (5, -32602)),
        (b'{"jsonrpc": "2.0", "id": 5, "method": "nope", "params": [1]}', (5, -32601)),
        (b'{"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {}}', (6, -32602)),
        (b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "rm_rf"}}', (7, -32602)),
        (b'{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "list_docs", "arguments": 3}}',
         (8, -32602)),
        (b'{"jsonrpc": "2.0", "id": 9, "method": "resources/read", "params": {}}', (9, -32602)),
        (b'{"jsonrpc": "2.0", "id": 10, "method": "resources/read", "params": {"uri": "faultbox://docs/x"}}',
         (10, -32002)),
        (b'{"jsonrpc": "2.0", "id": 11, "method": "initialize", "params": {"protocolVersion": 1}}', (11, -32602)),
    ],
)  # fmt: skip
def test_malformed_messages_get_the_right_error(wire: Wire, line: bytes, expected: tuple[Any, int]) -> None:
    answer = wire.one(line)
    assert code(answer) == expected
    assert answer["error"]["message"]
    assert wire.one(req(99, "ping")) == {"jsonrpc": "2.0", "id": 99, "result": {}}, "the server answers on"


def test_a_misspelled_method_or_tool_is_named(wire: Wire) -> None:
    assert "tools/list" in wire.one(req(1, "tools/lsit"))["error"]["message"]
    assert "check_spec" in wire.one(req(2, "tools/call", {"name": "check_spce"}))["error"]["message"]


def test_notifications_and_responses_are_never_answered(wire: Wire) -> None:
    assert wire.feed({"jsonrpc": "2.0", "method": "notifications/whatever", "params": [1]}) == []
    assert wire.feed({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 404}}) == []
    assert wire.feed({"jsonrpc": "2.0", "method": 5}) == []
    assert wire.feed({"jsonrpc": "2.0", "id": 1, "result": {}}) == []
    assert wire.feed(b"   ") == []


def test_string_and_number_ids_come_back_as_sent(wire: Wire) -> None:
    assert wire.one(req("abc", "ping"))["id"] == "abc"
    assert wire.one(req(0, "ping"))["id"] == 0
    assert wire.one(req(1.5, "ping"))["id"] == 1.5


def test_tools_have_valid_input_schemas(wire: Wire) -> None:
    tools = wire.one(req(1, "tools/list"))["result"]["tools"]
    names = [t["name"] for t in tools]
    assert names == [
        "check_spec", "plan_spec", "list_tests", "run_test", "run_single_test", "show_report", "list_docs", "read_doc",
    ]  # fmt: skip
    for tool in tools:
        jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
        assert tool["inputSchema"]["type"] == "object" and tool["description"]
    by_name = {t["name"]: t for t in tools}
    assert by_name["run_single_test"]["inputSchema"]["required"] == ["file", "test"]
    assert by_name["run_test"]["annotations"]["readOnlyHint"] is False
    assert by_name["check_spec"]["annotations"]["readOnlyHint"] is True


def call(wire: Wire, name: str, arguments: Any) -> dict[str, Any]:
    answer = wire.one(req(1, "tools/call", {"name": name, "arguments": arguments}))
    return dict(answer["result"])


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("check_spec", {}, "give the spec as file (a path) or as source"),
        ("check_spec", {"file": "a.star", "source": "x = 1"}, "one of the two"),
        ("check_spec", {"file": 3}, "file must be string"),
        ("check_spec", {"flie": "a.star"}, 'did you mean "file"?'),
        ("check_spec", {"file": "a.star", "base_dir": "/tmp"}, "base_dir goes with source"),
        ("check_spec", {"source": "x = 1", "base_dir": "/no/such/dir"}, "is not a directory"),
        ("check_spec", {"file": "a.star", "vars": {"bug": [1]}}, "the value of bug must be a string"),
        ("run_test", {}, "needs the argument 'file'"),
        ("run_test", {"file": "a.star", "seed": "7"}, "seed must be integer"),
        ("run_test", {"file": "a.star", "seed": True}, "seed must be integer"),
        ("run_test", {"file": "a.star", "timeout": "soon"}, "timeout 'soon'"),
        ("run_test", {"file": "a.star", "timeout": 0}, "timeout 0"),
        ("run_test", {"file": "a.star", "max_seconds": -1}, "max_seconds must be more than 0"),
        ("run_test", {"file": "a.star", "jobs": 0}, "jobs must be 1 or more"),
        ("run_single_test", {"file": "a.star"}, "needs the argument 'test'"),
        ("read_doc", {"name": "nope.md"}, "no document 'nope.md'"),
    ],
)
def test_wrong_arguments_are_tool_errors_the_agent_can_read(
    wire: Wire, name: str, arguments: dict[str, Any], says: str
) -> None:
    result = call(wire, name, arguments)
    assert result["isError"] is True
    assert says in result["content"][0]["text"]


def test_a_bug_in_a_tool_is_an_error_result_not_a_dead_server(wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(wire.server.toolbox, "call", explode)
    result = call(wire, "list_docs", {})
    assert result["isError"] is True and "boom" in result["content"][0]["text"]
    assert wire.one(req(2, "ping"))["result"] == {}


def test_a_closed_stdout_stops_sending_without_raising() -> None:
    def broken(data: bytes) -> None:
        raise BrokenPipeError

    server = Server(broken)
    try:
        server.handle_line(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
        server.handle_line(b"garbage\n")
    finally:
        server.close()


def test_the_docs_are_resources(wire: Wire) -> None:
    resources = wire.one(req(1, "resources/list"))["result"]["resources"]
    uris = [r["uri"] for r in resources]
    assert uris[0] == "faultbox://docs/README.md"
    assert "faultbox://docs/spec-language.md" in uris and "faultbox://docs/errors.md" in uris
    assert all(r["mimeType"] == "text/markdown" and r["name"] and r["title"] for r in resources)
    content = wire.one(req(2, "resources/read", {"uri": "faultbox://docs/errors.md"}))["result"]["contents"]
    assert content[0]["uri"] == "faultbox://docs/errors.md" and "SPEC_SYNTAX" in content[0]["text"]
    assert wire.one(req(3, "resources/templates/list"))["result"] == {"resourceTemplates": []}
