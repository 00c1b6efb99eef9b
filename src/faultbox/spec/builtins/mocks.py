"""mock_service() and the answers a mock gives: json_response, text_response, bytes_response,
status_only, redirect, dynamic."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

from faultbox._util.frozen import thaw
from faultbox.model.mock import (
    MAX_BODY,
    MOCK_PROTOCOLS,
    VALIDATE_MODES,
    Answer,
    Dynamic,
    MockConfig,
    MockResponse,
    MockRoute,
    RouteError,
    json_body,
    parse_route,
    with_header,
)
from faultbox.model.service import Interface, Service
from faultbox.spec.args import ArgError, check_arity, register_type, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.builtins.topology import _check_name, _check_ports, _dep_name, _module_dir, _with_port
from faultbox.spec.compile import current_location
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import ServiceValue

register_type_name(MockResponse, "mock_response")
register_type_name(Dynamic, "mock_response")
register_type(
    "answer",
    lambda v: isinstance(v, (MockResponse, Dynamic)),
    "a mock response (json_response(...), text_response(...), status_only(...), dynamic(fn), ...)",
)

_handlers = itertools.count(1)
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@builtin("json_response", "status: int = 200, body: any = None, headers: dict = {}")
def json_response(builder: SpecBuilder, status: int, body: Any, headers: dict[str, Any]) -> MockResponse:
    _check_status("json_response", status)
    data = _sized("json_response", json_arg("json_response(): body is not JSON", body))
    return MockResponse(
        status, data, with_header(_headers("json_response", headers), "content-type", "application/json")
    )


@builtin("text_response", "status: int = 200, body: str = '', headers: dict = {}")
def text_response(builder: SpecBuilder, status: int, body: str, headers: dict[str, Any]) -> MockResponse:
    _check_status("text_response", status)
    return MockResponse(
        status,
        _sized("text_response", body.encode()),
        with_header(_headers("text_response", headers), "content-type", "text/plain; charset=utf-8"),
    )


@builtin("bytes_response", "status: int = 0, data: any = ''")
def bytes_response(builder: SpecBuilder, status: int, data: Any) -> MockResponse:
    if isinstance(data, str):
        raw = data.encode()
    elif isinstance(data, bytes):
        raw = data
    else:
        raise ArgError(f"bytes_response(): data must be a string or bytes, got {type_name(data)}")
    return MockResponse(status, _sized("bytes_response", raw), kind="bytes")


@builtin("status_only", "code: int")
def status_only(builder: SpecBuilder, code: int) -> MockResponse:
    _check_status("status_only", code)
    return MockResponse(code)


@builtin("redirect", "location: str, status: int = 302")
def redirect(builder: SpecBuilder, location: str, status: int) -> MockResponse:
    if not 300 <= status <= 399:
        raise ArgError(f"redirect(): status {status} is not a redirect status (300-399)")
    return MockResponse(status, b"", _headers("redirect", {"location": location}))


@builtin("dynamic", "fn: callable")
def dynamic(builder: SpecBuilder, fn: Any) -> Dynamic:
    check_arity(fn, 1, "dynamic()", "one argument (the request)")
    name = getattr(fn, "__name__", "handler")
    code = getattr(fn, "__code__", None)  # the handler's own line, for what goes wrong inside it
    location = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else str(current_location(2) or "")
    return Dynamic(next(_handlers), name if name != "<lambda>" else "lambda", location, fn)


@builtin(
    "mock_service",
    "name: str, *interfaces, routes: dict = {}, default: answer? = None, tls: bool = False, config: dict = {}, "
    "descriptors: str? = None, openapi: str? = None, examples: str = 'first', validate: str? = None, "
    "overrides: dict = {}, depends_on: list = []",
)
def mock_service(
    builder: SpecBuilder,
    name: str,
    interfaces: tuple[Any, ...],
    routes: dict[str, Any],
    default: Answer | None,
    tls: bool,
    config: dict[str, Any],
    descriptors: str | None,
    openapi: str | None,
    examples: str,
    validate: str | None,
    overrides: dict[str, Any],
    depends_on: list[Any],
) -> ServiceValue:
    _check_name(name)
    what = f'mock_service("{name}")'
    ifaces = _interfaces(what, interfaces)
    if tls:
        raise ArgError(f"{what}: tls=True is not supported yet", "serve the mock in cleartext (drop tls=)")
    if descriptors is not None:
        raise ArgError(f"{what}: descriptors= is for gRPC mocks, which faultbox does not have yet")
    if config:
        raise ArgError(
            f"{what}: config= seeds Redis, Kafka and MongoDB mocks, which faultbox does not have",
            'run the real server instead: load("@faultbox/services.star", "redis", "kafka")',
        )
    per_interface = bool(routes or default is not None or openapi or overrides)
    if per_interface and len(ifaces) > 1:
        raise ArgError(
            f"{what}: routes=, default=, openapi= and overrides= describe one interface, and this mock has "
            f"{len(ifaces)}",
            "declare one mock_service per interface",
        )
    if validate is not None and validate not in VALIDATE_MODES:
        raise ArgError(f'{what}: validate="{validate}" is not one of {", ".join(VALIDATE_MODES)}')
    mocks: dict[str, MockConfig] = {}
    for iface in ifaces:
        if iface.protocol == "tcp":
            if openapi or overrides or validate is not None or examples != "first":
                raise ArgError(
                    f"{what}: openapi=, overrides=, validate= and examples= are for HTTP mocks; {iface.name} is tcp"
                )
            mocks[iface.name] = MockConfig("tcp", default=default, line_routes=_line_routes(what, routes))
            continue
        built = [_route(what, pattern, answer) for pattern, answer in routes.items()]
        for answer in [*(r.answer for r in built), default]:
            if isinstance(answer, MockResponse) and answer.kind == "bytes":
                raise ArgError(
                    f"{what}: bytes_response() is a TCP mock's raw reply; {iface.name} is {iface.protocol}",
                    "answer with json_response(...), text_response(...) or status_only(...)",
                )
        mode = validate or "off"
        if openapi:
            from faultbox.spec.openapi import load_openapi

            path = openapi if os.path.isabs(openapi) else os.path.join(_user_dir(), openapi)
            builder.data_files.append(os.path.normpath(path))  # a failure bundle carries it
            generated = load_openapi(path, examples=examples, overrides=_overrides(what, overrides))
            built = [*generated, *built]  # generated and overridden routes win a tie with routes=
            mode = validate or "strict"
        elif overrides:
            raise ArgError(f"{what}: overrides= replaces answers of an OpenAPI document; give openapi= too")
        elif examples != "first":
            raise ArgError(f"{what}: examples= chooses among an OpenAPI document's examples; give openapi= too")
        elif validate is not None:
            raise ArgError(f"{what}: validate= checks requests against an OpenAPI document; give openapi= too")
        mocks[iface.name] = MockConfig(iface.protocol, tuple(built), default, mode)
    svc = Service(
        name=name,
        argv=(),
        interfaces=tuple(ifaces),
        depends_on=tuple(_dep_name(name, d) for d in depends_on),
        cwd=_user_dir(),
        mocks=mocks,
        location=current_location(2),
    )
    builder.add_service(svc)
    return ServiceValue(svc)


# -- helpers -----------------------------------------------------------------------------------


def json_arg(problem: str, value: Any) -> bytes:
    """A spec value as compact JSON, or an ArgError starting with `problem` ("x is not JSON")."""
    try:
        return json_body(thaw(value))
    except (TypeError, ValueError) as exc:
        raise ArgError(f"{problem} ({exc})", "give dicts, lists, strings, numbers, bools and None only") from None


def _user_dir() -> str:
    """The directory of the user's spec that called (through a stdlib helper or not): relative
    paths such as openapi= are the user's."""
    where = current_location(3)
    return os.path.dirname(where.file) if where is not None else _module_dir()


def _interfaces(what: str, items: tuple[Any, ...]) -> list[Interface]:
    ifaces: list[Interface] = []
    for item in items:
        if not isinstance(item, Interface):
            raise ArgError(
                f"{what}: positional arguments after the name are interface(...) values, got {type_name(item)}"
            )
        if item.protocol not in MOCK_PROTOCOLS:
            raise ArgError(
                f'{what}: no mock for protocol "{item.protocol}" (interface {item.name}); mocks speak '
                + ", ".join(MOCK_PROTOCOLS),
                'for a real server: load("@faultbox/services.star", "postgres", "redis", "kafka")',
            )
        ifaces.append(_with_port(item))
    if not ifaces:
        raise ArgError(f'{what} needs an interface: mock_service("{what}", interface("main", "http", 8080), ...)')
    _check_ports(what, ifaces)
    return ifaces


def _route(what: str, pattern: Any, answer: Any, source: str = "routes") -> MockRoute:
    if not isinstance(pattern, str):
        raise ArgError(f'{what}: route keys are "METHOD /path" strings, got {type_name(pattern)}')
    try:
        parsed = parse_route(pattern)
    except RouteError as exc:
        raise ArgError(f"{what}: {exc}") from None
    return MockRoute(parsed, _answer(what, f'route "{pattern}"', answer), source)


def _answer(what: str, where: str, answer: Any) -> Answer:
    if isinstance(answer, (MockResponse, Dynamic)):
        return answer
    raise ArgError(
        f"{what}: {where} answers {type_name(answer)}, not a mock response",
        "wrap it: json_response(body=...), text_response(body=...), status_only(404) or dynamic(fn)",
    )


def _line_routes(what: str, routes: Mapping[str, Any]) -> tuple[tuple[bytes, Answer], ...]:
    out: list[tuple[bytes, Answer]] = []
    for prefix, answer in routes.items():
        if not isinstance(prefix, str) or not prefix:
            raise ArgError(f"{what}: TCP route keys are non-empty line prefixes, got {prefix!r}")
        out.append((prefix.encode(), _answer(what, f'route "{prefix}"', answer)))
    out.sort(key=lambda item: len(item[0]), reverse=True)
    return tuple(out)


def _overrides(what: str, overrides: Mapping[str, Any]) -> dict[str, Answer]:
    return {str(key): _answer(what, f'override "{key}"', value) for key, value in overrides.items()}


def _headers(what: str, headers: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ArgError(f"{what}(): headers must map strings to strings, got {key!r}: {type_name(value)}")
        if any(c in key + str(value) for c in "\r\n\0"):
            raise ArgError(f"{what}(): header {key!r} holds a line break")
        if not key or not set(key) <= _TOKEN:
            raise ArgError(f"{what}(): {key!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
        out.append((key, str(value)))
    return tuple(out)


def _sized(what: str, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ArgError(f"{what}(): a body of {len(body)} bytes is more than a mock answers with ({MAX_BODY} bytes)")
    return body


def _check_status(what: str, status: int) -> None:
    if not 200 <= status <= 599:
        raise ArgError(f"{what}(): status {status} is outside 200..599 (a mock gives a final answer)")
