"""Benchmark the cost of one intercepted syscall under faultbox's Python supervisor.

    .venv/bin/python bench/bench_supervisor.py [--calls 20000] [--reps 5] [--delay-calls 400]

One run measures, side by side and interleaved repetition by repetition (so machine drift hits every
configuration alike), the per-call latency of a tiny C target that calls one cheap syscall in a loop:

* unsupervised (no filter);
* under a minimal C supervisor compiled by this script: fork, filter with NEW_LISTENER in the child,
  listener fetched with pidfd_getfd before exec, FD_SYNC_WAKE_UP, then a tight RECV/SEND loop
  answering CONTINUE (or an errno) -- once with a blocking RECV (the floor) and once with poll()
  before each RECV (the shape of faultbox's epoll loop);
* under faultbox's supervisor (engine/launch.spawn + engine/client.SupervisorClient), with no rule,
  with an allow() rule (the rule-matching cost), and with a deny("EIO") rule; every event the
  supervisor emits is drained by the client callback, so that work is part of the measurement;
* a 1 ms delay rule: per-call excess over 1 ms (accuracy; target: a median within 10 us, p95 shown),
  alone and with two targets at once (a delay must never block other notifications), beside the C
  supervisor answering the same delay as well as a process can (blocking RECV, then asleep until
  200 us before the deadline and polling the clock to it, under the scheduling policy faultbox's
  supervisor gets): the machine's floor, which a loaded machine raises, split into the syscall's way
  to the supervisor, the answer's lateness and the way back.

Two syscalls, chosen for what they isolate:
* getppid -- no argument resolution in faultbox (it is in none of FD_ARG0 / PATH_ARG / SOCKADDR_ARG1),
  so it measures the bare notification round trip + decision + event;
* fsync on a pipe -- a real fault family (`fsync`) and an fd syscall, so each notification also costs
  the supervisor a readlink of /proc/<tid>/fd/N; on a pipe the call itself is trivial (EINVAL, no I/O),
  so the fsync-minus-getppid difference is the engine's fd resolution. (/dev/null or /dev/shm would
  be "system paths" that a rule without a path glob never faults, which would hide the deny case.)

The target times every call with clock_gettime(CLOCK_MONOTONIC) and writes the raw latencies to a
file; "added cost" is supervised minus unsupervised, per call. Targets (issue): the Python supervisor's
added cost within 2x the C supervisor's, and under 15 us on these 2-core machines. Thresholds live only
in this output, never in tests (tests/integration/engine/test_bench_supervisor_smoke.py checks the
machinery with tiny runs).
"""

from __future__ import annotations

import argparse
import array
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faultbox.engine.client import SupervisorClient  # noqa: E402
from faultbox.engine.launch import LaunchSpec, ServiceProcess, spawn  # noqa: E402
from faultbox.engine.rules import ActiveRule  # noqa: E402
from faultbox.model.fault import Action, ActionKind, SyscallRule  # noqa: E402
from faultbox.model.syscalls import native_table  # noqa: E402

SYSCALLS = ("getppid", "fsync")
EIO = 5
_HEADER = struct.Struct("=8Q")  # must match the fwrite in TARGET_C
_RUN_TIMEOUT = 120.0

# The target: <warmup> untimed calls (the supervisor's per-thread caches fill, the CPU settles), then
# <calls> timed ones. syscall(2) directly, so libc can never answer from a cache. "sigusr1" makes it
# wait for the benchmark's go after exec: faultbox rules are installed after spawn() returns, and two
# concurrent targets must start together.
TARGET_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: never intercepted, ~20 ns */
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: target <getppid|fsync> <calls> <warmup> <out-file> <now|sigusr1>\n");
        return 2;
    }
    int use_fsync = strcmp(argv[1], "fsync") == 0;
    long calls = atol(argv[2]), warmup = atol(argv[3]);
    uint64_t *lat = calloc((size_t)(calls > 0 ? calls : 1), sizeof *lat);
    if (!lat) return 2;
    int fds[2] = {-1, -1};
    if (use_fsync && pipe(fds) != 0) { perror("pipe"); return 2; }
    long nr = use_fsync ? SYS_fsync : SYS_getppid;
    long arg = use_fsync ? fds[1] : 0;
    if (strcmp(argv[5], "sigusr1") == 0) {
        sigset_t set;
        int sig;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        fputs("ready\n", stdout);
        fflush(stdout);
        sigwait(&set, &sig);
    }
    uint64_t warm_eio = 0, eio = 0, other = 0;
    for (long i = 0; i < warmup; i++)
        if (syscall(nr, arg) < 0 && errno == EIO) warm_eio++;
    uint64_t t0 = now_ns(), prev = t0;
    for (long i = 0; i < calls; i++) {
        long r = syscall(nr, arg);
        int e = errno;
        uint64_t t = now_ns();
        lat[i] = t - prev;
        prev = t;
        if (r < 0) { if (e == EIO) eio++; else other++; }
    }
    uint64_t head[8] = {(uint64_t)calls, eio, other, prev - t0, t0, prev, warm_eio, (uint64_t)getpid()};
    FILE *f = fopen(argv[4], "wb");
    if (!f) { perror("fopen"); return 2; }
    if (fwrite(head, sizeof head, 1, f) != 1 ||
        fwrite(lat, sizeof *lat, (size_t)calls, f) != (size_t)calls) { perror("fwrite"); return 2; }
    return fclose(f) == 0 ? 0 : 2;
}
"""

# The minimal C supervisor. The filter is the shim's minus its handshake special cases: arch check,
# then <nr> -> USER_NOTIF, everything else ALLOW.
CSUP_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS 0x40082104
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static volatile sig_atomic_t exited = 0;
static volatile int exit_status = 0;
static pid_t child = -1;

/* Reap in the handler: a filter loses its last user only when its task is reaped, and that is what
 * wakes a RECV (or poll) blocked on the listener -- so the loop can never hang after the exit, and
 * there is no window between "check exited" and "block in RECV". */
static void on_chld(int sig) {
    (void)sig;
    int saved = errno, st;
    if (waitpid(child, &st, WNOHANG) == child) { exit_status = st; exited = 1; }
    errno = saved;
}

static int install(unsigned nr, unsigned arch) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {.len = sizeof prog / sizeof prog[0], .filter = prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
}

int main(int argc, char **argv) {
    if (argc < 8 || strcmp(argv[6], "--") != 0) {
        fprintf(stderr, "usage: csup <nr> <arch> <errno|0> <block|poll|readlink|delay:US> <stats-file> -- argv...\n");
        return 2;
    }
    unsigned nr = (unsigned)strtoul(argv[1], NULL, 0), arch = (unsigned)strtoul(argv[2], NULL, 0);
    int err = atoi(argv[3]), use_poll = strcmp(argv[4], "poll") == 0;
    /* "readlink": also resolve args[0] as an fd of the target, the work faultbox does to record the
       path of an fd syscall, so the two supervisors can be compared doing the same job */
    int resolve = strcmp(argv[4], "readlink") == 0;
    /* "delay:US": answer each call US microseconds after receiving it (a delay fault, done in C); the
       times of each RECV and SEND go to <stats-file>.times (int64 ns pairs, CLOCK_MONOTONIC) */
    long delay_ns = strncmp(argv[4], "delay:", 6) == 0 ? atol(argv[4] + 6) * 1000L : 0;
    long long *times = NULL;
    size_t ntimes = 0, times_cap = 1 << 16;
    if (delay_ns && !(times = malloc(times_cap * 2 * sizeof *times))) return 2;
    char link[4096], proc[64];
    alarm(300); /* safety net: never outlive a broken run */
    int up[2], down[2];
    if (pipe(up) || pipe(down)) { perror("pipe"); return 2; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld; /* no SA_RESTART: a blocked RECV returns EINTR */
    sigaction(SIGCHLD, &sa, NULL);
    child = fork();
    if (child < 0) { perror("fork"); return 2; }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int lfd = install(nr, arch);
        if (lfd < 0) { perror("seccomp"); _exit(127); }
        /* read/write are not intercepted (the filter notifies only <nr>): the handshake cannot trap */
        if (write(up[1], &lfd, sizeof lfd) != sizeof lfd) _exit(127);
        char ack;
        if (read(down[0], &ack, 1) != 1) _exit(127); /* the parent holds the listener now */
        close(lfd); close(up[0]); close(up[1]); close(down[0]); close(down[1]);
        execv(argv[7], &argv[7]);
        perror("execv");
        _exit(127);
    }
    int child_lfd;
    if (read(up[0], &child_lfd, sizeof child_lfd) != sizeof child_lfd) { fprintf(stderr, "handshake\n"); return 2; }
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    int lfd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, child_lfd, 0);
    if (lfd < 0) { perror("pidfd_getfd"); kill(child, SIGKILL); return 2; }
    if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) != 0)
        perror("NOTIF_SET_FLAGS (continuing without sync wake-up)");
    if (write(down[1], "k", 1) != 1) return 2;
    if (delay_ns) {
        /* as faultbox's supervisor: 1 us of timer slack, SCHED_FIFO when allowed (not the target's) */
        struct sched_param sp = {.sched_priority = 1};
        prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
        sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp);
    }
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    unsigned long answered = 0, failed = 0;
    for (;;) {
        if (use_poll) {
            struct pollfd p = {.fd = lfd, .events = POLLIN};
            if (poll(&p, 1, -1) < 0) { if (errno == EINTR && !exited) continue; break; }
            if (!(p.revents & POLLIN)) { if (exited) break; continue; }
        }
        memset(&req, 0, sizeof req); /* the kernel answers EINVAL to a dirty buffer (DECISIONS 15) */
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
            if (errno == EINTR || errno == ENOENT) { if (exited) break; continue; }
            perror("NOTIF_RECV");
            break;
        }
        long long recv_ns = 0;
        if (delay_ns) {
            /* asleep until 200 us before the deadline (a sleep ends tens of us late; faultbox polls for
               at most that long), then the clock */
            struct timespec now, due, wake;
            clock_gettime(CLOCK_MONOTONIC, &now);
            recv_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
            long long due_ns = recv_ns + delay_ns, wake_ns = due_ns - 200000;
            due.tv_sec = due_ns / 1000000000LL, due.tv_nsec = due_ns % 1000000000LL;
            wake.tv_sec = wake_ns / 1000000000LL, wake.tv_nsec = wake_ns % 1000000000LL;
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) == EINTR) {}
            do clock_gettime(CLOCK_MONOTONIC, &now);
            while (now.tv_sec < due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec < due.tv_nsec));
        }
        if (resolve) {
            snprintf(proc, sizeof proc, "/proc/%u/fd/%d", req.pid, (int)req.data.args[0]);
            if (readlink(proc, link, sizeof link) < 0) link[0] = 0;
        }
        resp.id = req.id;
        resp.val = 0;
        resp.error = err ? -err : 0;
        resp.flags = err ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        if (delay_ns && ntimes < times_cap) {
            struct timespec sent;
            clock_gettime(CLOCK_MONOTONIC, &sent);
            times[2 * ntimes] = recv_ns;
            times[2 * ntimes++ + 1] = sent.tv_sec * 1000000000LL + sent.tv_nsec;
        }
        if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0) answered++; else failed++;
    }
    while (!exited) pause(); /* only after a RECV failure: still reap before reporting */
    FILE *f = fopen(argv[5], "w");
    if (f) { fprintf(f, "%lu %lu %d\n", answered, failed, exit_status); fclose(f); }
    if (times) {
        char path[4096];
        snprintf(path, sizeof path, "%s.times", argv[5]);
        FILE *t = fopen(path, "wb");
        if (t) { fwrite(times, 2 * sizeof *times, ntimes, t); fclose(t); }
    }
    return WIFEXITED(exit_status) ? WEXITSTATUS(exit_status) : 128 + WTERMSIG(exit_status);
}
"""


# -- building -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """The compiled target and C supervisor, in a scratch directory the caller removes."""

    workdir: Path
    target: Path
    csup: Path

    def out_file(self, tag: str) -> Path:
        return self.workdir / f"{tag}.bin"


def build_tools(workdir: Path) -> Tools:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (apt-get install -y gcc)")
    built = {}
    for name, source in (("target", TARGET_C), ("csup", CSUP_C)):
        src = workdir / f"{name}.c"
        src.write_text(source)
        exe = workdir / name
        proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {name}.c failed:\n{proc.stderr}")
        built[name] = exe
    return Tools(workdir, built["target"], built["csup"])


# -- one measured run -----------------------------------------------------------------------------


@dataclass
class Sample:
    """What the target measured in one run."""

    calls: int
    eio: int  # timed calls that failed with EIO (the deny runs)
    other_errors: int  # e.g. EINVAL from fsync on a pipe: expected, not a fault
    total_ns: int
    start_ns: int  # CLOCK_MONOTONIC, comparable across processes
    end_ns: int
    warm_eio: int
    lat_ns: array.array[int]
    answered: int = -1  # notifications the C supervisor answered (C runs only)
    # faultbox runs only:
    events: int = 0  # events drained through the client callback
    go_ns: int = 0  # CLOCK_MONOTONIC when the target was told to start
    drained_ns: int = 0  # ... when sync() returned: every event of the run had reached the callback
    reader_cpu_s: float = 0.0  # CPU the runner's reader thread spent receiving and handling them
    lateness_ms: list[float] = field(default_factory=list)  # the supervisor's own delay lateness
    # the C floor only: (RECV, SEND) CLOCK_MONOTONIC ns of each timed call's delay
    answer_ns: list[tuple[int, int]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.total_ns / 1e9


def read_sample(path: Path) -> Sample:
    data = path.read_bytes()
    head = _HEADER.unpack_from(data)
    lat = array.array("Q")
    lat.frombytes(data[_HEADER.size : _HEADER.size + 8 * head[0]])
    path.unlink()
    return Sample(head[0], head[1], head[2], head[3], head[4], head[5], head[6], lat)


def target_argv(tools: Tools, syscall: str, calls: int, warmup: int, out: Path, start: str) -> list[str]:
    return [str(tools.target), syscall, str(calls), str(warmup), str(out), start]


def run_unsupervised(tools: Tools, syscall: str, calls: int, warmup: int) -> Sample:
    out = tools.out_file("plain")
    subprocess.run(target_argv(tools, syscall, calls, warmup, out, "now"), check=True, timeout=_RUN_TIMEOUT)
    return read_sample(out)


def run_c(tools: Tools, syscall: str, calls: int, warmup: int, err: int = 0, loop: str = "block") -> Sample:
    """The target under the minimal C supervisor; err=0 answers CONTINUE, else -err."""
    arch, table = native_table()
    out, stats = tools.out_file("c"), tools.workdir / "csup.stats"
    argv = [str(tools.csup), str(table[syscall]), hex(arch), str(err), loop, str(stats), "--"]
    # subprocess.run kills the C supervisor on timeout; the target dies with it (PR_SET_PDEATHSIG).
    subprocess.run(argv + target_argv(tools, syscall, calls, warmup, out, "now"), check=True, timeout=_RUN_TIMEOUT)
    sample = read_sample(out)
    answered, _failed, _status = map(int, stats.read_text().split())
    sample.answered = answered
    if loop.startswith("delay:"):
        delay_ns = int(loop.split(":")[1]) * 1000
        times = Path(f"{stats}.times")
        pairs = array.array("q")
        pairs.frombytes(times.read_bytes())
        times.unlink()
        sample.answer_ns = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)][-calls:]
        sample.lateness_ms = [(sent - recv - delay_ns) / 1e6 for recv, sent in sample.answer_ns]
    return sample


class FaultboxBench:
    """One faultbox supervisor for the whole benchmark (as in a run), services spawned through it.

    The client callback drains every event batch and counts it per service, so the supervisor's event
    work (build, marshal, send) and the runner's (receive, unmarshal, iterate) are in the numbers."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self._lock = threading.Lock()
        self.events: Counter[int] = Counter()
        self.reader_cpu = 0.0  # the reader thread's CPU time at the end of its latest callback
        self.lateness: dict[int, list[float]] = {}
        self.closed: list[tuple[int, str]] = []
        self.dead: str | None = None
        self.client = SupervisorClient(self._on_events, self._on_closed, self._on_dead)
        self._next_id = 0
        self._rule_id = 0

    def _on_events(self, batch: list[tuple[object, ...]]) -> None:
        counts: Counter[int] = Counter()
        late: list[tuple[int, float]] = []
        for ev in batch:
            svc = ev[0]
            assert isinstance(svc, int)
            counts[svc] += 1
            decision = ev[5]
            if isinstance(decision, str) and decision.startswith("delay"):
                late.append((svc, float(ev[9])))  # type: ignore[arg-type]
        with self._lock:
            self.events.update(counts)
            for svc, ms in late:
                self.lateness.setdefault(svc, []).append(ms)
            # thread_time() here is the reader's own CPU, including the recv + unmarshal just done
            self.reader_cpu = time.thread_time()

    def _on_closed(self, svc_id: int, why: str) -> None:
        self.closed.append((svc_id, why))

    def _on_dead(self, why: str) -> None:
        self.dead = why

    def close(self) -> None:
        self.client.close()

    def _spawn(self, syscall: str, calls: int, warmup: int, action: Action | None) -> tuple[int, ServiceProcess, Path]:
        self._next_id += 1
        svc = self._next_id
        out = self.tools.out_file(f"fbx{svc}")
        argv = target_argv(self.tools, syscall, calls, warmup, out, "sigusr1")
        spec = LaunchSpec(f"bench{svc}", argv, dict(os.environ), str(self.tools.workdir), None, frozenset({syscall}))
        proc = spawn(spec, self.client, svc, None)
        try:
            assert proc.proc.stdout is not None
            line = proc.proc.stdout.readline()  # the target is parked in sigwait: rules can go in first
            if line != b"ready\n":
                raise RuntimeError(f"target did not start: {line!r} {self._stderr(proc)}")
            if action is not None:
                self._rule_id += 1
                rule = SyscallRule(spec.name, syscall, (syscall,), action)
                self.client.set_rules(svc, [ActiveRule(self._rule_id, rule, f"bench-{self._rule_id}").wire(1)])
        except BaseException:
            self._finish(proc)
            raise
        return svc, proc, out

    @staticmethod
    def _stderr(proc: ServiceProcess) -> str:
        return proc.proc.stderr.read().decode(errors="replace") if proc.proc.stderr else ""

    @staticmethod
    def _finish(proc: ServiceProcess) -> int:
        code = proc.stop(1.0)  # reaps; the supervisor then sees POLLHUP and drops the listener
        for pipe in (proc.proc.stdout, proc.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def sparse_connects(self, port: int, calls: int, gap_s: float, filtered: bool) -> tuple[list[float], float]:
        """A client making one short TCP exchange with a local server every `gap_s`, with `connect`
        in its filter (no rule: every call allowed and recorded) or with no filter. Returns each
        exchange's latency (us) and the supervisor process's CPU seconds meanwhile: between sparse
        calls, an idle supervisor must sleep."""
        self._next_id += 1
        svc = self._next_id
        syscalls = frozenset({"connect"}) if filtered else frozenset()
        argv = [sys.executable, "-c", _SPARSE_CLIENT, str(port), str(calls), str(gap_s)]
        spec = LaunchSpec(f"sparse{svc}", argv, dict(os.environ), str(self.tools.workdir), None, syscalls)
        cpu0 = _process_cpu(self.client.proc.pid)
        proc = spawn(spec, self.client if filtered else None, svc, None)
        try:
            assert proc.proc.stdout is not None
            line = proc.proc.stdout.readline().decode()
            if not proc.wait_exit(_RUN_TIMEOUT) or proc.peek_exit_code() != 0:
                raise RuntimeError(f"sparse client failed: {self._stderr(proc)}")
        finally:
            self._finish(proc)
        return [float(v) for v in line.split()], _process_cpu(self.client.proc.pid) - cpu0

    def run(self, syscall: str, calls: int, warmup: int, action: Action | None = None, procs: int = 1) -> list[Sample]:
        """`procs` targets under the same rule, started together; one Sample each."""
        started: list[tuple[int, ServiceProcess, Path]] = []
        try:
            for _ in range(procs):
                started.append(self._spawn(syscall, calls, warmup, action))
            cpu0 = self.reader_cpu  # the set_rules/spawn replies above are synchronous: no event in flight
            go_ns = time.monotonic_ns()
            for _, proc, _ in started:
                proc.proc.send_signal(signal.SIGUSR1)
            for _, proc, _ in started:
                if not proc.wait_exit(_RUN_TIMEOUT):
                    raise RuntimeError("target did not finish in time")
                if proc.peek_exit_code() != 0:
                    raise RuntimeError(f"target failed: {self._stderr(proc)}")
        finally:
            for _, proc, _ in started:
                self._finish(proc)
        self.client.sync()  # the trace barrier: every event of these runs has been drained
        drained_ns = time.monotonic_ns()
        if self.dead is not None:
            raise RuntimeError(f"faultbox supervisor died: {self.dead}")
        samples = []
        for svc, _, out in started:
            sample = read_sample(out)
            with self._lock:
                sample.events = self.events.pop(svc, 0)
                sample.lateness_ms = self.lateness.pop(svc, [])
                sample.reader_cpu_s = (self.reader_cpu - cpu0) / procs
            sample.go_ns, sample.drained_ns = go_ns, drained_ns
            samples.append(sample)
        return samples


_SPARSE_CLIENT = """
import socket, sys, time
port, calls, gap = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
out = []
for _ in range(calls):
    time.sleep(gap)
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x")
        s.recv(16)
    out.append((time.perf_counter() - t) * 1e6)
print(" ".join(f"{v:.1f}" for v in out), flush=True)
"""

_ECHO_SERVER = """
import socket
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
while True:
    c, _ = srv.accept()
    with c:
        c.sendall(c.recv(16))
"""


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def echo_server() -> Iterator[int]:
    """A local TCP server outside every filter, answering each connection's first bytes."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def print_idle_filter(runs: dict[bool, list[tuple[list[float], float]]], gap_s: float) -> bool:
    """Sparse connects with and without `connect` in the filter: latency percentiles, and the
    supervisor's CPU per second of the filtered runs (an idle filter must cost microseconds)."""
    print(f"\nidle filter: one TCP exchange every {gap_s * 1000:.0f} ms, `connect` filtered (no rule) or not")
    print(f"  {'':<14}{'p50 us':>9}{'p99 us':>9}{'max us':>9}{'supervisor CPU':>17}")
    p99 = {}
    for filtered in (False, True):
        lat = sorted(v for values, _ in runs[filtered] for v in values)
        wall = sum(len(values) for values, _ in runs[filtered]) * gap_s
        cpu = sum(c for _, c in runs[filtered])
        p99[filtered] = pct(lat, 0.99)
        share = f"{cpu / wall * 100:6.1f}% of a core" if filtered else ""
        label = "filtered" if filtered else "not filtered"
        print(f"  {label:<14}{pct(lat, 0.5):>9.0f}{p99[filtered]:>9.0f}{lat[-1]:>9.0f}{share:>17}")
    ok = p99[True] <= p99[False] + 1000
    print(f"  target: filtered p99 within 1 ms of unfiltered: {verdict(ok)}")
    return ok


@contextmanager
def faultbox_bench(tools: Tools, supervisor_file: Path | None = None) -> Iterator[FaultboxBench]:
    """A FaultboxBench; with supervisor_file, the supervisor process runs that file instead of
    src/faultbox/engine/supervisor.py (a copy of the package in the scratch dir, first on its
    PYTHONPATH), so a candidate engine change can be measured without touching src/."""
    saved = os.environ.get("PYTHONPATH")
    if supervisor_file is not None:
        shadow = tools.workdir / "shadow"
        shutil.copytree(ROOT / "src" / "faultbox", shadow / "faultbox", dirs_exist_ok=True)
        shutil.copyfile(supervisor_file, shadow / "faultbox" / "engine" / "supervisor.py")
        os.environ["PYTHONPATH"] = str(shadow)  # read once, when the client starts the supervisor
    try:
        bench = FaultboxBench(tools)
    finally:
        if supervisor_file is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    try:
        yield bench
    finally:
        bench.close()


# -- statistics and the table ---------------------------------------------------------------------


def pct(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    return float(sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))])


@dataclass
class Summary:
    median_us: float
    p95_us: float
    mean_us: float
    rep_medians_us: list[float]
    events_per_s: float  # events / (go -> every event drained): the trace's real throughput
    lag_ms: float  # median over runs of: the target's last call -> sync() returned
    reader_us: float  # runner reader-thread CPU per event

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Summary:
        pooled = sorted(v for s in samples for v in s.lat_ns)
        total_ns = sum(s.total_ns for s in samples)
        events = sum(s.events for s in samples)
        drain_ns = sum(s.drained_ns - s.go_ns for s in samples)
        return cls(
            median_us=pct(pooled, 0.5) / 1e3,
            p95_us=pct(pooled, 0.95) / 1e3,
            mean_us=total_ns / len(pooled) / 1e3,
            rep_medians_us=[statistics.median(s.lat_ns) / 1e3 for s in samples],
            events_per_s=events / (drain_ns / 1e9) if events else 0.0,
            lag_ms=statistics.median((s.drained_ns - s.end_ns) / 1e6 for s in samples) if events else 0.0,
            reader_us=sum(s.reader_cpu_s for s in samples) / events * 1e6 if events else 0.0,
        )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Config:
    label: str
    kind: str  # plain | c | fbx
    err: int = 0
    loop: str = "block"
    action: Action | None = None
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def configs() -> list[Config]:
    return [
        Config("unsupervised", "plain"),
        Config("C, CONTINUE (blocking RECV)", "c"),
        Config("C, CONTINUE (poll + RECV)", "c", loop="poll"),
        Config("faultbox, CONTINUE (no rule)", "fbx"),
        Config("faultbox, CONTINUE (allow rule)", "fbx", action=Action(ActionKind.ALLOW)),
        Config("C, CONTINUE (+readlink, as faultbox)", "c", loop="readlink"),
        Config("C, deny EIO", "c", err=EIO),
        Config("C, deny EIO (+readlink, as faultbox)", "c", err=EIO, loop="readlink"),
        Config("faultbox, deny EIO", "fbx", action=Action(ActionKind.DENY, errno="EIO")),
    ]


def measure(config: Config, tools: Tools, fbx: FaultboxBench, syscall: str, calls: int, warmup: int) -> Sample:
    if config.kind == "plain":
        sample = run_unsupervised(tools, syscall, calls, warmup)
    elif config.kind == "c":
        sample = run_c(tools, syscall, calls, warmup, config.err, config.loop)
        if sample.answered != calls + warmup:
            raise RuntimeError(f"{config.label}: C supervisor answered {sample.answered} of {calls + warmup}")
    else:
        (sample,) = fbx.run(syscall, calls, warmup, config.action)
        if sample.events != calls + warmup:  # the filter holds only this syscall: one event per call
            raise RuntimeError(f"{config.label}: {sample.events} events for {calls + warmup} calls")
    expected_eio = calls if config.err or (config.action and config.action.kind is ActionKind.DENY) else 0
    if sample.eio != expected_eio:
        raise RuntimeError(f"{config.label}: {sample.eio} EIO errors, expected {expected_eio}")
    return sample


def print_table(cfgs: list[Config], calls: int, warmup: int, reps: int) -> list[tuple[str, bool]]:
    """The cost table per syscall, then the target lines. Returns the (line, ok) target results."""
    print(
        f"\nPer intercepted syscall, µs: {calls} timed calls x {reps} reps (+{warmup} warm-up) per row; "
        "median/p95 pooled over every call, mean = loop time / calls;"
    )
    print("added = row − unsupervised (median; mean); 'reps' = range of the per-rep medians; faultbox rows:")
    print("events/s = events drained by the client callback / (go -> last event drained), lag = target's last")
    print("call -> sync() returned, rdr = runner reader-thread CPU per event (recv + unmarshal + callback).")
    targets: list[tuple[str, bool]] = []
    for syscall in SYSCALLS:
        base = Summary.of(cfgs[0].samples[syscall])
        note = "no argument resolution" if syscall == "getppid" else "fd syscall: + readlink /proc/<tid>/fd/N"
        print(f"\n  {syscall} ({note})")
        print(
            f"  {'configuration':<34}{'median':>8}{'p95':>8}{'mean':>8}{'added':>8}{'(mean)':>8}"
            f"{'reps':>15}{'events/s':>11}{'lag ms':>8}{'rdr µs':>8}"
        )
        summaries: dict[str, Summary] = {}
        for cfg in cfgs:
            s = Summary.of(cfg.samples[syscall])
            summaries[cfg.label] = s
            if cfg.kind == "plain":
                added = f"{'-':>8}{'-':>8}"
            else:
                added = f"{s.median_us - base.median_us:8.2f}{s.mean_us - base.mean_us:8.2f}"
            reps_range = f"{min(s.rep_medians_us):.2f}–{max(s.rep_medians_us):.2f}"
            evs = f"{s.events_per_s:11,.0f}{s.lag_ms:8.1f}{s.reader_us:8.2f}" if s.events_per_s else ""
            print(f"  {cfg.label:<34}{s.median_us:8.2f}{s.p95_us:8.2f}{s.mean_us:8.2f}{added}{reps_range:>15}{evs}")
        # For an fd syscall faultbox also resolves the fd's path (the event records it): compare with
        # the C supervisor doing that same readlink. getppid needs no resolution: compare with bare C.
        same = " (+readlink, as faultbox)" if syscall != "getppid" else ""
        cont = "C, CONTINUE (+readlink, as faultbox)" if same else "C, CONTINUE (blocking RECV)"
        pairs = (
            ("CONTINUE", "faultbox, CONTINUE (no rule)", cont),
            ("CONTINUE+allow rule", "faultbox, CONTINUE (allow rule)", cont),
            ("deny EIO", "faultbox, deny EIO", "C, deny EIO" + same),
        )
        for what, py_label, c_label in pairs:
            py_added = summaries[py_label].median_us - base.median_us
            py_mean = summaries[py_label].mean_us - base.mean_us
            c_added = summaries[c_label].median_us - base.median_us
            ratio = py_added / c_added if c_added > 0 else float("inf")
            line = (
                f"{syscall:<8}{what:<20} Python +{py_added:5.2f} µs, C +{c_added:5.2f} µs: ratio {ratio:4.1f}x  "
                f"target ≤ 2×: {verdict(ratio <= 2.0)}   target < 15 µs: {verdict(py_added < 15.0)} "
                f"(mean +{py_mean:.1f} µs: {verdict(py_mean < 15.0)})"
            )
            targets.append((line, ratio <= 2.0 and py_added < 15.0))
    print(
        "\nTargets (added median cost per call, faultbox vs the C supervisor with a blocking RECV doing the same"
        " argument resolution):"
    )
    for line, _ in targets:
        print("  " + line)
    return targets


DELAY_TARGET_US = 10.0  # median excess of a delay over what the rule says (issue 13)


def floor_split(floor: Sequence[Sample], delay_s: float) -> tuple[list[float], list[float], list[float]]:
    """Where the C floor's excess goes, per call (µs, sorted): the syscall's way to the supervisor (the
    target's previous return -> RECV returned), the answer's lateness (deadline -> SEND), and the way
    back (SEND -> the target's clock after the call)."""
    way_in, late, way_out = [], [], []
    for s in floor:
        if len(s.answer_ns) != len(s.lat_ns):
            continue
        done = s.start_ns  # the target's clock before its first timed call, then after each
        for lat, (recv, sent) in zip(s.lat_ns, s.answer_ns, strict=True):
            way_in.append((recv - done) / 1e3)
            late.append((sent - recv) / 1e3 - delay_s * 1e6)
            done += lat
            way_out.append((done - sent) / 1e3)
    return sorted(way_in), sorted(late), sorted(way_out)


def print_delay(solo: list[Sample], duo: list[list[Sample]], floor: list[Sample], delay_s: float) -> tuple[bool, bool]:
    """The delay table; returns (a delay never blocks other notifications, the accuracy target met)."""

    def excess(samples: Sequence[Sample]) -> list[float]:
        return sorted(v / 1e3 - delay_s * 1e6 for s in samples for v in s.lat_ns)

    print(f"\nDelay {delay_s * 1e3:g} ms (getppid): per-call latency − {delay_s * 1e3:g} ms, µs")
    print(f"  {'':<36}{'median':>8}{'p95':>8}{'max':>9}{'sup. lateness p50/p95/max (ms)':>34}")
    all_duo = [s for pair in duo for s in pair]
    medians = {}
    rows = (("faultbox, one target", solo), ("faultbox, two targets at once (each)", all_duo), ("C floor", floor))
    for label, samples in rows:
        if not samples:
            continue
        ex = excess(samples)
        medians[label] = pct(ex, 0.5)
        late = sorted(v for s in samples for v in s.lateness_ms)
        late_txt = f"{pct(late, 0.5):.3f} / {pct(late, 0.95):.3f} / {late[-1]:.3f}" if late else "-"
        print(f"  {label:<36}{pct(ex, 0.5):8.1f}{pct(ex, 0.95):8.1f}{ex[-1]:9.1f}{late_txt:>34}")
    fbx_median = medians["faultbox, one target"]
    accurate = fbx_median <= DELAY_TARGET_US
    floor_txt = ""
    way_in, late, way_out = floor_split(floor, delay_s)
    if way_in:
        # Even the C supervisor, answering on time, pays the syscall's way to it and back: that part of
        # the excess is the kernel's and this machine's (a VM's context switches after a millisecond
        # apart), not the supervisor's timing.
        print(
            f"  C floor's excess, split (medians): syscall -> RECV {pct(way_in, 0.5):.1f}, deadline -> SEND "
            f"{pct(late, 0.5):.1f}, SEND -> the target runs again {pct(way_out, 0.5):.1f} µs"
        )
    if "C floor" in medians:
        c_floor = medians["C floor"]
        floor_txt = f"; C floor now {c_floor:.1f} µs, faultbox {fbx_median - c_floor:+.1f} µs over it"
        if c_floor > DELAY_TARGET_US:
            floor_txt += " (the target is below this machine's floor)"
    print(
        f"  accuracy: faultbox's median excess {fbx_median:.1f} µs, target ≤ {DELAY_TARGET_US:g} µs{floor_txt}: "
        f"{verdict(accurate)}"
    )
    # A supervisor that served delays one at a time would make each of two concurrent targets wait for
    # the other's delay too: ~2x the delay per call. Overlap says the two loops really ran together.
    overlaps = []
    for a, b in duo:
        common = min(a.end_ns, b.end_ns) - max(a.start_ns, b.start_ns)
        overlaps.append(max(common, 0) / max(a.total_ns, b.total_ns))
    duo_median_ms = pct(sorted(v for s in all_duo for v in s.lat_ns), 0.5) / 1e6
    ok = duo_median_ms < 1.5 * delay_s * 1e3 and min(overlaps) > 0.5
    print(
        f"  concurrency: loops overlapped {min(overlaps) * 100:.0f}% (min over reps), per-call median "
        f"{duo_median_ms:.3f} ms (serialized would be ≈{2 * delay_s * 1e3:g} ms): "
        f"a delay never blocks other notifications: {verdict(ok)}"
    )
    return ok, accurate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per run")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls before them")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every configuration")
    parser.add_argument("--delay-calls", type=int, default=400, help="timed calls per delay run")
    parser.add_argument("--delay-reps", type=int, default=3)
    parser.add_argument("--supervisor", type=Path, help="measure this supervisor.py instead of src's")
    parser.add_argument("--sparse-calls", type=int, default=150, help="exchanges per idle-filter run")
    parser.add_argument("--delay-only", action="store_true", help="only the delay runs")
    args = parser.parse_args(argv)

    delay_s = 0.001
    t_start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fbx-bench-sup-"))
    try:
        tools = build_tools(workdir)
        cfgs = configs()
        with faultbox_bench(tools, args.supervisor) as fbx:
            # Interleave: each rep runs every configuration once, so drift and noise spread evenly.
            for rep in range(0 if args.delay_only else args.reps):
                print(f"rep {rep + 1}/{args.reps} ...", file=sys.stderr, flush=True)
                for syscall in SYSCALLS:
                    for cfg in cfgs:
                        sample = measure(cfg, tools, fbx, syscall, args.calls, args.warmup)
                        cfg.samples.setdefault(syscall, []).append(sample)
            print("delay runs ...", file=sys.stderr, flush=True)
            delay = Action(ActionKind.DELAY, delay=delay_s)
            solo: list[Sample] = []
            duo: list[list[Sample]] = []
            floor: list[Sample] = []
            for _ in range(args.delay_reps):
                solo += fbx.run("getppid", args.delay_calls, 20, delay)
                duo.append(fbx.run("getppid", args.delay_calls, 20, delay, procs=2))
                floor.append(run_c(tools, "getppid", args.delay_calls, 20, 0, f"delay:{round(delay_s * 1e6)}"))
            print("idle filter runs ...", file=sys.stderr, flush=True)
            sparse: dict[bool, list[tuple[list[float], float]]] = {False: [], True: []}
            gap_s = 0.02
            with echo_server() as port:
                for _ in range(0 if args.delay_only else args.delay_reps):
                    for filtered in (False, True):
                        sparse[filtered].append(fbx.sparse_connects(port, args.sparse_calls, gap_s, filtered))
            stats = fbx.client.stats()

        source = args.supervisor or "src/faultbox/engine/supervisor.py"
        print(
            f"faultbox supervisor benchmark: {platform.node()}, kernel {platform.release()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, supervisor {source}"
        )
        targets = [] if args.delay_only else print_table(cfgs, args.calls, args.warmup, args.reps)
        delay_ok, accurate = print_delay(solo, duo, floor, delay_s)
        idle = "" if args.delay_only else f", idle filter {verdict(print_idle_filter(sparse, gap_s))}"
        print(f"\nfaultbox supervisor counters: {stats}")
        met = sum(ok for _, ok in targets)
        print(
            f"(measured in {time.monotonic() - t_start:.0f} s; targets met: {met}/{len(targets)} cost lines, "
            f"delay concurrency {verdict(delay_ok)}, delay accuracy {verdict(accurate)}{idle})"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
