"""`faultbox mcp`: a Model Context Protocol server on stdin/stdout, so that a coding agent can
check, plan and run specs, read saved results and read the documentation (docs/mcp.md).

The transport is MCP's stdio one: JSON-RPC 2.0 messages, one per line, UTF-8. Only JSON-RPC ever
reaches stdout: the server keeps a private copy of it and points file descriptor 1 (and
sys.stdout) at stderr before anything else runs, and every faultbox it starts has its output
captured. A malformed message is answered with a JSON-RPC error (-32700 parse error with id null,
-32600 invalid request, -32601 unknown method, -32602 bad params) and the server reads on. A
tools/call runs in a thread of its own, so pings, listings and cancellations are answered during
a long test run; tool failures (a spec that does not load, a wrong argument) are tool results
with isError, as MCP asks, so the agent reads them. End of input ends the server once the calls
in flight have answered; SIGTERM or SIGINT stops those calls' runs (their services torn down) and
ends it at once."""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, ClassVar, TypeGuard

from faultbox import __version__
from faultbox._util.spell import did_you_mean
from faultbox._util.threads import sigterm_as_interrupt
from faultbox.cli.mcp_tools import Call, Toolbox, find_docs

# Newest first; an initialize asking for one of these gets it, any other the newest.
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32002  # MCP's code for resources/read of an unknown URI

INSTRUCTIONS = (
    "faultbox tests distributed systems under injected faults; tests are written in Starlark specs "
    "(.star). Write or edit a spec, call check_spec until it loads without errors (each finding has "
    "its location, code and fix), plan_spec to see the services, syscalls intercepted and faults "
    "per test, then run_test (or run_single_test) and read each failed test's reason, location and "
    "violation. The documents (resources faultbox://docs/..., or list_docs/read_doc) describe the "
    "spec language (spec-language.md) and every error code with its fix (errors.md)."
)

Id = str | int | float


@dataclass(frozen=True)
class RpcError:
    """A JSON-RPC error answer, as a method handler returns it."""

    code: int
    message: str
    data: Any = None


# What a method handler returns: its result, an error, or None when it answers later (tools/call).
Reply = dict[str, Any] | RpcError | None


def _key(rid: Id) -> tuple[str, str]:
    return (type(rid).__name__, json.dumps(rid))


class Server:
    """The protocol, independent of where lines come from: handle_line() for each line read,
    `write` for each line to send (thread-safe here, called with whole lines)."""

    def __init__(self, write: Callable[[bytes], None], toolbox: Toolbox | None = None) -> None:
        self._write = write
        self._write_lock = threading.Lock()
        self._closed = False  # the client stopped reading: nothing more is sent
        self.toolbox = toolbox or Toolbox()
        self._inflight: dict[tuple[str, str], tuple[Call, threading.Thread]] = {}
        self._lock = threading.Lock()
        self.initialized = False

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        try:
            data = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
        except ValueError:  # a NaN in a result: say so rather than send what is not JSON
            data = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": message.get("id"),
                    "error": {"code": INTERNAL_ERROR, "message": "the answer was not representable as JSON"},
                }
            )
        with self._write_lock:
            if self._closed:
                return
            try:
                self._write(data.encode("utf-8") + b"\n")
            except (OSError, ValueError):  # the client is gone (EPIPE) or stdout closed
                self._closed = True

    def _result(self, rid: Id, result: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    def _error(self, rid: Id | None, code: int, message: str, data: Any = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        self.send({"jsonrpc": "2.0", "id": rid, "error": error})

    # -- receiving -------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
            self._error(None, PARSE_ERROR, f"parse error: {_brief(exc)}")
            return
        try:
            self.handle(message)
        except Exception as exc:  # a bug here must not end the server, nor reach stdout as a traceback
            traceback.print_exc(file=sys.stderr)
            rid = message.get("id") if isinstance(message, dict) else None
            self._error(rid if _valid_id(rid) else None, INTERNAL_ERROR, f"internal error: {_brief(exc)}")

    def handle(self, message: Any) -> None:
        if isinstance(message, list):
            self._error(None, INVALID_REQUEST, "invalid request: batches are not supported; send one message a line")
            return
        if not isinstance(message, dict):
            self._error(None, INVALID_REQUEST, "invalid request: a message is a JSON object")
            return
        rid = message.get("id")
        if "method" not in message:
            if ("result" in message or "error" in message) and "id" in message:
                return  # a response; this server sends no requests, so it answers nothing
            self._error(rid if _valid_id(rid) else None, INVALID_REQUEST, "invalid request: no method")
            return
        method = message["method"]
        if "id" not in message:  # a notification: never answered, even when unknown or wrong
            if isinstance(method, str):
                self._notification(method, message.get("params"))
            return
        if not _valid_id(rid):
            self._error(None, INVALID_REQUEST, "invalid request: id must be a string or a number")
            return
        if message.get("jsonrpc") != "2.0":
            self._error(rid, INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
            return
        if not isinstance(method, str):
            self._error(rid, INVALID_REQUEST, "invalid request: method must be a string")
            return
        handler = self._METHODS.get(method)
        if handler is None:
            hint = did_you_mean(method, self._METHODS)
            self._error(rid, METHOD_NOT_FOUND, f"method not found: {method}{hint}")
            return
        params = message.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self._error(rid, INVALID_PARAMS, f"invalid params: {method} takes its params by name, as an object")
            return
        reply = handler(self, rid, params)
        if isinstance(reply, RpcError):
            self._error(rid, reply.code, reply.message, reply.data)
        elif reply is not None:
            self._result(rid, reply)

    def _notification(self, method: str, params: Any) -> None:
        if method == "notifications/initialized":
            self.initialized = True
        elif method == "notifications/cancelled" and isinstance(params, dict):
            rid = params.get("requestId")
            if _valid_id(rid):
                with self._lock:
                    found = self._inflight.get(_key(rid))
                if found is not None:
                    found[0].cancel()
        # Anything else (progress, roots changed, ...) needs nothing from this server.

    # -- methods ---------------------------------------------------------------------------

    def _initialize(self, rid: Id, params: dict[str, Any]) -> Reply:
        asked = params.get("protocolVersion")
        if not isinstance(asked, str):
            return RpcError(INVALID_PARAMS, "invalid params: initialize needs protocolVersion, a string")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        return {
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": False},
                "resources": {"listChanged": False, "subscribe": False},
            },
            "serverInfo": {"name": "faultbox", "title": "faultbox", "version": __version__},
            "instructions": INSTRUCTIONS,
        }

    def _ping(self, rid: Id, params: dict[str, Any]) -> Reply:
        return {}

    def _tools_list(self, rid: Id, params: dict[str, Any]) -> Reply:
        return {"tools": [t.describe() for t in self.toolbox.tools.values()]}

    def _tools_call(self, rid: Id, params: dict[str, Any]) -> Reply:
        name = params.get("name")
        if not isinstance(name, str):
            return RpcError(INVALID_PARAMS, "invalid params: tools/call needs name, the tool's name (a string)")
        if name not in self.toolbox.tools:
            tools = self.toolbox.tools
            return RpcError(
                INVALID_PARAMS,
                f"invalid params: unknown tool {name!r}{did_you_mean(name, tools)}; tools: {', '.join(tools)}",
            )
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return RpcError(INVALID_PARAMS, "invalid params: arguments must be an object")
        call = Call()
        thread = threading.Thread(target=self._run_tool, args=(rid, name, arguments, call), daemon=True)
        with self._lock:
            if _key(rid) in self._inflight:
                return RpcError(INVALID_REQUEST, f"invalid request: id {json.dumps(rid)} is already in use")
            self._inflight[_key(rid)] = (call, thread)
        thread.start()
        return None

    def _run_tool(self, rid: Id, name: str, arguments: dict[str, Any], call: Call) -> None:
        try:
            try:
                result = self.toolbox.call(name, arguments, call).to_dict()
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                text = f"error: faultbox's MCP server failed in {name}: {_brief(exc)} (this is a bug in faultbox)"
                result = {"content": [{"type": "text", "text": text}], "isError": True}
            if not call.cancelled.is_set():  # a cancelled request is not answered (MCP cancellation)
                self._result(rid, result)
        finally:
            with self._lock:
                self._inflight.pop(_key(rid), None)

    def _resources_list(self, rid: Id, params: dict[str, Any]) -> Reply:
        return {"resources": [d.describe() for d in find_docs()]}

    def _resource_templates_list(self, rid: Id, params: dict[str, Any]) -> Reply:
        return {"resourceTemplates": []}

    def _resources_read(self, rid: Id, params: dict[str, Any]) -> Reply:
        uri = params.get("uri")
        if not isinstance(uri, str):
            return RpcError(INVALID_PARAMS, "invalid params: resources/read needs uri, a string")
        docs = {d.uri: d for d in find_docs()}
        doc = docs.get(uri)
        if doc is None:
            return RpcError(RESOURCE_NOT_FOUND, f"resource not found: {uri}{did_you_mean(uri, docs)}", {"uri": uri})
        try:
            text = doc.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return RpcError(INTERNAL_ERROR, f"{uri}: {exc.strerror or exc}")
        return {"contents": [{"uri": uri, "mimeType": "text/markdown", "text": text}]}

    _METHODS: ClassVar[dict[str, Callable[[Server, Id, dict[str, Any]], Reply]]] = {
        "initialize": _initialize,
        "ping": _ping,
        "tools/list": _tools_list,
        "tools/call": _tools_call,
        "resources/list": _resources_list,
        "resources/templates/list": _resource_templates_list,
        "resources/read": _resources_read,
    }

    # -- ending ----------------------------------------------------------------------------

    def finish(self, *, cancel: bool, grace: float = 30.0) -> None:
        """Wait for the calls in flight to answer; with cancel, stop them first (their runs get
        SIGTERM, tear down, and are killed after a grace)."""
        with self._lock:
            inflight = list(self._inflight.values())
        for call, _ in inflight:
            if cancel:
                call.cancel()
        for _, thread in inflight:
            thread.join(grace if cancel else None)

    def close(self) -> None:
        self.toolbox.close()


def _valid_id(rid: Any) -> TypeGuard[Id]:
    return isinstance(rid, (str, int, float)) and not isinstance(rid, bool)


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def serve(stdin: IO[bytes] | None = None) -> int:
    """Serve MCP on this process's stdin and stdout until end of input (or SIGTERM, SIGINT)."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # From here on, whatever prints (a library, a stray print()) goes to stderr: stdout is the
    # protocol's alone.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    sigterm_as_interrupt()

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    source = stdin if stdin is not None else sys.stdin.buffer
    server = Server(write)
    try:
        try:
            for line in iter(source.readline, b""):
                server.handle_line(line)
            server.finish(cancel=False)  # the client closed our input: answer what it asked, then end
        except KeyboardInterrupt:
            server.finish(cancel=True)
    except KeyboardInterrupt:  # a second signal while stopping the calls in flight
        pass
    finally:
        server.close()
        try:
            out.close()
        except OSError:
            pass
    return 0
