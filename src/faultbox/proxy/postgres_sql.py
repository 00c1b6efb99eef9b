"""SQL text helpers of the PostgreSQL proxy: split a simple Query into its statements, and build the
statement that makes the server raise a chosen error.

The splitter knows just enough of PostgreSQL's lexer to find the `;` that end statements: quoted
strings ('', E'' with backslash escapes, ""), dollar quotes, `--` and nested `/* */` comments. It
does not know `BEGIN ATOMIC ... END` bodies (their inner `;` split the text): that only affects which
part of such a text a `query=` glob sees.
"""

from __future__ import annotations

import re

# Tokens that can hide a `;`. Plain strings honour standard_conforming_strings=on (the default since
# 9.1); E'' strings take backslash escapes. An unterminated quote runs to the end of the text.
_LEX = re.compile(
    r"""
    (?P<semi>;)
  | (?P<quote>
        (?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'?
      | '[^']*(?:''[^']*)*'?
      | "[^"]*(?:""[^"]*)*"?
    )
  | (?P<line>--[^\n]*)
  | (?P<block>/\*)
  | (?P<dollar>(?<![\w$])\$(?:[^\W\d]\w*)?\$)
    """,
    re.VERBOSE | re.DOTALL,
)
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")

DEFAULT_SQLSTATE = "XX000"
DEFAULT_MESSAGE = "injected fault"


def split_statements(text: str) -> list[tuple[int, int, int]]:
    """The statements of `text` as (start, content_start, end) offsets: `start` is where the statement's
    text begins (after the previous `;`), `content_start` skips leading blanks and comments, `end`
    excludes its `;` and trailing blanks. Statements with no content (blanks, comments) are left out,
    as the server skips them too."""
    if ";" not in text and "--" not in text and "/*" not in text:  # the common case: one statement
        stripped = text.strip()
        if not stripped:
            return []
        lead = len(text) - len(text.lstrip())
        return [(0, lead, lead + len(stripped))]
    spans: list[tuple[int, int, int]] = []
    n = len(text)
    start = 0
    content = -1  # offset of the statement's first non-comment character, -1 while none
    last = 0  # offset of the first character after the statement's last content
    pos = 0
    while True:
        m = _LEX.search(text, pos)
        gap_end = m.start() if m else n
        gap = text[pos:gap_end]
        if gap and not gap.isspace():
            if content < 0:
                content = pos + len(gap) - len(gap.lstrip())
            last = pos + len(gap.rstrip())
        if m is None:
            break
        kind = m.lastgroup
        if kind == "semi":
            if content >= 0:
                spans.append((start, content, last))
            start = m.end()
            content = -1
            pos = m.end()
            continue
        if kind == "quote":
            end = m.end()
        elif kind == "dollar":
            close = text.find(m.group(), m.end())
            end = n if close < 0 else close + len(m.group())
        elif kind == "block":
            end = _block_comment_end(text, m.end())
        else:  # line comment
            end = m.end()
        if kind in ("quote", "dollar"):
            if content < 0:
                content = m.start()
            last = end
        pos = end
    if content >= 0:
        spans.append((start, content, last))
    return spans


def _block_comment_end(text: str, pos: int) -> int:
    """The offset after the `*/` closing a comment opened just before `pos` (comments nest)."""
    depth = 1
    while depth:
        m = _COMMENT_EDGE.search(text, pos)
        if m is None:
            return len(text)
        depth += 1 if m.group() == "/*" else -1
        pos = m.end()
    return pos


def statement_text(text: str) -> str:
    """The text a `query=` matcher sees for one statement: without leading comments and blanks."""
    if text[:2] not in ("--", "/*") and not text[:1].isspace():
        return text
    spans = split_statements(text)
    if not spans:
        return text.strip()
    return text[spans[0][1] :]


def valid_sqlstate(code: str | None) -> bool:
    return code is not None and _SQLSTATE.fullmatch(code) is not None


def raise_statement(sqlstate: str, message: str) -> str:
    """A statement that makes the server raise an ERROR with this SQLSTATE and message: the error
    comes from the server itself, so the transaction state it leaves is the server's own."""
    # E'' so the literal means the same whatever standard_conforming_strings says; NUL cannot be sent.
    literal = "E'" + message.replace("\x00", "").replace("\\", "\\\\").replace("'", "''") + "'"
    body = f" BEGIN RAISE EXCEPTION USING ERRCODE = '{sqlstate}', MESSAGE = {literal}; END "
    tag = "$fb$"
    i = 0
    while tag in body:
        i += 1
        tag = f"$fb{i}$"
    return f"DO {tag}{body}{tag}"
