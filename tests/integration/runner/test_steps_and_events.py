"""Steps, responses, step events, observed output, assertions and queries - against the orders
example's real services."""

from __future__ import annotations

from support import EXAMPLES, free_port, svc_decl

ORDERS = EXAMPLES / "orders"


def services(inv_port: int, api_port: int, observe: str = 'observe.stdout(decoder = decoder("json"))') -> str:
    return f"""
inventory = service("inventory", "python3", interface("main", "tcp", {inv_port}), args = ["{ORDERS}/inventory.py"],
    env = {{"INVENTORY_PORT": "{inv_port}"}}, healthcheck = tcp("127.0.0.1:{inv_port}"),
    observe = [{observe}])
orders = service("orders", "python3", interface("public", "http", {api_port}), args = ["{ORDERS}/orders.py"],
    env = {{"ORDERS_PORT": "{api_port}", "INVENTORY_ADDR": inventory.main.addr}}, depends_on = [inventory],
    healthcheck = http("127.0.0.1:{api_port}/health"), observe = [stdout(decoder = json_decoder())])
"""


def test_http_and_tcp_steps(run) -> None:
    spec = (
        services(free_port(), free_port())
        + """
def test_steps():
    r = orders.public.post(path = "/orders", body = {"sku": "a", "qty": 2})
    assert_eq(r.status, 201)
    assert_true(r.ok)
    assert_eq(r.error, "")
    assert_eq(r.data["status"], "confirmed")
    assert_eq(json.decode(r.body)["sku"], "a")
    assert_eq(r.headers["content-type"], "application/json")
    assert_true(r.duration_ms >= 0)
    assert_eq(type(r), "response")
    missing = orders.get(path = "/nope")
    assert_eq(missing.status, 404)
    assert_true(missing.ok, "an HTTP error status is still a completed exchange")
    assert_eq(inventory.main.send(data = "STOCK a"), "STOCK 8")
    assert_eq(orders.public.addr, orders.addr)
    assert_eq(inventory.main.port + 0, inventory.main.port)
"""
    )
    res = run(spec)
    t = res.test("steps")
    assert t.outcome.value == "passed", t.reason
    sends = [e for e in t.events if e.type == "step_send"]
    recvs = [e for e in t.events if e.type == "step_recv"]
    assert len(sends) == len(recvs) == 3
    assert sends[0].service == "orders" and sends[0].fields["method"] == "post"
    assert sends[0].fields["path"] == "/orders" and '"qty":2' in sends[0].fields["body"]
    assert recvs[0].fields["status"] == "201" and recvs[0].fields["ok"] == "true"
    assert recvs[1].fields["status"] == "404" and "not found" in recvs[1].fields["body"]
    assert recvs[2].service == "inventory" and recvs[2].fields["reply"] == "STOCK 8"
    # The log line written before the HTTP reply is in the trace before step_recv (the barrier).
    confirmed = next(e for e in t.events if e.type == "stdout" and e.get("status") == "confirmed")
    assert confirmed.seq < recvs[0].seq
    # vector clocks: the step's reply carries what the service had done
    assert recvs[0].vclock.get("orders", 0) >= confirmed.vclock.get("orders", 0)


def test_failed_step_is_ok_false_not_an_exception(run) -> None:
    spec = f"""
ghost = service("ghost", "python3", interface("main", "http", {free_port()}, proxy = False),
                args = ["-c", "import time; time.sleep(60)"])
proxied = service("proxied", "python3", interface("main", "http", {free_port()}),
                  args = ["-c", "import time; time.sleep(60)"])
def test_refused():
    r = ghost.get(path = "/", timeout = "1s")
    assert_eq(r.ok, False)
    assert_eq(r.status, 0)
    assert_true("Connect" in r.error, r.error)
    assert_true(not r)
    # Through a proxy the refusal reaches the client as a cut connection (reset or closed,
    # depending on timing): still a failed step, not an exception.
    r = proxied.get(path = "/", timeout = "1s")
    assert_eq(r.ok, False)
    assert_eq(r.status, 0)
"""
    res = run(spec)
    assert res.test("refused").outcome.value == "passed", res.test("refused").reason


def test_observed_output_becomes_events(run, write_spec) -> None:
    port = free_port()
    spec = f"""
svc = service("svc", "python3", interface("main", "tcp", {port}), args = ["@FIXTURES@/svc.py"],
    env = {{"PORT": "{port}", "BANNER": "level=info msg=\\"booting up\\" n=3"}}, healthcheck = tcp("127.0.0.1:{port}"),
    observe = [observe.stdout(decoder = decoder("logfmt")), observe.stderr()])
def test_lines():
    assert_eventually(type = "stdout", service = "svc", level = "info", msg = "booting up")
    svc.main.send(data = "LOG level=warn msg=x")
    assert_eq(len(events(type = "stdout", level = "warn")), 1)
    e = events(where = lambda e: e.type == "stdout" and e.level == "warn")[0]
    assert_eq(e.msg, "x")
    assert_eq(e["service"], "svc")
"""
    res = run(spec)
    assert res.test("lines").outcome.value == "passed", res.test("lines").reason


def test_regex_decoder(run) -> None:
    port = free_port()
    spec = f"""
svc = service("svc", "python3", interface("main", "tcp", {port}), args = ["@FIXTURES@/svc.py"],
    env = {{"PORT": "{port}"}}, healthcheck = tcp("127.0.0.1:{port}"),
    observe = [stdout(decoder = regex_decoder(pattern = r"(?P<level>[A-Z]+): (?P<msg>.*)"))])
def test_lines():
    svc.main.send(data = "LOG WARN: disk is slow")
    svc.main.send(data = "LOG unmatched line")
    assert_eventually(type = "stdout", level = "WARN", msg = "disk is slow")
    assert_eventually(type = "stdout", raw = "unmatched line")
"""
    res = run(spec)
    assert res.test("lines").outcome.value == "passed", res.test("lines").reason


def test_trace_assertions_and_their_failures(run) -> None:
    spec = (
        services(free_port(), free_port())
        + """
def order():
    return orders.post(path = "/orders", body = {"sku": "b"})

def test_ok():
    order()
    assert_eventually(type = "stdout", service = "orders", status = "confirmed")
    assert_never(type = "stdout", service = "orders", status = "failed")
    assert_before(first = {"type": "step_send"}, then = lambda e: e.type == "stdout" and e.get("status") == "confirmed")
    both = events(where = lambda e: e.get("status") == "confirmed", service = "orders")
    assert_eq(len(both), 1)
    assert_eq(len(events(type = "stdout", service = "inv*")), 2)

def test_eventually_fails():
    order()
    assert_eventually(type = "stdout", service = "orders", status = "shipped")

def test_never_fails():
    order()
    assert_never(where = lambda e: e.type == "stdout" and e.get("status") == "confirmed")

def test_before_fails():
    order()
    assert_before(first = {"type": "stdout", "service": "orders", "status": "confirmed"},
                  then = {"type": "stdout", "service": "inventory", "result": "ok"})

def test_matching_anything():
    order()
    assert_eventually()
"""
    )
    res = run(spec)
    assert res.outcome("ok") == "passed", res.test("ok").reason
    ev = res.test("eventually_fails")
    assert ev.outcome.value == "failed"
    assert 'no event matched type="stdout", service="orders", status="shipped"' in ev.reason
    assert any("status=confirmed" in line for line in ev.details["nearest"]), ev.details
    line = spec.splitlines().index('    assert_eventually(type = "stdout", service = "orders", status = "shipped")') + 1
    assert ev.location.endswith(f":{line}")
    nv = res.test("never_fails")
    assert "assert_never: 1 event(s) matched" in nv.reason and "status=confirmed" in nv.reason
    bf = res.test("before_fails")
    assert "assert_before" in bf.reason and "after then=" in bf.reason
    anything = res.test("matching_anything")
    assert anything.outcome.value == "failed" and "nothing to match" in anything.reason, anything.reason


def test_runtime_errors_point_at_the_spec_line(run) -> None:
    spec = """
CONFIG = {"retries": 3}

def helper(d):
    return d["missing"]

def test_key_error():
    helper({"a": 1})

def test_frozen_global():
    CONFIG["retries"] = 5

def test_bad_builtin_argument():
    deny("EBOGUS")

def test_fail():
    fail("custom", "message")

def test_called_instead_of_passed():
    fault(helper, write = deny("EIO"), run = helper({"missing": 1}))

def test_empty_target():
    fault_start([], write = deny("EIO"))
"""
    res = run(spec)
    ke = res.test("key_error")
    assert ke.outcome.value == "failed" and "missing" in ke.reason and ke.location.endswith(":5")
    fg = res.test("frozen_global")
    assert "frozen dict" in fg.reason and fg.location.endswith(":11")
    bb = res.test("bad_builtin_argument")
    assert 'unknown errno "EBOGUS"' in bb.reason and bb.location.endswith(":14")
    fl = res.test("fail")
    assert fl.reason == "custom message" and fl.location.endswith(":17")
    called = res.test("called_instead_of_passed")
    assert called.details.get("fix", "").startswith("pass the function itself"), (called.reason, called.details)
    empty = res.test("empty_target")
    assert empty.outcome.value == "failed" and "names no service" in empty.reason, empty.reason


def test_print_goes_to_stderr_prefixed(run, capfd) -> None:  # type: ignore[no-untyped-def]
    res = run('def test_talk():\n    print("hello", 42, [1, "a"])\n')
    assert res.test("talk").details["printed"] == ['hello 42 [1, "a"]']
    assert '[test_talk] hello 42 [1, "a"]' in capfd.readouterr().err


def test_load_paths_and_stdlib(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.star").write_text('load("b.star", "B")\nA = B + 1\n')
    (tmp_path / "lib" / "b.star").write_text("B = 41\n")
    spec = (
        'load("lib/a.star", "A")\nload("lib/b.star", bee = "B")\n'
        "def test_x():\n    assert_eq(A, 42)\n    assert_eq(bee, 41)\n"
    )
    res = run(spec)
    assert res.outcome("x") == "passed", res.test("x").reason


def test_assert_eq_follows_starlark_equality(run) -> None:
    spec = """
def test_ok():
    assert_eq([1, {"a": (2, 3)}], [1, {"a": (2, 3)}])

def test_bool_is_not_int():
    assert_eq([True], [1])

def test_list_is_not_tuple():
    assert_eq([1], (1,))
"""
    res = run(spec)
    assert res.outcome("ok") == "passed"
    assert res.outcome("bool_is_not_int") == "failed" and "[True] != [1]" in res.test("bool_is_not_int").reason
    assert res.outcome("list_is_not_tuple") == "failed"


def test_a_line_without_end_is_cut_into_bounded_events(run) -> None:
    spec = """
chatty = service("chatty", "python3", args = ["-c",
    "import sys, time; sys.stdout.write('x' * 300000 + '\\\\nend\\\\n'); sys.stdout.flush(); time.sleep(60)"],
    observe = [observe.stdout()])

def test_long_line():
    assert_eventually(type = "stdout", raw = "end", timeout = "5s")
    sizes = [len(e.raw) for e in events(type = "stdout") if e.raw != "end"]
    total = 0
    for n in sizes:
        total += n
    assert_eq(total, 300000)
    assert_true(len(sizes) >= 3, "%d pieces" % len(sizes))
    assert_true(max(sizes) <= 2 * 65536, "a piece of %d bytes" % max(sizes))
"""
    res = run(spec)
    assert res.outcome("long_line") == "passed", res.test("long_line").reason


def test_parallel_branches_are_concurrent_clients(run, tmp_path) -> None:
    port = free_port()
    f = f"{tmp_path}/p.dat"
    spec = (
        svc_decl("svc", port)
        + f"""
def write():
    return svc.main.send(data = "WRITE {f} 1")

def two_slow_writes():
    return parallel(write, lambda: svc.main.send(data = "PING"), write)

def test_concurrent():
    results = fault(svc, write = delay("400ms", path = "{f}"), run = two_slow_writes)
    assert_eq(results, ["ok=1 err=0 errnos=", "PONG", "ok=1 err=0 errnos="])
    sends = events(type = "step_send", service = "svc")
    recvs = events(type = "step_recv", service = "svc")
    assert_eq(len(sends), 3)
    # both writes were sent before either came back: they were in flight together
    slow = [e.seq for e in recvs if int(e.duration_ms) >= 300]
    assert_true(max([e.seq for e in sends]) < min(slow), "sends %s, slow replies %s" % (sends, slow))

def test_a_failing_branch_fails_the_test_at_its_line():
    parallel(lambda: svc.main.send(data = "PING"), lambda: assert_eq(svc.main.send(data = "PING"), "PANG"))

def test_branches_stop_at_the_deadline():
    parallel(lambda: sleep("60s"), lambda: svc.main.send(data = "PING"))
"""
    )
    res = run(spec, timeout=3.0)
    assert res.outcome("concurrent") == "passed", res.explain()
    bad = res.test("a_failing_branch_fails_the_test_at_its_line")
    assert bad.outcome.value == "failed" and 'assert_eq failed: "PONG" != "PANG"' in bad.reason, bad.reason
    line = spec.splitlines().index(
        '    parallel(lambda: svc.main.send(data = "PING"), lambda: assert_eq(svc.main.send(data = "PING"), "PANG"))'
    )
    assert bad.location.endswith(f":{line + 1}"), bad.location
    late = res.test("branches_stop_at_the_deadline")
    assert late.outcome.value == "inconclusive" and late.duration_ms < 10000, (late.outcome, late.duration_ms)


def test_step_events_carry_the_reference_fields(run) -> None:
    """A spec written for the reference reads step events by its names: target, status_code,
    success, and e.event_type / e.timestamp on every event."""
    spec = (
        services(free_port(), free_port())
        + """
def test_reference_fields():
    orders.public.post(path = "/orders", body = {"sku": "a", "qty": 1})
    orders.get(path = "/nope")
    sent = events(where = lambda e: e.event_type == "step_send.orders")
    assert_eq(len(sent), 2)
    assert_eq(sent[0].target, "orders")
    assert_eq(sent[0].method, "post")
    got = events(type = "step_recv", target = "orders")
    assert_eq([e.status_code for e in got], ["201", "404"])
    assert_eq([e.success for e in got], ["true", "true"])
    assert_eq(got[0].body, None, "a 2xx reply's body stays out of the event")
    assert_true("not found" in got[1].body)
    assert_true(int(got[0].duration_ms) >= 0)
    assert_eq(got[0].error, None)
    assert_true(got[0].timestamp.startswith("20") and got[0].timestamp.endswith("Z"), got[0].timestamp)
    assert_true(len(events(where = lambda e: e.event_type == "lifecycle.ready")) == 2)
    inventory.main.send(data = "STOCK a")
    assert_eq(events(type = "step_recv", target = "inventory")[0].success, "true")

def test_failed_step_success_false():
    r = ghost.get(path = "/", timeout = "1s")
    e = events(type = "step_recv", target = "ghost")[0]
    assert_eq(e.success, "false")
    assert_eq(e.status_code, None)
    assert_true(len(e.error) > 0)
"""
        + f"""
ghost = service("ghost", "python3", interface("main", "http", {free_port()}, proxy = False),
                args = ["-c", "import time; time.sleep(60)"])
"""
    )
    res = run(spec)
    for name in ("reference_fields", "failed_step_success_false"):
        assert res.test(name).outcome.value == "passed", res.test(name).reason


def test_protocols_without_steps_run_unproxied(run) -> None:
    """An interface of a protocol faultbox has no steps for (the reference's mysql, nats, ...) is
    accepted: the service runs, nothing stands between it and its consumers, and a step names it."""
    port = free_port()
    spec = f"""
db = service("db", "python3", interface("main", "mysql", {port}), args = ["@FIXTURES@/svc.py"],
    env = {{"PORT": "{port}"}}, healthcheck = tcp("127.0.0.1:{port}"))

def test_running():
    assert_eventually(type = "service_ready", service = "db")
    assert_eq(len(events(type = "proxy_started", service = "db")), 0, "no proxy for mysql")
    assert_eq(db.main.addr, "127.0.0.1:{port}")

def test_a_step():
    db.main.query(sql = "SELECT 1")
"""
    res = run(spec)
    assert res.test("running").outcome.value == "passed", res.test("running").reason
    failed = res.test("a_step")
    assert failed.outcome.value in ("failed", "errored"), failed.outcome
    assert "no steps for protocol mysql yet" in failed.reason, failed.reason
    assert failed.location.endswith("spec.star:11"), (failed.location, failed.reason)
