"""Values a spec holds: services and their interfaces, step methods, structs, and the Starlark
spelling of values (`str([1, "a"])` is `[1, "a"]`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from faultbox._util.frozen import FrozenDict, FrozenList, freeze, thaw
from faultbox._util.spell import did_you_mean
from faultbox.model.response import Response
from faultbox.model.service import Interface, Service
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, Signature, register_type, register_type_name

# lrange's start/stop: the reference passes them as text ("0", "-1")
register_type(
    "index",
    lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and bool(re.fullmatch(r"-?\d+", v)))
    ),
    'an int (or its text, such as "-1")',
)

# protocol -> method -> signature. This table is the spec-facing surface of the step clients; the
# runner's protocol clients implement exactly these.
STEP_METHODS: dict[str, dict[str, str]] = {
    "http": {
        m: "path: str = '/', *, body: any = None, headers: strdict = {}, timeout: duration = '30s'"
        for m in ("get", "post", "put", "delete", "patch")
    },
    "tcp": {"send": "data: str, *, timeout: duration = '10s'"},
    "postgres": {
        "query": "sql: str, *, params: list? = None, timeout: duration = '30s'",
        "exec": "sql: str, *, params: list? = None, timeout: duration = '30s'",
    },
    "redis": {
        name: sig + ", user: str? = None, password: str? = None"
        for name, sig in {
            "get": "key: str, *, timeout: duration = '10s'",
            "set": "key: str, value: any, *, ex: int? = None, timeout: duration = '10s'",
            "delete": "key: str, *, timeout: duration = '10s'",
            "del": "key: str, *, timeout: duration = '10s'",  # the reference's name (`.del` parses: dialect.py)
            "keys": "pattern: str = '*', *, timeout: duration = '10s'",
            "incr": "key: str, *, timeout: duration = '10s'",
            "hget": "key: str, field: str, *, timeout: duration = '10s'",
            "hset": "key: str, field: str, value: any, *, timeout: duration = '10s'",
            "lpush": "key: str, value: any, *, timeout: duration = '10s'",
            "rpush": "key: str, value: any, *, timeout: duration = '10s'",
            "lrange": "key: str, start: index = 0, stop: index = -1, *, timeout: duration = '10s'",
            "ping": "*, timeout: duration = '10s'",
            "command": "args: any = None, *, cmd: str? = None, timeout: duration = '10s'",
        }.items()
    },
    "kafka": {
        "publish": "topic: str, *, key: str? = None, value: any = None, data: any = None, "
        "headers: strdict = {}, timeout: duration = '10s'",
        "consume": "topic: str, *, group: str? = None, timeout: duration = '10s', max: int = 1",
    },
}
STEP_METHODS["http2"] = STEP_METHODS["http"]


def _redis_command(bound: dict[str, Any]) -> dict[str, Any]:
    """command(args=["SET", "k", "v"]) (faultbox) or command(cmd="SET", args=["k", "v"] | "k")
    (the reference): one list of words for the client."""
    cmd, args = bound.pop("cmd", None), bound.get("args")
    if cmd is not None:
        if not cmd.strip():
            raise ArgError("command(): cmd is empty", 'give the command: cmd="GET", args=["k"]')
        rest = [] if args is None else list(args) if isinstance(args, (list, tuple)) else [args]
        bound["args"] = [cmd, *rest]
    elif not isinstance(args, (list, tuple)) or not args:
        raise ArgError(
            "command(): no command to send" + ("" if args is None else f" (args is {starlark_repr(args)})"),
            'write command(args=["SET", "k", "v"]) or command(cmd="SET", args=["k", "v"])',
        )
    return bound


# Steps whose arguments are put in one shape before the client sees them (ArgError at the call).
_NORMALIZE: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("redis", "command"): _redis_command,
}
_SIGNATURES: dict[tuple[str, str], Signature] = {}

# Protocols interface() accepts without steps here yet, with the reference's steps for each: calling
# one is a clear error, not "no attribute".
NO_STEPS_YET: dict[str, tuple[str, ...]] = {
    "grpc": ("call",),
    "udp": ("send", "send_no_reply"),
    "mysql": ("query", "exec"),
    "mongodb": ("find", "insert", "insert_many", "update", "delete", "count", "command"),
    "cassandra": ("query", "exec"),
    "clickhouse": ("query", "exec"),
    "nats": ("publish", "request", "subscribe"),
    "amqp": (),
    "memcached": (),
}

# methods a service answers itself when it has one interface (or one named "default")
_SHORTHAND = ("get", "post", "put", "delete", "patch", "send")


def step_signature(protocol: str, method: str) -> Signature:
    key = (protocol, method)
    sig = _SIGNATURES.get(key)
    if sig is None:
        sig = _SIGNATURES[key] = Signature.parse(method, STEP_METHODS[protocol][method])
    return sig


class StepMethod:
    """`api.public.post` - calling it runs the step through the test's host."""

    __slots__ = ("interface", "method", "protocol", "service")

    def __init__(self, service: str, interface: str, protocol: str, method: str) -> None:
        self.service = service
        self.interface = interface
        self.protocol = protocol
        self.method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sig = step_signature(self.protocol, self.method)
        try:
            bound = sig.bind(args, kwargs)
            normalize = _NORMALIZE.get((self.protocol, self.method))
            if normalize is not None:
                bound = normalize(dict(bound))
        except ArgError as exc:
            raise ArgError(f"{self.service}.{self.interface}.{exc.message}", exc.hint) from None
        host = host_mod.require(f"{self.service}.{self.interface}.{self.method}()")
        return host.step(self.service, self.interface, self.method, bound)

    def __repr__(self) -> str:
        return f"<step {self.service}.{self.interface}.{self.method}>"


class MissingStep(StepMethod):
    """A step the reference has for a protocol faultbox accepts without steps yet: calling it is an
    error naming the protocol, at the line of the call."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ArgError(*no_steps(self.service, self.interface, self.protocol, self.method))

    def __repr__(self) -> str:
        return f"<step {self.service}.{self.interface}.{self.method} (none for {self.protocol} yet)>"


def no_steps(service: str, interface: str, protocol: str, method: str) -> tuple[str, str]:
    return (
        f"{service}.{interface}.{method}(): no steps for protocol {protocol} yet",
        f"drive {service} through a client of its own (an http or tcp interface of a service that talks "
        f"to it) and check the effects with events(); syscall faults and partitions work on {service}, "
        "protocol faults do not (no proxy decodes its traffic)",
    )


class InterfaceRef:
    """`svc.iface`: its address for wiring (`.addr .host .port`) and its step methods."""

    __slots__ = ("model", "owner")

    def __init__(self, owner: Service, model: Interface) -> None:
        self.owner = owner
        self.model = model

    @property
    def service(self) -> str:
        return self.owner.name

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def protocol(self) -> str:
        return self.model.protocol

    @property
    def addr(self) -> str:
        return self.model.addr

    @property
    def host(self) -> str:
        return self.model.host

    @property
    def port(self) -> int:
        return self.model.port

    @property
    def proxy_addr(self) -> str:
        return self._proxy("ADDR")

    @property
    def proxy_host(self) -> str:
        return self._proxy("HOST")

    @property
    def proxy_port(self) -> str:
        return self._proxy("PORT")

    def _proxy(self, part: str) -> str:
        """The proxy's address in a running test; before one (in `env=`), a placeholder that is
        replaced when the consumer starts (the reference's spelling: __FB_PROXY_ADDR_db__main__)."""
        host = host_mod.current()
        found = getattr(host, "proxy_address", None)
        if found is not None:
            addr: tuple[str, int] = found(self.service, self.model.name)
            return {"ADDR": f"{addr[0]}:{addr[1]}", "HOST": addr[0], "PORT": str(addr[1])}[part]
        return f"__FB_PROXY_{part}_{self.service}__{self.model.name}__"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = STEP_METHODS.get(self.model.protocol, {})
        if name in methods:
            return StepMethod(self.service, self.model.name, self.model.protocol, name)
        if name in NO_STEPS_YET.get(self.model.protocol, ()):
            return MissingStep(self.service, self.model.name, self.model.protocol, name)
        if self.model.protocol in NO_STEPS_YET:
            fix = no_steps(self.service, self.model.name, self.model.protocol, name)[1]
            raise AttributeError(
                f"interface {self.service}.{self.model.name} has no attribute {name!r}: "
                f"no steps for protocol {self.model.protocol} yet (fix: {fix})",
                name=name,
                obj=self,
            )
        raise AttributeError(
            f"interface {self.service}.{self.model.name} ({self.model.protocol}) has no attribute {name!r}"
            f"{did_you_mean(name, [*methods, 'addr', 'host', 'port', 'name', 'protocol', 'proxy_addr'])}; "
            f"its steps: {', '.join(methods) or 'none'}",
            name=name,
            obj=self,
        )

    def __dir__(self) -> list[str]:
        names = ["addr", "host", "name", "port", "protocol", "proxy_addr", "proxy_host", "proxy_port"]
        return sorted([*names, *STEP_METHODS.get(self.model.protocol, {})])

    def __repr__(self) -> str:
        return f"<interface_ref {self.service}.{self.model.name}>"


class ServiceValue:
    """What service() returns: `svc.name`, `svc.addr`, `svc.<interface>`, and step shorthands."""

    __slots__ = ("model",)

    def __init__(self, model: Service) -> None:
        self.model = model

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def addr(self) -> str:
        iface = self._sole_interface("addr")
        return iface.addr

    def _sole_interface(self, what: str) -> Interface:
        ifaces = self.model.interfaces
        if len(ifaces) == 1:
            return ifaces[0]
        default = self.model.interface("default")
        if default is not None:
            return default
        names = ", ".join(i.name for i in ifaces) or "none"
        raise ArgError(
            f'service "{self.model.name}" has {len(ifaces)} interfaces ({names}); say which one',
            f"write {self.model.name}.<interface>.{what}",
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        iface = self.model.interface(name)
        if iface is not None:
            return InterfaceRef(self.model, iface)
        if name in _SHORTHAND:
            sole = self._sole_interface(name)
            if name in STEP_METHODS.get(sole.protocol, {}):
                return StepMethod(self.model.name, sole.name, sole.protocol, name)
            if name in NO_STEPS_YET.get(sole.protocol, ()):
                return MissingStep(self.model.name, sole.name, sole.protocol, name)
        options = [i.name for i in self.model.interfaces]
        raise AttributeError(
            f'service "{self.model.name}" has no interface or attribute {name!r}'
            f"{did_you_mean(name, [*options, 'name', 'addr'])}; interfaces: {', '.join(options) or 'none'}",
            name=name,
            obj=self,
        )

    def __dir__(self) -> list[str]:
        return sorted(["addr", "name", *(i.name for i in self.model.interfaces)])

    def __repr__(self) -> str:
        return f"<service {self.model.name}>"


class Struct:
    """struct(a=1, b="x"): an immutable record."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        object.__setattr__(self, "fields", FrozenDict((k, freeze(v)) for k, v in fields.items()))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(
                f"struct has no field {name!r}{did_you_mean(name, self.fields)}", name=name, obj=self
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise ArgError("a struct cannot be changed; build a new one with struct(...)")

    def __dir__(self) -> list[str]:
        return sorted(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Struct) and other.fields == self.fields

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.fields.items())))

    def __repr__(self) -> str:
        return "struct(" + ", ".join(f"{k}={starlark_repr(v)}" for k, v in self.fields.items()) + ")"


def _json_default(value: Any) -> Any:
    if isinstance(value, Struct):
        return dict(value.fields)
    if isinstance(value, tuple):
        return list(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise ArgError(f"json.encode: cannot encode a value of type {type(value).__name__}")


def json_encode(value: Any) -> str:
    return json.dumps(thaw(value), separators=(",", ":"), default=_json_default, ensure_ascii=False)


def json_decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ArgError(f"json.decode: invalid JSON: {exc}") from None


def json_indent(text: str, indent: str = "\t") -> str:
    return json.dumps(json_decode(text), indent=indent, ensure_ascii=False)


JSON_MODULE = Struct({"encode": json_encode, "decode": json_decode, "indent": json_indent})


def starlark_repr(value: Any) -> str:
    """repr() with Starlark's spelling (double-quoted strings at every depth)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return "b" + _bytes_literal(value)
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(starlark_repr(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(starlark_repr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{starlark_repr(k)}: {starlark_repr(v)}" for k, v in value.items()) + "}"
    if callable(value) and hasattr(value, "__name__") and not hasattr(value, "model"):
        name = getattr(value, "__name__", "lambda").replace("<lambda>", "lambda")
        return f"<function {name}>"
    return repr(value)


_BYTE_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


def _bytes_literal(value: bytes) -> str:
    out = [_BYTE_ESCAPES.get(b) or (chr(b) if 32 <= b < 127 else f"\\x{b:02x}") for b in value]
    return '"' + "".join(out) + '"'


def starlark_str(value: Any) -> str:
    """str(): strings as they are, bytes as their UTF-8 text (U+FFFD for what is not), else repr()."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return starlark_repr(value)


for _cls, _name in (
    (Response, "response"),
    (ServiceValue, "service"),
    (InterfaceRef, "interface_ref"),
    (StepMethod, "step_method"),
    (MissingStep, "step_method"),
    (Struct, "struct"),
    (FrozenList, "list"),
    (FrozenDict, "dict"),
):
    register_type_name(_cls, _name)
