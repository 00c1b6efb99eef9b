"""The declarative test and its temporal properties (the reference's RFC-041 and RFC-043 names):

    test(name, body, setup=None, expect=None, timeout="30s", terminate_when=None, assume=None)
    eventually(predicate, anchor=None)    always(predicate, between=None)    assume(pred_or_bool)

`eventually` and `always` make Property values. Called while a test runs (in its body or setup),
they also become expectations of that test; given to test(expect=...) at load, they are attached
to that test. Their checking state belongs to each run (trace/properties.py), so one value can
serve many tests. The runner runs a test() and judges it (runner/temporal.py).
"""

from __future__ import annotations

from typing import Any

from faultbox.errors import Code, FaultboxError, Halted
from faultbox.model.matcher import Matcher, to_matcher
from faultbox.model.temporal import BODY_END, LIFECYCLE_ANCHORS, Anchor, Property, TemporalTest
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, check_arity, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.compile import current_location, source_line
from faultbox.spec.registry import SpecBuilder

register_type_name(Property, "property")


class AssumptionFailed(FaultboxError):
    """A top-level assume() was false: the spec's premise does not hold, so nothing runs."""

    code = Code.SPEC_LOAD_FAILED


def _register(prop: Property) -> Property:
    host = host_mod.current()
    if host is not None:  # inside a running test: the property is one of its expectations
        host.add_property(prop)
    return prop


def _trace_predicate(value: Any, what: str, example: str) -> Any:
    if isinstance(value, bool) or not callable(value) or isinstance(value, Matcher):
        raise ArgError(
            f"{what}: predicate must be a function of the trace or a matcher, got {type_name(value)}",
            f"write e.g. {example}",
        )
    check_arity(value, 1, what, "the trace (one argument)")
    return value


@builtin("eventually", "predicate: any, anchor: any = None")
def eventually(builder: SpecBuilder, predicate: Any, anchor: Any) -> Property:
    """Holds once the predicate is true of the trace (checked after every event), or once an
    event matches when given a matcher."""
    what = "eventually()"
    example = 'eventually(lambda t: t.count(type="stdout", service="api") > 0) or eventually(match.event(...))'
    matcher = predicate if isinstance(predicate, Matcher) else None
    fn = None if matcher is not None else _trace_predicate(predicate, what, example)
    m_anchor = _anchor_matcher(anchor, what, "anchor") if anchor is not None else None
    return _register(Property("eventually", fn, matcher, anchor=m_anchor, location=current_location()))


@builtin("always", "predicate: any, between: any = None")
def always(builder: SpecBuilder, predicate: Any, between: Any) -> Property:
    """Must hold after every event of its window (by default the whole body); false once fails
    the test at once."""
    what = "always()"
    if isinstance(predicate, Matcher):
        raise ArgError(
            f"{what}: predicate must be a function of the trace, not a matcher: "
            "a matcher says which events exist, not what must stay true",
            f"write always(lambda t: t.count({predicate.name}) == 0) for 'no such event', "
            "or eventually(matcher) for 'such an event happens'",
        )
    fn = _trace_predicate(predicate, what, 'always(lambda t: t.count(type="stderr") == 0)')
    start: Anchor | None = None
    end: Anchor | None = None
    if between is not None:
        if not isinstance(between, (list, tuple)) or len(between) != 2:
            raise ArgError(
                f"{what}: between= must be a pair (start, end), got {type_name(between)}",
                'write between=("body_start", "stable") or between=(match.event(...), match.event(...))',
            )
        start = _window_end(between[0], what, "start")
        end = _window_end(between[1], what, "end")
        if start == BODY_END:
            raise ArgError(
                f'{what}: a window cannot start at "body_end": nothing is checked after the body',
                'start it at "body_start", "stable" or a matcher',
            )
    return _register(Property("always", fn, start=start, end=end, location=current_location()))


def _window_end(value: Any, what: str, side: str) -> Anchor:
    if isinstance(value, str):
        if value not in LIFECYCLE_ANCHORS:
            valid = ", ".join(f'"{a}"' for a in LIFECYCLE_ANCHORS)
            raise ArgError(
                f'{what}: unknown {side} anchor "{value}": the anchors are {valid} or a matcher',
                'write e.g. between=("body_start", "stable")',
            )
        return value
    return _anchor_matcher(value, what, f"the {side} of between=")


def _anchor_matcher(value: Any, what: str, name: str) -> Matcher:
    if isinstance(value, (Matcher, dict)) or (callable(value) and not isinstance(value, bool)):
        return to_matcher(value, f"{what}: {name}")
    raise ArgError(
        f"{what}: {name} must be a matcher or a function of the event, got {type_name(value)}",
        'write e.g. match.event(type="step_send", service="api")',
    )


def _property(value: Any, what: str) -> Property:
    if not isinstance(value, Property):
        raise ArgError(
            f"{what} must be an eventually(...) or always(...) value, got {type_name(value)}",
            "wrap the condition: eventually(lambda t: ...) or always(lambda t: ...)",
        )
    return value


@builtin(
    "test",
    "name: str, body: any = None, *, setup: any = None, expect: any = None, timeout: duration = '30s', "
    "terminate_when: any = None, assume: any = None, clock: str = 'wall'",
)
def test(
    builder: SpecBuilder,
    name: str,
    body: Any,
    setup: Any,
    expect: Any,
    timeout: float,
    terminate_when: Any,
    assume: Any,
    clock: str,
) -> None:
    """Declare the test `test_<name>`: setup, then the body, judged by its temporal properties."""
    what = f'test("{name}")'
    if host_mod.current() is not None:
        raise ArgError(f"{what}: tests are declared at the top level of a spec, not while one runs")
    if not name:
        raise ArgError("test(): name must not be empty", 'write test("checkout", body=checkout)')
    if clock != "wall":
        raise ArgError(
            f'{what}: clock="{clock}" is not supported: faultbox runs services on the real clock '
            "(a virtual clock needs gVisor)",
            'drop clock= (or write clock="wall")',
        )
    if body is None or not callable(body):
        raise ArgError(f"{what}: body= must be a function, got {type_name(body)}", f'write test("{name}", body=fn)')
    check_arity(body, 0, f"{what}: body=", "no arguments")
    if setup is not None:
        if not callable(setup):
            raise ArgError(f"{what}: setup= must be a function or None, got {type_name(setup)}")
        check_arity(setup, 0, f"{what}: setup=", "no arguments")
    if timeout <= 0:
        raise ArgError(f"{what}: timeout= must be longer than 0", 'write e.g. timeout="30s"')
    items = [] if expect is None else list(expect) if isinstance(expect, (list, tuple)) else [expect]
    props = tuple(
        _property(p, f"{what}: expect[{i}]" if len(items) > 1 else f"{what}: expect=") for i, p in enumerate(items)
    )
    stop = _property(terminate_when, f"{what}: terminate_when=") if terminate_when is not None else None
    builder.add_declared(
        TemporalTest(
            name=f"test_{name}",
            body=body,
            setup=setup,
            expect=props,
            terminate_when=stop,
            assume=_assumptions(assume, what),
            timeout=timeout,
            location=current_location(),
        )
    )


def _assumptions(value: Any, what: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ArgError(
            f"{what}: assume= must be a list of functions or bools, got {type_name(value)}",
            'write assume=[lambda c: c.get("retries", 0) < 5]',
        )
    for i, item in enumerate(value):
        if isinstance(item, bool):
            continue
        if not callable(item):
            raise ArgError(f"{what}: assume[{i}] must be a function or a bool, got {type_name(item)}")
        check_arity(item, 1, f"{what}: assume[{i}]", "the choices dict (one argument)")
    return tuple(value)


@builtin("assume", "predicate: any")
def assume(builder: SpecBuilder, predicate: Any) -> None:
    """The spec's premise: at the top level, false is a load error; in a test, false halts it.
    A function is given the choices dict (empty until choices are made)."""
    what = "assume()"
    if isinstance(predicate, bool):
        value: Any = predicate
    elif callable(predicate):
        check_arity(predicate, 1, what, "the choices dict (one argument)")
        value = predicate({})
    else:
        raise ArgError(
            f"{what}: the argument must be a function of the choices or a bool, got {type_name(predicate)}",
            "write assume(lambda c: ...) or assume(condition)",
        )
    if value:
        return
    shown = call_text("assume", source_line(current_location()) or "") or "assume(...)"
    if host_mod.current() is not None:
        raise Halted(f"{shown} is false")
    raise AssumptionFailed(
        f"{shown} violated at spec load",
        "the spec's premise is false for these values: change them (--var) or the assumption",
    )


def call_text(name: str, line: str) -> str:
    """`name(...)` as written on a source line, up to its closing bracket ("" if not there)."""
    start = line.find(name + "(")
    if start < 0:
        return ""
    depth = 0
    for i in range(start + len(name), len(line)):
        if line[i] in "([{":
            depth += 1
        elif line[i] in ")]}":
            depth -= 1
            if depth == 0:
                return line[start : i + 1]
    return line[start:].rstrip()
