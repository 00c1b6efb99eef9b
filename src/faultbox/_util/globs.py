"""The two glob dialects.

`field_match` is for event filters (`decision="deny*"`, `path="*.wal"`): fnmatch semantics, where `*`
crosses `/`, case-sensitive, an exact comparison when the pattern has no glob characters.

`path_match` is for fault rules on paths (`op(path="/data/**")`): `*` and `?` stay inside one path
segment, `**` crosses segments, and a trailing `/**` also matches the directory itself.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache

_GLOB_CHARS = frozenset("*?[")


def has_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


@lru_cache(maxsize=4096)
def _field_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


def field_match(value: str | None, pattern: str) -> bool:
    """Does an event field value match a filter pattern? A missing value never matches."""
    if value is None:
        return False
    if not has_glob(pattern):
        return value == pattern
    return _field_regex(pattern).match(value) is not None


@lru_cache(maxsize=1024)
def _path_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                # `**/` matches zero or more whole segments; a trailing `/**` matches the dir itself too.
                if i + 2 < n and pattern[i + 2] == "/":
                    out.append("(?:.*/)?")
                    i += 3
                    continue
                if out and out[-1] == "/" and i + 2 == n:
                    out[-1] = "(?:/.*)?"
                    i += 2
                    continue
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body.startswith(("!", "^")):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "/":
            out.append("/")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def path_match(path: str, pattern: str) -> bool:
    """Does a resolved path match a fault rule's path glob?"""
    if not pattern:
        return True
    return _path_regex(pattern).match(path) is not None
