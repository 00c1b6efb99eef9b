"""The reference's spellings that Python's parser or faultbox's signatures would refuse: `.del`,
`command(cmd=, args=)`, lrange's text indexes, and interface protocols without steps yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faultbox.errors import Code, SpecError
from faultbox.spec import load_spec
from faultbox.spec.args import ArgError
from faultbox.spec.dialect import parse
from faultbox.spec.values import _redis_command


def test_del_after_a_dot_parses_as_the_attribute_del(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        "def f(c):\n"
        '    return c.del(key = "k"), c . del(key = "j"), c.dl_  # .del in a comment\n'
        "def g(c):\n"
        '    s = "é"; return c.del(key = s)\n'
        "def test_nothing():\n    pass\n"
    )
    loaded = load_spec(str(spec))

    class C:
        dl_ = "its own attribute"

    c = C()
    setattr(c, "del", lambda key: key)
    assert loaded.root.globals["f"](c) == ("k", "j", "its own attribute")
    assert loaded.root.globals["g"](c) == "é"


def test_columns_after_a_del_are_where_they_were() -> None:
    tree = parse('x = c.del(key = "k") + zz\n', "s.star")
    names = [n for n in __import__("ast").walk(tree) if getattr(n, "id", None) == "zz"]
    assert names[0].col_offset == 23


def test_the_del_statement_is_still_refused(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text("def test_x():\n    x = [1]\n    del x[0]\n")
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec))
    assert caught.value.code is Code.SPEC_NOT_STARLARK and "spec.star:3" in caught.value.render()


def _command(**bound: Any) -> Any:
    return _redis_command({"args": None, "cmd": None, **bound})["args"]


def test_redis_command_in_both_spellings() -> None:
    assert _command(args=["SET", "k", "v"]) == ["SET", "k", "v"]
    assert _command(cmd="SET", args=["k", "v"]) == ["SET", "k", "v"]
    assert _command(cmd="GET", args="k") == ["GET", "k"]
    assert _command(cmd="PING") == ["PING"]
    with pytest.raises(ArgError, match="no command to send") as caught:
        _command(args=[])
    assert 'cmd="SET"' in str(caught.value.hint)
    with pytest.raises(ArgError, match="cmd is empty"):
        _command(cmd=" ")


def test_a_command_without_one_is_refused_at_its_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'cache = service("cache", "python3", interface("main", "redis", 6390))\n'
        "x = cache.main.command(args = [])\n"
        "def test_nothing():\n    pass\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec))
    rendered = caught.value.render()
    assert caught.value.code is Code.SPEC_BAD_ARGUMENT and "spec.star:2" in rendered
    assert "cache.main.command(): no command to send" in rendered and 'cmd="SET"' in rendered


def test_lrange_takes_its_indexes_as_text_too(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'cache = service("cache", "python3", interface("main", "redis", 6390))\n'
        'x = cache.main.lrange(key = "q", start = "zero")\n'
        "def test_nothing():\n    pass\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec))
    rendered = caught.value.render()
    assert "spec.star:2" in rendered and 'an int (or its text, such as "-1")' in rendered


REFERENCE_PROTOCOLS = ["http", "http2", "tcp", "udp", "postgres", "mysql", "redis", "kafka", "nats", "grpc",
                       "mongodb", "cassandra", "clickhouse", "amqp", "memcached"]  # fmt: skip


def test_interface_accepts_every_protocol_of_the_reference(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    decls = "\n".join(
        f'svc_{i} = service("svc{i}", "python3", interface("main", "{p}", {7000 + i}))'
        for i, p in enumerate(REFERENCE_PROTOCOLS)
    )
    spec.write_text(decls + "\ndef test_nothing():\n    pass\n")
    loaded = load_spec(str(spec))
    assert sorted(i.protocol for s in loaded.services.values() for i in s.interfaces) == sorted(REFERENCE_PROTOCOLS)


@pytest.mark.parametrize(
    ("protocol", "call"),
    [
        ("mysql", 'db.main.query(sql = "SELECT 1")'),
        ("grpc", 'db.main.call(method = "/pkg.Svc/M")'),
        ("udp", 'db.send(data = "x")'),
        ("nats", 'db.main.publish(subject = "s", data = "x")'),
        ("mongodb", 'db.main.find(collection = "c")'),
        ("cassandra", 'db.main.exec(cql = "x")'),
        ("clickhouse", 'db.main.query(sql = "x")'),
    ],
)
def test_a_step_on_a_protocol_without_steps_names_it(tmp_path: Path, protocol: str, call: str) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        f'db = service("db", "python3", interface("main", "{protocol}", 7001))\n'
        "def test_nothing():\n    pass\n"
        f"x = {call}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec))
    rendered = caught.value.render()
    assert caught.value.code is Code.SPEC_BAD_ARGUMENT, rendered
    assert "spec.star:4" in rendered and f"no steps for protocol {protocol} yet" in rendered
    assert "syscall faults and partitions work on db" in rendered


def test_other_attributes_of_such_an_interface_say_so_too(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'mq = service("mq", "python3", interface("main", "amqp", 5672))\n'
        "def test_nothing():\n    pass\n"
        "x = mq.main.publish\n"
        'y = hasattr(mq.main, "publish")\n'
    )
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec))
    rendered = caught.value.render()
    assert "spec.star:4" in rendered and "no steps for protocol amqp yet" in rendered


def test_del_after_a_lone_carriage_return_is_restored() -> None:
    import ast

    from faultbox.spec import dialect

    for source in ('a = """x\ry"""\nb = foo.del(k=1)\n', "a = 1\rb = foo.del(k=1)", "a = 1\r\nb = foo.del(k=1)\r\n"):
        tree = dialect.parse(source, "x.star")
        assert [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)] == ["del"], repr(source)
