"""service(), interface(), healthchecks, observation sources and decoders, op()."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
from collections.abc import Mapping
from typing import Any

from faultbox.model.service import Decoder, Healthcheck, Interface, Managed, Observe, Op, Service
from faultbox.model.syscalls import FAMILIES, known_syscalls
from faultbox.spec.args import ArgError, register_type, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.compile import current_location, current_module
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import InterfaceRef, ServiceValue

# Every protocol the reference's interface() accepts (its plugins, and amqp and memcached, which it
# knows only as proxies), and "other". Those without steps in faultbox (spec/values.py NO_STEPS_YET)
# get no proxy: their consumers reach the real address; syscall faults and partitions still apply.
PROTOCOLS = (
    "http", "http2", "tcp", "postgres", "redis", "kafka",
    "grpc", "udp", "mysql", "mongodb", "cassandra", "clickhouse", "nats", "amqp", "memcached", "other",
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

for _cls, _name in (
    (Interface, "interface"),
    (Healthcheck, "healthcheck"),
    (Observe, "observe_source"),
    (Decoder, "decoder"),
    (Op, "op"),
):
    register_type_name(_cls, _name)
register_type("service", lambda v: isinstance(v, ServiceValue), "a service")
register_type("healthcheck", lambda v: isinstance(v, Healthcheck), "a healthcheck (tcp(...) or http(...))")
register_type("decoder", lambda v: isinstance(v, Decoder), 'a decoder (decoder("json"), ...)')


def _check_reuse(name: str, reuse: bool, depends_on: tuple[str, ...]) -> None:
    # A kept process keeps the environment it started with, and that names the proxies of the
    # services it depends on, which every test opens anew.
    if reuse and depends_on:
        raise ArgError(
            f'service("{name}"): reuse=True on a service that depends on others '
            f"({', '.join(depends_on)}): a kept process would still talk to the first test's proxies",
            "keep servers that call nobody (databases, caches, brokers); start the services that use them fresh",
        )


def _module_dir() -> str:
    module = current_module(2)
    return module.directory if module is not None else os.getcwd()


@builtin(
    "service",
    "name: str, *binary_or_interfaces, binary: any = None, args: strlist = [], env: dict = {}, "
    "depends_on: list = [], healthcheck: healthcheck? = None, observe: list = [], cwd: str? = None, "
    "user: str? = None, ops: dict = {}, stop_timeout: duration = '2s', seed: callable? = None, "
    "reset: callable? = None, reuse: bool = False, image: str? = None",
)
def service(
    builder: SpecBuilder,
    name: str,
    binary_or_interfaces: tuple[Any, ...],
    binary: Any,
    args: list[str],
    env: dict[str, Any],
    depends_on: list[Any],
    healthcheck: Healthcheck | None,
    observe: list[Any],
    cwd: str | None,
    user: str | None,
    ops: dict[str, Any],
    stop_timeout: float,
    seed: Any,
    reset: Any,
    reuse: bool,
    image: str | None,
) -> ServiceValue:
    _check_name(name)
    if image is not None:
        raise ArgError(
            f'service("{name}"): image= needs a container engine, and none runs here',
            'declare the dependency with a local server instead: load("@faultbox/services.star", '
            '"postgres", "redis", "kafka")',
        )
    positional_binary: list[Any] = []
    interfaces: list[Interface] = []
    for item in binary_or_interfaces:
        if isinstance(item, Interface):
            interfaces.append(item)
        elif isinstance(item, (str, list, tuple)) and not interfaces and not positional_binary:
            positional_binary.append(item)
        else:
            raise ArgError(
                f'service("{name}"): positional arguments after the name are the binary (a string or '
                f"argv list) and then interface(...) values; got {type_name(item)}"
            )
    if positional_binary and binary is not None:
        raise ArgError(f'service("{name}"): the binary is given twice (positionally and as binary=)')
    argv = _argv(name, positional_binary[0] if positional_binary else binary, args)
    deps = tuple(_dep_name(name, d) for d in depends_on)
    _check_reuse(name, reuse, deps)
    base = _module_dir()
    workdir = os.path.normpath(os.path.join(base, cwd)) if cwd else base
    if not os.path.isdir(workdir):
        raise ArgError(f'service("{name}"): cwd {workdir} is not a directory')
    resolved = _resolve_binary(name, argv[0], workdir)
    _check_ports(name, interfaces)
    svc = Service(
        name=name,
        argv=(resolved, *argv[1:]),
        interfaces=tuple(interfaces),
        env=_env(name, env),
        depends_on=deps,
        healthcheck=healthcheck,
        observe=tuple(_observe(name, o) for o in observe),
        cwd=workdir,
        user=_user(name, user),
        ops=_ops(name, ops),
        stop_grace=stop_timeout,
        seed=seed,
        reset=reset,
        reuse=reuse,
        location=current_location(2),
    )
    builder.add_service(svc)
    return ServiceValue(svc)


@builtin(
    "managed_service",
    "kind: str, name: str, *interfaces, options: dict = {}, env: dict = {}, depends_on: list = [], "
    "observe: list = [], seed: callable? = None, reset: callable? = None, reuse: bool = False, "
    "healthcheck_timeout: duration = '30s', stop_timeout: duration = '5s'",
    stdlib_only=True,
)
def managed_service(
    builder: SpecBuilder,
    kind: str,
    name: str,
    interfaces: tuple[Any, ...],
    options: dict[str, Any],
    env: dict[str, Any],
    depends_on: list[Any],
    observe: list[Any],
    seed: Any,
    reset: Any,
    reuse: bool,
    healthcheck_timeout: float,
    stop_timeout: float,
) -> ServiceValue:
    """A real server (postgres, redis, kafka) whose process the runner prepares itself."""
    _check_name(name)
    deps = tuple(_dep_name(name, d) for d in depends_on)
    _check_reuse(name, reuse, deps)
    ifaces = [_with_port(i) for i in interfaces if isinstance(i, Interface)]
    _check_ports(name, ifaces)
    svc = Service(
        name=name,
        argv=(),
        interfaces=tuple(ifaces),
        env=_env(name, env),
        depends_on=deps,
        healthcheck=Healthcheck("protocol", kind, healthcheck_timeout),
        observe=tuple(_observe(name, o) for o in observe),
        cwd=_module_dir(),
        managed=Managed(kind, dict(options)),
        stop_grace=stop_timeout,
        seed=seed,
        reset=reset,
        reuse=reuse,
        location=current_location(3),
    )
    builder.add_service(svc)
    return ServiceValue(svc)


@builtin(
    "interface",
    "name: str, protocol: str, port: int, *, host: str = '127.0.0.1', proxy: bool = True, record: bool = False",
)
def interface(
    builder: SpecBuilder, name: str, protocol: str, port: int, host: str, proxy: bool, record: bool
) -> Interface:
    _check_name(name)
    if protocol not in PROTOCOLS:
        raise ArgError(f'interface("{name}"): unknown protocol "{protocol}"; known: {", ".join(PROTOCOLS)}')
    if not 0 <= port <= 65535:
        raise ArgError(f'interface("{name}"): port {port} is outside 0..65535')
    if record and not proxy:
        raise ArgError(
            f'interface("{name}"): record=True records the traffic through its proxy, and proxy=False has none',
            "drop one of the two",
        )
    return Interface(name, protocol, port, host, proxy, record)


@builtin("tcp", "addr: str, *, timeout: duration = '10s'")
def tcp(builder: SpecBuilder, addr: str, timeout: float) -> Healthcheck:
    _host_port(addr.removeprefix("tcp://"), "tcp()")
    return Healthcheck("tcp", addr.removeprefix("tcp://"), timeout)


@builtin("http", "url: str, *, timeout: duration = '10s'")
def http(builder: SpecBuilder, url: str, timeout: float) -> Healthcheck:
    target = url if "://" in url else "http://" + url
    return Healthcheck("http", target, timeout)


def _decoder_value(name: str, pattern: str | None) -> Decoder:
    if name in ("json", "logfmt"):
        if pattern is not None:
            raise ArgError(f'decoder("{name}") takes no pattern')
        return Decoder(name)
    if name == "regex":
        if not pattern:
            raise ArgError('decoder("regex") needs pattern= with named groups, e.g. r"(?P<level>\\w+) (?P<msg>.*)"')
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ArgError(f'decoder("regex"): invalid pattern: {exc}') from None
        if not compiled.groupindex:
            raise ArgError('decoder("regex"): the pattern has no named groups; write (?P<name>...)')
        return Decoder("regex", pattern)
    raise ArgError(f'decoder(): unknown decoder "{name}"; use "json", "logfmt" or "regex"')


@builtin("decoder", "name: str, *, pattern: str? = None")
def decoder(builder: SpecBuilder, name: str, pattern: str | None) -> Decoder:
    return _decoder_value(name, pattern)


@builtin("_observe_stdout", "*, decoder: decoder? = None")
def observe_stdout(builder: SpecBuilder, decoder: Decoder | None) -> Observe:
    return Observe("stdout", decoder or Decoder("raw"))


@builtin("_observe_stderr", "*, decoder: decoder? = None")
def observe_stderr(builder: SpecBuilder, decoder: Decoder | None) -> Observe:
    return Observe("stderr", decoder or Decoder("raw"))


# The seed's older spelling: stdout(decoder=json_decoder()) and friends.
@builtin("stdout", "*, decoder: decoder? = None")
def stdout(builder: SpecBuilder, decoder: Decoder | None) -> Observe:
    return Observe("stdout", decoder or Decoder("raw"))


@builtin("stderr", "*, decoder: decoder? = None")
def stderr(builder: SpecBuilder, decoder: Decoder | None) -> Observe:
    return Observe("stderr", decoder or Decoder("raw"))


@builtin("json_decoder", "")
def json_decoder(builder: SpecBuilder) -> Decoder:
    return Decoder("json")


@builtin("logfmt_decoder", "")
def logfmt_decoder(builder: SpecBuilder) -> Decoder:
    return Decoder("logfmt")


@builtin("regex_decoder", "*, pattern: str")
def regex_decoder(builder: SpecBuilder, pattern: str) -> Decoder:
    return _decoder_value("regex", pattern)


@builtin("op", "*, syscalls: strlist, path: str? = None")
def op(builder: SpecBuilder, syscalls: list[str], path: str | None) -> Op:
    if not syscalls:
        raise ArgError("op(): syscalls= must name at least one syscall")
    known = known_syscalls()
    for sc in syscalls:
        if sc not in known and sc not in FAMILIES:
            from faultbox._util.spell import did_you_mean

            raise ArgError(f'op(): unknown syscall "{sc}"{did_you_mean(sc, known)}')
    return Op("", tuple(syscalls), path)


# -- helpers -----------------------------------------------------------------------------------


def _with_port(iface: Interface) -> Interface:
    """Port 0 means "any free port": chosen now, so that env wiring can name it."""
    if iface.port:
        return iface
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((iface.host, 0))
        return Interface(iface.name, iface.protocol, s.getsockname()[1], iface.host, iface.proxy, iface.record)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ArgError(f"invalid name {name!r}: use letters, digits, '_' and '-', starting with a letter")
    if name == "test":
        raise ArgError('"test" is reserved: steps are recorded as service "test"; pick another name')


def _argv(name: str, binary: Any, args: list[str]) -> list[str]:
    if binary is None:
        raise ArgError(
            f'service("{name}") needs a binary: service("{name}", "/path/to/bin", interface(...), args=[...])'
        )
    if isinstance(binary, str):
        return [binary, *args]
    if isinstance(binary, (list, tuple)) and binary and all(isinstance(x, str) for x in binary):
        return [*binary, *args]
    raise ArgError(f'service("{name}"): binary must be a string or a non-empty list of strings')


def _resolve_binary(name: str, binary: str, workdir: str) -> str:
    if "/" in binary:
        path = os.path.normpath(os.path.join(workdir, binary))
        if not os.path.exists(path):
            raise ArgError(
                f'service("{name}"): binary {binary} does not exist (looked at {path})',
                "fix the path; a relative path is resolved against the spec file's directory (or cwd=)",
            )
        if not os.access(path, os.X_OK):
            raise ArgError(f'service("{name}"): binary {path} is not executable', f"chmod +x {path}")
        return path
    found = shutil.which(binary)
    if found is None:
        raise ArgError(
            f'service("{name}"): binary "{binary}" was not found on PATH',
            "install it, or give its path (absolute, or relative to the spec file)",
        )
    return found


def _env(name: str, env: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str):
            raise ArgError(f'service("{name}"): env keys must be strings, got {type_name(key)}')
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            out[key] = str(value)
        else:
            raise ArgError(f'service("{name}"): env["{key}"] must be a string or number, got {type_name(value)}')
    return out


def _dep_name(name: str, dep: Any) -> str:
    if isinstance(dep, ServiceValue):
        return dep.name
    if isinstance(dep, InterfaceRef):
        return dep.service
    if isinstance(dep, str):
        return dep
    raise ArgError(f'service("{name}"): depends_on items must be services, got {type_name(dep)}')


def _observe(name: str, item: Any) -> Observe:
    if isinstance(item, Observe):
        return item
    raise ArgError(
        f'service("{name}"): observe items must be observe.stdout(...) or observe.stderr(...), got {type_name(item)}'
    )


def _user(name: str, user: str | None) -> str | None:
    if user is None:
        return None
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ArgError(f'service("{name}"): user "{user}" does not exist on this machine') from None
    return user


def _ops(name: str, ops: Mapping[str, Any]) -> dict[str, Op]:
    out: dict[str, Op] = {}
    for key, value in ops.items():
        if not isinstance(value, Op):
            raise ArgError(f'service("{name}"): ops["{key}"] must be an op(...), got {type_name(value)}')
        if key in known_syscalls() or key in FAMILIES:
            raise ArgError(f'service("{name}"): op name "{key}" is a syscall name; pick another name')
        out[key] = Op(key, value.syscalls, value.path)
    return out


def _check_ports(name: str, interfaces: list[Interface]) -> None:
    seen: dict[int, str] = {}
    for iface in interfaces:
        if iface.port in seen and iface.port:
            raise ArgError(f'service("{name}"): interfaces {seen[iface.port]} and {iface.name} share port {iface.port}')
        seen[iface.port] = iface.name


def _host_port(addr: str, what: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ArgError(f'{what}: "{addr}" is not host:port', 'write e.g. tcp("127.0.0.1:8080")')
    return host, int(port)
