"""A stand-in for faultbox.sources.topic_reader that speaks its protocol without Kafka, to make the
reader end in the ways a real one can: `fake_topic_reader.py MODE FD PARENT_PID`.

    follow        ready; answers each barrier with one produce event (offsets from 0 for each
                  config, the config's service as topic), then "done"; answers "release" with
                  "released" and serves the next config
    abort         ready; at the first barrier writes an assertion line on stderr and aborts
    exit-early    writes "boom" on stderr and exits with code 3 before answering its config
    start-failed  answers its config with start_failed
    failed        as follow, but reports "failed" at the first barrier (and goes on)
    deaf          as follow, but never answers "release"
    mute          as follow, but never answers a barrier (the parent's wait for it times out)
    chatty        as follow, but sends one more event after "released"
"""

from __future__ import annotations

import os
import socket
import sys

from faultbox._util.frames import FrameReader, encode_frame, send_frame

ASSERTION = "python3: rdkafka_broker.c:4711: rd_kafka_broker_op_serve: Assertion `rkb->rkb_state' failed."


def main() -> None:
    mode, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)
    reader = FrameReader()
    config: dict[str, object] | None = None
    offset = 0
    while True:
        data = sock.recv(1 << 16)
        for message in reader.feed(data):
            op = message["op"]
            if op == "config":  # (a spare waits for it)
                config, offset = message, 0
                if mode == "exit-early":
                    print("boom", file=sys.stderr, flush=True)
                    os._exit(3)
                if mode == "start-failed":
                    send_frame(sock, {"op": "start_failed", "error": "no broker at that address"})
                    return
                send_frame(sock, {"op": "ready"})
            elif op == "barrier" and config is not None:
                if mode == "abort":
                    print(ASSERTION, file=sys.stderr, flush=True)
                    os.abort()
                if mode == "mute":
                    continue
                if mode == "failed" and offset == 0:
                    send_frame(sock, {"op": "failed", "error": "fatal Kafka client error: made up"})
                event = {"action": "produce", "topic": config["service"], "partition": "0", "offset": str(offset)}
                offset += 1
                send_frame(sock, {"op": "events", "events": [event]})
                send_frame(sock, {"op": "done", "id": message["id"], "error": None, "stats": {"messages": offset}})
            elif op == "release" and mode != "deaf":
                config = None
                if mode == "chatty":  # in one write: the parent reads both at once
                    event = {"action": "produce", "topic": "late", "partition": "0", "offset": "0"}
                    sock.sendall(encode_frame({"op": "released"}) + encode_frame({"op": "events", "events": [event]}))
                else:
                    send_frame(sock, {"op": "released"})
            elif op == "stop":
                return
        if reader.closed:
            return


if __name__ == "__main__":
    main()
