"""The cheap service of tests/quality/test_killed.py: a TCP line server that leaves marks.

Every mark is one line appended to $MARK/events ("<what> <pid>"), so the test can wait on the phase a
run is in. At start it forks a child that ignores SIGTERM and a grandchild that leaves the process
group (setsid), so a run's cleanup has descendants to find. Commands:

    PING       -> PONG
    WRITE <n>  -> n appends to $MARK/data.bin (each open, write, close): "ok <k>" or "err <ERRNO> <k>"

On SIGTERM it marks "term" and takes a moment (0.15 s) before it exits: a teardown to be killed in.
"""

import errno
import os
import signal
import socket
import time

MARK = os.environ["MARK"]


def mark(what: str, pid: int = 0) -> None:
    fd = os.open(os.path.join(MARK, "events"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{what} {pid or os.getpid()}\n".encode())
    finally:
        os.close(fd)


def sleeper(leave_group: bool) -> None:
    if leave_group:
        os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    mark("child")
    while True:
        time.sleep(60)


def spawn(leave_group: bool) -> None:
    if os.fork() == 0:
        try:
            sleeper(leave_group)
        finally:
            os._exit(0)


def write(n: int) -> str:
    mark("write-begin")
    done = 0
    for _ in range(n):
        try:
            fd = os.open(os.path.join(MARK, "data.bin"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            mark(f"write-end-{name}")
            return f"err {name} {done}"
        done += 1
    mark("write-end-ok")
    return f"ok {done}"


def on_term(signum: int, frame: object) -> None:
    mark("term")
    time.sleep(0.15)
    os._exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, on_term)
    spawn(leave_group=False)
    spawn(leave_group=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(os.environ["PORT"])))
    srv.listen(16)
    mark("start")
    while True:
        conn, _ = srv.accept()
        with conn, conn.makefile("rw") as f:
            for line in f:
                cmd, _, arg = line.strip().partition(" ")
                mark(f"cmd-{cmd}{arg}")
                reply = "PONG" if cmd == "PING" else write(int(arg)) if cmd == "WRITE" else f"unknown {cmd}"
                f.write(reply + "\n")
                f.flush()


if __name__ == "__main__":
    main()
