"""Fixtures for the integration tests that start real servers themselves (deps/, proxy/): a
workdir the postgres OS user can reach, and `serve(plan)`, which starts a real server from a
ServerPlan and stops it at teardown, checking that none of its processes is left behind."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "deps"))
from depserver import Server

from faultbox.deps import ServerPlan


@pytest.fixture
def workdir() -> Iterator[str]:
    # Under /tmp, not pytest's tmp_path: /tmp/pytest-of-root is 0700, which the postgres OS user
    # cannot traverse (prepare() refuses such a workdir, with a message saying so).
    path = tempfile.mkdtemp(prefix="fb-deps-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve() -> Iterator[Callable[[ServerPlan], Server]]:
    """serve(plan) -> a started Server, stopped (and checked for leftovers) at teardown."""
    servers: list[Server] = []

    def start(plan: ServerPlan) -> Server:
        server = Server(plan)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
