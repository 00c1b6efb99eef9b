/*
 * faultbox-shim: start one service process under a seccomp user-notification filter.
 *
 *   faultbox-shim <comm-fd> <runner-pid> <arch> <nr,nr,...|-> -- <argv...>
 *
 * The runner spawns this in the service's own process group, already as the service's user and in
 * its cwd and environment. In order:
 *   1. PR_SET_PDEATHSIG(SIGKILL), then check the runner is still our parent (no orphan service).
 *   2. Resolve the binary on PATH before anything else, so a missing binary is reported, not hung.
 *   3. With syscalls to intercept: PR_SET_NO_NEW_PRIVS, then install a filter that sends exactly
 *      those syscalls to a new listener; read/write on <comm-fd> stay allowed so this handshake can
 *      never trap itself.
 *   4. Report "FD <listener>" (or "NOFILTER") on <comm-fd> and wait for the runner's ack: the
 *      supervisor has taken the listener (pidfd_getfd) and the process joined its cgroup.
 *   5. exec. <comm-fd> is close-on-exec, so the runner sees EOF exactly when exec succeeded; if
 *      exec fails, "ERR ..." is written instead.
 * Every failure is one "ERR <message>" line and exit 127.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif
#ifndef SECCOMP_RET_USER_NOTIF
#define SECCOMP_RET_USER_NOTIF 0x7fc00000U
#endif

#define MAX_NRS 512
#define X32_SYSCALL_BIT 0x40000000U

static int comm_fd = -1;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(comm_fd, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += w;
    }
}

static void die(const char *what) {
    report("ERR %s: %s", what, strerror(errno));
    _exit(127);
}

/* PATH lookup like execvp, but done before the filter so failure is reported, not trapped. */
static int resolve(const char *name, char *out, size_t outlen) {
    if (strchr(name, '/')) {
        if (access(name, X_OK) != 0) return -1;
        snprintf(out, outlen, "%s", name);
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        if (len == 0) {
            snprintf(out, outlen, "./%s", name);
        } else {
            snprintf(out, outlen, "%.*s/%s", (int)len, p, name);
        }
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return 0;
        if (!colon) break;
        p = colon + 1;
    }
    errno = ENOENT;
    return -1;
}

static int parse_nrs(const char *spec, unsigned int *nrs) {
    if (strcmp(spec, "-") == 0) return 0;
    int count = 0;
    const char *p = spec;
    while (*p && count < MAX_NRS) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p) return -1;
        nrs[count++] = (unsigned int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return count;
}

/* Is this syscall one the shim itself uses on comm_fd (read or write)? */
static int is_io_nr(unsigned int nr, unsigned int read_nr, unsigned int write_nr) {
    return nr == read_nr || nr == write_nr;
}

static int install_filter(unsigned int arch, const unsigned int *nrs, int count) {
    /* arch check, x32 refusal, then per nr: notify (or allow when it is our own I/O on comm_fd). */
    struct sock_filter prog[8 + MAX_NRS * 6];
    int n = 0;
    unsigned int read_nr = SYS_read, write_nr = SYS_write;

    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
    /* x32 syscalls carry the same arch value; refuse them so they cannot bypass the filter. */
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
#endif
    for (int i = 0; i < count; i++) {
        if (is_io_nr(nrs[i], read_nr, write_nr)) {
            /* nr == X ? (args[0] == comm_fd ? ALLOW : NOTIFY) : next */
            prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], 0, 4);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
            prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)comm_fd, 0, 1);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
        } else {
            prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], 0, 1);
            prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
        }
    }
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
    unsigned long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    if (fd < 0 && errno == EINVAL) {
        /* kernels before 5.19 lack WAIT_KILLABLE_RECV */
        fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
    }
    return (int)fd;
}

int main(int argc, char **argv) {
    if (argc < 6 || strcmp(argv[5], "--") != 0 || argc < 7) {
        fprintf(stderr, "usage: faultbox-shim <comm-fd> <runner-pid> <arch> <nrs|-> -- argv...\n");
        return 127;
    }
    comm_fd = atoi(argv[1]);
    pid_t runner = (pid_t)atol(argv[2]);
    unsigned int arch = (unsigned int)strtoul(argv[3], NULL, 0);

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("prctl(PDEATHSIG)");
    if (getppid() != runner) {
        report("ERR the runner exited before the service started");
        _exit(127);
    }
    if (fcntl(comm_fd, F_SETFD, FD_CLOEXEC) != 0) die("fcntl(comm fd)");

    static unsigned int nrs[MAX_NRS];
    int count = parse_nrs(argv[4], nrs);
    if (count < 0) {
        report("ERR bad syscall list: %s", argv[4]);
        _exit(127);
    }

    char binary[PATH_MAX];
    if (resolve(argv[6], binary, sizeof binary) != 0) {
        report("ERR binary not found or not executable: %s", argv[6]);
        _exit(127);
    }

    if (count > 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("prctl(NO_NEW_PRIVS)");
        int listener = install_filter(arch, nrs, count);
        if (listener < 0) die("seccomp(SET_MODE_FILTER)");
        report("FD %d", listener);
    } else {
        report("NOFILTER");
    }

    char ack = 0;
    ssize_t r;
    do {
        r = read(comm_fd, &ack, 1);
    } while (r < 0 && errno == EINTR);
    if (r != 1 || ack != 'k') _exit(127); /* the runner gave up on us */

    execv(binary, &argv[6]);
    report("ERR exec %s: %s", binary, strerror(errno));
    _exit(127);
}
