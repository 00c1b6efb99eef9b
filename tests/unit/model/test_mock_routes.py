"""Route patterns of mocks: what parses, what matches, and which route wins."""

from __future__ import annotations

import pytest

from faultbox.model.event import Event
from faultbox.model.filter import Filter
from faultbox.model.mock import MockResponse, MockRoute, RouteError, find_route, order_routes, parse_route


def _routes(*patterns: str) -> tuple[MockRoute, ...]:
    return order_routes(MockRoute(parse_route(p), MockResponse(200, p.encode())) for p in patterns)


def _winner(routes: tuple[MockRoute, ...], method: str, path: str) -> str | None:
    found = find_route(routes, method, path)
    return found.pattern.text if found is not None else None


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/health", "needs a method and a path"),
        ("GET", "needs a method and a path"),
        ("get /x", "upper case"),
        ("GET x", 'must start with "/"'),
        ("GET /x?y=1", "path only"),
        ("GET /a/b**", "whole segment"),
    ],
)
def test_bad_patterns_say_what_to_write(pattern: str, problem: str) -> None:
    with pytest.raises(RouteError, match=problem.replace("?", r"\?")):
        parse_route(pattern)


def test_segments_and_globs() -> None:
    routes = _routes("GET /v1/charges/*", "* /files/**", "GET /orders/ord-*", "POST /a/**/z")
    assert _winner(routes, "GET", "/v1/charges/ch_1") == "GET /v1/charges/*"
    assert _winner(routes, "GET", "/v1/charges/ch_1/refunds") is None  # * is one segment
    assert _winner(routes, "GET", "/v1/charges") is None
    assert _winner(routes, "DELETE", "/files") == "* /files/**"  # ** matches no segment too
    assert _winner(routes, "PUT", "/files/a/b/c") == "* /files/**"
    assert _winner(routes, "GET", "/orders/ord-7") == "GET /orders/ord-*"
    assert _winner(routes, "GET", "/orders/x-7") is None
    assert _winner(routes, "POST", "/a/z") == "POST /a/**/z"
    assert _winner(routes, "POST", "/a/b/c/z") == "POST /a/**/z"
    assert _winner(routes, "POST", "/a/b/c/y") is None
    assert _winner(routes, "GET", "/v1/charges/ch_1?expand=x") == "GET /v1/charges/*"  # the query is not the path


def test_openapi_templates_are_one_segment() -> None:
    routes = _routes("GET /v1/charges/{id}")
    assert _winner(routes, "GET", "/v1/charges/ch_9") == "GET /v1/charges/{id}"
    assert _winner(routes, "GET", "/v1/charges/ch_9/x") is None


def test_the_most_specific_route_wins_whatever_the_order() -> None:
    written = ["* /**", "GET /v1/**", "GET /v1/orders/*", "* /v1/orders/special", "GET /v1/orders/special"]
    for patterns in (written, list(reversed(written))):
        routes = _routes(*patterns)
        assert _winner(routes, "GET", "/v1/orders/special") == "GET /v1/orders/special"  # a method beats *
        assert _winner(routes, "POST", "/v1/orders/special") == "* /v1/orders/special"
        assert _winner(routes, "GET", "/v1/orders/o1") == "GET /v1/orders/*"  # a literal prefix beats **
        assert _winner(routes, "GET", "/v1/x/y") == "GET /v1/**"
        assert _winner(routes, "DELETE", "/anything") == "* /**"


def test_a_literal_beats_a_partial_glob_which_beats_a_star() -> None:
    routes = _routes("GET /o/*", "GET /o/ord-*", "GET /o/ord-1")
    assert _winner(routes, "GET", "/o/ord-1") == "GET /o/ord-1"
    assert _winner(routes, "GET", "/o/ord-2") == "GET /o/ord-*"
    assert _winner(routes, "GET", "/o/x") == "GET /o/*"


def test_equal_routes_keep_their_written_order() -> None:
    routes = order_routes(
        [
            MockRoute(parse_route("GET /a"), MockResponse(200, b"first")),
            MockRoute(parse_route("GET /a"), MockResponse(200, b"second")),
        ]
    )
    found = find_route(routes, "GET", "/a")
    assert found is not None and found.answer == MockResponse(200, b"first")


def test_the_reference_spelling_of_mock_event_types_filters_mock_events() -> None:
    ev = Event("mock", "pay", {"op": "POST /v1/charges", "status": "201"})
    assert Filter.of({"type": "mock.POST /v1/charges"}).match(ev)
    assert Filter.of({"type": "mock.POST *"}).match(ev)
    assert Filter.of({"type": "mock"}).match(ev)
    assert not Filter.of({"type": "mock.GET /v1/charges"}).match(ev)
    assert Filter.of({"type": "mock.POST /v1/charges"}).exact() == {"type": "mock", "op": "POST /v1/charges"}


def test_a_pattern_that_ends_beats_one_going_on_with_double_star() -> None:
    routes = _routes("GET /a/**", "GET /a", "GET /v1/*/**", "GET /v1/*")
    assert _winner(routes, "GET", "/a") == "GET /a"
    assert _winner(routes, "GET", "/a/b") == "GET /a/**"
    assert _winner(routes, "GET", "/v1/b") == "GET /v1/*"
    assert _winner(routes, "GET", "/v1/b/c") == "GET /v1/*/**"


def test_a_star_is_not_an_empty_segment() -> None:
    routes = _routes("GET /v1/charges/*")
    assert _winner(routes, "GET", "/v1/charges/") is None
