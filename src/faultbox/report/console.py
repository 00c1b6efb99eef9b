"""The console reporter: a live line per running test on a terminal (plain lines otherwise), the
details of every failure as it happens, then the matrix table and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from faultbox._util import display_path
from faultbox.model.event import Event
from faultbox.model.result import MatrixResult, Outcome, RunResult, TestResult, Verdict

_STYLE = {
    Outcome.PASSED: ("PASS", "green"),
    Outcome.FAILED: ("FAIL", "red"),
    Outcome.EXPECTATION_VIOLATED: ("FAIL", "red"),
    Outcome.FAULT_BYPASSED: ("FAIL", "yellow"),
    Outcome.ERRORED: ("ERROR", "magenta"),
    Outcome.INCONCLUSIVE: ("INCONCLUSIVE", "yellow"),
    Outcome.HALTED: ("HALTED", "cyan"),
}
_FAULT_EVENTS = ("syscall",)


class ConsoleReporter:
    def __init__(
        self, stream: IO[str] | None = None, *, color: bool | None = None, verbose: bool = False, runs: int = 1
    ) -> None:
        self.console = Console(file=stream, highlight=False, soft_wrap=True, no_color=color is False)
        self.verbose = verbose
        self.runs = runs  # --runs N: each test up to N times
        self._quiet_warnings: dict[str, int] = {}  # code -> count, on passing tests (shown with -v)
        self._status: Status | None = None
        self._running: list[str] = []  # tests in flight, in the order they started

    # -- RunListener ---------------------------------------------------------------------------

    def run_started(self, run: RunResult, tests: Sequence[str]) -> None:
        n = len(tests)
        runs = f"  runs={self.runs}" if self.runs > 1 else ""
        self.console.print(
            f"[bold]faultbox[/] {escape(run.spec)}  seed={run.seed}{runs}  {n} test{'s' if n != 1 else ''}"
        )

    def test_started(self, name: str) -> None:
        self._running.append(name)
        self._show_running()

    def _show_running(self) -> None:
        """One live line naming the tests in flight (several at once with --jobs)."""
        if not self.console.is_terminal:
            return
        if not self._running:
            if self._status is not None:
                self._status.stop()
                self._status = None
            return
        text = f"running {escape(', '.join(self._running))}"
        if len(self._running) > 1:
            text = f"running {len(self._running)}: {escape(', '.join(self._running))}"
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def test_finished(self, result: TestResult) -> None:
        if result.name in self._running:
            self._running.remove(result.name)
        self._show_running()
        word, style = _STYLE[result.outcome]
        refined = (Outcome.EXPECTATION_VIOLATED, Outcome.FAULT_BYPASSED)
        detail = f" ({result.outcome.value})" if result.outcome in refined else ""
        if result.runs:
            detail += f" ({_runs_summary(result)})"
        if result.leaves:
            detail += f" ({_leaves_summary(result)})"
        self.console.print(
            f"[{style}]{word:>5}[/] {escape(result.name)} [dim]{_ms(result.duration_ms)}[/]{escape(detail)}"
        )
        if result.verdict is not Verdict.PASS or self.verbose:
            self._details(result)
        else:
            for d in result.diagnostics:
                self._quiet_warnings[d.code] = self._quiet_warnings.get(d.code, 0) + 1

    def run_finished(self, result: RunResult) -> None:
        if result.matrix is not None:
            self._matrix(result.matrix)
        counts = result.counts()
        parts = [f"{counts['pass']} passed", f"{counts['fail'] + counts['error']} failed"]
        if counts["inconclusive"]:
            parts.append(f"{counts['inconclusive']} inconclusive")
        if counts["halted"]:
            parts.append(f"{counts['halted']} halted")
        if result.interrupted:
            parts.append("interrupted")
        failing = [t for t in result.tests if t.failed_runs]
        if failing:
            self.console.print("\n[red]failing seeds[/] (each replays its run alone with --seed):")
            for t in failing:
                seeds = ", ".join(f"{r.seed} (run {r.run})" for r in t.failed_runs)
                self.console.print(f"  {escape(t.name)}: {seeds}")
        if self._quiet_warnings:
            which = ", ".join(f"{code} ×{n}" for code, n in sorted(self._quiet_warnings.items()))
            self.console.print(f"\n[yellow]warnings on passing tests:[/] {which} (run with -v to see them)")
        style = "green" if result.exit_code == 0 else "red"
        self.console.print(f"\n[{style}]{', '.join(parts)}[/] [dim]in {_ms(result.duration_ms)}[/]")

    # -- details of a test ---------------------------------------------------------------------

    def _details(self, r: TestResult) -> None:
        p = self.console.print
        if r.reason:
            for i, line in enumerate(r.reason.splitlines()):
                p(("    reason: " if i == 0 else "            ") + escape(line))
        if r.location:
            p(f"    at: {escape(display_path(r.location))}")
        if "fix" in r.details:
            p(f"    fix: {escape(str(r.details['fix']))}")
        for key in ("expected", "actual"):
            if key in r.details:
                p(f"    {key}: {escape(str(r.details[key]))}")
        if r.violation is not None:
            v = r.violation
            p(f"    violating event: {escape(Event.from_dict(v.event).describe())}")
            if v.before:
                p("    events before it:")
                for e in v.before:
                    p(f"      {escape(Event.from_dict(e).describe())}")
        nearest = r.details.get("nearest")
        if nearest:
            p("    nearest events:")
            for line in nearest:
                p(f"      {escape(str(line))}")
        decisions = [e for e in r.events if e.type == "syscall" and e.fields.get("decision", "allow") != "allow"]
        if decisions:
            p(f"    fault decisions ({len(decisions)}):")
            for d in decisions[:12]:
                f = d.fields
                extra = f"  [{f['label']}]" if f.get("label") else ""
                where = f"  {f.get('path') or f.get('addr') or ''}"
                p(
                    f"      #{d.seq:<5} {d.service:<12} {f.get('syscall', ''):<10} {f.get('decision', '')}"
                    f"{escape(where)}{escape(extra)}"
                )
            if len(decisions) > 12:
                p(f"      … {len(decisions) - 12} more")
        for fr in r.faults:
            p(
                f"    fault {escape(fr.service)}.{escape(fr.keyword)}={escape(fr.decision)}: "
                f"matched {fr.matched}, fired {fr.fired}"
            )
        for diag in r.diagnostics:
            p(f"    [yellow]{diag.level}[/] [{diag.code}] {escape(diag.message)}")
            if diag.hint:
                p(f"      [dim]fix: {escape(diag.hint)}[/]")
        printed = r.details.get("printed")
        if printed and r.verdict is not Verdict.PASS:
            p("    printed:")
            for line in printed[-10:]:
                p(f"      {escape(str(line))}")
        if r.leaves:
            self._leaves(r)
        if r.shrunk is not None:
            p(f"    smallest failing case ({r.shrunk.runs} runs to find): {escape(r.shrunk.removed)}")
            p(f"      replay: {escape(r.shrunk.replay)}")
        if r.runs and r.failed_runs:
            p("    failing runs:")
            for run in r.failed_runs:
                first = run.reason.splitlines()[0] if run.reason else ""
                p(f"      run {run.run} seed {run.seed}: {run.outcome.value}{escape(': ' + first if first else '')}")
                p(f"        replay: {escape(run.replay)}")
        elif r.replay and r.verdict is not Verdict.PASS and not r.failed_leaves:
            p(f"    replay: {escape(r.replay)}")
        if r.bundle:
            p(f"    bundle: {escape(r.bundle)}  (faultbox replay {escape(r.bundle)})")

    def _leaves(self, r: TestResult) -> None:
        """Every leaf under -v; otherwise those that did not pass, each with its replay."""
        shown = r.leaves if self.verbose else r.failed_leaves
        if not shown:
            return
        p = self.console.print
        p("    leaves:" if self.verbose else "    failing leaves:")
        for leaf in shown:
            first = leaf.reason.splitlines()[0] if leaf.reason and leaf.verdict is not Verdict.PASS else ""
            why = escape(": " + first if first else "")
            p(f"      leaf {leaf.leaf} {escape(leaf.label)}: {leaf.outcome.value}{why}")
            if leaf.replay:
                p(f"        replay: {escape(leaf.replay)}")

    def _matrix(self, m: MatrixResult) -> None:
        table = Table(title="fault matrix", title_justify="left", show_lines=False)
        table.add_column("scenario \\ fault")
        for a in m.assumptions:
            table.add_column(a, justify="center")
        for s in m.scenarios:
            row: list[Any] = [s]
            for a in m.assumptions:
                cell = m.cell(s, a)
                if cell is None:
                    row.append("[dim]·[/]")
                elif cell.outcome is None:
                    row.append("[dim]—[/]")
                else:
                    word, style = _STYLE[cell.outcome]
                    leaves = f" {cell.leaves[0]}/{cell.leaves[1]} leaves" if cell.leaves else ""
                    row.append(f"[{style}]{cell.outcome.mark} {word.lower()}{leaves}[/]")
            table.add_row(*row)
        self.console.print()
        self.console.print(table)
        failures = [c for c in m.cells if c.outcome not in (None, Outcome.PASSED)]
        for c in failures:
            first = c.reason.splitlines()[0] if c.reason else ""
            self.console.print(f"  {escape(c.scenario)} × {escape(c.assumption)}: {escape(first)}")


def _runs_summary(r: TestResult) -> str:
    failed = r.failed_runs
    total = len(r.runs)
    if not failed:
        return f"{total}/{total} runs passed"
    if len(failed) == 1 and failed[0].run == total:  # stopped at it, or the last run failed
        return f"run {total} failed, seed {failed[0].seed}" + (f", after {total - 1} passed" if total > 1 else "")
    return f"{len(failed)} of {total} runs did not pass"


def _leaves_summary(r: TestResult) -> str:
    failed = r.failed_leaves
    total = len(r.leaves)
    return f"{total - len(failed)}/{total} leaves passed"


def _ms(ms: int) -> str:
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


__all__ = ["ConsoleReporter"]
