"""The normalized trace (`faultbox test --normalize FILE`): a run's traces with every value that
changes from one run to the next taken out, so that two runs of the same spec and seed give the same
file byte for byte, and `faultbox diff` can show where two runs really went apart.

What is taken out (docs/reproducing.md has the list with examples):

- process and thread ids (`pid`, `tid`), and those numbers wherever they appear in text;
- ephemeral ports (32768 and up: proxies' listen ports, clients' ports), in `host:port` and in text;
- timestamps (fields named like `ts`, `time`, `*_at`; ISO-8601, clock times and Unix times in
  text), durations (fields named like `duration_ms`, `*_ms`; `12ms`, `1.5s` in free text);
- run directories and temporary paths (`/tmp/faultbox-run-<hex>` → `<workdir>`,
  `/tmp/tmpXXXXXXXX` → `<tmp>`), UUIDs, PostgreSQL LSNs and transaction ids;
- proxy connection ids, renumbered in order of first appearance in the test, and a closed
  connection's byte counts (which depend on which side closed first);
- inode numbers of sockets and pipes (`socket:[123]` → `socket`);
- syscalls that were allowed without a path or address, or on a pipe, socket, anonymous inode
  or /dev/null, and allowed connects to the C library's own sockets (`/var/run/nscd/socket`): how
  many of those a service makes depends on buffering, caches and timing; a delayed call's
  `late_ms` (how late the delay ended);
- the seq and the vector clock's values, normalised to order: events are grouped per service
  into lanes (its lifecycle, faults, steps, syscalls, output, proxy, mock, wal, topic events; a
  proxy's or mock's events a lane per connection), each in the order its events entered the trace,
  which is their clock order. How lanes interleave (and so the raw clock values, which count every
  event of the service) depends on thread timing, and is left out.

The file is JSON with sorted keys, one event per line."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from faultbox.model.result import RunResult, TestResult

FORMAT = "faultbox-normalized-trace"
VERSION = 1

# Lanes of a service, in the order a file lists them. A type not named here is a lane of its own.
LANES: dict[str, str] = {
    "service_started": "lifecycle",
    "service_ready": "lifecycle",
    "service_exited": "lifecycle",
    "service_reset": "lifecycle",
    "fault_applied": "faults",
    "fault_removed": "faults",
    "fault_not_fired": "faults",
    "fault_off": "faults",
    "trace_applied": "faults",
    "trace_removed": "faults",
    "step_send": "steps",
    "step_recv": "steps",
    "syscall": "syscalls",
    "stdout": "output",
    "stderr": "output",
    "mock": "mock",
    "wal": "wal",
    "topic": "topic",
}
_LANE_ORDER = ["lifecycle", "faults", "steps", "syscalls", "output", "proxy", "mock", "wal", "topic"]
NO_SERVICE = "-"  # events of the run itself (teardown errors, a supervisor that died)

EPHEMERAL_PORT = 32768  # Linux's default ip_local_port_range starts here

_PID_KEYS = frozenset({"pid", "tid", "ppid", "pgid"})
_TIME_KEYS = frozenset({"ts", "time", "timestamp", "started", "ended", "created", "date", "when"})
_DURATION_KEYS = frozenset({"duration", "elapsed", "took", "latency", "uptime"})
_DURATION_SUFFIXES = ("_ms", "_us", "_ns", "_seconds", "_secs")
_CONN_KEYS = frozenset({"conn_id", "connection_id", "conn"})
_ID_KEYS = {"lsn": "<lsn>", "xid": "<xid>", "txid": "<xid>", "nextlsn": "<lsn>"}
# Fields present or not depending on timing: a delayed call's lateness past its delay.
_DROPPED_KEYS = ("late_ms",)
# Fields that say how a run was asked to behave, not what it did: a schedule's release is the same
# step whether a PCT policy chose it or a replay forced it.
_DROPPED_BY_TYPE = {"schedule": ("mode",)}
_FREE_TEXT_TYPES = frozenset({"stdout", "stderr", "mock", "topic", "wal"})

_INODE = re.compile(r"\b(socket|pipe|anon_inode):\[[^\]]*\]")
_WORKDIR = re.compile(r"(?:/var)?/tmp/faultbox-run-[0-9a-f]+")
_TMPFILE = re.compile(r"(?:/var)?/tmp/tmp[a-z0-9_]{8}\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?(?![\d])")
_CLOCK_TIME = re.compile(r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b")
_UNIX_TIME = re.compile(r"\b1[5-9]\d{8}(?:\d{3}|\.\d+)?\b")  # seconds (2017-2033), or milliseconds
_HOST_PORT = re.compile(r"(?<=[\w\].]):(\d{5})\b")
_DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|min)\b")


def normalize_run(result: RunResult) -> dict[str, Any]:
    """The normalized form of a run: its seed and variables (not compared by `diff`), and per test
    its outcome, its reason and its events in lanes."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "spec": os.path.basename(result.spec),
        "seed": result.seed,
        "variables": dict(sorted(result.variables.items())),
        "tests": [normalize_test(t) for t in result.tests],
    }
    if result.runs > 1:
        doc["runs"] = result.runs
    return doc


def normalize_test(test: TestResult) -> dict[str, Any]:
    scrub = Scrubber.learn(test)
    lanes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ev in test.events:
        fields = dict(ev.fields)
        if ev.type == "syscall" and _incidental(fields):
            continue
        for key in (*_DROPPED_KEYS, *_DROPPED_BY_TYPE.get(ev.type, ())):
            fields.pop(key, None)
        lane = LANES.get(ev.type) or ("proxy" if ev.type.startswith("proxy") else ev.type)
        conn = next((fields[k] for k in _CONN_KEYS if fields.get(k)), None)
        if conn is not None and lane in ("proxy", "mock"):
            # the connections of an interface interleave as the system's threads run: a lane each
            lane = f"{lane} {scrub.conn(conn)}"
        out: dict[str, Any] = {"type": ev.type}
        free = ev.type in _FREE_TEXT_TYPES
        if fields:
            out["fields"] = scrub.mapping(fields, free)
        if ev.has_native_data and not ev.mirrored:
            out["data"] = scrub.value(ev.data, "", True)
        lanes.setdefault((ev.service or NO_SERVICE, lane), []).append(out)
    doc: dict[str, Any] = {
        "name": test.name,
        "outcome": test.outcome.value,
        "reason": scrub.text(test.reason, True),
        "seed": test.seed,
        "lanes": [
            {"service": service, "lane": lane, "events": events}
            for (service, lane), events in sorted(lanes.items(), key=lambda kv: _lane_key(*kv[0]))
        ],
    }
    if test.runs:
        doc["run"] = next((r.run for r in test.runs if r.seed == test.seed), 1)
    return doc


def _lane_key(service: str, lane: str) -> tuple[int, str, int, str, int]:
    base, _, conn = lane.partition(" c")  # "proxy c12": the proxy's 12th connection of the test
    rank = _LANE_ORDER.index(base) if base in _LANE_ORDER else len(_LANE_ORDER)
    return (service == NO_SERVICE, service, rank, base, int(conn) if conn.isdigit() else 0)


def _incidental(fields: Mapping[str, str]) -> bool:
    """An allowed syscall on no file: a write to a pipe or socket, a read from one. Faulted calls
    and calls on named files and addresses are kept."""
    if fields.get("decision", "allow") != "allow":
        return False
    path = fields.get("path") or ""
    if fields.get("addr", "").startswith(("unix:/var/run/", "unix:/run/")):
        return True  # the C library's own sockets (nscd, systemd), asked or not as its caches go
    if fields.get("addr"):
        return False
    if not path:
        return True
    return path in ("/dev/null", "pipe", "socket") or path.startswith(("pipe:[", "socket:[", "anon_inode:"))


class Scrubber:
    """Replaces one test's run-specific values. It learns the test's process ids and ephemeral
    ports from the fields that carry them, then replaces those numbers in every text as well."""

    def __init__(self, pids: Iterable[str] = (), ports: Iterable[str] = ()) -> None:
        # Short pids (a container's 1, 7, 42) would replace unrelated numbers: only 3 digits and up.
        self._words = {p: "<pid>" for p in pids if len(p) >= 3} | {p: "<port>" for p in ports}
        self._learned: re.Pattern[str] | None = None
        if self._words:
            alternatives = "|".join(sorted(map(re.escape, self._words), key=len, reverse=True))
            self._learned = re.compile(rf"(?<![\w.])(?:{alternatives})(?![\w])")
        self._conns: dict[str, str] = {}

    @classmethod
    def learn(cls, test: TestResult) -> Scrubber:
        pids: set[str] = set()
        ports: set[str] = set()
        for ev in test.events:
            for key, value in ev.fields.items():
                if key in _PID_KEYS and value.isdigit():
                    pids.add(value)
                else:
                    for m in _HOST_PORT.finditer(value):
                        if int(m.group(1)) >= EPHEMERAL_PORT:
                            ports.add(m.group(1))
        return cls(pids, ports)

    def text(self, value: str, free: bool) -> str:
        """A string with run-specific values replaced; durations too in free text (a log line, a
        reason), not in faultbox's own fields, where `delay(500ms)` is part of the spec."""
        if not value:
            return value
        value = _INODE.sub(r"\1", value)
        value = _WORKDIR.sub("<workdir>", value)
        value = _TMPFILE.sub("<tmp>", value)
        value = _UUID.sub("<uuid>", value)
        value = _ISO_TIME.sub("<time>", value)
        value = _HOST_PORT.sub(_port, value)
        if free:
            value = _CLOCK_TIME.sub("<time>", value)
            value = _UNIX_TIME.sub("<time>", value)
            value = _DURATION.sub("<duration>", value)
        if self._learned is not None:
            value = self._learned.sub(lambda m: self._words[m.group(0)], value)
        return value

    def conn(self, conn_id: str) -> str:
        """A connection id renumbered in order of first appearance in the test: c1, c2, ..."""
        return self._conns.setdefault(conn_id, f"c{len(self._conns) + 1}")

    def mapping(self, fields: Mapping[str, Any], free: bool) -> dict[str, Any]:
        return {key: self.value(value, key, free) for key, value in fields.items()}

    def value(self, value: Any, key: str, free: bool) -> Any:
        lowered = key.lower()
        if isinstance(value, Mapping):
            return {str(k): self.value(v, str(k), free) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v, key, free) for v in value]
        replacement = _by_key(lowered)
        if replacement is not None and value not in (None, ""):
            return replacement
        if lowered in _CONN_KEYS and value not in (None, ""):
            return self.conn(str(value))
        if isinstance(value, str):
            return self.text(value, free)
        return value


def _by_key(key: str) -> str | None:
    if key in _PID_KEYS:
        return "<pid>"
    if key in _TIME_KEYS or key.endswith(("_at", "_time", "_ts", "timestamp")):
        return "<time>"
    if key in _DURATION_KEYS or key.endswith(_DURATION_SUFFIXES):
        return "<duration>"
    if key.startswith("bytes"):  # a relay's counts when a connection closes depend on who closed first
        return "<bytes>"
    return _ID_KEYS.get(key)


def _port(m: re.Match[str]) -> str:
    return ":<port>" if int(m.group(1)) >= EPHEMERAL_PORT else m.group(0)


# -- the file --------------------------------------------------------------------------------------


def dumps(doc: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, every event on a line of its own (so that a text diff of two files
    reads too), a newline at the end."""
    lines = ["{"]
    head = {k: v for k, v in doc.items() if k != "tests"}
    for key in sorted(head):
        lines.append(f"  {_j(key)}: {_j(head[key])},")
    lines.append('  "tests": [')
    tests = list(doc.get("tests") or [])
    for ti, test in enumerate(tests):
        lines.append("    {")
        for key in sorted(k for k in test if k != "lanes"):
            lines.append(f"      {_j(key)}: {_j(test[key])},")
        lines.append('      "lanes": [')
        lanes = list(test.get("lanes") or [])
        for li, lane in enumerate(lanes):
            lines.append(f'        {{"service": {_j(lane["service"])}, "lane": {_j(lane["lane"])}, "events": [')
            events = lane["events"]
            lines.extend(f"          {_event(ev)}{',' if ei < len(events) - 1 else ''}" for ei, ev in enumerate(events))
            lines.append("        ]}" + ("," if li < len(lanes) - 1 else ""))
        lines.append("      ]")
        lines.append("    }" + ("," if ti < len(tests) - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _event(ev: Mapping[str, Any]) -> str:
    """An event with its type first, then its fields and data (their keys sorted)."""
    parts = [f'"type": {_j(ev["type"])}']
    parts.extend(f"{_j(k)}: {_j(ev[k])}" for k in ("fields", "data") if k in ev)
    parts.extend(f"{_j(k)}: {_j(ev[k])}" for k in sorted(ev) if k not in ("type", "fields", "data"))
    return "{" + ", ".join(parts) + "}"


def _j(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "), default=str)


def write(result: RunResult, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(normalize_run(result)))
    os.replace(tmp, path)


def is_normalized(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("format") == FORMAT


__all__ = ["FORMAT", "Scrubber", "dumps", "is_normalized", "normalize_run", "normalize_test", "write"]
