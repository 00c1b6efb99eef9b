"""JUnit XML, for CI systems that show test results (GitLab, Jenkins, GitHub test reporters).

One <testsuite> per run (named after the spec), one <testcase> per test. Failed verdicts become
<failure>, errored tests <error>, inconclusive and halted tests <skipped>: CI then shows them as
"not a pass" without counting them as regressions. The failure body carries everything needed to act
on it without the HTML report: reason, location, expected/actual, the violating event, the nearest
events and the replay command."""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from typing import Any

from faultbox.model.event import Event
from faultbox.model.result import Outcome, RunResult, TestResult, Verdict

# Characters XML 1.0 cannot carry at all, not even escaped: control characters (ANSI colour codes from
# service logs are the usual ones) and lone surrogates. ElementTree would write them raw and produce a
# file no CI parser accepts, so they are spelled out instead.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_FAILURE = (Outcome.FAILED, Outcome.EXPECTATION_VIOLATED, Outcome.FAULT_BYPASSED)
_SKIPPED = (Outcome.INCONCLUSIVE, Outcome.HALTED)


def render(result: RunResult) -> str:
    root = ET.Element("testsuites", _suite_attrs("faultbox", result))
    suite = ET.SubElement(root, "testsuite", _suite_attrs(result.spec, result))
    suite.set("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(result.started)))
    _properties(suite, result)
    classname = _classname(result.spec)
    for test in result.tests:
        _testcase(suite, test, classname)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(result: RunResult, path: str) -> None:
    text = render(result)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)  # a CI step reading the file never sees half of it


# -- structure -------------------------------------------------------------------------------


def _suite_attrs(name: str, result: RunResult) -> dict[str, str]:
    counts = result.counts()
    skipped = sum(1 for t in result.tests if t.outcome in _SKIPPED)
    return {
        "name": _clean(name),
        "tests": str(len(result.tests)),
        "failures": str(counts[Verdict.FAIL.value]),
        "errors": str(counts[Verdict.ERROR.value]),
        "skipped": str(skipped),
        "time": _seconds(result.duration_ms),
    }


def _properties(suite: ET.Element, result: RunResult) -> None:
    # The seed is what makes a CI failure reproducible locally; keep it next to the results.
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "seed", "value": str(result.seed)})
    ET.SubElement(props, "property", {"name": "interrupted", "value": str(result.interrupted).lower()})
    if result.runs > 1:
        ET.SubElement(props, "property", {"name": "runs", "value": str(result.runs)})
    for key, value in sorted(result.variables.items()):
        ET.SubElement(props, "property", {"name": _clean(f"var.{key}"), "value": _clean(value)})


def _testcase(suite: ET.Element, test: TestResult, classname: str) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        {"name": _clean(test.name), "classname": classname, "time": _seconds(test.duration_ms)},
    )
    if test.outcome in _FAILURE:
        _problem(case, "failure", test)
    elif test.outcome is Outcome.ERRORED:
        _problem(case, "error", test)
    elif test.outcome in _SKIPPED:
        skipped = ET.SubElement(case, "skipped", {"message": _clean(_headline(test))})
        skipped.text = _clean(_body(test))
    printed = test.details.get("printed")
    if printed:
        out = ET.SubElement(case, "system-out")
        out.text = _clean("\n".join(str(line) for line in printed))


def _problem(case: ET.Element, tag: str, test: TestResult) -> None:
    kind = f"{test.outcome.value}:{test.code}" if test.code else test.outcome.value
    el = ET.SubElement(case, tag, {"message": _clean(_headline(test)), "type": kind})
    el.text = _clean(_body(test))


def _headline(test: TestResult) -> str:
    lines = test.reason.strip().splitlines()
    return lines[0] if lines else test.outcome.value.replace("_", " ")


def _body(test: TestResult) -> str:
    """The failure text a CI page shows: what went wrong, where, and how to run it again."""
    parts: list[str] = [test.reason] if test.reason else [test.outcome.value]
    if test.location:
        parts.append(f"at: {test.location}")
    for key in ("expected", "actual"):
        if key in test.details:
            parts.append(f"{key}: {_text(test.details[key])}")
    if test.violation is not None:
        v = test.violation
        shown_at = v.location and v.location != test.location  # usually the same line as "at:" above
        parts.append(f"monitor: {v.monitor}" + (f" ({v.location})" if shown_at else ""))
        parts.append(f"violating event: {_describe(v.event)}")
        if v.before:
            parts.append("events before it:\n" + "\n".join(f"  {_describe(e)}" for e in v.before))
    nearest = test.details.get("nearest")
    if nearest:
        parts.append("nearest events:\n" + "\n".join(f"  {_text(line)}" for line in nearest))
    for fr in test.faults:
        parts.append(f"fault {fr.service}.{fr.keyword}={fr.decision}: matched {fr.matched}, fired {fr.fired}")
    for d in test.diagnostics:
        parts.append(f"{d.level} [{d.code}] {d.message}")
    if test.bundle:
        parts.append(f"bundle: {test.bundle} (faultbox replay {test.bundle})")
    if test.shrunk is not None:
        parts.append(f"smallest failing case: {test.shrunk.removed}; replay: {test.shrunk.replay}")
    if test.failed_leaves:
        parts.append(f"leaves: {len(test.failed_leaves)} of {len(test.leaves)} did not pass")
        parts.extend(f"  leaf {x.leaf} {x.label}: {x.outcome.value}; replay: {x.replay}" for x in test.failed_leaves)
    failed = test.failed_runs
    if failed:
        parts.append(f"runs: {len(failed)} of {len(test.runs)} did not pass")
        parts.extend(f"  run {r.run} seed {r.seed}: {r.outcome.value}; replay: {r.replay}" for r in failed)
    elif test.replay:
        parts.append(f"replay: {test.replay}")
    return "\n".join(parts)


# -- text ------------------------------------------------------------------------------------


def _classname(spec: str) -> str:
    # CI tools read dots in a classname as package separators; a spec called "a.b.star" is one class.
    stem = os.path.splitext(os.path.basename(spec))[0] or "faultbox"
    return _clean(stem.replace(".", "_"))


def _describe(event: dict[str, Any]) -> str:
    try:
        return Event.from_dict(event).describe()
    except (AttributeError, KeyError, TypeError, ValueError):  # a hand-built or foreign dict
        return repr(event)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _clean(text: str) -> str:
    return _INVALID_XML.sub(_spell, text)


def _spell(match: re.Match[str]) -> str:
    n = ord(match.group())
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def _seconds(ms: int) -> str:
    return f"{max(ms, 0) / 1000:.3f}"


__all__ = ["render", "write"]
