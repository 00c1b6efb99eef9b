"""The endurance run's service: a TCP line server on $PORT answering every line with PONG.
Stdlib only and run with -S -I, so that it starts quickly (500 tests each start it once)."""

import os
import socket

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(os.environ["PORT"])))
server.listen()
print("listening", flush=True)
while True:
    conn = server.accept()[0]
    with conn, conn.makefile("rwb", 0) as f:
        for _line in f:
            f.write(b"PONG\n")
