"""`faultbox diff A B`: where two runs went apart. A and B are normalized traces (`faultbox test
--normalize FILE`) or results (`--output FILE`, normalized here), in any mix.

Tests are matched by name. For each test in both, its outcome and reason are compared, then each of
its lanes (a service's steps, syscalls, output...; trace/normalize.py) event by event: a lane's first
differing event is shown with the events before it that both runs share and the events from there on
in each. The seed, spec and variables of each side are shown but not compared: two seeds that
behave alike are the same."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from faultbox.report.json_results import ResultsError
from faultbox.trace.normalize import is_normalized, normalize_run

CONTEXT = 3  # events shown before a divergence, and after it on each side


@dataclass
class LaneDiff:
    service: str
    lane: str
    index: int  # of the first differing event, 0-based
    before: list[dict[str, Any]]  # the shared events just before it
    a: list[dict[str, Any]]  # A's events from it (up to CONTEXT)
    b: list[dict[str, Any]]
    a_len: int
    b_len: int


@dataclass
class TestDiff:
    __test__ = False  # not a pytest test class

    name: str
    status: str  # "same" | "different" | "only in A" | "only in B"
    outcome: tuple[str, str] = ("", "")
    reason: tuple[str, str] = ("", "")
    lanes: list[LaneDiff] = field(default_factory=list)


@dataclass
class TraceDiff:
    a_name: str
    b_name: str
    a_meta: dict[str, Any]
    b_meta: dict[str, Any]
    tests: list[TestDiff]

    @property
    def same(self) -> bool:
        return all(t.status == "same" for t in self.tests)

    def counts(self) -> dict[str, int]:
        out = {"same": 0, "different": 0, "only in A": 0, "only in B": 0}
        for t in self.tests:
            out[t.status] += 1
        return out


def load(path: str) -> dict[str, Any]:
    """A normalized trace from a file holding one, or a result to normalize."""
    from faultbox.report import json_results

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError:
        doc = None  # perhaps a results file torn by a kill: json_results reads what it can
    if is_normalized(doc):
        assert isinstance(doc, dict)
        return doc
    if doc is not None and not (isinstance(doc, dict) and "schema" in doc and "tests" in doc):
        raise ResultsError(
            f"{path}: neither a normalized trace (faultbox test --normalize FILE) nor a faultbox result "
            "(faultbox test --output FILE)"
        )
    return normalize_run(json_results.read(path))


def diff(a: Mapping[str, Any], b: Mapping[str, Any], a_name: str = "A", b_name: str = "B") -> TraceDiff:
    """Compare two normalized traces (pure)."""
    a_tests = {t["name"]: t for t in a.get("tests") or []}
    b_tests = {t["name"]: t for t in b.get("tests") or []}
    names = list(a_tests) + [n for n in b_tests if n not in a_tests]
    out = []
    for name in names:
        if name not in b_tests:
            out.append(TestDiff(name, "only in A"))
        elif name not in a_tests:
            out.append(TestDiff(name, "only in B"))
        else:
            out.append(_test_diff(a_tests[name], b_tests[name]))
    return TraceDiff(a_name, b_name, _meta(a), _meta(b), out)


def _meta(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("spec", "seed", "variables", "runs") if k in doc}


def _test_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> TestDiff:
    td = TestDiff(
        a["name"],
        "same",
        (a.get("outcome", ""), b.get("outcome", "")),
        (a.get("reason", ""), b.get("reason", "")),
    )
    a_lanes = {(lane["service"], lane["lane"]): lane["events"] for lane in a.get("lanes") or []}
    b_lanes = {(lane["service"], lane["lane"]): lane["events"] for lane in b.get("lanes") or []}
    keys = list(a_lanes) + [k for k in b_lanes if k not in a_lanes]
    for key in keys:
        ea, eb = a_lanes.get(key, []), b_lanes.get(key, [])
        if ea == eb:
            continue
        i = next((i for i, (x, y) in enumerate(zip(ea, eb, strict=False)) if x != y), min(len(ea), len(eb)))
        td.lanes.append(
            LaneDiff(
                key[0],
                key[1],
                i,
                ea[max(0, i - CONTEXT) : i],
                ea[i : i + CONTEXT],
                eb[i : i + CONTEXT],
                len(ea),
                len(eb),
            )
        )
    if td.lanes or td.outcome[0] != td.outcome[1] or td.reason[0] != td.reason[1]:
        td.status = "different"
    return td


# -- text --------------------------------------------------------------------------------------------


def render(d: TraceDiff, *, max_lanes: int = 4) -> list[str]:
    """The diff as lines: each side, each test's status, the first divergence of each lane that
    differs (at most max_lanes per test, the rest counted), then a summary."""
    lines = [f"A: {d.a_name}{_describe(d.a_meta)}", f"B: {d.b_name}{_describe(d.b_meta)}", ""]
    for t in d.tests:
        if t.status == "same":
            lines.append(f"= {t.name}: same")
            continue
        if t.status != "different":
            lines.append(f"≠ {t.name}: {t.status}")
            continue
        lines.append(f"≠ {t.name}: different")
        if t.outcome[0] != t.outcome[1]:
            lines.append(f"    outcome: A {t.outcome[0]}, B {t.outcome[1]}")
        if t.reason[0] != t.reason[1]:
            lines.append(f"    reason A: {_first_line(t.reason[0]) or '(none)'}")
            lines.append(f"    reason B: {_first_line(t.reason[1]) or '(none)'}")
        for ld in t.lanes[:max_lanes]:
            lines.append(
                f"    {ld.service} {ld.lane}: first difference at event {ld.index + 1} "
                f"(A has {ld.a_len}, B has {ld.b_len})"
            )
            for k, ev in enumerate(ld.before):
                lines.append(f"        {ld.index - len(ld.before) + k + 1:>4}  {describe(ev)}")
            for sign, events, total in (("-", ld.a, ld.a_len), ("+", ld.b, ld.b_len)):
                for k, ev in enumerate(events):
                    lines.append(f"      {sign} {ld.index + k + 1:>4}  {describe(ev)}")
                if ld.index >= total:
                    lines.append(f"      {sign}       (no more events)")
        if len(t.lanes) > max_lanes:
            rest = ", ".join(f"{ld.service} {ld.lane}" for ld in t.lanes[max_lanes:])
            lines.append(f"    … and {len(t.lanes) - max_lanes} more lanes differ: {rest}")
    c = d.counts()
    parts = [f"{len(d.tests)} tests", f"{c['same']} same", f"{c['different']} different"]
    parts += [f"{c[k]} {k}" for k in ("only in A", "only in B") if c[k]]
    lines.append("")
    lines.append(("traces are the same: " if d.same else "traces differ: ") + ", ".join(parts))
    return lines


def _describe(meta: Mapping[str, Any]) -> str:
    parts = []
    if "spec" in meta:
        parts.append(str(meta["spec"]))
    if "seed" in meta:
        parts.append(f"seed {meta['seed']}")
    if meta.get("runs"):
        parts.append(f"runs {meta['runs']}")
    for k, v in sorted((meta.get("variables") or {}).items()):
        parts.append(f"{k}={v}")
    return f"  ({', '.join(parts)})" if parts else ""


def describe(ev: Mapping[str, Any], limit: int = 160) -> str:
    """One normalized event on one line: its type, then its fields as k=v (sorted), then its data."""
    parts = [str(ev.get("type", "?"))]
    for key, value in sorted((ev.get("fields") or {}).items()):
        parts.append(f"{key}={_short(value)}")
    if "data" in ev:
        parts.append("data=" + _short(json.dumps(ev["data"], sort_keys=True, ensure_ascii=False, default=str)))
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


__all__ = ["LaneDiff", "TestDiff", "TraceDiff", "describe", "diff", "load", "render"]
