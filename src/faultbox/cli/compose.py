"""A docker-compose.yml read and translated into a starter spec (`faultbox init --from-compose`).

There is no container engine here, so a compose file cannot run as written. What can be carried
over is: the services and the order they start in (`depends_on`), their ports (as interfaces),
their environment (with every `service:port` a value names rewritten to faultbox's address of that
service, so that traffic goes through the fault proxies), their healthchecks, and the images that
are servers faultbox runs itself (PostgreSQL, Redis, Kafka-compatible brokers), which become the
helpers of `@faultbox/services.star` with their settings. Everything else becomes a `service()` with
a TODO, and a list of what needs the user's attention closes the spec.

Reading follows Compose's YAML: YAML 1.2 scalars (`22:22` is a string, `yes` is a string), `<<`
merge keys, `.env` next to the file for `${VAR}` interpolation, and `env_file:`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Any

import yaml  # type: ignore[import-untyped]

from faultbox.errors import UsageError

_COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml")


class ComposeError(UsageError):
    """The compose file cannot be read or does not say what faultbox needs; `where` is file:line."""

    def __init__(self, message: str, hint: str | None = None, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message, hint)


# --- reading --------------------------------------------------------------------------------------


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the line of itself and of each key (for messages)."""

    line: int = 0
    lines: dict[Any, int]

    def __init__(self) -> None:
        super().__init__()
        self.lines = {}


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader with Compose's (YAML 1.2) scalars: only true/false are booleans, and an
    integer is decimal digits (so that `- 22:22` stays the port mapping it is, not 1342)."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    return int(str(loader.construct_scalar(node)))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


@dataclass(frozen=True)
class Port:
    """One port of a compose service: `target` inside its container, `published` on the host."""

    target: int
    published: int | None = None
    host_ip: str | None = None
    protocol: str = "tcp"

    @property
    def local(self) -> int:
        """The port the service listens on here: there is no container, so the published one."""
        return self.published if self.published is not None else self.target


@dataclass
class ComposeService:
    name: str
    line: int
    image: str | None = None
    build: str | None = None  # the build context, absolute
    dockerfile: str | None = None  # absolute
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    ports: list[Port] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    unset_env: list[str] = field(default_factory=list)  # `- NAME` without a value: from the shell
    depends_on: list[str] = field(default_factory=list)
    healthcheck: list[str] | None = None  # the test, as argv; [] when disabled
    volumes: list[tuple[str, str]] = field(default_factory=list)  # bind mounts: (host path, container path)
    working_dir: str | None = None


@dataclass
class Compose:
    path: str
    directory: str
    services: list[ComposeService]
    dotenv: dict[str, str]
    notes: list[str] = field(default_factory=list)  # found while reading (an unresolved ${VAR}, ...)


def find_compose(name: str | None) -> str:
    """The compose file to read: the one named, or the first of Compose's default names here."""
    if name:
        if not os.path.exists(name):
            raise ComposeError(f"{name}: no such file", "name the compose file: faultbox init --from-compose FILE")
        return name
    for candidate in _COMPOSE_NAMES:
        if os.path.exists(candidate):
            return candidate
    raise ComposeError(
        f"no compose file here (looked for {', '.join(_COMPOSE_NAMES)})",
        "name the compose file: faultbox init --from-compose path/to/docker-compose.yml",
    )


def load_compose(path: str) -> Compose:
    """Read and check a compose file; a file that does not parse is refused with file:line:col."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(f"{path}: cannot read it ({exc})", "name a readable compose file") from None
    return parse_compose(text, path)


def parse_compose(text: str, path: str = "docker-compose.yml") -> Compose:
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ComposeError(f"not valid YAML: {what}", "fix the YAML at that position", where) from None
    except yaml.YAMLError as exc:
        raise ComposeError(f"not valid YAML: {exc}", "fix the YAML", path) from None
    directory = os.path.dirname(os.path.abspath(path))
    compose = Compose(path=path, directory=directory, services=[], dotenv=_dotenv(os.path.join(directory, ".env")))
    if not isinstance(doc, _Map) or not isinstance(doc.get("services"), _Map):
        where = f"{path}:{doc.line}" if isinstance(doc, _Map) else path
        raise ComposeError(
            "a compose file is a mapping with a `services:` mapping in it",
            "check that this is the docker-compose.yml of the system",
            where,
        )
    services = doc["services"]
    if not services:
        raise ComposeError("`services:` is empty", "declare the system's services", f"{path}:{services.line}")
    reader = _Reader(compose)
    for name, body in services.items():
        compose.services.append(reader.service(str(name), body, services.lines.get(name, services.line)))
    known = {s.name for s in compose.services}
    for svc in compose.services:
        for dep in svc.depends_on:
            if dep not in known:
                raise ComposeError(
                    f'service "{svc.name}" depends on "{dep}", which the file does not declare',
                    "fix the name in depends_on",
                    f"{path}:{svc.line}",
                )
    return compose


class _Reader:
    def __init__(self, compose: Compose) -> None:
        self.compose = compose

    def where(self, line: int) -> str:
        return f"{self.compose.path}:{line}"

    def bad(self, line: int, what: str, hint: str) -> ComposeError:
        return ComposeError(what, hint, self.where(line))

    def interpolate(self, value: str, line: int) -> str:
        """`${VAR}` as Compose reads it (from .env; the shell's environment is not read, so that the
        spec does not depend on who generated it): the .env value, else the default, else empty."""

        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group("braced") or m.group("plain")
            op, default = m.group("op"), m.group("default") or ""
            if name in self.compose.dotenv and not (op in (":-", ":?") and self.compose.dotenv[name] == ""):
                return self.compose.dotenv[name]
            if op in (":-", "-"):
                return default
            self.compose.notes.append(
                f"${{{name}}} ({self.where(line)}) is not set in .env: read as empty; set the value in the spec"
            )
            return ""

        return _VAR.sub(one, value)

    def service(self, name: str, body: Any, line: int) -> ComposeService:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
            raise self.bad(line, f'service name "{name}" is not one faultbox can use', "use letters, digits, _ and -")
        if body is None:
            body = _Map()
            body.line = line
        if not isinstance(body, _Map):
            raise self.bad(line, f'service "{name}" is not a mapping', "give it image:, build:, ports: ...")
        svc = ComposeService(name=name, line=line)
        lines = body.lines

        def at(key: str) -> int:
            return lines.get(key, line)

        if "image" in body:
            svc.image = self.interpolate(str(body["image"]), at("image"))
        build = body.get("build")
        if build is not None:
            context, dockerfile = (
                (build.get("context", "."), build.get("dockerfile"))
                if isinstance(build, _Map)
                else (
                    build,
                    None,
                )
            )
            context = self.interpolate(str(context), at("build"))
            svc.build = context if "://" in context else os.path.normpath(os.path.join(self.compose.directory, context))
            if dockerfile:
                svc.dockerfile = os.path.normpath(os.path.join(svc.build, str(dockerfile)))
        if svc.image is None and svc.build is None:
            raise self.bad(line, f'service "{name}" has neither image: nor build:', "give it one of the two")
        for key in ("command", "entrypoint"):
            if body.get(key) is not None:
                setattr(svc, key, self.argv(body[key], at(key), f"{name}.{key}"))
        for i, item in enumerate(_as_list(body.get("ports"))):
            svc.ports.extend(self.ports(item, at("ports"), f"{name}.ports[{i}]"))
        for item in _as_list(body.get("expose")):
            for port in self.ports(str(item).split("/")[0], at("expose"), f"{name}.expose"):
                if all(p.target != port.target for p in svc.ports):
                    svc.ports.append(port)
        for env_file in _as_list(body.get("env_file")):
            self.env_file(svc, env_file, at("env_file"))
        self.environment(svc, body.get("environment"), at("environment"))
        svc.depends_on = self.depends_on(body.get("depends_on"), at("depends_on"), name)
        for link in _as_list(body.get("links")):
            dep = str(link).split(":")[0]
            if dep not in svc.depends_on:
                svc.depends_on.append(dep)
        svc.healthcheck = self.healthcheck(body.get("healthcheck"), at("healthcheck"))
        for item in _as_list(body.get("volumes")):
            mount = self.volume(item)
            if mount is not None:
                svc.volumes.append(mount)
        if body.get("working_dir") is not None:
            svc.working_dir = str(body["working_dir"])
        return svc

    def argv(self, value: Any, line: int, what: str) -> list[str]:
        if isinstance(value, str):
            try:
                return shlex.split(self.interpolate(value, line))
            except ValueError as exc:
                raise self.bad(line, f"{what}: {exc}", "fix the quoting") from None
        if isinstance(value, list) and all(isinstance(x, (str, int, float)) for x in value):
            return [self.interpolate(str(x), line) for x in value]
        raise self.bad(line, f"{what} must be a string or a list of strings", 'write e.g. ["python", "app.py"]')

    def ports(self, item: Any, line: int, what: str) -> list[Port]:
        """Short syntax ("80", "8080:80", "127.0.0.1:5432:5432", "9090-9091:8080-8081/udp") or long."""
        if isinstance(item, _Map):
            line = item.line
            try:
                target = int(str(self.interpolate(str(item["target"]), line)))
                published = item.get("published")
                pub = int(str(self.interpolate(str(published), line)).split("-")[0]) if published else None
            except (KeyError, ValueError):
                raise self.bad(
                    line, f"{what}: the long syntax needs target: (a port number)", "write target: 80"
                ) from None
            return [Port(target, pub, item.get("host_ip"), str(item.get("protocol", "tcp")))]
        if isinstance(item, int):
            return [Port(item)]
        text = self.interpolate(str(item), line)
        parsed = _short_port(text)
        if parsed is None:
            raise self.bad(
                line,
                f'{what}: "{text}" is not a port mapping',
                'write "PORT", "HOST:CONTAINER" or "IP:HOST:CONTAINER" (quoted)',
            )
        ip, published_text, target_text, proto = parsed
        targets = _port_range(target_text)
        published = _port_range(published_text) if published_text else []
        if len(published) > 1 and len(published) != len(targets):
            raise self.bad(line, f'{what}: "{text}": the ranges differ in length', "give ranges of equal length")
        out = []
        for i, target in enumerate(targets):
            pub = published[i] if i < len(published) else (published[0] if len(targets) == 1 and published else None)
            out.append(Port(target, pub, ip, proto))
        return out

    def env_file(self, svc: ComposeService, item: Any, line: int) -> None:
        path, required = (
            (item.get("path"), bool(item.get("required", True))) if isinstance(item, _Map) else (item, True)
        )
        full = os.path.join(self.compose.directory, str(path))
        if not os.path.exists(full):
            if required:
                raise self.bad(
                    line, f"env_file {path} of service {svc.name} does not exist", "create it, or remove the reference"
                )
            return
        svc.environment.update(_dotenv(full))

    def environment(self, svc: ComposeService, value: Any, line: int) -> None:
        if value is None:
            return
        pairs: list[tuple[str, Any]] = []
        if isinstance(value, _Map):
            pairs = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            for item in value:
                key, sep, val = str(item).partition("=")
                pairs.append((key.strip(), val if sep else None))
        else:
            raise self.bad(line, f"{svc.name}.environment must be a mapping or a list of NAME=VALUE", "fix it")
        for key, val in pairs:
            if val is None:
                if key in self.compose.dotenv:
                    svc.environment[key] = self.compose.dotenv[key]
                else:
                    svc.unset_env.append(key)
                continue
            if isinstance(val, bool):
                val = "true" if val else "false"
            svc.environment[key] = self.interpolate(str(val), line)

    def depends_on(self, value: Any, line: int, name: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, list):
            return [str(x) for x in value]
        if isinstance(value, _Map):
            return [str(x) for x in value]
        raise self.bad(line, f"{name}.depends_on must be a list or a mapping of service names", "fix it")

    def healthcheck(self, value: Any, line: int) -> list[str] | None:
        if not isinstance(value, _Map):
            return None
        if value.get("disable") is True:
            return []
        test = value.get("test")
        if isinstance(test, str):
            return ["CMD-SHELL", test]
        if isinstance(test, list):
            parts = [str(x) for x in test]
            return [] if parts[:1] == ["NONE"] else parts
        return None

    def volume(self, item: Any) -> tuple[str, str] | None:
        if isinstance(item, _Map):
            if item.get("type") != "bind" or not item.get("source") or not item.get("target"):
                return None
            source, target = str(item["source"]), str(item["target"])
        else:
            parts = str(item).split(":")
            if len(parts) < 2 or not parts[0].startswith((".", "/", "~")):
                return None  # a named volume: data only
            source, target = parts[0], parts[1]
        return os.path.normpath(os.path.join(self.compose.directory, os.path.expanduser(source))), target


_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
)
_RANGE = re.compile(r"\d+(?:-\d+)?")


def _short_port(text: str) -> tuple[str | None, str | None, str, str] | None:
    """(ip, published, target, protocol) of "[IP:][PUBLISHED:]TARGET[/PROTO]", None when it is not one."""
    body, _, proto = text.strip().partition("/")
    if proto and proto not in ("tcp", "udp", "sctp"):
        return None
    ip: str | None = None
    if body.startswith("["):
        ip, sep, body = body[1:].partition("]:")
        if not sep:
            return None
    parts = body.split(":")
    if len(parts) == 3 and ip is None:
        ip, parts = parts[0], parts[1:]
    if len(parts) > 2:
        return None
    target = parts[-1]
    published = parts[0] if len(parts) == 2 else None
    if not _RANGE.fullmatch(target) or (published and not _RANGE.fullmatch(published)):
        return None
    return ip or None, published or None, target, proto or "tcp"


def _port_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _dotenv(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out


# --- what each image is ---------------------------------------------------------------------------

_POSTGRES = {"postgres", "bitnami/postgresql"}
_POSTGRES_EXT = {"postgis/postgis", "pgvector/pgvector", "timescale/timescaledb", "timescale/timescaledb-ha"}
_REDIS = {"redis", "bitnami/redis"}
_REDIS_LIKE = {"redis/redis-stack", "redis/redis-stack-server", "valkey/valkey", "bitnami/valkey", "eqalpha/keydb"}
_KAFKA = {
    "bitnami/kafka",
    "confluentinc/cp-kafka",
    "confluentinc/cp-server",
    "apache/kafka",
    "apache/kafka-native",
    "redpandadata/redpanda",
    "vectorized/redpanda",
    "wurstmeister/kafka",
    "ubuntu/kafka",
}
_ZOOKEEPER = {"zookeeper", "bitnami/zookeeper", "confluentinc/cp-zookeeper", "wurstmeister/zookeeper"}
_HTTP_IMAGES = {"nginx", "httpd", "caddy", "traefik", "bitnami/nginx", "nginxinc/nginx-unprivileged"}
_HTTP_PORTS = {80, 3000, 4000, 5000, 5173, 8000, 8008, 8080, 8081, 8088, 8888, 9000}
_DEFAULT_PORT = {"postgres": 5432, "redis": 6379, "kafka": 9092}


def image_repo(image: str) -> tuple[str, str]:
    """`docker.io/library/postgres:16-alpine@sha256:...` -> ("postgres", "16-alpine")."""
    ref = image.split("@", 1)[0]
    tag = ""
    head, _, last = ref.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
    parts = [*(head.split("/") if head else []), last]
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts[0] == "library" and len(parts) > 1:
        parts = parts[1:]
    return "/".join(parts).lower(), tag


def image_kind(image: str | None) -> str:
    """postgres, redis, kafka (a server faultbox runs), zookeeper (not needed), or other."""
    if not image:
        return "other"
    repo, _ = image_repo(image)
    if repo in _POSTGRES or repo in _POSTGRES_EXT:
        return "postgres"
    if repo in _REDIS or repo in _REDIS_LIKE:
        return "redis"
    if repo in _KAFKA:
        return "kafka"
    if repo in _ZOOKEEPER:
        return "zookeeper"
    return "other"


# --- the spec -------------------------------------------------------------------------------------


@dataclass
class Translation:
    text: str
    attention: list[str]
    services: int


@dataclass
class _Iface:
    name: str
    protocol: str
    port: Port


@dataclass
class _Plan:
    """One compose service as it will be written."""

    svc: ComposeService
    kind: str  # postgres, redis, kafka, process
    var: str
    ifaces: list[_Iface] = field(default_factory=list)
    health: str | None = None  # the healthcheck expression
    health_path: str | None = None
    argv: list[str] | None = None  # the local command, when one was found
    cwd: str | None = None
    comments: list[str] = field(default_factory=list)
    options: list[tuple[str, str]] = field(default_factory=list)  # stdlib helper keyword -> expression
    seed_files: list[str] = field(default_factory=list)
    placeholder: bool = False


# Names a spec's top level cannot take without hiding what the generated code calls.
_RESERVED = {"postgres", "redis", "kafka", "main", "test"}


def translate(compose: Compose, spec_dir: str, source_name: str) -> Translation:
    """The spec text for `compose`, to be written in `spec_dir` (paths are made relative to it)."""
    from faultbox.spec.builtins import universe_names

    taken = set(universe_names()) | _RESERVED
    attention: list[str] = []
    by_name = {s.name: s for s in compose.services}
    dropped = [s.name for s in compose.services if image_kind(s.image) == "zookeeper"]
    plans: dict[str, _Plan] = {}
    for svc in _start_order(compose):
        if svc.name in dropped:
            continue
        kind = image_kind(svc.image) if svc.build is None else "process"
        var = _identifier(svc.name, taken)
        taken.add(var)
        plan = _Plan(svc=svc, kind="process" if kind in ("other", "process") else kind, var=var)
        plans[svc.name] = plan
    for name in dropped:
        attention.append(
            f"{name}: dropped ({by_name[name].image}): the Kafka-compatible broker faultbox runs needs no ZooKeeper"
        )
    ports_seen: dict[int, str] = {}
    for plan in plans.values():
        if plan.kind == "process":
            _plan_process(plan, spec_dir, attention)
            for iface in plan.ifaces:
                other = ports_seen.get(iface.port.local)
                if other:
                    attention.append(
                        f"{plan.svc.name}: port {iface.port.local} is also {other}'s: two local processes cannot "
                        "both listen on it; give one of them another port"
                    )
                ports_seen.setdefault(iface.port.local, plan.svc.name)
        else:
            _plan_server(plan, spec_dir, attention)
    writer = _Writer(compose, plans, spec_dir, source_name, attention)
    return Translation(writer.text(), attention, len(plans))


def _start_order(compose: Compose) -> list[ComposeService]:
    """The services with each after what it depends on (compose order otherwise); a cycle is refused."""
    by_name = {s.name: s for s in compose.services}
    out: list[ComposeService] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise ComposeError(
                f"depends_on has a cycle: {' -> '.join(cycle)}",
                "remove one depends_on edge (compose refuses the cycle too)",
                f"{compose.path}:{by_name[name].line}",
            )
        state[name] = 1
        for dep in by_name[name].depends_on:
            visit(dep, [*path, name])
        state[name] = 2
        out.append(by_name[name])

    for svc in compose.services:
        visit(svc.name, [])
    return out


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not base[:1].isalpha():
        base = "svc_" + base
    out = base
    if out in taken or out.startswith("test_") or out.startswith("_"):
        out = base + "_svc"
    n = 2
    while out in taken:
        out = f"{base}_svc{n}"
        n += 1
    return out


def _rel(path: str, spec_dir: str) -> str:
    rel = os.path.relpath(path, spec_dir)
    return "." if rel == "." else rel


def _plan_server(plan: _Plan, spec_dir: str, attention: list[str]) -> None:
    svc, env = plan.svc, plan.svc.environment
    repo, tag = image_repo(svc.image or "")
    name = svc.name
    plan.comments.append(f'compose service "{name}" (image {svc.image}): {plan.kind} from @faultbox/services.star')
    ignored: list[str] = []
    if plan.kind == "postgres":
        if tag and re.match(r"\d+", tag) and not tag.startswith("15"):
            attention.append(f"{name}: compose asks for {svc.image}; faultbox runs Debian's PostgreSQL 15")
        if repo in _POSTGRES_EXT:
            attention.append(f"{name}: {svc.image}'s extensions are not in Debian's PostgreSQL; install them")
        user = env.get("POSTGRES_USER") or env.get("POSTGRESQL_USERNAME")
        database = env.get("POSTGRES_DB") or env.get("POSTGRESQL_DATABASE") or user
        password = env.get("POSTGRES_PASSWORD") or env.get("POSTGRESQL_PASSWORD")
        for key, value in (("database", database), ("user", user), ("password", password)):
            if value and not (key != "password" and value == "postgres"):
                plan.options.append((key, _lit(value)))
        used = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRESQL_USERNAME", "POSTGRESQL_DATABASE"}
        used |= {"POSTGRESQL_PASSWORD", "POSTGRES_HOST_AUTH_METHOD", "PGDATA", "ALLOW_EMPTY_PASSWORD"}
        ignored = [k for k in env if k not in used]
        settings = _postgres_settings(svc.command or [])
        if settings:
            plan.options.append(("settings", "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in settings) + "}"))
        for source, target in svc.volumes:
            if not target.startswith("/docker-entrypoint-initdb.d"):
                continue
            files = [os.path.join(source, f) for f in sorted(os.listdir(source))] if os.path.isdir(source) else [source]
            for f in files:
                if f.endswith(".sql") and os.path.isfile(f):
                    plan.seed_files.append(_rel(f, spec_dir))
                elif f.endswith((".sh", ".sql.gz")):
                    attention.append(f"{name}: init script {_rel(f, spec_dir)} is not run; do its work in seed=")
    elif plan.kind == "redis":
        if repo in _REDIS_LIKE:
            attention.append(f"{name}: {svc.image} runs here as Redis (redis-server); check what it relied on")
        args = svc.command or []
        password = _flag(args, "--requirepass") or env.get("REDIS_PASSWORD")
        if password:
            plan.options.append(("password", _lit(password)))
        appendonly = _flag(args, "--appendonly")
        if appendonly == "no":
            plan.options.append(("appendonly", "False"))
        appendfsync = _flag(args, "--appendfsync")
        if appendfsync in ("everysec", "no"):
            plan.options.append(("appendfsync", _lit(appendfsync)))
        ignored = [k for k in env if k not in ("REDIS_PASSWORD", "ALLOW_EMPTY_PASSWORD")]
    else:
        ignored = [k for k in env if not k.startswith(("KAFKA_", "REDPANDA_", "CLUSTER_ID"))]
        if any(k.startswith("KAFKA_") for k in env):
            plan.comments.append(
                "its KAFKA_* settings (listeners, replication, ...) are the broker's own business here"
            )
    if ignored:
        plan.comments.append("not carried over: " + ", ".join(ignored))
    if plan.seed_files:
        plan.options.append(("seed", f"{plan.var}_seed"))
    iface_port = next((p for p in svc.ports), Port(_DEFAULT_PORT[plan.kind]))
    plan.ifaces.append(_Iface("main", plan.kind, iface_port))


def _postgres_settings(argv: list[str]) -> list[tuple[str, str]]:
    out = []
    for i, arg in enumerate(argv):
        if arg == "-c" and i + 1 < len(argv) and "=" in argv[i + 1]:
            key, _, value = argv[i + 1].partition("=")
            out.append((key, value))
    return out


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _plan_process(plan: _Plan, spec_dir: str, attention: list[str]) -> None:
    svc = plan.svc
    name = svc.name
    what = f"build {_rel(svc.build, spec_dir)}" if svc.build and "://" not in svc.build else f"image {svc.image}"
    plan.comments.append(f'compose service "{name}" ({what})')
    health_url = _health_url(svc.healthcheck or [])
    repo = image_repo(svc.image)[0] if svc.image else ""
    for i, port in enumerate(svc.ports):
        if port.protocol == "udp":
            protocol = "udp"
        elif (
            (health_url and health_url[0] in (port.target, port.local))
            or repo in _HTTP_IMAGES
            or port.target in _HTTP_PORTS
            or port.local in _HTTP_PORTS
        ):
            protocol = "http"
        elif repo in ("mysql", "mariadb", "bitnami/mysql", "bitnami/mariadb"):
            protocol = "mysql"
        else:
            protocol = "tcp"
        plan.ifaces.append(_Iface("main" if i == 0 else f"port_{port.target}", protocol, port))
        if port.published is not None and port.published != port.target:
            attention.append(
                f"{name}: listens on {port.target} in its container; here it must listen on {port.published} "
                "(the published port)"
            )
    if plan.ifaces:
        first = plan.ifaces[0]
        if health_url and any(i.port.target == health_url[0] or i.port.local == health_url[0] for i in plan.ifaces):
            iface = next(i for i in plan.ifaces if health_url[0] in (i.port.target, i.port.local))
            plan.health_path = health_url[1]
            plan.health = f"http({_lit(f'127.0.0.1:{iface.port.local}{health_url[1]}')})"
        elif svc.healthcheck == []:
            plan.health = None
        else:
            plan.health = f"tcp({_lit(f'127.0.0.1:{first.port.local}')})"
    # The command: compose's, else the Dockerfile's; usable when it runs here as written.
    argv = [*(svc.entrypoint or []), *(svc.command or [])]
    source = "compose's command"
    if not argv and svc.build and "://" not in svc.build:
        argv = _dockerfile_command(svc.dockerfile or os.path.join(svc.build, "Dockerfile"))
        source = "its Dockerfile's CMD"
    workdir = svc.build if svc.build and os.path.isdir(svc.build) else None
    local = _local_command(argv, workdir or spec_dir) if argv else None
    if local is not None:
        plan.argv = local
        plan.cwd = _rel(workdir, spec_dir) if workdir else None
        where = f" in {plan.cwd}/" if plan.cwd and plan.cwd != "." else ""
        attention.append(
            f"{name}: runs `{shlex.join(local)}`{where} ({source}); check that it runs outside a container"
        )
        return
    plan.placeholder = True
    plan.cwd = _rel(workdir, spec_dir) if workdir else None
    guess = f" ({source}: `{shlex.join(argv)}`)" if argv else ""
    if svc.build:
        plan.comments.append(
            f"TODO: no container engine runs here: replace /bin/false with the command that runs {name} "
            f"on this machine{guess}"
        )
        attention.append(f"{name}: give the local command that runs it, in place of /bin/false{guess}")
    else:
        plan.comments.append(
            f"TODO: no container engine runs here, and {svc.image} is not a server faultbox runs: replace "
            "/bin/false with a local command that runs it, or the service with a mock_service() (docs/mocks.md)"
        )
        attention.append(f"{name}: {svc.image} needs a local command or a mock_service() (it is /bin/false now)")


def _health_url(test: list[str]) -> tuple[int, str] | None:
    """(port, path) of an HTTP healthcheck on the service itself (curl/wget of localhost)."""
    text = " ".join(test[1:]) if test[:1] in (["CMD"], ["CMD-SHELL"]) else " ".join(test)
    m = re.search(r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0)(?::(\d+))?(/[^\s'\"|;&]*)?", text)
    if m is None:
        return None
    port = int(m.group(1)) if m.group(1) else 80
    return port, m.group(2) or "/"


def _dockerfile_command(path: str) -> list[str]:
    """The ENTRYPOINT + CMD of a Dockerfile (its last stage's), as argv; [] when it has none."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return []
    text = re.sub(r"\\\n", " ", text)
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"\s*(ENTRYPOINT|CMD|FROM)\s+(.*)$", line, re.IGNORECASE)
        if m is None:
            continue
        key, value = m.group(1).upper(), m.group(2).strip()
        if key == "FROM":
            found = {}
            continue
        try:
            parsed = json.loads(value) if value.startswith("[") else shlex.split(value)
        except (ValueError, json.JSONDecodeError):
            continue
        if isinstance(parsed, list):
            found[key] = [str(x) for x in parsed]
    return [*found.get("ENTRYPOINT", []), *found.get("CMD", [])]


_SCRIPT = (".py", ".js", ".mjs", ".cjs", ".ts", ".rb", ".sh", ".jar", ".php", ".pl")


def _local_command(argv: list[str], workdir: str) -> list[str] | None:
    """argv when it can run on this machine as written in `workdir`: the program is on PATH (or a
    file there) and no argument names a file that is missing here (a path inside the image)."""
    program = argv[0]
    if program in ("sh", "/bin/sh", "bash", "/bin/bash") and "-c" in argv:
        return None  # a shell line written for the image
    if "/" in program:
        full = os.path.join(workdir, program)
        if not (os.path.isfile(full) and os.access(full, os.X_OK)):
            return None
    elif shutil.which(program) is None:
        if program == "python" and shutil.which("python3"):
            program = "python3"
        else:
            return None
    for arg in argv[1:]:
        if arg.startswith("/") and not os.path.exists(arg):
            return None
        if arg.endswith(_SCRIPT) and not arg.startswith("-") and not os.path.exists(os.path.join(workdir, arg)):
            return None
    return [program, *argv[1:]]


def _lit(text: str) -> str:
    """A Starlark string literal."""
    return json.dumps(text, ensure_ascii=False)


class _Writer:
    def __init__(
        self, compose: Compose, plans: dict[str, _Plan], spec_dir: str, source_name: str, attention: list[str]
    ) -> None:
        self.compose = compose
        self.plans = plans
        self.spec_dir = spec_dir
        self.source = source_name
        self.attention = attention
        self.lines: list[str] = []

    def text(self) -> str:
        out = self.lines
        kinds = sorted(
            {p.kind for p in self.plans.values() if p.kind != "process"}, key=["postgres", "redis", "kafka"].index
        )
        out += [
            f"# faultbox spec translated from {self.source} by `faultbox init --from-compose`.",
            "#",
            "# There is no container engine here: every service runs as a local process, started fresh for",
            "# every test in depends_on order and stopped after it. PostgreSQL, Redis and Kafka-compatible",
            "# images became the servers of @faultbox/services.star (on free ports); the other services need",
            "# the command that runs them on this machine: read the TODO notes, and the list at the end.",
            "#",
            "#   faultbox check SPEC    load it, list its services and tests (starts nothing)",
            "#   faultbox plan SPEC     what each test will do, and what can never happen",
            "#   faultbox test SPEC     run the tests",
            "#",
            "# An env value that named another service (db:5432) now names faultbox's address of it",
            "# (db.main.addr): the process reaches it through the fault proxy in front of it.",
            "# The language: docs/spec-language.md; faults: docs/faults.md and docs/protocol-faults.md.",
            "",
        ]
        if kinds:
            out.append(f'load("@faultbox/services.star", {", ".join(_lit(k) for k in kinds)})')
            out.append("")
        for notes in self.compose.notes:
            self.attention.append(notes)
        out.append("# --- services " + "-" * 84)
        for plan in self.plans.values():
            out.append("")
            self.service(plan)
        self.tests()
        out.append("")
        out.append("# --- needs your attention " + "-" * 72)
        if self.attention:
            for i, note in enumerate(self.attention, 1):
                out.extend(_wrap(f"{i}. {note}", "# ", "#    "))
        else:
            out.append("# nothing: every service was translated")
        return "\n".join(out) + "\n"

    # --- one service

    def service(self, plan: _Plan) -> None:
        out = self.lines
        for comment in plan.comments:
            out.extend(_wrap(comment, "# ", "#   "))
        if plan.seed_files:
            out.append(f"def {plan.var}_seed():")
            for f in plan.seed_files:
                out.append(f"    {plan.var}.main.exec(sql = load_file({_lit(f)}))")
            out.append("")
        deps = [self.plans[d].var for d in plan.svc.depends_on if d in self.plans]
        if plan.kind != "process":
            kwargs = list(plan.options)
            if deps:
                kwargs.append(("depends_on", "[" + ", ".join(deps) + "]"))
            args = ", ".join([_lit(plan.svc.name), *(f"{k} = {v}" for k, v in kwargs)])
            out.append(f"{plan.var} = {plan.kind}({args})")
            return
        program = plan.argv[0] if plan.argv else "/bin/false"
        ifaces = [f"interface({_lit(i.name)}, {_lit(i.protocol)}, {i.port.local})" for i in plan.ifaces]
        out.append(f"{plan.var} = service({_lit(plan.svc.name)},")
        out.append("    " + ", ".join([_lit(program), *ifaces]) + ",")
        if plan.argv and len(plan.argv) > 1:
            out.append(f"    args = [{', '.join(_lit(a) for a in plan.argv[1:])}],")
        if plan.cwd and plan.cwd != ".":
            out.append(f"    cwd = {_lit(plan.cwd)},")
        env = self.env(plan)
        if env:
            out.append("    env = {")
            for key, expr in env:
                out.append(f"        {_lit(key)}: {expr},")
            out.append("    },")
        if deps:
            out.append(f"    depends_on = [{', '.join(deps)}],")
        if plan.health:
            out.append(f"    healthcheck = {plan.health},")
        out.append(")")

    def env(self, plan: _Plan) -> list[tuple[str, str]]:
        svc = plan.svc
        out = []
        hosts: dict[str, _Plan] = {}  # env key prefix (DB_ of DB_HOST) -> the service it names
        for key, value in svc.environment.items():
            target = self.plans.get(value)
            if target is not None and target is not plan and target.ifaces and _HOST_KEY.search(key):
                hosts[_HOST_KEY.sub("", key)] = target
        for key, value in svc.environment.items():
            target = self.plans.get(value)
            if target is not None and target is not plan and target.ifaces and _HOST_KEY.search(key):
                out.append((key, f"{target.var}.main.proxy_host"))
                continue
            paired = hosts.get(re.sub(r"_?PORT$", "", key)) if re.search(r"PORT$", key) else None
            if paired is not None and value.isdigit() and self.port_of(paired, int(value)) is not None:
                iface = self.port_of(paired, int(value))
                out.append((key, f"{paired.var}.{iface}.proxy_port"))
                continue
            out.append((key, self.rewrite(plan, value)))
        for key in svc.unset_env:
            self.attention.append(f"{svc.name}: env {key} comes from the shell in compose; set its value in the spec")
        return out

    def port_of(self, plan: _Plan, port: int) -> str | None:
        for iface in plan.ifaces:
            if port in (iface.port.target, iface.port.local):
                return iface.name
        if plan.kind != "process" and len(plan.ifaces) == 1:
            return plan.ifaces[0].name  # a server has one address, whatever the compose file called it
        return None

    def rewrite(self, plan: _Plan, value: str) -> str:
        """`value` as an expression: every host:port (or URL host) of another service replaced by
        its faultbox address."""
        parts: list[str] = []  # alternating literal text and code, as code
        pos = 0
        for m in _HOSTPORT.finditer(value):
            target = self.plans.get(m.group("host"))
            if target is None or target is plan or not target.ifaces:
                continue
            port = m.group("port")
            url_host = m.group("pre") in ("//", "@")
            if port is None and not url_host:
                continue
            iface = self.port_of(target, int(port)) if port else target.ifaces[0].name
            if iface is None:
                if len(target.ifaces) != 1:
                    self.attention.append(
                        f"{plan.svc.name}: {m.group('host')}:{port} is no port of {target.svc.name}; "
                        f"read as {target.ifaces[0].name}"
                    )
                iface = target.ifaces[0].name
            start = m.start("host")
            if start > pos:
                parts.append(_lit(value[pos:start]))
            parts.append(f"{target.var}.{iface}.addr")
            pos = m.end()
        if pos < len(value) or not parts:
            parts.append(_lit(value[pos:]))
        return " + ".join(parts)

    # --- tests and a fault

    def tests(self) -> None:
        out = self.lines
        out.append("")
        out.append("# --- tests: a step against each service, and an assertion " + "-" * 40)
        tests = 0
        first_app: _Plan | None = None
        for plan in self.plans.values():
            if plan.kind == "postgres":
                out += ["", f"def test_{plan.var}_answers():", f'    r = {plan.var}.main.query(sql = "SELECT 1")']
                out.append(f'    assert_true(r.ok, "{plan.svc.name} did not answer: " + str(r.error))')
            elif plan.kind == "redis":
                out += ["", f"def test_{plan.var}_answers():", f"    r = {plan.var}.main.ping()"]
                out.append(f'    assert_true(r.ok, "{plan.svc.name} did not answer: " + str(r.error))')
            elif plan.kind == "process" and plan.ifaces and plan.ifaces[0].protocol == "http":
                path = plan.health_path or "/"
                out += ["", f"def {plan.var}_request():", f"    return {plan.var}.main.get(path = {_lit(path)})"]
                out += ["", f"def test_{plan.var}_answers():", f"    r = {plan.var}_request()"]
                out.append(f'    assert_true(r.ok and r.status < 500, "{plan.svc.name} answered " + str(r.status))')
                if first_app is None:
                    first_app = plan
            else:
                continue
            tests += 1
        if tests == 0:
            plan = next(iter(self.plans.values()))
            out += ["", f"def test_{plan.var}_starts():"]
            out.append(f'    assert_eventually(type = "service_ready", service = {_lit(plan.svc.name)})')
        if first_app is None:
            out += [
                "",
                '# A fault: fault(svc, write = deny("EIO"), run = ...) for a syscall fault on a service,',
                "# fault(svc.main, error(...), run = ...) for a protocol fault; see docs/spec-language.md.",
            ]
            return
        dep = next((self.plans[d] for d in first_app.svc.depends_on if d in self.plans and self.plans[d].ifaces), None)
        app = first_app.var
        out += ["", "# --- a fault " + "-" * 85, ""]
        if dep is not None:
            out += [
                f"# A named failure mode: every request to {dep.svc.name} has its connection reset (a protocol fault",
                f"# in the proxy in front of it). The promise: {first_app.svc.name} still answers (an error is an",
                "# answer; hanging or crashing is not). Decide what it should answer, and say so in expect=.",
                f"{dep.var}_down = fault_assumption({_lit(dep.var + '_down')},",
                f"    description = {_lit(f'every request to {dep.svc.name} has its connection reset')},",
                f"    target = {dep.var}.main,",
                "    rules = [drop()],",
                ")",
                "",
                f"fault_scenario({_lit(app + '_answers_without_' + dep.var)},",
                f"    scenario = {app}_request,",
                f"    faults = {dep.var}_down,",
                f'    expect = lambda r: assert_true(r.ok, "{first_app.svc.name} did not answer: " + str(r.error)),',
                ")",
            ]
        else:
            out += [
                f"# A named failure mode: every write of {first_app.svc.name}'s processes (its replies included) waits",
                "# 100ms. The promise: it still answers.",
                f"{app}_slow = fault_assumption({_lit(app + '_slow')},",
                f"    description = {_lit(f'every write of {first_app.svc.name} waits 100ms')},",
                f"    target = {app},",
                '    write = delay("100ms"),',
                '    sendto = delay("100ms"),',
                ")",
                "",
                f"fault_scenario({_lit(app + '_answers_when_slow')},",
                f"    scenario = {app}_request,",
                f"    faults = {app}_slow,",
                "    expect = lambda r: assert_true(r.ok and r.status < 500),",
                ")",
            ]
        out += [
            "",
            '# More: fault(svc, fsync = deny("EIO"), run = ...), partition(a, b, run = ...), fault_matrix(...),',
            "# and the stdlib's recipes (faultbox recipes list): docs/spec-language.md.",
        ]


_HOST_KEY = re.compile(r"_?(HOST|HOSTNAME|SERVER|ADDR|ADDRESS)$", re.IGNORECASE)
_HOSTPORT = re.compile(
    r"(?P<pre>//|@|^|[\s,;=(\[])(?P<host>[A-Za-z][A-Za-z0-9_.-]*?)(?::(?P<port>\d+))?(?=$|[/\s,;?)\]#])"
)


def _wrap(text: str, first: str, rest: str, width: int = 100) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = first
    for word in words:
        if len(current) + len(word) + 1 > width and current.strip() not in ("#", first.strip()):
            lines.append(current.rstrip())
            current = rest
        current += ("" if current in (first, rest) else " ") + word
    lines.append(current.rstrip())
    return lines
