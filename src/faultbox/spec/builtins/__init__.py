"""The builtin universe of the spec language.

Each area module declares its builtins with `@builtin(name, signature)`; the body receives the
SpecBuilder of the spec being loaded plus the checked arguments, and translates them into model
objects (at load time) or Host calls (inside a test). Nothing else happens here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from faultbox.spec.args import Signature, register_type_name
from faultbox.spec.registry import SpecBuilder

Impl = Callable[..., Any]
# The modules of this package that declare builtins, one per area of the language.
_AREAS = (
    "assertions", "choice", "core", "declarative", "faults", "jwt", "mocks", "monitors", "network",
    "protocol_faults", "scenarios", "temporal", "topology",
)  # fmt: skip
_BUILTINS: dict[str, tuple[Signature, Impl, bool]] = {}  # name -> (signature, impl, stdlib only)


def builtin(name: str, signature: str, *, stdlib_only: bool = False) -> Callable[[Impl], Impl]:
    def register(impl: Impl) -> Impl:
        _BUILTINS[name] = (Signature.parse(name, signature), impl, stdlib_only)
        return impl

    return register


class Builtin:
    """A builtin bound to the spec being loaded."""

    __slots__ = ("builder", "impl", "name", "signature")

    def __init__(self, name: str, signature: Signature, impl: Impl, builder: SpecBuilder) -> None:
        self.name = name
        self.signature = signature
        self.impl = impl
        self.builder = builder

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.impl(self.builder, **self.signature.bind(args, kwargs))

    @property
    def __name__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<built-in function {self.name}>"


register_type_name(Builtin, "builtin_function_or_method")


def make_universe(builder: SpecBuilder, *, stdlib: bool = False) -> dict[str, Any]:
    """Every name a spec can use without defining it."""
    from faultbox.spec.builtins import core

    for area in _AREAS:  # imported for their registrations
        importlib.import_module(f"{__name__}.{area}")
    universe: dict[str, Any] = dict(core.PLAIN_VALUES)
    for name, (sig, impl, stdlib_only) in _BUILTINS.items():
        if stdlib_only and not stdlib:
            continue
        universe[name] = Builtin(name, sig, impl, builder)
    # namespaces built from builtins; their parts are not names of their own
    universe.update(core.namespaces(universe))
    return {k: v for k, v in universe.items() if not k.startswith("_")}


def universe_names(*, stdlib: bool = False) -> frozenset[str]:
    return frozenset(make_universe(SpecBuilder("<names>"), stdlib=stdlib))
