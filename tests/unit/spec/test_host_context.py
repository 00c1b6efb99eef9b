"""The running test's host is per context, not per process: two tests on threads of their own each
see their own, a thread a test starts (ContextThread) sees its creator's, and spec code called on a
thread shared by tests (a log's listeners, a mock's handler, a LastingThread's job) sees the host of
the test it runs for."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from faultbox._util.dag import run_in_order
from faultbox._util.threads import ContextThread, LastingThread
from faultbox.model.event import Event
from faultbox.model.mock import Dynamic, MockConfig, MockResponse, MockRoute, parse_route
from faultbox.model.service import Interface, Service
from faultbox.runner.mocks import MockHandlers
from faultbox.runner.parallel import run_branches
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError
from faultbox.trace.log import TraceLog


class _Host:
    def __init__(self, name: str) -> None:
        self.test_name = name

    def __repr__(self) -> str:
        return f"<host {self.test_name}>"


def _host(name: str) -> host_mod.Host:
    return cast(host_mod.Host, _Host(name))


def _in_thread(fn: Any, *, plain: bool = True) -> Any:
    """fn() on a new thread (plain, or a ContextThread made here); its result."""
    out: list[Any] = []
    cls = threading.Thread if plain else ContextThread
    t = cls(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    return out[0]


def test_outside_a_test_there_is_no_host_and_require_says_so() -> None:
    assert host_mod.current() is None
    with pytest.raises(ArgError, match=r"halt\(\) can only run inside a test"):
        host_mod.require("halt()")


def test_set_current_returns_a_token_that_puts_back_what_was_current() -> None:
    a, b = _host("a"), _host("b")
    outer = host_mod.set_current(a)
    try:
        inner = host_mod.set_current(b)
        assert host_mod.require("x") is b
        host_mod.reset(inner)
        assert host_mod.current() is a
    finally:
        host_mod.reset(outer)
    assert host_mod.current() is None


def test_two_threads_running_at_once_each_see_their_own_host() -> None:
    both_set = threading.Barrier(2, timeout=10)
    seen: dict[str, Any] = {}

    def test(name: str) -> None:
        with host_mod.using(_host(name)):
            both_set.wait()  # the other thread has made its own host current meanwhile
            seen[name] = host_mod.require("step").test_name
            both_set.wait()
        seen[name + " after"] = host_mod.current()

    threads = [threading.Thread(target=test, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"one": "one", "two": "two", "one after": None, "two after": None}
    assert host_mod.current() is None  # nor did either leak into this thread


def test_a_context_thread_sees_its_creators_host_where_a_plain_thread_sees_none() -> None:
    h = _host("t")
    with host_mod.using(h):
        assert _in_thread(host_mod.current, plain=False) is h
        assert _in_thread(host_mod.current, plain=True) is None  # why the runner needs ContextThread
        made_inside = ContextThread(target=lambda: seen.append(host_mod.current()))
    seen: list[Any] = []
    made_inside.start()  # started after the block: the context is its creator's at creation
    made_inside.join(10)
    assert seen == [h]


def test_parallel_branches_and_concurrent_starts_see_the_callers_host() -> None:
    h = _host("t")
    started: list[Any] = []
    with host_mod.using(h):
        branches = run_branches([host_mod.current, host_mod.current])
        run_in_order(["db", "api"], {"api": ["db"]}, lambda name: started.append(host_mod.current()), threading.Event())
    assert branches == [h, h]
    assert started == [h, h]


def test_a_lasting_threads_jobs_run_in_each_callers_context() -> None:
    lasting = LastingThread("test-lasting")
    a, b = _host("a"), _host("b")
    with host_mod.using(a):
        assert lasting.call(host_mod.current) is a
    with host_mod.using(b):
        assert lasting.call(host_mod.current) is b
    assert lasting.call(host_mod.current) is None


def test_listeners_on_a_shared_thread_see_the_host_of_the_log_they_listen_to() -> None:
    # One plain thread appends to the logs of two tests, as the I/O pump or the proxy reader does.
    a, b = _host("a"), _host("b")
    logs = {"a": TraceLog(lambda: host_mod.using(a)), "b": TraceLog(lambda: host_mod.using(b))}
    seen: list[tuple[str, str]] = []
    for name, log in logs.items():
        log.subscribe(lambda ev, name=name: seen.append((name, host_mod.require("monitor").test_name)))

    def pump() -> Any:
        for name in ("a", "b", "a"):
            logs[name].append(Event("stdout", "svc", {}))
            with logs[name].as_listener():  # a temporal predicate evaluated outside an append
                seen.append((name + " as listener", host_mod.require("predicate").test_name))
        return host_mod.current()

    assert _in_thread(pump) is None  # put back after each dispatch
    assert seen == [
        ("a", "a"),
        ("a as listener", "a"),
        ("b", "b"),
        ("b as listener", "b"),
        ("a", "a"),
        ("a as listener", "a"),
    ]


def test_a_mock_handler_on_a_proxy_thread_sees_its_tests_host() -> None:
    h = _host("t")

    def fn(req: Any) -> MockResponse:
        return MockResponse(200, host_mod.require("dynamic handler").test_name.encode())

    route = MockRoute(parse_route("GET /x"), Dynamic(7, "handler", "spec.star:3", fn))
    svc = Service("pay", (), (Interface("main", "http", 1),), mocks={"main": MockConfig("http", (route,))})
    handle = MockHandlers(lambda: host_mod.using(h)).for_service(svc)  # as TestHost gives it
    assert _in_thread(lambda: handle(7, {})) == ("ok", MockResponse(200, b"t"))
