"""TopicSource's side of its reader process, against a stand-in reader (fake_topic_reader.py): how
events and barriers cross, and how a reader that dies is reported and reaped. No Kafka here; the
real reader is tested against a real broker in tests/integration/deps/test_topic.py."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultbox.sources import SourceError, topic
from faultbox.sources.topic import TopicSource
from support import descendants_alive, wait_until

FAKE = Path(__file__).resolve().parent / "fake_topic_reader.py"


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def __call__(self, type: str, service: str, fields: dict[str, str], data: dict[str, object] | None) -> None:
        with self.lock:
            self.events.append((type, service, dict(fields)))

    def of(self, type: str) -> list[dict[str, str]]:
        with self.lock:
            return [fields for t, _, fields in self.events if t == type]


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], topic._Readers]]:
    """use(mode): TopicSource starts stand-in readers in that mode (and keeps one ahead)."""
    made: list[topic._Readers] = []

    def use(mode: str) -> topic._Readers:
        readers = topic._Readers([sys.executable, str(FAKE), mode])
        made.append(readers)
        monkeypatch.setattr(topic, "_readers", readers)
        return readers

    yield use
    for readers in made:
        readers.close()


def test_events_and_barriers_cross_in_order(readers: Callable[[str], topic._Readers]) -> None:
    readers("follow")
    sink = Sink()
    source = TopicSource("127.0.0.1:1", "bus", sink)
    source.start()
    pid = source.reader_pid
    assert pid is not None
    try:
        for n in range(3):
            source.barrier(5)
            # The barrier's answer came after its event: it is emitted when barrier() returns.
            assert [e["offset"] for e in sink.of("topic")] == [str(i) for i in range(n + 1)]
        stats = source.stats()
        assert (stats["produce_events"], stats["messages"], stats["barriers"]) == (3, 3, 3)
    finally:
        source.stop()
    assert descendants_alive([pid]) == [], "stop() reaps the reader"
    assert sink.of("source_error") == []  # a reader told to stop is no failure
    source.stop()  # twice is fine
    with pytest.raises(SourceError, match="not running"):
        source.barrier(1)


def test_a_reader_that_aborts_fails_the_source_with_its_reason(readers: Callable[[str], topic._Readers]) -> None:
    readers("abort")
    sink = Sink()
    source = TopicSource("127.0.0.1:1", "bus", sink)
    source.start()
    pid = source.reader_pid
    assert pid is not None
    try:
        with pytest.raises(SourceError) as caught:
            source.barrier(5)
        message = str(caught.value)
        assert "topic source for 'bus'" in message and f"pid {pid}" in message
        assert "killed by SIGABRT" in message and "Assertion `rkb->rkb_state' failed." in message
        # Reported at once, in the trace (a death after the last step is not lost)...
        wait_until(lambda: sink.of("source_error"), "the source_error event")
        [event] = sink.of("source_error")
        assert event["fatal"] == "true" and event["error"] == f"SourceError: {message}"
        # ...and by every later barrier.
        with pytest.raises(SourceError, match="SIGABRT"):
            source.barrier(5)
        assert descendants_alive([pid]) == [], "the dead reader is reaped"
    finally:
        source.stop()
    assert len(sink.of("source_error")) == 1


def test_a_reader_that_exits_while_starting_fails_start(readers: Callable[[str], topic._Readers]) -> None:
    readers("exit-early")
    sink = Sink()
    source = TopicSource("127.0.0.1:1", "bus", sink)
    with pytest.raises(SourceError) as caught:
        source.start()
    assert "could not start on 127.0.0.1:1" in str(caught.value)
    assert "exited with code 3 (last stderr line: boom)" in str(caught.value)
    assert sink.events == []  # the start's failure is the start's to report
    pid = source.reader_pid
    assert pid is not None and descendants_alive([pid]) == []


def test_a_reader_that_cannot_connect_fails_start_with_its_reason(readers: Callable[[str], topic._Readers]) -> None:
    readers("start-failed")
    source = TopicSource("127.0.0.1:1", "bus", Sink())
    with pytest.raises(SourceError, match=r"could not start on 127\.0\.0\.1:1: no broker at that address"):
        source.start()
    pid = source.reader_pid
    assert pid is not None
    wait_until(lambda: not descendants_alive([pid]), "the reader reaped")


def test_the_next_reader_is_started_ahead_and_killed_at_close(readers: Callable[[str], topic._Readers]) -> None:
    pool = readers("follow")
    first = TopicSource("127.0.0.1:1", "bus", Sink())
    first.start()
    first.stop()
    wait_until(lambda: pool.spare_pid() is not None, "a reader started ahead")
    spare = pool.spare_pid()
    second = TopicSource("127.0.0.1:1", "bus", Sink())
    second.start()
    try:
        assert second.reader_pid == spare
        second.barrier(5)
    finally:
        second.stop()
    wait_until(lambda: pool.spare_pid() is not None, "another reader started ahead")
    idle = pool.spare_pid()
    assert idle is not None
    pool.close()
    assert descendants_alive([idle]) == [], "close() kills and reaps the idle reader"
    assert pool.spare_pid() is None


def test_the_runner_side_never_loads_librdkafka() -> None:
    import subprocess

    code = "import sys, faultbox.sources.topic; assert 'confluent_kafka' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
