"""partition(a, b, run=): the orders example's API and its inventory cannot reach each other."""

from __future__ import annotations

from support import EXAMPLES, free_port

ORDERS = EXAMPLES / "orders"


def test_partition_refuses_new_connections_between_the_two_only(run) -> None:
    inv, api = free_port(), free_port()
    spec = f"""
inventory = service("inventory", "python3", interface("main", "tcp", {inv}), args = ["{ORDERS}/inventory.py"],
    env = {{"INVENTORY_PORT": "{inv}"}}, healthcheck = tcp("127.0.0.1:{inv}"))
orders = service("orders", "python3", interface("public", "http", {api}), args = ["{ORDERS}/orders.py"],
    env = {{"ORDERS_PORT": "{api}", "INVENTORY_ADDR": inventory.main.addr}}, depends_on = [inventory],
    healthcheck = http("127.0.0.1:{api}/health"))

def order():
    return orders.public.post(path = "/orders", body = {{"sku": "a", "qty": 1}})

def test_cut():
    r = partition(orders, inventory, run = order)
    assert_eq(r.status, 503)
    refused = events(type = "syscall", service = "orders", syscall = "connect", decision = "deny(ECONNREFUSED)")
    assert_eq(len(refused), 1)
    assert_eq(refused[0].op, "partition")
    assert_eq(refused[0].addr, inventory.main.addr)
    assert_eq(order().status, 201)  # healed when run returned

def test_only_the_other_way():
    # inventory never calls orders: cutting that way changes nothing, and the runner says so
    assert_eq(partition(orders, inventory, direction = "b_to_a", run = order).status, 201)

def test_bad_direction():
    partition(orders, inventory, direction = "sideways", run = order)

def test_imperative():
    partition_start(orders, inventory)
    assert_eq(order().status, 503)
    partition_stop(inventory, orders)  # a pair: either order names it
    assert_eq(order().status, 201)

def test_one_partition_per_pair():
    partition_start(orders, inventory, direction = "a_to_b")
    partition_start(inventory, orders)

def test_stop_without_start():
    partition_stop(orders, inventory)

def cut_order():
    return partition(orders, inventory, run = order)

chatty = fault_assumption("chatty", target = orders, write = delay("1ms"))
fault_matrix(scenarios = [cut_order], faults = [chatty], require_faults_fire = True,
             default_expect = lambda r: assert_eq(r.status, 503))
"""
    res = run(spec)
    cut = res.test("cut")
    assert cut.outcome.value == "passed", cut.reason
    assert not [d for d in cut.diagnostics if d.code == "FAULT_NOT_FIRED"], cut.diagnostics
    applied = [e for e in cut.events if e.type == "fault_applied"]
    assert {e.service for e in applied} == {"orders", "inventory"}
    one_way = res.test("only_the_other_way")
    assert one_way.outcome.value == "passed", one_way.reason
    [warning] = [d for d in one_way.diagnostics if d.code == "FAULT_NOT_FIRED"]
    assert "the partition of inventory refused no connection" in warning.message
    # one leg refused, the other had nothing to refuse: the partition fired, the cell is not bypassed
    cell = res.test("matrix_cut_order_chatty")
    assert cell.outcome.value == "passed", cell.reason
    assert res.outcome("imperative") == "passed", res.test("imperative").reason
    twice = res.test("one_partition_per_pair")
    assert twice.outcome.value == "failed" and "already partitioned" in twice.reason, twice.reason
    assert twice.details.get("fix", "").startswith("call partition_stop(inventory, orders) first")
    stray = res.test("stop_without_start")
    assert stray.outcome.value == "failed" and "are not partitioned" in stray.reason, stray.reason
    bad = res.test("bad_direction")
    assert bad.outcome.value == "failed" and 'direction="sideways"' in bad.reason
