"""A stand-in for faultbox.sources.topic_reader that speaks its protocol without Kafka, to make the
reader end in the ways a real one can: `fake_topic_reader.py MODE FD PARENT_PID`.

    follow        ready; answers each barrier with one produce event, then "done"
    abort         ready; at the first barrier writes an assertion line on stderr and aborts
    exit-early    writes "boom" on stderr and exits with code 3 before answering its config
    start-failed  answers its config with start_failed
"""

from __future__ import annotations

import os
import socket
import sys

from faultbox._util.frames import FrameReader, send_frame

ASSERTION = "python3: rdkafka_broker.c:4711: rd_kafka_broker_op_serve: Assertion `rkb->rkb_state' failed."


def main() -> None:
    mode, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)
    reader = FrameReader()
    messages: list[dict[str, object]] = []
    while not messages:  # the config (a spare waits here)
        messages = reader.feed(sock.recv(1 << 16))
        if reader.closed:
            return
    if mode == "exit-early":
        print("boom", file=sys.stderr, flush=True)
        os._exit(3)
    if mode == "start-failed":
        send_frame(sock, {"op": "start_failed", "error": "no broker at that address"})
        return
    send_frame(sock, {"op": "ready"})
    offset = 0
    while True:
        data = sock.recv(1 << 16)
        for message in reader.feed(data):
            if message["op"] != "barrier":
                continue
            if mode == "abort":
                print(ASSERTION, file=sys.stderr, flush=True)
                os.abort()
            event = {"action": "produce", "topic": "t", "partition": "0", "offset": str(offset)}
            offset += 1
            send_frame(sock, {"op": "events", "events": [event]})
            send_frame(sock, {"op": "done", "id": message["id"], "error": None, "stats": {"messages": offset}})
        if reader.closed:
            return


if __name__ == "__main__":
    main()
