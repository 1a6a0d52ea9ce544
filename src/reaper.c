/* reaper.c: PID 1 of a sandbox, as a tiny freestanding program (no libc, a few pages).
 *
 * Usage (by lunas only):
 *   lunas-reaper STATUS_FD ERROR_FD FLAGS FILTER_FD NOTIFY_FD HOLD [RULESET_FD] [PROC_FD N (WHAT PATH VALUE)*N]
 *                FILE ARGV0 [ARGS...]
 * (environment: the payload's; RULESET_FD only with FLAGS 128, the labels only with FLAGS 64)
 * lunas's sandbox child sets up the namespaces and confines itself as the payload will be confined (ids,
 * capabilities, no_new_privs, Landlock), then execs this program from a sealed memfd. That gives the memory it
 * shared with lunas back at once, and /proc/1/exe is a sealed memfd, never lunas's binary (CVE-2019-5736).
 * The payload's seccomp program (FILTER_FD: a pipe holding the BPF bytes, or "-") is loaded by the payload alone,
 * just before its exec: a profile that allows only what the payload needs must not stop PID 1, which has a filter
 * of its own (below). With FLAGS 4 the load returns a listener, sent over NOTIFY_FD (SCM_RIGHTS) to lunas; FLAGS 8
 * logs what the filter refuses; with FLAGS 16 the pipe holds several programs, each after an 8-byte header that
 * gives its length in instructions, loaded in order.
 * With FLAGS 64 the payload execs under Linux security module labels (AppArmor's exec profile, SELinux's exec
 * context): PROC_FD is a directory of a procfs that shows the payload (lunas's own /proc, opened before the
 * sandbox's root replaced it: the sandbox's tree may have none), and each of the N labels (at most 4) is written,
 * as VALUE, to PATH under it (such as "thread-self/attr/apparmor/exec") by the payload itself, before its seccomp
 * program: the kernel lets a process write only its own attributes, and applies them at its next exec. WHAT names
 * the label in a failure ("lsm\0#ERRNO\0WHAT"). PID 1 keeps the label it was started with: it never execs again,
 * and taking the payload's profile would only make its own work (the pipes lunas reads, its signal forwarding)
 * subject to a policy written for the payload.
 * A Landlock domain would refuse the payload its own attribute files: with FLAGS 128, RULESET_FD is the sandbox's
 * Landlock ruleset, which lunas has not applied to PID 1, and which the payload applies to itself after its labels
 * and this process to itself before its seccomp filter.
 *
 * The payload does not exist yet when this program starts: nothing in the sandbox can race the exec, which makes
 * a process dumpable (traceable) again until its first instruction. Here, in order:
 *   1. not dumpable, before anything else;
 *   2. the payload is forked, and waits;
 *   3. this process confines itself further than the payload: no capability in any set, an empty bounding set
 *      where it may empty it, no_new_privs, and a seccomp filter of its own that allows only the few calls left
 *      to do (read, write, close, kill, wait4, exit);
 *   4. the payload is released, loads its seccomp program and execs FILE (searched in the environment's PATH when
 *      FLAGS has 1; in a new session when FLAGS has 2). A failure there comes back on ERROR_FD as the record lunas
 *      reads ("exec\0#ERRNO\0FILE", "seccomp\0#ERRNO\0load"), and this process exits 125.
 * HOLD ("-", or descriptors "N,N,...", at most 16) are descriptors this process keeps while it lives and the
 * payload never gets: locks it holds for the sandbox (bubblewrap's --lock-file), a descriptor whose closing tells
 * a watcher the sandbox is gone (--sync-fd).
 * Then it forwards every signal it receives to the payload, reaps every child (orphans included), and when the
 * payload ends writes the payload's pid and then its raw wait status (4 bytes each) to STATUS_FD ("-": none) and
 * exits with its code, or 128+N for signal N. With FLAGS 32 (bubblewrap's PID 1) it stays on after that until no
 * process of its own is left, and then exits with the payload's code. Every signal was blocked before the exec and stays blocked (the
 * mask survives exec), so none is lost. */
#include <asm/unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <linux/signal.h>
#include <stddef.h>

#define SFD_CLOEXEC 02000000
#define O_CLOEXEC 02000000
#define WNOHANG 1
#define WALL 0x40000000
#define F_SETFD 2
#define FD_CLOEXEC 1
#define EINTR 4
#define EINVAL 22
#define ENOENT 2
#define EACCES 13
#define ENOTDIR 20
#define ENODEV 19
#define ESTALE 116
#define SIGCHLD 17
#define SIGKILL 9
#define SIGSTOP 19
#define SIGNALFD_INFO_SIZE 128
#define PATH_MAX 4096
#define SETUP_FAILED 125
#define EXEC_FAILED 127
#define FLAG_SEARCH 1
#define FLAG_SETSID 2
#define FLAG_LISTENER 4
#define FLAG_LOG 8
#define FLAG_FRAMED 16
#define FLAG_LINGER 32
#define FLAG_LSM 64
#define FLAG_LANDLOCK 128
#define O_WRONLY 01
#define MAX_LABELS 4
#define ECHILD 10
#define SOL_SOCKET 1
#define SCM_RIGHTS 1
/* What the payload reports back before its exec: the stage that failed and the errno. */
/* (STAGE_LSM + i: label i) */
enum { STAGE_EXEC, STAGE_SECCOMP, STAGE_LISTENER, STAGE_LANDLOCK, STAGE_LSM };
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#if defined(__x86_64__)
#define REAPER_AUDIT_ARCH AUDIT_ARCH_X86_64
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n call reaper_main\n hlt\n");
#elif defined(__aarch64__)
#define REAPER_AUDIT_ARCH AUDIT_ARCH_AARCH64
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n mov x0, sp\n bl reaper_main\n");
#else
#error "the freestanding reaper supports x86_64 and aarch64; build with LUNAS_NO_REAPER_ELF=1 elsewhere"
#endif

#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

static __attribute__((noreturn)) void die(int code) {
    for (;;) sys3(__NR_exit_group, code, 0, 0);
}

static unsigned long string_length(const char *s) {
    unsigned long n = 0;
    while (s[n]) n++;
    return n;
}

static void copy_bytes(char *dst, const char *src, unsigned long n) {
    for (unsigned long i = 0; i < n; i++) dst[i] = src[i];
}

static long parse_number(const char *s);

/* A descriptor number, or "-" for none (-1); -2 when it is neither. */
static long optional_fd(const char *s) {
    if (s[0] == '-' && !s[1]) return -1;
    long v = parse_number(s);
    return v < 0 ? -2 : v;
}

static long parse_number(const char *s) {
    long v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 0x7fffffff / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Appends the decimal form of v (0 or more) at out; returns the length written. */
static unsigned long format_number(char *out, long v) {
    char digits[24];
    unsigned long n = 0, len = 0;
    do digits[n++] = (char)('0' + v % 10), v /= 10;
    while (v > 0);
    while (n > 0) out[len++] = digits[--n];
    return len;
}

/* The failure record lunas reads from the error pipe, in one write: "STEP\0#ERRNO\0WHAT". lunas turns the errno
 * into its name and message. */
static void report(long err_fd, const char *step, long err, const char *what) {
    char record[4000];
    unsigned long len = 0, n = string_length(step);
    copy_bytes(record, step, n);
    len += n;
    record[len++] = '\0';
    record[len++] = '#';
    len += format_number(record + len, err);
    record[len++] = '\0';
    n = string_length(what);
    if (n > sizeof record - len) n = sizeof record - len;
    copy_bytes(record + len, what, n);
    len += n;
    if (err_fd >= 0) sys3(__NR_write, err_fd, record, len);
}

static __attribute__((noreturn)) void fail(long err_fd, const char *step, long ret, const char *what) {
    report(err_fd, step, -ret, what);
    die(SETUP_FAILED);
}

static const char *env_lookup(char **envp, const char *name) {
    unsigned long len = string_length(name);
    for (char **e = envp; e && *e; e++) {
        unsigned long i = 0;
        while (i < len && (*e)[i] == name[i]) i++;
        if (i == len && (*e)[len] == '=') return *e + len + 1;
    }
    return 0;
}

static long do_exec(const char *file, char **argv, char **envp) {
    return sys3(__NR_execve, file, argv, envp);
}

/* execve with the PATH search of lunas's exec (the payload's PATH decides; no /bin/sh fallback on ENOEXEC).
 * Returns the errno. */
static long exec_search(const char *file, char **argv, char **envp, int search) {
    const char *p;
    for (p = file; *p; p++)
        if (*p == '/') search = 0;
    if (!search) return -do_exec(file, argv, envp);
    const char *path = env_lookup(envp, "PATH");
    if (!path || !*path) path = DEFAULT_PATH;
    unsigned long flen = string_length(file);
    int saw_eacces = 0;
    for (p = path;; p++) {
        const char *colon = p;
        while (*colon && *colon != ':') colon++;
        unsigned long dlen = (unsigned long)(colon - p);
        char buf[PATH_MAX];
        if (dlen + flen + 2 <= sizeof buf) {
            if (dlen) copy_bytes(buf, p, dlen);
            else buf[dlen++] = '.'; /* an empty PATH entry means the current directory */
            buf[dlen] = '/';
            copy_bytes(buf + dlen + 1, file, flen + 1);
            long err = -do_exec(buf, argv, envp);
            if (err == EACCES) saw_eacces = 1;
            else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV) return err;
        }
        if (!*colon) break;
        p = colon;
    }
    return saw_eacces ? EACCES : ENOENT;
}

/* The largest classic BPF program the kernel takes (BPF_MAXINSNS instructions). */
static struct sock_filter filter_code[4096];

struct message_header {
    void *name;
    unsigned int namelen;
    void *iov;
    unsigned long iovlen;
    void *control;
    unsigned long controllen;
    unsigned int flags;
};

struct io_vector {
    void *base;
    unsigned long len;
};

struct rights_message {
    unsigned long len;
    int level;
    int type;
    int fd;
    int pad;
};

/* Hands the listener of the payload's filter to lunas (one SCM_RIGHTS message, as lunas's send_fd). */
static long send_fd(long sock, long fd) {
    char byte = 0;
    struct io_vector iov = {&byte, 1};
    struct rights_message rights = {sizeof(unsigned long) + 2 * sizeof(int) + sizeof(int), SOL_SOCKET, SCM_RIGHTS,
                                     (int)fd, 0};
    struct message_header msg = {0, 0, &iov, 1, &rights, sizeof rights, 0};
    return sys3(__NR_sendmsg, sock, &msg, 0);
}

/* Reads the payload's BPF program from its pipe and loads it; with a listener, sends it to lunas. Returns 0 or a
 * negative errno, with *stage naming the failing part. */
static long load_filter(long filter_fd, long notify_fd, long flags, int *stage) {
    *stage = STAGE_SECCOMP;
    unsigned long size = 0;
    for (;;) {
        long n = sys3(__NR_read, filter_fd, (char *)filter_code + size, sizeof filter_code - size);
        if (n == -EINTR) continue;
        if (n < 0) return n;
        if (n == 0) break;
        size += (unsigned long)n;
        if (size == sizeof filter_code) break;
    }
    sys3(__NR_close, filter_fd, 0, 0);
    if (size == 0 || size % sizeof filter_code[0]) return -EINVAL;
    if (flags & FLAG_FRAMED) {
        /* Several programs, each after an 8-byte header (its instruction count), loaded in order (bubblewrap's
         * --add-seccomp-fd): the last one loaded is the first the kernel runs. */
        unsigned long at = 0, count = size / sizeof filter_code[0];
        while (at < count) {
            unsigned long len = *(unsigned int *)&filter_code[at];
            if (len == 0 || len > count - at - 1) return -EINVAL;
            struct sock_fprog one = {.len = (unsigned short)len, .filter = filter_code + at + 1};
            /* (through prctl, as bubblewrap: an earlier program may allow prctl and not seccomp) */
            long r = sys6(__NR_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, (long)&one, 0, 0, 0);
            if (r < 0) return r;
            at += 1 + len;
        }
        return 0;
    }
    struct sock_fprog prog = {.len = (unsigned short)(size / sizeof filter_code[0]), .filter = filter_code};
    unsigned long load_flags = (flags & FLAG_LISTENER ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0) |
                               (flags & FLAG_LOG ? SECCOMP_FILTER_FLAG_LOG : 0);
    long listener = sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, load_flags, &prog);
    if (listener < 0) return listener;
    if (!(flags & FLAG_LISTENER)) return 0;
    *stage = STAGE_LISTENER;
    long r = send_fd(notify_fd, listener);
    sys3(__NR_close, listener, 0, 0);
    sys3(__NR_close, notify_fd, 0, 0);
    return r < 0 ? r : 0;
}

#define MAX_HOLD 16

struct label {
    const char *what, *path, *value;
};

struct payload_plan {
    long flags, filter_fd, notify_fd;
    long hold[MAX_HOLD];
    int holds;
    long proc_fd, ruleset_fd;
    struct label labels[MAX_LABELS];
    int label_count;
    char *file;
    char **argv, **envp;
};

/* "-" or "N,N,...": fills plan->hold; -1 when malformed. */
static int parse_hold(char *s, struct payload_plan *plan) {
    plan->holds = 0;
    if (s[0] == '-' && !s[1]) return 0;
    for (char *start = s;; s++) {
        if (*s != ',' && *s) continue;
        char end = *s;
        *s = 0;
        long fd = parse_number(start);
        *s = end;
        if (fd < 0 || plan->holds == MAX_HOLD) return -1;
        plan->hold[plan->holds++] = fd;
        if (!end) return 0;
        start = s + 1;
    }
}

/* Writes the labels to this process's attribute files; returns 0 or a negative errno, with *stage naming the
 * label. Each goes in one write, as libapparmor and libselinux write them: the kernel takes the write whole. */
static long write_labels(const struct payload_plan *plan, int *stage) {
    for (int i = 0; i < plan->label_count; i++) {
        const struct label *l = &plan->labels[i];
        *stage = STAGE_LSM + i;
        long fd = sys6(__NR_openat, plan->proc_fd, (long)l->path, O_WRONLY | O_CLOEXEC, 0, 0, 0);
        if (fd < 0) return fd;
        unsigned long len = string_length(l->value);
        long n;
        while ((n = sys3(__NR_write, fd, l->value, len)) == -EINTR) {
        }
        sys3(__NR_close, fd, 0, 0);
        if (n < 0) return n;
        if ((unsigned long)n != len) return -EINVAL;
    }
    return 0;
}

/* The payload: waits until PID 1 has confined itself (EOF on go), takes its labels, loads its filter, then
 * execs. */
static __attribute__((noreturn)) void payload(long reaper, int go, int report_fd, const struct payload_plan *plan) {
    char byte;
    while (sys3(__NR_read, go, &byte, 1) == -EINTR) {
    }
    sys3(__NR_close, go, 0, 0);
    /* If PID 1 is gone, so is the sandbox. */
    sys3(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    if (sys3(__NR_getppid, 0, 0, 0) != reaper) die(SETUP_FAILED);
    if (plan->flags & FLAG_SETSID) sys3(__NR_setsid, 0, 0, 0);
    for (int i = 0; i < plan->holds; i++) sys3(__NR_close, plan->hold[i], 0, 0);
    int result[2] = {STAGE_EXEC, 0};
    long r = 0;
    if (plan->flags & FLAG_LSM) {
        /* (before the payload's own filter, which need not allow what this takes) */
        r = write_labels(plan, &result[0]);
        sys3(__NR_close, plan->proc_fd, 0, 0);
    }
    if (r == 0 && plan->ruleset_fd >= 0) {
        result[0] = STAGE_LANDLOCK;
        r = sys3(__NR_landlock_restrict_self, plan->ruleset_fd, 0, 0);
        sys3(__NR_close, plan->ruleset_fd, 0, 0);
    }
    if (r == 0 && plan->filter_fd >= 0) r = load_filter(plan->filter_fd, plan->notify_fd, plan->flags, &result[0]);
    if (r == 0) {
        unsigned long none = 0;
        sys6(__NR_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof none, 0, 0);
        result[0] = STAGE_EXEC;
        r = -exec_search(plan->file, plan->argv, plan->envp, (int)(plan->flags & FLAG_SEARCH));
    }
    result[1] = (int)-r;
    sys3(__NR_write, report_fd, result, sizeof result);
    die(EXEC_FAILED);
}

/* The kernel's struct sigaction (as proc.c's reset). */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

/* Every disposition back to the default: an ignored signal stays ignored across exec, and the payload must start
 * as lunas's exec starts it. (Blocked signals are queued for the signalfd whatever their disposition.) */
static void reset_dispositions(void) {
    struct kernel_sigaction dfl = {0, 0, 0, 0};
    for (long sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sys6(__NR_rt_sigaction, sig, (long)&dfl, 0, sizeof dfl.mask, 0, 0);
}

/* Only what the loop below needs; anything else kills this process (and so the sandbox). */
static long own_filter(void) {
#define ALLOW_NR(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, REAPER_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        ALLOW_NR(__NR_read),
        ALLOW_NR(__NR_write),
        ALLOW_NR(__NR_close),
        ALLOW_NR(__NR_close_range),
        ALLOW_NR(__NR_kill),
        ALLOW_NR(__NR_wait4),
        ALLOW_NR(__NR_exit_group),
        ALLOW_NR(__NR_exit),
        ALLOW_NR(__NR_rt_sigreturn),
        ALLOW_NR(__NR_restart_syscall),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
#undef ALLOW_NR
    struct sock_fprog prog = {.len = (unsigned short)(sizeof code / sizeof code[0]), .filter = code};
    return sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* No capability in any set, the bounding set emptied where this process still may (CAP_SETPCAP), no_new_privs,
 * the sandbox's Landlock ruleset (RULESET_FD, or -1) and the filter above. Returns 0 or the failing step's
 * negative errno, with *step naming it. */
static long confine(long ruleset_fd, const char **step) {
    for (long cap = 0; cap < 64; cap++)
        if (sys3(__NR_prctl, PR_CAPBSET_DROP, cap, 0) == -EINVAL /* past the last capability */) break;
    *step = "ambient";
    long r = sys6(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0);
    if (r < 0 && r != -EINVAL) return r; /* EINVAL: a kernel without ambient capabilities */
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct none[2] = {{0, 0, 0}, {0, 0, 0}};
    *step = "capset";
    if ((r = sys3(__NR_capset, &head, none, 0)) < 0) return r;
    *step = "no_new_privs";
    if ((r = sys6(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0)) < 0) return r;
    if (ruleset_fd >= 0) {
        *step = "landlock";
        r = sys3(__NR_landlock_restrict_self, ruleset_fd, 0, 0);
        sys3(__NR_close, ruleset_fd, 0, 0);
        if (r < 0) return r;
    }
    *step = "seccomp";
    return own_filter();
}

/* Closes every descriptor but keep_a, keep_b (either may be -1) and the held ones. */
static void close_all_but(long keep_a, long keep_b, const struct payload_plan *plan) {
    long keep[MAX_HOLD + 2];
    int n = 0;
    keep[n++] = keep_a;
    keep[n++] = keep_b;
    for (int i = 0; i < plan->holds; i++) keep[n++] = plan->hold[i];
    for (int i = 1; i < n; i++) /* a few numbers: insertion sort */
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            long t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    long from = 0;
    for (int i = 0; i < n; i++) {
        if (keep[i] < from) continue; /* -1, or the same descriptor twice */
        if (keep[i] > from) sys3(__NR_close_range, from, keep[i] - 1, 0);
        from = keep[i] + 1;
    }
    sys3(__NR_close_range, from, ~0U, 0);
}

__attribute__((noreturn, used)) void reaper_main(long *stack) {
    /* Not ptrace-able, /proc/1 not readable from inside: before anything else. */
    sys3(__NR_prctl, PR_SET_DUMPABLE, 0, 0);
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    if (argc < 9) die(SETUP_FAILED);
    long status_fd = optional_fd(argv[1]), err_fd = parse_number(argv[2]);
    struct payload_plan plan = {.flags = parse_number(argv[3]), .filter_fd = optional_fd(argv[4]),
                                .notify_fd = optional_fd(argv[5]), .proc_fd = -1, .ruleset_fd = -1, .envp = envp};
    if (status_fd < -1 || err_fd < 0 || plan.flags < 0 || plan.filter_fd < -1 || plan.notify_fd < -1 ||
        parse_hold(argv[6], &plan) < 0)
        die(SETUP_FAILED);
    long next = 7; /* the next positional argument */
    if (plan.flags & FLAG_LANDLOCK) {
        if (argc < next + 1 || (plan.ruleset_fd = parse_number(argv[next])) < 0) die(SETUP_FAILED);
        next++;
    }
    if (plan.flags & FLAG_LSM) {
        if (argc < next + 2) die(SETUP_FAILED);
        plan.proc_fd = parse_number(argv[next]);
        long count = parse_number(argv[next + 1]);
        if (plan.proc_fd < 0 || count < 1 || count > MAX_LABELS || argc < next + 2 + 3 * count + 2) die(SETUP_FAILED);
        next += 2;
        for (long i = 0; i < count; i++, next += 3)
            plan.labels[i] = (struct label){argv[next], argv[next + 1], argv[next + 2]};
        plan.label_count = (int)count;
    }
    if (argc < next + 2) die(SETUP_FAILED);
    plan.file = argv[next];
    plan.argv = argv + next + 1;
    if ((plan.flags & FLAG_LISTENER) && (plan.filter_fd < 0 || plan.notify_fd < 0)) die(SETUP_FAILED);

    long self = sys3(__NR_getpid, 0, 0, 0);
    long r;
    /* Without a pid namespace of its own (a time namespace alone), orphans must still come here. */
    if (self != 1 && (r = sys3(__NR_prctl, PR_SET_CHILD_SUBREAPER, 1, 0)) < 0) fail(err_fd, "reaper", r, "subreaper");
    unsigned long all = ~0UL;
    sys6(__NR_rt_sigprocmask, SIG_BLOCK, (long)&all, 0, sizeof all, 0, 0);
    reset_dispositions();
    long sigfd = sys6(__NR_signalfd4, -1, (long)&all, sizeof all, SFD_CLOEXEC, 0, 0);
    if (sigfd < 0) fail(err_fd, "reaper", sigfd, "signalfd4");
    /* None of these may reach the payload's program. */
    long own[] = {status_fd, err_fd, plan.filter_fd, plan.notify_fd, plan.proc_fd, plan.ruleset_fd};
    for (unsigned long i = 0; i < sizeof own / sizeof own[0]; i++)
        if (own[i] >= 0) sys3(__NR_fcntl, own[i], F_SETFD, FD_CLOEXEC);
    int exec_report[2], go[2];
    if ((r = sys3(__NR_pipe2, exec_report, O_CLOEXEC, 0)) < 0 || (r = sys3(__NR_pipe2, go, O_CLOEXEC, 0)) < 0)
        fail(err_fd, "reaper", r, "pipe2");

    /* A copy of this small program (fork): clone's argument order differs between architectures, but with no
     * stack and no tid pointers every argument but the flags is 0 on both. */
    long pid = sys6(__NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (pid == 0) {
        sys3(__NR_close, exec_report[0], 0, 0);
        sys3(__NR_close, go[1], 0, 0);
        payload(self, go[0], exec_report[1], &plan);
    }
    if (pid < 0) fail(err_fd, "reaper", pid, "clone payload");
    sys3(__NR_close, exec_report[1], 0, 0);
    sys3(__NR_close, go[0], 0, 0);
    /* (the payload's copy is its own; this process has no use for a procfs of lunas's) */
    if (plan.proc_fd >= 0) sys3(__NR_close, plan.proc_fd, 0, 0);

    const char *step = "";
    if ((r = confine(plan.ruleset_fd, &step)) < 0) {
        sys3(__NR_kill, pid, SIGKILL, 0);
        fail(err_fd, "reaper", r, step);
    }
    sys3(__NR_close, go[1], 0, 0); /* the payload may exec now */
    int failure[2];
    while ((r = sys3(__NR_read, exec_report[0], failure, sizeof failure)) == -EINTR) {
    }
    if (r == sizeof failure) {
        int st;
        sys6(__NR_wait4, pid, (long)&st, WALL, 0, 0, 0);
        if (failure[0] == STAGE_SECCOMP) report(err_fd, "seccomp", failure[1], "load the payload's filter");
        else if (failure[0] == STAGE_LISTENER) report(err_fd, "seccomp", failure[1], "send the listener");
        else if (failure[0] == STAGE_LANDLOCK) report(err_fd, "landlock", failure[1], "restrict the payload");
        else if (failure[0] >= STAGE_LSM && failure[0] < STAGE_LSM + plan.label_count)
            report(err_fd, "lsm", failure[1], plan.labels[failure[0] - STAGE_LSM].what);
        else report(err_fd, "exec", failure[1], plan.file);
        die(SETUP_FAILED);
    }
    /* The payload's copies are its own; ours go now. */
    if (plan.filter_fd >= 0) sys3(__NR_close, plan.filter_fd, 0, 0);
    if (plan.notify_fd >= 0) sys3(__NR_close, plan.notify_fd, 0, 0);
    /* The payload runs. Its pid goes first on the status channel, before the error pipe closes (lunas reads
     * them in that order); then this process lets go of everything but the two descriptors it still uses:
     * holding the caller's stdio would keep a pipe reader waiting for a payload that redirected its own. */
    if (status_fd >= 0) {
        int payload_pid = (int)pid;
        sys3(__NR_write, status_fd, &payload_pid, sizeof payload_pid);
    }
    close_all_but(status_fd, sigfd, &plan);

    int payload_code = -1; /* (an exit status, 0 to 255, once the payload has ended) */
    for (;;) {
        unsigned char info[SIGNALFD_INFO_SIZE];
        long n = sys3(__NR_read, sigfd, info, sizeof info);
        if (n == -EINTR) continue;
        if (n != SIGNALFD_INFO_SIZE) die(SETUP_FAILED);
        unsigned int signo = *(unsigned int *)info; /* ssi_signo is the first field */
        if (signo != SIGCHLD) {
            /* (once the payload is gone its pid may be another process's: nothing is forwarded then) */
            if (payload_code < 0) sys3(__NR_kill, pid, signo, 0);
            continue;
        }
        int st;
        long w;
        while ((w = sys6(__NR_wait4, -1, (long)&st, WNOHANG | WALL, 0, 0, 0)) > 0) {
            if (w != pid) continue;
            if (status_fd >= 0) sys3(__NR_write, status_fd, &st, sizeof st);
            payload_code = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f);
            if (!(plan.flags & FLAG_LINGER)) die(payload_code);
        }
        /* Lingering: the last process of the sandbox is gone. */
        if (w == -ECHILD && payload_code >= 0) die(payload_code);
    }
}
