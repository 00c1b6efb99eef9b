"""Mock services in real runs: a real application reaches a mock through its proxy, protocol faults
on the mock reach that application, handlers keep state through the trace and start fresh in every
test, and a handler's own failure fails the test at the handler's line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jwt as pyjwt

from support import assert_passed, find_test, free_port, run_spec_text

DATA = Path(__file__).resolve().parents[2] / "data"

# A checkout service that charges through whatever FAULTBOX_PAY_MAIN_ADDR names, with one retry.
APP = """
import http.client, json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAY = os.environ["FAULTBOX_PAY_MAIN_ADDR"]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        order = json.loads(self.rfile.read(n) or b"{}")
        status = 0
        for attempt in range(2):
            host, port = PAY.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("POST", "/v1/charges", json.dumps(order), {"content-type": "application/json",
                         "idempotency-key": order["order_id"]})
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            conn.close()
            if status < 500:
                break
        out = json.dumps({"payments_status": status, "payments_addr": PAY, "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _spec(tmp_path, body: str, app_port: int, mock_port: int) -> str:
    (tmp_path / "app.py").write_text(APP)
    return textwrap.dedent(f"""
    def charge(req):
        made = len(events(type = "mock", service = "pay", path = "/v1/charges", status = "201"))
        return json_response(status = 201, body = {{"id": "ch_%d" % (made + 1), "order_id": req["data"]["order_id"]}})

    pay = mock_service("pay", interface("main", "http", {mock_port}),
        routes = {{"POST /v1/charges": dynamic(charge), "GET /health": text_response(body = "ok")}})
    app = service("app", "python3", interface("main", "http", {app_port}), args = ["{tmp_path}/app.py", "{app_port}"],
        depends_on = [pay], healthcheck = tcp("127.0.0.1:{app_port}"))

    def checkout(order_id):
        return app.main.post(path = "/checkout", body = {{"order_id": order_id}})
    """) + textwrap.dedent(body)


def test_mocks_in_a_run(tmp_path) -> None:
    app_port, mock_port = free_port(), free_port()
    body = f"""
    def test_the_app_reaches_the_mock_through_its_proxy():
        r = checkout("o1")
        assert_eq(r.data["payments_status"], 201)
        assert_true(r.data["payments_addr"] != "127.0.0.1:{mock_port}", "consumers are pointed at the proxy")
        assert_eq(json.decode(r.data["body"])["id"], "ch_1")
        assert_eq(checkout("o2").data["payments_status"], 201)
        charges = events(type = "mock", service = "pay", path = "/v1/charges")
        assert_eq([e.data["order_id"] for e in charges], ["o1", "o2"])
        assert_eq(charges[1].req_idempotency_key, "o2")
        assert_eq(len(events(type = "mock.POST /v1/charges")), 2)
        assert_eq(events(type = "service_ready", service = "pay")[0].kind, "mock")

    def test_state_starts_fresh_in_every_test():
        assert_eq(json.decode(checkout("o9").data["body"])["id"], "ch_1")

    def test_a_fault_on_the_mock_reaches_the_app():
        r = fault(pay.main, error(path = "/v1/charges", status = 503), run = lambda: checkout("o3"))
        assert_eq(r.data["payments_status"], 503)
        assert_eq(len(events(type = "mock", service = "pay")), 0, "the proxy answered in the mock's place")
        assert_eq(len(events(type = "proxy", service = "pay", status = "503")), 2, "the app tried twice")
        r = fault(pay.main, error(path = "/v1/charges", status = 503, times = 1), run = lambda: checkout("o4"))
        assert_eq(r.data["payments_status"], 201, "the retry got through")

    def test_a_partition_cuts_the_app_from_the_mock():
        r = partition(app, pay, run = lambda: checkout("p1"))
        assert_true(not r.ok or r.status >= 500, "the app could not reach its payment provider")
        assert_eq(len(events(type = "mock", service = "pay")), 0)
        assert_true(len(events(type = "syscall", service = "app", syscall = "connect", decision = "deny*")) >= 1)

    def test_steps_reach_the_mock_too():
        assert_eq(pay.main.get(path = "/health").body, "ok")
        assert_eq(pay.main.get(path = "/nope").status, 404)

    def test_monitors_see_mock_events():
        def one_charge_per_order(e):
            same = events(type = "mock", service = "pay", status = "201",
                          where = lambda x: x.data.get("order_id") == e.data["order_id"])
            if len(same) > 1:
                fail("order " + e.data["order_id"] + " charged twice")
        monitor(one_charge_per_order, type = "mock", service = "pay", status = "201")
        checkout("o5")
        checkout("o5")
    """
    result = run_spec_text(tmp_path, _spec(tmp_path, body, app_port, mock_port), timeout=120)
    for name in (
        "test_the_app_reaches_the_mock_through_its_proxy",
        "test_state_starts_fresh_in_every_test",
        "test_a_fault_on_the_mock_reaches_the_app",
        "test_steps_reach_the_mock_too",
        "test_a_partition_cuts_the_app_from_the_mock",
    ):
        assert_passed(find_test(result, name))
    caught = find_test(result, "test_monitors_see_mock_events")
    assert caught.outcome.value == "failed" and "order o5 charged twice" in caught.reason, caught.reason


def test_a_failing_handler_fails_the_test_at_its_line(tmp_path) -> None:
    port = free_port()
    spec = textwrap.dedent(f"""
    def broken(req):
        return req["data"]["missing"]

    def not_a_response(req):
        return {{"id": 1}}

    pay = mock_service("pay", interface("main", "http", {port}),
        routes = {{"POST /broken": dynamic(broken), "POST /dict": dynamic(not_a_response)}})

    def test_raises():
        r = pay.main.post(path = "/broken", body = "{{}}")
        assert_eq(r.status, 500)

    def test_returns_a_dict():
        assert_eq(pay.main.post(path = "/dict", body = "{{}}").status, 500)
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    raised = find_test(result, "test_raises")
    assert raised.outcome.value == "failed", raised.reason
    assert "dynamic handler broken failed: key not found: 'missing'" in raised.reason
    assert raised.location.endswith(":3"), raised.location
    wrong = find_test(result, "test_returns_a_dict")
    assert wrong.outcome.value == "failed" and "returned dict, not a response" in wrong.reason, wrong.reason
    assert wrong.location.endswith(":5"), wrong.location  # the handler's def


def test_a_tcp_line_mock(tmp_path) -> None:
    port = free_port()
    spec = textwrap.dedent(f"""
    def stock(req):
        return bytes_response(data = "STOCK " + req["line"].split(" ")[1] + " 7\\n")

    inv = mock_service("inv", interface("main", "tcp", {port}),
        routes = {{"PING": bytes_response(data = "PONG\\n"), "STOCK ": dynamic(stock)}},
        default = text_response(body = "ERR\\n"))

    def test_lines():
        assert_eq(inv.main.send(data = "PING"), "PONG")
        assert_eq(inv.main.send(data = "STOCK widget"), "STOCK widget 7")
        assert_eq(inv.main.send(data = "HUH"), "ERR")
        assert_eq([e.matched for e in events(type = "mock", service = "inv")], ["true", "true", "false"])
        r = fault(inv.main, delay(method = "PING*", delay = "50ms"), run = lambda: inv.main.send(data = "PING"))
        assert_eq(r, "PONG")
        assert_eq(events(type = "proxy", service = "inv")[0].action, "delay")
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    assert_passed(find_test(result, "test_lines"))


def test_an_openapi_mock_answers_examples_and_refuses_invalid_requests(tmp_path) -> None:
    port = free_port()
    (tmp_path / "payments.yaml").write_text((DATA / "openapi" / "payments.yaml").read_text())
    spec = textwrap.dedent(f"""
    pay = mock_service("pay", interface("main", "http", {port}), openapi = "payments.yaml",
        overrides = {{"getCharge": json_response(body = {{"id": "ch_override", "status": "failed"}})}})

    def test_examples_and_overrides():
        r = pay.main.post(path = "/v1/charges", body = {{"amount": 2500, "currency": "usd", "source": "tok_visa"}},
                          headers = {{"Idempotency-Key": "k1"}})
        assert_eq(r.status, 201)
        assert_eq(r.data["id"], "ch_1001")
        assert_eq(pay.main.get(path = "/v1/charges/ch_9").data["id"], "ch_override")

    def test_an_invalid_request_is_400_and_an_event():
        r = pay.main.post(path = "/v1/charges", body = {{"amount": "lots"}}, headers = {{"Idempotency-Key": "k1"}})
        assert_eq(r.status, 400)
        assert_true("request validation failed" in r.body, r.body)
        bad = events(type = "mock", service = "pay", status = "400")
        assert_eq(len(bad), 1)
        assert_true(bad[0].validate_error != None)

    def test_a_monitor_catches_invalid_requests():
        monitor(lambda e: fail("invalid request: " + e.validate_error) if e.get("validate_error") else None,
                type = "mock", service = "pay")
        pay.main.post(path = "/v1/charges", body = {{"amount": "lots"}}, headers = {{"Idempotency-Key": "k1"}})
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    assert_passed(find_test(result, "test_examples_and_overrides"))
    assert_passed(find_test(result, "test_an_invalid_request_is_400_and_an_event"))
    caught = find_test(result, "test_a_monitor_catches_invalid_requests")
    assert caught.outcome.value == "failed" and "invalid request: " in caught.reason, caught.reason


def test_stdlib_mocks_serve_in_a_run(tmp_path) -> None:
    spec = textwrap.dedent("""
    load("@faultbox/mocks/http.star", "http")
    load("@faultbox/mocks/jwt.star", "jwt")
    flags = http.server("flags", 0, routes = {"GET /v1/flags": [{"name": "v2", "enabled": True}]})
    auth = jwt.server("auth", 0, issuer = "https://auth.example")

    def test_served():
        assert_eq(flags.main.get(path = "/v1/flags").data[0]["name"], "v2")
        conf = auth.service.main.get(path = "/.well-known/openid-configuration").data
        assert_eq(conf["jwks_uri"], "http://" + auth.service.main.proxy_addr + "/.well-known/jwks.json")
        keys = auth.service.main.get(path = "/jwks").data["keys"]
        assert_eq(keys[0]["kid"], "k1")
        print(auth.sign({"sub": "u1"}))
        print(json.encode(keys[0]))
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    test = find_test(result, "test_served")
    assert_passed(test)
    token, jwk = test.details["printed"]
    key = pyjwt.PyJWK(json.loads(jwk))
    claims = pyjwt.decode(token, key, algorithms=["EdDSA"])
    assert claims == {"iss": "https://auth.example", "sub": "u1"}


def test_an_assumptions_monitors_watch_until_the_test_ends(tmp_path) -> None:
    port = free_port()
    spec = textwrap.dedent(f"""
    pay = mock_service("pay", interface("main", "http", {port}), routes = {{"GET /*": status_only(200)}})

    def no_late_calls(e):
        if e.path == "/late":
            fail("a call after the scenario")

    watched = fault_assumption("watched", target = pay.main, rules = [delay(path = "/never", delay = "1ms")],
                               monitors = [monitor(no_late_calls, type = "mock")])

    fault_scenario("late_call", scenario = lambda: pay.main.get(path = "/early"), faults = watched,
                   expect = lambda r: pay.main.get(path = "/late"))
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    test = find_test(result, "test_late_call")
    assert test.outcome.value == "failed" and "a call after the scenario" in test.reason, test.reason


def test_big_bodies(tmp_path) -> None:
    port = free_port()
    spec = textwrap.dedent(f"""
    pay = mock_service("pay", interface("main", "http", {port}),
        routes = {{"POST /static": status_only(204), "POST /dynamic": dynamic(lambda req: status_only(204))}})

    def test_data_of_a_body_over_2_kib():
        pay.main.post(path = "/static", body = {{"order_id": "o1", "note": "n" * 3000}})
        e = events(type = "mock", service = "pay")[0]
        assert_eq(e.data["order_id"], "o1")
        assert_eq(len(events(type = "mock", where = lambda x: x.data.get("order_id") == "o1")), 1)

    def test_a_body_too_big_for_a_handler():
        assert_eq(pay.main.post(path = "/dynamic", body = "x" * (1024 * 1024 + 1)).status, 413)
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    assert_passed(find_test(result, "test_data_of_a_body_over_2_kib"))
    too_big = find_test(result, "test_a_body_too_big_for_a_handler")
    assert too_big.outcome.value == "failed" and "more than a dynamic handler is given" in too_big.reason, (
        too_big.reason
    )
