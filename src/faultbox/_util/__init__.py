"""Leaf helpers with no faultbox imports but the error tree (faultbox.errors): globs, durations,
spelling suggestions."""


def display_path(path: str) -> str:
    """A path as a person wants to read it: relative to the working directory when it is under it."""
    import os

    try:
        cwd = os.getcwd()
    except OSError:
        return path
    if path.startswith(cwd + os.sep):
        return path[len(cwd) + 1 :]
    return path
