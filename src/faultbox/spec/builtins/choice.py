"""choose(): a choice point. Inside a test's body a named choose() with two options or more is a
fan-out site: the test's first run takes option 0 and records the site, then every leaf (each
combination of the test's sites' options) runs the whole test again with its option forced. The
anonymous form, and any choose() run while the spec loads, take option 0 and fan out nothing."""

from __future__ import annotations

from typing import Any

from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.compile import current_location
from faultbox.spec.registry import SpecBuilder


@builtin("choose", "*args")
def choose(builder: SpecBuilder, args: tuple[Any, ...]) -> Any:
    if len(args) == 1:
        name, options = "", args[0]
    elif len(args) == 2:
        name, options = args
        if not isinstance(name, str) or not name:
            raise ArgError(
                f"choose(): the name must be a non-empty string, got {type_name(name)}",
                'write choose("mode", ["fast", "safe"])',
            )
    else:
        raise ArgError(
            f"choose() takes the options, or a name and the options; got {len(args)} arguments",
            'write choose("mode", ["fast", "safe"]) (a fan-out site) or choose(["fast", "safe"])',
        )
    if not isinstance(options, list):
        raise ArgError(
            f"choose(): the options must be a list, got {type_name(options)}", 'write choose("mode", ["fast", "safe"])'
        )
    if not options:
        raise ArgError("choose(): there is nothing to choose from (the options are empty)")
    host = host_mod.current()
    if host is None:
        if name:
            raise ArgError(
                f'choose("{name}", ...) at the top level of a spec does not fan out: leaves come from '
                "choices made while a test runs",
                f'call choose("{name}", ...) inside the test\'s body, or drop the name to take option 0',
            )
        return options[0]
    if name and len(options) < 2:
        raise ArgError(
            f'choose("{name}", ...) needs at least two options to choose between, got {len(options)}',
            "add an option, or use the value directly",
        )
    return options[host.choose(name, options, str(current_location() or ""))]
