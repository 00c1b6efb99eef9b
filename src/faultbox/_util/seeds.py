"""Seeded random streams (DECISIONS §11): every probabilistic rule, syscall or protocol, draws
from a stream derived from the run's seed and the rule's identity, so one seed replays the same
decisions whatever the thread timing."""

from __future__ import annotations

import hashlib


def rule_seed(run_seed: int, key: str) -> int:
    """A 64-bit seed for one rule's probability stream, from the run seed and the rule's identity."""
    digest = hashlib.sha256(f"{run_seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


_SEED_BITS = (1 << 63) - 1


def run_seed(base: int, index: int) -> int:
    """The seed of run `index` (0-based) of a test under `--seed base --runs N`: run 0 uses the base
    itself, so `--runs 1` is the plain run; run i > 0 uses the first 8 bytes of
    sha256("<base>|run|<i>"), little-endian, as a 63-bit number. Each run's seed replays it alone
    (`--seed seed_i`), and the seeds of different bases do not overlap the way base+i would."""
    if index == 0:
        return base
    digest = hashlib.sha256(f"{base}|run|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_BITS
