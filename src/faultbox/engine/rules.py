"""Rules as the supervisor sees them: numbered, with their syscall numbers and a seeded random
stream each (DECISIONS §11: the same seed gives the same decisions whatever the thread timing)."""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from faultbox._util.seeds import rule_seed
from faultbox.model.fault import ActionKind, SyscallRule
from faultbox.model.syscalls import native_table

# Rule kinds on the wire, for the supervisor (engine/supervisor.py reads them from here).
K_ALLOW, K_DENY, K_DELAY, K_HOLD, K_TRACE = range(5)
KIND_CODES = {
    ActionKind.ALLOW: K_ALLOW,
    ActionKind.DENY: K_DENY,
    ActionKind.DELAY: K_DELAY,
    ActionKind.HOLD: K_HOLD,
    ActionKind.TRACE: K_TRACE,
}


class WireRule(NamedTuple):
    """A syscall rule as the runner sends it to the supervisor: the one wire format both sides
    name (sent as a plain tuple, since marshal knows no named ones; `WireRule(*t)` reads it back)."""

    id: int
    nrs: list[int]  # syscall numbers of this machine
    kind: int  # K_* above
    errno: int
    decision: str  # the event's `decision` field: "deny(EIO)", "delay(500ms)", ...
    delay: float  # seconds
    probability: float
    path: str | None  # path glob
    addr: str | tuple[str, ...] | None  # destination glob(s): an address, and its proxy's
    tag: str  # hold tag
    seed: int  # the rule's random stream
    fires: str = ""  # max_fires=: "101" fires occurrences 1 and 3, not 2; later ones draw from the stream


@dataclass(frozen=True)
class ActiveRule:
    """A rule installed on a service, with its id and the key its random stream derives from."""

    id: int
    rule: SyscallRule
    key: str
    assumption: str = ""

    def wire(self, run_seed: int, addr_aliases: Mapping[str, str] | None = None, fires: str = "") -> WireRule:
        """The rule on the wire. `addr_aliases` maps a port to the port of its proxy: an address
        rule on a proxied interface (`addr="*:5432"`) also matches connections to its proxy, which
        is where the service's traffic to that interface goes."""
        _, table = native_table()
        action = self.rule.action
        nrs = [table[s] for s in self.rule.syscalls if s in table]
        err = getattr(errno_mod, action.errno, 0) if action.errno else 0
        return WireRule(
            id=self.id,
            nrs=nrs,
            kind=KIND_CODES[action.kind],
            errno=err,
            decision=action.decision(),
            delay=action.delay,
            probability=action.probability,
            path=self.rule.path,
            addr=_addr_globs(self.rule.addr, addr_aliases or {}),
            tag=action.tag,
            seed=rule_seed(run_seed, self.key),
            fires=fires,
        )


def _addr_globs(addr: str | None, aliases: Mapping[str, str]) -> str | tuple[str, ...] | None:
    if addr is None:
        return None
    host, sep, port = addr.rpartition(":")
    alias = aliases.get(port) if sep else None
    return addr if alias is None else (addr, f"{host}:{alias}")
