/*
 * faultbox.engine._notify: the supervisor's hot loop, in C, with the GIL released.
 *
 * Most intercepted syscalls have no rule at the moment they happen: the service is only being
 * recorded (its filter lists a syscall that a fault will use later, or a trace). Those are answered
 * here, entirely in C: receive the notification, resolve its path or destination for the event,
 * answer CONTINUE, append a compact event record. A notification whose syscall has a rule on that
 * listener ("slow") is handed to Python, which decides (globs, probability streams, delays, holds).
 *
 *   loop = Loop(control_fd, kinds)        kinds: bytes, one per syscall number (argument kinds)
 *   loop.add(fd, svc_id) / loop.remove(fd) / loop.set_slow(fd, numbers)
 *   slow, control, closed = loop.wait(timeout, flush_after, flush_count)
 *   loop.drain() -> [(svc_id, ts, pid, tid, nr, rule, path, addr), ...]
 *   loop.respond(fd, id, error, flags) -> bool
 *   loop.set_fast_deny(fd, [(nr, rule_id, errno), ...])   unconditional denies decided here too
 *   loop.take_hits(fd) -> {rule_id: hits}
 *   loop.process_of(tid) -> pid            the same per-thread cache, for the Python slow path
 *   loop.stats() -> dict
 *   loop.delay(fd, id, due, token)         answer CONTINUE at monotonic time `due` (a delay fault)
 *   loop.take_fired() -> [(token, ts, lateness), ...]   delays answered since the last call
 *   loop.release_delays() -> [token, ...]  answer every pending delay now (shutdown)
 *   loop.set_spin(seconds)                 how long before a delay's deadline to stop sleeping
 *
 * wait() returns when the control socket is readable, a slow notification arrived, a listener hung
 * up, `flush_count` events are buffered or the oldest buffered event is `flush_after` seconds old,
 * or the timeout passed (a negative timeout waits without limit). A slow notification carries the
 * monotonic time the loop learned of it (when the ppoll that reported its listener readable returned,
 * before the RECV), so that a delay is measured from then, not from Python's decision.
 *
 * Delays are answered here, with the GIL released, the moment they are due: a heap of deadlines
 * (ties in the order they were added) is consulted whenever the loop wakes, before the notifications
 * that woke it, and wait() sleeps no longer than the earliest one. A timed sleep ends tens of
 * microseconds late however small the timer slack (a virtual machine's idle CPU takes that long to
 * come back), so the loop sleeps until shortly before a deadline (by how late its sleeps have been
 * ending, see WAKE_STEP) and then polls the listeners without blocking until the deadline: other
 * notifications are still answered meanwhile; for the last microseconds (FINAL_SPIN, about two rounds
 * of that polling) it only reads the clock, so that the answer never waits for a poll that ends after
 * the deadline. An answered delay becomes a "fired" record that counts as a buffered event (wait()
 * returns for it like for the fast path's records) and Python, from take_fired(), makes it the
 * syscall's event; a flush is never the reason to leave just before a delay is due or just after one
 * was answered, and right after an answer the loop sleeps on a timer armed before it (see "The
 * guard"). Delays of a removed listener are never answered (its fd number may be reused) but
 * still fire, so that their events are recorded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_NR 1024
#define MAX_LISTENERS 256
#define MEM_CACHE 64
#define TGID_CACHE 4096 /* direct-mapped, by thread id */
#define PATH_CAP 4096
/* Waking up before a delay is due (see the module's comment): the loop learns how late its timed
   sleeps end (a streaming estimate of their 80th percentile: up 4 steps when a sleep ended later than
   the estimate, down 1 step otherwise), and sleeps until that long plus a margin before the deadline,
   then polls. Never more than `spin` (set_spin) before it: a spinning task that uses up its share of
   a busy CPU is preempted for milliseconds, so the polling must stay short. */
#define DEFAULT_SPIN 200e-6
#define WAKE_EST0 50e-6
#define WAKE_STEP 1e-6
#define WAKE_MARGIN 5e-6
/* Closer than this to a deadline, only the clock is read (a non-blocking ppoll round takes ~1 us). */
#define FINAL_SPIN 2e-6
/* After answering a delay the loop sleeps rather than go back to Python for a flush for this long:
   the task it woke (on this CPU, with FD_SYNC_WAKE_UP) runs first. */
#define QUIET_AFTER_ANSWER 50e-6
/* The guard: a timerfd in the poll set, armed while a delay is being polled for (before its answer)
   to the earliest time the loop may have to wake after that answer (its record's flush, Python's
   deadline). Right after the answer the loop then sleeps in a ppoll without a timeout, the guard
   bounding it: arming and cancelling a ppoll timer between the answer and the next notification, on
   the answered call's way back, cost ~5 us of a delay's excess on a VM (the timer's hardware is
   reprogrammed each time). Whenever the guard fires no later than the loop must wake, it serves as
   the loop's timer; an early firing only makes the loop go round once more. */

/* argument kinds, one byte per syscall number (the Python side computes them) */
#define K_FD 1        /* args[0] is an fd: readlink /proc/<tid>/fd/<n> */
#define K_PATH0 2     /* args[0] is a path string */
#define K_PATH1 4     /* args[1] is a path string, args[0] its dirfd */
#define K_SOCKADDR1 8 /* args[1] is a sockaddr of length args[2] */
#define K_SENDTO 16   /* args[4] is a sockaddr of length args[5], when not NULL */

#ifndef SECCOMP_IOCTL_NOTIF_ID_VALID
#define SECCOMP_IOCTL_NOTIF_ID_VALID SECCOMP_IOW(2, __u64)
#endif

typedef struct {
    int fd;
    int svc_id;
    uint64_t slow[MAX_NR / 64];
    /* the newest rule of a syscall, when it is a deny without path, address or probability: */
    int32_t deny_rule[MAX_NR]; /* its id, or -1 */
    int32_t deny_errno[MAX_NR];
    uint32_t deny_hits[MAX_NR];
} Listener;

typedef struct {
    int tid;
    int fd;
} MemFd;

typedef struct {
    int tid;
    int tgid;
} Tgid;

typedef struct {
    double due; /* monotonic */
    uint64_t seq; /* ties: first added, first answered */
    uint64_t id;
    long long token;
    int fd; /* -1 once its listener was removed: fire without answering */
} Delay;

typedef struct {
    long long token;
    double ts;       /* wall-clock time of the answer */
    double lateness; /* seconds after the deadline */
} Fired;

typedef struct {
    PyObject_HEAD
    int ctl_fd;
    uint8_t kinds[MAX_NR];
    Listener listeners[MAX_LISTENERS];
    int nlisteners;
    MemFd mem[MEM_CACHE];
    int mem_next;
    Tgid tgids[TGID_CACHE];
    char *buf; /* packed event records */
    size_t len, cap;
    size_t count;
    double first_ts; /* monotonic time of the oldest unflushed record */
    Delay *delays;   /* a binary min-heap by (due, seq) */
    size_t ndelays, delays_cap;
    uint64_t delay_seq;
    Fired *fired;
    size_t nfired, fired_cap;
    double fired_first; /* monotonic time of the oldest fired record */
    double spin;     /* the most time spent polling before a delay */
    double wake_est; /* how late a timed sleep ends (see WAKE_STEP) */
    double quiet_until; /* monotonic: no return to Python for a flush before (QUIET_AFTER_ANSWER) */
    int guard_fd, has_guard; /* see "The guard" */
    double guard_at;         /* monotonic time it is armed for, 0 when disarmed */
    unsigned long long n_fast, n_denied, n_slow, n_dropped, n_send_failed;
} Loop;

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double walltime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static Listener *find(Loop *self, int fd) {
    for (int i = 0; i < self->nlisteners; i++)
        if (self->listeners[i].fd == fd) return &self->listeners[i];
    return NULL;
}

/* -- reading the target ---------------------------------------------------------------------- */

static int mem_fd(Loop *self, int tid, int reopen) {
    for (int i = 0; i < MEM_CACHE; i++) {
        if (self->mem[i].fd >= 0 && self->mem[i].tid == tid) {
            if (!reopen) return self->mem[i].fd;
            close(self->mem[i].fd);
            self->mem[i].fd = -1;
        }
    }
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/mem", tid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    MemFd *slot = &self->mem[self->mem_next];
    self->mem_next = (self->mem_next + 1) % MEM_CACHE;
    if (slot->fd >= 0) close(slot->fd);
    slot->tid = tid;
    slot->fd = fd;
    return fd;
}

/* pread from the target's memory; an empty read means a stale fd (the task exec'd): reopen once */
static ssize_t mem_read(Loop *self, int tid, uint64_t addr, void *out, size_t n) {
    if (addr == 0) return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = mem_fd(self, tid, attempt);
        if (fd < 0) return -1;
        ssize_t r = pread(fd, out, n, (off_t)addr);
        if (r > 0) return r;
    }
    return -1;
}

static int read_string(Loop *self, int tid, uint64_t addr, char *out, size_t cap) {
    size_t got = 0;
    while (got < cap - 1) {
        uint64_t at = addr + got;
        size_t chunk = 4096 - (at % 4096); /* never cross a page in one read */
        if (chunk > cap - 1 - got) chunk = cap - 1 - got;
        ssize_t r = mem_read(self, tid, at, out + got, chunk);
        if (r <= 0) return -1;
        char *nul = memchr(out + got, 0, (size_t)r);
        if (nul) return 0;
        got += (size_t)r;
    }
    out[cap - 1] = 0;
    return 0;
}

static int fd_link(int tid, long fd, char *out, size_t cap) {
    char p[64];
    if (fd < 0) snprintf(p, sizeof p, "/proc/%d/cwd", tid);
    else snprintf(p, sizeof p, "/proc/%d/fd/%ld", tid, fd);
    ssize_t n = readlink(p, out, cap - 1);
    if (n < 0) return -1;
    out[n] = 0;
    return 0;
}

/* a relative path argument, joined to the target's cwd or dirfd (normalised later, in Python) */
static void absolutize(int tid, long dirfd, char *path, size_t cap) {
    if (path[0] == '/') return;
    char base[PATH_CAP], joined[2 * PATH_CAP + 2];
    if (fd_link(tid, dirfd == AT_FDCWD ? -1 : dirfd, base, sizeof base) != 0 || base[0] != '/') return;
    snprintf(joined, sizeof joined, "%s/%s", base, path);
    snprintf(path, cap, "%.*s", (int)(cap - 1), joined);
}

static int read_sockaddr(Loop *self, int tid, uint64_t addr, uint64_t len, char *out, size_t cap) {
    unsigned char sa[128];
    if (len < 2) len = 2;
    if (len > sizeof sa) len = sizeof sa;
    ssize_t r = mem_read(self, tid, addr, sa, (size_t)len);
    if (r < 2) return -1;
    sa_family_t family;
    memcpy(&family, sa, sizeof family);
    char ip[INET6_ADDRSTRLEN];
    if (family == AF_INET && r >= (ssize_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        inet_ntop(AF_INET, &in.sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(in.sin_port));
        return 0;
    }
    if (family == AF_INET6 && r >= (ssize_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        inet_ntop(AF_INET6, &in6.sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(in6.sin6_port));
        return 0;
    }
    if (family == AF_UNIX) {
        size_t n = (size_t)r - 2;
        char *p = (char *)sa + 2;
        size_t plen = strnlen(p, n);
        snprintf(out, cap, "unix:%.*s", (int)plen, p);
        return 0;
    }
    return -1;
}

static const char *SYSTEM_PREFIXES[] = {"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/proc/",
                                        "/sys/", "/dev/", "/etc/ld.so.", NULL};

/* must agree with model/syscalls.py SYSTEM_PATH_PREFIXES */
static int is_system_path(const char *path) {
    for (const char **p = SYSTEM_PREFIXES; *p; p++)
        if (strncmp(path, *p, strlen(*p)) == 0) return 1;
    return 0;
}

/* The kernel names the calling thread; events carry its process. Looked up while the thread is
   still blocked in the notification: a short-lived thread (one per request) is gone by the time
   the events are flushed. One read of /proc per new thread. */
static int tgid_of(Loop *self, int tid) {
    Tgid *slot = &self->tgids[(unsigned)tid % TGID_CACHE];
    if (slot->tid == tid) return slot->tgid;
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/status", tid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tid;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return tid;
    buf[n] = 0;
    char *at = strstr(buf, "\nTgid:");
    if (!at) return tid; /* not in the first lines: leave it uncached, report the thread */
    int tgid = atoi(at + 6);
    if (tgid <= 0) return tid;
    slot->tid = tid;
    slot->tgid = tgid;
    return tgid;
}

static void forget_tgids(Loop *self) {
    for (int i = 0; i < TGID_CACHE; i++) self->tgids[i].tid = 0;
}

/* -- event records ---------------------------------------------------------------------------- */
/* record: svc_id i32, pid i32, tid i32, nr i32, rule i32, path_len u16, addr_len u16, ts double, path, addr
   (rule -1: allowed; a length of 0xffff means "no value") */

static int append(Loop *self, int svc_id, int pid, int tid, int nr, int rule, double ts, const char *path,
                  const char *addr) {
    size_t plen = path ? strlen(path) : 0, alen = addr ? strlen(addr) : 0;
    size_t need = 5 * 4 + 2 * 2 + sizeof(double) + plen + alen;
    if (self->len + need > self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 1 << 16;
        while (cap < self->len + need) cap *= 2;
        char *grown = realloc(self->buf, cap);
        if (!grown) return -1;
        self->buf = grown;
        self->cap = cap;
    }
    char *p = self->buf + self->len;
    uint16_t pl = path ? (uint16_t)plen : 0xffff, al = addr ? (uint16_t)alen : 0xffff;
    memcpy(p, &svc_id, 4), p += 4;
    memcpy(p, &pid, 4), p += 4;
    memcpy(p, &tid, 4), p += 4;
    memcpy(p, &nr, 4), p += 4;
    memcpy(p, &rule, 4), p += 4;
    memcpy(p, &pl, 2), p += 2;
    memcpy(p, &al, 2), p += 2;
    memcpy(p, &ts, sizeof ts), p += sizeof ts;
    if (plen) memcpy(p, path, plen), p += plen;
    if (alen) memcpy(p, addr, alen), p += alen;
    self->len = (size_t)(p - self->buf);
    if (self->count++ == 0) self->first_ts = monotonic();
    return 0;
}

/* -- delays ------------------------------------------------------------------------------------ */

static int delay_before(const Delay *a, const Delay *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int delay_push(Loop *self, Delay d) {
    if (self->ndelays == self->delays_cap) {
        size_t cap = self->delays_cap ? self->delays_cap * 2 : 64;
        Delay *grown = realloc(self->delays, cap * sizeof *grown);
        if (!grown) return -1;
        self->delays = grown;
        self->delays_cap = cap;
    }
    Delay *h = self->delays;
    size_t i = self->ndelays++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!delay_before(&d, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = d;
    return 0;
}

static Delay delay_pop(Loop *self) {
    Delay *h = self->delays, top = h[0], last = h[--self->ndelays];
    size_t n = self->ndelays, i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && delay_before(&h[child + 1], &h[child])) child++;
        if (!delay_before(&h[child], &last)) break;
        h[i] = h[child];
        i = child;
    }
    if (n) h[i] = last;
    return top;
}

static int fired_append(Loop *self, long long token, double lateness) {
    if (self->nfired == self->fired_cap) {
        size_t cap = self->fired_cap ? self->fired_cap * 2 : 64;
        Fired *grown = realloc(self->fired, cap * sizeof *grown);
        if (!grown) return -1;
        self->fired = grown;
        self->fired_cap = cap;
    }
    if (self->nfired == 0) self->fired_first = monotonic();
    self->fired[self->nfired++] = (Fired){token, walltime(), lateness};
    return 0;
}

static int send_continue(Loop *self, int fd, uint64_t id) {
    struct seccomp_notif_resp r;
    memset(&r, 0, sizeof r);
    r.id = id;
    r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &r) != 0) {
        self->n_send_failed++;
        return -1;
    }
    return 0;
}

/* Answer every delay that is due (the answer is sent even if memory for its record runs out). */
static void fire_due(Loop *self) {
    while (self->ndelays) {
        double now = monotonic();
        if (self->delays[0].due > now) return;
        Delay d = delay_pop(self);
        if (d.fd >= 0 && send_continue(self, d.fd, d.id) == 0) self->quiet_until = now + QUIET_AFTER_ANSWER;
        fired_append(self, d.token, now - d.due);
    }
}

/* records waiting for Python: the fast path's events and the fired delays */
static size_t buffered(Loop *self) { return self->count + self->nfired; }

static double buffered_since(Loop *self) {
    if (self->count && self->nfired) return self->first_ts < self->fired_first ? self->first_ts : self->fired_first;
    return self->count ? self->first_ts : self->fired_first;
}

/* When wait() returns to Python with no notification for it: at Python's own deadline, or when the
   buffered records are due (their number, or the oldest one's age), not in the quiet time after an
   answer; -1: not before something happens. */
static double back_at(Loop *self, double deadline, double flush_after, Py_ssize_t flush_count) {
    double back = deadline;
    size_t nbuf = buffered(self);
    if (nbuf) {
        double due = (Py_ssize_t)nbuf >= flush_count ? 0 : buffered_since(self) + flush_after;
        if (back < 0 || due < back) back = due;
    }
    if (back >= 0 && back < self->quiet_until) back = self->quiet_until;
    return back;
}

/* -- the loop --------------------------------------------------------------------------------- */

typedef struct {
    int fd;
    double received; /* monotonic: when the loop learned of it (see the module's comment) */
    struct seccomp_notif n;
} Slow;

/* Handle one readable listener without Python. Returns 1 when the notification is slow (copied
   to *slow, stamped `woke`: when the ppoll that found the listener readable returned, which the oldest
   pending notification, the one RECV gets, had arrived by -- unless the task that made the listener
   readable was interrupted in between, and then it is early by those microseconds at most), 0 when
   it was answered here, -1 when the listener is closed. */
static int handle(Loop *self, Listener *l, Slow *slow, double woke) {
    struct seccomp_notif n;
    memset(&n, 0, sizeof n); /* the kernel refuses a dirty buffer */
    if (ioctl(l->fd, SECCOMP_IOCTL_NOTIF_RECV, &n) != 0) {
        if (errno == ENOENT || errno == EINTR) {
            self->n_dropped++;
            return 0;
        }
        return -1;
    }
    int nr = n.data.nr;
    int in_range = nr >= 0 && nr < MAX_NR;
    int is_slow = in_range && ((l->slow[nr / 64] >> (nr % 64)) & 1);
    int deny_rule = is_slow ? l->deny_rule[nr] : -1;
    if (is_slow && deny_rule < 0) {
        slow->fd = l->fd;
        slow->received = woke;
        slow->n = n;
        self->n_slow++;
        return 1;
    }
    uint8_t kind = in_range ? self->kinds[nr] : 0;
    char path[PATH_CAP], addr[160];
    int has_path = 0, has_addr = 0, read_mem = 0;
    if (kind & K_FD) has_path = fd_link((int)n.pid, (long)(int)n.data.args[0], path, sizeof path) == 0;
    if (kind & (K_PATH0 | K_PATH1)) {
        uint64_t a = (kind & K_PATH0) ? n.data.args[0] : n.data.args[1];
        read_mem = 1;
        has_path = read_string(self, (int)n.pid, a, path, sizeof path) == 0;
        if (has_path) absolutize((int)n.pid, (kind & K_PATH1) ? (long)(int)n.data.args[0] : AT_FDCWD, path, sizeof path);
    }
    if (kind & K_SOCKADDR1) {
        read_mem = 1;
        has_addr = read_sockaddr(self, (int)n.pid, n.data.args[1], n.data.args[2], addr, sizeof addr) == 0;
    } else if ((kind & K_SENDTO) && n.data.args[4]) {
        read_mem = 1;
        has_addr = read_sockaddr(self, (int)n.pid, n.data.args[4], n.data.args[5], addr, sizeof addr) == 0;
    }
    if (read_mem && ioctl(l->fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &n.id) != 0) {
        self->n_dropped++; /* the task went away while we read it */
        return 0;
    }
    if (deny_rule >= 0 && has_path && is_system_path(path)) {
        /* a rule without a path glob leaves system files alone: let Python consult the next rule */
        slow->fd = l->fd;
        slow->received = woke;
        slow->n = n;
        self->n_slow++;
        return 1;
    }
    int pid = tgid_of(self, (int)n.pid);
    struct seccomp_notif_resp r;
    memset(&r, 0, sizeof r);
    r.id = n.id;
    if (deny_rule >= 0) {
        r.error = -l->deny_errno[nr];
        l->deny_hits[nr]++;
        self->n_denied++;
    } else {
        r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        self->n_fast++;
    }
    if (ioctl(l->fd, SECCOMP_IOCTL_NOTIF_SEND, &r) != 0) self->n_send_failed++;
    append(self, l->svc_id, pid, (int)n.pid, nr, deny_rule, walltime(), has_path ? path : NULL, has_addr ? addr : NULL);
    return 0;
}

static PyObject *Loop_wait(Loop *self, PyObject *args) {
    double timeout, flush_after;
    Py_ssize_t flush_count;
    if (!PyArg_ParseTuple(args, "ddn", &timeout, &flush_after, &flush_count)) return NULL;
    enum { CAP = 64 };
    struct pollfd pfds[MAX_LISTENERS + 2];
    Slow slow[CAP];
    int nslow = 0, control = 0, closed[CAP], nclosed = 0, failed = 0;
    double deadline = timeout < 0 ? -1 : monotonic() + timeout;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        fire_due(self);
        double now = monotonic(), wake = back_at(self, deadline, flush_after, flush_count);
        double early = self->wake_est + WAKE_MARGIN; /* how long before a delay is due to stop sleeping */
        if (early > self->spin) early = self->spin;
        int aimed = 0; /* a sleep that ends before a delay is due: learn how late it really ends */
        if (self->ndelays) {
            double poll_from = self->delays[0].due - early;
            if (wake < 0 || poll_from < wake) wake = poll_from, aimed = poll_from > now;
        }
        double final = FINAL_SPIN < self->spin ? FINAL_SPIN : self->spin; /* within set_spin's bound */
        if (self->ndelays && self->delays[0].due - now < final) {
            while (monotonic() < self->delays[0].due) {
            }
            continue; /* answered at the top */
        }
        double wait = wake < 0 ? -1 : wake > now ? wake - now : 0;
        if (self->has_guard && self->ndelays && wait == 0) {
            /* Polling for a delay: arm the guard, before the answer, for the earliest time the loop
               may have to wake after it (as back_at() will find then: the answer's record is due for a
               flush by due + flush_after at the latest; never before the quiet time after it). */
            double due = self->delays[0].due, at = due + (flush_after > 0 ? flush_after : 0);
            if (deadline >= 0 && deadline < at) at = deadline;
            if (buffered(self) && buffered_since(self) + flush_after < at) at = buffered_since(self) + flush_after;
            if (at < due + QUIET_AFTER_ANSWER) at = due + QUIET_AFTER_ANSWER;
            if (self->guard_at != at) {
                struct itimerspec its = {{0, 0}, {(time_t)at, (long)((at - (double)(time_t)at) * 1e9)}};
                self->guard_at = timerfd_settime(self->guard_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0 ? at : 0;
            }
        }
        if (wait > 0 && self->guard_at > now && (wake < 0 || wake >= self->guard_at)) wait = -1; /* the guard's */
        struct timespec ts, *tsp = NULL;
        if (wait >= 0) {
            ts.tv_sec = (time_t)wait;
            ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
            tsp = &ts;
        }
        /* ppoll, not epoll: its timeout is a timespec (a 1 ms delay is not rounded up to the next
           millisecond), and a listener's sync wake-up (FD_SYNC_WAKE_UP: the caller's CPU) reaches a
           poll waiter, whereas epoll wakes its waiter on any CPU, often an idle one that takes tens of
           microseconds to come back. A few listeners: building the set each time costs nothing. */
        int npfds = 0;
        pfds[npfds++] = (struct pollfd){.fd = self->ctl_fd, .events = POLLIN};
        for (int i = 0; i < self->nlisteners; i++)
            pfds[npfds++] = (struct pollfd){.fd = self->listeners[i].fd, .events = POLLIN};
        int nlfds = npfds; /* pfds[1 .. nlfds - 1]: the listeners */
        if (self->guard_at > 0) pfds[npfds++] = (struct pollfd){.fd = self->guard_fd, .events = POLLIN};
        int n = ppoll(pfds, (nfds_t)npfds, tsp, NULL);
        double woke = monotonic();
        if (n < 0) {
            if (errno == EINTR) continue;
            failed = errno;
            break;
        }
        if (npfds > nlfds && pfds[nlfds].revents) {
            uint64_t expirations;
            if (read(self->guard_fd, &expirations, sizeof expirations) < 0) { /* EAGAIN: nothing to clear */
            }
            self->guard_at = 0;
        }
        if (n == 0 && aimed) {
            double late = woke - wake;
            self->wake_est += late > self->wake_est ? 4 * WAKE_STEP : -WAKE_STEP;
            if (self->wake_est < 0) self->wake_est = 0;
            if (self->wake_est > self->spin) self->wake_est = self->spin;
        }
        fire_due(self); /* first: a due delay is answered before the notifications that woke us */
        if (n > 0 && pfds[0].revents) control = 1;
        for (int i = 1; n > 0 && i < nlfds && nslow < CAP; i++) {
            /* listeners[i - 1]: the set was built from them and nothing changed them since */
            int fd = pfds[i].fd;
            short ev = pfds[i].revents;
            if (ev & POLLIN) {
                int r = handle(self, &self->listeners[i - 1], &slow[nslow], woke);
                if (r == 1) nslow++;
                else if (r < 0 && nclosed < CAP) closed[nclosed++] = fd;
            } else if (ev & (POLLHUP | POLLERR | POLLNVAL)) {
                if (nclosed < CAP) closed[nclosed++] = fd;
            }
        }
        if (control || nslow || nclosed) break;
        now = monotonic();
        if (self->ndelays && self->delays[0].due - early <= now) continue; /* Python waits for that answer */
        double back = back_at(self, deadline, flush_after, flush_count);
        if (back >= 0 && now >= back) break;
    }
    Py_END_ALLOW_THREADS

    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *slow_list = PyList_New(nslow);
    if (!slow_list) return NULL;
    for (int i = 0; i < nslow; i++) {
        struct seccomp_notif *s = &slow[i].n;
        PyObject *t = Py_BuildValue("(iKIi(KKKKKK)d)", slow[i].fd, (unsigned long long)s->id, s->pid, s->data.nr,
                                    (unsigned long long)s->data.args[0], (unsigned long long)s->data.args[1],
                                    (unsigned long long)s->data.args[2], (unsigned long long)s->data.args[3],
                                    (unsigned long long)s->data.args[4], (unsigned long long)s->data.args[5],
                                    slow[i].received);
        if (!t) {
            Py_DECREF(slow_list);
            return NULL;
        }
        PyList_SET_ITEM(slow_list, i, t);
    }
    PyObject *closed_list = PyList_New(nclosed);
    if (!closed_list) {
        Py_DECREF(slow_list);
        return NULL;
    }
    for (int i = 0; i < nclosed; i++) PyList_SET_ITEM(closed_list, i, PyLong_FromLong(closed[i]));
    return Py_BuildValue("(NON)", slow_list, control ? Py_True : Py_False, closed_list);
}

static PyObject *Loop_drain(Loop *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New((Py_ssize_t)self->count);
    if (!out) return NULL;
    char *p = self->buf, *end = self->buf + self->len;
    Py_ssize_t i = 0;
    while (p < end && i < (Py_ssize_t)self->count) {
        int svc_id, pid, tid, nr, rule;
        uint16_t pl, al;
        double ts;
        memcpy(&svc_id, p, 4), p += 4;
        memcpy(&pid, p, 4), p += 4;
        memcpy(&tid, p, 4), p += 4;
        memcpy(&nr, p, 4), p += 4;
        memcpy(&rule, p, 4), p += 4;
        memcpy(&pl, p, 2), p += 2;
        memcpy(&al, p, 2), p += 2;
        memcpy(&ts, p, sizeof ts), p += sizeof ts;
        PyObject *path = Py_None, *addr = Py_None;
        if (pl != 0xffff) {
            path = PyUnicode_DecodeFSDefaultAndSize(p, pl);
            p += pl;
        } else {
            Py_INCREF(Py_None);
        }
        if (al != 0xffff) {
            addr = PyUnicode_DecodeFSDefaultAndSize(p, al);
            p += al;
        } else {
            Py_INCREF(Py_None);
        }
        if (!path || !addr) {
            Py_XDECREF(path);
            Py_XDECREF(addr);
            Py_DECREF(out);
            return NULL;
        }
        PyObject *t = Py_BuildValue("(idiiiiNN)", svc_id, ts, pid, tid, nr, rule, path, addr);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i++, t);
    }
    self->len = 0;
    self->count = 0;
    return out;
}

static PyObject *Loop_delay(Loop *self, PyObject *args) {
    int fd;
    unsigned long long id;
    double due;
    long long token;
    if (!PyArg_ParseTuple(args, "iKdL", &fd, &id, &due, &token)) return NULL;
    Delay d = {due, self->delay_seq++, id, token, fd};
    if (delay_push(self, d) != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Loop_take_fired(Loop *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New((Py_ssize_t)self->nfired);
    if (!out) return NULL;
    for (size_t i = 0; i < self->nfired; i++) {
        Fired *f = &self->fired[i];
        PyObject *t = Py_BuildValue("(Ldd)", f->token, f->ts, f->lateness);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    self->nfired = 0;
    return out;
}

static PyObject *Loop_release_delays(Loop *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    while (self->ndelays) {
        Delay d = delay_pop(self);
        if (d.fd >= 0) send_continue(self, d.fd, d.id);
        PyObject *token = PyLong_FromLongLong(d.token);
        if (!token || PyList_Append(out, token) != 0) {
            Py_XDECREF(token);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(token);
    }
    return out;
}

/* Answer now the pending delays of one listener (its test ended: a service kept for the next test
   must not carry the last one's faults into it). Each is recorded as fired, with its lateness
   negative: how long before its deadline it was answered. The others keep their place. */
static PyObject *Loop_cut_delays(Loop *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
    size_t n = self->ndelays, kept = 0, cut = 0;
    if (n == 0) return PyLong_FromSize_t(0);
    Delay *ordered = malloc(n * sizeof *ordered);
    if (!ordered) return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++) ordered[i] = delay_pop(self); /* earliest deadline first */
    double now = monotonic();
    for (size_t i = 0; i < n; i++) {
        Delay d = ordered[i];
        if (d.fd != fd) {
            self->delays[kept++] = d; /* in deadline order: still a heap */
            continue;
        }
        send_continue(self, d.fd, d.id);
        fired_append(self, d.token, now - d.due);
        cut++;
    }
    self->ndelays = kept;
    free(ordered);
    return PyLong_FromSize_t(cut);
}

static PyObject *Loop_set_spin(Loop *self, PyObject *args) {
    double spin;
    if (!PyArg_ParseTuple(args, "d", &spin)) return NULL;
    self->spin = spin > 0 ? spin : 0;
    Py_RETURN_NONE;
}

static PyObject *Loop_respond(Loop *self, PyObject *args) {
    int fd, error;
    unsigned long long id;
    unsigned int flags;
    if (!PyArg_ParseTuple(args, "iKiI", &fd, &id, &error, &flags)) return NULL;
    struct seccomp_notif_resp r;
    memset(&r, 0, sizeof r);
    r.id = id;
    r.error = error;
    r.flags = flags;
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &r) != 0) {
        self->n_send_failed++;
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyObject *Loop_add(Loop *self, PyObject *args) {
    int fd, svc_id;
    if (!PyArg_ParseTuple(args, "ii", &fd, &svc_id)) return NULL;
    if (self->nlisteners == MAX_LISTENERS) {
        PyErr_SetString(PyExc_RuntimeError, "too many listeners");
        return NULL;
    }
    Listener *l = &self->listeners[self->nlisteners++];
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->svc_id = svc_id;
    for (int i = 0; i < MAX_NR; i++) l->deny_rule[i] = -1;
    Py_RETURN_NONE;
}

static PyObject *Loop_remove(Loop *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
    for (int i = 0; i < self->nlisteners; i++) {
        if (self->listeners[i].fd == fd) {
            self->listeners[i] = self->listeners[--self->nlisteners];
            for (size_t j = 0; j < self->ndelays; j++) /* its fd number may be reused: never answer them */
                if (self->delays[j].fd == fd) self->delays[j].fd = -1;
            forget_tgids(self); /* its threads are gone; their ids may be reused */
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Loop_set_slow(Loop *self, PyObject *args) {
    int fd;
    PyObject *numbers;
    if (!PyArg_ParseTuple(args, "iO", &fd, &numbers)) return NULL;
    Listener *l = find(self, fd);
    if (!l) {
        PyErr_SetString(PyExc_KeyError, "no such listener");
        return NULL;
    }
    uint64_t bits[MAX_NR / 64];
    memset(bits, 0, sizeof bits);
    PyObject *it = PyObject_GetIter(numbers);
    if (!it) return NULL;
    PyObject *item;
    while ((item = PyIter_Next(it))) {
        long nr = PyLong_AsLong(item);
        Py_DECREF(item);
        if (nr == -1 && PyErr_Occurred()) break;
        if (nr >= 0 && nr < MAX_NR) bits[nr / 64] |= 1ULL << (nr % 64);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    memcpy(l->slow, bits, sizeof bits);
    Py_RETURN_NONE;
}

static PyObject *Loop_set_fast_deny(Loop *self, PyObject *args) {
    int fd;
    PyObject *entries;
    if (!PyArg_ParseTuple(args, "iO", &fd, &entries)) return NULL;
    Listener *l = find(self, fd);
    if (!l) {
        PyErr_SetString(PyExc_KeyError, "no such listener");
        return NULL;
    }
    int32_t rules[MAX_NR], errnos[MAX_NR];
    for (int i = 0; i < MAX_NR; i++) rules[i] = -1, errnos[i] = 0;
    PyObject *it = PyObject_GetIter(entries);
    if (!it) return NULL;
    PyObject *item;
    while ((item = PyIter_Next(it))) {
        int nr, rule, err;
        int ok = PyArg_ParseTuple(item, "iii", &nr, &rule, &err);
        Py_DECREF(item);
        if (!ok) break;
        if (nr >= 0 && nr < MAX_NR) rules[nr] = rule, errnos[nr] = err;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    for (int i = 0; i < MAX_NR; i++) {
        if (rules[i] != l->deny_rule[i]) l->deny_hits[i] = 0; /* hits belong to one rule */
        l->deny_rule[i] = rules[i];
        l->deny_errno[i] = errnos[i];
    }
    Py_RETURN_NONE;
}

static PyObject *Loop_take_hits(Loop *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
    Listener *l = find(self, fd);
    PyObject *out = PyDict_New();
    if (!out || !l) return out;
    for (int i = 0; i < MAX_NR; i++) {
        if (l->deny_rule[i] < 0 || !l->deny_hits[i]) continue;
        PyObject *key = PyLong_FromLong(l->deny_rule[i]);
        PyObject *prev = PyDict_GetItem(out, key); /* a rule may cover several syscalls */
        long total = (long)l->deny_hits[i] + (prev ? PyLong_AsLong(prev) : 0);
        PyObject *val = PyLong_FromLong(total);
        PyDict_SetItem(out, key, val);
        Py_DECREF(key);
        Py_DECREF(val);
        l->deny_hits[i] = 0;
    }
    return out;
}

static PyObject *Loop_stats(Loop *self, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("{sKsKsKsKsKsnsnsn}", "fast", self->n_fast, "denied", self->n_denied, "slow", self->n_slow,
                         "dropped", self->n_dropped, "send_failed", self->n_send_failed, "buffered",
                         (Py_ssize_t)buffered(self), "delays", (Py_ssize_t)self->ndelays, "wake_late_ns",
                         (Py_ssize_t)(self->wake_est * 1e9));
}

static int Loop_init(Loop *self, PyObject *args, PyObject *Py_UNUSED(kw)) {
    int ctl_fd;
    Py_buffer kinds;
    if (!PyArg_ParseTuple(args, "iy*", &ctl_fd, &kinds)) return -1;
    memset(self->kinds, 0, sizeof self->kinds);
    memcpy(self->kinds, kinds.buf, kinds.len < MAX_NR ? (size_t)kinds.len : MAX_NR);
    PyBuffer_Release(&kinds);
    for (int i = 0; i < MEM_CACHE; i++) self->mem[i].fd = -1;
    self->spin = DEFAULT_SPIN;
    self->wake_est = WAKE_EST0;
    self->ctl_fd = ctl_fd;
    if (!self->has_guard) { /* without one, the loop keeps a ppoll timeout as before */
        self->guard_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        self->has_guard = self->guard_fd >= 0;
    }
    self->guard_at = 0;
    return 0;
}

static void Loop_dealloc(Loop *self) {
    if (self->has_guard) close(self->guard_fd);
    for (int i = 0; i < MEM_CACHE; i++)
        if (self->mem[i].fd >= 0) close(self->mem[i].fd);
    free(self->buf);
    free(self->delays);
    free(self->fired);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Loop_process_of(Loop *self, PyObject *args) {
    int tid;
    if (!PyArg_ParseTuple(args, "i", &tid)) return NULL;
    return PyLong_FromLong(tgid_of(self, tid));
}

static PyMethodDef Loop_methods[] = {
    {"wait", (PyCFunction)Loop_wait, METH_VARARGS, "wait(timeout, flush_after, flush_count) -> (slow, control, closed)"},
    {"drain", (PyCFunction)Loop_drain, METH_NOARGS, "the buffered fast-path events"},
    {"respond", (PyCFunction)Loop_respond, METH_VARARGS, "respond(fd, id, error, flags) -> bool"},
    {"add", (PyCFunction)Loop_add, METH_VARARGS, "add(listener_fd, svc_id)"},
    {"remove", (PyCFunction)Loop_remove, METH_VARARGS, "remove(listener_fd)"},
    {"set_slow", (PyCFunction)Loop_set_slow, METH_VARARGS, "set_slow(listener_fd, syscall numbers with rules)"},
    {"set_fast_deny", (PyCFunction)Loop_set_fast_deny, METH_VARARGS, "set_fast_deny(fd, [(nr, rule_id, errno)])"},
    {"take_hits", (PyCFunction)Loop_take_hits, METH_VARARGS, "take_hits(fd) -> {rule_id: hits}"},
    {"process_of", (PyCFunction)Loop_process_of, METH_VARARGS, "process_of(tid) -> the thread's process id"},
    {"stats", (PyCFunction)Loop_stats, METH_NOARGS, "counters"},
    {"delay", (PyCFunction)Loop_delay, METH_VARARGS, "delay(fd, id, due, token): answer CONTINUE at monotonic `due`"},
    {"take_fired", (PyCFunction)Loop_take_fired, METH_NOARGS, "[(token, ts, lateness)] of the delays answered"},
    {"release_delays", (PyCFunction)Loop_release_delays, METH_NOARGS, "answer every pending delay: [token]"},
    {"cut_delays", (PyCFunction)Loop_cut_delays, METH_VARARGS, "cut_delays(fd): answer that listener's pending delays now -> how many"},
    {"set_spin", (PyCFunction)Loop_set_spin, METH_VARARGS, "set_spin(seconds): poll, not sleep, so close to a delay"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "faultbox.engine._notify.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_methods = Loop_methods,
    .tp_doc = "The supervisor's notification loop (see the module's comment).",
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_notify", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__notify(void) {
    if (PyType_Ready(&LoopType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&LoopType);
    if (PyModule_AddObject(m, "Loop", (PyObject *)&LoopType) < 0) {
        Py_DECREF(&LoopType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "K_FD", K_FD);
    PyModule_AddIntConstant(m, "K_PATH0", K_PATH0);
    PyModule_AddIntConstant(m, "K_PATH1", K_PATH1);
    PyModule_AddIntConstant(m, "K_SOCKADDR1", K_SOCKADDR1);
    PyModule_AddIntConstant(m, "K_SENDTO", K_SENDTO);
    return m;
}
