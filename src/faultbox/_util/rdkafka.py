"""Settings every librdkafka client of faultbox's shares (the topic reader, the broker's probe, the
Kafka steps)."""

from __future__ import annotations

# librdkafka opens a new broker connection at most every reconnect.backoff.ms / 2 (and at least
# every 11 ms): 50 ms by default. A new client's first requests go over its bootstrap connection,
# and the next ones to the broker that connection named, over a connection of its own: measured
# against Tansu, one of a new admin client's first two requests took ~52 ms by default, and the
# two together ~14 ms with 10 ms here. The cap keeps a broker that is down from being hammered.
FAST_CONNECT: dict[str, int] = {"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 250}
