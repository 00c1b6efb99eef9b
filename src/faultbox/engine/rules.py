"""Rules as the supervisor sees them: numbered, with their syscall numbers and a seeded random
stream each (DECISIONS §11: the same seed gives the same decisions whatever the thread timing)."""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faultbox._util.seeds import rule_seed
from faultbox.model.fault import ActionKind, SyscallRule
from faultbox.model.syscalls import native_table

KIND_CODES = {
    ActionKind.ALLOW: 0,
    ActionKind.DENY: 1,
    ActionKind.DELAY: 2,
    ActionKind.HOLD: 3,
    ActionKind.TRACE: 4,
}


@dataclass(frozen=True)
class ActiveRule:
    """A rule installed on a service, with its id and the key its random stream derives from."""

    id: int
    rule: SyscallRule
    key: str
    assumption: str = ""

    def wire(self, run_seed: int, addr_aliases: Mapping[str, str] | None = None) -> tuple[Any, ...]:
        """The rule on the wire. `addr_aliases` maps a port to the port of its proxy: an address
        rule on a proxied interface (`addr="*:5432"`) also matches connections to its proxy, which
        is where the service's traffic to that interface goes."""
        _, table = native_table()
        action = self.rule.action
        nrs = [table[s] for s in self.rule.syscalls if s in table]
        err = getattr(errno_mod, action.errno, 0) if action.errno else 0
        return (
            self.id,
            nrs,
            KIND_CODES[action.kind],
            err,
            action.decision(),
            action.delay,
            action.probability,
            self.rule.path,
            _addr_globs(self.rule.addr, addr_aliases or {}),
            action.tag,
            rule_seed(run_seed, self.key),
        )


def _addr_globs(addr: str | None, aliases: Mapping[str, str]) -> str | tuple[str, ...] | None:
    if addr is None:
        return None
    host, sep, port = addr.rpartition(":")
    alias = aliases.get(port) if sep else None
    return addr if alias is None else (addr, f"{host}:{alias}")
