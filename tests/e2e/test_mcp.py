"""`faultbox mcp` through the front door: a real MCP client (the official Python SDK's stdio
client) checks, plans and runs a small spec with a real service, and reads a document; and raw
malformed lines get JSON-RPC errors while the server goes on answering."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from support import FIXTURES, descendants_alive, free_port, process_tree, svc_decl

SPEC = """
def test_ping_answers():
    assert_eq(svc.main.send(data = "PING"), "PONG")

def test_ping_is_wrong():
    assert_eq(svc.main.send(data = "PING"), "PANG", "the service must say PANG")
"""

BROKEN = 'svc = service("svc", "python3")\n\ndef test_x():\n    assert_eq(1, undefined_name)\n'


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "ping.star"
    path.write_text(
        svc_decl("svc", free_port()).replace("@PYTHON@", sys.executable).replace("@FIXTURES@", str(FIXTURES)) + SPEC
    )
    return path


def _client(tmp_path: Path, body: Callable[[Any], Awaitable[None]]) -> None:
    """Start `faultbox mcp` in tmp_path, initialize a session with it, run body(session)."""
    pytest.importorskip("mcp", reason="the official MCP SDK (a dev dependency: pip install -e .[dev]) is the client")
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "faultbox", "mcp"], cwd=str(tmp_path))

    async def go() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "faultbox"
            assert init.capabilities.tools is not None and init.capabilities.resources is not None
            await body(session)

    asyncio.run(asyncio.wait_for(go(), 180))


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_an_agent_checks_plans_runs_and_reads(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    (tmp_path / "broken.star").write_text(BROKEN)

    async def body(session: Any) -> None:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {"check_spec", "plan_spec", "list_tests", "run_test", "run_single_test", "show_report"} <= set(tools)
        assert tools["run_test"].input_schema["required"] == ["file"]

        # check: the same JSON as `faultbox check --format json`
        check = await session.call_tool("check_spec", {"file": "ping.star"})
        assert not check.is_error, _text(check)
        cli = subprocess.run(
            [sys.executable, "-m", "faultbox", "check", "ping.star", "--format", "json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert check.structured_content == json.loads(cli.stdout)
        assert check.structured_content["tests"] == ["test_ping_answers", "test_ping_is_wrong"]

        # a spec that does not load: an error result with faultbox's message, not a protocol error
        broken = await session.call_tool("check_spec", {"file": "broken.star"})
        assert broken.is_error
        message = broken.content[0].text
        assert "broken.star:4:" in message and "[SPEC_UNDEFINED]" in message and "fix:" in message
        assert broken.structured_content["ok"] is False

        inline = await session.call_tool("check_spec", {"source": "def test_a():\n    assert_eq(1, 1)\n"})
        assert not inline.is_error and inline.structured_content["tests"] == ["test_a"]
        wrong = await session.call_tool("check_spec", {"source": "x = 1\ny = z\n"})
        assert wrong.is_error and wrong.content[0].text.startswith("<source>:2:5: error [SPEC_UNDEFINED]")
        # with base_dir, load() resolves beside the other files
        (tmp_path / "lib.star").write_text("def helper():\n    return 2\n")
        loads = 'load("lib.star", "helper")\n\ndef test_b():\n    assert_eq(helper(), 2)\n'
        beside = await session.call_tool("check_spec", {"source": loads, "base_dir": str(tmp_path)})
        assert not beside.is_error and beside.structured_content["tests"] == ["test_b"], _text(beside)
        near = await session.call_tool("check_spec", {"source": "y = z\n", "base_dir": str(tmp_path)})
        assert near.content[0].text.startswith("<source>:1:5: error [SPEC_UNDEFINED]"), _text(near)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".faultbox-mcp-")], "the file is removed"

        plan = await session.call_tool("plan_spec", {"file": "ping.star"})
        assert not plan.is_error, _text(plan)
        assert [s["name"] for s in plan.structured_content["services"]] == ["svc"]
        assert [t["name"] for t in plan.structured_content["tests"]] == ["test_ping_answers", "test_ping_is_wrong"]

        # all the tests: one passes, one fails with its reason, location and replay command
        run = await session.call_tool("run_test", {"file": "ping.star", "seed": 7, "timeout": "30s"})
        assert not run.is_error, _text(run)
        summary = run.structured_content
        assert summary["exit_code"] == 2 and summary["counts"]["pass"] == 1 and summary["counts"]["fail"] == 1
        passed, failed = summary["tests"]
        assert (passed["name"], passed["outcome"]) == ("test_ping_answers", "passed")
        assert (failed["name"], failed["outcome"]) == ("test_ping_is_wrong", "failed")
        assert "the service must say PANG" in failed["reason"]
        line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if '"PANG"' in text)
        assert failed["location"].endswith(f"ping.star:{line}")
        assert failed["replay"] == "faultbox test ping.star --test test_ping_is_wrong --seed 7"
        assert "events" not in failed and failed["event_count"] > 0
        assert "FAIL test_ping_is_wrong" in run.content[1].text  # the console report

        # the saved result renders again
        report = await session.call_tool("show_report", {"results": summary["results"]})
        assert not report.is_error and "FAIL test_ping_is_wrong" in report.content[0].text

        one = await session.call_tool("run_single_test", {"file": "ping.star", "test": "ping_answers"})
        assert not one.is_error and one.structured_content["exit_code"] == 0
        assert [t["outcome"] for t in one.structured_content["tests"]] == ["passed"]

        none = await session.call_tool("run_single_test", {"file": "ping.star", "test": "gamma"})
        assert none.is_error and 'no test matched "gamma"' in none.content[0].text

        # the documents, as resources
        resources = {str(r.uri): r for r in (await session.list_resources()).resources}
        assert "faultbox://docs/errors.md" in resources and "faultbox://docs/spec-language.md" in resources
        doc = await session.read_resource("faultbox://docs/errors.md")
        assert "SPEC_UNDEFINED" in doc.contents[0].text

    _client(tmp_path, body)


class _Raw:
    """`faultbox mcp` on raw pipes: write a line, read the answer."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faultbox", "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stdout: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def send(self, data: bytes | dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.proc.stdin.write(raw + b"\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 30) -> dict[str, Any]:
        message = json.loads(self.lines.get(timeout=timeout))
        assert message["jsonrpc"] == "2.0"
        return dict(message)

    def ask(self, data: bytes | dict[str, Any]) -> dict[str, Any]:
        self.send(data)
        return self.answer()

    def close(self, timeout: float = 30) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout)
        return code, self.proc.stderr.read().decode()


def _request(rid: int, method: str, params: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        out["params"] = params
    return out


def _error(answer: dict[str, Any]) -> tuple[Any, int]:
    return answer["id"], answer["error"]["code"]


def test_malformed_requests_get_errors_and_the_server_survives(tmp_path: Path) -> None:
    raw = _Raw(tmp_path)
    try:
        init = raw.ask(_request(0, "initialize", {"protocolVersion": "2024-11-05", "capabilities": {}}))
        assert init["result"]["protocolVersion"] == "2024-11-05"
        raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})  # no answer

        assert _error(raw.ask(b"this is not json")) == (None, -32700)
        assert _error(raw.ask(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"')) == (None, -32700)
        assert _error(raw.ask(b"\xff\xfe{}")) == (None, -32700)
        assert _error(raw.ask({"jsonrpc": "2.0", "id": 2})) == (2, -32600)  # no method
        assert _error(raw.ask(b"[]")) == (None, -32600)
        assert _error(raw.ask(b"42")) == (None, -32600)
        assert _error(raw.ask(_request(3, "tools/explode"))) == (3, -32601)
        assert _error(raw.ask(_request(4, "tools/call", {"arguments": {}}))) == (4, -32602)  # no name
        assert _error(raw.ask(_request(5, "tools/call", {"name": "no_such_tool"}))) == (5, -32602)
        assert _error(raw.ask(_request(6, "tools/call", ["check_spec"]))) == (6, -32602)
        assert _error(raw.ask(_request(7, "tools/call", {"name": "check_spec", "arguments": [1]}))) == (7, -32602)
        assert _error(raw.ask(_request(8, "resources/read", {"uri": 5}))) == (8, -32602)
        assert _error(raw.ask(_request(9, "resources/read", {"uri": "faultbox://docs/nope.md"}))) == (9, -32002)
        assert _error(raw.ask(_request(10, "initialize", {}))) == (10, -32602)
        raw.send({"jsonrpc": "2.0", "method": "no/such/notification"})  # notifications are never answered

        # an argument the tool cannot use: a tool error the agent reads, not a protocol error
        bad = raw.ask(_request(11, "tools/call", {"name": "check_spec", "arguments": {"file": 5}}))
        assert bad["id"] == 11 and bad["result"]["isError"] is True
        assert "file must be string" in bad["result"]["content"][0]["text"]

        # still answering
        assert raw.ask(_request(12, "ping")) == {"jsonrpc": "2.0", "id": 12, "result": {}}
        tools = raw.ask(_request(13, "tools/list"))
        assert "check_spec" in [t["name"] for t in tools["result"]["tools"]]
    finally:
        code, stderr = raw.close()
    assert code == 0
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in raw.stdout), "stdout carries only JSON-RPC"
    assert "Traceback" not in stderr


SLOW = 'def test_slow():\n    sleep("120s")\n'


def _slow(tmp_path: Path) -> None:
    """slow.star: a service, and a test that sleeps with it running."""
    decl = svc_decl("svc", free_port()).replace("@PYTHON@", sys.executable).replace("@FIXTURES@", str(FIXTURES))
    (tmp_path / "slow.star").write_text(decl + SLOW)


def test_a_cancelled_run_stops_and_the_server_answers_on(tmp_path: Path) -> None:
    _slow(tmp_path)
    raw = _Raw(tmp_path)
    try:
        raw.ask(_request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}}))
        raw.send(_request(2, "tools/call", {"name": "run_test", "arguments": {"file": "slow.star"}}))
        child = _wait_for_child(raw.proc.pid, "slow.star")
        tree = _wait_for_service(child)
        assert raw.ask(_request(3, "ping"))["id"] == 3, "a run in flight does not stop the server answering"
        raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
        _wait_gone(tree, 30)
        assert raw.ask(_request(4, "ping"))["id"] == 4  # the cancelled request itself is not answered
    finally:
        code, stderr = raw.close()
    assert code == 0 and "Traceback" not in stderr
    assert [json.loads(line)["id"] for line in raw.stdout] == [1, 3, 4]


def test_sigterm_stops_the_runs_in_flight(tmp_path: Path) -> None:
    _slow(tmp_path)
    raw = _Raw(tmp_path)
    raw.ask(_request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}}))
    raw.send(_request(2, "tools/call", {"name": "run_test", "arguments": {"file": "slow.star", "max_seconds": 100}}))
    child = _wait_for_child(raw.proc.pid, "slow.star")
    tree = _wait_for_service(child)
    os.kill(raw.proc.pid, signal.SIGTERM)
    assert raw.proc.wait(30) == 0
    deadline = time.monotonic() + 20
    while descendants_alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert descendants_alive(tree) == []


def test_end_of_input_lets_a_call_in_flight_answer(tmp_path: Path) -> None:
    """`printf '...' | faultbox mcp`: the answers come before the server ends."""
    lines = [
        _request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}}),
        _request(2, "tools/call", {"name": "check_spec", "arguments": {"source": "def test_a():\n    pass\n"}}),
    ]
    out = subprocess.run(
        [sys.executable, "-m", "faultbox", "mcp"],
        input="".join(json.dumps(m) + "\n" for m in lines),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[1]["result"]["structuredContent"]["tests"] == ["test_a"]


def _wait_for_child(server: int, marker: str, timeout: float = 30) -> int:
    """The faultbox the server started for a call (its command line names marker)."""
    from support import cmdline

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in process_tree(server)[1:]:
            if marker in cmdline(pid) and " test " in cmdline(pid):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no faultbox test {marker} under the server")


def _wait_for_service(child: int, timeout: float = 30) -> list[int]:
    """The run's process tree once its test is running (the fixture service is up)."""
    from support import cmdline

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = process_tree(child)
        if any("svc.py" in cmdline(pid) for pid in tree):
            return tree
        time.sleep(0.05)
    raise AssertionError("the run's service did not start")


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while descendants_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants_alive(pids) == [], "the cancelled run (or its service) is still running"
