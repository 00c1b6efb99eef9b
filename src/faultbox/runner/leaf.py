"""One run's side of plan fan-out: the decisions forced on it (its leaf), the sites it met, and the
decisions it took, which its result keeps so that a replay can force them again."""

from __future__ import annotations

import threading

from faultbox.model.decisions import CHOOSE, FIRES, ORDER, Decisions, Schedule, Site


class LeafState:
    def __init__(self, forced: Decisions | None = None, known: list[Site] | None = None) -> None:
        self.forced = forced or Decisions()
        self.known = known or []  # the sites the test's discovery run met (for a leaf of it)
        self.sites: list[Site] = []
        self.taken = Decisions()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # parallel() branches may choose at once

    def _site(self, site: Site) -> None:
        with self._lock:
            if (site.kind, site.key) not in self._seen:
                self._seen.add((site.kind, site.key))
                self.sites.append(site)

    def choose(self, key: str, options: list[object], location: str) -> int:
        """The option index this run takes at choose(key, options): the leaf's, else 0."""
        if key:
            self._site(Site(CHOOSE, key, list(options), location))
        index = self.forced.choices.get(key, 0) if key else 0
        index = index if 0 <= index < len(options) else 0
        if key:
            self.taken.choices[key] = index
        return index

    def choice_values(self) -> dict[str, object]:
        """The leaf's named choices as their values, as assume= predicates read them."""
        return {
            s.key: s.options[self.forced.choices.get(s.key, 0)]
            for s in self.known
            if s.kind == CHOOSE and 0 <= self.forced.choices.get(s.key, 0) < len(s.options)
        }

    def fires(self, key: str, max_fires: int, location: str) -> str | None:
        """The fire bits of a max_fires= fault for occurrences 1..max_fires: the leaf's, or None
        when no leaf forces them (the discovery run draws as with any probability)."""
        self._site(Site(FIRES, key, [format(i, f"0{max_fires}b") for i in range(2**max_fires)], location))
        bits = self.forced.fires.get(key)
        if bits is not None and len(bits) == max_fires:
            self.taken.fires[key] = bits
            return bits
        return None

    def order(self, key: str, options: list[Schedule], location: str) -> Schedule | None:
        """The schedule of parallel() at `key`: the leaf's, else None (the discovery run's branches
        run unscheduled)."""
        if len(options) > 1:
            self._site(Site(ORDER, key, list(options), location))
        return self.forced.orders.get(key)

    def is_off(self, key: str) -> bool:
        """Whether the leaf leaves this fault out (a shrunk case)."""
        if key in self.forced.off:
            with self._lock:
                if key not in self.taken.off:
                    self.taken.off.append(key)
            return True
        return False

    def record_order(self, key: str, schedule: Schedule) -> None:
        """What a scheduled parallel() did, as a schedule that replays it exactly."""
        with self._lock:
            self.taken.orders[key] = schedule
