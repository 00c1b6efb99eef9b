"""Settings every librdkafka client of faultbox's shares (the topic reader, the broker's probe, the
Kafka steps)."""

from __future__ import annotations

# librdkafka opens a new broker connection no more often than every reconnect.backoff.ms / 2 (but
# never more often than every 11 ms): every 50 ms by default. A new client's first requests go over
# its bootstrap connection, the next ones to the broker that connection named, over a connection of
# its own: measured against Tansu, one of a new admin client's first two requests took ~52 ms by
# default, and the two together ~14 ms with 10 ms here. Each client keeps its own
# reconnect.backoff.max.ms, which bounds the retries against a broker that is down.
FAST_CONNECT: dict[str, int] = {"reconnect.backoff.ms": 10}
