"""What a run decided where the spec left the choice open, and the places it could have decided
otherwise: the data of plan fan-out, schedules and replay.

A test's first (discovery) run records its *sites*: each named `choose()` in its body, each fault
with `max_fires=` (exhaustive probability), each `parallel(interleavings=)`. The runner then runs
one *leaf* per combination of the sites' options, each with its `Decisions` forced. A result keeps
the decisions its run took, so a bundle or a replay command can force them again.

The text form (`--leaf`, replay commands) is `;`-separated `kind.key=value` items:

    choose.mode=1              option index 1 of choose("mode", ...)
    fires.db:write=101         occurrences 1..3 of that fault: fire, don't, fire
    order.spec.star:30=<schedule>   how the branches of that parallel() were ordered (Schedule)
    off.db:fsync=1             leave that fault out (shrinking found the failure without it)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import Code, UsageError


class DecisionsError(UsageError):
    code = Code.BAD_OPTION


CHOOSE, FIRES, ORDER, OFF = "choose", "fires", "order", "off"
KINDS = (CHOOSE, FIRES, ORDER, OFF)


def fault_key(service: str, keyword: str, label: str = "") -> str:
    """A fault's name across runs of a test, for off.<key>: "db:fsync", "db:fsync[slow disk]"."""
    return f"{service}:{keyword}" + (f"[{label}]" if label else "")


@dataclass(frozen=True)
class Schedule:
    """How the cross-service steps of one parallel() call were ordered.

    `pct`: a randomised priority schedule: priorities and `depth - 1` priority change points drawn
    from `seed`; with an `index` (the leaves of one parallel() share the seed), draw number `index`
    *without replacement* from every such schedule of the call, so that N leaves are N different
    schedules. `permutation`: the services keep one fixed priority order, `order` (indices of the
    branches). `replay`: release the held calls in exactly this order of services, `releases`,
    as a recorded run did."""

    mode: str
    seed: int = 0
    depth: int = 1
    order: tuple[int, ...] = ()
    releases: tuple[str, ...] = ()
    index: int = -1  # pct: the draw's number without replacement (-1: an independent draw)

    def to_text(self) -> str:
        if self.mode == "pct":
            return f"pct:{self.seed}:{self.depth}" + (f":{self.index}" if self.index >= 0 else "")
        if self.mode == "permutation":
            return "perm:" + "/".join(str(i) for i in self.order)
        return "replay:" + "/".join(self.releases)

    @classmethod
    def from_text(cls, text: str) -> Schedule:
        mode, _, rest = text.partition(":")
        try:
            if mode == "pct":
                seed, _, more = rest.partition(":")
                depth, _, index = more.partition(":")
                return cls("pct", seed=int(seed), depth=int(depth or 1), index=int(index) if index else -1)
            if mode == "perm":
                return cls("permutation", order=tuple(int(i) for i in rest.split("/") if i))
            if mode == "replay":
                return cls("replay", releases=tuple(s for s in rest.split("/") if s))
        except ValueError:
            pass
        raise DecisionsError(
            f"schedule {text!r} is not one faultbox writes",
            "write pct:SEED:DEPTH[:INDEX], perm:0/1/2 or replay:svc/svc/..., as a failed leaf's replay command shows",
        )


@dataclass
class Site:
    """A place where a test's run could go more than one way, found by its discovery run."""

    kind: str  # CHOOSE, FIRES or ORDER
    key: str  # the choose() name; the fault's label or "svc:syscall"; the parallel()'s "file:line"
    options: list[Any]  # what each option index means, for reports (values, bit strings, schedules)
    location: str = ""

    @property
    def size(self) -> int:
        return len(self.options)


@dataclass
class Decisions:
    choices: dict[str, int] = field(default_factory=dict)
    fires: dict[str, str] = field(default_factory=dict)
    orders: dict[str, Schedule] = field(default_factory=dict)
    off: list[str] = field(default_factory=list)  # fault keys left out

    def __bool__(self) -> bool:
        return bool(self.choices or self.fires or self.orders or self.off)

    def to_text(self) -> str:
        items = [f"{CHOOSE}.{k}={v}" for k, v in self.choices.items()]
        items += [f"{FIRES}.{k}={v}" for k, v in self.fires.items()]
        items += [f"{ORDER}.{k}={v.to_text()}" for k, v in self.orders.items()]
        items += [f"{OFF}.{k}=1" for k in self.off]
        return ";".join(items)

    @classmethod
    def from_text(cls, text: str) -> Decisions:
        out = cls()
        for item in filter(None, (part.strip() for part in text.split(";"))):
            head, eq, value = item.partition("=")
            kind, dot, key = head.partition(".")
            if not eq or not dot or not key or kind not in KINDS:
                raise DecisionsError(
                    f"--leaf: {item!r} is not a decision",
                    "write kind.key=value items separated by ';', e.g. 'choose.mode=1;fires.db:write=101'",
                )
            if kind == CHOOSE:
                if not value.isdigit():
                    raise DecisionsError(f"--leaf: {item!r}: a choice is an option's index (0, 1, ...)")
                out.choices[key] = int(value)
            elif kind == OFF:
                if key not in out.off:
                    out.off.append(key)
            elif kind == FIRES:
                if not value or set(value) - {"0", "1"}:
                    raise DecisionsError(f"--leaf: {item!r}: fires are a string of 0 and 1, one per occurrence")
                out.fires[key] = value
            else:
                out.orders[key] = Schedule.from_text(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.to_text()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decisions:
        return cls.from_text(str(data.get("text", "")))


def leaf_count(sites: list[Site]) -> int:
    n = 1
    for s in sites:
        n *= max(1, s.size)
    return n


def leaf_decisions(sites: list[Site], index: int) -> Decisions:
    """Leaf `index` of the sites' cross product, in mixed-radix order (the first site varies
    slowest), as the decisions to force."""
    out = Decisions()
    digits: list[int] = []
    for s in reversed(sites):
        index, digit = divmod(index, max(1, s.size))
        digits.append(digit)
    for s, digit in zip(sites, reversed(digits), strict=True):
        option = s.options[digit] if s.options else None
        if s.kind == CHOOSE:
            out.choices[s.key] = digit
        elif s.kind == FIRES:
            out.fires[s.key] = str(option)
        else:
            assert isinstance(option, Schedule)
            out.orders[s.key] = option
    return out


__all__ = ["Decisions", "DecisionsError", "Schedule", "Site", "fault_key", "leaf_count", "leaf_decisions"]
