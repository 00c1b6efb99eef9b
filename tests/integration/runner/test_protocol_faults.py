"""Protocol faults through the runner, on the orders example: the API reaches its inventory through
the inventory's proxy (env rewritten), protocol faults reach the system's own traffic and the
test's steps, scopes nest, probabilities replay under one seed, and reports count the rules."""

from __future__ import annotations

from support import EXAMPLES, assert_passed, find_test, free_port, run_spec_text

ORDERS = EXAMPLES / "orders"


def _spec(inv: int, api: int, body: str) -> str:
    return f"""
inventory = service("inventory", "python3", interface("main", "tcp", {inv}), args = ["{ORDERS}/inventory.py"],
    env = {{"INVENTORY_PORT": "{inv}"}}, healthcheck = tcp("127.0.0.1:{inv}"))
orders = service("orders", "python3", interface("public", "http", {api}, proxy = False), args = ["{ORDERS}/orders.py"],
    env = {{"ORDERS_PORT": "{api}", "INVENTORY_ADDR": inventory.main.addr}}, depends_on = [inventory],
    healthcheck = http("127.0.0.1:{api}/health"))

def order():
    return orders.public.post(path = "/orders", body = {{"sku": "a", "qty": 1}})
{body}
"""


def test_protocol_faults_reach_the_system_and_the_steps(tmp_path) -> None:
    inv, api = free_port(), free_port()
    body = """
def test_drop_reaches_the_api():
    r = fault(inventory.main, drop(method = "RESERVE*"), run = order)
    assert_true(r.status >= 500, "the API saw its inventory connection cut: %d" % r.status)
    fired = events(type = "proxy", service = "inventory")
    assert_true(len(fired) >= 1)
    assert_eq(fired[0].action, "drop")
    assert_eq(fired[0].interface, "main")
    assert_true(fired[0].method.startswith("RESERVE a 1"), fired[0].method)
    assert_eq(order().status, 201)  # the rule ended with the scope
    assert_eq(inventory.main.send(data = "STOCK a"), "STOCK 9")

def test_steps_go_through_the_proxy_and_scopes_nest():
    def inner():
        inventory.main.send(data = "PING")
    def outer():
        fault(inventory.main, delay(method = "PING", delay = "200ms"), run = inner)
        return inventory.main.send(data = "STOCK a")
    fault(inventory.main, delay(method = "STOCK*", delay = "150ms", label = "outer"), run = outer)
    delays = [e for e in events(type = "proxy", service = "inventory") if e.action == "delay"]
    assert_eq([e.method for e in delays], ["PING", "STOCK a"], "the inner scope left the outer rule in place")
    assert_eq(delays[1].label, "outer")

def start_a_fault():
    fault_start(inventory.main, drop())

def test_a_monitor_cannot_start_a_fault():
    def meddle(e):
        start_a_fault()  # through a helper: refused when it runs (a direct call is refused at monitor())
    monitor(meddle, type = "step_send")
    inventory.main.send(data = "PING")

def test_a_monitor_that_calls_fault_is_refused_at_once():
    def meddle(e):
        fault_start(inventory.main, drop())
    monitor(meddle, type = "step_send")

def test_unmatched_rule_is_reported():
    fault(inventory.main, drop(method = "NEVER*"), run = lambda: inventory.main.send(data = "PING"))

def test_assumption_mixes_protocol_and_syscall_rules():
    fa = fault_assumption("mixed", target = inventory.main, rules = [delay(method = "RESERVE*", delay = "10ms")],
        fsync = deny("EIO"))
    r = fault(fa, run = order)
    assert_eq(r.status, 503)
    assert_eq(events(type = "proxy", service = "inventory")[0].assumption, "mixed")
"""
    result = run_spec_text(tmp_path, _spec(inv, api, body))
    for name in ("test_drop_reaches_the_api", "test_steps_go_through_the_proxy_and_scopes_nest"):
        assert_passed(find_test(result, name))

    meddling = find_test(result, "test_a_monitor_cannot_start_a_fault")
    assert meddling.outcome.value == "failed" and "cannot run inside a monitor" in meddling.reason, meddling.reason
    direct = find_test(result, "test_a_monitor_that_calls_fault_is_refused_at_once")
    assert direct.outcome.value == "failed", direct.reason
    assert "the monitor calls fault_start()" in direct.reason and "only reads the trace" in direct.reason

    unmatched = find_test(result, "test_unmatched_rule_is_reported")
    codes = [d.code for d in unmatched.diagnostics]
    assert "FAULT_NOT_FIRED" in codes, unmatched.diagnostics
    record = [f for f in unmatched.faults if f.protocol == "tcp"]
    assert len(record) == 1 and record[0].matched == 0 and record[0].keyword == "main"
    assert record[0].decision == "drop(method=NEVER*)"

    mixed = find_test(result, "test_assumption_mixes_protocol_and_syscall_rules")
    assert_passed(mixed)
    kinds = sorted((f.protocol or "syscall", f.fired > 0) for f in mixed.faults)
    assert kinds == [("syscall", True), ("tcp", True)], mixed.faults


def test_env_names_the_proxy_and_probabilities_replay(tmp_path) -> None:
    inv, api = free_port(), free_port()
    body = """
probe = service("probe", "python3", interface("main", "tcp", PROBE_PORT), args = ["-c",
    "import os, time; print(os.environ['UP'], os.environ['FAULTBOX_INVENTORY_MAIN_ADDR'], os.environ['P'], " +
    "os.environ['FAULTBOX_PROBE_MAIN_PORT'], flush=True); time.sleep(60)"],
    env = {"UP": "tcp://" + inventory.main.addr + "/x", "P": inventory.main.proxy_addr},
    observe = [observe.stdout()], depends_on = [inventory])

def test_wiring():
    assert_eventually(type = "stdout", service = "probe", timeout = "10s")
    up, wired, placeholder, own = events(type = "stdout", service = "probe")[0].raw.split(" ")
    assert_eq(own, str(PROBE_PORT), "a service's own variables name its real port")
    assert_eq(placeholder, wired)
    assert_eq(inventory.main.proxy_addr, wired, "in a test, proxy_addr is the live address")
    assert_true(up.startswith("tcp://127.0.0.1:") and up.endswith("/x"), up)
    assert_true(up != "tcp://" + inventory.main.addr + "/x", "rewritten to the proxy: " + up)
    assert_eq(up, "tcp://" + wired + "/x")

def test_draws():
    def many():
        for i in range(30):
            inventory.main.send(data = "PING")
    fault(inventory.main, delay(method = "PING", delay = "1ms", probability = "50%"), run = many)
    print("fired=%d" % len(events(type = "proxy", service = "inventory")))
"""
    body = body.replace("PROBE_PORT", str(free_port()))
    first = run_spec_text(tmp_path, _spec(inv, api, body), seed=7)
    assert_passed(find_test(first, "test_wiring"))
    draws = find_test(first, "test_draws")
    again = find_test(run_spec_text(tmp_path, _spec(inv, api, body), seed=7), "test_draws")
    fired = [f.fired for f in draws.faults]
    assert fired == [f.fired for f in again.faults], "one seed, the same decisions"
    assert 5 <= fired[0] <= 25, fired


def test_a_dead_proxy_worker_errors_the_test_loudly(tmp_path) -> None:
    import os
    import signal
    import socket
    import threading
    from pathlib import Path

    inv, api = free_port(), free_port()
    body = """
def test_waits():
    for i in range(400):
        inventory.main.send(data = "PING")
        sleep("50ms")
"""

    def worker_pid() -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if b"faultbox.proxy.worker" in cmd and ppid == os.getpid():
                return int(entry.name)
        return None

    def kill_worker_once_the_body_runs() -> None:
        stop = threading.Event()
        while not stop.wait(0.05):
            try:  # the api is the last service up: then the body is stepping through the proxy
                socket.create_connection(("127.0.0.1", api), timeout=1).close()
            except OSError:
                continue
            pid = worker_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return

    killer = threading.Thread(target=kill_worker_once_the_body_runs, daemon=True)
    killer.start()
    result = run_spec_text(tmp_path, _spec(inv, api, body))
    killer.join(10)
    test = find_test(result, "test_waits")
    assert test.outcome.value == "errored", f"{test.outcome.value}: {test.reason}"
    assert "proxy worker" in test.reason, test.reason
