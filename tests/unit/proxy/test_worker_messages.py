"""The proxy worker's event batches fit the socket whatever its buffer: a big batch is split, none
is lost."""

from __future__ import annotations

import pickle
import socket
import threading

from faultbox.proxy.worker import MAX_MESSAGE, Worker


def test_a_batch_larger_than_the_socket_buffer_is_split_not_lost() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # the kernel may cap it lower still
    worker = Worker(theirs)
    try:
        worker.limit = MAX_MESSAGE  # as if the buffer were bigger than it is: sendall meets EMSGSIZE
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        events = [(1, "proxy_request", {"path": "/x" * 100, "n": str(i)}) for i in range(2000)]
        ours.settimeout(10)
        got: list[tuple[int, str, dict[str, str]]] = []

        sender = threading.Thread(target=worker.send, args=(("events", events),))
        sender.start()
        while len(got) < len(events):
            kind, batch = pickle.loads(ours.recv(MAX_MESSAGE))
            assert kind == "events"
            got.extend(batch)
        sender.join(10)
        assert [e[2]["n"] for e in got] == [str(i) for i in range(2000)]
    finally:
        worker.hub.close()
        ours.close()
        theirs.close()
