"""Syscall fault actions and rules.

An Action is what `deny()`, `delay()`, `allow()` and `hold()` return; a SyscallRule binds an action
to one service and one fault keyword (`write=deny("EIO")` on db). Rules are plain data: the engine
decides with them, the runner scopes them.
"""

from __future__ import annotations

import enum
import errno as _errno
from dataclasses import dataclass

from faultbox._util.durations import format_duration
from faultbox.errors import Code, FaultboxError

# The errno names a deny() accepts: the reference's list plus a few that programs commonly handle.
ERRNO_NAMES: tuple[str, ...] = (
    "ENOENT",
    "EACCES",
    "EPERM",
    "EIO",
    "ENOSPC",
    "EROFS",
    "EEXIST",
    "ENOTEMPTY",
    "ENFILE",
    "EMFILE",
    "EFBIG",
    "ECONNREFUSED",
    "ECONNRESET",
    "ECONNABORTED",
    "ETIMEDOUT",
    "ENETUNREACH",
    "EHOSTUNREACH",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "EINTR",
    "EAGAIN",
    "ENOMEM",
    "EBUSY",
    "EINVAL",
    "ENOSYS",
    "EDEADLK",
    "ELOOP",
    "EDQUOT",
    "ENOLCK",
    "EPIPE",
    "EBADF",
    "ENOTCONN",
    "ENXIO",
)


def errno_number(name: str) -> int:
    value = getattr(_errno, name, None)
    if not isinstance(value, int) or name not in ERRNO_NAMES:
        raise ValueError(name)
    return value


class ActionKind(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    DELAY = "delay"
    HOLD = "hold"
    TRACE = "trace"


@dataclass(frozen=True, slots=True)
class Action:
    """A decision to take on a matching syscall.

    `path` and `addr` narrow the action to matching paths (file and fd syscalls) or destination
    addresses (connect); `probability` is a fraction in [0, 1]."""

    kind: ActionKind
    errno: str = ""
    delay: float = 0.0
    probability: float = 1.0
    label: str = ""
    tag: str = ""
    path: str | None = None
    addr: str | None = None
    # max_fires=N (mode="exhaustive"): occurrences 1..N fire or not as the test's leaf decides
    # (2**N leaves); later occurrences draw from the probability stream as usual.
    max_fires: int = 0

    def decision(self) -> str:
        """The `decision` field written on syscall events (DECISIONS §6)."""
        if self.kind is ActionKind.DENY:
            return f"deny({self.errno})"
        if self.kind is ActionKind.DELAY:
            return f"delay({format_duration(self.delay)})"
        if self.kind is ActionKind.HOLD:
            return f"hold({self.tag})"
        return str(self.kind.value)

    def __repr__(self) -> str:
        parts = [self.decision()]
        if self.probability < 1.0:
            parts.append(f"{self.probability * 100:g}%")
        if self.path:
            parts.append(f"path={self.path}")
        if self.addr:
            parts.append(f"addr={self.addr}")
        if self.label:
            parts.append(f'label="{self.label}"')
        if self.max_fires:
            parts.append(f"max_fires={self.max_fires}")
        return f"<fault {' '.join(parts)}>"

    @property
    def fires(self) -> bool:
        """False for rules that only exist to put a syscall in a filter or to record it."""
        return self.kind in (ActionKind.DENY, ActionKind.DELAY, ActionKind.HOLD)


PARTITION_OP = "partition"  # the `op` of the rules partition() makes (and of the events they decide)


@dataclass(frozen=True, slots=True)
class SyscallRule:
    """One action on one service for one fault keyword, its syscalls already expanded."""

    service: str
    keyword: str
    syscalls: tuple[str, ...]
    action: Action
    op: str = ""
    path: str | None = None  # from the op or the action
    addr: str | None = None

    def describe(self) -> str:
        """What the rule does, for the fault_applied event of its keyword: "deny(EIO) 30% -> [fsync,fdatasync]"."""
        where = f" path={self.path}" if self.path else ""
        where += f" addr={self.addr}" if self.addr else ""
        label = f' label="{self.action.label}"' if self.action.label else ""
        prob = f" {self.action.probability * 100:g}%" if self.action.probability < 1 else ""
        return f"{self.action.decision()}{prob}{where}{label} -> [{','.join(self.syscalls)}]"


class ProbabilityError(FaultboxError, ValueError):
    code = Code.SPEC_BAD_ARGUMENT


def parse_probability(value: object) -> float:
    """ "20%" -> 0.2, "1%" -> 0.01, 0.2 -> 0.2 (DECISIONS §11). A bare number above 1 is refused
    rather than guessed."""
    if isinstance(value, bool):
        raise ProbabilityError("probability must be a number or a percentage string, not a bool")
    if isinstance(value, (int, float)):
        p = float(value)
        if not 0.0 <= p <= 1.0:
            raise ProbabilityError(f'probability {value} is outside 0..1; write a fraction (0.3) or "30%"')
        return p
    if isinstance(value, str):
        text = value.strip()
        try:
            p = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ProbabilityError(f'probability "{value}" is not a number; write "30%" or 0.3') from None
        if not 0.0 <= p <= 1.0:
            raise ProbabilityError(f'probability "{value}" is outside 0%..100%')
        return p
    raise ProbabilityError(f"probability must be a fraction or a percentage string, got {type(value).__name__}")
