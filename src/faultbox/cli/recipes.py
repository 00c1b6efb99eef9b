"""`faultbox recipes list|show NAME`: the stdlib's protocol fault recipes."""

from __future__ import annotations

import sys
from importlib import resources

from faultbox.model.result import ExitCode


def _files() -> dict[str, str]:
    folder = resources.files("faultbox") / "stdlib" / "recipes"
    return {
        entry.name.removesuffix(".star"): entry.read_text()
        for entry in folder.iterdir()
        if entry.name.endswith(".star")
    }


def recipes(action: str, name: str | None) -> int:
    files = _files()
    if action == "list":
        print("Available stdlib recipes (load via @faultbox/recipes/<name>.star):")
        for proto in sorted(files):
            names = [line.split("=")[0].strip() for line in _struct_fields(files[proto])]
            print(f"  {proto:<10} {' '.join(names)}")
        first = sorted(files)[0]
        print(f'\nexample: load("@faultbox/recipes/{first}.star", "{first}")')
        return ExitCode.OK
    if not name:
        print("faultbox recipes show: name a protocol, e.g. faultbox recipes show postgres", file=sys.stderr)
        return ExitCode.USAGE
    text = files.get(name)
    if text is None:
        print(f"faultbox recipes: no recipes for {name!r}; there are: {', '.join(sorted(files))}", file=sys.stderr)
        return ExitCode.USAGE
    sys.stdout.write(text)
    return ExitCode.OK


def _struct_fields(text: str) -> list[str]:
    """The `name = _impl,` lines of the file's closing struct(...)."""
    body = text.rsplit("struct(", 1)[-1]
    return [line for line in body.splitlines() if "=" in line]
