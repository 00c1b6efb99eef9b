"""Dict filters (DECISIONS §5): `type=` matches the event type, `service=` the service, every other
key the field of that name; values may be globs; all keys must match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faultbox._util.globs import field_match, has_glob

if TYPE_CHECKING:
    from faultbox.model.event import Event

MOCK_PREFIX = "mock."


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled dict filter."""

    items: tuple[tuple[str, str, bool], ...]  # (key, pattern, pattern has glob characters)

    @classmethod
    def of(cls, filters: Mapping[str, str]) -> Filter:
        items: list[tuple[str, str, bool]] = []
        for key, value in filters.items():
            if key == "type" and value.startswith(MOCK_PREFIX) and len(value) > len(MOCK_PREFIX):
                # The reference names a mock's events "mock.<op>": here they are `mock` events with
                # an `op` field, and its spelling is understood as that pair.
                items.append(("type", "mock", False))
                op = value[len(MOCK_PREFIX) :]
                items.append(("op", op, has_glob(op)))
                continue
            items.append((key, value, has_glob(value)))
        return cls(tuple(items))

    def __bool__(self) -> bool:
        return bool(self.items)

    def match(self, ev: Event) -> bool:
        for key, pattern, glob in self.items:
            if key == "type":
                value: str | None = ev.type
            elif key == "service":
                value = ev.service
            else:
                value = ev.fields.get(key)
            if glob:
                if not field_match(value, pattern):
                    return False
            elif value != pattern:
                return False
        return True

    def exact(self) -> dict[str, str]:
        """The keys compared exactly (usable with an index)."""
        return {k: v for k, v, glob in self.items if not glob}

    def score(self, ev: Event) -> int:
        """How many keys match: used to show the nearest events when nothing matched."""
        return sum(1 for k, v, _ in self.items if Filter(((k, v, has_glob(v)),)).match(ev))

    def describe(self) -> str:
        return ", ".join(f'{k}="{v}"' for k, v, _ in self.items)
