"""Seeded random streams (DECISIONS §11): every probabilistic rule, syscall or protocol, draws
from a stream derived from the run's seed and the rule's identity, so one seed replays the same
decisions whatever the thread timing."""

from __future__ import annotations

import hashlib


def rule_seed(run_seed: int, key: str) -> int:
    """A 64-bit seed for one rule's probability stream, from the run seed and the rule's identity."""
    digest = hashlib.sha256(f"{run_seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
