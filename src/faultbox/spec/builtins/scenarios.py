"""The domain model of the seed page: scenario(), fault_assumption(), fault_scenario(),
fault_matrix(), and the expect_*() judges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faultbox.errors import SpecFailure
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import Expectation, FaultAssumption, FaultMatrix, FaultScenario, Rule, callable_name
from faultbox.spec.args import ArgError, check_arity, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.builtins.faults import build_rules, services_of
from faultbox.spec.builtins.protocol_faults import bind
from faultbox.spec.compile import current_location
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import starlark_repr

register_type_name(Monitor, "monitor")


def _monitors(items: Any, what: str) -> tuple[Monitor, ...]:
    if not isinstance(items, (list, tuple)):
        items = [items]
    out: list[Monitor] = []
    for i, m in enumerate(items):
        if isinstance(m, Monitor):
            out.append(m)
        elif callable(m):
            raise ArgError(
                f"{what}: monitors[{i}] is a plain function, not a monitor",
                f'wrap it: monitor({callable_name(m)}) (optionally with filters such as service="api")',
            )
        else:
            raise ArgError(f"{what}: monitors[{i}] must be a monitor(...), got {type_name(m)} (not callable)")
    return tuple(out)


def _assumption_list(value: Any, what: str) -> tuple[FaultAssumption, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    for i, fa in enumerate(items):
        if not isinstance(fa, FaultAssumption):
            raise ArgError(f"{what}: faults[{i}] must be a fault_assumption(...), got {type_name(fa)}")
    return tuple(items)


@builtin("scenario", "fn: any")
def scenario(builder: SpecBuilder, fn: Any) -> Any:
    """Register a probe: it runs as test_<name> and can be used in fault_scenario/fault_matrix."""
    if not callable(fn):
        raise ArgError(f"scenario(): the argument must be a function, got {type_name(fn)}")
    check_arity(fn, 0, "scenario()", "no arguments (a scenario runs on its own)")
    builder.add_scenario(fn)
    return fn


@builtin(
    "fault_assumption",
    "name: str, *, target: any = None, description: str = '', monitors: any = [], faults: list = [], "
    "rules: list = [], **syscall_rules",
)
def fault_assumption(
    builder: SpecBuilder,
    name: str,
    target: Any,
    description: str,
    monitors: Any,
    faults: list[Any],
    rules: list[Any],
    syscall_rules: dict[str, Any],
) -> FaultAssumption:
    what = f'fault_assumption("{name}")'
    collected: list[Rule] = []
    mons: list[Monitor] = []
    for child in _assumption_list(faults, what):
        collected.extend(child.rules)
        mons.extend(child.monitors)
    if syscall_rules:
        if target is None:
            raise ArgError(
                f"{what}: syscall faults need target= (the service whose syscalls fail)",
                f'write fault_assumption("{name}", target=db, {next(iter(syscall_rules))}=...)',
            )
        targets = services_of(target, what)
        if not targets:
            raise ArgError(f"{what}: target= names no service (an empty list): its faults would do nothing")
        for svc in targets:
            collected.extend(build_rules(svc, syscall_rules, what))
    elif target is not None and not rules:
        services_of(target, what)  # still check it is a service
    if rules:
        if target is None:
            raise ArgError(
                f"{what}: rules= are protocol faults, which need target= (the interface they apply to)",
                f'write fault_assumption("{name}", target=db.main, rules=[error(query="INSERT*", sqlstate="40001")])',
            )
        collected.extend(bind(target, rules, what))
    own = _monitors(monitors, what)
    builder.claim_monitors(own)
    mons.extend(own)
    fa = FaultAssumption(
        name=name,
        rules=tuple(collected),
        monitors=tuple(dict.fromkeys(mons)),
        description=description,
        location=current_location(),
    )
    builder.add_assumption(fa)
    return fa


@builtin(
    "fault_scenario",
    "name: str, *, scenario: any, faults: any = None, expect: any = None, monitors: any = [], "
    "timeout: duration = '30s'",
)
def fault_scenario(
    builder: SpecBuilder,
    name: str,
    scenario: Any,
    faults: Any,
    expect: Any,
    monitors: Any,
    timeout: float,
) -> None:
    what = f'fault_scenario("{name}")'
    if not callable(scenario):
        raise ArgError(f"{what}: scenario= must be a function, got {type_name(scenario)}")
    check_arity(scenario, 0, f"{what}: scenario=", "no arguments")
    if expect is not None and not callable(expect):
        raise ArgError(f"{what}: expect= must be a function taking the scenario's result, got {type_name(expect)}")
    if expect is not None and not isinstance(expect, Expectation):
        check_arity(expect, 1, f"{what}: expect=", "the scenario's result")
    mons = _monitors(monitors, what)
    builder.claim_monitors(mons)
    builder.add_fault_scenario(
        FaultScenario(
            name=name,
            scenario=scenario,
            assumptions=_assumption_list(faults, what),
            expect=expect,
            monitors=mons,
            timeout=timeout,
            location=current_location(),
        )
    )


def _pair(key: Any, scenarios: list[Any], faults: tuple[FaultAssumption, ...], what: str) -> tuple[str, str]:
    if not (isinstance(key, tuple) and len(key) == 2):
        raise ArgError(
            f"fault_matrix(): {what} keys must be (scenario, fault_assumption) pairs, got {starlark_repr(key)}"
        )
    fn, fa = key
    if not any(fn is s or (callable(fn) and callable_name(fn) == callable_name(s)) for s in scenarios):
        raise ArgError(
            f"fault_matrix(): {what} key {starlark_repr(key)} names a scenario that is not in scenarios=",
            f"scenarios are: {', '.join(callable_name(s) for s in scenarios)}",
        )
    if not isinstance(fa, FaultAssumption) or fa not in faults:
        raise ArgError(
            f"fault_matrix(): {what} key {starlark_repr(key)} names a fault that is not in faults=",
            f"faults are: {', '.join(f.name for f in faults)}",
        )
    return callable_name(fn), fa.name


@builtin(
    "fault_matrix",
    "*, scenarios: list, faults: list, default_expect: any = None, overrides: dict = {}, exclude: list = [], "
    "monitors: any = [], require_faults_fire: bool = False, timeout: duration = '30s'",
)
def fault_matrix(
    builder: SpecBuilder,
    scenarios: list[Any],
    faults: list[Any],
    default_expect: Any,
    overrides: dict[Any, Any],
    exclude: list[Any],
    monitors: Any,
    require_faults_fire: bool,
    timeout: float,
) -> None:
    if not scenarios:
        raise ArgError("fault_matrix(): scenarios= must list at least one scenario function")
    for i, s in enumerate(scenarios):
        if not callable(s):
            raise ArgError(f"fault_matrix(): scenarios[{i}] must be a function, got {type_name(s)}")
        check_arity(s, 0, f"fault_matrix(): scenarios[{i}]", "no arguments")
    assumptions = _assumption_list(faults, "fault_matrix()")
    if not assumptions:
        raise ArgError("fault_matrix(): faults= must list at least one fault_assumption")
    if default_expect is not None and not callable(default_expect):
        raise ArgError(f"fault_matrix(): default_expect= must be a function, got {type_name(default_expect)}")
    if default_expect is not None and not isinstance(default_expect, Expectation):
        check_arity(default_expect, 1, "fault_matrix(): default_expect=", "the scenario's result")
    by_pair: dict[tuple[str, str], Callable[[Any], Any]] = {}
    for key, fn in overrides.items():
        pair = _pair(key, scenarios, assumptions, "overrides")
        if not callable(fn):
            raise ArgError(f"fault_matrix(): the override for {pair} must be a function, got {type_name(fn)}")
        if not isinstance(fn, Expectation):
            check_arity(fn, 1, f"fault_matrix(): the override for {pair}", "the scenario's result")
        by_pair[pair] = fn
    excluded = {_pair(k, scenarios, assumptions, "exclude") for k in exclude}
    mons = _monitors(monitors, "fault_matrix()")
    builder.claim_monitors(mons)
    cells: list[FaultScenario] = []
    loc = current_location()
    for fn in scenarios:
        sname = callable_name(fn)
        for fa in assumptions:
            if (sname, fa.name) in excluded:
                continue
            cell = FaultScenario(
                name=f"matrix_{sname}_{fa.name}",
                scenario=fn,
                assumptions=(fa,),
                expect=by_pair.get((sname, fa.name), default_expect),
                monitors=mons,
                timeout=timeout,
                matrix=(sname, fa.name),
                require_faults_fire=require_faults_fire,
                location=loc,
            )
            builder.add_fault_scenario(cell)
            cells.append(cell)
    builder.matrices.append(
        FaultMatrix(
            scenarios=tuple(dict.fromkeys(callable_name(s) for s in scenarios)),
            assumptions=tuple(fa.name for fa in assumptions),
            cells=tuple(cells),
            excluded=tuple(sorted(excluded)),
            location=loc,
        )
    )


# -- expectations ------------------------------------------------------------------------------


def _status(result: Any) -> int | None:
    if isinstance(result, dict):
        value = result.get("status", result.get("status_code"))
    else:
        value = getattr(result, "status", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value else None


def _failed_transport(result: Any) -> str:
    ok = result.get("ok", True) if isinstance(result, dict) else getattr(result, "ok", True)
    if ok is False:
        err = result.get("error", "") if isinstance(result, dict) else getattr(result, "error", "")
        return str(err) or "the step failed"
    return ""


class ExpectSuccess(Expectation):
    name = "expect_success"

    def judge(self, result: Any, hung: bool) -> None:
        if hung:
            raise SpecFailure("expect_success: the scenario hung until its timeout")
        if result is None:
            raise SpecFailure("expect_success: the scenario returned None")
        err = _failed_transport(result)
        if err:
            raise SpecFailure(f"expect_success: the step failed: {err}")
        status = _status(result)
        if status is not None and status >= 500:
            raise SpecFailure(
                f"expect_success: status {status} (expected below 500)", {"expected": "status < 500", "actual": status}
            )


class ExpectErrorWithin(Expectation):
    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.name = f"expect_error_within({ms})"

    def judge(self, result: Any, hung: bool) -> None:
        if hung or result is None:
            raise SpecFailure(f"{self.name}: the scenario hung instead of failing within {self.ms}ms")
        status = _status(result)
        err = _failed_transport(result)
        if not err and (status is None or status < 500):
            raise SpecFailure(
                f"{self.name}: the scenario succeeded (status={status or 0})",
                {"expected": "an error", "actual": starlark_repr(result)},
            )
        duration = result.get("duration_ms") if isinstance(result, dict) else getattr(result, "duration_ms", None)
        if isinstance(duration, int) and duration > self.ms:
            raise SpecFailure(
                f"{self.name}: the error took {duration}ms", {"expected": f"<= {self.ms}ms", "actual": f"{duration}ms"}
            )


class ExpectHang(Expectation):
    name = "expect_hang"

    def judge(self, result: Any, hung: bool) -> None:
        if not hung:
            raise SpecFailure(f"expect_hang: the scenario returned {starlark_repr(result)} instead of hanging")


for _cls in (ExpectSuccess, ExpectErrorWithin, ExpectHang):
    register_type_name(_cls, "expectation")


@builtin("expect_success", "")
def expect_success(builder: SpecBuilder) -> Expectation:
    return ExpectSuccess()


@builtin("expect_error_within", "ms: int")
def expect_error_within(builder: SpecBuilder, ms: int) -> Expectation:
    if ms <= 0:
        raise ArgError("expect_error_within(): ms must be positive")
    return ExpectErrorWithin(ms)


@builtin("expect_hang", "")
def expect_hang(builder: SpecBuilder) -> Expectation:
    return ExpectHang()
