/* reaper.c: PID 1 of a sandbox, as a tiny freestanding program (no libc, a few pages).
 *
 * Usage (by lunas only): reaper PAYLOAD_PID STATUS_FD
 * lunas's sandbox child sets up the namespaces, starts the payload, then execs this program from a sealed memfd:
 * that gives the parent's memory back at once (the child shared it vfork-style) instead of keeping a copy-on-write
 * image of lunas alive for the payload's whole life, and /proc/1/exe is a sealed memfd, never lunas's binary
 * (CVE-2019-5736).
 *
 * It forwards every signal it receives to the payload, reaps every child (orphans included), and when the payload
 * ends writes its raw wait status (4 bytes) to STATUS_FD and exits with its code, or 128+N for signal N.
 * Every signal was blocked before the exec and stays blocked (the mask survives exec), so none is lost. */
#include <asm/unistd.h>
#include <linux/prctl.h>
#include <linux/signal.h>
#include <stddef.h>

#define SFD_CLOEXEC 02000000
#define WNOHANG 1
#define EINTR 4
#define SIGCHLD 17
#define SIGNALFD_INFO_SIZE 128

#if defined(__x86_64__)
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

static long parse_number(const char *s) {
    long v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 0x7fffffff / 10) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

__attribute__((noreturn, used)) void reaper_main(long *stack) {
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    /* Not ptrace-able, /proc/1 not readable from inside: before anything else. */
    sys3(__NR_prctl, PR_SET_DUMPABLE, 0, 0);
    if (argc != 3) die(125);
    long payload = parse_number(argv[1]);
    long status_fd = argv[2][0] == '-' && !argv[2][1] ? -1 : parse_number(argv[2]);
    if (payload <= 0 || (status_fd < 0 && argv[2][0] != '-')) die(125);

    unsigned long all = ~0UL;
    sys6(__NR_rt_sigprocmask, SIG_BLOCK, (long)&all, 0, sizeof all, 0, 0);
    long sigfd = sys6(__NR_signalfd4, -1, (long)&all, sizeof all, SFD_CLOEXEC, 0, 0);
    if (sigfd < 0) die(125);

    for (;;) {
        unsigned char info[SIGNALFD_INFO_SIZE];
        long n = sys3(__NR_read, sigfd, info, sizeof info);
        if (n == -EINTR) continue;
        if (n != SIGNALFD_INFO_SIZE) die(125);
        unsigned int signo = *(unsigned int *)info; /* ssi_signo is the first field */
        if (signo != SIGCHLD) {
            sys3(__NR_kill, payload, signo, 0);
            continue;
        }
        int st;
        long w;
        while ((w = sys6(__NR_wait4, -1, (long)&st, WNOHANG, 0, 0, 0)) > 0) {
            if (w != payload) continue;
            if (status_fd >= 0) sys3(__NR_write, status_fd, &st, sizeof st);
            if ((st & 0x7f) == 0) die((st >> 8) & 0xff);
            die(128 + (st & 0x7f));
        }
    }
}
