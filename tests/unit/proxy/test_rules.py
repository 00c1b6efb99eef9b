"""How protocol rules match and decide, without a proxy: globs, keyless requests, SQL, streams."""

from __future__ import annotations

from faultbox.model.proxy import ProxyAction, ProxyFault, ProxyRule
from faultbox.proxy.rules import Installed, RuleBook, canonical_sql, matches


def _f(action: ProxyAction = ProxyAction.ERROR, probability: float = 1.0, delay: float = 0.0, **m: str) -> ProxyFault:
    return ProxyFault(action, tuple(m.items()), probability, delay=delay)


def _book(*faults: ProxyFault, seed: int = 1) -> RuleBook:
    book = RuleBook(seed)
    book.set([Installed(i, ProxyRule("s", "main", "http", f), f"k/{i}") for i, f in enumerate(faults)])
    return book


def test_path_globs_stay_in_a_segment_and_double_star_crosses() -> None:
    one, deep = _f(path="/api/*"), _f(path="/api/**")
    assert matches(one, {"path": "/api/orders"})
    assert not matches(one, {"path": "/api/v1/orders"})
    assert matches(deep, {"path": "/api/v1/orders/7"})
    assert matches(one, {"path": "/api/orders?id=7"}), "the query string is not part of the path"


def test_a_request_without_the_field_never_matches_it() -> None:
    catch_all = _f(key="*")
    assert not matches(catch_all, {"command": "HELLO"})
    assert not matches(catch_all, {"command": "PING", "key": None})
    assert matches(catch_all, {"command": "GET", "key": ""}), "an empty key is still a key"
    assert matches(_f(topic="*"), {"topic": "orders"})


def test_methods_and_commands_ignore_case() -> None:
    assert matches(_f(method="post"), {"method": "POST"})
    assert matches(_f(command="set"), {"command": "SET"})
    assert not matches(_f(method="GET"), {"method": "POST"})


def test_sql_is_compared_without_case_whitespace_or_placeholder_style() -> None:
    rule = _f(query="INSERT INTO orders (id) VALUES (?)*")
    assert matches(rule, {"query": "insert  into orders (id)\n values ($1) returning id"})
    assert not matches(rule, {"query": "INSERT INTO order_items (id) VALUES ($1)"})
    assert canonical_sql("  SELECT 1 ;  ") == "SELECT 1"
    assert matches(_f(query="SELECT * FROM t WHERE id = $?"), {"query": "select * from t where id = $7"})


def test_delays_add_up_and_the_first_terminal_rule_decides() -> None:
    book = _book(
        _f(ProxyAction.DELAY, delay=0.1, path="/**"),
        _f(ProxyAction.ERROR, delay=0.2, path="/pay"),
        _f(ProxyAction.DROP, path="/pay"),
    )
    verdict = book.decide({"path": "/pay"})
    assert verdict is not None and verdict.action is ProxyAction.ERROR
    assert abs(verdict.delay - 0.3) < 1e-9
    only_delay = book.decide({"path": "/other"})
    assert only_delay is not None and only_delay.rule is None and only_delay.delay == 0.1
    assert book.decide({"method": "GET"}) is None


def test_duplicate_applies_to_produce_only() -> None:
    book = _book(_f(ProxyAction.DUPLICATE, topic="orders"))
    assert book.decide({"method": "fetch", "topic": "orders"}) is None
    verdict = book.decide({"method": "produce", "topic": "orders"})
    assert verdict is not None and verdict.action is ProxyAction.DUPLICATE


def test_probability_streams_replay_by_seed_and_rule() -> None:
    def draws(seed: int) -> list[bool]:
        book = _book(_f(probability=0.5, path="/**"), seed=seed)
        return [book.decide({"path": "/x"}) is not None for _ in range(64)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    assert 16 < sum(draws(3)) < 48


def test_set_keeps_counters_of_kept_rules_and_reports_removed_ones() -> None:
    book = RuleBook(1)
    a = Installed(1, ProxyRule("s", "main", "http", _f(path="/a")), "a")
    b = Installed(2, ProxyRule("s", "main", "http", _f(path="/b")), "b")
    assert book.set([a, b]) == {}
    book.decide({"path": "/a"})
    book.decide({"path": "/b"})
    book.decide({"path": "/b"})
    assert book.set([a]) == {2: (2, 2, 0)}
    assert book.set([]) == {1: (1, 1, 0)}
    assert not book.active


def test_times_limits_how_often_a_rule_fires() -> None:
    book = RuleBook(1)
    once = ProxyFault(ProxyAction.ERROR, (("path", "/x"),), times=1)
    book.set([Installed(1, ProxyRule("s", "main", "http", once), "k")])
    assert book.decide({"path": "/x"}) is not None
    assert book.decide({"path": "/x"}) is None, "a transient failure passes"
    assert book.set([]) == {1: (2, 1, 0)}
    assert once.describe() == "error(path=/x, times=1)"
