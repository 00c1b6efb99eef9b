"""--test NAME: exact (with or without the test_ prefix), a matrix group, or a glob."""

from __future__ import annotations

import fnmatch


def select_tests(names: list[str], pattern: str | None) -> list[str]:
    if not pattern:
        return list(names)
    wanted = [pattern] if pattern.startswith("test_") else [pattern, f"test_{pattern}"]
    exact = [n for n in names if n in wanted]
    if exact:
        return exact
    groups = [n for n in names if any(n.startswith(w + "_") for w in wanted if "matrix_" in w)]
    if groups:
        return groups
    if any(c in pattern for c in "*?["):
        return [n for n in names if any(fnmatch.fnmatchcase(n, w) for w in wanted)]
    return []
