"""TopicSource's side of its reader process, against a stand-in reader (fake_topic_reader.py): how
events and barriers cross, how a reader that dies is reported and reaped, and which readers serve
the next source. No Kafka here; the real reader is tested against a real broker in
tests/integration/deps/test_topic.py."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultbox.sources import SourceError, topic
from faultbox.sources.topic import TopicSource
from support import descendants_alive, ours_alive, wait_until

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
    pool = readers("follow")
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
    assert pool.spare_pid() == pid, "stop() gave the healthy reader back"
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


def test_a_healthy_reader_serves_the_next_source_and_is_killed_at_close(
    readers: Callable[[str], topic._Readers],
) -> None:
    pool = readers("follow")
    first_sink, second_sink = Sink(), Sink()
    first = TopicSource("127.0.0.1:1", "first", first_sink)
    first.start()
    pid = first.reader_pid
    try:
        first.barrier(5)
    finally:
        first.stop()
    # Released and given back: the spare, and no other reader was started ahead.
    assert pool.spare_pid() == pid
    assert idle_readers() == [pid]
    second = TopicSource("127.0.0.1:1", "second", second_sink)
    second.start()
    try:
        assert second.reader_pid == pid
        assert pool.spare_pid() is None and idle_readers(second) == [], "none started ahead: this one comes back"
        second.barrier(5)
        second.barrier(5)
    finally:
        second.stop()
    # The reader began afresh for the second source (its offsets from 0), and each source got
    # only its own events (the stand-in names the topic after the config's service).
    assert [(e["topic"], e["offset"]) for e in first_sink.of("topic")] == [("first", "0")]
    assert [(e["topic"], e["offset"]) for e in second_sink.of("topic")] == [("second", "0"), ("second", "1")]
    assert second.stats()["produce_events"] == 2
    assert pool.spare_pid() == pid
    pool.close()
    assert descendants_alive([pid]) == [], "close() kills and reaps the idle reader"
    assert pool.spare_pid() is None


def test_at_most_one_reader_is_kept_idle(readers: Callable[[str], topic._Readers]) -> None:
    pool = readers("follow")
    sources = [TopicSource("127.0.0.1:1", f"bus{n}", Sink()) for n in range(3)]
    for source in sources:  # three at once: three readers
        source.start()
    pids = [source.reader_pid for source in sources]
    assert len(set(pids)) == 3 and idle_readers(*sources) == []
    for n, source in enumerate(sources):
        source.barrier(5)
        source.stop()
        assert idle_readers(*sources[n + 1 :]) == [pids[0]]
    # The first one given back is kept; the others found the place taken and were reaped.
    assert pool.spare_pid() == pids[0]
    assert descendants_alive([p for p in pids if p is not None]) == [pids[0]]
    again = TopicSource("127.0.0.1:1", "bus", Sink())
    again.start()
    again.stop()
    assert idle_readers() == [pids[0]]


def test_a_reader_is_never_killed_in_use_nor_kept_once_closed(readers: Callable[[str], topic._Readers]) -> None:
    pool = readers("follow")
    source = TopicSource("127.0.0.1:1", "bus", Sink())
    source.start()
    pid = source.reader_pid
    pool.close()  # (at exit) while a source holds its reader
    assert descendants_alive([pid or 0]) == [pid]
    source.barrier(5)
    source.stop()
    assert descendants_alive([pid or 0]) == [], "given back after close(): killed and reaped"
    assert pool.spare_pid() is None


@pytest.mark.parametrize("how", ["failed", "killed", "barrier-timeout", "deaf", "chatty", "start-failed"])
def test_a_reader_in_doubt_is_ended_not_reused(
    how: str, readers: Callable[[str], topic._Readers], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topic, "_RELEASE_WAIT", 0.3)
    mode = {"killed": "follow", "barrier-timeout": "mute"}.get(how, how)
    pool = readers(mode)
    sink = Sink()
    source = TopicSource("127.0.0.1:1", "bus", sink)
    if how == "start-failed":
        with pytest.raises(SourceError, match="no broker at that address"):
            source.start()
    else:
        source.start()
    pid = source.reader_pid
    assert pid is not None
    pool.command[-1] = "follow"  # the readers started from now on are healthy
    try:
        if how == "failed":
            with pytest.raises(SourceError, match="made up"):
                source.barrier(5)
        elif how == "killed":
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: sink.of("source_error"), "the source_error event")
        elif how == "barrier-timeout":
            with pytest.raises(SourceError, match="timed out"):
                source.barrier(0.1)
        elif how in ("deaf", "chatty"):
            source.barrier(5)
    finally:
        source.stop()
    assert descendants_alive([pid]) == [], "ended and reaped"
    assert [e["topic"] for e in sink.of("topic")] in ([], ["bus"]), "nothing after stop() reached the test"
    # The next reader was started ahead; the next source gets it, and it works.
    wait_until(lambda: pool.spare_pid() is not None, "a reader started ahead")
    ahead = pool.spare_pid()
    assert ahead != pid
    again_sink = Sink()
    again = TopicSource("127.0.0.1:1", "bus", again_sink)
    again.start()
    try:
        assert again.reader_pid == ahead
        again.barrier(5)
    finally:
        again.stop()
    assert [e["offset"] for e in again_sink.of("topic")] == ["0"]
    assert pool.spare_pid() == ahead, "a healthy one is kept"


def test_a_reader_that_does_not_answer_release_is_ended_in_time(
    readers: Callable[[str], topic._Readers], caplog: pytest.LogCaptureFixture
) -> None:
    readers("deaf")
    source = TopicSource("127.0.0.1:1", "bus", Sink())
    source.start()
    pid = source.reader_pid
    with caplog.at_level(logging.WARNING, logger="faultbox.sources.topic"):
        started = time.monotonic()
        source.stop()
        took = time.monotonic() - started
    assert topic._RELEASE_WAIT <= took < topic._RELEASE_WAIT + topic._STOP_WAIT, took  # not both waits
    assert f"(pid {pid}) did not answer release within 2s: ending it" in caplog.text
    assert descendants_alive([pid or 0]) == []


def idle_readers(*running: TopicSource) -> list[int]:
    """The stand-in readers alive under this process that none of the running sources holds."""
    return ours_alive("fake_topic_reader.py", (source.reader_pid for source in running))


def test_the_runner_side_never_loads_librdkafka() -> None:
    import subprocess

    code = "import sys, faultbox.sources.topic; assert 'confluent_kafka' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
