"""service(reuse=True, reset=fn): a server kept from one test to the next, its reset checked against
what a fresh start's seed made."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from faultbox.errors import SpecError
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import assert_passed, descendants_alive, find_test, free_port, run_spec_text


def _started(test) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return [e.fields for e in test.events if e.type == "service_started"]


PG = """
load("@faultbox/services.star", "postgres")

def schema():
    db.main.exec(sql = "CREATE TABLE orders (id serial PRIMARY KEY, sku text, at timestamptz DEFAULT now())")
    db.main.exec(sql = "INSERT INTO orders (sku) VALUES ('seeded')")

def reset():
    db.main.exec(sql = "{reset}")
    db.main.exec(sql = "INSERT INTO orders (sku) VALUES ('seeded')")

db = postgres("db", seed = schema, reset = reset, reuse = True)

def one_order(sku):
    assert_true(db.main.exec(sql = "INSERT INTO orders (sku) VALUES ('" + sku + "')").ok)
    rows = db.main.query(sql = "SELECT id, sku FROM orders ORDER BY id").data
    assert_eq([r["sku"] for r in rows], ["seeded", sku])

def test_a():
    one_order("a")

def test_b():
    one_order("b")

def test_c():
    one_order("c")
"""


def test_a_kept_postgres_serves_every_test_after_its_reset(tmp_path: Path) -> None:
    result = run_spec_text(tmp_path, PG.replace("{reset}", "TRUNCATE orders RESTART IDENTITY"))
    for name in ("test_a", "test_b", "test_c"):
        assert_passed(find_test(result, name))
    first, *later = (_started(find_test(result, n))[0] for n in ("test_a", "test_b", "test_c"))
    assert "reused" not in first
    assert all(s["reused"] == "true" and s["pid"] == first["pid"] for s in later), later
    b = find_test(result, "test_b")
    assert [e.fields["leaked"] for e in b.events if e.type == "service_reset"] == ["0"]
    assert not [e for e in b.events if e.type == "service_exited"], "a kept server is not stopped"
    # the kept server's row changes still reach each test's trace, and only that test's
    wal = [e.fields.get("sku") for e in b.events if e.type == "wal" and e.fields.get("action") == "INSERT"]
    assert wal == ["seeded", "b"], wal  # its reset's row, then its own; none of test_a's
    assert not descendants_alive([int(first["pid"])]), "the run stops what it kept"


def test_workers_keep_their_own_servers(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(PG.replace("{reset}", "TRUNCATE orders RESTART IDENTITY"))
    result = run_spec(load_spec(str(spec)), RunOptions(seed=1, jobs=2))
    for name in ("test_a", "test_b", "test_c"):
        assert_passed(find_test(result, name))
    pids = {_started(t)[0]["pid"] for t in result.tests}
    assert len(pids) == 2, "one server per worker, kept between its tests"


def test_a_reset_that_leaks_state_fails_the_next_test_loudly(tmp_path: Path) -> None:
    result = run_spec_text(tmp_path, PG.replace("{reset}", "DELETE FROM orders"))  # the sequence goes on
    assert_passed(find_test(result, "test_a"))
    b = find_test(result, "test_b")
    assert b.outcome.value == "failed"
    assert "service db was kept from an earlier test (reuse=True)" in b.reason
    # a fresh start ran seed (row 1) and reset (row 2); test_a added row 3; test_b's reset row 4
    assert "sequence public.orders_id_seq: at 4 (fresh: at 2)" in b.reason, b.reason
    assert "RESTART IDENTITY" in b.reason
    # a server that failed its check is not kept: the next test starts a fresh one, and passes
    c = find_test(result, "test_c")
    assert_passed(c)
    assert "reused" not in _started(c)[0]


REDIS = """
load("@faultbox/services.star", "redis")

def seed():
    cache.main.set(key = "config", value = "v1")

cache = redis("cache", seed = seed, reuse = True{reset})

def test_a():
    cache.main.set(key = "left:a", value = "1")
    assert_eq(cache.main.get(key = "config").value, "v1")

def test_b():
    cache.main.set(key = "left:b", value = "1")
    assert_eq(cache.main.get(key = "config").value, "v1")
"""


def test_a_kept_redis_without_a_reset_is_reseeded_and_its_leak_named(tmp_path: Path) -> None:
    result = run_spec_text(tmp_path, REDIS.replace("{reset}", ""))
    b = find_test(result, "test_b")
    assert b.outcome.value == "failed"
    assert "after its seed" in b.reason and "db0 key left:a: string" in b.reason and "(fresh: absent)" in b.reason


def test_a_kept_redis_with_flushall_passes(tmp_path: Path) -> None:
    spec = REDIS.replace("{reset}", ", reset = lambda: (cache.main.command(args = ['FLUSHALL']), seed())")
    result = run_spec_text(tmp_path, spec)
    for name in ("test_a", "test_b"):
        assert_passed(find_test(result, name))


def test_a_kept_server_does_not_carry_a_delay_into_the_next_test(tmp_path: Path) -> None:
    """Test a ends while Redis's write is parked in a 20 s delay; test b adopts the same server at
    once (without the cut, its healthcheck would fail and a fresh Redis would be started)."""
    spec = """
load("@faultbox/services.star", "redis")
cache = redis("cache", reset = lambda: cache.main.command(args = ["FLUSHALL"]), reuse = True)

def test_a():
    r = fault(cache, write = delay("20s"),
              run = lambda: cache.main.command(args = ["SET", "k", "v"], timeout = "300ms"))
    assert_eq(r.ok, False, "the SET waits for its delayed write")

def test_b():
    assert_eq(cache.main.command(args = ["PING"]).data["value"], "PONG")
"""
    result = run_spec_text(tmp_path, spec)
    a, b = find_test(result, "test_a"), find_test(result, "test_b")
    assert_passed(a)
    assert_passed(b)
    assert _started(b)[0]["reused"] == "true" and _started(b)[0]["pid"] == _started(a)[0]["pid"]
    delayed = [e.fields for e in a.events if e.type == "syscall" and e.fields.get("fault") == "write"]
    assert len(delayed) == 1 and delayed[0]["decision"] == "delay(20s)", delayed
    assert float(delayed[0]["late_ms"]) < -10_000, "cut short at the end of test a, in test a's trace"
    assert not [e for e in b.events if e.type == "syscall" and e.fields.get("fault")], "nothing of a's fault in b"


def test_reuse_on_a_service_that_depends_on_others_is_refused(tmp_path: Path) -> None:
    spec = """
a = service("a", "/bin/sleep", args = ["60"])
b = service("b", "/bin/sleep", args = ["60"], depends_on = [a], reuse = True)
def test_x():
    pass
"""
    with pytest.raises(SpecError, match=r'service\("b"\): reuse=True on a service that depends on others \(a\)'):
        run_spec_text(tmp_path, spec)


def test_a_kept_service_that_names_another_s_address_is_refused(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    spec = f"""
a = service("a", "{sys.executable}", interface("main", "tcp", {port_a}), args = ["-m", "http.server", "{port_a}"],
    healthcheck = tcp("127.0.0.1:{port_a}"))
b = service("b", "{sys.executable}", interface("main", "tcp", {port_b}), args = ["-m", "http.server", "{port_b}"],
    env = {{"UPSTREAM": a.main.addr}}, healthcheck = tcp("127.0.0.1:{port_b}"), reuse = True)

def test_x():
    pass
"""
    result = run_spec_text(tmp_path, spec)
    x = find_test(result, "test_x")
    assert x.outcome.value == "failed", x.reason
    assert "b: reuse=True, but its env (UPSTREAM) names other services' addresses" in x.reason
