"""OpenAPI documents as mock routes: loading, answers chosen from examples, request checks, overrides."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

from faultbox.model.mock import Dynamic, MockResponse, MockRoute, RequestCheck, find_route, order_routes
from faultbox.spec.args import ArgError
from faultbox.spec.openapi import load_openapi

PAYMENTS = Path(__file__).resolve().parents[2] / "data" / "openapi" / "payments.yaml"
HEAD = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\n"


def _doc(tmp_path: Path, body: str, head: str = HEAD, name: str = "api.yaml") -> str:
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(body))
    return str(path)


def _load(path: str, examples: str = "first", **overrides: Any) -> dict[str, MockRoute]:
    return {r.pattern.text: r for r in load_openapi(path, examples=examples, overrides=overrides)}


def _op(tmp_path: Path, operation: str, examples: str = "first", method: str = "get", path: str = "/x") -> MockRoute:
    """The route of a document with one operation (given as YAML under the method)."""
    text = f"paths:\n  {path}:\n    {method}:\n" + textwrap.indent(textwrap.dedent(operation), "      ")
    return _load(_doc(tmp_path, text), examples)[f"{method.upper()} {path}"]


def _response(tmp_path: Path, media: str, examples: str = "first", media_type: str = "application/json") -> MockRoute:
    """The route of a one-operation document whose 200 response has this media type object."""
    body = textwrap.indent(textwrap.dedent(media), "        ")
    return _op(
        tmp_path, f"responses:\n  '200':\n    description: ok\n    content:\n      {media_type}:\n{body}", examples
    )


def _body(route: MockRoute) -> Any:
    assert isinstance(route.answer, MockResponse)
    return json.loads(route.answer.body)


def _error(path: str, examples: str = "first", **overrides: Any) -> ArgError:
    with pytest.raises(ArgError) as info:
        load_openapi(path, examples=examples, overrides=overrides)
    return info.value


# -- the payments document -------------------------------------------------------------------


def test_payments_document_has_one_route_per_operation() -> None:
    routes = load_openapi(str(PAYMENTS), examples="first", overrides={})
    assert [r.pattern.text for r in routes] == [
        "POST /v1/charges",
        "GET /v1/charges",
        "GET /v1/charges/{id}",
        "POST /v1/charges/{id}/refunds",
        "GET /v1/charges/{id}/refunds",
        "GET /v1/refunds/{refund_id}",
        "GET /health",
    ]
    assert {r.source for r in routes} == {"openapi"}
    assert all(isinstance(r.check, RequestCheck) for r in routes)
    ordered = order_routes(routes)
    found = find_route(ordered, "GET", "/v1/charges/ch_9")
    assert found is not None and found.pattern.text == "GET /v1/charges/{id}"
    found = find_route(ordered, "POST", "/v1/charges/ch_9/refunds")
    assert found is not None and found.pattern.text == "POST /v1/charges/{id}/refunds"
    assert pickle.loads(pickle.dumps(routes)) == routes  # routes travel to the proxy worker


def test_payments_answers_come_from_the_examples() -> None:
    routes = _load(str(PAYMENTS))
    create = routes["POST /v1/charges"].answer
    assert isinstance(create, MockResponse)
    assert create.status == 201
    assert ("content-type", "application/json") in create.headers
    assert ("Request-Id", "req_8f2a1c") in create.headers  # a response header with an example
    assert _body(routes["POST /v1/charges"])["status"] == "succeeded"  # "approved" sorts first
    assert _body(routes["GET /v1/charges/{id}"])["id"] == "ch_1001"  # a $ref'd named example
    assert _body(routes["GET /v1/refunds/{refund_id}"])["id"] == "re_777"  # the schema's example
    health = routes["GET /health"].answer
    assert health == MockResponse(204, b"", ())
    assert _body(load_openapi(str(PAYMENTS), examples="pending", overrides={})[0])["status"] == "pending"


def test_payments_request_checks() -> None:
    routes = _load(str(PAYMENTS))
    create = routes["POST /v1/charges"].check
    assert create is not None
    assert create.operation == "POST /v1/charges"
    assert create.body_required and create.media_types == ("application/json",)
    assert create.required_headers == ()  # Idempotency-Key is optional
    schema = create.body_schema
    assert schema is not None
    assert schema["required"] == ["amount", "currency", "source"]
    assert schema["properties"]["currency"] == {  # the $ref inlined, its example dropped
        "type": "string",
        "description": "Three-letter ISO currency code, lower case.",
        "pattern": "^[a-z]{3}$",
    }
    assert schema["properties"]["description"]["type"] == ["string", "null"]
    refund = routes["POST /v1/charges/{id}/refunds"].check
    assert refund is not None and not refund.body_required
    get = routes["GET /v1/charges/{id}"].check
    assert get == RequestCheck(operation="GET /v1/charges/{id}")  # the path parameter is the route's


# -- loading ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    err = _error(str(tmp_path / "nope.yaml"))
    assert "nope.yaml does not exist" in err.message
    assert err.hint is not None and "relative" in err.hint
    assert "is not a file" in _error(str(tmp_path)).message


def test_yaml_error_names_line_and_column(tmp_path: Path) -> None:
    path = _doc(tmp_path, "paths:\n  /x:\n    get: [unclosed\n  /y: {}\n")
    err = _error(path)
    assert f"{path}:6:" in err.message, err.message  # the two head lines, then the fourth line of the body
    assert "not valid YAML" in err.message


def test_json_documents_load(tmp_path: Path) -> None:
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/x": {
                "get": {
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"example": [1, 2]}}}}
                }
            }
        },
    }
    path = tmp_path / "api.json"
    path.write_text(json.dumps(doc))
    assert _body(_load(str(path))["GET /x"]) == [1, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "no mapping"),
        ("info: {title: t}\npaths: {}\n", "no `openapi:` version"),
        ("swagger: '2.0'\npaths: {}\n", "Swagger 2.0"),
        ("openapi: 2.1.0\npaths: {}\n", "faultbox reads OpenAPI 3.0 and 3.1"),
        ("openapi: 3.0.0\ninfo: {title: t}\n", "no `paths:` section"),
    ],
)
def test_not_an_openapi_3_document(tmp_path: Path, text: str, expected: str) -> None:
    path = _doc(tmp_path, text, head="")
    err = _error(path)
    assert path in err.message and expected in err.message
    assert err.hint


def test_dates_stay_strings(tmp_path: Path) -> None:
    route = _response(tmp_path, "example: {day: 2024-05-01, at: 2024-05-01T10:00:00Z}")
    assert _body(route) == {"day": "2024-05-01", "at": "2024-05-01T10:00:00Z"}


@pytest.mark.parametrize("ref", ["other.yaml#/components/schemas/A", "https://example.com/api.yaml#/A"])
def test_external_refs_are_refused(tmp_path: Path, ref: str) -> None:
    path = _doc(tmp_path, f"paths:\n  /x:\n    get:\n      responses:\n        '200':\n          $ref: '{ref}'\n")
    err = _error(path)
    assert f'$ref "{ref}" points outside the document' in err.message
    assert err.hint is not None and "bundle" in err.hint


def test_dangling_and_cyclic_refs(tmp_path: Path) -> None:
    dangling = _doc(tmp_path, "paths:\n  /x:\n    $ref: '#/components/pathItems/X'\n", name="a.yaml")
    assert '"#/components/pathItems/X" points to nothing' in _error(dangling).message
    cyclic = _doc(
        tmp_path,
        """\
        paths:
          /x:
            get:
              responses:
                '200': {$ref: '#/components/responses/A'}
        components:
          responses:
            A: {$ref: '#/components/responses/B'}
            B: {$ref: '#/components/responses/A'}
        """,
        name="b.yaml",
    )
    message = _error(cyclic).message
    assert "$ref cycle" in message and "#/components/responses/A -> #/components/responses/B" in message


def test_partial_path_parameters_are_globs(tmp_path: Path) -> None:
    route = _op(tmp_path, "responses: {'204': {description: gone}}", path="/files/{name}.json", method="delete")
    assert route.pattern.text == "DELETE /files/{name}.json"
    assert route.pattern.matches("DELETE", ("files", "report.json"))
    assert not route.pattern.matches("DELETE", ("files", "report.txt"))


# -- the answer: status, media type, example ---------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        (["404", "201", "200"], 200),
        (["400", "204", "202"], 202),
        (["500", "default"], 200),
        (["default", "203"], 203),
        (["400", "299", "250"], 250),
        (["404", "2XX"], 200),
        (["404", "500"], 404),
        (["5XX"], 500),
    ],
)
def test_success_status(tmp_path: Path, codes: list[str], status: int) -> None:
    responses = "".join(f"  '{c}': {{description: d}}\n" for c in codes)
    route = _op(tmp_path, "responses:\n" + responses)
    assert route.answer == MockResponse(status, b"", ())


def test_unquoted_status_codes(tmp_path: Path) -> None:
    route = _op(tmp_path, "responses:\n  404: {description: d}\n  201: {description: d}\n")
    assert isinstance(route.answer, MockResponse) and route.answer.status == 201


def test_media_type_preference(tmp_path: Path) -> None:
    text = """\
        responses:
          '200':
            description: ok
            content:
              text/plain: {example: hello}
              application/xml: {example: <a/>}
              application/json: {example: {a: 1}}
        """
    assert _body(_op(tmp_path, text)) == {"a": 1}
    route = _op(tmp_path, text.replace("application/json: {example: {a: 1}}", ""))
    # no JSON type: the first the document lists
    assert route.answer == MockResponse(200, b"hello", (("content-type", "text/plain"),))
    route = _response(tmp_path, "example: hello", media_type="text/plain")
    assert route.answer == MockResponse(200, b"hello", (("content-type", "text/plain"),))
    route = _response(tmp_path, "example: {id: 1}", media_type="application/problem+json")
    assert route.answer == MockResponse(200, b'{"id":1}', (("content-type", "application/problem+json"),))


def test_example_order_for_first(tmp_path: Path) -> None:
    both = """\
        schema: {type: object, example: {from: schema}}
        example: {from: example}
        examples:
          b: {value: {from: b}}
          a: {value: {from: a}}
        """
    assert _body(_response(tmp_path, both)) == {"from": "example"}
    without_example = "\n".join(line for line in both.splitlines() if "from: example" not in line)
    assert _body(_response(tmp_path, without_example)) == {"from": "b"}  # the document's order
    assert _body(_response(tmp_path, "schema: {type: object, example: {from: schema}}")) == {"from": "schema"}
    assert _body(_response(tmp_path, "schema: {type: array, examples: [[1], [2]]}")) == [1]  # 3.1 style
    external = "examples:\n  a: {externalValue: 'https://example.com/a.json'}\n  b: {value: {from: b}}\n"
    assert _body(_response(tmp_path, external)) == {"from": "b"}


def test_named_examples(tmp_path: Path) -> None:
    media = "example: {from: example}\nexamples:\n  ok: {value: {from: ok}}\n  slow: {value: {from: slow}}\n"
    assert _body(_response(tmp_path, media, examples="slow")) == {"from": "slow"}
    path = _doc(
        tmp_path,
        """\
        paths:
          /a:
            get:
              responses:
                '200':
                  description: ok
                  content:
                    application/json:
                      examples:
                        slow: {value: {from: slow}}
                        ok: {value: {from: ok}}
          /b:
            get:
              responses:
                '200':
                  description: ok
                  content:
                    application/json:
                      example: {from: b}
        """,
    )
    routes = _load(path, examples="slow")
    assert _body(routes["GET /a"]) == {"from": "slow"}
    assert _body(routes["GET /b"]) == {"from": "b"}  # no example of that name: the first one
    err = _error(path, examples="slwo")
    assert 'examples="slwo"' in err.message and 'did you mean "slow"' in err.message
    assert err.hint is not None and "ok, slow" in err.hint


def test_random_examples_repeat(tmp_path: Path) -> None:
    named = "".join(f"  e{i}: {{value: {i}}}\n" for i in range(8))
    paths = "".join(
        f"  /p{n}:\n    get:\n      responses:\n        '200':\n          description: ok\n"
        f"          content:\n            application/json:\n              examples:\n"
        + textwrap.indent(named, "              ")
        for n in range(6)
    )
    path = _doc(tmp_path, "paths:\n" + paths)
    first = [_body(r) for r in load_openapi(path, examples="random", overrides={})]
    again = [_body(r) for r in load_openapi(path, examples="random", overrides={})]
    assert first == again
    assert set(first) <= set(range(8)) and len(set(first)) > 1
    assert _body(_response(tmp_path, "example: 5", examples="random")) == 5  # no named examples: the example


def test_no_example_is_an_error_naming_the_operation(tmp_path: Path) -> None:
    text = "paths:\n  /v1/x:\n    get:\n      responses:\n        '200':\n          description: ok\n"
    text += "          content:\n            application/json:\n              schema: {type: object}\n"
    path = _doc(tmp_path, text)
    err = _error(path)
    assert "GET /v1/x has no example for its 200 response (application/json)" in err.message
    assert err.hint is not None and 'examples="synthesize"' in err.hint and "overrides=" in err.hint
    assert _body(_load(path, "synthesize")["GET /v1/x"]) == {}
    assert _load(path, **{"GET /v1/x": MockResponse(204)})["GET /v1/x"].answer == MockResponse(204)


def test_synthesized_values(tmp_path: Path) -> None:
    schema = """\
        schema:
          type: object
          required: [id, kind, when, count, price, ok, tags, pair, owner, note, both, code, pick]
          properties:
            id: {type: string, format: uuid}
            kind: {type: string, enum: [basic, pro]}
            when: {type: string, format: date-time}
            count: {type: integer, minimum: 3}
            price: {type: number, exclusiveMinimum: true, minimum: 0}
            ok: {type: boolean}
            tags: {type: array, items: {type: string}}
            pair: {type: array, minItems: 2, items: {type: integer, maximum: -1}}
            owner: {$ref: '#/components/schemas/Owner'}
            note: {type: string, nullable: true, minLength: 8}
            both:
              allOf:
                - {type: object, required: [a], properties: {a: {type: integer}}}
                - {type: object, required: [b], properties: {b: {type: boolean}}}
            code: {type: [string, 'null'], maxLength: 3}
            pick: {oneOf: [{type: integer}, {type: string}]}
            optional: {type: string}
        """
    path = _doc(
        tmp_path,
        "paths:\n  /x:\n    get:\n      responses:\n        '200':\n          description: ok\n"
        "          content:\n            application/json:\n"
        + textwrap.indent(textwrap.dedent(schema), "              ")
        + "components:\n  schemas:\n    Owner:\n      type: object\n      required: [name, boss]\n"
        "      properties:\n        name: {type: string, example: ada}\n"
        "        boss: {$ref: '#/components/schemas/Owner'}\n",
    )
    assert _body(_load(path, "synthesize")["GET /x"]) == {
        "id": "00000000-0000-0000-0000-000000000000",
        "kind": "basic",
        "when": "2024-01-01T00:00:00Z",
        "count": 3,
        "price": 1,
        "ok": False,
        "tags": [],
        "pair": [-1, -1],
        "owner": {"name": "ada", "boss": None},  # the recursion stops at the repeated schema
        "note": "stringxx",
        "both": {"a": 0, "b": False},
        "code": "str",
        "pick": 0,
    }


def test_synthesize_prefers_examples(tmp_path: Path) -> None:
    route = _response(tmp_path, "example: {a: 1}\nschema: {type: object}", examples="synthesize")
    assert _body(route) == {"a": 1}
    route = _response(tmp_path, "example: hi", examples="synthesize", media_type="text/plain")
    assert isinstance(route.answer, MockResponse) and route.answer.body == b"hi"


def test_example_that_is_not_json(tmp_path: Path) -> None:
    with pytest.raises(ArgError) as info:
        _response(tmp_path, "example: .nan")
    assert "GET /x: the example is not JSON" in info.value.message


# -- request checks --------------------------------------------------------------------------


def test_required_parameters(tmp_path: Path) -> None:
    path = _doc(
        tmp_path,
        """\
        paths:
          /v1/items/{id}:
            parameters:
              - {name: id, in: path, required: true, schema: {type: string}}
              - {name: tenant, in: query, required: true}
              - {name: X-Trace, in: header, required: true}
            post:
              parameters:
                - {name: tenant, in: query, required: false}
                - {name: page, in: query, required: true}
                - {name: page_size, in: query}
                - {name: X-Api-Key, in: header, required: true}
                - {name: Authorization, in: header, required: true}
                - {name: session, in: cookie, required: true}
                - $ref: '#/components/parameters/Region'
              responses: {'204': {description: ok}}
        components:
          parameters:
            Region: {name: region, in: query, required: true}
        """,
    )
    check = _load(path)["POST /v1/items/{id}"].check
    assert check == RequestCheck(
        operation="POST /v1/items/{id}",
        required_query=("page", "region"),  # the operation made tenant optional
        required_headers=("x-trace", "x-api-key"),  # Authorization is HTTP's own
    )


def test_request_body_check(tmp_path: Path) -> None:
    path = _doc(
        tmp_path,
        """\
        paths:
          /x:
            put:
              requestBody: {$ref: '#/components/requestBodies/Thing'}
              responses: {'204': {description: ok}}
        components:
          requestBodies:
            Thing:
              required: true
              content:
                application/x-www-form-urlencoded: {schema: {type: object}}
                application/json:
                  schema: {$ref: '#/components/schemas/Thing'}
          schemas:
            Thing:
              type: object
              required: [id, name, example]
              discriminator: {propertyName: kind}
              xml: {name: thing}
              x-internal: true
              example: {id: 1}
              externalDocs: {url: 'https://example.com'}
              properties:
                id: {type: integer, readOnly: true}
                name: {type: string, nullable: true, enum: [a, b]}
                example: {type: string}
                size: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 10, exclusiveMaximum: false}
                parent: {nullable: true, allOf: [{$ref: '#/components/schemas/Leaf'}]}
                blob: {type: file}
            Leaf: {type: object, nullable: false}
        """,
    )
    check = _load(path)["PUT /x"].check
    assert check is not None
    assert check.body_required
    assert check.media_types == ("application/x-www-form-urlencoded", "application/json")
    assert check.body_schema == {
        "type": "object",
        "required": ["name", "example"],  # id is readOnly: the client does not send it
        "properties": {
            "id": {"type": "integer", "readOnly": True},
            "name": {"type": ["string", "null"], "enum": ["a", "b", None]},
            "example": {"type": "string"},  # a property named example is no annotation
            "size": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
            "parent": {"anyOf": [{"allOf": [{"type": "object"}]}, {"type": "null"}]},
            "blob": {"type": "string"},
        },
    }


def test_recursive_schema_goes_to_defs(tmp_path: Path) -> None:
    path = _doc(
        tmp_path,
        """\
        paths:
          /tree:
            post:
              requestBody:
                content:
                  application/json: {schema: {$ref: '#/components/schemas/Node'}}
              responses: {'204': {description: ok}}
        components:
          schemas:
            Node:
              type: object
              properties:
                name: {type: string}
                children: {type: array, items: {$ref: '#/components/schemas/Node'}}
        """,
    )
    check = _load(path)["POST /tree"].check
    assert check is not None and check.body_schema is not None
    schema = dict(check.body_schema)
    assert schema["$ref"] == "#/$defs/Node"
    assert schema["$defs"]["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    pickle.dumps(schema)


def test_invalid_request_schema_is_an_error(tmp_path: Path) -> None:
    route = """\
        requestBody:
          content:
            application/json: {schema: {type: object, properties: {n: {type: integr}}}}
        responses: {'204': {description: ok}}
        """
    with pytest.raises(ArgError) as info:
        _op(tmp_path, route, method="post")
    assert "POST /x: the request body schema is not valid JSON Schema (at properties/n/type)" in info.value.message


# -- overrides -------------------------------------------------------------------------------


def test_overrides_by_operation_id_and_pattern() -> None:
    declined = MockResponse(402, b'{"error":"declined"}', (("content-type", "application/json"),))
    missing = MockResponse(404)
    handler = Dynamic(7, "refund")
    routes = load_openapi(
        str(PAYMENTS),
        examples="first",
        overrides={"createCharge": declined, "GET /v1/charges/{id}": missing, "post /v1/charges/{id}/refunds": handler},
    )
    by_text = {r.pattern.text: r for r in routes}
    create = by_text["POST /v1/charges"]
    assert (create.answer, create.source) == (declined, "overrides")
    assert create.check is not None and create.check.body_required  # the check stays
    assert (by_text["GET /v1/charges/{id}"].answer, by_text["GET /v1/charges/{id}"].source) == (missing, "overrides")
    assert by_text["POST /v1/charges/{id}/refunds"].answer is handler
    assert by_text["GET /v1/charges"].source == "openapi"
    assert routes[0].pattern.text == "POST /v1/charges"  # the document's order is kept


def test_unknown_override() -> None:
    err = _error(str(PAYMENTS), createCharges=MockResponse(500))
    assert 'override "createCharges" names no operation' in err.message
    assert 'did you mean "createCharge"' in err.message
    assert err.hint is not None and "POST /v1/charges (createCharge)" in err.hint and "GET /health (health)" in err.hint
    err = _error(str(PAYMENTS), **{"GET /v1/charges/*": MockResponse(500)})
    assert "names no operation" in err.message and "as the document writes the path" in (err.hint or "")
