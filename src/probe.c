/* lunas-probe (escape-probe in the test suite): ONE attempt to get out of a sandbox per invocation, for the escape
 * battery of `lunas audit` (lua/lunas/audit.lua) and tests/security_spec.lua. Installed beside lunas
 * (PREFIX/libexec/lunas/lunas-probe) and linked statically, so that it runs inside any tree or image.
 *
 *   lunas-probe ATTEMPT [ARGS...]      lunas-probe list      (the attempt names, one a line)
 *
 * Outcome: exactly one line on stdout.
 *   "ok[ DETAIL]"     the operation went through (an escape, or the forbidden action succeeded)   exit 0
 *   "ENAME[ DETAIL]"  it failed with errno ENAME ("E<number>" for a name not in the table)         exit 1
 *                     (also "EOF" and "EMPTY" for read and list: nothing there)
 *   usage errors      a message on stderr, nothing on stdout                                     exit 2
 * A seccomp filter that kills shows up as the signal (SIGSYS) and no output: the line is written only after the
 * attempt, with write(2) and no stdio buffer, so a line is never half-written nor lost in a buffer.
 *
 * Every attempt is safe on the real host, even run there as root by mistake: nothing reboots, loads a kernel or a
 * module, sets the clock, or changes the host's hostname or mounts. Where the permission check is the whole
 * point (reboot, kexec, modules, swap, clock, I/O ports) the arguments are deliberately invalid in a way the
 * kernel only notices AFTER the capability check: EPERM means "denied", the other errno means "would have been
 * allowed", and the caller compares the errno. Where the real operation is the point (mount, umount, pivot_root,
 * hostname), a process that could reach the host's initial namespaces does it in a private copy of its
 * namespace instead (host_safe_ns below); any other process does it in place, exactly as asked.
 * Files that already exist are never truncated or overwritten: "write" proves write access by opening.
 *
 * The other attempts that touch something:
 *   - sockets reach only the address given (io-uring-connect, connect, unix-connect, abstract-connect), or the
 *     sockets and FIFOs found under the directory given (walk-ipc: connected to or opened, closed at once,
 *     nothing written); vsock makes the socket and nothing else, so no hypervisor or other VM hears of it.
 *   - files for the setuid and lease checks (chmod-suid, create-suid, setlease) are made in the DIR given and
 *     removed at once; they are empty. create leaves DIR/created-by-probe for the caller to remove.
 *   - fchmod-fd puts the descriptor's old mode back; personality puts the old persona back; tiocsetd asks for
 *     the line discipline the terminal already has (a no-op); modify-ldt only reads.
 *   - sysctl-rewrite writes a file of /proc/sys only, and only the bytes just read from it: the value stays.
 *   - fifo-open writes one byte, and only into a FIFO.
 *   - ptrace-seize stops its target for a moment (PTRACE_INTERRUPT) to detach; exiting detaches too.
 *
 * Two commands are fixtures, not attempts: the audit runs them OUTSIDE the sandbox, in its caller's namespaces.
 *   - serve-tcp listens on 127.0.0.1 only, on a port the kernel picks, prints "ok port=N" and accepts and closes
 *     connections until killed; serve-abstract does the same on an abstract unix socket ("ok").
 */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/magic.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/tiocl.h>

#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif
#ifndef KEY_SPEC_PROCESS_KEYRING
#define KEY_SPEC_PROCESS_KEYRING -2
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef ST_NOSYMFOLLOW
#define ST_NOSYMFOLLOW 0x2000
#endif
#ifndef KEYCTL_GET_KEYRING_ID
#define KEYCTL_GET_KEYRING_ID 0
#endif
#ifndef KEY_SPEC_SESSION_KEYRING
#define KEY_SPEC_SESSION_KEYRING -3
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef N_TTY
#define N_TTY 0
#endif
#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
/* Calls newer than these headers, by number (the same on every architecture from 424 on). */
#define NR_FCHMODAT2 452 /* Linux 6.6 */
#define NR_OPEN_TREE_ATTR 467 /* Linux 6.15 */
#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
#endif
/* io_uring opcodes by number, as the ABI fixes them: the enum of <linux/io_uring.h> cannot be tested with #ifndef. */
#define URING_OP_CONNECT 16
#define URING_OP_SOCKET 45 /* Linux 5.19 */
#define X32_SYSCALL_BIT 0x40000000L
#define I386_NR_GETPID 20
#define X86_64_NR_GETPID 39
/* The inode number of the initial user namespace: fixed by the kernel (PROC_USER_INIT_INO) since Linux 3.8. */
#define USER_NS_INIT_INO 0xEFFFFFFDU

/* struct clone_args as of its first version (CLONE_ARGS_SIZE_VER0, 64 bytes): defined here rather than taken from
 * <linux/sched.h>, whose CLONE_* macros collide with glibc's <sched.h>. */
struct probe_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

#define UNUSED __attribute__((unused))
#define FMT(a, b) __attribute__((format(printf, a, b)))

/* What an attempt returns: PROBE_OK (it printed "ok ..."), PROBE_PRINTED (it printed its own failure line) or
 * -errno (main prints the errno's name). */
enum { PROBE_OK = 0, PROBE_PRINTED = 1 };

struct attempt {
    const char *name;
    int min_args, max_args; /* max_args < 0: any number */
    int (*run)(char **args);
    const char *usage;
};

static const struct attempt *current; /* for usage errors */

/* ---------------------------------------------------------------------------------------------------------------
 * Output
 */

#define E(x) {x, #x}
static const struct {
    int value;
    const char *name;
} errno_names[] = {
    E(EPERM),        E(ENOENT),          E(ESRCH),        E(EINTR),          E(EIO),
    E(ENXIO),        E(E2BIG),           E(ENOEXEC),      E(EBADF),          E(ECHILD),
    E(EAGAIN),       E(ENOMEM),          E(EACCES),       E(EFAULT),         E(ENOTBLK),
    E(EBUSY),        E(EEXIST),          E(EXDEV),        E(ENODEV),         E(ENOTDIR),
    E(EISDIR),       E(EINVAL),          E(ENFILE),       E(EMFILE),         E(ENOTTY),
    E(ETXTBSY),      E(EFBIG),           E(ENOSPC),       E(ESPIPE),         E(EROFS),
    E(EMLINK),       E(EPIPE),           E(EDOM),         E(ERANGE),         E(EDEADLK),
    E(ENAMETOOLONG), E(ENOLCK),          E(ENOSYS),       E(ENOTEMPTY),      E(ELOOP),
    E(ENOMSG),       E(EIDRM),           E(ENOSTR),       E(ENODATA),        E(ETIME),
    E(ENOSR),        E(EREMOTE),         E(ENOLINK),      E(EPROTO),         E(EBADMSG),
    E(EOVERFLOW),    E(ENOTUNIQ),        E(EBADFD),       E(EREMCHG),        E(EILSEQ),
    E(ERESTART),     E(EUSERS),          E(ENOTSOCK),     E(EDESTADDRREQ),   E(EMSGSIZE),
    E(EPROTOTYPE),   E(ENOPROTOOPT),     E(EPROTONOSUPPORT), E(ESOCKTNOSUPPORT), E(EOPNOTSUPP),
    E(EPFNOSUPPORT), E(EAFNOSUPPORT),    E(EADDRINUSE),   E(EADDRNOTAVAIL),  E(ENETDOWN),
    E(ENETUNREACH),  E(ENETRESET),       E(ECONNABORTED), E(ECONNRESET),     E(ENOBUFS),
    E(EISCONN),      E(ENOTCONN),        E(ESHUTDOWN),    E(ETOOMANYREFS),   E(ETIMEDOUT),
    E(ECONNREFUSED), E(EHOSTDOWN),       E(EHOSTUNREACH), E(EALREADY),       E(EINPROGRESS),
    E(ESTALE),       E(EUCLEAN),         E(EREMOTEIO),    E(EDQUOT),         E(ENOMEDIUM),
    E(EMEDIUMTYPE),  E(ECANCELED),       E(ENOKEY),       E(EKEYEXPIRED),    E(EKEYREVOKED),
    E(EKEYREJECTED), E(EOWNERDEAD),      E(ENOTRECOVERABLE), E(ERFKILL),     E(EHWPOISON),
    E(ENOPKG),       E(ECOMM),
};
#undef E

/* "EPERM", or "E<number>" for an errno missing from the table (buf holds at least 16 bytes). */
static const char *errno_name(int err, char *buf, size_t size) {
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
        if (errno_names[i].value == err) return errno_names[i].name;
    snprintf(buf, size, "E%d", err);
    return buf;
}

/* One line, one write(2): STATUS[ DETAIL]\n. The detail becomes printable ASCII so the caller reads one line. */
static void emit(const char *status, const char *detail) {
    char line[4200];
    size_t n = 0, cap = sizeof line - 1;
    for (const char *p = status; *p && n < cap; p++) line[n++] = *p;
    if (detail && *detail && n < cap) {
        line[n++] = ' ';
        for (const unsigned char *p = (const unsigned char *)detail; *p && n < cap; p++)
            line[n++] = (char)(*p >= 0x20 && *p < 0x7f ? *p : '?');
    }
    line[n++] = '\n';
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDOUT_FILENO, line + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break; /* nobody listens: nothing else to tell */
        off += (size_t)w;
    }
}

static void vemit(const char *status, const char *fmt, va_list ap) {
    char detail[4096] = "";
    if (fmt) vsnprintf(detail, sizeof detail, fmt, ap);
    emit(status, detail);
}

/* "ok[ DETAIL]": the attempt went through. */
FMT(1, 2) static int say_ok(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vemit("ok", fmt, ap);
    va_end(ap);
    return PROBE_OK;
}

/* "ENAME DETAIL": a failure that carries a detail (main prints the bare ones). */
FMT(2, 3) static int say_fail(int err, const char *fmt, ...) {
    char buf[16];
    va_list ap;
    va_start(ap, fmt);
    vemit(errno_name(err, buf, sizeof buf), fmt, ap);
    va_end(ap);
    return PROBE_PRINTED;
}

/* A failure that is not an errno ("EOF", "EMPTY", "FRESH", "NOBIT", "NONE"), with an optional detail. */
FMT(2, 3) static int say_status(const char *status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vemit(status, fmt, ap);
    va_end(ap);
    return PROBE_PRINTED;
}

static void usage_line(FILE *f, const struct attempt *a) {
    fprintf(f, "  escape-probe %s%s%s\n", a->name, a->usage[0] ? " " : "", a->usage);
}

__attribute__((noreturn)) static void bad_arg(const char *what, const char *arg) {
    fprintf(stderr, "escape-probe %s: %s '%s'\n", current->name, what, arg);
    usage_line(stderr, current);
    exit(2);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers
 */

static long parse_long(const char *s, long min, long max, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || end == s || *end || v < min || v > max) bad_arg(what, s);
    return v;
}

static pid_t arg_pid(const char *s) { return (pid_t)parse_long(s, 1, INT_MAX, "not a pid:"); }
static int arg_fd(const char *s) { return (int)parse_long(s, 0, INT_MAX, "not a file descriptor:"); }

/* A mode in octal, whether or not it starts with 0 ("4755" is 04755, not decimal). */
static mode_t arg_mode(const char *s) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 8);
    if (errno || end == s || *end || *s == '-' || v > 07777) bad_arg("not an octal mode:", s);
    return (mode_t)v;
}

/* The index of WORD in NAMES; a usage error when it is none of them. */
static int arg_variant(const char *word, const char *const *names, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strcmp(word, names[i]) == 0) return (int)i;
    bad_arg("unknown variant:", word);
}

/* "DIR/NAME" into path; a usage error when it does not fit. */
static void dir_path(char *path, size_t size, const char *dir, const char *name) {
    if ((size_t)snprintf(path, size, "%s/%s", dir, name) >= size) bad_arg("path too long:", dir);
}

/* The target of /proc/self/fd/FD, or "?" when /proc cannot tell. */
static const char *fd_target(int fd, char *buf, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, size - 1);
    if (n < 0) return "?";
    buf[n] = '\0';
    return buf;
}

static int caps_get(struct __user_cap_data_struct data[2]) {
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    return syscall(SYS_capget, &head, data) < 0 ? -errno : 0;
}

static int caps_set(struct __user_cap_data_struct data[2]) {
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    return syscall(SYS_capset, &head, data) < 0 ? -errno : 0;
}

/* The effective set as /proc/self/status prints CapEff (capget needs no /proc); all ones if capget fails. */
static unsigned long long cap_effective(void) {
    struct __user_cap_data_struct d[2];
    if (caps_get(d) < 0) return ~0ULL;
    return (unsigned long long)d[1].effective << 32 | d[0].effective;
}

/* Could this process change the host's initial namespaces (mounts, hostname)? Only from the initial user namespace
 * with CAP_SYS_ADMIN in effect. When /proc cannot tell which user namespace this is, assume the initial one. */
static int could_touch_host(void) {
    struct stat st;
    if (stat("/proc/self/ns/user", &st) == 0 && st.st_ino != USER_NS_INIT_INO) return 0;
    return ((cap_effective() >> CAP_SYS_ADMIN) & 1) != 0;
}

/* Before an attempt that changes a namespace (mount, umount, pivot_root, sethostname): a process that could reach
 * the host's initial namespaces acts in a private copy, so a mistaken run as root on the host changes nothing
 * there. The copy is owned by the same user namespace, so the capability checks are the ones the original would
 * meet; mounts are made private in it first, or an unmount would propagate back to the peers outside.
 * Everything else acts in place, where the answer is exact: such a process cannot change the initial namespaces
 * (they belong to the initial user namespace, where it has no CAP_SYS_ADMIN). */
static int host_safe_ns(int nstype) {
    if (!could_touch_host()) return 0;
    if (unshare(nstype) < 0) return say_fail(errno, "unshare");
    if (nstype == CLONE_NEWNS && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return say_fail(errno, "make-private");
    return 0;
}

/* Opening a watchdog device arms it, and closing it without the magic character can reboot the machine: the
 * attempts that open a path given on the command line refuse those (a usage error, exit status 2). */
static void refuse_watchdog(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISCHR(st.st_mode)) return;
    unsigned maj = major(st.st_rdev), min = minor(st.st_rdev);
    int watchdog = maj == 10 && min == 130; /* the misc /dev/watchdog */
    char link[96], target[PATH_MAX];
    snprintf(link, sizeof link, "/sys/dev/char/%u:%u/subsystem", maj, min);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
        target[n] = '\0';
        const char *base = strrchr(target, '/');
        if (base && strcmp(base, "/watchdog") == 0) watchdog = 1; /* /dev/watchdogN */
    }
    if (watchdog) bad_arg("refusing to open a watchdog device:", path);
}

/* open(2) for a path given on the command line: never a watchdog; O_NONBLOCK so a FIFO or a terminal cannot hang
 * the probe, O_NOCTTY so a terminal does not become the controlling one. */
static int open_arg(const char *path, int flags, mode_t mode) {
    refuse_watchdog(path);
    return open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Processes
 */

static int try_kill(char **a) {
    if (kill(arg_pid(a[0]), 0) < 0) return -errno; /* signal 0: the permission check alone */
    return say_ok(NULL);
}

static int try_ptrace(char **a) {
    /* SEIZE does not stop the tracee, and the kernel detaches when the tracer exits: nothing to undo. */
    if (ptrace(PTRACE_SEIZE, arg_pid(a[0]), NULL, NULL) < 0) return -errno;
    return say_ok(NULL);
}

/* Meant for a tight race against a sandbox's PID 1 as it starts, so the ptrace call comes first: no output, no
 * allocation before it (reading the pid is strtol alone). */
static int try_ptrace_seize(char **a) {
    pid_t pid = arg_pid(a[0]);
    if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0) return -errno;
    /* Detach cleanly: PTRACE_DETACH wants the tracee stopped, so interrupt it and give it a second to stop (it may
     * sit in an uninterruptible sleep). Failing that, exiting detaches as well, and the kernel drops the pending
     * stop then: the target goes on either way. */
    if (ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) == 0) {
        for (int i = 0; i < 100; i++) {
            int status;
            pid_t w = waitpid(pid, &status, __WALL | WNOHANG);
            if (w == pid) {
                /* A signal-delivery stop (no event in the high bits) may come first: hand its signal back, or
                 * detaching would swallow it. Our interrupt shows as PTRACE_EVENT_STOP and carries none. */
                long sig = WIFSTOPPED(status) && (status >> 16) == 0 ? WSTOPSIG(status) : 0;
                if (WIFSTOPPED(status)) ptrace(PTRACE_DETACH, pid, NULL, (void *)sig);
                break;
            }
            if (w < 0 && errno != EINTR) break;
            struct timespec t = {.tv_nsec = 10000000L};
            nanosleep(&t, NULL);
        }
    }
    return say_ok(NULL);
}

static int try_proc_pid(char **a) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)arg_pid(a[0]));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return -errno;
    buf[n] = '\0';
    /* "Name:\tinit\n...": the name tells whose process it is */
    char *name = strncmp(buf, "Name:", 5) == 0 ? buf + 5 : buf;
    name += strspn(name, " \t");
    name[strcspn(name, "\n")] = '\0';
    return say_ok("name=%s", name);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Mounts (see host_safe_ns)
 */

static int try_mount(char **a) {
    if (host_safe_ns(CLONE_NEWNS)) return PROBE_PRINTED;
    if (mount("none", a[0], "tmpfs", 0, NULL) < 0) return -errno;
    /* Leave the sandbox as it was for the next attempt (a private copy simply goes away with the process). */
    if (umount2(a[0], MNT_DETACH) < 0) return say_ok("mounted, not undone: %s", strerror(errno));
    return say_ok(NULL);
}

static int do_umount(const char *dir, int flags) {
    if (host_safe_ns(CLONE_NEWNS)) return PROBE_PRINTED;
    if (umount2(dir, flags) < 0) return -errno;
    return say_ok(NULL);
}

static int try_umount(char **a) { return do_umount(a[0], 0); }
static int try_umount_detach(char **a) { return do_umount(a[0], MNT_DETACH); }

static int try_remount_rw(char **a) {
    if (host_safe_ns(CLONE_NEWNS)) return PROBE_PRINTED;
    /* A bind remount sets all of nosuid, nodev, noexec and nosymfollow at once: keep the ones the mount has, so
     * that only read-only is cleared (a locked nosuid would fail the remount for the wrong reason). Leaving the
     * atime flags out keeps them as they are. */
    struct statvfs sv;
    if (statvfs(a[0], &sv) < 0) return -errno;
    unsigned long flags = MS_REMOUNT | MS_BIND;
    if (sv.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOSYMFOLLOW) flags |= MS_NOSYMFOLLOW;
    if (mount(NULL, a[0], NULL, flags, NULL) < 0) return -errno;
    return say_ok(NULL);
}

static int try_setattr_rw(char **a) {
    if (host_safe_ns(CLONE_NEWNS)) return PROBE_PRINTED;
    int fd = open_tree(AT_FDCWD, a[0], OPEN_TREE_CLOEXEC); /* no OPEN_TREE_CLONE: the mount itself */
    if (fd < 0) return -errno;
    struct mount_attr attr = {.attr_clr = MOUNT_ATTR_RDONLY};
    if (mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) return -errno;
    return say_ok(NULL);
}

static int try_fsopen(char **a UNUSED) {
    /* A file system context only: nothing is mounted anywhere. */
    int fd = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fd < 0) return -errno;
    return say_ok(NULL);
}

static int try_open_tree(char **a) {
    /* A detached copy of the tree: attached nowhere, gone with the process. */
    int fd = open_tree(AT_FDCWD, a[0], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0) return -errno;
    return say_ok(NULL);
}

static int try_open_tree_attr(char **a UNUSED) {
    /* No descriptor (-1) and an empty path without AT_EMPTY_PATH: nothing can be opened. A filter answers EPERM;
     * a kernel that got the call answers EBADF or ENOENT, or ENOSYS before 6.15. */
    long fd = syscall(NR_OPEN_TREE_ATTR, -1, "", 0U, NULL, (size_t)0);
    if (fd < 0) return -errno;
    close((int)fd);
    return say_ok(NULL);
}

static int try_pivot_root(char **a) {
    if (host_safe_ns(CLONE_NEWNS)) return PROBE_PRINTED;
    if (chdir(a[0]) < 0) return -errno;
    /* glibc 2.36 has no pivot_root wrapper. ".", ".": the old root is stacked on the new one. */
    if (syscall(SYS_pivot_root, ".", ".") < 0) return -errno;
    return say_ok(NULL);
}

static int try_unshare_mount(char **a UNUSED) {
    if (unshare(CLONE_NEWNS) < 0) return -errno;
    return say_ok(NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Root directory, working directory, file descriptors
 */

static int try_chroot(char **a) {
    if (chroot(a[0]) < 0) return -errno;
    return say_ok(NULL);
}

/* The classic break-out: chroot into a subdirectory without entering it, so the working directory is left outside
 * the new root, where ".." is not stopped at the root; climb, and make the top the root. MARKER is an absolute
 * path that exists only outside the sandbox. Where /tmp is not writable, an existing directory does as well. */
static int try_chroot_escape(char **a) {
    char made[] = "/tmp/.probe-chroot-XXXXXX";
    const char *inner = NULL;
    int tmp = -1;
    if (mkdtemp(made)) {
        inner = made;
        tmp = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC); /* to remove it from inside the new root */
    } else {
        static const char *const existing[] = {"/dev", "/proc", "/etc", "/usr", "/tmp"};
        struct stat st;
        for (size_t i = 0; i < sizeof existing / sizeof existing[0] && !inner; i++)
            if (stat(existing[i], &st) == 0 && S_ISDIR(st.st_mode)) inner = existing[i];
        if (!inner) return -ENOENT;
    }
    int err = 0;
    if (chdir("/") < 0 || chroot(inner) < 0) err = errno;
    for (int i = 0; i < 64 && !err; i++)
        if (chdir("..") < 0) err = errno;
    if (!err && chroot(".") < 0) err = errno;
    if (!err && access(a[0], F_OK) < 0) err = errno;
    if (inner == made && tmp >= 0 && unlinkat(tmp, made + strlen("/tmp/"), AT_REMOVEDIR) < 0 && !err)
        return say_fail(errno, "cleanup");
    if (err) return -err;
    return say_ok(NULL);
}

/* The first descriptor above 2 this process was given (other than the one listing them): a leak from outside. */
static int try_fds(char **a UNUSED) {
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return -errno;
    char buf[4096];
    int best = -1;
    ssize_t n;
    while ((n = getdents64(dir, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            char *end;
            long fd = strtol(d->d_name, &end, 10);
            if (end == d->d_name || *end || fd <= 2 || fd == dir || fd > INT_MAX) continue;
            if (best < 0 || fd < best) best = (int)fd;
        }
    }
    if (n < 0) return -errno;
    if (best < 0) return -EBADF;
    char target[PATH_MAX];
    return say_ok("%d:%s", best, fd_target(best, target, sizeof target));
}

static int try_read_fd(char **a) {
    int fd = arg_fd(a[0]);
    /* A descriptor is shared with whoever leaked it: wait for data with poll rather than switch it to
     * non-blocking (that flag would change for them too). */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 1000);
    if (r < 0) return -errno;
    if (r == 0) return -EAGAIN;
    if (p.revents & POLLNVAL) return -EBADF;
    char buf[65];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return -errno;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0') buf[i] = '?';
    return say_ok("%s", buf);
}

/* A working directory left outside the sandbox's root: climb from it and look for MARKER, a relative path such as
 * "tmp/host-marker" that exists only outside. */
static int try_cwd(char **a) {
    char before[PATH_MAX] = "?", after[PATH_MAX] = "?";
    /* The raw system call: it names an unreachable directory "(unreachable)/..." where glibc reports ENOENT. */
    if (syscall(SYS_getcwd, before, sizeof before) < 0) snprintf(before, sizeof before, "?");
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0) return -errno;
    if (access(a[0], F_OK) < 0) return -errno;
    if (syscall(SYS_getcwd, after, sizeof after) < 0) snprintf(after, sizeof after, "?");
    return say_ok("cwd=%s top=%s", before, after);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Terminals
 */

static int try_tiocsti(char **a) {
    char c = 'x';
    if (ioctl(arg_fd(a[0]), TIOCSTI, &c) < 0) return -errno;
    return say_ok(NULL);
}

/* The request number with a bit above 32 set: the kernel takes an unsigned int and never sees it, a seccomp
 * filter that compares the whole 64-bit register does (CVE-2019-10063). */
static int try_tiocsti_high(char **a) {
    char c = 'x';
    if (syscall(SYS_ioctl, arg_fd(a[0]), (unsigned long)TIOCSTI | (1UL << 32), &c) < 0) return -errno;
    return say_ok(NULL);
}

static int try_tioclinux(char **a) {
    char sub = TIOCL_GETSHIFTSTATE; /* a read-only subcommand */
    if (ioctl(arg_fd(a[0]), TIOCLINUX, &sub) < 0) return -errno;
    return say_ok(NULL);
}

static int try_tioclinux_high(char **a) {
    char sub = TIOCL_GETSHIFTSTATE;
    if (syscall(SYS_ioctl, arg_fd(a[0]), (unsigned long)TIOCLINUX | (1UL << 32), &sub) < 0) return -errno;
    return say_ok(NULL);
}

/* TIOCSETD with the line discipline the terminal already has (N_TTY where TIOCGETD cannot tell): the kernel finds
 * nothing to change, after the request has passed every check on the way. HIGH: a bit above 32 in the request, as
 * for tiocsti-high. */
static int tiocsetd(const char *fd_arg, unsigned long high) {
    int fd = arg_fd(fd_arg), ldisc = N_TTY;
    if (ioctl(fd, TIOCGETD, &ldisc) < 0) ldisc = N_TTY;
    long r = high ? syscall(SYS_ioctl, fd, (unsigned long)TIOCSETD | high, &ldisc) : ioctl(fd, TIOCSETD, &ldisc);
    if (r < 0) return -errno;
    return say_ok(NULL);
}

static int try_tiocsetd(char **a) { return tiocsetd(a[0], 0); }
static int try_tiocsetd_high(char **a) { return tiocsetd(a[0], 1UL << 32); }

/* ---------------------------------------------------------------------------------------------------------------
 * Files
 */

static int try_read(char **a) {
    int fd = open_arg(a[0], O_RDONLY, 0);
    if (fd < 0) return -errno;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) return -errno;
    if (n == 0) return say_status("EOF", NULL); /* a file masked with /dev/null reads nothing */
    return say_ok("%zd bytes", n);
}

static int try_list(char **a) {
    DIR *d = opendir(a[0]);
    if (!d) return -errno;
    long entries = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) entries++;
    int err = errno;
    closedir(d);
    if (err) return -err;
    if (entries == 0) return say_status("EMPTY", NULL);
    return say_ok("%ld entries", entries);
}

/* A new file is created, written and removed. An existing file is only opened for writing: that open is where
 * read-only mounts, Landlock, modes and immutable flags say no, and writing would destroy whatever it holds (a real
 * file of the host, if the sandbox leaks one) or set off what a write to it does (/proc/sysrq-trigger). */
static int try_write(char **a) {
    int fd = open_arg(a[0], O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
        static const char text[] = "probe\n";
        ssize_t w = write(fd, text, sizeof text - 1);
        int err = w < 0 ? errno : w != (ssize_t)(sizeof text - 1) ? EIO : 0;
        close(fd);
        if (unlink(a[0]) < 0 && !err) return say_fail(errno, "written, not removed");
        if (err) return -err;
        return say_ok("created");
    }
    if (errno != EEXIST) return -errno;
    fd = open_arg(a[0], O_WRONLY, 0);
    if (fd < 0) return -errno;
    return say_ok("opened");
}

static int try_symlink(char **a) {
    int fd = open_arg(a[0], O_RDONLY, 0); /* following links */
    if (fd < 0) return -errno;
    char c, target[PATH_MAX];
    if (read(fd, &c, 1) < 0 && errno != EISDIR && errno != EAGAIN) return -errno; /* a directory was reached too */
    return say_ok("%s", fd_target(fd, target, sizeof target));
}

static int try_cgroup_write(char **a) {
    int fd = open_arg(a[0], O_WRONLY, 0);
    if (fd < 0) return -errno;
    size_t len = strlen(a[1]);
    ssize_t w = write(fd, a[1], len);
    if (w < 0) return -errno;
    if ((size_t)w != len) return -EIO;
    return say_ok(NULL);
}

/* The setuid or setgid bit set by the owner of a file: the bit is the point, so it goes on an empty file the probe
 * has just made in DIR (mode 0600, no bit), which is removed at once. Each variant is its own system call, as a
 * filter sees it (glibc would turn chmod into fchmodat on some ports). Set and kept: "ok mode=...". Call refused:
 * its errno. Call accepted but the bit dropped (as the kernel drops S_ISGID for a group one is not in): "NOBIT". */
static int try_chmod_suid(char **a) {
    static const char *const variants[] = {"chmod", "fchmod", "fchmodat", "fchmodat2", "sgid-chmod"};
    int v = arg_variant(a[0], variants, sizeof variants / sizeof variants[0]);
    mode_t mode = v == 4 ? 02755 : 04755, bit = v == 4 ? S_ISGID : S_ISUID;
    char path[PATH_MAX];
    dir_path(path, sizeof path, a[1], "suid-probe.XXXXXX");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) return say_fail(errno, "create");
    long r;
    switch (v) {
    case 0: r = syscall(SYS_chmod, path, mode); break;
    case 1: r = syscall(SYS_fchmod, fd, mode); break;
    case 2: r = syscall(SYS_fchmodat, AT_FDCWD, path, mode); break;
    case 3: r = syscall(NR_FCHMODAT2, AT_FDCWD, path, mode, 0); break;
    default: r = syscall(SYS_chmod, path, mode); break; /* sgid-chmod */
    }
    int err = r < 0 ? errno : 0;
    struct stat st;
    if (!err && fstat(fd, &st) < 0) err = errno;
    close(fd);
    if (unlink(path) < 0) return say_fail(errno, "not removed: %s", path);
    if (err) return -err;
    if (st.st_mode & bit) return say_ok("mode=%o", (unsigned)(st.st_mode & 07777));
    return say_status("NOBIT", "mode=%o", (unsigned)(st.st_mode & 07777));
}

/* A file (or directory) created with the setuid (setgid) bit in its creation mode, each variant its own system
 * call as a filter sees it; umask 0 so that only the kernel (or a filter) can drop the bit. The name is unique by
 * the pid; what was created goes at once. "ok mode=..." with the bit, "NOBIT mode=..." without, or the errno of
 * the call. Linux never takes S_ISGID from mkdir's mode (a directory inherits it from its parent): mkdir-sgid
 * reaching the kernel is NOBIT. */
static int try_create_suid(char **a) {
    enum { OPEN, OPENAT, CREAT, MKNOD, MKDIR_SGID, TMPFILE };
    static const char *const variants[] = {"open", "openat", "creat", "mknod", "mkdir-sgid", "tmpfile"};
    int v = arg_variant(a[0], variants, sizeof variants / sizeof variants[0]);
    char name[64], path[PATH_MAX];
    snprintf(name, sizeof name, "suid-create.%d", (int)getpid());
    dir_path(path, sizeof path, a[1], name);
    mode_t bit = v == MKDIR_SGID ? S_ISGID : S_ISUID;
    umask(0);
    struct stat st;
    /* creat has no O_EXCL: a left-over of that name (an earlier run with the same pid) would be truncated. */
    if (v == CREAT && lstat(path, &st) == 0) return say_fail(EEXIST, "exists: %s", path);
    const int flags = O_CREAT | O_WRONLY | O_EXCL | O_CLOEXEC;
    long r;
    switch (v) {
    case OPEN: r = syscall(SYS_open, path, flags, 04755); break;
    case OPENAT: r = syscall(SYS_openat, AT_FDCWD, path, flags, 04755); break;
    case CREAT: r = syscall(SYS_creat, path, 04755); break;
    case MKNOD: r = syscall(SYS_mknod, path, S_IFREG | 04755, 0); break;
    case MKDIR_SGID: r = syscall(SYS_mkdir, path, 02755); break;
    default: r = open(a[1], O_TMPFILE | O_WRONLY | O_CLOEXEC, 04755); break; /* an inode without a name yet */
    }
    if (r < 0) return -errno; /* nothing was created */
    int fd = v == MKNOD || v == MKDIR_SGID ? -1 : (int)r;
    int err = 0, linked = v != TMPFILE;
    char link_err[40] = "";
    if (v == TMPFILE) {
        /* Give it the name through /proc (linkat with AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH). */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) {
            linked = 1;
        } else {
            char buf[16];
            snprintf(link_err, sizeof link_err, " linkat=%s", errno_name(errno, buf, sizeof buf));
        }
    }
    if ((fd >= 0 ? fstat(fd, &st) : lstat(path, &st)) < 0) err = errno;
    if (fd >= 0) close(fd);
    if (linked && (v == MKDIR_SGID ? rmdir(path) : unlink(path)) < 0) return say_fail(errno, "not removed: %s", path);
    if (err) return say_fail(err, "stat");
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if (st.st_mode & bit) return say_ok("mode=%o%s", mode, link_err);
    return say_status("NOBIT", "mode=%o%s", mode, link_err);
}

/* fchmod on a descriptor the caller set up (say, a redirected stdout: "fchmod-fd 1 4755"). The old mode is put
 * back afterwards: the line tells the mode the call achieved. */
static int try_fchmod_fd(char **a) {
    int fd = arg_fd(a[0]);
    mode_t mode = arg_mode(a[1]);
    struct stat before, after;
    if (fstat(fd, &before) < 0) return -errno;
    if (fchmod(fd, mode) < 0) return -errno;
    if (fstat(fd, &after) < 0) after.st_mode = 0;
    unsigned got = (unsigned)(after.st_mode & 07777);
    if (fchmod(fd, before.st_mode & 07777) < 0) return say_ok("mode=%o, not restored: %s", got, strerror(errno));
    return say_ok("mode=%o", got);
}

/* A read lease on a file of one's own (see the lease group of the filter: it stalls every other opener). */
static int try_setlease(char **a) {
    char path[PATH_MAX];
    dir_path(path, sizeof path, a[0], "lease-probe.XXXXXX");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) return say_fail(errno, "create");
    close(fd); /* a read lease wants no writer anywhere, and mkstemp's descriptor is one */
    int err = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fcntl(fd, F_SETLEASE, F_RDLCK) == 0) fcntl(fd, F_SETLEASE, F_UNLCK);
    else err = errno;
    if (fd >= 0) close(fd);
    if (unlink(path) < 0) return say_fail(errno, "not removed: %s", path);
    if (err) return -err;
    return say_ok(NULL);
}

/* A writer on a FIFO: ENXIO means nobody reads that FIFO inode. One byte goes in, and only into a FIFO (anything
 * else opened is a usage error, left unwritten). */
static int try_fifo_open(char **a) {
    int fd = open_arg(a[0], O_WRONLY, 0);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISFIFO(st.st_mode)) bad_arg("not a FIFO:", a[0]);
    ssize_t w = write(fd, "x", 1);
    char buf[16];
    if (w != 1) return say_ok("opened, not written: %s", w < 0 ? errno_name(errno, buf, sizeof buf) : "short");
    close(fd);
    return say_ok(NULL);
}

/* Write access to a sysctl without changing it: the bytes just read go back as they are, in one write at offset 0.
 * Only a regular file of procfs under /proc/sys (a usage error otherwise), and only a value that was read whole. */
static int try_sysctl_rewrite(char **a) {
    char real[PATH_MAX];
    if (!realpath(a[0], real)) return -errno;
    if (strncmp(real, "/proc/sys/", strlen("/proc/sys/")) != 0) bad_arg("not under /proc/sys:", a[0]);
    int fd = open_arg(real, O_RDONLY, 0);
    if (fd < 0) return say_fail(errno, "read");
    struct stat st;
    struct statfs sf;
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0) return say_fail(errno, "stat");
    if (!S_ISREG(st.st_mode) || sf.f_type != PROC_SUPER_MAGIC) bad_arg("not a sysctl of procfs:", a[0]);
    char value[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, value + len, sizeof value - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return say_fail(errno, "read");
        if (n == 0) break;
        len += (size_t)n;
        if (len == sizeof value) return say_fail(EFBIG, "value too long to write back");
    }
    close(fd);
    if (len == 0) return say_status("EOF", NULL);
    fd = open_arg(real, O_WRONLY, 0);
    if (fd < 0) return say_fail(errno, "open");
    ssize_t w = write(fd, value, len);
    if (w < 0) return say_fail(errno, "write");
    if ((size_t)w != len) return say_fail(EIO, "short write");
    return say_ok("%zu bytes", len);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Kernel-wide operations: invalid arguments that the kernel rejects only after the capability check, so EPERM
 * means denied and the other errno means allowed; none of them can do anything.
 */

static int try_init_module(char **a UNUSED) {
    /* No image at all: ENOEXEC (too short to be an ELF header) once CAP_SYS_MODULE is granted. */
    if (syscall(SYS_init_module, NULL, 0UL, "") < 0) return -errno;
    return say_ok(NULL);
}

static int try_finit_module(char **a UNUSED) {
    if (syscall(SYS_finit_module, -1, "", 0) < 0) return -errno; /* EBADF once allowed */
    return say_ok(NULL);
}

static int try_delete_module(char **a UNUSED) {
    if (syscall(SYS_delete_module, "lunas_no_such_module", O_NONBLOCK) < 0) return -errno; /* ENOENT once allowed */
    return say_ok(NULL);
}

static int try_reboot(char **a UNUSED) {
    /* The right first magic number and a wrong second one: the kernel checks CAP_SYS_BOOT first, then the magic
     * numbers (EINVAL), and never reaches the command. NEVER pass valid magic here. */
    if (syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, 0x12345, LINUX_REBOOT_CMD_CAD_OFF, NULL) < 0) return -errno;
    return say_ok(NULL);
}

static int try_kexec(char **a UNUSED) {
    /* 0xdead0000: no flag bits and an architecture (the top 16 bits) that is not this one: EINVAL once
     * CAP_SYS_BOOT is granted. With valid flags, zero segments would UNLOAD a loaded kexec kernel. */
    if (syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xdead0000UL) < 0) return -errno;
    return say_ok(NULL);
}

static int try_kexec_file(char **a UNUSED) {
    /* Unknown flags: EINVAL once allowed. Bit 0 (KEXEC_FILE_UNLOAD) is clear. */
    if (syscall(SYS_kexec_file_load, -1, -1, 0UL, NULL, 0xdead0000UL) < 0) return -errno;
    return say_ok(NULL);
}

static int try_swapon(char **a UNUSED) {
    if (swapon("/lunas-no-such-swap", 0) < 0) return -errno; /* ENOENT once CAP_SYS_ADMIN is granted */
    return say_ok(NULL);
}

static int try_settime(char **a UNUSED) {
    /* clock_settime cannot be asked safely: it reads and validates the time before the capability check (a NULL
     * pointer is EFAULT, a bad time EINVAL, for anybody) and sets the clock after it. settimeofday(NULL, NULL)
     * goes through the same check (security_settime64: CAP_SYS_TIME) and then has nothing to set: EPERM or ok. */
    if (syscall(SYS_settimeofday, NULL, NULL) < 0) return -errno;
    return say_ok(NULL);
}

static int try_iopl(char **a UNUSED) {
    /* iopl(level > 3) is EINVAL for anybody, and lowering the level needs no capability: no safe iopl call tells.
     * ioperm(0x80, 1, 1) needs CAP_SYS_RAWIO (EPERM without) and grants this process the POST diagnostic port
     * alone, which it never touches and which goes with it: harmless. ENOSYS on kernels without
     * CONFIG_X86_IOPL_IOPERM. */
    if (syscall(SYS_ioperm, 0x80UL, 1UL, 1) < 0) return -errno;
    return say_ok("ioperm 0x80");
}

static int try_hostname(char **a) {
    if (host_safe_ns(CLONE_NEWUTS)) return PROBE_PRINTED;
    if (sethostname(a[0], strlen(a[0])) < 0) return -errno;
    struct utsname u;
    if (uname(&u) < 0) return -errno;
    return say_ok("%s", u.nodename);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Sockets
 */

static int try_raw_socket(char **a UNUSED) {
    int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (s < 0) return -errno;
    return say_ok(NULL);
}

static int try_packet_socket(char **a UNUSED) {
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (s < 0) return -errno;
    return say_ok(NULL);
}

static int try_connect(char **a) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, a[0], &sa.sin_addr) != 1) bad_arg("not an IPv4 address:", a[0]);
    sa.sin_port = htons((uint16_t)parse_long(a[1], 1, 65535, "not a port:"));
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) return say_ok(NULL);
    if (errno != EINPROGRESS) return -errno;
    struct pollfd p = {.fd = s, .events = POLLOUT};
    int r;
    while ((r = poll(&p, 1, 2000)) < 0 && errno == EINTR) {}
    if (r < 0) return -errno;
    if (r == 0) return -ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    if (err) return -err;
    return say_ok(NULL);
}

static int try_bind(char **a) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    sa.sin_port = htons((uint16_t)parse_long(a[0], 0, 65535, "not a port:"));
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 1) < 0) return -errno;
    socklen_t len = sizeof sa;
    if (getsockname(s, (struct sockaddr *)&sa, &len) < 0) return -errno;
    return say_ok("port=%u", ntohs(sa.sin_port));
}

static int try_vsock(char **a UNUSED) {
    /* The socket alone, never connected nor bound: no hypervisor or other VM hears of it. */
    int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    close(s);
    return say_ok(NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * io_uring: the kernel performs the operations of a ring itself, and a seccomp filter never sees their system calls
 * (raw system calls: no liburing)
 */

static int try_io_uring_setup(char **a UNUSED) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 8U, &p);
    if (fd < 0) return -errno;
    close((int)fd);
    return say_ok(NULL);
}

struct uring {
    int fd;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

/* A ring of 8 entries with its queues mapped: 0, or PROBE_PRINTED after printing the failure. */
static int uring_open(struct uring *r) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 8U, &p);
    if (fd < 0) return say_fail(errno, "setup");
    r->fd = (int)fd;
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0; /* one mapping for both queues (Linux 5.4) */
    if (single && cq_size > sq_size) sq_size = cq_size;
    const int prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED | MAP_POPULATE;
    char *sq = mmap(NULL, sq_size, prot, flags, r->fd, (off_t)IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) return say_fail(errno, "mmap");
    char *cq = single ? sq : mmap(NULL, cq_size, prot, flags, r->fd, (off_t)IORING_OFF_CQ_RING);
    if (cq == MAP_FAILED) return say_fail(errno, "mmap");
    void *sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), prot, flags, r->fd, (off_t)IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return say_fail(errno, "mmap");
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sqes = sqes;
    return 0;
}

/* The next submission entry, zeroed (the kernel refuses unused fields that are not) and put in the array. */
static struct io_uring_sqe *uring_sqe(struct uring *r) {
    unsigned i = *r->sq_tail & *r->sq_mask;
    memset(&r->sqes[i], 0, sizeof r->sqes[i]);
    r->sq_array[i] = i;
    return &r->sqes[i];
}

/* Submits the entry from uring_sqe and waits for its completion, the only one in flight: 0 with the result in
 * *res, or PROBE_PRINTED after printing "ENAME STEP" (a negative result, or ETIMEDOUT after three seconds, the
 * bound of connect's wait) or "ENAME io_uring_enter". The wait has a timeout (IORING_ENTER_EXT_ARG, Linux 5.11):
 * a connect to a silent address would otherwise wait for TCP to give up. */
static int uring_run(struct uring *r, const char *step, int *res) {
    __atomic_store_n(r->sq_tail, *r->sq_tail + 1, __ATOMIC_RELEASE);
    struct __kernel_timespec ts = {.tv_sec = 1};
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof arg);
    arg.ts = (uint64_t)(uintptr_t)&ts;
    for (int round = 0; round < 3; round++) {
        unsigned pending = *r->sq_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
        if (syscall(__NR_io_uring_enter, r->fd, pending, 1U, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg,
                    sizeof arg) < 0 &&
            errno != ETIME && errno != EINTR)
            return say_fail(errno, "io_uring_enter");
        unsigned head = *r->cq_head;
        if (head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
            *res = r->cqes[head & *r->cq_mask].res;
            __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
            if (*res < 0) return say_fail(-*res, "%s", step);
            return 0;
        }
    }
    return say_fail(ETIMEDOUT, "%s", step);
}

/* socket() and connect() done by the ring: this process makes neither call (a filter refusing them, or vsock,
 * or a Landlock rule on connect, never sees them). IPV4 PORT as for connect. */
static int try_io_uring_connect(char **a) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, a[0], &sa.sin_addr) != 1) bad_arg("not an IPv4 address:", a[0]);
    sa.sin_port = htons((uint16_t)parse_long(a[1], 1, 65535, "not a port:"));
    struct uring r = {.fd = -1};
    if (uring_open(&r)) return PROBE_PRINTED;
    struct io_uring_sqe *sqe = uring_sqe(&r);
    sqe->opcode = URING_OP_SOCKET;
    sqe->fd = AF_INET;       /* domain */
    sqe->off = SOCK_STREAM;  /* type */
    sqe->len = 0;            /* protocol */
    int s;
    if (uring_run(&r, "socket", &s)) return PROBE_PRINTED;
    sqe = uring_sqe(&r);
    sqe->opcode = URING_OP_CONNECT;
    sqe->fd = s;
    sqe->addr = (uint64_t)(uintptr_t)&sa;
    sqe->off = sizeof sa; /* the address length */
    int res;
    if (uring_run(&r, "connect", &res)) return PROBE_PRINTED;
    return say_ok("connected");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Unix sockets and FIFOs: endpoints of other processes a sandbox may see in its file system or share the abstract
 * namespace of (a network namespace's)
 */

/* The address of a pathname socket; 0 when PATH does not fit in sun_path. */
static socklen_t unix_path(struct sockaddr_un *sa, const char *path) {
    size_t n = strlen(path);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (n >= sizeof sa->sun_path) return 0;
    memcpy(sa->sun_path, path, n + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

/* A socket of TYPE connected to SA: the descriptor, or -errno. Non-blocking, so that a listener with a full backlog
 * answers EAGAIN rather than hang the probe. */
static int unix_connect(const struct sockaddr_un *sa, socklen_t len, int type) {
    int s = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    if (connect(s, (const struct sockaddr *)sa, len) < 0) {
        int err = errno;
        close(s);
        return -err;
    }
    return s;
}

static int try_unix_connect(char **a) {
    int type = SOCK_STREAM;
    if (a[1]) {
        if (strcmp(a[1], "dgram") != 0) bad_arg("not 'dgram':", a[1]);
        type = SOCK_DGRAM;
    }
    struct sockaddr_un sa;
    socklen_t len = unix_path(&sa, a[0]);
    if (!len) bad_arg("too long for a unix socket address:", a[0]);
    int s = unix_connect(&sa, len, type);
    if (s < 0) return s;
    /* A datagram socket connects to any bound peer: a byte it accepts is what tells it can be reached. */
    if (type == SOCK_DGRAM && send(s, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) return say_fail(errno, "send");
    close(s);
    return say_ok(NULL);
}

static int try_abstract_connect(char **a) {
    struct sockaddr_un sa;
    size_t n = strlen(a[0]);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (n + 1 > sizeof sa.sun_path) bad_arg("too long for a unix socket address:", a[0]);
    memcpy(sa.sun_path + 1, a[0], n); /* "\0NAME", the length saying where the name ends */
    int s = unix_connect(&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n), SOCK_STREAM);
    if (s < 0) return s;
    close(s);
    return say_ok(NULL);
}

/* walk-ipc: every unix socket and FIFO under ROOT, tried in turn until one lets the probe in. */
#define WALK_MAX_ENTRIES 2000000L

#define WALK_MAX_MOUNTS 512

struct walk {
    char path[PATH_MAX];
    long entries, found;
    int shown, hit, limit; /* hit: path is the one that let the probe in; limit: WALK_MAX_ENTRIES reached */
    char detail[1024];     /* up to 3 " PATH:ENAME" */
    char *mounts[WALK_MAX_MOUNTS]; /* mount points: where a socket or FIFO can be bound over a file */
    int nmounts;
};

/* mountinfo's field 5 with its octal escapes (\040 for a space) undone. */
static char *mount_point(const char *field) {
    char *out = malloc(strlen(field) + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = field; *p && *p != ' '; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static void walk_read_mounts(struct walk *w) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return;
    char line[8192];
    while (w->nmounts < WALK_MAX_MOUNTS && fgets(line, sizeof line, f)) {
        const char *field = line;
        for (int i = 0; i < 4 && field; i++) {
            field = strchr(field, ' ');
            if (field) field++;
        }
        char *mp = field ? mount_point(field) : NULL;
        if (mp) w->mounts[w->nmounts++] = mp;
    }
    fclose(f);
}

static int walk_is_mount_point(const struct walk *w, const char *path) {
    for (int i = 0; i < w->nmounts; i++)
        if (strcmp(w->mounts[i], path) == 0) return 1;
    return 0;
}

/* /proc and /sys hold the kernel's files, not endpoints of processes, and are huge: not walked. */
static int walk_skipped(const char *path) {
    static const char *const skip[] = {"/proc", "/sys"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
        size_t n = strlen(skip[i]);
        if (strncmp(path, skip[i], n) == 0 && (path[n] == '\0' || path[n] == '/')) return 1;
    }
    return 0;
}

/* A stream connection to the socket PATH, or a datagram one where it is a datagram socket (EPROTOTYPE); closed at
 * once, nothing sent: 0 or the errno. */
static int reach_socket(const char *path) {
    struct sockaddr_un sa;
    int opath = -1;
    socklen_t len = unix_path(&sa, path);
    if (!len) {
        /* Too long for sun_path: /proc/self/fd/N of an O_PATH descriptor names the same socket. */
        if ((opath = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0) return errno;
        char proxy[64];
        snprintf(proxy, sizeof proxy, "/proc/self/fd/%d", opath);
        len = unix_path(&sa, proxy);
    }
    int s = unix_connect(&sa, len, SOCK_STREAM);
    if (s == -EPROTOTYPE) s = unix_connect(&sa, len, SOCK_DGRAM);
    if (opath >= 0) close(opath);
    if (s < 0) return -s;
    close(s);
    return 0;
}

/* A writer's open of the FIFO PATH, closed at once, nothing written: 0 or the errno (ENXIO: no reader). */
static int reach_fifo(const char *path) {
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

/* The directory w->path (len bytes long), depth first; symbolic links are never followed, mount points are crossed,
 * directories that cannot be read are passed over. Stops at the first way in, or at WALK_MAX_ENTRIES. */
static void walk_dir(struct walk *w, size_t len) {
    int fd = open(w->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    size_t sep = w->path[len - 1] == '/' ? 0 : 1; /* ROOT "/" has its slash */
    struct dirent *e;
    while (!w->hit && !w->limit && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (++w->entries > WALK_MAX_ENTRIES) {
            w->limit = 1;
            break;
        }
        size_t n = strlen(e->d_name);
        if (len + sep + n >= sizeof w->path) continue;
        w->path[len] = '/';
        memcpy(w->path + len + sep, e->d_name, n + 1);
        unsigned type = e->d_type;
        /* d_type is the directory entry's: a socket or FIFO bound over a file mount point shows as a regular
         * file there, so a mount point is asked again (lstat sees what is mounted on it); so is an entry of a
         * file system that does not fill d_type. */
        if (type == DT_UNKNOWN || (type != DT_DIR && type != DT_LNK && walk_is_mount_point(w, w->path))) {
            struct stat st;
            type = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ? DT_UNKNOWN : IFTODT(st.st_mode);
        }
        if (type == DT_DIR && !walk_skipped(w->path)) {
            walk_dir(w, len + sep + n);
        } else if (type == DT_SOCK || type == DT_FIFO) {
            w->found++;
            int err = type == DT_SOCK ? reach_socket(w->path) : reach_fifo(w->path);
            if (err == 0) w->hit = 1;
            else if (w->shown < 3) {
                char buf[16];
                size_t used = strlen(w->detail);
                const char *name = errno_name(err, buf, sizeof buf);
                snprintf(w->detail + used, sizeof w->detail - used, " %s:%s", w->path, name);
                w->shown++;
            }
        }
        if (w->hit) break; /* w->path stays: the answer */
        w->path[len] = '\0';
    }
    closedir(d);
}

static int try_walk_ipc(char **a) {
    static struct walk w; /* PATH_MAX and more: off the stack */
    if (!realpath(a[0], w.path)) return -errno;
    walk_read_mounts(&w);
    size_t len = strlen(w.path);
    if (!walk_skipped(w.path)) walk_dir(&w, len);
    if (w.hit) return say_ok("%s", w.path);
    return say_status("NONE", "found=%ld%s%s", w.found, w.detail, w.limit ? " limit-reached" : "");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Kernel interfaces a sandbox usually closes
 */

static int try_bpf(char **a UNUSED) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd < 0) return -errno;
    close((int)fd);
    return say_ok(NULL);
}

static int try_perf(char **a UNUSED) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.size = sizeof attr;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    if (syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0UL) < 0) return -errno; /* this process, any CPU */
    return say_ok(NULL);
}

static int try_keyctl(char **a UNUSED) {
    /* A new anonymous session keyring for this process alone. */
    long key = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL);
    if (key < 0) return -errno;
    return say_ok("%ld", key);
}

static int try_add_key(char **a UNUSED) {
    /* Into the process keyring: it goes with the process. */
    long key = syscall(SYS_add_key, "user", "lunas-probe", "x", (size_t)1, KEY_SPEC_PROCESS_KEYRING);
    if (key < 0) return -errno;
    return say_ok("%ld", key);
}

static int try_userfaultfd(char **a UNUSED) {
    if (syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY) < 0) return -errno;
    return say_ok(NULL);
}

/* Whose session keyring is this? HOST-ID is the caller's: the same id means the sandbox shares it (and the keys in
 * it); another one is a keyring of its own ("FRESH ID"). create = 0: without a session keyring the kernel answers
 * with the user's session keyring and makes nothing. */
static int try_keyring(char **a) {
    long host = parse_long(a[0], 1, INT_MAX, "not a key id:");
    long id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    if (id < 0) return -errno;
    if (id == host) return say_ok("inherited %ld", id);
    return say_status("FRESH", "%ld", id);
}

static int try_modify_ldt(char **a UNUSED) {
    /* func 0 reads the LDT (0 bytes for a process that never set one): nothing changes. */
    char buf[64];
    long n = syscall(SYS_modify_ldt, 0, buf, sizeof buf);
    if (n < 0) return -errno;
    return say_ok("%ld bytes", n);
}

/* VALUE as personality(2) takes it, 0xffffffff being the query. Any other value changes this process's persona
 * alone, and the old one is put back at once. */
static int try_personality(char **a) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(a[0], &end, 0);
    if (errno || end == a[0] || *end || a[0][0] == '-' || value > 0xffffffffUL) bad_arg("not a personality:", a[0]);
    long old = syscall(SYS_personality, value);
    if (old < 0) return -errno;
    if (value != 0xffffffffUL && syscall(SYS_personality, (unsigned long)old) < 0)
        return say_ok("old=0x%x, not restored: %s", (unsigned)old, strerror(errno));
    return say_ok("old=0x%x", (unsigned)old);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Namespaces
 */

static int try_unshare_user(char **a UNUSED) {
    if (unshare(CLONE_NEWUSER) < 0) return -errno;
    return say_ok("CapEff=%016llx", cap_effective()); /* every capability, in the new namespace */
}

/* After a fork-like clone (no CLONE_VM) with the child gone at once: ok if the kernel made the process. */
static int reap(long pid) {
    if (pid < 0) return -errno;
    if (pid == 0) _exit(0);
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0)
        if (errno != EINTR) return -errno;
    return say_ok(NULL);
}

static int try_clone_user(char **a UNUSED) {
    /* x86_64 order: flags, stack, parent_tid, child_tid, tls. A NULL stack: the child runs on a copy of ours. */
    return reap(syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), NULL, NULL, NULL, 0UL));
}

static int try_clone3(char **a UNUSED) {
    struct probe_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    return reap(syscall(SYS_clone3, &args, sizeof args));
}

static int try_setns(char **a) {
    int fd = open_arg(a[0], O_RDONLY, 0);
    if (fd < 0) return -errno;
    if (setns(fd, 0) < 0) return -errno;
    return say_ok(NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Privileges
 */

static int try_euid(char **a UNUSED) {
    /* Meant for a setuid-root copy run by another user: euid 0 means privileges were gained through exec. */
    uid_t euid = geteuid();
    if (euid == 0) return say_ok("euid=0");
    return say_fail(EPERM, "euid=%u", (unsigned)euid);
}

static int try_caps(char **a UNUSED) {
    struct __user_cap_data_struct d[2];
    int err = caps_get(d);
    if (err < 0) return err;
    unsigned long long eff = (unsigned long long)d[1].effective << 32 | d[0].effective;
    if (eff) return say_ok("CapEff=%016llx", eff);
    return say_fail(EPERM, "CapEff=%016llx", eff);
}

static int try_cap_raise(char **a UNUSED) {
    struct __user_cap_data_struct d[2];
    int err = caps_get(d);
    if (err < 0) return err;
    const uint32_t bit = 1U << CAP_SYS_ADMIN; /* CAP_SYS_ADMIN (21) lives in the first word */
    int already = (d[0].effective & bit) != 0;
    d[0].effective |= bit;
    d[0].permitted |= bit; /* raising the permitted set is what is forbidden; inheritable stays */
    if ((err = caps_set(d)) < 0) return err;
    return say_ok(already ? "already-effective" : "raised");
}

static int try_ambient_raise(char **a UNUSED) {
    /* The kernel wants the capability permitted AND inheritable before it can become ambient, and root's
     * inheritable set is usually empty: put it there first where the permitted set allows (what anybody trying
     * would do), then ask. */
    struct __user_cap_data_struct d[2];
    const uint32_t bit = 1U << CAP_NET_ADMIN;
    if (caps_get(d) == 0 && (d[0].permitted & bit) && !(d[0].inheritable & bit)) {
        d[0].inheritable |= bit;
        if (caps_set(d) < 0) {} /* the prctl below reports what matters */
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) < 0) return -errno;
    return say_ok(NULL);
}

static int try_securebits(char **a UNUSED) {
    if (prctl(PR_SET_SECUREBITS, 0UL, 0UL, 0UL, 0UL) < 0) return -errno; /* clear them all */
    return say_ok(NULL);
}

static int try_nnp(char **a UNUSED) {
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    if (nnp < 0) return -errno;
    if (nnp == 0) return say_ok("NoNewPrivs=0"); /* exec of a setuid program could still gain privileges */
    return say_fail(EPERM, "NoNewPrivs=%d", nnp);
}

static int try_setsid_check(char **a UNUSED) {
    /* A process in its caller's session can reach the caller's terminal (TIOCSTI); a session leader of its own
     * cannot. */
    pid_t sid = getsid(0);
    if (sid < 0) return -errno;
    char buf[16];
    const char *tty = "ok";
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) tty = errno_name(errno, buf, sizeof buf);
    if (sid != getpid()) return say_ok("sid=shared tty=%s", tty);
    return say_fail(EPERM, "sid=leader tty=%s", tty);
}

/* ---------------------------------------------------------------------------------------------------------------
 * System call ABIs
 */

static void int80_fault(int sig UNUSED) {
    /* The kernel runs without IA32 emulation (ia32_emulation=0): int $0x80 faults instead of entering. */
    static const char line[] = "ENOSYS int80-fault\n";
    if (write(STDOUT_FILENO, line, sizeof line - 1) < 0) {}
    _exit(1);
}

static int try_i386(char **a UNUSED) {
    signal(SIGSEGV, int80_fault);
    long ret = I386_NR_GETPID;
    /* The 32-bit entry returns in eax and keeps the other registers; r8-r11 are listed for older kernels. */
    __asm__ volatile("int $0x80" : "+a"(ret) : : "r8", "r9", "r10", "r11", "memory", "cc");
    int r = (int)ret;
    if (r < 0) return r;
    return say_ok("pid=%d", r);
}

static int try_x32(char **a UNUSED) {
    long r = syscall(X86_64_NR_GETPID | X32_SYSCALL_BIT);
    if (r < 0) return -errno; /* ENOSYS without CONFIG_X86_X32_ABI */
    return say_ok("pid=%ld", r);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Utilities for the battery
 */

static int try_getpid(char **a UNUSED) { return say_ok("%d", (int)getpid()); }

static int try_owner(char **a) {
    struct stat st;
    if (stat(a[0], &st) < 0) return -errno;
    return say_ok("uid=%u gid=%u mode=%o", (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777));
}

/* Who a file made in DIR belongs to (an id mapping seen from outside). Left there: the caller removes it. */
static int try_create(char **a) {
    char path[PATH_MAX];
    dir_path(path, sizeof path, a[0], "created-by-probe");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    close(fd);
    return say_ok("uid=%u gid=%u", (unsigned)st.st_uid, (unsigned)st.st_gid);
}

static int try_exec(char **a) {
    execv(a[0], a); /* a is main's argv from PATH on: NULL-terminated */
    return -errno;
}

static int try_sleep(char **a) {
    struct timespec t = {.tv_sec = parse_long(a[0], 0, 86400, "not a number of seconds:")};
    while (nanosleep(&t, &t) < 0)
        if (errno != EINTR) return -errno;
    return say_ok(NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The table and main
 */

/* ---------------------------------------------------------------------------------------------------------------
 * Fixtures for the audit (run outside the sandbox)
 */

/* Accepts and closes connections for ever: the listener only has to be there. */
__attribute__((noreturn)) static void serve(int s) {
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) close(c);
        else if (errno != EINTR && errno != ECONNABORTED) _exit(1);
    }
}

static int try_serve_tcp(char **a UNUSED) {
    /* loopback only, whatever else the machine has: nothing beyond this host's own stack hears of it */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    socklen_t len = sizeof sa;
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 64) < 0 ||
        getsockname(s, (struct sockaddr *)&sa, &len) < 0)
        return -errno;
    say_ok("port=%u", (unsigned)ntohs(sa.sin_port));
    serve(s);
}

static int try_serve_abstract(char **a) {
    struct sockaddr_un sa;
    size_t n = strlen(a[0]);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (n == 0 || n + 1 > sizeof sa.sun_path) bad_arg("not an abstract socket name:", a[0]);
    memcpy(sa.sun_path + 1, a[0], n);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    if (bind(s, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) < 0 ||
        listen(s, 64) < 0)
        return -errno;
    say_ok(NULL);
    serve(s);
}

static const struct attempt attempts[] = {
    {"kill", 1, 1, try_kill, "PID"},
    {"ptrace", 1, 1, try_ptrace, "PID"},
    {"ptrace-seize", 1, 1, try_ptrace_seize, "PID"},
    {"proc-pid", 1, 1, try_proc_pid, "PID"},
    {"mount", 1, 1, try_mount, "DIR"},
    {"umount", 1, 1, try_umount, "DIR"},
    {"umount-detach", 1, 1, try_umount_detach, "DIR"},
    {"remount-rw", 1, 1, try_remount_rw, "DIR"},
    {"setattr-rw", 1, 1, try_setattr_rw, "DIR"},
    {"fsopen", 0, 0, try_fsopen, ""},
    {"open-tree", 1, 1, try_open_tree, "DIR"},
    {"open-tree-attr", 0, 0, try_open_tree_attr, ""},
    {"pivot-root", 1, 1, try_pivot_root, "DIR"},
    {"chroot", 1, 1, try_chroot, "DIR"},
    {"chroot-escape", 1, 1, try_chroot_escape, "MARKER"},
    {"fds", 0, 0, try_fds, ""},
    {"read-fd", 1, 1, try_read_fd, "FD"},
    {"cwd", 1, 1, try_cwd, "RELATIVE-MARKER"},
    {"tiocsti", 1, 1, try_tiocsti, "FD"},
    {"tiocsti-high", 1, 1, try_tiocsti_high, "FD"},
    {"tioclinux", 1, 1, try_tioclinux, "FD"},
    {"tioclinux-high", 1, 1, try_tioclinux_high, "FD"},
    {"tiocsetd", 1, 1, try_tiocsetd, "FD"},
    {"tiocsetd-high", 1, 1, try_tiocsetd_high, "FD"},
    {"read", 1, 1, try_read, "FILE"},
    {"list", 1, 1, try_list, "DIR"},
    {"write", 1, 1, try_write, "FILE"},
    {"chmod-suid", 2, 2, try_chmod_suid, "chmod|fchmod|fchmodat|fchmodat2|sgid-chmod DIR"},
    {"create-suid", 2, 2, try_create_suid, "open|openat|creat|mknod|mkdir-sgid|tmpfile DIR"},
    {"fchmod-fd", 2, 2, try_fchmod_fd, "FD OCTAL-MODE"},
    {"setlease", 1, 1, try_setlease, "DIR"},
    {"fifo-open", 1, 1, try_fifo_open, "PATH"},
    {"sysctl-rewrite", 1, 1, try_sysctl_rewrite, "PATH"},
    {"init-module", 0, 0, try_init_module, ""},
    {"finit-module", 0, 0, try_finit_module, ""},
    {"delete-module", 0, 0, try_delete_module, ""},
    {"reboot", 0, 0, try_reboot, ""},
    {"kexec", 0, 0, try_kexec, ""},
    {"kexec-file", 0, 0, try_kexec_file, ""},
    {"swapon", 0, 0, try_swapon, ""},
    {"settime", 0, 0, try_settime, ""},
    {"iopl", 0, 0, try_iopl, ""},
    {"hostname", 1, 1, try_hostname, "NAME"},
    {"raw-socket", 0, 0, try_raw_socket, ""},
    {"packet-socket", 0, 0, try_packet_socket, ""},
    {"bpf", 0, 0, try_bpf, ""},
    {"perf", 0, 0, try_perf, ""},
    {"keyctl", 0, 0, try_keyctl, ""},
    {"add-key", 0, 0, try_add_key, ""},
    {"userfaultfd", 0, 0, try_userfaultfd, ""},
    {"keyring", 1, 1, try_keyring, "HOST-ID"},
    {"modify-ldt", 0, 0, try_modify_ldt, ""},
    {"personality", 1, 1, try_personality, "VALUE"},
    {"unshare-user", 0, 0, try_unshare_user, ""},
    {"clone-user", 0, 0, try_clone_user, ""},
    {"clone3", 0, 0, try_clone3, ""},
    {"unshare-mount", 0, 0, try_unshare_mount, ""},
    {"setns", 1, 1, try_setns, "PATH"},
    {"connect", 2, 2, try_connect, "IPV4 PORT"},
    {"bind", 1, 1, try_bind, "PORT"},
    {"vsock", 0, 0, try_vsock, ""},
    {"io-uring-setup", 0, 0, try_io_uring_setup, ""},
    {"io-uring-connect", 2, 2, try_io_uring_connect, "IPV4 PORT"},
    {"unix-connect", 1, 2, try_unix_connect, "PATH [dgram]"},
    {"abstract-connect", 1, 1, try_abstract_connect, "NAME"},
    {"walk-ipc", 1, 1, try_walk_ipc, "ROOT"},
    {"symlink", 1, 1, try_symlink, "LINKPATH"},
    {"euid", 0, 0, try_euid, ""},
    {"caps", 0, 0, try_caps, ""},
    {"cap-raise", 0, 0, try_cap_raise, ""},
    {"ambient-raise", 0, 0, try_ambient_raise, ""},
    {"securebits", 0, 0, try_securebits, ""},
    {"nnp", 0, 0, try_nnp, ""},
    {"setsid-check", 0, 0, try_setsid_check, ""},
    {"cgroup-write", 2, 2, try_cgroup_write, "FILE VALUE"},
    {"i386", 0, 0, try_i386, ""},
    {"x32", 0, 0, try_x32, ""},
    {"getpid", 0, 0, try_getpid, ""},
    {"owner", 1, 1, try_owner, "PATH"},
    {"create", 1, 1, try_create, "DIR"},
    {"exec", 1, -1, try_exec, "PATH [ARGS...]"},
    {"sleep", 1, 1, try_sleep, "SECONDS"},
    {"serve-tcp", 0, 0, try_serve_tcp, "(a fixture: listens on 127.0.0.1)"},
    {"serve-abstract", 1, 1, try_serve_abstract, "NAME (a fixture)"},
};
#define N_ATTEMPTS (sizeof attempts / sizeof attempts[0])

static void usage(FILE *f) {
    fprintf(f, "usage: escape-probe ATTEMPT [ARGS...]   (escape-probe list: the attempt names)\n"
               "prints one line: ok[ DETAIL] (exit 0) or the errno's name (exit 1); usage errors exit 2\n");
    for (size_t i = 0; i < N_ATTEMPTS; i++) usage_line(f, &attempts[i]);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    /* "list" alone lists the attempts; "list DIR" is the attempt. */
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < N_ATTEMPTS; i++) printf("%s\n", attempts[i].name);
        return 0;
    }
    for (size_t i = 0; i < N_ATTEMPTS; i++) {
        if (strcmp(argv[1], attempts[i].name) != 0) continue;
        current = &attempts[i];
        int nargs = argc - 2;
        if (nargs < current->min_args || (current->max_args >= 0 && nargs > current->max_args)) {
            fprintf(stderr, "usage:\n");
            usage_line(stderr, current);
            return 2;
        }
        int r = current->run(argv + 2);
        if (r < 0) {
            char buf[16];
            emit(errno_name(-r, buf, sizeof buf), NULL);
        }
        /* _exit: after chroot or pivot_root the exit-time leak check of a sanitizer build (make check) cannot read
         * /proc and would turn the status into 1; the line is out already (write(2), no stdio). */
        _exit(r == PROBE_OK ? 0 : 1);
    }
    fprintf(stderr, "escape-probe: unknown attempt '%s' (escape-probe --help: the attempts)\n", argv[1]);
    return 2;
}
