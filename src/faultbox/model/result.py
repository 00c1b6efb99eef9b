"""Results as data: outcomes, verdicts, violations, per-test and per-run results (DECISIONS §12).

Reporters read only these (or their dicts), never live runner objects."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import HINTS, Code
from faultbox.model.event import Event

SCHEMA_VERSION = 1


class Verdict(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    INCONCLUSIVE = "inconclusive"
    HALTED = "halted"


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    EXPECTATION_VIOLATED = "expectation_violated"
    FAULT_BYPASSED = "fault_bypassed"
    ERRORED = "errored"
    INCONCLUSIVE = "inconclusive"
    HALTED = "halted"

    @property
    def verdict(self) -> Verdict:
        return _VERDICT[self]

    @property
    def mark(self) -> str:
        return _MARK[self]


_VERDICT = {
    Outcome.PASSED: Verdict.PASS,
    Outcome.FAILED: Verdict.FAIL,
    Outcome.EXPECTATION_VIOLATED: Verdict.FAIL,
    Outcome.FAULT_BYPASSED: Verdict.FAIL,
    Outcome.ERRORED: Verdict.ERROR,
    Outcome.INCONCLUSIVE: Verdict.INCONCLUSIVE,
    Outcome.HALTED: Verdict.HALTED,
}
_MARK = {
    Outcome.PASSED: "✓",
    Outcome.FAILED: "✗",
    Outcome.EXPECTATION_VIOLATED: "≠",
    Outcome.FAULT_BYPASSED: "∅",
    Outcome.ERRORED: "!",
    Outcome.INCONCLUSIVE: "?",
    Outcome.HALTED: "⊘",
}


@dataclass
class Violation:
    """The first monitor violation of a test."""

    monitor: str
    message: str
    seq: int
    event: dict[str, Any]
    before: list[dict[str, Any]] = field(default_factory=list)
    location: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Violation:
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "message": self.message,
            "seq": self.seq,
            "event": self.event,
            "before": self.before,
            "location": self.location,
        }


@dataclass
class Diagnostic:
    level: str  # "error" | "warning" | "info"
    code: str  # a faultbox.errors.Code value
    message: str
    service: str = ""
    syscall: str = ""
    hint: str = ""  # what to do about it: the code's entry in the table of codes, unless given

    def __post_init__(self) -> None:
        if not self.hint and self.code in Code.__members__:
            self.hint = HINTS[Code(self.code)]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v != ""}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnostic:
        return cls(**d)


@dataclass
class FaultRecord:
    """A fault rule that was active during a test, with what it did. For a protocol fault,
    `keyword` is the interface, `decision` the rule (`error(path=/x, status=503)`), `syscalls` empty
    and `protocol` set; `matched` counts the requests it matched, `fired` those it acted on."""

    service: str
    keyword: str
    decision: str
    syscalls: list[str]
    label: str = ""
    matched: int = 0
    fired: int = 0
    unresolved_paths: int = 0
    assumption: str = ""
    op: str = ""  # the named op, or "partition" for the rules of a partition()
    protocol: str = ""  # a protocol fault's protocol ("" for syscall faults)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultRecord:
        return cls(**d)


@dataclass
class RunRecord:
    """One run of a test repeated with `--runs N`: its number (from 1), the seed that replays it
    alone, and how it ended."""

    run: int
    seed: int
    outcome: Outcome
    reason: str = ""
    duration_ms: int = 0
    replay: str = ""  # for a run that did not pass

    @property
    def verdict(self) -> Verdict:
        return self.outcome.verdict

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run": self.run,
            "seed": self.seed,
            "outcome": self.outcome.value,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
        }
        if self.replay:
            out["replay"] = self.replay
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        return cls(
            run=int(d["run"]),
            seed=int(d["seed"]),
            outcome=Outcome(d["outcome"]),
            reason=d.get("reason", ""),
            duration_ms=int(d.get("duration_ms", 0)),
            replay=d.get("replay", ""),
        )


@dataclass
class LeafRecord:
    """One leaf of a test that fans out (choose(), max_fires=, parallel(interleavings=)): its index
    in the cross product of the test's sites, the decisions it forced, and how it ended."""

    leaf: int
    decisions: str  # Decisions text: what --leaf forces to run this leaf alone
    outcome: Outcome
    label: str = ""  # the choices as people read them: mode="fast", db:write=fire/skip
    reason: str = ""
    duration_ms: int = 0
    replay: str = ""

    @property
    def verdict(self) -> Verdict:
        return self.outcome.verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf,
            "decisions": self.decisions,
            "label": self.label,
            "outcome": self.outcome.value,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
            "replay": self.replay,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeafRecord:
        return cls(
            leaf=int(d["leaf"]),
            decisions=d.get("decisions", ""),
            outcome=Outcome(d["outcome"]),
            label=d.get("label", ""),
            reason=d.get("reason", ""),
            duration_ms=int(d.get("duration_ms", 0)),
            replay=d.get("replay", ""),
        )


@dataclass
class ShrinkRecord:
    """The smallest failing case shrinking found for a failed test: the decisions that replay it
    (with --leaf), what was taken away, and how many runs the search took."""

    decisions: str
    removed: str  # "without db:fsync; w fires 1 of 3 (was 3)"
    runs: int
    reason: str = ""
    replay: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShrinkRecord:
        return cls(
            decisions=d.get("decisions", ""),
            removed=d.get("removed", ""),
            runs=int(d.get("runs", 0)),
            reason=d.get("reason", ""),
            replay=d.get("replay", ""),
        )


# How bad a run's verdict is, for the verdict of a test run several times: its worst run's.
SEVERITY = {Verdict.PASS: 0, Verdict.HALTED: 1, Verdict.INCONCLUSIVE: 2, Verdict.FAIL: 3, Verdict.ERROR: 4}


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    name: str
    outcome: Outcome
    reason: str = ""
    duration_ms: int = 0
    seed: int = 0
    location: str = ""  # file:line of the failure in the spec (the definition when it passed)
    defined_at: str = ""  # file:line where the test (or its fault scenario / matrix) is declared
    code: str = ""  # the error code of an errored or infrastructure-failed test (e.g. FAULT_NOT_FILTERABLE)
    started: float = 0.0  # wall-clock start (unix seconds)
    expectation: str = ""  # what judged the result: expect_success(), a lambda, an override...
    timings: dict[str, int] = field(default_factory=dict)  # ms spent starting services, in the body, stopping
    events: list[Event] = field(default_factory=list)
    violation: Violation | None = None
    faults: list[FaultRecord] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # expected/actual, nearest events
    return_value: str = ""
    matrix: tuple[str, str] | None = None
    assumptions: list[str] = field(default_factory=list)
    replay: str = ""
    # With --runs N: every run of the test, in order (empty for a test run once). The rest of the
    # result is its worst run's (the first of them): outcome, reason, seed, replay, events.
    runs: list[RunRecord] = field(default_factory=list)
    # The decisions this run took at fan-out sites (model.decisions text; "" when it met none), and
    # for a test that fanned out, every leaf (the rest of the result is its worst leaf's).
    decisions: str = ""
    leaves: list[LeafRecord] = field(default_factory=list)
    shrunk: ShrinkRecord | None = None  # a failed test: the smallest failing case found
    bundle: str = ""  # the failure bundle (.fb) written for this test, if any

    @property
    def verdict(self) -> Verdict:
        return self.outcome.verdict

    @property
    def failed_leaves(self) -> list[LeafRecord]:
        """The leaves that did not pass (halted ones aside)."""
        return [leaf for leaf in self.leaves if SEVERITY[leaf.verdict] >= SEVERITY[Verdict.INCONCLUSIVE]]

    @property
    def failed_runs(self) -> list[RunRecord]:
        """The runs that did not pass (halted ones aside, as a halted test is not a failure)."""
        return [r for r in self.runs if SEVERITY[r.verdict] >= SEVERITY[Verdict.INCONCLUSIVE]]

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "verdict": self.verdict.value,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "location": self.location,
            "defined_at": self.defined_at,
            "code": self.code,
            "started": self.started,
            "expectation": self.expectation,
            "duration_ms": self.duration_ms,
            "timings": self.timings,
            "seed": self.seed,
            "replay": self.replay,
            "assumptions": self.assumptions,
            "matrix": list(self.matrix) if self.matrix else None,
            "violation": self.violation.to_dict() if self.violation else None,
            "faults": [f.to_dict() for f in self.faults],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "details": self.details,
            "return_value": self.return_value,
            "event_count": len(self.events),
        }
        if self.runs:
            out["runs"] = [r.to_dict() for r in self.runs]
        if self.decisions:
            out["decisions"] = self.decisions
        if self.leaves:
            out["leaves"] = [leaf.to_dict() for leaf in self.leaves]
        if self.shrunk is not None:
            out["shrunk"] = self.shrunk.to_dict()
        if self.bundle:
            out["bundle"] = self.bundle
        if with_events:
            out["events"] = [e.to_dict() for e in self.events]
        return out

    @classmethod
    def from_dict(cls, t: dict[str, Any]) -> TestResult:
        violation = t.get("violation")
        matrix = t.get("matrix")
        return cls(
            name=t["name"],
            outcome=Outcome(t["outcome"]),
            reason=t.get("reason", ""),
            duration_ms=int(t.get("duration_ms", 0)),
            seed=int(t.get("seed", 0)),
            location=t.get("location", ""),
            defined_at=t.get("defined_at", ""),
            code=t.get("code", ""),
            started=float(t.get("started", 0.0)),
            expectation=t.get("expectation", ""),
            timings=dict(t.get("timings") or {}),
            events=[Event.from_dict(e) for e in t.get("events") or []],
            violation=Violation.from_dict(violation) if violation else None,
            faults=[FaultRecord.from_dict(f) for f in t.get("faults") or []],
            diagnostics=[Diagnostic.from_dict(g) for g in t.get("diagnostics") or []],
            details=dict(t.get("details") or {}),
            return_value=t.get("return_value", ""),
            matrix=(matrix[0], matrix[1]) if matrix else None,
            assumptions=list(t.get("assumptions") or []),
            replay=t.get("replay", ""),
            runs=[RunRecord.from_dict(r) for r in t.get("runs") or []],
            decisions=t.get("decisions", ""),
            leaves=[LeafRecord.from_dict(leaf) for leaf in t.get("leaves") or []],
            shrunk=ShrinkRecord.from_dict(t["shrunk"]) if t.get("shrunk") else None,
            bundle=t.get("bundle", ""),
        )


@dataclass
class MatrixCell:
    scenario: str
    assumption: str
    test: str
    outcome: Outcome | None  # None: excluded
    reason: str = ""
    duration_ms: int = 0
    leaves: tuple[int, int] | None = None  # a cell whose test fanned out: (leaves passed, leaves)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "fault": self.assumption,
            "test": self.test,
            "outcome": self.outcome.value if self.outcome else "excluded",
            "reason": self.reason,
            "duration_ms": self.duration_ms,
        }
        if self.leaves is not None:
            out["leaves_passed"], out["leaves"] = self.leaves
        return out

    @classmethod
    def from_dict(cls, c: dict[str, Any]) -> MatrixCell:
        return cls(
            scenario=c["scenario"],
            assumption=c["fault"],
            test=c["test"],
            outcome=None if c["outcome"] == "excluded" else Outcome(c["outcome"]),
            reason=c.get("reason", ""),
            duration_ms=int(c.get("duration_ms", 0)),
            leaves=(int(c["leaves_passed"]), int(c["leaves"])) if "leaves" in c else None,
        )


@dataclass
class MatrixResult:
    scenarios: list[str]
    assumptions: list[str]
    cells: list[MatrixCell]

    def cell(self, scenario: str, assumption: str) -> MatrixCell | None:
        for c in self.cells:
            if c.scenario == scenario and c.assumption == assumption:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        ran = [c for c in self.cells if c.outcome is not None]
        return {
            "scenarios": self.scenarios,
            "faults": self.assumptions,
            "cells": [c.to_dict() for c in self.cells],
            "total": len(ran),
            "passed": sum(1 for c in ran if c.outcome is Outcome.PASSED),
            "failed": sum(1 for c in ran if c.outcome is not Outcome.PASSED),
        }

    @classmethod
    def from_dict(cls, m: dict[str, Any]) -> MatrixResult:
        return cls(
            scenarios=list(m["scenarios"]),
            assumptions=list(m["faults"]),
            cells=[MatrixCell.from_dict(c) for c in m["cells"]],
        )


@dataclass(frozen=True)
class Shard:
    """Which part of a suite a run ran: shard `index` of `count` (1-based), and every test the
    whole suite selected, in the suite's order, so that merged shards read as one run."""

    index: int
    count: int
    suite: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count, "suite": list(self.suite)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Shard:
        return cls(int(d["index"]), int(d["count"]), tuple(str(n) for n in d["suite"]))


class ExitCode(enum.IntEnum):
    OK = 0
    USAGE = 1
    FAILED = 2
    INCONCLUSIVE = 3


@dataclass
class RunResult:
    spec: str
    seed: int
    started: float
    duration_ms: int = 0
    tests: list[TestResult] = field(default_factory=list)
    matrix: MatrixResult | None = None
    interrupted: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # faultbox version, kernel, python
    shard: Shard | None = None  # set when this run is one shard of a suite (--shard K/N)
    runs: int = 1  # --runs N: each test ran up to N times, with seeds derived from `seed`
    runs_all: bool = False  # --runs-all: a test's runs went on after a failing one

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for t in self.tests:
            out[t.verdict.value] += 1
        return out

    @property
    def exit_code(self) -> ExitCode:
        c = self.counts()
        if c["fail"] or c["error"] or self.interrupted:
            return ExitCode.FAILED
        if c["inconclusive"]:
            return ExitCode.INCONCLUSIVE
        return ExitCode.OK

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "spec": self.spec,
            "seed": self.seed,
            "started": self.started,
            "duration_ms": self.duration_ms,
            "counts": self.counts(),
            "interrupted": self.interrupted,
            "variables": self.variables,
            "environment": self.environment,
            "tests": [t.to_dict(with_events) for t in self.tests],
            "matrix": self.matrix.to_dict() if self.matrix else None,
            "shard": self.shard.to_dict() if self.shard else None,
            "runs": self.runs,
            "runs_all": self.runs_all,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        matrix = d.get("matrix")
        shard = d.get("shard")
        return cls(
            spec=d["spec"],
            seed=int(d["seed"]),
            started=float(d["started"]),
            duration_ms=int(d.get("duration_ms", 0)),
            tests=[TestResult.from_dict(t) for t in d["tests"]],
            matrix=MatrixResult.from_dict(matrix) if matrix else None,
            interrupted=bool(d.get("interrupted", False)),
            variables=dict(d.get("variables") or {}),
            environment=dict(d.get("environment") or {}),
            shard=Shard.from_dict(shard) if shard else None,
            runs=int(d.get("runs", 1)),
            runs_all=bool(d.get("runs_all", False)),
        )
