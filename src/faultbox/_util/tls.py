"""One TLS client context for the process: building one loads the system's CA certificates, which
costs tens of milliseconds of CPU, and every HTTP client would otherwise build its own (a readiness
probe polling every few milliseconds built one per attempt)."""

from __future__ import annotations

import functools
import ssl


@functools.cache
def client_context() -> ssl.SSLContext:
    try:  # the CA bundle httpx itself would use, where the machine has none of its own
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()
