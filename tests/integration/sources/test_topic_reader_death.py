"""A topic observer whose reader process dies mid-test (as librdkafka's assertion aborts did in the
runner itself): the run goes on, the test says which source ended and why, the next test observes
with a fresh reader, and no reader is left behind but the healthy one kept for the next source."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from faultbox.sources import Emit, topic
from support import assert_passed, cmdline, descendants_alive, find_test, process_tree, run_spec_text

SPEC = """
load("@faultbox/services.star", "kafka")

bus = kafka("bus")

def test_a_reader_killed_mid_test():
    assert_true(bus.main.publish(topic = "orders", value = "kill-reader").ok)
    assert_eventually(type = "source_error", service = "bus", timeout = "30s")
    r = bus.main.publish(topic = "orders", value = "after")
    assert_true(r.ok, "the broker and the test go on")

def test_b_the_next_test_observes_afresh():
    assert_true(bus.main.publish(topic = "orders", value = "fresh").ok)
    assert_eq([e.value for e in events(type = "topic", action = "produce")], ["fresh"])
"""


def test_a_killed_reader_errs_its_source_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    killed: list[int] = []

    class KillOnCue(topic.TopicSource):
        """Kills its own reader with SIGKILL once the message "kill-reader" is in the trace."""

        def __init__(self, bootstrap: str, service: str, emit: Emit, **options: Any) -> None:
            def spy(type: str, service: str, fields: dict[str, str], data: dict[str, object] | None) -> None:
                emit(type, service, fields, data)
                if fields.get("value") == "kill-reader" and self.reader_pid is not None:
                    killed.append(self.reader_pid)
                    os.kill(self.reader_pid, signal.SIGKILL)

            super().__init__(bootstrap, service, spy, **options)

        def start(self) -> None:
            super().start()
            assert self.reader_pid is not None
            started.append(self.reader_pid)

    monkeypatch.setattr(topic, "TopicSource", KillOnCue)
    result = run_spec_text(tmp_path, SPEC, timeout=90)

    killed_test = find_test(result, "test_a_reader_killed_mid_test")
    # Its steps went on, but a pass on a trace with a hole in it proves nothing: errored, naming it.
    assert killed_test.outcome.value == "errored" and killed_test.code == "SOURCE_FAILED", killed_test.reason
    assert "bus" in killed_test.reason
    assert len(started) == 2 and killed == started[:1], (started, killed)
    [failed] = [d for d in killed_test.diagnostics if d.code == "SOURCE_FAILED"]
    assert failed.level == "error" and failed.service == "bus"
    assert f"its reader process (pid {killed[0]}) was killed by SIGKILL" in failed.message
    trace = "\n".join(f"#{e.seq} {e.type} {e.fields}" for e in killed_test.events if e.type != "syscall")
    # The end comes first in the trace; the barriers that fail after it add no "lagged" warning.
    assert not [d for d in killed_test.diagnostics if d.code == "SOURCE_LAGGED"], trace
    fatal = [e for e in killed_test.events if e.type == "source_error" and e.fields.get("fatal") == "true"]
    assert [e.service for e in fatal] == ["bus"]

    fresh = find_test(result, "test_b_the_next_test_observes_afresh")
    assert_passed(fresh)
    assert not [d for d in fresh.diagnostics if d.code.startswith("SOURCE_")], fresh.diagnostics

    assert descendants_alive(started[:1]) == [], "the killed reader was reaped"
    # The second test's reader was healthy: kept idle for the next source, the only reader left.
    readers = [p for p in process_tree(os.getpid()) if "faultbox.sources.topic_reader" in cmdline(p)]
    assert descendants_alive(readers) == [started[1]] and topic._readers.spare_pid() == started[1]
