"""OpenAPI 3 documents as mock routes: `mock_service(openapi=...)`.

Every operation (path x method) becomes a route answering the example of its success response,
and carries a RequestCheck (required query and header parameters, the request body and its JSON
Schema) that the mock checks requests against when it validates. Only local `$ref`s
(`#/components/...`) are followed: a mock reads one self-contained file.

What the document's schemas say is turned into JSON Schema draft 2020-12 here, once, so the proxy
worker only has to compile it: OpenAPI 3.0's `nullable`, boolean `exclusiveMinimum` and other
differences from JSON Schema are rewritten, and annotations JSON Schema does not know are dropped.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

import yaml  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

from faultbox._util.spell import did_you_mean
from faultbox.model.mock import (
    Answer,
    MockResponse,
    MockRoute,
    RequestCheck,
    RouteError,
    RoutePattern,
    json_body,
    parse_route,
)
from faultbox.spec.args import ArgError

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
EXAMPLE_MODES = ("first", "random", "synthesize")

_PREFERRED_STATUS = ("200", "201", "202", "203", "204", "default")
_RANDOM_SEED = 1  # fixed, so that examples="random" answers the same on every run
_MAX_DEPTH = 32  # synthesized values stop nesting here (recursive schemas)
# OpenAPI ignores header parameters with these names: HTTP itself carries them.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})

# Schema keywords whose value is a schema, a list of schemas, or a map of name -> schema.
_SUBSCHEMA = frozenset(
    {
        "not",
        "additionalProperties",
        "items",
        "additionalItems",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contentSchema",
    }
)
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# OpenAPI annotations with no JSON Schema meaning; `$id` and `$schema` would change how refs resolve.
_DROPPED = frozenset({"nullable", "example", "xml", "discriminator", "externalDocs", "$id", "$schema"})

# Type-correct stand-ins for the string formats a schema may ask for.
_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "/",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "byte": "",
    "binary": "",
}


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML that keeps timestamps as strings: OpenAPI is JSON, where a date is a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_openapi(path: str, *, examples: str, overrides: Mapping[str, Answer]) -> list[MockRoute]:
    """The routes of the OpenAPI 3 document at `path`, in the document's order.

    `examples` chooses each answer's body: "first", "random", "synthesize" or the name of an
    example. `overrides` maps an operationId or `"METHOD /path"` (as the document writes the path)
    to the answer that replaces the generated one.
    """
    doc = _Document(path, _read(path))
    try:
        return _Builder(doc, examples, overrides).routes()
    except RecursionError:
        raise ArgError(
            f"openapi {path}: the document nests too deeply (a YAML alias that contains itself?)",
            "write the document without recursive aliases",
        ) from None


# -- the document ------------------------------------------------------------------------------


def _read(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        raise ArgError(
            f"openapi {path} {what}",
            "openapi= names a YAML or JSON file; a relative path starts at the spec file's directory",
        )
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ArgError(f"openapi {path} cannot be read: {exc.strerror}") from None
    try:
        doc = yaml.load(data, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ArgError(
            f"openapi {where}: not valid YAML or JSON: {problem}",
            "fix the document at that line (a JSON document is read as YAML, so the same rules apply)",
        ) from None
    hint = "an OpenAPI document starts with `openapi: 3.0.3` (or 3.1.0) and has a `paths:` section"
    if not isinstance(doc, dict):
        raise ArgError(f"openapi {path} is not an OpenAPI document: it holds no mapping at the top", hint)
    version = doc.get("openapi")
    if version is None:
        if "swagger" in doc:
            raise ArgError(
                f"openapi {path} is Swagger {doc['swagger']} (OpenAPI 2), not OpenAPI 3",
                "convert it to OpenAPI 3 first (for example with swagger2openapi)",
            )
        raise ArgError(f"openapi {path} is not an OpenAPI 3 document: it has no `openapi:` version field", hint)
    if not str(version).startswith("3."):
        raise ArgError(f"openapi {path} declares `openapi: {version}`; faultbox reads OpenAPI 3.0 and 3.1", hint)
    if not isinstance(doc.get("paths"), dict):
        raise ArgError(f"openapi {path} has no `paths:` section, so there is nothing to mock", hint)
    return doc


class _Document:
    """The parsed document and its local `$ref`s."""

    def __init__(self, path: str, root: dict[str, Any]) -> None:
        self.path = path
        self.root = root

    def fail(self, message: str, hint: str | None = None) -> ArgError:
        return ArgError(f"openapi {self.path}: {message}", hint)

    def deref(self, node: Any) -> Any:
        """`node` with its `$ref` (and the refs it leads to) followed; other values as they are."""
        seen: list[str] = []
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise self.fail(f"$ref cycle: {' -> '.join([*seen, ref])}", "one of these refs must hold a value")
            seen.append(ref)
            node = self.target(ref)
        return node

    def target(self, ref: Any) -> Any:
        """What a local `$ref` points to (one step)."""
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise self.fail(
                f'$ref "{ref}" points outside the document; only local refs (#/components/...) are followed',
                "bundle the document into one file first (for example `redocly bundle`)",
            )
        node: Any = self.root
        for part in ref[2:].split("/"):
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise self.fail(f'$ref "{ref}" points to nothing in the document')
        return node

    def mapping(self, node: Any, what: str) -> dict[Any, Any]:
        """`node` dereferenced, which must be a mapping (or absent: empty)."""
        node = self.deref(node)
        if node is None:
            return {}
        if not isinstance(node, dict):
            raise self.fail(f"{what} is not a mapping")
        return node


@dataclass(frozen=True, slots=True)
class _Operation:
    method: str  # upper case
    path: str  # as the document writes it
    node: dict[Any, Any]
    params: tuple[dict[Any, Any], ...]  # path-level and operation parameters, dereferenced

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def operation_id(self) -> str | None:
        value = self.node.get("operationId")
        return value if isinstance(value, str) else None


def _operations(doc: _Document) -> list[_Operation]:
    ops: list[_Operation] = []
    for raw_path, raw_item in doc.root["paths"].items():
        if not isinstance(raw_path, str) or not raw_path.startswith("/"):
            raise doc.fail(f'path "{raw_path}" must start with "/"')
        item = doc.mapping(raw_item, f'path "{raw_path}"')
        shared = _params(doc, item.get("parameters"), raw_path)
        for method, node in item.items():
            if method not in METHODS:
                continue
            name = f"{method.upper()} {raw_path}"
            op = doc.mapping(node, name)
            params = dict(shared)
            params.update(_params(doc, op.get("parameters"), name))
            ops.append(_Operation(method.upper(), raw_path, op, tuple(params.values())))
    return ops


def _params(doc: _Document, raw: Any, where: str) -> dict[tuple[str, str], dict[Any, Any]]:
    """Parameters by (name, in): an operation's parameter replaces the path's of the same name."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise doc.fail(f"{where}: parameters is not a list")
    out: dict[tuple[str, str], dict[Any, Any]] = {}
    for item in raw:
        param = doc.mapping(item, f"{where}: a parameter")
        out[(str(param.get("name")), str(param.get("in")))] = param
    return out


# -- routes ------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, doc: _Document, examples: str, overrides: Mapping[str, Answer]) -> None:
        self.doc = doc
        self.examples = examples
        self.overrides = overrides
        self.rng = random.Random(_RANDOM_SEED)
        self.example_names: set[str] = set()  # every named example of a chosen response

    def routes(self) -> list[MockRoute]:
        ops = _operations(self.doc)
        replaced = self._match_overrides(ops)
        chosen = [self._response(op) for op in ops]  # first, so that an unknown example name fails early
        if self.examples not in EXAMPLE_MODES and self.examples not in self.example_names:
            known = sorted(self.example_names)
            raise self.doc.fail(
                f'examples="{self.examples}": no response has an example of that name'
                + did_you_mean(self.examples, [*EXAMPLE_MODES, *known]),
                "examples= is first, random, synthesize or an example name"
                + (f" ({', '.join(known[:12])})" if known else "; the document has no named examples"),
            )
        routes: list[MockRoute] = []
        for op, response in zip(ops, chosen, strict=True):
            pattern = self._pattern(op)
            check = self._check(op)
            override = replaced.get(op.name)
            if override is not None:
                routes.append(MockRoute(pattern, override, "overrides", check))
            else:
                routes.append(MockRoute(pattern, self._answer(op, *response), "openapi", check))
        return routes

    def _match_overrides(self, ops: list[_Operation]) -> dict[str, Answer]:
        by_key: dict[str, _Operation] = {}
        for op in ops:
            by_key[op.name] = op
            if op.operation_id is not None:
                by_key.setdefault(op.operation_id, op)
        out: dict[str, Answer] = {}
        for key, answer in self.overrides.items():
            found = by_key.get(key) or by_key.get(_normal_pattern(key))
            if found is None:
                known = [f"{o.name} ({o.operation_id})" if o.operation_id else o.name for o in ops]
                more = ", ..." if len(known) > 20 else ""
                raise self.doc.fail(
                    f'override "{key}" names no operation of the document' + did_you_mean(key, by_key),
                    'override keys are an operationId or "METHOD /path" as the document writes the path; '
                    f"the operations are: {', '.join(known[:20])}{more}",
                )
            out[found.name] = answer
        return out

    def _pattern(self, op: _Operation) -> RoutePattern:
        # A parameter inside a segment (/files/{name}.json) is a glob there; the route keeps the
        # document's spelling as its text, which is what events and overrides show.
        globbed = re.sub(r"\{[^{}/]*\}", "*", op.path)
        try:
            return replace(parse_route(f"{op.method} {globbed}"), text=op.name)
        except RouteError as exc:
            raise self.doc.fail(f'path "{op.path}" cannot be served: {exc}') from None

    # -- answers ---------------------------------------------------------------------------------

    def _response(self, op: _Operation) -> tuple[int, dict[Any, Any], str | None, dict[Any, Any]]:
        """(status, response, media type or None, media type object) of the success response."""
        responses = self.doc.mapping(op.node.get("responses"), f"{op.name}: responses")
        if not responses:
            return 200, {}, None, {}
        key, status = _pick_status(responses)
        response = self.doc.mapping(responses[key], f"{op.name}: response {key}")
        content = self.doc.mapping(response.get("content"), f"{op.name}: response {key} content")
        media_type = _pick_media(content)
        if media_type is None:
            return status, response, None, {}
        media = self.doc.mapping(content[media_type], f"{op.name}: response {key} {media_type}")
        self.example_names.update(self._named_examples(media, op))
        return status, response, media_type, media

    def _answer(
        self, op: _Operation, status: int, response: dict[Any, Any], media_type: str | None, media: dict[Any, Any]
    ) -> MockResponse:
        headers = self._headers(response)
        if media_type is None:
            return MockResponse(status, b"", headers)
        found, value = self._example(media, op)
        if not found:
            raise self.doc.fail(
                f"{op.name} has no example for its {status} response ({media_type})",
                f'add an example to the document, give examples="synthesize" to build one from the schema, '
                f'or answer it yourself: overrides={{"{op.name}": json_response(...)}}',
            )
        body, content_type = self._encode(op, media_type, value)
        return MockResponse(status, body, (("content-type", content_type), *headers))

    def _named_examples(self, media: dict[Any, Any], op: _Operation) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, raw in self.doc.mapping(media.get("examples"), f"{op.name}: examples").items():
            example = self.doc.deref(raw)
            if isinstance(example, dict) and "value" in example:  # externalValue only: nothing to serve
                out[str(name)] = example["value"]
        return out

    def _example(self, media: dict[Any, Any], op: _Operation) -> tuple[bool, Any]:
        named = self._named_examples(media, op)
        if self.examples == "random" and named:
            return True, named[self.rng.choice(sorted(named))]
        if self.examples in named:
            return True, named[self.examples]
        if "example" in media:
            return True, media["example"]
        if named:
            return True, next(iter(named.values()))  # the first the document writes
        schema = self.doc.deref(media.get("schema"))
        if isinstance(schema, dict):
            if "example" in schema:
                return True, schema["example"]
            listed = schema.get("examples")
            if isinstance(listed, list) and listed:
                return True, listed[0]
        if self.examples == "synthesize":
            return True, _Synthesizer(self.doc).value(media.get("schema"))
        return False, None

    def _encode(self, op: _Operation, media_type: str, value: Any) -> tuple[bytes, str]:
        base = _base(media_type)
        if "*" in base:  # a wildcard (*/*) is no content type to answer with
            media_type = base = "text/plain; charset=utf-8" if isinstance(value, str) else "application/json"
        if isinstance(value, str) and not _is_json(base):
            return value.encode(), media_type
        if isinstance(value, bytes) and not _is_json(base):
            return value, media_type
        # JSON media types, and a structured example of any other type (its JSON text is the best
        # rendering there is).
        try:
            return json_body(value), media_type
        except (TypeError, ValueError) as exc:
            raise self.doc.fail(f"{op.name}: the example is not JSON ({exc})") from None

    def _headers(self, response: dict[Any, Any]) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        for name, raw in self.doc.mapping(response.get("headers"), "response headers").items():
            header = self.doc.deref(raw)
            if not isinstance(name, str) or name.lower() == "content-type" or not isinstance(header, dict):
                continue
            schema = self.doc.deref(header.get("schema"))
            if "example" in header:
                value = header["example"]
            elif isinstance(schema, dict) and "example" in schema:
                value = schema["example"]
            else:
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if "\r" not in text and "\n" not in text:
                out.append((name, text))
        return tuple(out)

    # -- request checks --------------------------------------------------------------------------

    def _check(self, op: _Operation) -> RequestCheck:
        query: list[str] = []
        headers: list[str] = []
        for param in op.params:
            name = param.get("name")
            if not isinstance(name, str) or param.get("required") is not True:
                continue
            if param.get("in") == "query":
                query.append(name)
            elif param.get("in") == "header" and name.lower() not in _IGNORED_HEADERS:
                headers.append(name.lower())
        body = self.doc.mapping(op.node.get("requestBody"), f"{op.name}: requestBody")
        content = self.doc.mapping(body.get("content"), f"{op.name}: requestBody content")
        media_types = tuple(str(k) for k in content)
        json_type = next(
            (m for m in sorted(media_types, key=lambda m: _base(m) != "application/json") if _is_json(m)), None
        )
        schema: dict[str, Any] | None = None
        if json_type is not None:
            media = self.doc.mapping(content[json_type], f"{op.name}: requestBody {json_type}")
            if media.get("schema") is not None:
                schema = self._json_schema(op, media["schema"])
        return RequestCheck(
            operation=op.name,
            required_query=tuple(query),
            required_headers=tuple(headers),
            body_required=body.get("required") is True,
            body_schema=schema or None,
            media_types=media_types,
        )

    def _json_schema(self, op: _Operation, node: Any) -> dict[str, Any]:
        converter = _SchemaConverter(self.doc)
        converted = converter.convert(node)
        schema: dict[str, Any] = converted if isinstance(converted, dict) else ({} if converted else {"not": {}})
        if converter.defs:
            schema = {**schema, "$defs": {**schema.get("$defs", {}), **converter.defs}}
        try:
            Draft202012Validator.check_schema(schema, format_checker=None)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise self.doc.fail(
                f"{op.name}: the request body schema is not valid JSON Schema{f' (at {where})' if where else ''}: "
                f"{exc.message}",
                "fix the schema in the document",
            ) from None
        return schema


def _normal_pattern(key: str) -> str:
    method, _, path = key.strip().partition(" ")
    return f"{method.upper()} {path.strip()}"


def _pick_status(responses: dict[Any, Any]) -> tuple[Any, int]:
    """(the response's key, its status): the first of 200..204 and default, else the lowest 2xx,
    else the first final response the document lists."""
    keys = {str(k).upper(): k for k in responses}
    for code in _PREFERRED_STATUS:
        if code.upper() in keys:
            return keys[code.upper()], 200 if code == "default" else int(code)
    success = sorted(int(k) for k in keys if k.isdigit() and 200 <= int(k) <= 299)
    if success:
        return keys[str(success[0])], success[0]
    if "2XX" in keys:
        return keys["2XX"], 200
    # No success answer: the first final one the document lists (a mock gives final answers only).
    for key in responses:
        text = str(key).upper()
        if text.isdigit() and 200 <= int(text) <= 599:
            return key, int(text)
        if len(text) == 3 and text[0] in "2345" and text[1:] == "XX":
            return key, int(text[0]) * 100
    return next(iter(responses)), 200


def _base(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    base = _base(media_type)
    return base == "application/json" or base.endswith("+json")


def _pick_media(content: dict[Any, Any]) -> str | None:
    """application/json, else the first JSON type, else the first type, in the document's order."""
    keys = [str(k) for k in content]
    if not keys:
        return None
    if "application/json" in keys:
        return "application/json"
    return next((k for k in keys if _is_json(k)), keys[0])


# -- schemas -----------------------------------------------------------------------------------


class _SchemaConverter:
    """An OpenAPI request body schema as a plain JSON Schema 2020-12 dict, local refs inlined.

    A schema that refers to itself (a tree) cannot be inlined: the converter puts it in `defs`,
    to be placed under `$defs` of the root, and refers to it there.
    """

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.defs: dict[str, Any] = {}
        self._stack: list[str] = []
        self._names: dict[str, str] = {}  # ref -> its name under $defs, for refs met recursively

    def convert(self, node: Any) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            return {}
        if "$ref" in node:
            return self._ref(node)
        out: dict[str, Any] = {}
        for key, value in node.items():
            key = str(key)
            if key in _DROPPED or key.startswith("x-"):
                continue
            if key == "items" and isinstance(value, list):
                out["prefixItems"] = [self.convert(v) for v in value]
            elif key in _SUBSCHEMA:
                out[key] = self.convert(value)
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.convert(v) for v in value]
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                out[key] = {str(k): self.convert(v) for k, v in value.items()}
            elif key == "required" and not isinstance(value, list):
                continue  # `required: true` on a property belongs to parameters, not schemas
            else:
                out[key] = _plain(value)
        if out.get("type") == "file":  # OpenAPI 2 leftover: an upload, a string of bytes
            out["type"] = "string"
        for bound in ("Minimum", "Maximum"):
            flag = out.get(f"exclusive{bound}")
            if isinstance(flag, bool):  # OpenAPI 3.0 (draft 4): a flag on minimum / maximum
                del out[f"exclusive{bound}"]
                limit = bound.lower()
                if flag and limit in out:
                    out[f"exclusive{bound}"] = out.pop(limit)
        out = self._without_read_only(out)
        if node.get("nullable") is True:
            out = _nullable(out)
        return out

    def _ref(self, node: dict[Any, Any]) -> Any:
        ref = node["$ref"]
        if ref in self._stack:
            return {"$ref": f"#/$defs/{self._name(ref)}"}
        target = self.doc.deref(node)
        self._stack.append(ref)
        try:
            out = self.convert(target)
        finally:
            self._stack.pop()
        name = self._names.get(ref)
        if name is None:
            return out
        self.defs.setdefault(name, out)
        return {"$ref": f"#/$defs/{name}"}

    def _name(self, ref: str) -> str:
        name = self._names.get(ref)
        if name is None:
            base = re.sub(r"[^A-Za-z0-9_.-]", "_", ref.rsplit("/", 1)[-1]) or "schema"
            name, n = base, 1
            while name in self._names.values():
                n += 1
                name = f"{base}_{n}"
            self._names[ref] = name
        return name

    @staticmethod
    def _without_read_only(out: dict[str, Any]) -> dict[str, Any]:
        # A required readOnly property is required in responses only: a client does not send it.
        required, props = out.get("required"), out.get("properties")
        if isinstance(required, list) and isinstance(props, dict):
            kept = [r for r in required if not (isinstance(props.get(r), dict) and props[r].get("readOnly") is True)]
            if len(kept) != len(required):
                out["required"] = kept
        return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    enum = schema.get("enum")
    if isinstance(enum, list) and None not in enum:
        schema["enum"] = [*enum, None]
    return schema


def _plain(value: Any) -> Any:
    """A deep copy of YAML data as plain lists and str-keyed dicts (it is pickled to the worker)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Synthesizer:
    """The smallest type-correct value a schema admits, for examples="synthesize"."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc

    def value(self, node: Any, depth: int = 0, refs: tuple[str, ...] = ()) -> Any:
        if depth > _MAX_DEPTH:
            return None
        if isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in refs:  # a recursive schema: stop at the first repeat
                return None
            return self.value(self.doc.deref(node), depth + 1, (*refs, ref))
        if not isinstance(node, dict):
            return None
        for key in ("example", "default", "const"):
            if key in node:
                return _plain(node[key])
        for key in ("examples", "enum"):
            listed = node.get(key)
            if isinstance(listed, list) and listed:
                return _plain(listed[0])
        if isinstance(node.get("allOf"), list):
            return self._all_of(node, depth, refs)
        for key in ("oneOf", "anyOf"):
            options = node.get(key)
            if isinstance(options, list) and options:
                return self.value(options[0], depth + 1, refs)
        kind = node.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in node else "array" if "items" in node else None
        if kind == "object":
            props = node.get("properties")
            props = props if isinstance(props, dict) else {}
            required = node.get("required")
            names = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
            return {name: self.value(props.get(name, {}), depth + 1, refs) for name in names}
        if kind == "array":
            count = node.get("minItems")
            count = count if isinstance(count, int) and count > 0 else 0
            return [self.value(node.get("items", {}), depth + 1, refs) for _ in range(count)]
        if kind == "string":
            return _string(node)
        if kind in ("integer", "number"):
            return _number(node, kind == "integer")
        if kind == "boolean":
            return False
        return None

    def _all_of(self, node: dict[Any, Any], depth: int, refs: tuple[str, ...]) -> Any:
        parts = [self.value(part, depth + 1, refs) for part in node["allOf"]]
        rest = {k: v for k, v in node.items() if k != "allOf"}
        if "properties" in rest or "type" in rest:
            parts.append(self.value(rest, depth + 1, refs))
        if parts and all(isinstance(p, dict) for p in parts):
            merged: dict[str, Any] = {}
            for part in parts:
                merged.update(part)
            return merged
        return next((p for p in parts if p is not None), None)


def _string(node: dict[Any, Any]) -> str:
    fmt = node.get("format")
    text = _FORMATS.get(fmt, "string") if isinstance(fmt, str) else "string"
    low, high = node.get("minLength"), node.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high >= 0:
        text = text[:high]
    return text


def _number(node: dict[Any, Any], integer: bool) -> int | float:
    def num(key: str) -> float | None:
        value = node.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    # (limit, strict) from OpenAPI 3.0 (minimum + exclusiveMinimum: true) or 3.1 (exclusiveMinimum: n)
    low = (num("minimum"), node.get("exclusiveMinimum") is True)
    if num("exclusiveMinimum") is not None:
        low = (num("exclusiveMinimum"), True)
    high = (num("maximum"), node.get("exclusiveMaximum") is True)
    if num("exclusiveMaximum") is not None:
        high = (num("exclusiveMaximum"), True)
    value: float = 0
    limit, strict = low
    if limit is not None and (value < limit or (strict and value <= limit)):
        up = math.floor(limit) + 1 if strict else math.ceil(limit)
        value = up if integer else limit + 1 if strict else limit
    limit, strict = high
    if limit is not None and (value > limit or (strict and value >= limit)):
        down = math.ceil(limit) - 1 if strict else math.floor(limit)
        value = down if integer else limit - 1 if strict else limit
    return int(value) if integer or float(value).is_integer() else value
