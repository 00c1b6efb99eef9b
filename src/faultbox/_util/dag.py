"""Run tasks in dependency order, each as soon as everything it depends on has finished, in
threads: what starts a test's services concurrently (`--concurrent-start`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from faultbox._util.threads import ContextThread


def run_in_order(
    names: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    run: Callable[[str], None],
    stop: threading.Event,
) -> None:
    """Call run(name) for each name once all of deps[name] have returned. When a call raises,
    `stop` is set (in-flight calls may watch it to give up early), nothing more starts, and once
    the calls in flight have returned, the first error is raised again. `names` is a dependency
    order (start_order's); a name's deps outside `names` are taken as done."""
    done: set[str] = set()
    started: set[str] = set()
    errors: list[BaseException] = []
    changed = threading.Condition()
    wanted = set(names)

    def one(name: str) -> None:
        try:
            run(name)
        except BaseException as exc:  # raised again in the caller's thread
            with changed:
                errors.append(exc)
            stop.set()
        finally:
            with changed:
                done.add(name)
                changed.notify_all()

    threads: list[ContextThread] = []
    try:
        with changed:
            while len(done) < len(names):
                if not errors:
                    for name in names:
                        if name not in started and all(d in done or d not in wanted for d in deps.get(name, ())):
                            started.add(name)
                            # In the caller's context: each task runs on the caller's behalf
                            # and sees what it would (the running test's host, spec/host.py).
                            t = ContextThread(target=one, args=(name,), name=f"faultbox-start:{name}", daemon=True)
                            threads.append(t)
                            t.start()
                if errors and started <= done:
                    break
                changed.wait()
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
