"""The runner's side of dynamic mock answers: results, failures, and handlers that never return."""

from __future__ import annotations

import threading
import time
from typing import Any

from faultbox.model.mock import Dynamic, MockConfig, MockResponse, MockRoute, parse_route
from faultbox.model.service import Interface, Service
from faultbox.runner.mocks import MockHandlers


def _service(fn: Any) -> Service:
    route = MockRoute(parse_route("POST /x"), Dynamic(7, "handler", "spec.star:3", fn))
    return Service("pay", (), (Interface("main", "http", 1),), mocks={"main": MockConfig("http", (route,))})


def test_a_response_is_the_answer_and_the_request_is_frozen() -> None:
    seen: list[Any] = []

    def fn(req: Any) -> MockResponse:
        seen.append(req)
        return MockResponse(201, b"{}")

    handle = MockHandlers().for_service(_service(fn))
    assert handle(7, {"method": "POST", "headers": {"a": "b"}}) == ("ok", MockResponse(201, b"{}"))
    try:
        seen[0]["method"] = "GET"
    except Exception:
        pass
    assert seen[0]["method"] == "POST"


def test_a_failure_is_remembered_once_with_its_location() -> None:
    handlers = MockHandlers()
    handle = handlers.for_service(_service(lambda req: {"not": "a response"}))
    kind, message = handle(7, {})
    assert kind == "error" and "returned dict, not a response" in message
    assert handlers.failure is not None and handlers.failure.location == "spec.star:3"
    handle(7, {})
    assert "returned dict" in handlers.failure.message


def test_a_handler_that_never_returns_is_interrupted() -> None:
    def spin(req: Any) -> None:
        while True:
            pass

    handlers = MockHandlers(timeout=0.2)
    started = time.monotonic()
    kind, message = handlers.for_service(_service(spin))(7, {})
    assert kind == "error" and "did not return within 0.2s" in message
    assert time.monotonic() - started < 5
    assert handlers.failure is not None


def test_stop_interrupts_running_handlers_and_refuses_new_calls() -> None:
    running = threading.Event()

    def spin(req: Any) -> None:
        running.set()
        while True:
            pass

    handlers = MockHandlers(timeout=60)
    handle = handlers.for_service(_service(spin))
    outcome: list[tuple[str, Any]] = []
    thread = threading.Thread(target=lambda: outcome.append(handle(7, {})))
    thread.start()
    assert running.wait(10)
    handlers.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome[0][0] == "error" and "still ran when the test ended" in outcome[0][1]
    assert handlers.failure is None  # the test is over: a handler stopped by its end does not fail it
    assert handle(7, {})[0] == "error"
