"""A self-contained HTML report: one file, no network, readable without JavaScript.

The summary, the fault matrix, the test list and every test's failure details are rendered here, as
plain HTML, so the page still answers "what failed and why" when scripts are blocked (mail clients,
CI artifact viewers). The event traces are embedded as JSON in a <script type="application/json">
element and drawn by a small script (html_assets/report.js) that only ever sets textContent: every
string on the page comes from user specs or service logs and is treated as hostile.

Large traces are cut down (see `_select_events`) so that a long soak test does not make a 100 MB page;
the page says how many events were left out; the JSON result keeps them all."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import quote

from faultbox import __version__
from faultbox.model.event import Event
from faultbox.model.result import MatrixCell, MatrixResult, Outcome, RunResult, TestResult, Verdict

# Downsampling of one test's trace: above _BIG_TRACE events, keep both ends plus context around the
# events a reader comes for (injected faults, steps, the violation, service lifecycle).
_BIG_TRACE = 2000
_KEEP_EDGE = 1000
_CONTEXT = 25
_ANCHOR_TYPES = frozenset({
    "step_send", "step_recv", "fault_applied", "fault_removed", "fault_not_fired", "proxy", "mock",
    "service_started", "service_ready", "service_exited",
})  # fmt: skip
_NEAREST_SEQ = re.compile(r"#(\d+)\b")

_WORD = {
    Outcome.PASSED: "passed",
    Outcome.FAILED: "failed",
    Outcome.EXPECTATION_VIOLATED: "expectation violated",
    Outcome.FAULT_BYPASSED: "fault bypassed",
    Outcome.ERRORED: "errored",
    Outcome.INCONCLUSIVE: "inconclusive",
    Outcome.HALTED: "halted",
}
_FAULT_COLUMNS = (
    "service", "keyword / interface", "decision", "syscalls / protocol", "label",
    "matched", "fired", "unresolved paths", "assumption",
)  # fmt: skip
_DETAIL_KEYS = ("assertion", "expected", "actual", "nearest", "printed", "assertions")


def render(result: RunResult) -> str:
    data = _data(result)
    by_name = {t.name: t for t in result.tests}
    parts = [
        _header(result),
        _attention(result),
        _matrix(result.matrix, by_name) if result.matrix is not None else "",
        _tests_table(result),
        _test_details(result, data["tests"]),
        f"<footer>faultbox {_e(__version__)} · the full result, every event included, is the JSON output"
        " (<code>--output</code>)</footer>",
    ]
    return _page(result, "\n".join(p for p in parts if p), _embed_json(data))


def write(result: RunResult, path: str) -> None:
    text = render(result)
    tmp = f"{path}.tmp"
    # errors="replace": a lone surrogate from a service log must not cost the whole report.
    with open(tmp, "w", encoding="utf-8", errors="replace") as f:
        f.write(text)
    os.replace(tmp, path)


# -- the embedded data -----------------------------------------------------------------------


def _data(result: RunResult) -> dict[str, Any]:
    """The run as in the JSON output, with each trace cut down as `_select_events` decides."""
    data = result.to_dict(with_events=False)
    downsampled = False
    for test, entry in zip(result.tests, data["tests"], strict=True):
        kept, dropped = _select_events(test)
        entry["events"] = [e.to_dict() for e in kept]
        entry["events_dropped"] = dropped
        downsampled = downsampled or dropped > 0
    data["events_downsampled"] = downsampled
    data["faultbox_version"] = __version__
    return _jsonable(data)  # type: ignore[no-any-return]


def _select_events(test: TestResult) -> tuple[list[Event], int]:
    """The events to embed and how many were dropped: all of them up to _BIG_TRACE; beyond, the first
    and last _KEEP_EDGE plus ±_CONTEXT around every anchor, in trace order."""
    events = test.events
    n = len(events)
    if n <= _BIG_TRACE:
        return list(events), 0
    special = _special_seqs(test)
    keep = bytearray(n)
    keep[:_KEEP_EDGE] = b"\x01" * _KEEP_EDGE
    keep[n - _KEEP_EDGE :] = b"\x01" * _KEEP_EDGE
    for i, event in enumerate(events):
        if event.seq in special or _is_anchor(event):
            lo, hi = max(0, i - _CONTEXT), min(n, i + _CONTEXT + 1)
            keep[lo:hi] = b"\x01" * (hi - lo)
    kept = [e for i, e in enumerate(events) if keep[i]]
    return kept, n - len(kept)


def _special_seqs(test: TestResult) -> set[int]:
    """Seqs a failure message points at: the violation and the "nearest events" lines (#seq ...)."""
    seqs: set[int] = set()
    if test.violation is not None:
        seqs.add(test.violation.seq)
    for line in test.details.get("nearest") or ():
        m = _NEAREST_SEQ.match(str(line))
        if m:
            seqs.add(int(m.group(1)))
    return seqs


def _is_anchor(event: Event) -> bool:
    if event.type == "syscall":
        return str(event.fields.get("decision", "allow")) != "allow"
    return event.type in _ANCHOR_TYPES


def _jsonable(value: Any) -> Any:
    """Plain JSON values only: browsers' JSON.parse rejects NaN and Infinity, which Python writes."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _embed_json(data: dict[str, Any]) -> str:
    # ensure_ascii keeps lone surrogates and odd line separators out of the page; escaping <, > and &
    # means no "</script>" or "<!--" inside a string can end or confuse the script element.
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- the page --------------------------------------------------------------------------------


def _page(result: RunResult, body: str, payload: str) -> str:
    title = f"faultbox — {result.spec}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>\n{_asset('report.css')}</style>\n</head>\n<body>\n"
        f"<main>\n{body}\n</main>\n"
        f'<script type="application/json" id="faultbox-data">{payload}</script>\n'
        f"<script>\n{_asset('report.js')}</script>\n</body>\n</html>\n"
    )


def _asset(name: str) -> str:
    text = resources.files("faultbox.report").joinpath("html_assets", name).read_text(encoding="utf-8")
    if "</" in text and name.endswith(".js"):
        raise ValueError(f"{name} must not contain '</': it would end the inline <script> element")
    return text


def _header(result: RunResult) -> str:
    pill_class, pill_text = _run_pill(result)
    meta = [
        ("seed", str(result.seed) + (f", {result.runs} runs per test" if result.runs > 1 else "")),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.started))),
        ("duration", _duration(result.duration_ms)),
        ("tests", str(len(result.tests))),
    ]
    # --var values change what a spec does: a reader reproducing the run needs them next to the seed.
    meta += [(f"var {k}", v) for k, v in sorted(result.variables.items())]
    # what ran the tests (it may differ from the faultbox that renders this page)
    meta += [(k, v) for k, v in result.environment.items()]
    counts = _outcome_counts(result.tests)
    count_items = "".join(f'<li class="o-{o.value}">{n} {_e(_WORD[o])}</li>' for o, n in counts.items() if n)
    interrupted = (
        '<p class="banner">The run was interrupted: tests that had not finished are not listed.</p>'
        if result.interrupted
        else ""
    )
    return (
        '<header class="top">\n'
        f'<h1>faultbox <span class="spec">{_e(result.spec)}</span> '
        f'<span class="pill {pill_class}">{_e(pill_text)}</span></h1>\n'
        f'<p class="narrative">{_e(_narrative(result))}</p>\n{interrupted}'
        '<dl class="meta">' + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in meta) + "</dl>\n"
        f'<ul class="counts">{count_items}</ul>\n</header>'
    )


def _run_pill(result: RunResult) -> tuple[str, str]:
    c = result.counts()
    total = len(result.tests)
    if total == 0:
        return "v-none", "no tests"
    bad = c["fail"] + c["error"]
    if bad:
        text = f"✗ {c['fail']} failed" + (f" · {c['error']} errored" if c["error"] else "")
        return "v-fail", text
    if result.interrupted:
        return "v-fail", "⊘ interrupted"
    if c["inconclusive"]:
        return "v-inconclusive", f"? {c['inconclusive']} inconclusive"
    return "v-pass", f"✓ {c['pass']}/{total} passed"


def _narrative(result: RunResult) -> str:
    c = result.counts()
    total = len(result.tests)
    if total == 0:
        return "No tests ran."
    if c["pass"] == total:
        return f"All {total} test{'s' if total != 1 else ''} passed."
    if c["halted"] == total:
        return f"No verdicts: all {total} tests halted."
    others = [f"{c[k]} {word}" for k, word in (
        ("fail", "failed"), ("error", "errored"), ("inconclusive", "inconclusive"), ("halted", "halted"),
    ) if c[k]]  # fmt: skip
    return f"{c['pass']} of {total} tests passed; " + ", ".join(others) + "."


def _attention(result: RunResult) -> str:
    """What a reader came for: the tests that did not pass, and passing ones that warned."""
    items = []
    for t in result.tests:
        warned = [d for d in t.diagnostics if d.level in ("error", "warning")]
        if t.verdict is Verdict.PASS and not warned:
            continue
        what = _first_line(t.reason) if t.verdict is not Verdict.PASS else _first_line(warned[0].message)
        where = f' <span class="loc">{_e(t.location)}</span>' if t.location and t.verdict is not Verdict.PASS else ""
        items.append(f'<li>{_pill(t.outcome)} {_test_link(t.name)} <span class="why">{_e(what)}</span>{where}</li>')
    if not items:
        return ""
    return (
        '<section id="attention">\n<h2>Needs attention</h2>\n<ul class="attention">\n'
        + "\n".join(items)
        + "\n</ul>\n</section>"
    )


# -- the fault matrix ------------------------------------------------------------------------


def _matrix(m: MatrixResult, by_name: dict[str, TestResult]) -> str:
    head = '<th class="corner" scope="col">scenario ╲ fault</th>' + "".join(
        f'<th scope="col">{_e(a)}</th>' for a in m.assumptions
    )
    rows = []
    for s in m.scenarios:
        cells = "".join(_matrix_cell(m.cell(s, a), by_name) for a in m.assumptions)
        rows.append(f'<tr><th scope="row">{_e(s)}</th>{cells}</tr>')
    summary = m.to_dict()
    excluded = sum(1 for c in m.cells if c.outcome is None)
    line = (
        f"{len(m.scenarios)} scenarios × {len(m.assumptions)} faults: {summary['total']} cells ran, "
        f"{summary['passed']} passed, {summary['failed']} did not" + (f", {excluded} excluded" if excluded else "")
    )
    return (
        '<section id="matrix">\n<h2>Fault matrix</h2>\n'
        f'<p class="sub">{_e(line)}</p>\n'
        f'<div class="scroll"><table class="matrix"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>{''.join(rows)}</tbody></table></div>\n"
        f"{_matrix_legend()}\n{_matrix_failures(m, by_name)}</section>"
    )


def _matrix_cell(cell: MatrixCell | None, by_name: dict[str, TestResult]) -> str:
    if cell is None:
        return '<td class="cell missing" title="not run">·</td>'
    if cell.outcome is None:
        return '<td class="cell excluded" title="excluded from the matrix">—</td>'
    tip = f"{cell.scenario} × {cell.assumption}: {_WORD[cell.outcome]} ({_duration(cell.duration_ms)})"
    if cell.reason:
        tip += "\n" + cell.reason
    inner = f'{_e(cell.outcome.mark)} <span class="word">{_e(_WORD[cell.outcome])}</span>'
    if cell.leaves is not None:
        inner += f' <span class="leaves">{cell.leaves[0]}/{cell.leaves[1]} leaves</span>'
        tip += f"\n{cell.leaves[0]} of {cell.leaves[1]} leaves passed"
    # Link only to tests that exist on this page (the reference linked to names that never existed).
    if cell.test in by_name:
        inner = f'<a href="{_href(cell.test)}">{inner}</a>'
    return f'<td class="cell o-{cell.outcome.value}" title="{_e(tip)}">{inner}</td>'


def _matrix_legend() -> str:
    items = "".join(f'<li class="o-{o.value}">{_e(o.mark)} {_e(_WORD[o])}</li>' for o in Outcome)
    return f'<ul class="legend">{items}<li class="excluded">— excluded</li></ul>'


def _matrix_failures(m: MatrixResult, by_name: dict[str, TestResult]) -> str:
    failed = [c for c in m.cells if c.outcome not in (None, Outcome.PASSED)]
    if not failed:
        return ""
    items = []
    for c in failed:
        assert c.outcome is not None
        label = _e(f"{c.scenario} × {c.assumption}")
        name = f'<a href="{_href(c.test)}">{label}</a>' if c.test in by_name else label
        items.append(f'<li>{_pill(c.outcome)} {name} <span class="why">{_e(_first_line(c.reason))}</span></li>')
    return '<ul class="cell-failures">' + "".join(items) + "</ul>\n"


# -- the test list ---------------------------------------------------------------------------


def _tests_table(result: RunResult) -> str:
    if not result.tests:
        return '<section id="tests">\n<h2>Tests</h2>\n<p class="sub">No tests ran.</p>\n</section>'
    rows = []
    for t in result.tests:
        more = " …" if len(t.reason.strip().splitlines()) > 1 else ""
        rows.append(
            f'<tr class="o-{t.outcome.value}"><td>{_test_link(t.name)}</td><td>{_pill(t.outcome)}</td>'
            f'<td class="num">{_duration(t.duration_ms)}</td><td>{_e(", ".join(t.assumptions))}</td>'
            f'<td class="reason">{_e(_first_line(t.reason))}{more}</td></tr>'
        )
    return (
        '<section id="tests">\n<h2>Tests</h2>\n<div class="scroll"><table class="tests">'
        "<thead><tr><th>test</th><th>outcome</th><th>duration</th><th>fault assumptions</th><th>reason</th>"
        "</tr></thead>\n<tbody>" + "\n".join(rows) + "</tbody></table></div>\n</section>"
    )


# -- one test in detail ----------------------------------------------------------------------


def _test_details(result: RunResult, entries: list[dict[str, Any]]) -> str:
    if not result.tests:
        return ""
    sections = [_test_detail(i, t, entries[i]) for i, t in enumerate(result.tests)]
    return '<section id="details">\n<h2>Details</h2>\n' + "\n".join(sections) + "\n</section>"


def _test_detail(index: int, t: TestResult, entry: dict[str, Any]) -> str:
    t0 = t.events[0].ts if t.events else 0.0
    blocks = [
        _facts(t),
        _block("Reason", f'<pre class="reason">{_e(t.reason)}</pre>') if t.reason else "",
        _expected_actual(t),
        _violation(t, t0),
        _leaves(t),
        _shrunk(t),
        _nearest(t),
        _faults(t),
        _diagnostics(t),
        _printed(t),
        _other_details(t),
        _replay(t),
        _trace(index, t, entry),
    ]
    # Failures start open: without JavaScript, the reader sees them at once.
    open_attr = " open" if t.verdict is not Verdict.PASS else ""
    return (
        f'<section class="test o-{t.outcome.value}" id="{_e(_anchor(t.name))}">\n<details{open_attr}>\n'
        f'<summary>{_pill(t.outcome)} <span class="name">{_e(t.name)}</span> '
        f'<span class="dur">{_duration(t.duration_ms)}</span></summary>\n<div class="body">\n'
        + "\n".join(b for b in blocks if b)
        + "\n</div>\n</details>\n</section>"
    )


def _facts(t: TestResult) -> str:
    facts: list[tuple[str, str]] = []
    if t.location:
        facts.append(("location", t.location))
    if t.defined_at and t.defined_at != t.location:
        facts.append(("declared at", t.defined_at))
    if t.code:
        facts.append(("code", t.code))
    if t.expectation:
        facts.append(("expectation", t.expectation))
    if t.timings:
        parts = [f"{k.removesuffix('_ms')} {_duration(v)}" for k, v in t.timings.items()]
        facts.append(("time", ", ".join(parts)))
    if t.matrix:
        facts.append(("matrix cell", f"{t.matrix[0]} × {t.matrix[1]}"))
    if t.assumptions:
        facts.append(("fault assumptions", ", ".join(t.assumptions)))
    facts.append(("seed", str(t.seed)))
    if t.decisions:
        facts.append(("decisions", t.decisions))
    if t.bundle:
        facts.append(("failure bundle", f"{t.bundle} (faultbox replay {t.bundle})"))
    if t.runs:
        failed = t.failed_runs
        facts.append(("runs", f"{len(t.runs) - len(failed)} of {len(t.runs)} passed"))
        if failed:
            facts.append(("failing seeds", ", ".join(f"{r.seed} (run {r.run})" for r in failed)))
    if "assertions" in t.details:
        facts.append(("assertions checked", str(t.details["assertions"])))
    if t.return_value:
        facts.append(("returned", t.return_value))
    return '<dl class="facts">' + "".join(f"<div><dt>{k}</dt><dd>{_e(v)}</dd></div>" for k, v in facts) + "</dl>"


def _shrunk(t: TestResult) -> str:
    s = t.shrunk
    if s is None:
        return ""
    rows = [("taken away", s.removed), ("reason", s.reason), ("replay", s.replay), ("runs to find", str(s.runs))]
    body = "".join(f"<tr><th>{k}</th><td><pre>{_e(v)}</pre></td></tr>" for k, v in rows)
    return _block("Smallest failing case", f'<table class="kv">{body}</table>')


def _leaves(t: TestResult) -> str:
    """A test that fanned out: every leaf with its choices, how it ended, and its replay."""
    if not t.leaves:
        return ""
    rows = "".join(
        f"<tr><td>{leaf.leaf}</td><td>{_e(leaf.label)}</td><td>{_pill(leaf.outcome)}</td>"
        f"<td>{_e(leaf.reason.splitlines()[0] if leaf.reason and leaf.outcome is not Outcome.PASSED else '')}</td>"
        f"<td>{_duration(leaf.duration_ms)}</td><td><code>{_e(leaf.replay)}</code></td></tr>"
        for leaf in t.leaves
    )
    head = "<tr><th>leaf</th><th>choices</th><th>outcome</th><th>reason</th><th>time</th><th>replay</th></tr>"
    passed = len(t.leaves) - len(t.failed_leaves)
    return _block(f"Leaves ({passed} of {len(t.leaves)} passed)", f'<table class="leaves">{head}{rows}</table>')


def _expected_actual(t: TestResult) -> str:
    rows = [
        f"<tr><th>{key}</th><td><pre>{_e(_text(t.details[key]))}</pre></td></tr>"
        for key in ("expected", "actual")
        if key in t.details
    ]
    if not rows:
        return ""
    title = f"Assertion ({t.details['assertion']})" if t.details.get("assertion") else "Assertion"
    return _block(title, '<table class="kv">' + "".join(rows) + "</table>")


def _violation(t: TestResult, t0: float) -> str:
    v = t.violation
    if v is None:
        return ""
    where = f' <span class="loc">at {_e(v.location)}</span>' if v.location else ""
    rows = [_event_row(e, t0) for e in v.before] + [_event_row(v.event, t0, "violating")]
    return _block(
        "Monitor violation",
        f"<p><b>{_e(v.monitor)}</b>{where}: {_e(v.message)}</p>\n"
        f'<p class="sub">the violating event (#{v.seq}, highlighted) and the events before it</p>\n'
        + _events_table(rows),
    )


def _nearest(t: TestResult) -> str:
    nearest = t.details.get("nearest")
    if not nearest:
        return ""
    items = "".join(f"<li><code>{_e(_text(line))}</code></li>" for line in nearest)
    return _block("Nearest events", f'<ul class="nearest">{items}</ul>')


def _faults(t: TestResult) -> str:
    if not t.faults:
        return ""
    head = "".join(f"<th>{h}</th>" for h in _FAULT_COLUMNS)
    rows = []
    for f in t.faults:
        silent = f.fired == 0 and f.decision not in ("allow", "trace")
        cells = [f.service, f.keyword, f.decision, ", ".join(f.syscalls) or f.protocol, f.label]
        nums = [f.matched, f.fired, f.unresolved_paths]
        rows.append(
            ('<tr class="silent">' if silent else "<tr>")
            + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + "".join(f'<td class="num">{n}</td>' for n in nums)
            + f"<td>{_e(f.assumption)}</td></tr>"
        )
    return _block(
        "Faults",
        f'<div class="scroll"><table class="faults"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>",
    )


def _diagnostics(t: TestResult) -> str:
    if not t.diagnostics:
        return ""
    items = []
    for d in t.diagnostics:
        scope = " · ".join(x for x in (d.service, d.syscall) if x)
        scope_html = f' <span class="loc">{_e(scope)}</span>' if scope else ""
        items.append(
            f'<li class="d-{_e(d.level)}"><b>{_e(d.level)}</b> <code>{_e(d.code)}</code> {_e(d.message)}'
            f"{scope_html}</li>"
        )
    return _block("Diagnostics", '<ul class="diags">' + "".join(items) + "</ul>")


def _printed(t: TestResult) -> str:
    printed = t.details.get("printed")
    if not printed:
        return ""
    return _block("Printed", f'<pre class="printed">{_e(chr(10).join(_text(x) for x in printed))}</pre>')


def _other_details(t: TestResult) -> str:
    """Detail keys this report does not know yet: shown raw rather than lost."""
    extra = {k: v for k, v in t.details.items() if k not in _DETAIL_KEYS}
    if not extra:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td><pre>{_e(_text(v))}</pre></td></tr>" for k, v in extra.items())
    return _block("Other details", f'<table class="kv">{rows}</table>')


def _replay(t: TestResult) -> str:
    if not t.replay:
        return ""
    return _block(
        "Replay",
        f'<div class="replay"><code>{_e(t.replay)}</code>'
        f'<button type="button" class="copy" data-copy="{_e(t.replay)}" hidden>copy</button></div>',
    )


def _trace(index: int, t: TestResult, entry: dict[str, Any]) -> str:
    total = len(t.events)
    dropped = int(entry["events_dropped"])
    if total == 0:
        return _block("Event trace", '<p class="sub">No events were recorded.</p>')
    note = f"{total} events"
    if dropped:
        note += (
            f"; this page embeds {total - dropped} of them ({dropped} dropped: the first and last "
            f"{_KEEP_EDGE}, and {_CONTEXT} either side of every fault, step and violation, are kept)."
            " The JSON result (--output) has them all"
        )
    return _block(
        "Event trace",
        f'<p class="sub trace-note">{_e(note)}.</p>\n'
        f'<div class="trace" data-test="{index}"><noscript><p class="sub">The event trace needs '
        "JavaScript; everything above does not.</p></noscript></div>",
    )


# -- small pieces ----------------------------------------------------------------------------


def _events_table(rows: Iterable[str]) -> str:
    return (
        '<div class="scroll"><table class="events"><thead><tr><th>seq</th><th>time</th><th>type</th>'
        "<th>service</th><th>fields</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _event_row(event: dict[str, Any], t0: float, extra_class: str = "") -> str:
    fields = event.get("fields") or {}
    classes = [extra_class] if extra_class else []
    if event.get("type") == "proxy" or (event.get("type") == "syscall" and fields.get("decision", "allow") != "allow"):
        classes.append("faulted")
    cls = f' class="{" ".join(classes)}"' if classes else ""
    ts = event.get("ts")
    offset = _offset(float(ts) - t0) if isinstance(ts, (int, float)) and t0 else ""
    shown = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if k != "data")
    return (
        f'<tr{cls}><td class="num">{_e(str(event.get("seq", "")))}</td><td class="num">{offset}</td>'
        f"<td>{_e(str(event.get('type', '')))}</td><td>{_e(str(event.get('service', '')))}</td>"
        f'<td class="fields">{_e(shown)}</td></tr>'
    )


def _block(title: str, inner: str) -> str:
    return f'<div class="block"><h4>{_e(title)}</h4>\n{inner}\n</div>'


def _pill(outcome: Outcome) -> str:
    return f'<span class="pill o-{outcome.value}">{_e(outcome.mark)} {_e(_WORD[outcome])}</span>'


def _test_link(name: str) -> str:
    return f'<a href="{_href(name)}">{_e(name)}</a>'


def _anchor(name: str) -> str:
    return f"test-{name}"


def _href(name: str) -> str:
    # Browsers percent-decode a fragment before looking the id up, so any test name round-trips.
    return _e("#" + quote(_anchor(name), safe="-_.~"))


def _outcome_counts(tests: list[TestResult]) -> dict[Outcome, int]:
    counts = dict.fromkeys(Outcome, 0)
    for t in tests:
        counts[t.outcome] += 1
    return counts


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _duration(ms: int) -> str:
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _offset(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:+.1f} ms" if abs(ms) < 10_000 else f"{seconds:+.3f} s"


def _e(text: str) -> str:
    return escape(text, quote=True)


__all__ = ["render", "write"]
