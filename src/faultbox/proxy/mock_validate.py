"""Checking a request against what its OpenAPI operation requires (a route's RequestCheck).

Runs on the proxy worker's event loop for every request to a validating mock, so it is quick and
never raises: a schema that cannot be evaluated lets the request through rather than failing it.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

from faultbox.model.mock import MockRoute, RequestCheck
from faultbox.proxy.mock import MockRequest

_MESSAGE = 300  # characters of a schema error kept (it may quote the whole body)
_CACHED = 1024  # compiled validators kept; a mock has one per operation

# id(check) -> (check, validator): holding the check keeps its id from being reused by another.
_validators: dict[int, tuple[RequestCheck, Any]] = {}


def validate(route: MockRoute, request: MockRequest) -> str | None:
    """None when the request satisfies the route's check, else what is wrong with it."""
    check = route.check
    if check is None:
        return None
    if check.required_query:
        query = request.query_dict()
        for name in check.required_query:
            if name not in query:
                return f"missing required query parameter `{name}`"
    for name in check.required_headers:
        if request.header(name) is None:
            return f"missing required header `{name}`"
    if not request.body:
        return "missing request body" if check.body_required else None
    if not check.media_types:
        return None  # the operation declares no body; one sent anyway is not checked
    content_type = request.header("content-type")
    expected = ", ".join(check.media_types)
    if content_type is None:
        return f"the request has a body but no content-type (expected {expected})"
    media = _accepted(content_type, check.media_types)
    if media is None:
        return f"content-type `{content_type}` is not accepted (expected {expected})"
    if check.body_schema is None or not _is_json(content_type):
        return None
    try:
        value = json.loads(request.body)
    except UnicodeDecodeError:
        return "body is not JSON: it is not UTF-8 text"
    except ValueError as exc:
        return f"body is not JSON: {exc}"
    except RecursionError:
        return "body is not JSON: it nests too deeply"
    try:
        error = best_match(_validator(check).iter_errors(value))
    except Exception:  # a schema the validator cannot evaluate: no verdict
        return None
    if error is None:
        return None
    message = error.message if len(error.message) <= _MESSAGE else error.message[: _MESSAGE - 3] + "..."
    return f"{_json_path(error.absolute_path)}: {message}"


def _validator(check: RequestCheck) -> Any:
    entry = _validators.get(id(check))
    if entry is not None and entry[0] is check:
        return entry[1]
    if len(_validators) >= _CACHED:
        _validators.clear()
    # Formats are not checked: OpenAPI formats (int64, byte, ...) are mostly not JSON Schema's.
    compiled = Draft202012Validator(check.body_schema)
    _validators[id(check)] = (check, compiled)
    return compiled


def _base(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    base = _base(media_type)
    return base == "application/json" or base.endswith("+json")


def _accepted(content_type: str, media_types: tuple[str, ...]) -> str | None:
    """The declared media type (maybe a range: text/*, */*) that `content_type` falls in."""
    base = _base(content_type)
    kind = base.split("/", 1)[0]
    for media in media_types:
        declared = _base(media)
        if declared in (base, "*/*", f"{kind}/*"):
            return media
    return None


def _json_path(path: deque[Any]) -> str:
    out = "body"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out
