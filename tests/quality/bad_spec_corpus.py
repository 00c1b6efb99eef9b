"""A seeded corpus of broken specs, and the harness that loads each one the way the command line does.

The corpus: token-level mutations (Python's tokenize is close enough to Starlark) of the examples,
the seed page's specs, the tutorial and every chunk of tests/specs/. Each mutant is one or two
mutations: a token deleted, duplicated or swapped with its neighbour, a literal replaced by a value
of another type, a keyword argument renamed to another builtin's keyword, an argument dropped or
added, brackets added or removed, a number or duration made huge or negative, an expression nested
thousands deep, a Python keyword replaced by another, a line deleted, duplicated or re-indented.

The harness: a few worker subprocesses (this file run as a script) keep a private copy of the
example directories, so that a mutated file that others load() is loaded through them. For each
mutant a worker writes the file, loads the root spec as `faultbox check` does (load_spec), builds
what `faultbox test` builds before it starts any service (assumption checks, test selection, each
test's case, the run's budget, the matrix) and the services `faultbox check --format json` lists,
and classifies the outcome: it loaded, it raised a well-formed SpecError (code, file:line, fix), or
anything else (a traceback). The parent gives each mutant HANG_SECONDS and kills a worker that
overruns it (a hang), restarting it for the rest.

    .venv/bin/python tests/quality/bad_spec_corpus.py show N      print mutant N and its mutation
    .venv/bin/python tests/quality/bad_spec_corpus.py run N       load mutant N here, with a traceback
"""

from __future__ import annotations

import io
import json
import keyword
import os
import random
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SEED = 13
HANG_SECONDS = 5.0
WORKERS = 2
MEMORY_LIMIT = 4 << 30  # bytes of address space per worker: a mutant that allocates wildly gets MemoryError

# Directories copied (their .star files) into each worker's tree; everything else is linked.
DIRECTORIES = {
    "orders": ROOT / "examples" / "orders",
    "shop": ROOT / "examples" / "shop",
    "tutorial": ROOT / "docs" / "tutorial",
}
CHUNKS = ROOT / "tests" / "specs"
MARK = re.compile(r"###\s+(\w+)\s+\"(.*)\"\s*$")

# (mutated file, root spec loaded, mutants). Files that others load() are mutated in place and
# loaded through the cheapest root that loads them. The counts keep the whole corpus within a CI
# budget: a mutant of shop.star that still loads costs ~70 ms, one of a tests/specs chunk ~2 ms.
EXAMPLE_UNITS: list[tuple[str, str, int]] = [
    ("orders/seed_page.star", "orders/seed_page.star", 1500),
    ("orders/orders.star", "orders/orders.star", 400),
    ("orders/patterns.star", "orders/patterns.star", 600),
    ("orders/invariants.star", "orders/patterns.star", 250),
    ("shop/shop.star", "shop/shop.star", 200),
    ("shop/invariants.star", "shop/shop.star", 60),
    ("tutorial/step1.star", "tutorial/step1.star", 400),
    ("tutorial/step2.star", "tutorial/step3.star", 400),
    ("tutorial/step3.star", "tutorial/step3.star", 400),
]
PER_CHUNK = 65


@dataclass(frozen=True)
class Unit:
    target: str  # the mutated file, relative to a worker's tree
    root: str  # the spec loaded
    source: str  # the target's original text
    quota: int


@dataclass(frozen=True)
class Mutant:
    index: int
    unit: Unit
    mutation: str
    text: str


def units() -> list[Unit]:
    out = []
    for target, root, quota in EXAMPLE_UNITS:
        directory, name = target.split("/")
        out.append(Unit(target, root, (DIRECTORIES[directory] / name).read_text(), quota))
    for path in sorted(CHUNKS.glob("*.star")):
        for i, chunk in enumerate(path.read_text().split("\n---\n")):
            source = "\n".join(MARK.sub("", line).rstrip() for line in chunk.splitlines()) + "\n"
            name = f"chunks/{path.stem}_{i:03d}.star"
            out.append(Unit(name, name, source, PER_CHUNK))
    return out


# -- tokens and edits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    kind: int
    text: str
    start: int  # offsets in the source
    end: int
    line: int


Edit = tuple[int, int, str]  # replace source[start:end] with the text


def tokens(source: str) -> list[Tok]:
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    out: list[Tok] = []
    try:
        for t in tokenize.generate_tokens(io.StringIO(source).readline):
            if t.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING, tokenize.OP):
                start = offsets[t.start[0] - 1] + t.start[1]
                end = offsets[t.end[0] - 1] + t.end[1]
                out.append(Tok(t.type, t.string, start, end, t.start[0]))
    except (tokenize.TokenError, SyntaxError):
        pass  # a chunk that is broken on purpose: mutate what tokenized
    return out


def apply(source: str, edits: list[Edit]) -> str:
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        source = source[:start] + text + source[end:]
    return source


def overlap(a: list[Edit], b: list[Edit]) -> bool:
    return any((s1 < e2 and s2 < e1) or s1 == s2 for s1, e1, _ in a for s2, e2, _ in b)


class Source:
    """A file's tokens with the structure the operators need: matching brackets and calls."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokens(text)
        self.match: dict[int, int] = {}
        stack: list[int] = []
        for i, t in enumerate(self.toks):
            if t.kind == tokenize.OP and t.text in "([{":
                stack.append(i)
            elif t.kind == tokenize.OP and t.text in ")]}" and stack:
                self.match[stack.pop()] = i
        self.lines = text.splitlines(keepends=True)
        self.calls = [
            i
            for i, t in enumerate(self.toks)
            if t.text == "(" and i in self.match and i > 0 and self._callee(self.toks[i - 1])
        ]
        self.kwargs = [
            i
            for i, t in enumerate(self.toks)
            if t.kind == tokenize.NAME
            and not keyword.iskeyword(t.text)
            and i + 1 < len(self.toks)
            and self.toks[i + 1].text == "="
            and i > 0
            and self.toks[i - 1].text in ("(", ",")
        ]
        self.literals = [
            i
            for i, t in enumerate(self.toks)
            if t.kind in (tokenize.NUMBER, tokenize.STRING) or t.text in ("None", "True", "False")
        ]
        self.values = [
            i
            for i, t in enumerate(self.toks)
            if i in self.literals or (t.kind == tokenize.NAME and not keyword.iskeyword(t.text))
        ]

    @staticmethod
    def _callee(t: Tok) -> bool:
        return (t.kind == tokenize.NAME and not keyword.iskeyword(t.text)) or t.text in (")", "]")

    def args(self, call: int) -> list[tuple[int, int]]:
        """Spans (source offsets) of a call's arguments."""
        close = self.match[call]
        out: list[tuple[int, int]] = []
        depth = 0
        first = call + 1
        for i in range(call + 1, close):
            t = self.toks[i]
            if t.text in "([{" and t.kind == tokenize.OP:
                depth += 1
            elif t.text in ")]}" and t.kind == tokenize.OP:
                depth -= 1
            elif t.text == "," and depth == 0:
                if first < i:
                    out.append((self.toks[first].start, self.toks[i - 1].end))
                first = i + 1
        if first < close:
            out.append((self.toks[first].start, self.toks[close - 1].end))
        return out


# -- the mutation operators: each returns (description, edits) or None when it does not apply ----

Op = Callable[[random.Random, Source], "tuple[str, list[Edit]] | None"]

OTHER_TYPES = [
    '"text"',
    '""',
    "0",
    "42",
    "-1",
    "3.5",
    "True",
    "None",
    "[]",
    '["a", 1]',
    "{}",
    '{"k": "v"}',
    "()",
    '(1, "a")',
    "(lambda: None)",
    "(lambda e: e)",
    "struct(a = 1)",
    "print",
    "range(3)",
    "deny",
]
HUGE_NUMBERS = [
    "9999999999",
    "-1",
    "-9999999999",
    "0",
    "1000000000000000000000000000000",
    "10 ** 30",
    "1e400",
    "-1e400",
    "1e-400",
    "-0.0",
    "0x" + "f" * 64,
    "9" * 5000,
    "65536",
]
HUGE_STRINGS = [
    '"9999999999h"',
    '"-1s"',
    '"1e400ms"',
    '"0s"',
    '""',
    '"1.5.3s"',
    '"nan s"',
    '"inf"',
    '"1e308h"',
    '"99999999999999999999999ms"',
    '"-0ms"',
    '"5"',
    '"1000%"',
    '"-5%"',
    '"1e400%"',
    '"nan%"',
    '"' + "x" * 100_000 + '"',
    '"\\x00"',
    '"*" * 9999999999',
]
EXTRA_ARGS = [
    "1",
    '"x"',
    "None",
    "[]",
    "{}",
    "lambda: None",
    "bogus = 1",
    "run = None",
    'timeout = "1s"',
    "probability = 2",
    "service = 3",
    'name = "x"',
    "*[1, 2]",
    '**{"bogus": 1}',
    "**{}",
    '*["a"]',
    '**{"write": deny("EIO")}',
    "monitors = [lambda e: e]",
]
NEW_KEYWORDS = [
    "while",
    "class",
    "import",
    "try",
    "with",
    "yield",
    "async",
    "await",
    "global",
    "nonlocal",
    "raise",
    "assert",
    "del",
    "is",
    "is not",
    "not in",
    "from",
    "as",
    "match",
    "def",
    "lambda",
    "return",
    "if",
    "else",
    "for",
    "in",
    "pass",
    "load",
    "and",
    "or",
    "not",
]
STATEMENTS = [
    "while True:\n    pass",
    "import os",
    "x := 1",
    "assert True",
    "for i in range(3):\n    pass",
    "if True:\n    pass",
    "load()",
    'load("@faultbox/services.star")',
    'load("orders.star", "order")',
    'load("invariants.star", "nothing")',
    "def test_extra():\n    pass",
    "def test_args(a, b):\n    pass",
    "test_x = 1",
    "...",
    "print(1)",
    "fail(1)",
    'fail("boom")',
    "x = [i for i in range(9999999999)]",
    "x = 2 ** 9999",
    'x = "%d" % "a"',
    "x = {}.get()",
    "x = struct(**{'a': 1})",
    'x = json.decode("{")',
    "x = json.encode(struct)",
    'x = load_file("/etc/shadow")',
    'x = load_file("nowhere")',
    "x = var(1)",
    "x = halt()",
    'x = sleep("1s")',
    "x = parallel()",
    "x = int('9' * 5000)",
    "x = [1] * 9999999999",
    "x = 'a' * -1",
    "x = hash(1)",
    "x = getattr(None, '_x')",
    "x = dir(None)",
    "x = range(1, 2, 0)",
    "x = ''.join([1])",
]


def _pick(rng: random.Random, items: list[int]) -> int | None:
    return rng.choice(items) if items else None


def delete_token(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    if not src.toks:
        return None
    t = rng.choice(src.toks)
    return f"delete {t.text[:30]!r} (line {t.line})", [(t.start, t.end, "")]


def duplicate_token(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    if not src.toks:
        return None
    t = rng.choice(src.toks)
    return f"duplicate {t.text[:30]!r} (line {t.line})", [(t.end, t.end, " " + t.text)]


def swap_tokens(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    if len(src.toks) < 2:
        return None
    i = rng.randrange(len(src.toks) - 1)
    a, b = src.toks[i], src.toks[i + 1]
    if a.text == b.text:
        return None
    return f"swap {a.text[:30]!r} and {b.text[:30]!r} (line {a.line})", [
        (a.start, a.end, b.text),
        (b.start, b.end, a.text),
    ]


def retype_literal(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    pool = src.literals if rng.random() < 0.7 else src.values
    i = _pick(rng, pool)
    if i is None:
        return None
    t = src.toks[i]
    value = rng.choice([v for v in OTHER_TYPES if v != t.text])
    return f"replace {t.text[:30]!r} with {value} (line {t.line})", [(t.start, t.end, value)]


def swap_name(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    """Call or pass another builtin (or another name of the file) where one was named."""
    names = [i for i in src.values if src.toks[i].kind == tokenize.NAME and i not in src.kwargs]
    i = _pick(rng, names)
    if i is None:
        return None
    t = src.toks[i]
    pool = builtin_names() if rng.random() < 0.7 else sorted({src.toks[k].text for k in names})
    name = rng.choice(pool)
    if name == t.text:
        return None
    return f"replace name {t.text!r} with {name!r} (line {t.line})", [(t.start, t.end, name)]


def rename_keyword(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    i = _pick(rng, src.kwargs)
    if i is None:
        return None
    t = src.toks[i]
    same_call = [src.toks[k].text for k in src.kwargs if k != i and abs(k - i) < 40]
    name = rng.choice(same_call) if same_call and rng.random() < 0.2 else rng.choice(builtin_keywords())
    if name == t.text:
        return None
    return f"rename keyword {t.text}= to {name}= (line {t.line})", [(t.start, t.end, name)]


def drop_argument(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    call = _pick(rng, src.calls)
    if call is None:
        return None
    spans = src.args(call)
    line = src.toks[call].line
    if not spans:
        return None
    if rng.random() < 0.15:
        return f"drop every argument of the call at line {line}", [(spans[0][0], spans[-1][1], "")]
    k = rng.randrange(len(spans))
    start, end = spans[k]
    if k + 1 < len(spans):
        end = spans[k + 1][0]  # with the comma after it
    elif k > 0:
        start = spans[k - 1][1]  # with the comma before it
    return f"drop argument {k + 1} of the call at line {line}", [(start, end, "")]


def add_argument(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    call = _pick(rng, src.calls)
    if call is None:
        return None
    spans = src.args(call)
    extra = rng.choice(EXTRA_ARGS)
    if rng.random() < 0.3:
        extra = f"{rng.choice(builtin_keywords())} = {rng.choice(OTHER_TYPES)}"
    line = src.toks[call].line
    if not spans:
        at = src.toks[call].end
        return f"add argument {extra} to the call at line {line}", [(at, at, extra)]
    if rng.random() < 0.3:
        at = spans[0][0]  # first, before the others (positional after keyword, if any)
        return f"add argument {extra} first in the call at line {line}", [(at, at, extra + ", ")]
    at = spans[-1][1]
    return f"add argument {extra} to the call at line {line}", [(at, at, ", " + extra)]


WRAPS = [("[", "]"), ("(", ",)"), ("{", "}"), ('{"k": ', "}"), ("lambda: ", ""), ("[", " for x in []]"), ("(", ")")]


def wrap(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    call = _pick(rng, src.calls)
    if call is not None and rng.random() < 0.6:
        spans = src.args(call)
        if not spans:
            return None
        start, end = rng.choice(spans)
        line = src.toks[call].line
    else:
        i = _pick(rng, src.values)
        if i is None:
            return None
        start, end, line = src.toks[i].start, src.toks[i].end, src.toks[i].line
    left, right = rng.choice(WRAPS)
    return f"wrap {src.text[start:end][:30]!r} in {left}...{right} (line {line})", [
        (start, start, left),
        (end, end, right),
    ]


def unwrap(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    i = _pick(rng, list(src.match))
    if i is None:
        return None
    a, b = src.toks[i], src.toks[src.match[i]]
    return f"remove the brackets {a.text}{b.text} (line {a.line})", [(a.start, a.end, ""), (b.start, b.end, "")]


def huge_value(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    i = _pick(rng, src.literals)
    if i is None:
        return None
    t = src.toks[i]
    value = rng.choice(HUGE_NUMBERS if t.kind == tokenize.NUMBER or rng.random() < 0.2 else HUGE_STRINGS)
    return f"replace {t.text[:30]!r} with {value[:40]} (line {t.line})", [(t.start, t.end, value)]


def deep_nesting(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    i = _pick(rng, src.values)
    if i is None:
        return None
    t = src.toks[i]
    n = rng.choice([20, 90, 200, 500, 1000, 3000, 10_000, 50_000])
    kind = rng.randrange(9)
    x = t.text
    if kind == 0:
        new = "(" * n + x + ")" * n
    elif kind == 1:
        new = "[" * n + x + "]" * n
    elif kind == 2:
        new = '{"k": ' * n + x + "}" * n
    elif kind == 3:
        new = "-" * n + x
    elif kind == 4:
        new = "(" + x + " + 1" * n + ")"
    elif kind == 5:
        new = "str(" * n + x + ")" * n
    elif kind == 6:
        new = "(" + "lambda: " * n + x + ")"
    elif kind == 7:
        new = x + ".x" * n
    else:
        new = "(" + x + (" if True else " + x) * n + ")"
    return f"nest {t.text[:30]!r} {n} deep ({new[:16]}...) (line {t.line})", [(t.start, t.end, new)]


def wrong_keyword(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    kws = [i for i, t in enumerate(src.toks) if keyword.iskeyword(t.text) or t.text == "load"]
    if kws and rng.random() < 0.7:
        t = src.toks[rng.choice(kws)]
        new = rng.choice([k for k in NEW_KEYWORDS if k != t.text])
        return f"replace keyword {t.text!r} with {new!r} (line {t.line})", [(t.start, t.end, new)]
    if not src.lines:
        return None
    n = rng.randrange(len(src.lines) + 1)
    at = sum(len(line) for line in src.lines[:n])
    prev = src.lines[n - 1] if n else ""
    indent = prev[: len(prev) - len(prev.lstrip())] if prev.strip() and rng.random() < 0.5 else ""
    stmt = rng.choice(STATEMENTS)
    body = "".join(indent + line + "\n" for line in stmt.split("\n"))
    if at and src.text[at - 1 : at] != "\n":
        body = "\n" + body
    return f"insert {stmt.splitlines()[0]!r} before line {n + 1}", [(at, at, body)]


def line_op(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    if not src.lines:
        return None
    n = rng.randrange(len(src.lines))
    start = sum(len(line) for line in src.lines[:n])
    line = src.lines[n]
    end = start + len(line)
    kind = rng.randrange(7)
    if kind == 0:
        return f"delete line {n + 1}", [(start, end, "")]
    if kind == 1:
        return f"duplicate line {n + 1}", [(end, end, line if line.endswith("\n") else "\n" + line)]
    if kind == 2:
        return f"indent line {n + 1}", [(start, start, "    ")]
    if kind == 3:
        stripped = len(line) - len(line.lstrip(" "))
        if not stripped:
            return None
        return f"dedent line {n + 1}", [(start, start + min(stripped, 4), "")]
    if kind == 4 and n + 1 < len(src.lines):
        nxt = src.lines[n + 1]
        if not line.endswith("\n"):
            return None
        return f"swap lines {n + 1} and {n + 2}", [
            (start, end + len(nxt), nxt + line if nxt.endswith("\n") else nxt + "\n" + line.rstrip("\n"))
        ]
    if kind == 5:
        return f"cut the file after line {n}", [(start, len(src.text), "")]
    cut = rng.randrange(len(src.text) + 1)
    return f"cut the file at offset {cut}", [(cut, len(src.text), "")]


OPERATORS: list[tuple[Op, int]] = [
    (delete_token, 12),
    (duplicate_token, 6),
    (swap_tokens, 8),
    (retype_literal, 14),
    (rename_keyword, 12),
    (swap_name, 8),
    (drop_argument, 10),
    (add_argument, 10),
    (wrap, 5),
    (unwrap, 5),
    (huge_value, 12),
    (deep_nesting, 4),
    (wrong_keyword, 7),
    (line_op, 6),
]

_KEYWORDS: list[str] = []
_NAMES: list[str] = []


def builtin_names() -> list[str]:
    if not _NAMES:
        from faultbox.spec.builtins import universe_names

        _NAMES.extend(sorted(universe_names()))
    return _NAMES


def builtin_keywords() -> list[str]:
    """Every keyword any builtin takes, plus a few near misses."""
    if not _KEYWORDS:
        from faultbox.spec.builtins import _BUILTINS, make_universe
        from faultbox.spec.registry import SpecBuilder

        make_universe(SpecBuilder("<names>"))  # imports the builtin modules (their registrations)
        names = {p.name for sig, _, _ in _BUILTINS.values() for p in sig.params}
        names.update({"bogus", "Run", "timeout_s", "Service", "probabilty", "deps", "expects"})
        _KEYWORDS.extend(sorted(names))
    return _KEYWORDS


def mutate(rng: random.Random, src: Source) -> tuple[str, list[Edit]] | None:
    ops, weights = zip(*OPERATORS, strict=True)
    first = rng.choices(ops, weights)[0](rng, src)
    if first is None:
        return None
    if rng.random() < 0.2:
        second = rng.choices(ops, weights)[0](rng, src)
        if second is not None and not overlap(first[1], second[1]):
            return f"{first[0]}; {second[0]}", first[1] + second[1]
    return first


def generate(seed: int = SEED) -> list[Mutant]:
    """The whole corpus, numbered."""
    out: list[Mutant] = []
    for unit in units():
        for mutation, text in mutants_of(unit, seed):
            out.append(Mutant(len(out), unit, mutation, text))
    return out


def mutants_of(unit: Unit, seed: int = SEED) -> list[tuple[str, str]]:
    """(mutation, text) of up to unit.quota distinct mutants of one file, from its own random stream."""
    rng = random.Random(f"{seed}/{unit.target}")
    src = Source(unit.source)
    seen = {unit.source}
    out: list[tuple[str, str]] = []
    attempts = 0
    while len(out) < unit.quota and attempts < unit.quota * 20:
        attempts += 1
        found = mutate(rng, src)
        if found is None:
            continue
        text = apply(unit.source, found[1])
        if text not in seen:
            seen.add(text)
            out.append((found[0], text))
    return out


# -- the worker: load mutants, classify outcomes -------------------------------------------------


def make_tree(tree: Path) -> None:
    """A private copy of the example directories: .star files copied, everything else linked."""
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    for name, original in DIRECTORIES.items():
        (tree / name).mkdir()
        for entry in original.iterdir():
            if entry.suffix == ".star":
                shutil.copyfile(entry, tree / name / entry.name)
            else:
                (tree / name / entry.name).symlink_to(entry)
    (tree / "chunks").mkdir()


def plan(spec: Any) -> None:
    """What `faultbox test` builds from a loaded spec before it starts a service, and what `faultbox
    check --format json` prints."""
    from faultbox.cli.main import _services
    from faultbox.runner.proxies import check_assumptions
    from faultbox.runner.run import _budget, matrix_of
    from faultbox.runner.select import select_tests

    check_assumptions(spec.assumptions.values())
    for name in select_tests([t.name for t in spec.tests], None):
        assert spec.test(name) is not None
    _budget(spec)
    matrix_of(spec, [])
    json.dumps(_services(spec))


def judge(tree: Path, root: str) -> dict[str, Any]:
    """Load a spec and say how it went: ok, error (a well-formed SpecError), bad_error, traceback."""
    import traceback

    from faultbox.errors import Code, FaultboxError, SourceLocation, SpecError
    from faultbox.spec import load_spec

    try:
        spec = load_spec(str(tree / root))
        plan(spec)
    except SpecError as exc:
        problems = []
        loc = exc.location
        if not isinstance(exc.code, Code):
            problems.append("no code")
        if not isinstance(loc, SourceLocation):
            problems.append("no location")
        else:
            where = Path(loc.file)
            if not where.is_relative_to(tree) or not where.is_file():  # the user's file, not the stdlib's
                problems.append(f"location {loc} is not a file of the user's spec")
            elif not 1 <= loc.line <= where.read_text(errors="replace").count("\n") + 1:
                problems.append(f"location {loc} is not a line of the file")
        if not (isinstance(exc.hint, str) and exc.hint.strip()):
            problems.append("no fix")
        if not (isinstance(exc.message, str) and exc.message.strip()):
            problems.append("no message")
        try:
            rendered = exc.render()
            if "Traceback" in rendered:
                problems.append("a traceback in the message")
        except BaseException as render_exc:
            problems.append(f"render() raised {type(render_exc).__name__}: {render_exc}")
        code = exc.code.value if isinstance(exc.code, Code) else repr(exc.code)
        detail = f"{loc}: [{code}] {exc.message[:300]}"
        if problems:
            return {"kind": "bad_error", "code": code, "detail": f"{', '.join(problems)}: {detail}"}
        return {"kind": "error", "code": code, "detail": detail}
    except FaultboxError as exc:
        code = getattr(exc, "code", None)
        return {
            "kind": "bad_error",
            "code": getattr(code, "value", "none"),
            "detail": f"{type(exc).__name__} is not a SpecError (no location): {str(exc)[:300]}",
        }
    except BaseException as exc:  # anything else is a traceback the user would see
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "/faultbox/" in f.filename] or frames
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours[-4:]))
        text = str(exc)
        return {
            "kind": "traceback",
            "code": type(exc).__name__,
            "detail": f"{type(exc).__name__}: {text[:300]} at {where}",
        }
    return {"kind": "ok", "code": "", "detail": ""}


def serve(tree: Path) -> None:
    """Worker loop: a JSON request per line on stdin, a JSON answer per line on the original stdout."""
    import resource

    from faultbox._util.hints import WHERE_HINTS

    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a spec writes goes to stderr, never into the answers
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    make_tree(tree)
    for _, root, _ in EXAMPLE_UNITS:  # warm up: imports and first loads out of the mutants' time
        judge(tree, root)
    out.write(json.dumps({"ready": True}) + "\n")
    restore: tuple[Path, str] | None = None
    for line in sys.stdin:
        request = json.loads(line)
        if restore is not None:
            restore[0].write_text(restore[1])
            restore = None
        target = tree / request["target"]
        if target.exists():
            restore = (target, target.read_text())
        target.write_text(request["text"])
        began = time.process_time()
        answer = judge(tree, request["root"])
        answer["cpu"] = time.process_time() - began
        WHERE_HINTS.clear()  # code objects of mutants already judged
        answer["i"] = request["i"]
        out.write(json.dumps(answer) + "\n")


# -- the parent: a watchdog over a few workers ---------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant
    kind: str  # ok, error, bad_error, traceback, hang, crash
    code: str
    detail: str
    cpu: float = 0.0  # seconds the worker spent on it


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind not in ("ok", "error")]

    def summary(self) -> str:
        codes = Counter(o.code for o in self.outcomes if o.kind == "error")
        lines = [
            f"{len(self.outcomes)} mutants in {self.seconds:.1f}s: {self.count('ok')} loaded, "
            f"{self.count('error')} clean errors, {self.count('bad_error')} errors without code/location/fix, "
            f"{self.count('traceback')} tracebacks, {self.count('hang')} hangs, {self.count('crash')} crashes",
            "clean errors by code: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()),
        ]
        classes = Counter((o.kind, o.code, _shape(o.detail)) for o in self.failures())
        for (kind, code, shape), n in classes.most_common():
            example = next(o for o in self.failures() if (o.kind, o.code, _shape(o.detail)) == (kind, code, shape))
            lines.append(
                f"  {n} x {kind} {code}: mutant {example.mutant.index} ({example.mutant.unit.target}: "
                f"{example.mutant.mutation}): {example.detail}"
            )
        return "\n".join(lines)


def _shape(detail: str) -> str:
    """A failure's class: where it was raised (a traceback's innermost frames) or its problem."""
    if " at " in detail:
        return detail.rsplit(" at ", 1)[1]
    return detail.split(":", 1)[0]


class Worker:
    def __init__(self, base: Path, number: int, stderr: Path) -> None:
        self.tree = base / f"tree{number}"
        self.stderr_path = stderr
        self.stderr = stderr.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", str(self.tree)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=ROOT,
        )
        self.buffer = b""
        self.current: Mutant | None = None
        self.deadline = time.monotonic() + 120.0  # to get ready
        self.ready = False

    def send(self, mutant: Mutant) -> None:
        request = {"i": mutant.index, "target": mutant.unit.target, "root": mutant.unit.root, "text": mutant.text}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        self.current = mutant
        self.deadline = time.monotonic() + HANG_SECONDS

    def lines(self) -> tuple[list[dict[str, Any]], bool]:
        """Answers read now, and whether the worker's output ended."""
        assert self.proc.stdout is not None
        data = os.read(self.proc.stdout.fileno(), 1 << 16)
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in complete if line.strip()], not data

    def stop(self) -> str:
        """Kill this worker (it was started here); the tail of its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.stderr.close()
        return self.stderr_path.read_bytes()[-1500:].decode(errors="replace")


def run(mutants: list[Mutant], workers: int = WORKERS) -> Report:
    assert len({m.index for m in mutants}) == len(mutants), "mutants are numbered uniquely"
    report = Report()
    started = time.monotonic()
    results: dict[int, Outcome] = {}
    pending = list(reversed(mutants))
    with tempfile.TemporaryDirectory(prefix="faultbox-bad-specs-") as tmp:
        base = Path(tmp)
        spawned = 0

        def spawn() -> Worker:
            nonlocal spawned
            spawned += 1
            return Worker(base, spawned, base / f"stderr{spawned}.txt")

        pool = [spawn() for _ in range(min(workers, len(mutants)))]
        selector = selectors.DefaultSelector()
        for w in pool:
            assert w.proc.stdout is not None
            selector.register(w.proc.stdout, selectors.EVENT_READ, w)
        try:
            while len(results) < len(mutants):
                for w in pool:
                    if w.ready and w.current is None:
                        if pending:
                            w.send(pending.pop())
                        else:
                            w.deadline = float("inf")
                wait = min(w.deadline for w in pool) - time.monotonic()
                if wait == float("inf"):
                    raise RuntimeError("corpus workers idle with mutants unanswered")
                for key, _ in selector.select(max(0.0, wait)):
                    w = key.data
                    answers, ended = w.lines()
                    for answer in answers:
                        if answer.get("ready"):
                            w.ready = True
                            continue
                        assert w.current is not None and answer["i"] == w.current.index, answer
                        results[w.current.index] = Outcome(
                            w.current, answer["kind"], answer["code"], answer["detail"], answer["cpu"]
                        )
                        w.current = None
                    if ended:
                        _replace(w, pool, selector, spawn, results, "crash", bool(pending))
                now = time.monotonic()
                for w in list(pool):
                    if now > w.deadline:
                        if not w.ready:
                            raise RuntimeError(f"a corpus worker did not start: {w.stop()}")
                        _replace(w, pool, selector, spawn, results, "hang", bool(pending))
        finally:
            for w in pool:
                w.stop()
            selector.close()
    report.outcomes = [results[m.index] for m in mutants if m.index in results]
    report.seconds = time.monotonic() - started
    return report


def _replace(
    w: Worker,
    pool: list[Worker],
    selector: selectors.BaseSelector,
    spawn: Callable[[], Worker],
    results: dict[int, Outcome],
    kind: str,
    more: bool,
) -> None:
    """A worker hung on its mutant or died: record it, kill it, start another in its place."""
    assert w.proc.stdout is not None
    selector.unregister(w.proc.stdout)
    tail = w.stop()
    pool.remove(w)
    if not w.ready:
        raise RuntimeError(f"a corpus worker died while starting: {tail}")
    if w.current is not None:
        detail = f"no answer within {HANG_SECONDS:.0f}s" if kind == "hang" else f"the worker died: {tail[-600:]}"
        results[w.current.index] = Outcome(w.current, kind, "", detail)
    if not more:
        return
    fresh = spawn()
    assert fresh.proc.stdout is not None
    selector.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)
    pool.append(fresh)


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        serve(Path(argv[1]))
        return
    mutants = generate()
    if argv[0] in ("show", "run"):
        m = mutants[int(argv[1])]
        print(f"# mutant {m.index} of {m.unit.target} (loaded through {m.unit.root}): {m.mutation}")
        if argv[0] == "show":
            print(m.text)
            return
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "tree"
            make_tree(tree)
            (tree / m.unit.target).write_text(m.text)
            from faultbox.spec import load_spec

            plan(load_spec(str(tree / m.unit.root)))
            print("loaded")
        return
    if argv[0] == "all":
        report = run(mutants)
        print(report.summary())
        if len(argv) > 1:
            import pickle

            Path(argv[1]).write_bytes(
                pickle.dumps([(o.mutant.index, o.kind, o.code, o.detail, o.cpu) for o in report.outcomes])
            )


if __name__ == "__main__":
    main(sys.argv[1:])
