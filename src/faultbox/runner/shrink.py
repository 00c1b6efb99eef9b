"""Shrinking a failing case: from the decisions a failing run took and the faults that acted in it,
the smaller cases worth trying, smallest change first. The search itself (run a candidate, keep it
when it fails the same way, start again from it) is SpecRunner.shrink; this module is pure.

Smaller means: fewer faults (each fault that fired, left out), fewer fires (each occurrence a
max_fires= leaf fired, skipped), fewer priority changes (a PCT schedule one level shallower), and
plainer choices (a choose() back to its first option)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from faultbox.model.decisions import Decisions, fault_key
from faultbox.model.fault import PARTITION_OP
from faultbox.model.result import FaultRecord


def fired_faults(records: Sequence[FaultRecord]) -> list[str]:
    """The keys of the faults that acted in a run, in the order they were recorded. A partition's
    legs are one fault and are never left out one by one: they are not candidates."""
    keys: list[str] = []
    for r in records:
        if r.fired and r.op != PARTITION_OP and r.decision not in ("allow", "trace"):
            key = fault_key(r.service, r.keyword, r.label)
            if key not in keys:
                keys.append(key)
    return keys


def size(d: Decisions, faults: Sequence[str]) -> tuple[int, int, int, int]:
    """How big a case is, compared field by field: faults on, fires, priority changes, choices."""
    on = sum(1 for k in faults if k not in d.off)
    fires = sum(bits.count("1") for bits in d.fires.values())
    changes = sum(s.depth - 1 for s in d.orders.values() if s.mode == "pct")
    choices = sum(1 for v in d.choices.values() if v)
    return (on, fires, changes, choices)


def candidates(d: Decisions, faults: Sequence[str]) -> Iterator[Decisions]:
    """Each case one step smaller than `d`."""
    on = [k for k in faults if k not in d.off]
    if len(on) > 1:  # leaving out the only fault leaves no failure to look at
        for key in on:
            yield dataclasses.replace(d, off=[*d.off, key])
    for key, bits in d.fires.items():
        for i, bit in enumerate(bits):
            if bit == "1":
                yield dataclasses.replace(d, fires={**d.fires, key: bits[:i] + "0" + bits[i + 1 :]})
    for key, schedule in d.orders.items():
        if schedule.mode == "pct" and schedule.depth > 1:
            shallower = dataclasses.replace(schedule, depth=schedule.depth - 1)
            yield dataclasses.replace(d, orders={**d.orders, key: shallower})
    for key, index in d.choices.items():
        if index:
            yield dataclasses.replace(d, choices={**d.choices, key: 0})


def describe(original: Decisions, smaller: Decisions) -> str:
    """What shrinking took away, as a reader says it."""
    parts = [f"without {k}" for k in smaller.off if k not in original.off]
    for key, bits in smaller.fires.items():
        was = original.fires.get(key, bits)
        if bits != was:
            parts.append(f"{key} fires {bits.count('1')} of {len(bits)} (was {was.count('1')})")
    for key, schedule in smaller.orders.items():
        was_s = original.orders.get(key)
        if was_s is not None and schedule != was_s and schedule.mode == "pct":
            parts.append(f"{key}: {schedule.depth - 1} priority changes (was {was_s.depth - 1})")
    for key, index in smaller.choices.items():
        if original.choices.get(key, 0) != index:
            parts.append(f"{key}: first option")
    return "; ".join(parts)
