"""`faultbox docs [NAME]`: the documentation that ships inside the package (README and docs/), so
a user with only the installed package can read the spec language, the error codes and the rest."""

from __future__ import annotations

import argparse
import sys

from faultbox._util.spell import did_you_mean
from faultbox.cli.mcp_tools import find_docs
from faultbox.model.result import ExitCode


def command(args: argparse.Namespace) -> int:
    docs = find_docs()
    if not docs:
        print("error: no documentation found inside this installation of faultbox", file=sys.stderr)
        return ExitCode.USAGE
    if args.name is None:
        width = max(len(d.name) for d in docs)
        for d in docs:
            print(f"{d.name:<{width}}  {d.title}")
        print("\nfaultbox docs NAME prints one (e.g. faultbox docs spec-language)", file=sys.stderr)
        return ExitCode.OK
    wanted = args.name if args.name.endswith(".md") else f"{args.name}.md"
    by_name = {d.name.lower(): d for d in docs}
    doc = by_name.get(wanted.lower())
    if doc is None:
        names = [d.name.removesuffix(".md") for d in docs]
        print(
            f'error: no document "{args.name}"{did_you_mean(args.name, names)}; documents: {", ".join(names)}',
            file=sys.stderr,
        )
        return ExitCode.USAGE
    sys.stdout.write(doc.path.read_text(encoding="utf-8", errors="replace"))
    return ExitCode.OK
