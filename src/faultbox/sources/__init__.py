"""Event sources that watch a real dependency from outside and push events into the trace.

Each source runs one background thread and calls `emit(type, service, fields, data)` for every
event, where every field value is a string and `data` optionally keeps native types. A source has
`start()`, `barrier(timeout)` (returns once every change made before the call is in the trace),
`stop()` and `stats()`. A reader error after start is retried; one the source cannot recover from
is raised by the next `barrier()` as SourceError, never swallowed.

The sources: `wal.WalSource` (PostgreSQL logical decoding) and `topic.TopicSource` (Kafka topics
and consumer-group commits). Their modules import their client libraries; this one imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from faultbox.errors import Code, InfraError

#: emit(type, service, fields, data): fields are all strings; data keeps native values (or None).
Emit = Callable[[str, str, dict[str, str], dict[str, object] | None], None]


class SourceError(InfraError):
    """An event source failed: it could not start, lost its stream for good, or a barrier timed out."""

    code = Code.SOURCE_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class ServerDown(SourceError):
    """The observed server does not answer right now (stopped, crashed, restarting): nothing can have
    been committed since, so a barrier has nothing to wait for. The stream catches up when it is back."""


__all__ = ["Emit", "ServerDown", "SourceError"]
