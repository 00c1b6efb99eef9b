"""Deciding with protocol rules: which installed rule a request matches, and whether it fires.

Rules are checked in the order the runner installs them (innermost scope first). `delay` rules
add up; the first matching rule with any other action decides what happens to the request (after
its own `delay`, when it has one: `error(status=504, delay="5s")` answers late).
A rule's probability is drawn from its own stream, seeded from the run seed and the rule's
identity, so the n-th request a rule matches gets the same draw in every run with that seed.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from faultbox._util.globs import path_match
from faultbox._util.seeds import rule_seed
from faultbox.model.proxy import ProxyAction, ProxyFault, ProxyRule


@dataclass(frozen=True, slots=True)
class Installed:
    """A rule as the runner hands it to a proxy: its id, the key its random stream derives from,
    and the assumption it came from (for events)."""

    id: int
    rule: ProxyRule
    key: str
    assumption: str = ""


@dataclass(eq=False)
class LiveRule:
    installed: Installed
    rng: random.Random
    matched: int = 0
    fired: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def fault(self) -> ProxyFault:
        return self.installed.rule.fault

    def draw(self) -> bool:
        """Count a match and decide whether the rule fires for it."""
        with self.lock:
            self.matched += 1
            if self.fault.times and self.fired >= self.fault.times:
                return False  # used up: a transient failure that has passed
            p = self.fault.probability
            hit = p >= 1.0 or (p > 0.0 and self.rng.random() < p)
            if hit:
                self.fired += 1
            return hit


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one request: wait `delay` seconds, then apply `rule` (None: forward it).
    `delays` are the delay rules that fired, for the trace."""

    delay: float
    rule: LiveRule | None
    delays: tuple[LiveRule, ...] = ()

    @property
    def action(self) -> ProxyAction | None:
        return self.rule.fault.action if self.rule is not None else None


class RuleBook:
    """The rules installed on one interface's proxy. Replaced whole by the runner (a tuple swap,
    so a request in flight sees either the old or the new list, never half of each)."""

    def __init__(self, run_seed: int = 0) -> None:
        self.run_seed = run_seed
        self._live: tuple[LiveRule, ...] = ()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._live)

    def set(self, rules: Sequence[Installed]) -> dict[int, tuple[int, int, int]]:
        """Install exactly `rules`; returns (matched, fired, 0) of each rule removed."""
        with self._lock:
            by_id = {lr.installed.id: lr for lr in self._live}
            live: list[LiveRule] = []
            for inst in rules:
                lr = by_id.pop(inst.id, None)
                if lr is None:
                    lr = LiveRule(inst, random.Random(rule_seed(self.run_seed, inst.key)))
                live.append(lr)
            self._live = tuple(live)
        return {rid: (lr.matched, lr.fired, 0) for rid, lr in by_id.items()}

    def decide(self, request: Mapping[str, str | None]) -> Verdict | None:
        """The verdict for a request described by its matcher fields (method, path, query, command,
        key, topic); None when no rule fires."""
        live = self._live
        if not live:
            return None
        delay = 0.0
        delays: list[LiveRule] = []
        for lr in live:
            fault = lr.fault
            if fault.action is ProxyAction.DUPLICATE and request.get("method") not in (None, "produce"):
                continue
            if not matches(fault, request) or not lr.draw():
                continue
            if fault.action is ProxyAction.DELAY:
                delay += fault.delay
                delays.append(lr)
                continue
            return Verdict(delay + fault.delay, lr, tuple(delays))
        if delays:
            return Verdict(delay, None, tuple(delays))
        return None


def matches(fault: ProxyFault, request: Mapping[str, str | None]) -> bool:
    """Every matcher of the fault matches the request. A request that has no value for a matcher
    (a Redis PING has no key) never matches it, so `key="*"` cannot catch a handshake."""
    for name, pattern in fault.matchers:
        value = request.get(name)
        if value is None or not _MATCHERS.get(name, _glob)(value, pattern):
            return False
    return True


@lru_cache(maxsize=2048)
def _regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _glob(value: str, pattern: str) -> bool:
    """`*` matches anything (topics and keys have no segments): Redis keys, Kafka topics."""
    return _regex(pattern, False).match(value) is not None


def _glob_nocase(value: str, pattern: str) -> bool:
    return _regex(pattern, True).match(value) is not None


def _path(value: str, pattern: str) -> bool:
    """URL paths: `*` within one segment, `**` across segments; the query string is not part of it."""
    return path_match(value.split("?", 1)[0], pattern)


def _method(value: str, pattern: str) -> bool:
    """Methods, commands and Kafka API names compare without case. For TCP the "method" is a prefix
    of the connection's first bytes (the codec passes those bytes and the pattern matches a prefix)."""
    return _glob_nocase(value, pattern)


_SQL_SPACE = re.compile(r"\s+")
_SQL_PARAM = re.compile(r"\$(?:\d+|\?)|\?")


def canonical_sql(sql: str) -> str:
    """A statement as a query matcher sees it: trimmed, no trailing `;`, whitespace collapsed,
    placeholders ($1, ?) written `$?`. Case is ignored by the comparison itself."""
    text = _SQL_SPACE.sub(" ", sql.strip()).rstrip(";").strip()
    return _SQL_PARAM.sub("$?", text)


@lru_cache(maxsize=2048)
def _canonical_pattern(pattern: str) -> str:
    return canonical_sql(pattern)


def _query(value: str, pattern: str) -> bool:
    return _glob_nocase(canonical_sql(value), _canonical_pattern(pattern))


_MATCHERS = {
    "method": _method,
    "command": _method,
    "path": _path,
    "query": _query,
    "key": _glob,
    "topic": _glob,
}
