"""HTTP steps over httpx: get/post/put/delete/patch."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from faultbox._util.frozen import FrozenDict, thaw
from faultbox._util.tls import client_context
from faultbox.model.response import Response, decode_body

_MAX_BODY = 1 << 20


class HttpClient:
    def __init__(self, host: str, port: int) -> None:
        self.base = f"http://{host}:{port}"
        # No pooling across steps: each step opens its own connection, like a fresh client would,
        # so a fault on connect or accept is seen by every step.
        self._client = httpx.Client(
            follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0), verify=client_context()
        )

    def call(self, method: str, args: Mapping[str, Any]) -> Response:
        path = args.get("path") or "/"
        if not path.startswith("/"):
            path = "/" + path
        headers = dict(args.get("headers") or {})
        body = args.get("body")
        content: bytes | None = None
        if isinstance(body, (dict, list)):
            content = json.dumps(thaw(body)).encode()
            headers.setdefault("content-type", "application/json")
        elif isinstance(body, str):
            content = body.encode()
        elif body is not None:
            content = str(body).encode()
        start = time.monotonic()
        try:
            resp = self._client.request(
                method.upper(), self.base + path, content=content, headers=headers, timeout=args.get("timeout", 30.0)
            )
            text = resp.content[:_MAX_BODY].decode(resp.encoding or "utf-8", "replace")
        except httpx.TimeoutException as exc:
            return _failed(f"timeout: {exc or 'no response'}", start)
        except httpx.HTTPError as exc:
            return _failed(f"{type(exc).__name__}: {exc}", start)
        return Response(
            status=resp.status_code,
            body=text,
            data=decode_body(text),
            ok=True,
            duration_ms=_ms(start),
            headers=FrozenDict((k.lower(), v) for k, v in resp.headers.items()),
        )

    def close(self) -> None:
        self._client.close()


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _failed(error: str, start: float) -> Response:
    return Response(status=0, ok=False, error=error, duration_ms=_ms(start))
