"""A proxy hub shared by the proxy unit tests of a module (mocks are served on it too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faultbox.proxy.hub import ProxyHub


@pytest.fixture(scope="module")
def hub() -> Iterator[ProxyHub]:
    h = ProxyHub()
    yield h
    h.close()
