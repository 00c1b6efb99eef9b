"""Requests checked against their OpenAPI operation: parameters, body presence, content type, schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from faultbox.model.mock import MockConfig, MockResponse, MockRoute, RequestCheck, parse_route
from faultbox.proxy import mock_validate
from faultbox.proxy.mock import MockContext, MockRequest
from faultbox.proxy.mock_validate import validate
from faultbox.proxy.session import Endpoint
from faultbox.spec.openapi import load_openapi

PAYMENTS = Path(__file__).resolve().parents[2] / "data" / "openapi" / "payments.yaml"
JSON = [("content-type", "application/json")]
CHARGE = {"amount": 2500, "currency": "usd", "source": "tok_visa"}


def _route(**check: Any) -> MockRoute:
    return MockRoute(parse_route("POST /x"), MockResponse(204), "openapi", RequestCheck(operation="POST /x", **check))


def _post(
    body: Any = None, headers: list[tuple[str, str]] | None = None, query: str = "", raw: bytes = b""
) -> MockRequest:
    data = raw or (json.dumps(body).encode() if body is not None else b"")
    return MockRequest("POST", "/x", query, JSON if headers is None else headers, data)


@pytest.fixture(scope="module")
def payments() -> dict[str, MockRoute]:
    return {r.pattern.text: r for r in load_openapi(str(PAYMENTS), examples="first", overrides={})}


def test_payments_create_charge(payments: dict[str, MockRoute]) -> None:
    route = payments["POST /v1/charges"]
    assert validate(route, _post(CHARGE)) is None
    assert validate(route, _post({**CHARGE, "description": None, "metadata": {"order": "1"}})) is None
    assert validate(route, _post()) == "missing request body"
    assert validate(route, _post({**CHARGE, "amount": "abc"})) == "body.amount: 'abc' is not of type 'integer'"
    assert validate(route, _post({**CHARGE, "amount": 0})) == "body.amount: 0 is less than the minimum of 1"
    assert validate(route, _post({"amount": 1, "currency": "usd"})) == "body: 'source' is a required property"
    assert validate(route, _post({**CHARGE, "currency": "USD"})) == "body.currency: 'USD' does not match '^[a-z]{3}$'"
    problem = validate(route, _post({**CHARGE, "tip": 1}))
    assert problem is not None and problem.startswith("body: Additional properties are not allowed ('tip'")
    problem = validate(route, _post({**CHARGE, "metadata": {"order": 1}}))
    assert problem == "body.metadata.order: 1 is not of type 'string'"


def test_payments_refund_body_is_optional(payments: dict[str, MockRoute]) -> None:
    route = payments["POST /v1/charges/{id}/refunds"]
    assert validate(route, _post()) is None
    assert validate(route, _post({"reason": "duplicate"})) is None
    problem = validate(route, _post({"reason": "bored"}))
    assert problem is not None and problem.startswith("body.reason: 'bored' is not one of")


def test_no_check_or_no_declared_body() -> None:
    plain = MockRoute(parse_route("POST /x"), MockResponse(204))
    assert validate(plain, _post(raw=b"anything")) is None
    assert validate(_route(), _post(raw=b"not json", headers=[])) is None


def test_required_query_and_headers() -> None:
    route = _route(required_query=("tenant", "page"), required_headers=("x-api-key",))
    headers = [("x-api-key", "k")]
    assert validate(route, _post(query="tenant=a&page=", headers=headers)) is None  # present, even empty
    assert validate(route, _post(query="page=1", headers=headers)) == "missing required query parameter `tenant`"
    assert validate(route, _post(query="tenant=a&page=1", headers=[])) == "missing required header `x-api-key`"


def test_content_type() -> None:
    route = _route(media_types=("application/json", "text/*"), body_schema={"type": "object"})
    assert validate(route, _post({}, headers=[("content-type", "application/json; charset=utf-8")])) is None
    assert validate(route, _post({}, headers=[("content-type", "Application/JSON")])) is None
    assert validate(route, _post(raw=b"hi", headers=[("content-type", "text/plain")])) is None  # no schema for text
    assert validate(route, _post({}, headers=[("content-type", "application/xml")])) == (
        "content-type `application/xml` is not accepted (expected application/json, text/*)"
    )
    assert validate(route, _post({}, headers=[])) == (
        "the request has a body but no content-type (expected application/json, text/*)"
    )
    anything = _route(media_types=("*/*",), body_schema={"type": "object"})
    assert validate(anything, _post(raw=b"[]", headers=[("content-type", "application/vnd.api+json")])) == (
        "body: [] is not of type 'object'"
    )


def test_body_is_not_json() -> None:
    route = _route(media_types=("application/json",), body_schema={"type": "object"})
    problem = validate(route, _post(raw=b"{nope"))
    assert problem is not None and problem.startswith("body is not JSON: Expecting property name")
    assert validate(route, _post(raw=b"\xff\xfe{")) is not None
    assert validate(route, _post(raw=b"[" * 100_000)) is not None


def test_schema_paths_and_long_messages() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}},
            "a b": {"type": "string"},
            "big": {"type": "string"},
        },
    }
    route = _route(media_types=("application/json",), body_schema=schema)
    assert (
        validate(route, _post({"items": [{"qty": 1}, {"qty": 1.5}]}))
        == "body.items[1].qty: 1.5 is not of type 'integer'"
    )
    assert validate(route, _post({"a b": 1})) == "body[\"a b\"]: 1 is not of type 'string'"
    problem = validate(route, _post({"big": list(range(1000))}))
    assert problem is not None and len(problem) < 320 and problem.endswith("...")


def test_formats_are_not_checked() -> None:
    route = _route(media_types=("application/json",), body_schema={"type": "string", "format": "email"})
    assert validate(route, _post("not an email")) is None


def test_nullable_and_recursive_schemas_from_a_document(tmp_path: Path) -> None:
    doc = tmp_path / "api.yaml"
    doc.write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /tree:\n    post:\n      requestBody:\n"
        "        required: true\n        content:\n          application/json:\n"
        "            schema: {$ref: '#/components/schemas/Node'}\n      responses: {'204': {description: ok}}\n"
        "components:\n  schemas:\n    Node:\n      type: object\n      required: [name]\n      properties:\n"
        "        name: {type: string, nullable: true}\n"
        "        children: {type: array, items: {$ref: '#/components/schemas/Node'}}\n"
    )
    route = load_openapi(str(doc), examples="first", overrides={})[0]
    request = MockRequest("POST", "/tree", "", JSON, b"")
    request.body = json.dumps({"name": None, "children": [{"name": "a", "children": [{"name": "b"}]}]}).encode()
    assert validate(route, request) is None
    request.body = json.dumps({"name": "r", "children": [{"name": "a", "children": [{"name": 3}]}]}).encode()
    assert validate(route, request) == "body.children[0].children[0].name: 3 is not of type 'string', 'null'"


def test_validators_are_compiled_once_per_check() -> None:
    route = _route(media_types=("application/json",), body_schema={"type": "object"})
    assert validate(route, _post({})) is None
    assert route.check is not None
    cached = mock_validate._validators[id(route.check)]
    assert validate(route, _post([])) == "body: [] is not of type 'object'"
    assert mock_validate._validators[id(route.check)] is cached


def test_a_schema_that_cannot_be_evaluated_lets_the_request_through() -> None:
    route = _route(media_types=("application/json",), body_schema={"type": "string", "pattern": "(unclosed"})
    assert validate(route, _post("x")) is None


def test_strict_mock_answers_400(payments: dict[str, MockRoute]) -> None:
    route = payments["POST /v1/charges"]
    config = MockConfig("http", (route,), validate="strict")
    events: list[dict[str, str]] = []
    ctx = MockContext(Endpoint("pay", "main", "http", "127.0.0.1", 0), config, lambda _k, f: events.append(f), _no_call)
    request = MockRequest("POST", "/v1/charges", "", JSON, json.dumps({"amount": 1}).encode())
    found, static = ctx.static_answer(request)
    assert found is route and static is None  # there is a check to run
    response = asyncio.run(ctx.answer(1, request, found))
    assert response.status == 400
    assert json.loads(response.body) == {"error": "request validation failed: body: 'currency' is a required property"}
    assert events[-1]["validate_error"] == "body: 'currency' is a required property"
    request.body = json.dumps(CHARGE).encode()
    response = asyncio.run(ctx.answer(2, request, found))
    assert response.status == 201 and "validate_error" not in events[-1]


async def _no_call(handler: int, req: dict[str, Any]) -> tuple[str, Any]:
    raise AssertionError("no dynamic answer here")
