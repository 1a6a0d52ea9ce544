/* proc.c: process creation (clone3), exec, pidfd handles, the PID 1 reaper, and per-process attributes
 * (prctl, rlimits, ids, session, signals, fds). */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/keyctl.h>

#include "lunas.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* linux/wait.h, which clashes with glibc's idtype_t */
#endif

#define LUNAS_PROCESS "lunas.process"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Exit code of a child whose Lua function raised (as docker/crun use 125 for "the runtime failed"). */
#define CHILD_LUA_ERROR 125
#define CHILD_EXEC_FAILED 127
/* Stack of a child started vfork-style; mapped lazily, so only what it touches costs. */
#define PAYLOAD_STACK_SIZE (1u << 20)
/* AddressSanitizer cannot follow a child that shares our memory and thread state on a stack of its own: under
 * it, vfork-style starts become copies (the same behaviour seen from outside, only slower). */
#if defined(__SANITIZE_ADDRESS__)
#define SHARED_VM_SUPPORTED 0
#else
#define SHARED_VM_SUPPORTED 1
#endif

extern char **environ;

struct lunas_process {
    pid_t pid;
    int pidfd;
    pid_t owner; /* the process that created the handle: only it may reap */
    int reaped;
    int status_kind; /* 0 exited, 1 signaled */
    int status;      /* exit code or signal number */
    int core;
};

/* ---- exec --------------------------------------------------------------- */

static const char *env_lookup(char **envp, const char *name) {
    size_t len = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
    return NULL;
}

/* execve with a PATH search taken from envp (not from our own environment: the payload's PATH decides).
 * Never falls back to /bin/sh on ENOEXEC: lunas runs no shell. Returns -1 with errno. */
static int exec_search(const char *file, char *const argv[], char *const envp[], int search) {
    if (!search || strchr(file, '/')) return execve(file, argv, envp);
    const char *path = env_lookup((char **)envp, "PATH");
    if (!path || !*path) path = DEFAULT_PATH;
    size_t flen = strlen(file);
    int saw_eacces = 0;
    for (const char *p = path;; p++) {
        const char *colon = strchrnul(p, ':');
        size_t dlen = (size_t)(colon - p);
        char buf[PATH_MAX];
        if (dlen + flen + 2 <= sizeof buf) {
            if (dlen) memcpy(buf, p, dlen);
            else buf[dlen++] = '.'; /* an empty PATH entry means the current directory */
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            execve(buf, argv, envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV) return -1;
        }
        if (!*colon) break;
        p = colon;
    }
    errno = saw_eacces ? EACCES : ENOENT;
    return -1;
}

/* The kernel's struct sigaction: glibc's wrapper refuses the signals it reserves for itself (32 and 33), so a
 * disposition inherited on those could survive a reset through it. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static void reset_signal_state(void) {
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
    struct kernel_sigaction dfl = {.handler = SIG_DFL};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
}

struct exec_request {
    const char *file;
    char **argv;
    char **envp;
    int search;
};

/* Reads an exec request: the argv table at argv_idx (blamed as argument argv_arg) and env/path/argv0 from the
 * table at opts_idx (an argument itself), if any. Leaves helper userdata on the stack. */
static void check_exec_request(lua_State *L, int argv_idx, int argv_arg, int opts_idx, struct exec_request *req) {
    req->argv = lunas_check_string_array(L, argv_idx, argv_arg, "argv", 1);
    req->file = req->argv[0];
    req->envp = environ;
    req->search = 1;
    if (!opts_idx || lua_isnoneornil(L, opts_idx)) return;
    req->search = lunas_opt_boolean(L, opts_idx, "path", 1);
    if (lunas_opt_field(L, opts_idx, "env", LUA_TTABLE) != LUA_TNIL)
        req->envp = lunas_check_environment(L, -1, opts_idx, "env");
    /* argv0 replaces what the program sees as argv[0]; the file run stays argv[1]. */
    const char *argv0 = lunas_opt_string(L, opts_idx, "argv0", NULL);
    if (argv0) {
        size_t n = 0;
        while (req->argv[n]) n++;
        char **copy = lua_newuserdatauv(L, (n + 1) * sizeof(char *), 0);
        memcpy(copy, req->argv, (n + 1) * sizeof(char *));
        copy[0] = (char *)argv0;
        req->argv = copy;
    }
}

/***
Processes.
Creation in new namespaces, exec, handles, the PID 1 reaper of a sandbox.
@section processes
*/

/***
Replaces the calling process by a program (execve), as the last step of a child.
The signal mask is emptied and every disposition reset first, and stdio is flushed. With `path`, the program is
searched in the PATH of the environment it gets (not of the caller); there is never a fallback to /bin/sh on
ENOEXEC: lunas runs no shell.
@function exec
@tparam table argv the program and its arguments (strings, at least one); `argv[1]` is the file to run
@tparam[opt] table opts
@tparam[opt] table opts.env the environment: a map `{K = V}` or an array `{"K=V", ...}` (default: the caller's)
@tparam[opt=true] boolean opts.path search PATH for a name without a slash (default PATH
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
@tparam[opt] string opts.argv0 what the program sees as its argv[0] (the file run stays `argv[1]`)
@return only on failure
@error "exec FILE: message", "ENAME"
*/
static int proc_exec(lua_State *L) {
    struct exec_request req;
    static const char *const allowed[] = {"env", "path", "argv0", NULL};
    lua_settop(L, 2); /* the request builder pushes arrays: keep index 2 the options, even when absent */
    if (!lua_isnil(L, 2)) lunas_check_options(L, 2, allowed);
    check_exec_request(L, 1, 1, 2, &req);
    fflush(NULL);
    reset_signal_state();
    exec_search(req.file, req.argv, req.envp, req.search);
    return lunas_push_error(L, errno, "exec", req.file);
}

/* ---- process handles ---------------------------------------------------- */

static struct lunas_process *check_process(lua_State *L, int arg) {
    struct lunas_process *p = luaL_checkudata(L, arg, LUNAS_PROCESS);
    if (p->pidfd < 0) lunas_closed_error(L, "process");
    return p;
}

static struct lunas_process *new_process(lua_State *L) {
    struct lunas_process *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    p->pidfd = -1;
    p->owner = getpid();
    luaL_setmetatable(L, LUNAS_PROCESS);
    return p;
}

static void record_status(struct lunas_process *p, const siginfo_t *info) {
    p->reaped = 1;
    p->status_kind = info->si_code == CLD_EXITED ? 0 : 1;
    p->status = info->si_status;
    p->core = info->si_code == CLD_DUMPED;
}

static void push_status(lua_State *L, const struct lunas_process *p) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, p->pid);
    lua_setfield(L, -2, "pid");
    if (p->reaped && p->status_kind == 0) {
        lua_pushinteger(L, p->status);
        lua_setfield(L, -2, "status");
    } else if (p->reaped && p->status_kind == 1) {
        lua_pushinteger(L, p->status);
        lua_setfield(L, -2, "signal");
        const char *name = lunas_signal_name(p->status);
        if (name) {
            lua_pushstring(L, name);
            lua_setfield(L, -2, "signame");
        }
        lua_pushboolean(L, p->core);
        lua_setfield(L, -2, "core");
    }
}

/* Waits until the pidfd is readable (the process exited) or the timeout passes. 1 ready, 0 timeout, -1 error. */
static int wait_readable(int fd, double timeout) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n = lunas_poll(&pfd, 1, lunas_timeout_ms(timeout));
    return n > 0 ? 1 : n;
}

static int reap(struct lunas_process *p, int options) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r;
    do r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &info, WEXITED | options);
    while (r < 0 && errno == EINTR);
    if (r == 0 && info.si_pid != 0) record_status(p, &info);
    return r;
}

/***
Process handles.
A pidfd on a process, from `spawn` and `pidfd_open`: `p.pid` is the pid, `tostring(p)` "process PID". Signals go
through the pidfd, so they never reach another process that reused the pid. Only the process that created the
handle reaps the child. The handle is a descriptor too: `poll` tells when the process exits, and `setns(p, flags)`
joins its namespaces.
@type process
*/

/***
Waits for the process to exit and reaps it.
Once waited for, the same status is returned again. For a process that is not our child (`pidfd_open`), this waits
for its exit and returns `{pid = N}` alone: its status belongs to its parent.
@function process:wait
@tparam[opt] number timeout seconds (0 or more); without it, waits for ever
@treturn table `{pid = N, status = code}` when it exited, or `{pid = N, signal = n, signame = "KILL",
  core = boolean}` when a signal killed it
@error "wait pid N: message", "ETIMEDOUT" when the timeout passed (the process is left running)
*/
static int process_wait(lua_State *L) {
    struct lunas_process *p = check_process(L, 1);
    double timeout = -1;
    if (!lua_isnoneornil(L, 2)) {
        timeout = luaL_checknumber(L, 2);
        if (!(timeout >= 0)) return lunas_field_error(L, 2, "timeout", "non-negative number of seconds expected");
    }
    if (!p->reaped) {
        int ready = wait_readable(p->pidfd, timeout);
        if (ready < 0 && errno == EINTR) return lunas_raise_interrupt(L);
        if (ready < 0) return lunas_push_errorf(L, errno, "wait pid %d", (int)p->pid);
        if (ready == 0) return lunas_push_errorf(L, ETIMEDOUT, "wait pid %d", (int)p->pid);
        if (p->owner != getpid() || reap(p, 0) < 0) {
            /* Not our child (a pidfd_open of another process): it has exited, but its status is its parent's. */
            if (p->owner == getpid() && errno != ECHILD) return lunas_push_errorf(L, errno, "wait pid %d", (int)p->pid);
            p->reaped = 1;
            p->status_kind = -1;
        }
    }
    push_status(L, p);
    return 1;
}

/***
Sends a signal to the process (pidfd_send_signal).
@function process:kill
@tparam[opt="TERM"] integer|string signal
@treturn boolean true
@error "kill pid N: message", "ENAME" ("ESRCH" once it has been reaped)
*/
static int process_kill(lua_State *L) {
    struct lunas_process *p = check_process(L, 1);
    int sig = lua_isnoneornil(L, 2) ? SIGTERM : lunas_check_signal(L, 2, 2, "signal");
    if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
        return lunas_push_errorf(L, errno, "kill pid %d", (int)p->pid);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Whether the process still runs; never blocks.
@function process:alive
@treturn boolean false once the process has exited, reaped or not
@error "poll pid N: message", "ENAME"
*/
static int process_alive(lua_State *L) {
    struct lunas_process *p = check_process(L, 1);
    int ready = p->reaped ? 1 : wait_readable(p->pidfd, 0);
    if (ready < 0) return lunas_push_errorf(L, errno, "poll pid %d", (int)p->pid);
    lua_pushboolean(L, ready == 0);
    return 1;
}

/***
The pidfd's number.
@function process:fileno
@treturn integer
*/
static int process_fileno(lua_State *L) {
    lua_pushinteger(L, check_process(L, 1)->pidfd);
    return 1;
}

/***
Closes the pidfd. A child that has already exited is collected (no zombie is left), but close never waits for or
kills a running one. Closing again does nothing.
@function process:close
*/
static int process_close(lua_State *L) {
    struct lunas_process *p = luaL_checkudata(L, 1, LUNAS_PROCESS);
    if (p->pidfd >= 0) {
        /* Collect an exited child so it does not linger as a zombie; never wait or kill here. */
        if (!p->reaped && p->owner == getpid()) reap(p, WNOHANG);
        close(p->pidfd);
        p->pidfd = -1;
    }
    return 0;
}

static int process_gc(lua_State *L) {
    struct lunas_process *p = luaL_checkudata(L, 1, LUNAS_PROCESS);
    if (p->pidfd >= 0 && p->owner == getpid()) return process_close(L);
    p->pidfd = -1;
    return 0;
}

static int process_index(lua_State *L) {
    struct lunas_process *p = luaL_checkudata(L, 1, LUNAS_PROCESS);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "pid") == 0) {
        lua_pushinteger(L, p->pid);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_gettable(L, lua_upvalueindex(1));
    return 1;
}

static int process_tostring(lua_State *L) {
    struct lunas_process *p = luaL_checkudata(L, 1, LUNAS_PROCESS);
    lua_pushfstring(L, "process %d%s", (int)p->pid, p->pidfd < 0 ? " (closed)" : "");
    return 1;
}

static void open_process_class(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", process_gc}, {"__close", process_close}, {"__tostring", process_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"wait", process_wait},   {"kill", process_kill},  {"alive", process_alive}, {"fileno", process_fileno},
                                       {"close", process_close}, {NULL, NULL}};
    if (!luaL_newmetatable(L, LUNAS_PROCESS)) {
        lua_pop(L, 1);
        return;
    }
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, process_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

/***
Processes.
@section processes
*/

/***
A handle on an existing process (pidfd_open): wait for its exit, signal it, poll it, join its namespaces.
@function pidfd_open
@tparam integer pid
@treturn process
@error "pidfd_open pid N: message", "ENAME" ("ESRCH": no such process)
*/
static int proc_pidfd_open(lua_State *L) {
    pid_t pid = (pid_t)lunas_check_range(L, 1, 1, "pid", 1, INT32_MAX);
    struct lunas_process *p = new_process(L);
    p->pid = pid;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (p->pidfd < 0) return lunas_push_errorf(L, errno, "pidfd_open pid %d", (int)pid);
    fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
    return 1;
}

/* ---- spawn -------------------------------------------------------------- */

static pid_t clone3_fork(uint64_t flags, int cgroup_fd, int *pidfd) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    if (pidfd) {
        args.flags |= CLONE_PIDFD;
        args.pidfd = (uint64_t)(uintptr_t)pidfd;
    }
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    fflush(NULL); /* the child must not inherit unwritten output */
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    /* clone3 can be missing: valgrind (3.19) answers ENOSYS so glibc falls back, and so does a seccomp filter that
     * wants to see the flags (security.lua's namespaces group). clone(2) with no stack is fork-like and takes
     * the same flags when they fit its 32 bits (not CLONE_NEWTIME, which shares its bit with CSIGNAL, nor
     * CLONE_INTO_CGROUP, which has no clone(2) form); CLONE_PIDFD returns the pidfd through parent_tid. */
    if (pid < 0 && errno == ENOSYS && !(args.flags & ~(uint64_t)0xffffffffu) && !(args.flags & CLONE_NEWTIME))
        pid = (pid_t)syscall(SYS_clone, (unsigned long)(args.flags | SIGCHLD), 0UL, pidfd, NULL, 0UL);
    return pid;
}

static int child_traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs the function at fn_idx in a freshly cloned child and _exits with its result: an integer is the exit
 * code, true/nil mean 0, false means 1, an error is printed and gives CHILD_LUA_ERROR. Never returns, and never
 * lets an error unwind into the parent's frames (which this copy of the Lua state still holds). */
__attribute__((noreturn)) static void child_run_function(lua_State *L, int fn_idx) {
    int code = 0;
    /* A collection marks every object: in a forked copy that write-faults the whole heap page by page. A
     * child lives briefly, so it never collects. */
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, child_traceback);
    lua_pushvalue(L, fn_idx);
    if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
        fprintf(stderr, "lunas: child %d: %s\n", (int)getpid(), lua_tostring(L, -1));
        code = CHILD_LUA_ERROR;
    } else if (lua_isinteger(L, -1)) {
        code = (int)(lua_tointeger(L, -1) & 0xff);
    } else if (lua_isboolean(L, -1)) {
        code = lua_toboolean(L, -1) ? 0 : 1;
    }
    fflush(NULL);
    _exit(code);
}

__attribute__((noreturn)) static void child_exec(const struct exec_request *req, int report_fd) {
    reset_signal_state();
    exec_search(req->file, req->argv, req->envp, req->search);
    int err = errno;
    (void)!write(report_fd, &err, sizeof err);
    _exit(CHILD_EXEC_FAILED);
}

/* After an argv spawn: the CLOEXEC report pipe gives EOF when exec succeeded, or the child's errno. */
static int exec_report(int report_fd) {
    int err = 0;
    ssize_t n;
    do n = read(report_fd, &err, sizeof err);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof err ? err : 0;
}

static const char *const spawn_options[] = {"flags", "fn", "argv", "env", "path", "argv0", "cgroup", "vfork",
                                            "maps", NULL};

/* Entry of a child that shares our memory (vfork-style): it runs the function on its own Lua thread, so the
 * caller's stack and call frames are untouched when it resumes. */
static int shared_child_entry(void *thread) {
    child_run_function(thread, 1);
}

/* A child whose user namespace needs maps from us first: it waits on hold (a byte: released) before it runs
 * anything, with the signal mask it was started with. */
struct held_start {
    lua_State *thread;
    int fn_idx;
    int hold;
    sigset_t mask;
};

static void wait_for_release(int hold) {
    char byte;
    ssize_t n;
    do n = read(hold, &byte, sizeof byte);
    while (n < 0 && errno == EINTR);
    close(hold);
}

static int held_child_entry(void *arg) {
    struct held_start *hs = arg;
    sigprocmask(SIG_SETMASK, &hs->mask, NULL);
    wait_for_release(hs->hold);
    child_run_function(hs->thread, hs->fn_idx);
}

/* "/proc/PID" without stdio: the child may be running in our memory. */
static void proc_path(char *buf, pid_t pid) {
    char digits[16];
    int n = 0;
    memcpy(buf, "/proc/", 6);
    do digits[n++] = (char)('0' + pid % 10), pid /= 10;
    while (pid > 0);
    for (int i = 0; i < n; i++) buf[6 + i] = digits[n - 1 - i];
    buf[6 + n] = '\0';
}

struct map_failure {
    int err;
    const char *file; /* NULL: the maps were written */
};

/* Writes the child's maps, then releases it (closing hold); on failure kills it instead. Only system calls and
 * our own stack: the child may be running in our memory meanwhile. */
static void map_and_release(pid_t pid, int pidfd, int hold, const struct lunas_id_maps *maps, struct map_failure *f) {
    char path[32];
    proc_path(path, pid);
    int dir = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    f->file = NULL;
    if (dir < 0) {
        f->err = errno;
        f->file = "";
    } else {
        if (lunas_write_id_maps(dir, maps, &f->file) < 0) f->err = errno;
        close(dir);
    }
    if (f->file) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    } else {
        /* A byte, not EOF: the child holds a copy of this end too, until it execs. */
        char go = 1;
        ssize_t n;
        do n = write(hold, &go, sizeof go);
        while (n < 0 && errno == EINTR);
    }
    close(hold);
}

/* clone3 cannot take a stack for a CLONE_VM child without a trampoline; clone(2) can, and CLONE_PIDFD and the
 * namespace flags fit its int flags (all but CLONE_INTO_CGROUP, which needs clone3).
 * With maps, the child cannot run vfork-style (we must write its maps while it waits): it shares our memory
 * without CLONE_VFORK, we write the maps and release it, then wait for its exec or exit ourselves (EOF on a
 * pipe only it holds open, close-on-exec), running nothing but system calls meanwhile, every signal blocked. */
static pid_t clone_shared(lua_State *L, int fn_idx, uint64_t flags, int *pidfd, const struct lunas_id_maps *maps,
                          struct map_failure *failure) {
    lua_State *T = lua_newthread(L); /* anchored on L's stack until the caller returns */
    lua_pushvalue(L, fn_idx);
    lua_xmove(L, T, 1);
    int hold[2] = {-1, -1}, done[2] = {-1, -1};
    if (maps && (pipe2(hold, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)) {
        int err = errno;
        for (int i = 0; i < 2; i++)
            if (hold[i] >= 0) close(hold[i]);
        errno = err;
        return -1;
    }
    char *stack = mmap(NULL, PAYLOAD_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    /* The child must not collect: it would free our garbage without the owner's __gc closing descriptors. */
    int collecting = lua_gc(L, LUA_GCISRUNNING);
    lua_gc(L, LUA_GCSTOP);
    /* Dumpable belongs to the memory we share: a reaper in the child may clear it (see proc_reaper). */
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    fflush(NULL);
    pid_t pid;
    if (!maps) {
        pid = clone(shared_child_entry, stack + PAYLOAD_STACK_SIZE,
                    (int)flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, T, pidfd);
    } else {
        struct held_start hs = {.thread = T, .fn_idx = 1, .hold = hold[0]};
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &hs.mask);
        pid = clone(held_child_entry, stack + PAYLOAD_STACK_SIZE, (int)flags | CLONE_VM | CLONE_PIDFD | SIGCHLD, &hs,
                    pidfd);
        int err = errno;
        close(hold[0]);
        close(done[1]);
        if (pid > 0) {
            map_and_release(pid, *pidfd, hold[1], maps, failure);
            char byte;
            ssize_t n;
            do n = read(done[0], &byte, sizeof byte);
            while (n < 0 && errno == EINTR);
        } else {
            close(hold[1]);
        }
        close(done[0]);
        sigprocmask(SIG_SETMASK, &hs.mask, NULL);
        errno = err;
    }
    int err = errno;
    if (dumpable >= 0) prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    if (collecting) lua_gc(L, LUA_GCRESTART);
    munmap(stack, PAYLOAD_STACK_SIZE);
    errno = err;
    return pid;
}

/***
Starts a child, in new namespaces if asked (clone3 with CLONE_PIDFD), running a Lua function or a program.
The child is a copy of the caller (as after fork) that never collects garbage. A function's result is the
child's exit status: an integer is the code, `true` or nothing 0, `false` 1; an error is printed with a traceback
on stderr and gives 125. With `argv`, spawn returns once the exec succeeded, and an exec failure is returned
here (the child is reaped).
@function spawn
@tparam table opts exactly one of `fn` and `argv`:
@tparam[opt] integer|string|table opts.flags the namespaces to create: "user,pid,mount,uts,ipc,net,cgroup,time"
@tparam[opt] function opts.fn runs in the child
@tparam[opt] table opts.argv a program to exec in the child, with `env`, `path` and `argv0` as for `exec`
@tparam[opt] table opts.env (argv only)
@tparam[opt=true] boolean opts.path (argv only)
@tparam[opt] string opts.argv0 (argv only)
@tparam[opt] fd|integer opts.cgroup a cgroup v2 directory (`cgroup_open`): the child is born in it
  (CLONE_INTO_CGROUP), never running a moment outside its limits
@tparam[opt=false] boolean opts.vfork with `fn` and without `cgroup`: the child borrows the caller's memory
  (and the caller sleeps) until it execs or exits. Saves copying the address space, for a child that execs
  promptly and needs nothing from the parent first. (A plain copy in sanitizer builds.)
@tparam[opt] table opts.maps with a user namespace in `flags`: `{uid =, gid =, setgroups =}` as `id_maps` takes
  them, written by the caller before the child runs anything (the child waits for them), vfork-style or not
@treturn process
@error "clone3 FILE: message", "ENAME"; "exec FILE: message", "ENAME" when `argv` could not be executed
*/
static int proc_spawn(lua_State *L) {
    lunas_check_options(L, 1, spawn_options);
    uint64_t flags = 0;
    lunas_opt_field(L, 1, "flags", LUA_TNONE);
    flags = lunas_check_flags(L, -1, 1, lunas_ns_flags, "flags");
    lua_pop(L, 1);
    int has_fn = lunas_opt_field(L, 1, "fn", LUA_TFUNCTION) != LUA_TNIL;
    int fn_idx = lua_gettop(L);
    int has_argv = lunas_opt_field(L, 1, "argv", LUA_TTABLE) != LUA_TNIL;
    int argv_idx = lua_gettop(L);
    if (has_fn == has_argv) return luaL_argerror(L, 1, "exactly one of 'fn' and 'argv' expected");
    struct exec_request req = {0};
    if (has_argv) {
        check_exec_request(L, argv_idx, 1, 1, &req);
    } else {
        for (const char *const *k = (const char *const[]){"env", "path", "argv0", NULL}; *k; k++)
            if (lunas_opt_field(L, 1, *k, LUA_TNONE) != LUA_TNIL) lunas_field_error(L, 1, *k, "only valid with 'argv'");
        lua_pop(L, 3);
    }
    int cgroup_fd = -1;
    if (lunas_opt_field(L, 1, "cgroup", LUA_TNONE) != LUA_TNIL) cgroup_fd = lunas_check_fd(L, -1, 1, "cgroup");
    /* vfork = true: the child borrows our memory until it execs or exits, and we sleep meanwhile. Right for a
     * child that execs promptly and needs nothing from us first; it saves copying the address space. */
    int shared_vm = lunas_opt_boolean(L, 1, "vfork", 0);
    if (shared_vm && (!has_fn || cgroup_fd >= 0))
        return lunas_field_error(L, 1, "vfork", "only with 'fn' and without 'cgroup'");
    shared_vm = shared_vm && SHARED_VM_SUPPORTED;
    struct lunas_id_maps *maps = NULL;
    if (lunas_opt_field(L, 1, "maps", LUA_TNONE) != LUA_TNIL) {
        if (!(flags & CLONE_NEWUSER)) return lunas_field_error(L, 1, "maps", "needs a user namespace in 'flags'");
        maps = lua_newuserdatauv(L, sizeof *maps, 0);
        lunas_check_id_maps(L, lua_gettop(L) - 1, 1, maps);
    }
    struct map_failure failure = {0, NULL};

    struct lunas_process *p = new_process(L);
    int p_idx = lua_gettop(L);
    int report[2] = {-1, -1};
    if (has_argv && pipe2(report, O_CLOEXEC) < 0) return lunas_push_error(L, errno, "spawn", "pipe");
    int pidfd = -1;
    int hold[2] = {-1, -1};
    if (maps && !shared_vm && pipe2(hold, O_CLOEXEC) < 0) return lunas_push_error(L, errno, "spawn", "pipe");
    pid_t pid = shared_vm ? clone_shared(L, fn_idx, flags, &pidfd, maps, &failure) : clone3_fork(flags, cgroup_fd, &pidfd);
    if (pid == 0) {
        if (maps) {
            close(hold[1]);
            wait_for_release(hold[0]);
        }
        if (has_fn) child_run_function(L, fn_idx);
        close(report[0]);
        child_exec(&req, report[1]);
    }
    int saved = errno;
    if (has_argv) close(report[1]);
    if (maps && !shared_vm) {
        close(hold[0]);
        if (pid > 0) map_and_release(pid, pidfd, hold[1], maps, &failure);
        else close(hold[1]);
    }
    if (pid < 0) {
        if (has_argv) close(report[0]);
        return lunas_push_error(L, saved, "clone3", req.file ? req.file : "function");
    }
    p->pid = pid;
    p->pidfd = pidfd;
    if (failure.file) {
        if (has_argv) close(report[0]);
        reap(p, 0);
        close(p->pidfd);
        p->pidfd = -1;
        return failure.file[0] ? lunas_push_errorf(L, failure.err, "write /proc/%d/%s", (int)pid, failure.file)
                               : lunas_push_errorf(L, failure.err, "open /proc/%d", (int)pid);
    }
    if (has_argv) {
        int err = exec_report(report[0]);
        close(report[0]);
        if (err) {
            reap(p, 0);
            close(p->pidfd);
            p->pidfd = -1;
            return lunas_push_error(L, err, "exec", req.file);
        }
    }
    lua_pushvalue(L, p_idx);
    return 1;
}

/* ---- the reaper (PID 1 of a sandbox) ------------------------------------- */
/* Collects the descriptors of opts.close into fds (at most max); the fd objects are marked closed. */
static int collect_close_list(lua_State *L, int opts, int *fds, int max) {
    int n = 0;
    if (lunas_opt_field(L, opts, "close", LUA_TTABLE) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
    if (len > max) lunas_field_error(L, opts, "close", "at most %d descriptors", max);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, i);
        fds[n++] = lunas_check_fd(L, -1, opts, "close");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

/* Forwards signals to the payload and reaps every child until the payload exits; then reports the payload's
 * raw wait status on status_fd and exits with its code (128+N for a signal). */
__attribute__((noreturn)) static void reaper_loop(int sigfd, pid_t payload, int status_fd) {
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sigfd, &si, sizeof si);
        if (n != (ssize_t)sizeof si) {
            if (n < 0 && errno == EINTR) continue;
            _exit(CHILD_LUA_ERROR);
        }
        if (si.ssi_signo != SIGCHLD) {
            kill(payload, (int)si.ssi_signo);
            continue;
        }
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
            if (w != payload) continue;
            if (status_fd >= 0) (void)!write(status_fd, &st, sizeof st);
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
    }
}

struct payload_start {
    lua_State *L;
    int fn_idx;
    sigset_t mask;
};

/* Entry of a payload started vfork-style: it borrows the reaper's memory (and Lua state) until it execs. */
static int payload_entry(void *arg) {
    struct payload_start *ps = arg;
    sigprocmask(SIG_SETMASK, &ps->mask, NULL);
    child_run_function(ps->L, ps->fn_idx);
}


/* Starts the payload. With shared_vm the child runs on its own stack in our address space and we sleep until it
 * execs or exits (CLONE_VFORK): no page tables are copied and no page is duplicated. That is only right for a
 * payload that execs promptly, and only because the reaper never runs Lua again afterwards. */
static pid_t start_payload(lua_State *L, int fn_idx, const sigset_t *mask, int shared_vm) {
    if (!shared_vm) {
        pid_t pid = clone3_fork(0, -1, NULL);
        if (pid == 0) {
            sigprocmask(SIG_SETMASK, mask, NULL);
            child_run_function(L, fn_idx);
        }
        return pid;
    }
    struct payload_start ps = {.L = L, .fn_idx = fn_idx, .mask = *mask};
    char *stack = mmap(NULL, PAYLOAD_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    fflush(NULL);
    pid_t pid = clone(payload_entry, stack + PAYLOAD_STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &ps);
    int err = errno;
    munmap(stack, PAYLOAD_STACK_SIZE);
    errno = err;
    return pid;
}

#define REAPER_MAX_CLOSE 16
#define LUNAS_MFD_EXEC 0x0010U /* MFD_EXEC, Linux 6.3 */

#ifndef LUNAS_NO_REAPER_ELF
extern const unsigned char lunas_reaper_elf[];
extern const size_t lunas_reaper_elf_size;
#endif

/***
The freestanding reaper program (src/reaper.c) in a sealed memfd, for `reaper{image = ...}`. Sealed, so a
payload that reaches /proc/1/exe finds nothing it can write.
@function reaper_image
@treturn fd
@error "reaper_image (built without the reaper program): ...", "EOPNOTSUPP" in a build without it
*/
static int proc_reaper_image(lua_State *L) {
#ifdef LUNAS_NO_REAPER_ELF
    return lunas_push_error(L, ENOTSUP, "reaper_image", "(built without the reaper program)");
#else
    struct lunas_fd *f = lunas_new_fd(L, -1);
    /* Executable on purpose: where vm.memfd_noexec makes memfds non-executable by default (Linux 6.3+), MFD_EXEC
     * asks for an executable one (older kernels do not know the flag: EINVAL, and their memfds are executable). */
    f->fd = memfd_create("lunas-reaper", MFD_CLOEXEC | MFD_ALLOW_SEALING | LUNAS_MFD_EXEC);
    if (f->fd < 0 && errno == EINVAL) f->fd = memfd_create("lunas-reaper", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (f->fd < 0) return lunas_push_error(L, errno, "memfd_create", "lunas-reaper");
    if (lunas_write_all(f->fd, lunas_reaper_elf, lunas_reaper_elf_size) < 0 ||
        fcntl(f->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        return lunas_push_error(L, errno, "reaper_image", "memfd");
    return 1;
#endif
}

/* The image's argv: lunas-reaper STATUS ERRORS FLAGS FILTER NOTIFY HOLD [RULESET] [PROC N (WHAT PATH VALUE)*N]
 * FILE ARGV0 ARGS... (src/reaper.c). */
#define REAPER_FLAG_SEARCH 1
#define REAPER_FLAG_SETSID 2
#define REAPER_FLAG_LISTENER 4
#define REAPER_FLAG_LOG 8
#define REAPER_FLAG_FRAMED 16
#define REAPER_FLAG_LINGER 32
#define REAPER_FLAG_LSM 64
#define REAPER_FLAG_LANDLOCK 128
#define REAPER_MAX_LABELS 4
enum { REAPER_STATUS, REAPER_ERRORS, REAPER_FILTER, REAPER_NOTIFY, REAPER_FDS };

static char *fd_argument(lua_State *L, int fd) {
    return fd >= 0 ? (char *)lua_pushfstring(L, "%d", fd) : "-";
}

#define REAPER_MAX_HOLD 16

struct reaper_labels {
    int ruleset; /* (a Landlock ruleset the payload applies after its labels, or -1) */
    int proc, count;
    const char *text[REAPER_MAX_LABELS][3]; /* what, path, value */
};

static char **reaper_argv(lua_State *L, const struct exec_request *req, const int fds[REAPER_FDS], int flags,
                          const int *hold, int holds, const struct reaper_labels *labels) {
    size_t n = 0;
    while (req->argv[n]) n++;
    size_t extra = (labels->count > 0 ? 2 + 3 * (size_t)labels->count : 0) + (labels->ruleset >= 0 ? 1 : 0);
    char **argv = lua_newuserdatauv(L, (n + 9 + extra) * sizeof(char *), 0);
    argv[0] = "lunas-reaper";
    argv[1] = fd_argument(L, fds[REAPER_STATUS]);
    argv[2] = fd_argument(L, fds[REAPER_ERRORS]);
    argv[3] = (char *)lua_pushfstring(L, "%d", flags);
    argv[4] = fd_argument(L, fds[REAPER_FILTER]);
    argv[5] = fd_argument(L, fds[REAPER_NOTIFY]);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < holds; i++) {
        if (i > 0) luaL_addchar(&b, ',');
        lua_pushfstring(L, "%d", hold[i]);
        luaL_addvalue(&b);
    }
    if (holds == 0) luaL_addchar(&b, '-');
    luaL_pushresult(&b);
    argv[6] = (char *)lua_tostring(L, -1);
    size_t at = 7;
    if (labels->ruleset >= 0) argv[at++] = (char *)lua_pushfstring(L, "%d", labels->ruleset);
    if (labels->count > 0) {
        argv[at++] = (char *)lua_pushfstring(L, "%d", labels->proc);
        argv[at++] = (char *)lua_pushfstring(L, "%d", labels->count);
        for (int i = 0; i < labels->count; i++)
            for (int j = 0; j < 3; j++) argv[at++] = (char *)labels->text[i][j];
    }
    argv[at++] = (char *)req->file;
    memcpy(argv + at, req->argv, (n + 1) * sizeof(char *));
    return argv;
}

/* A string field of a label: no NUL (it travels as an argument), not empty; a path is relative and never climbs. */
static const char *label_text(lua_State *L, int opts, int t, const char *field, int is_path) {
    lua_getfield(L, t, field);
    size_t len;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!s) lunas_field_error(L, opts, "labels", "%s: string expected", field);
    if (len == 0 || strlen(s) != len) lunas_field_error(L, opts, "labels", "%s: a non-empty string without NUL", field);
    if (is_path && (s[0] == '/' || strstr(s, "..") != NULL))
        lunas_field_error(L, opts, "labels", "path: relative to 'proc', without '..'");
    lua_pop(L, 1);
    return s; /* (still referenced by the labels table, which stays on the stack) */
}

/* opts.labels and opts.proc; leaves the labels table on the stack when there is one. */
static void check_reaper_labels(lua_State *L, int opts, struct reaper_labels *labels) {
    if (lunas_opt_field(L, opts, "labels", LUA_TTABLE) == LUA_TNIL) {
        lua_pop(L, 1);
        if (lunas_opt_field(L, opts, "proc", LUA_TNONE) != LUA_TNIL) lunas_field_error(L, opts, "proc", "goes with 'labels'");
        lua_pop(L, 1);
        return;
    }
    int t = lua_gettop(L);
    for (lua_Integer i = 1;; i++) {
        int type = lua_rawgeti(L, t, i);
        if (type == LUA_TNIL) break;
        if (type != LUA_TTABLE) lunas_field_error(L, opts, "labels", "table expected at %d", (int)i);
        if (labels->count == REAPER_MAX_LABELS) lunas_field_error(L, opts, "labels", "at most 4 labels");
        int l = lua_gettop(L);
        labels->text[labels->count][0] = label_text(L, opts, l, "what", 0);
        labels->text[labels->count][1] = label_text(L, opts, l, "path", 1);
        labels->text[labels->count][2] = label_text(L, opts, l, "value", 0);
        labels->count++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the strings stay referenced by opts.labels, which the caller holds */
    if (labels->count == 0) return;
    if (lunas_opt_field(L, opts, "proc", LUA_TNONE) == LUA_TNIL) lunas_field_error(L, opts, "proc", "descriptor expected (with 'labels')");
    labels->proc = lunas_check_fd(L, -1, opts, "proc");
    lua_pop(L, 1);
}

static int optional_fd_field(lua_State *L, int opts, const char *field) {
    int fd = -1;
    if (lunas_opt_field(L, opts, field, LUA_TNONE) != LUA_TNIL) fd = lunas_check_fd(L, -1, opts, field);
    lua_pop(L, 1);
    return fd;
}

/***
Replaces the calling process (PID 1 of a sandbox, already confined as its payload will be) by the freestanding
reaper program of `reaper_image`, which then starts the payload itself: it makes itself untraceable, forks the
payload, confines itself further (no capabilities, no_new_privs, a seccomp filter of its own that allows only
what it still does), and only then lets the payload load its own seccomp program and exec `argv`. So nothing in
the sandbox exists while PID 1 could be traced, and the payload's profile never has to allow what PID 1 needs.
A failure of the payload's filter or exec is written to `errors` as the record a sandbox's error pipe carries
("exec\0#ERRNO\0FILE", "seccomp\0#ERRNO\0..."); on `status` it writes the payload's pid once it runs and its raw
wait status when it ends; it exits with the payload's code, or 128+N for signal N. Every signal is blocked
across the exec, so none is lost.
@function reaper_exec
@tparam fd|integer image from `reaper_image`
@tparam table opts
@tparam table opts.argv the payload's program and arguments
@tparam[opt] table opts.env its environment (default: ours)
@tparam[opt=true] boolean opts.path search PATH (the environment's) for a name without a slash
@tparam[opt] string opts.argv0 what the program sees as argv[0]
@tparam fd|integer opts.errors where a failure record goes (a sandbox's error pipe)
@tparam[opt] fd|integer opts.status gets the payload's pid, then its raw wait status (native ints)
@tparam[opt=false] boolean opts.setsid the payload starts a session of its own
@tparam[opt] fd|integer opts.filter a pipe holding the payload's seccomp program (BPF bytes, the write end closed)
@tparam[opt=false] boolean opts.listener the program has notify rules: its listener goes to `notify`
@tparam[opt] fd|integer opts.notify a socket for the listener (SCM_RIGHTS, as `send_fd`)
@tparam[opt=false] boolean opts.log the program logs what it refuses (SECCOMP_FILTER_FLAG_LOG)
@tparam[opt=false] boolean opts.framed the pipe holds several programs, each after an 8-byte header (its length in
  instructions, a native 32-bit integer, then 4 zero bytes), loaded in order
@tparam[opt=false] boolean opts.linger once the payload has ended (its status written), the reaper stays until no
  process of its own is left (bubblewrap's PID 1), then exits with the payload's code
@tparam[opt] table opts.hold descriptors (at most 16) the reaper keeps open while it lives and the payload never
  gets: locks taken for the sandbox, a descriptor whose closing tells a watcher the sandbox is gone
@tparam[opt] table opts.labels Linux security module labels the payload execs under (at most 4), each
  `{what = TEXT, path = PATH, value = VALUE}`: the payload writes VALUE to PATH (relative, such as
  "thread-self/attr/apparmor/exec") under `proc` just before its exec; a failure comes back on `errors` as
  "lsm\0#ERRNO\0TEXT". The reaper itself keeps its own label.
@tparam[opt] fd|integer opts.proc a directory of a procfs that shows the payload (needed with `labels`)
@tparam[opt] fd|integer opts.landlock a Landlock ruleset (`landlock_ruleset`) the caller has not applied to itself:
  the payload applies it after its labels (a domain would refuse it its attribute files), the reaper before its
  own filter; a failure comes back as "landlock\0#ERRNO\0restrict the payload"
@return only on failure
@error "exec reaper image: message", "ENAME"
*/
static int proc_reaper_exec(lua_State *L) {
    static const char *const allowed[] = {"argv", "env",      "path", "argv0", "errors", "status", "setsid", "filter",
                                          "notify", "listener", "log", "hold", "framed", "linger", "labels", "proc",
                                          "landlock", NULL};
    int image = lunas_check_fd(L, 1, 1, "image");
    luaL_checktype(L, 2, LUA_TTABLE);
    lunas_check_options(L, 2, allowed);
    lua_settop(L, 2);
    int fds[REAPER_FDS];
    if (lunas_opt_field(L, 2, "errors", LUA_TNONE) == LUA_TNIL) return lunas_field_error(L, 2, "errors", "descriptor expected");
    fds[REAPER_ERRORS] = lunas_check_fd(L, -1, 2, "errors");
    fds[REAPER_STATUS] = optional_fd_field(L, 2, "status");
    fds[REAPER_FILTER] = optional_fd_field(L, 2, "filter");
    fds[REAPER_NOTIFY] = optional_fd_field(L, 2, "notify");
    int listener = lunas_opt_boolean(L, 2, "listener", 0);
    if (listener && (fds[REAPER_FILTER] < 0 || fds[REAPER_NOTIFY] < 0))
        return lunas_field_error(L, 2, "listener", "needs 'filter' and 'notify'");
    int flags = (lunas_opt_boolean(L, 2, "setsid", 0) ? REAPER_FLAG_SETSID : 0) |
                (listener ? REAPER_FLAG_LISTENER : 0) | (lunas_opt_boolean(L, 2, "log", 0) ? REAPER_FLAG_LOG : 0) |
                (lunas_opt_boolean(L, 2, "framed", 0) ? REAPER_FLAG_FRAMED : 0) |
                (lunas_opt_boolean(L, 2, "linger", 0) ? REAPER_FLAG_LINGER : 0);
    lua_settop(L, 2);
    if (lunas_opt_field(L, 2, "argv", LUA_TTABLE) == LUA_TNIL) return lunas_field_error(L, 2, "argv", "table expected");
    struct exec_request req;
    check_exec_request(L, lua_gettop(L), 2, 2, &req);
    if (req.search) flags |= REAPER_FLAG_SEARCH;
    int hold[REAPER_MAX_HOLD];
    int holds = 0;
    if (lunas_opt_field(L, 2, "hold", LUA_TTABLE) != LUA_TNIL) {
        int t = lua_gettop(L);
        for (lua_Integer i = 1;; i++) {
            if (lua_rawgeti(L, t, i) == LUA_TNIL) break;
            if (holds == REAPER_MAX_HOLD) return lunas_field_error(L, 2, "hold", "at most 16 descriptors");
            hold[holds++] = lunas_check_fd(L, -1, 2, "hold");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    struct reaper_labels labels = {.ruleset = optional_fd_field(L, 2, "landlock"), .proc = -1, .count = 0};
    check_reaper_labels(L, 2, &labels);
    if (labels.count > 0) flags |= REAPER_FLAG_LSM;
    if (labels.ruleset >= 0) flags |= REAPER_FLAG_LANDLOCK;
    char **argv = reaper_argv(L, &req, fds, flags, hold, holds, &labels);

    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    /* These must survive the exec; the reaper marks them close-on-exec again for the payload. */
    int err = 0;
    for (int i = 0; i < REAPER_FDS && !err; i++)
        if (fds[i] >= 0 && fcntl(fds[i], F_SETFD, 0) < 0) err = errno;
    for (int i = 0; i < holds && !err; i++)
        if (fcntl(hold[i], F_SETFD, 0) < 0) err = errno;
    if (!err && labels.count > 0 && fcntl(labels.proc, F_SETFD, 0) < 0) err = errno;
    if (!err && labels.ruleset >= 0 && fcntl(labels.ruleset, F_SETFD, 0) < 0) err = errno;
    if (!err) {
        fflush(NULL);
        syscall(SYS_execveat, image, "", argv, req.envp, AT_EMPTY_PATH);
        err = errno;
    }
    for (int i = 0; i < REAPER_FDS; i++)
        if (fds[i] >= 0) fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    for (int i = 0; i < holds; i++) fcntl(hold[i], F_SETFD, FD_CLOEXEC);
    if (labels.count > 0) fcntl(labels.proc, F_SETFD, FD_CLOEXEC);
    if (labels.ruleset >= 0) fcntl(labels.ruleset, F_SETFD, FD_CLOEXEC);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return lunas_push_error(L, err, "exec", "reaper image");
}

/***
Makes the calling process (PID 1 of a sandbox) a reaper: runs `fn` in a child (the payload), forwards every
signal to it, reaps every child, and exits with the payload's status once it ends (128+N for signal N).
Every signal is blocked before the payload exists, so none sent in between is lost; the payload gets the old
mask back. The reaper closes its stdio and never prints. (A sandbox whose payload is a program uses
`reaper_exec` instead, where the reaper program is built in.)
@function reaper
@tparam table opts
@tparam function opts.fn the payload
@tparam[opt] fd|integer opts.status gets two native ints: the payload's pid (as seen here) once it runs, and its
  raw wait status when it ends
@tparam[opt] table opts.close descriptors to close once the payload runs (at most 16), such as the parent's
  error pipe
@tparam[opt] boolean opts.subreaper become a child subreaper (default: unless the caller is PID 1)
@tparam[opt=false] boolean opts.exec a promise that `fn` execs at once: it is then started vfork-style
@return only on failure
@error "reaper setup: message", "ENAME"; "clone payload: message", "ENAME"
*/
static int proc_reaper(lua_State *L) {
    static const char *const allowed[] = {"fn", "status", "close", "subreaper", "exec", NULL};
    lunas_check_options(L, 1, allowed);
    if (lunas_opt_field(L, 1, "fn", LUA_TFUNCTION) == LUA_TNIL) return lunas_field_error(L, 1, "fn", "function expected");
    int fn_idx = lua_gettop(L);
    int status_fd = -1;
    if (lunas_opt_field(L, 1, "status", LUA_TNONE) != LUA_TNIL) status_fd = lunas_check_fd(L, -1, 1, "status");
    int subreaper = lunas_opt_boolean(L, 1, "subreaper", getpid() != 1);
    int shared_vm = lunas_opt_boolean(L, 1, "exec", 0) && SHARED_VM_SUPPORTED;
    int close_fds[REAPER_MAX_CLOSE];
    int close_count = collect_close_list(L, 1, close_fds, REAPER_MAX_CLOSE);

    /* Block every signal before the payload exists, so none sent in between is lost; the payload restores
     * its mask, and exec through lunas resets it anyway. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    int sigfd = signalfd(-1, &all, SFD_CLOEXEC);
    if (sigfd < 0 || (subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)) {
        int err = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (sigfd >= 0) close(sigfd);
        return lunas_push_error(L, err, "reaper", "setup");
    }
    pid_t pid = start_payload(L, fn_idx, &old, shared_vm);
    if (pid < 0) {
        int err = errno;
        close(sigfd);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return lunas_push_error(L, err, "clone", "payload");
    }
    /* From here on no Lua: with a shared_vm payload the Lua state is the payload's leftovers. The payload's pid
     * (in our pid namespace) goes first on the status channel, before the error pipe closes. */
    if (status_fd >= 0) {
        int32_t payload_pid = (int32_t)pid;
        (void)!write(status_fd, &payload_pid, sizeof payload_pid);
    }
    for (int i = 0; i < close_count; i++) close(close_fds[i]);
    /* The reaper never prints: holding the caller's stdio would keep a pipe reader waiting for a payload that
     * redirected its own. */
    for (int fd = 0; fd <= 2; fd++)
        if (fd != status_fd) close(fd);
    reaper_loop(sigfd, pid, status_fd);
}

/* ---- process attributes --------------------------------------------------- */

/***
Process attributes.
Exit, ids, session, signals, prctl, resource limits.
@section attributes
*/

/***
Ends the calling process at once (_exit): stdio is flushed, but no Lua cleanup, `__gc` or `__close` runs. What a
child started by `spawn` calls instead of `os.exit`.
@function exit
@tparam[opt=0] integer code the exit status (its low 8 bits)
*/
static int proc_exit(lua_State *L) {
    int code = (int)luaL_optinteger(L, 1, 0);
    fflush(NULL);
    _exit(code & 0xff);
}

/***
The calling process's pid, as its own pid namespace sees it.
@function getpid
@treturn integer
*/
static int proc_getpid(lua_State *L) {
    lua_pushinteger(L, getpid());
    return 1;
}

/***
The parent's pid (0 when the parent is outside our pid namespace).
@function getppid
@treturn integer
*/
static int proc_getppid(lua_State *L) {
    lua_pushinteger(L, getppid());
    return 1;
}

/***
Starts a new session (setsid): no controlling terminal, so the caller's terminal sends the process no signal
and the process cannot make that terminal its own. A terminal it inherits as a descriptor stays usable through
that descriptor (writes, ioctls such as TIOCSTI): the sandbox's seccomp profile is what refuses those.
@function setsid
@treturn integer the session id
@error "setsid: message", "EPERM" for a process group leader
*/
static int proc_setsid(lua_State *L) {
    pid_t sid = setsid();
    if (sid < 0) return lunas_push_error(L, errno, "setsid", NULL);
    lua_pushinteger(L, sid);
    return 1;
}

/***
Joins a new, empty session keyring (KEYCTL_JOIN_SESSION_KEYRING), as runc gives every container: the caller's
own (its login's keys, Kerberos tickets, filesystem keys) is no longer reachable from here or from children.
@function join_session_keyring
@tparam[opt] string name the new keyring's description (default "_ses")
@treturn integer the new keyring's serial number
@error "keyctl join_session_keyring: message", "ENAME" ("ENOSYS" without keyrings in the kernel)
*/
static int proc_join_session_keyring(lua_State *L) {
    const char *name = luaL_optstring(L, 1, NULL);
    if (name && (strlen(name) == 0 || strlen(name) > 255)) return lunas_field_error(L, 1, "name", "1 to 255 bytes expected");
    long id = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name);
    if (id < 0) return lunas_push_error(L, errno, "keyctl", "join_session_keyring");
    lua_pushinteger(L, id);
    return 1;
}

/***
Empties the signal mask and resets every signal's disposition to the default, as before an exec (including
signals 32 and 33, which glibc's sigaction refuses to touch).
@function reset_signals
@treturn boolean true
*/
static int proc_reset_signals(lua_State *L) {
    reset_signal_state();
    lua_pushboolean(L, 1);
    return 1;
}

/* Drops each named capability from the bounding set: after exec no process here can hold it again. */
static int drop_bounding(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return lunas_field_error(L, 1, "capbset_drop", "table of names expected");
    uint64_t mask = lunas_check_capabilities(L, idx, 1, "capbset_drop");
    for (int cap = 0; cap < 64; cap++) {
        if ((mask & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return lunas_push_errorf(L, errno, "prctl capbset_drop %d", cap);
    }
    return 0;
}

static int prctl_set_one(lua_State *L, const char *key, int idx) {
    int r = 0;
    if (strcmp(key, "no_new_privs") == 0) {
        if (!lua_toboolean(L, idx)) return lunas_field_error(L, 1, key, "no_new_privs can only be set to true");
        r = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    } else if (strcmp(key, "pdeathsig") == 0) {
        r = prctl(PR_SET_PDEATHSIG, lunas_check_signal(L, idx, 1, key), 0, 0, 0);
    } else if (strcmp(key, "child_subreaper") == 0) {
        r = prctl(PR_SET_CHILD_SUBREAPER, lua_toboolean(L, idx), 0, 0, 0);
    } else if (strcmp(key, "dumpable") == 0) {
        r = prctl(PR_SET_DUMPABLE, lua_toboolean(L, idx), 0, 0, 0);
    } else if (strcmp(key, "capbset_drop") == 0) {
        return drop_bounding(L, idx);
    } else if (strcmp(key, "name") == 0) {
        size_t len;
        const char *name = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
        if (!name || len > 15 || strlen(name) != len) return lunas_field_error(L, 1, key, "string of at most 15 bytes expected");
        r = prctl(PR_SET_NAME, name, 0, 0, 0);
    }
    if (r < 0) return lunas_push_errorf(L, errno, "prctl %s", key);
    return 0;
}

/***
Sets process attributes (prctl), in the order of the fields below.
@function prctl
@tparam table opts
@tparam[opt] boolean opts.no_new_privs only `true`: exec can never grant privileges again (setuid, file
  capabilities); needed by seccomp and Landlock without CAP_SYS_ADMIN
@tparam[opt] integer|string opts.pdeathsig the signal this process gets when its parent thread dies
@tparam[opt] boolean opts.child_subreaper orphaned descendants are reparented to this process
@tparam[opt] boolean opts.dumpable false: no core dumps, and no ptrace or /proc access by same-uid processes
@tparam[opt] string opts.name the thread name (comm), at most 15 bytes
@tparam[opt] table opts.capbset_drop capability names to drop from the bounding set
@treturn boolean true
@error "prctl FIELD: message", "ENAME"
*/
static int proc_prctl(lua_State *L) {
    static const char *const allowed[] = {"no_new_privs", "pdeathsig", "child_subreaper", "dumpable", "name",
                                          "capbset_drop", NULL};
    lunas_check_options(L, 1, allowed);
    for (const char *const *k = allowed; *k; k++) {
        int t = lua_getfield(L, 1, *k);
        if (t != LUA_TNIL) {
            int takes_boolean = strcmp(*k, "pdeathsig") != 0 && strcmp(*k, "name") != 0 && strcmp(*k, "capbset_drop") != 0;
            if (takes_boolean && t != LUA_TBOOLEAN)
                return lunas_field_error(L, 1, *k, "boolean expected, got %s", luaL_typename(L, -1));
            int n = prctl_set_one(L, *k, lua_gettop(L));
            if (n) return n;
        }
        lua_pop(L, 1);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Reads one process attribute set by `prctl`.
@function prctl_get
@tparam string name "no_new_privs", "pdeathsig", "child_subreaper", "dumpable" or "name"
@treturn boolean|integer|string a boolean; the signal number for pdeathsig (0: none); the name for name
@error "prctl NAME: message", "ENAME"
*/
static int proc_prctl_get(lua_State *L) {
    static const char *const names[] = {"no_new_privs", "pdeathsig", "child_subreaper", "dumpable", "name", NULL};
    int which = luaL_checkoption(L, 1, NULL, names);
    int value = 0;
    char name[17] = {0};
    int r = 0;
    switch (which) {
    case 0: r = value = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); break;
    case 1: r = prctl(PR_GET_PDEATHSIG, &value, 0, 0, 0); break;
    case 2: r = prctl(PR_GET_CHILD_SUBREAPER, &value, 0, 0, 0); break;
    case 3: r = value = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); break;
    default: r = prctl(PR_GET_NAME, name, 0, 0, 0); break;
    }
    if (r < 0) return lunas_push_errorf(L, errno, "prctl %s", names[which]);
    if (which == 4) lua_pushstring(L, name);
    else if (which == 1) lua_pushinteger(L, value);
    else lua_pushboolean(L, value);
    return 1;
}

static const struct lunas_flag rlimit_names[] = {
    {"as", RLIMIT_AS},         {"core", RLIMIT_CORE},       {"cpu", RLIMIT_CPU},           {"data", RLIMIT_DATA},
    {"fsize", RLIMIT_FSIZE},   {"locks", RLIMIT_LOCKS},     {"memlock", RLIMIT_MEMLOCK},   {"msgqueue", RLIMIT_MSGQUEUE},
    {"nice", RLIMIT_NICE},     {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO}, {"rttime", RLIMIT_RTTIME},   {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
    {NULL, 0},
};

static rlim_t check_rlim(lua_State *L, int arg, const char *field) {
    if (lua_type(L, arg) == LUA_TSTRING) {
        const char *s = lua_tostring(L, arg);
        if (strcmp(s, "unlimited") == 0 || strcmp(s, "infinity") == 0) return RLIM_INFINITY;
        return (rlim_t)lunas_field_error(L, arg, field, "number or 'unlimited' expected, got '%s'", s);
    }
    if (lua_type(L, arg) == LUA_TNUMBER && !lua_isinteger(L, arg) && isinf(lua_tonumber(L, arg)) &&
        lua_tonumber(L, arg) > 0)
        return RLIM_INFINITY;
    return (rlim_t)lunas_check_range(L, arg, arg, field, 0, LUA_MAXINTEGER);
}

static void push_rlim(lua_State *L, rlim_t v) {
    if (v == RLIM_INFINITY) lua_pushnumber(L, HUGE_VAL);
    else lua_pushinteger(L, (lua_Integer)v);
}

/***
Sets a resource limit (prlimit) of this process or another.
@function setrlimit
@tparam string resource as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio,
  rttime, sigpending or stack
@tparam integer|string soft a number, "unlimited" (or "infinity") or `math.huge`
@tparam[opt=soft] integer|string hard likewise; a soft limit above it raises
@tparam[opt] integer pid another process (default: this one)
@treturn boolean true
@error "setrlimit NAME: message", "ENAME"
*/
static int proc_setrlimit(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    int resource = (int)lunas_check_flag_name(L, 1, name, rlimit_names, "resource");
    struct rlimit rl;
    rl.rlim_cur = check_rlim(L, 2, "soft");
    rl.rlim_max = lua_isnoneornil(L, 3) ? rl.rlim_cur : check_rlim(L, 3, "hard");
    if (rl.rlim_cur > rl.rlim_max) return lunas_field_error(L, 2, "soft", "greater than the hard limit");
    pid_t pid = lua_isnoneornil(L, 4) ? 0 : (pid_t)lunas_check_range(L, 4, 4, "pid", 1, INT32_MAX);
    if (prlimit(pid, (enum __rlimit_resource)resource, &rl, NULL) < 0) return lunas_push_errorf(L, errno, "setrlimit %s", name);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Reads a resource limit (prlimit).
@function getrlimit
@tparam string resource as for `setrlimit`
@tparam[opt] integer pid another process (default: this one)
@treturn number the soft limit (`math.huge` for unlimited)
@treturn number the hard limit
@error "getrlimit NAME: message", "ENAME"
*/
static int proc_getrlimit(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    int resource = (int)lunas_check_flag_name(L, 1, name, rlimit_names, "resource");
    pid_t pid = lua_isnoneornil(L, 2) ? 0 : (pid_t)lunas_check_range(L, 2, 2, "pid", 1, INT32_MAX);
    struct rlimit rl;
    if (prlimit(pid, (enum __rlimit_resource)resource, NULL, &rl) < 0) return lunas_push_errorf(L, errno, "getrlimit %s", name);
    push_rlim(L, rl.rlim_cur);
    push_rlim(L, rl.rlim_max);
    return 2;
}

static const struct lunas_flag personas[] = {{"linux", PER_LINUX}, {"linux32", PER_LINUX32}, {NULL, 0}};

/***
Sets the execution domain of this process (personality(2)), which its children and the programs it execs keep:
"linux32" makes `uname -m` answer "i686" on x86_64, as `setarch i686` and OCI's linux.personality do. The whole
persona is replaced, flags such as ADDR_NO_RANDOMIZE included.
@function personality
@tparam string|integer domain "linux" (PER_LINUX) or "linux32" (PER_LINUX32), or a persona as an integer (a
  domain with flags), 0 to 0xfffffffe (0xffffffff is the kernel's query, not a persona)
@treturn boolean true
@treturn integer the previous persona
@error "personality 0xPERSONA: message", "ENAME" (a seccomp filter can refuse it)
*/
static int proc_personality(lua_State *L) {
    unsigned long persona;
    if (lua_type(L, 1) == LUA_TSTRING)
        persona = (unsigned long)lunas_check_flag_name(L, 1, lua_tostring(L, 1), personas, "domain");
    else
        persona = (unsigned long)lunas_check_range(L, 1, 1, "domain", 0, 0xfffffffe);
    /* The raw call: glibc's wrapper never reports a failure (it takes any result for a persona). A persona is 32
     * bits, so a negative result is an error. */
    long previous = syscall(SYS_personality, persona);
    if (previous < 0) return lunas_push_errorf(L, errno, "personality 0x%lx", persona);
    lua_pushboolean(L, 1);
    lua_pushinteger(L, previous);
    return 2;
}

static id_t check_id_or_keep(lua_State *L, int arg, const char *field) {
    if (lua_isnoneornil(L, arg)) return (id_t)-1;
    return (id_t)lunas_check_range(L, arg, arg, field, 0, UINT32_MAX - 1);
}

/***
Sets the real, effective and saved user ids (setresuid); nil keeps one.
@function setresuid
@tparam[opt] integer ruid
@tparam[opt] integer euid
@tparam[opt] integer suid
@treturn boolean true
@error "setresuid: message", "ENAME"
*/
static int proc_setresuid(lua_State *L) {
    uid_t r = check_id_or_keep(L, 1, "ruid"), e = check_id_or_keep(L, 2, "euid"), s = check_id_or_keep(L, 3, "suid");
    if (setresuid(r, e, s) < 0) return lunas_push_error(L, errno, "setresuid", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Sets the real, effective and saved group ids (setresgid); nil keeps one.
@function setresgid
@tparam[opt] integer rgid
@tparam[opt] integer egid
@tparam[opt] integer sgid
@treturn boolean true
@error "setresgid: message", "ENAME"
*/
static int proc_setresgid(lua_State *L) {
    gid_t r = check_id_or_keep(L, 1, "rgid"), e = check_id_or_keep(L, 2, "egid"), s = check_id_or_keep(L, 3, "sgid");
    if (setresgid(r, e, s) < 0) return lunas_push_error(L, errno, "setresgid", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Sets the supplementary groups (setgroups); `{}` empties them. In a user namespace this needs its setgroups file
to say "allow" (see `id_maps`).
@function setgroups
@tparam table groups an array of gids
@treturn boolean true
@error "setgroups: message", "ENAME"
*/
static int proc_setgroups(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n > NGROUPS_MAX) return lunas_field_error(L, 1, "groups", "at most %d groups", NGROUPS_MAX);
    gid_t *groups = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(gid_t), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        groups[i - 1] = (gid_t)lunas_check_range(L, -1, 1, "groups", 0, UINT32_MAX - 1);
        lua_pop(L, 1);
    }
    if (setgroups((size_t)n, groups) < 0) return lunas_push_error(L, errno, "setgroups", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The user and group ids of the calling process.
@function ids
@treturn table `{uid, euid, suid, gid, egid, sgid, groups = {gid, ...}}`
*/
static int proc_ids(lua_State *L) {
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    lua_createtable(L, 0, 7);
    const struct {
        const char *name;
        lua_Integer v;
    } ids[] = {{"uid", ru}, {"euid", eu}, {"suid", su}, {"gid", rg}, {"egid", eg}, {"sgid", sg}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        lua_pushinteger(L, ids[i].v);
        lua_setfield(L, -2, ids[i].name);
    }
    gid_t groups[NGROUPS_MAX];
    int n = getgroups(NGROUPS_MAX, groups);
    lua_createtable(L, n > 0 ? n : 0, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, groups[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "groups");
    return 1;
}

/***
Descriptors and directories.
Pipes, sockets, opening and closing, passing descriptors, the working directory.
@section descriptors
*/

/***
A pipe (pipe2 with O_CLOEXEC).
@function pipe
@tparam[opt] table opts
@tparam[opt=false] boolean opts.nonblock O_NONBLOCK on both ends
@treturn fd the read end
@treturn fd the write end
@error "pipe: message", "ENAME"
*/
static int proc_pipe(lua_State *L) {
    static const char *const allowed[] = {"nonblock", NULL};
    int nonblock = 0;
    if (!lua_isnoneornil(L, 1)) {
        lunas_check_options(L, 1, allowed);
        nonblock = lunas_opt_boolean(L, 1, "nonblock", 0);
    }
    struct lunas_fd *r = lunas_new_fd(L, -1), *w = lunas_new_fd(L, -1);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)) < 0) return lunas_push_error(L, errno, "pipe", NULL);
    r->fd = fds[0];
    w->fd = fds[1];
    return 2;
}

/***
A pair of connected unix sockets (socketpair AF_UNIX, close-on-exec): what `send_fd` and `recv_fd` need.
@function socketpair
@tparam[opt="stream"] string type "stream", "dgram" or "seqpacket"
@treturn fd
@treturn fd
@error "socketpair: message", "ENAME"
*/
static int proc_socketpair(lua_State *L) {
    static const char *const types[] = {"stream", "dgram", "seqpacket", NULL};
    static const int type_values[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    int type = type_values[luaL_checkoption(L, 1, "stream", types)];
    struct lunas_fd *a = lunas_new_fd(L, -1), *b = lunas_new_fd(L, -1);
    int fds[2];
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) < 0) return lunas_push_error(L, errno, "socketpair", NULL);
    a->fd = fds[0];
    b->fd = fds[1];
    return 2;
}

/* The address of a unix socket path (argument 1), checked: non-empty, no NUL, room for its terminator. */
static void check_unix_address(lua_State *L, struct sockaddr_un *addr) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (len == 0 || strlen(path) != len)
        lunas_field_error(L, 1, "path", len ? "contains a NUL byte" : "empty path");
    if (len >= sizeof addr->sun_path)
        lunas_field_error(L, 1, "path", "%zu bytes: a unix socket path holds at most %zu", len,
                          sizeof addr->sun_path - 1);
    memcpy(addr->sun_path, path, len);
}

static const char *const unix_types[] = {"stream", "seqpacket", "dgram", NULL};
static const int unix_type_values[] = {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM};

/***
Connects to a unix socket at a path in the file system (socket AF_UNIX, close-on-exec, then connect): an OCI
`--console-socket`, a seccomp agent's `listenerPath`.
@function unix_connect
@tparam string path at most 107 bytes, the room of sun_path with its terminating NUL
@tparam[opt="stream"] string type "stream", "seqpacket" or "dgram" (the listener's type: another is refused
  with EPROTOTYPE)
@treturn fd the connected socket
@error "connect PATH: message", "ENAME" ("ECONNREFUSED" with no listener, "ENOENT" with no socket there)
*/
static int proc_unix_connect(lua_State *L) {
    struct sockaddr_un addr;
    check_unix_address(L, &addr);
    int type = unix_type_values[luaL_checkoption(L, 2, "stream", unix_types)];
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (f->fd < 0) return lunas_push_error(L, errno, "socket", addr.sun_path);
    /* connect waits only while the listener's backlog is full; a signal leaves the socket unconnected, so
     * connecting again is right (interrupt_catch's handlers do not restart calls). */
    int r;
    do r = connect(f->fd, (const struct sockaddr *)&addr, sizeof addr);
    while (r < 0 && errno == EINTR && !lunas_interrupt_pending());
    if (r < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (r < 0) return lunas_push_error(L, errno, "connect", addr.sun_path);
    return 1;
}

/***
A unix socket listening at a path (socket AF_UNIX, close-on-exec, bind, listen): the receiving end of an OCI
console socket or a seccomp agent. The socket file is made with the caller's umask and stays when the socket
is closed: remove it.
@function unix_listen
@tparam string path at most 107 bytes; nothing may be there yet
@tparam[opt="stream"] string type "stream" or "seqpacket"
@treturn fd the listening socket; `unix_accept` takes its connections
@error "bind PATH: message", "ENAME" ("EADDRINUSE" when something is there)
*/
static int proc_unix_listen(lua_State *L) {
    struct sockaddr_un addr;
    check_unix_address(L, &addr);
    int choice = luaL_checkoption(L, 2, "stream", unix_types);
    if (unix_type_values[choice] == SOCK_DGRAM) return lunas_field_error(L, 2, "type", "a datagram socket has no listener");
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = socket(AF_UNIX, unix_type_values[choice] | SOCK_CLOEXEC, 0);
    if (f->fd < 0) return lunas_push_error(L, errno, "socket", addr.sun_path);
    if (bind(f->fd, (const struct sockaddr *)&addr, sizeof addr) < 0) return lunas_push_error(L, errno, "bind", addr.sun_path);
    if (listen(f->fd, 16) < 0) return lunas_push_error(L, errno, "listen", addr.sun_path);
    return 1;
}

/***
Takes the next connection of a listening unix socket (accept4, close-on-exec), waiting for one.
@function unix_accept
@tparam fd|integer socket from `unix_listen`
@tparam[opt] number timeout seconds (0 or more); without it, waits for ever
@treturn fd the connection
@error "accept fd N: message", "ENAME" ("ETIMEDOUT" when none came in time)
*/
static int proc_unix_accept(lua_State *L) {
    int sock = lunas_check_fd(L, 1, 1, "socket");
    double timeout = luaL_optnumber(L, 2, -1);
    if (!(timeout == -1 || timeout >= 0)) return lunas_field_error(L, 2, "timeout", "seconds (>= 0) expected");
    struct lunas_fd *f = lunas_new_fd(L, -1);
    struct pollfd ready = {.fd = sock, .events = POLLIN};
    int r = lunas_poll(&ready, 1, lunas_timeout_ms(timeout));
    if (r < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (r < 0) return lunas_push_errorf(L, errno, "accept fd %d", sock);
    if (r == 0) return lunas_push_errorf(L, ETIMEDOUT, "accept fd %d", sock);
    /* (a unix connection stays queued even when its peer has closed: what poll saw, accept takes) */
    do f->fd = accept4(sock, NULL, NULL, SOCK_CLOEXEC);
    while (f->fd < 0 && errno == EINTR && !lunas_interrupt_pending());
    if (f->fd < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (f->fd < 0) return lunas_push_errorf(L, errno, "accept fd %d", sock);
    return 1;
}

/***
Closes every descriptor from `first` to `last` (close_range), or marks them close-on-exec.
@function close_range
@tparam integer first
@tparam[opt] integer last default: the highest possible
@tparam[opt] table opts
@tparam[opt=false] boolean opts.cloexec mark them close-on-exec instead of closing them: a pipe that must live
  until a successful exec closes then
@treturn boolean true
@error "close_range: message", "ENAME"
*/
static int proc_close_range(lua_State *L) {
    static const char *const allowed[] = {"cloexec", NULL};
    unsigned first = (unsigned)lunas_check_range(L, 1, 1, "first", 0, UINT32_MAX);
    unsigned last = lua_isnoneornil(L, 2) ? ~0U : (unsigned)lunas_check_range(L, 2, 2, "last", 0, UINT32_MAX);
    unsigned flags = 0;
    if (!lua_isnoneornil(L, 3)) {
        lunas_check_options(L, 3, allowed);
        if (lunas_opt_boolean(L, 3, "cloexec", 0)) flags |= CLOSE_RANGE_CLOEXEC;
    }
    if (last < first) return lunas_field_error(L, 2, "last", "smaller than first");
    if (syscall(SYS_close_range, first, last, flags) < 0) return lunas_push_error(L, errno, "close_range", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Opens a file, always close-on-exec and never as a controlling terminal.
@function open
@tparam string path
@tparam[opt="r"] string mode "r" read; "w" write, created (0644) and truncated; "a" append, created; "rw" read and
  write, not created
@treturn fd
@error "open PATH: message", "ENAME"
*/
static int proc_open(lua_State *L) {
    static const char *const modes[] = {"r", "w", "a", "rw", NULL};
    static const int mode_flags[] = {O_RDONLY, O_WRONLY | O_CREAT | O_TRUNC, O_WRONLY | O_CREAT | O_APPEND, O_RDWR};
    const char *path = luaL_checkstring(L, 1);
    int flags = mode_flags[luaL_checkoption(L, 2, "r", modes)];
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = open(path, flags | O_CLOEXEC | O_NOCTTY, 0644);
    if (f->fd < 0) return lunas_push_error(L, errno, "open", path);
    return 1;
}

/***
The working directory.
@function getcwd
@treturn string
@error "getcwd: message", "ENAME" (ENOENT when it was removed or lies outside the root)
*/
static int proc_getcwd(lua_State *L) {
    char buf[PATH_MAX];
    if (!getcwd(buf, sizeof buf)) return lunas_push_error(L, errno, "getcwd", NULL);
    lua_pushstring(L, buf);
    return 1;
}

/***
Changes the working directory. A descriptor (fchdir) reaches a directory that a path in another mount namespace
would not name.
@function chdir
@tparam string|fd dir a path or a directory descriptor
@treturn boolean true
@error "chdir DIR: message", "ENAME"
*/
static int proc_chdir(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING) {
        int fd = lunas_check_fd(L, 1, 1, "dir");
        if (fchdir(fd) < 0) return lunas_push_errorf(L, errno, "chdir fd %d", fd);
    } else {
        const char *dir = lua_tostring(L, 1);
        if (chdir(dir) < 0) return lunas_push_error(L, errno, "chdir", dir);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Sets the file mode creation mask and returns the previous one (a sandbox's tree is built with 0, so that every
mode it gives is the mode the file gets).
@function umask
@tparam integer mask 0-0777
@treturn integer the previous mask
*/
static int proc_umask(lua_State *L) {
    mode_t mask = (mode_t)lunas_check_range(L, 1, 1, "mask", 0, 0777);
    lua_pushinteger(L, (lua_Integer)umask(mask));
    return 1;
}

/***
Changes the root directory of this process (chroot); needs CAP_SYS_CHROOT over its user namespace. Sandboxes use
`pivot_root` instead.
@function chroot
@tparam string path
@treturn boolean true
@error "chroot PATH: message", "ENAME"
*/
static int proc_chroot(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    if (chroot(dir) < 0) return lunas_push_error(L, errno, "chroot", dir);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Makes `target` a copy of `fd`, without close-on-exec: what stdio redirection before an exec needs. With
`fd == target`, clears close-on-exec on it, so it survives the exec.
@function dup2
@tparam fd|integer fd
@tparam integer target
@treturn boolean true
@error "dup2 fd N to M: message", "ENAME"
*/
static int proc_dup2(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "fd");
    int target = (int)lunas_check_range(L, 2, 2, "target", 0, INT32_MAX);
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) return lunas_push_errorf(L, errno, "dup2 fd %d", fd);
    } else if (dup2(fd, target) < 0) {
        return lunas_push_errorf(L, errno, "dup2 fd %d to %d", fd, target);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Whether a descriptor is a terminal: progress lines go to a terminal only, never into a pipe or a log.
@function isatty
@tparam fd|integer fd
@treturn boolean
*/
static int proc_isatty(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "fd");
    lua_pushboolean(L, isatty(fd));
    return 1;
}

/* What send_fd sends beside the descriptor, and what recv_fd takes: room for an OCI seccomp agent's container
 * process state (a JSON document with the container's annotations). go-runc's console socket reads fewer than
 * 4096 bytes (runc's "/dev/ptmx") with exactly one SCM_RIGHTS message of CMSG_SPACE(sizeof(int)). */
#define FD_DATA_MAX 65536

/***
Passes a descriptor over a unix socket (SCM_RIGHTS): one control message carrying one descriptor, with 1 to
65536 bytes of data (an OCI console socket takes the terminal's name: runc sends "/dev/ptmx"; a seccomp agent
the container's process state).
@function send_fd
@tparam fd|integer socket
@tparam fd|integer fd
@tparam[opt="f"] string data 1 to 65536 bytes sent with it
@treturn boolean true
@error "send_fd N: message", "ENAME"
*/
static int proc_send_fd(lua_State *L) {
    int sock = lunas_check_fd(L, 1, 1, "socket");
    int fd = lunas_check_fd(L, 2, 2, "fd");
    size_t len = 1;
    const char *data = "f";
    if (!lua_isnoneornil(L, 3)) {
        if (lua_type(L, 3) != LUA_TSTRING)
            return lunas_field_error(L, 3, "data", "string expected, got %s", luaL_typename(L, 3));
        data = lua_tolstring(L, 3, &len);
        if (len < 1 || len > FD_DATA_MAX)
            return lunas_field_error(L, 3, "data", "length %zu, not 1 to %d", len, FD_DATA_MAX);
    }
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    ssize_t r;
    do r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) return lunas_push_errorf(L, errno, "send_fd %d", fd);
    /* A stream socket short of buffer space may take part of the data: the rest follows, without the descriptor. */
    if ((size_t)r < len && lunas_write_all(sock, data + r, len - (size_t)r) < 0)
        return lunas_push_errorf(L, errno, "send_fd %d", fd);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Receives a descriptor sent by `send_fd`, with the data that came with it.
@function recv_fd
@tparam fd|integer socket
@treturn fd a new descriptor, close-on-exec
@treturn string the data sent with it, up to 65537 bytes (on a stream socket, bytes written before the message,
  without a descriptor, come first)
@error "recv_fd ...: message", "ENAME"; "ENOMSG" when the message carried none or the peer closed
*/
static int proc_recv_fd(lua_State *L) {
    int sock = lunas_check_fd(L, 1, 1, "socket");
    struct lunas_fd *obj = lunas_new_fd(L, -1);
    luaL_Buffer b;
    char *data = luaL_buffinitsize(L, &b, FD_DATA_MAX + 1);
    struct iovec iov = {.iov_base = data, .iov_len = FD_DATA_MAX + 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct pollfd ready = {.fd = sock, .events = POLLIN};
    if (lunas_poll(&ready, 1, -1) < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    ssize_t r;
    do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR && !lunas_interrupt_pending());
    if (r < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (r < 0) return lunas_push_error(L, errno, "recv_fd", NULL);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS || cmsg->cmsg_len != CMSG_LEN(sizeof(int)))
        return lunas_push_error(L, ENOMSG, "recv_fd", r == 0 ? "peer closed" : "no descriptor in the message");
    memcpy(&obj->fd, CMSG_DATA(cmsg), sizeof(int));
    luaL_pushresultsize(&b, (size_t)r);
    return 2;
}

/***
Processes.
@section processes
*/

/***
Reads another process's memory (process_vm_readv): what a seccomp supervisor needs to see the pointer arguments
of a held call. Ptrace access rules apply.
@function process_read
@tparam integer pid
@tparam integer address
@tparam integer length at most 1 MiB
@treturn string the bytes read (fewer than `length` when the range ends in unmapped memory)
@error "process_read pid N at 0xADDR: message", "ENAME"
*/
static int proc_process_read(lua_State *L) {
    pid_t pid = (pid_t)lunas_check_range(L, 1, 1, "pid", 1, INT32_MAX);
    luaL_argcheck(L, lua_isinteger(L, 2), 2, "address (integer) expected");
    uintptr_t address = (uintptr_t)lua_tointeger(L, 2);
    size_t length = (size_t)lunas_check_range(L, 3, 3, "length", 0, 1 << 20);
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, length);
    struct iovec local = {.iov_base = buf, .iov_len = length};
    struct iovec remote = {.iov_base = (void *)address, .iov_len = length};
    ssize_t got = length ? process_vm_readv(pid, &local, 1, &remote, 1, 0) : 0;
    if (got < 0) return lunas_push_errorf(L, errno, "process_read pid %d at 0x%llx", (int)pid, (unsigned long long)address);
    luaL_pushresultsize(&b, (size_t)got);
    return 1;
}

/***
Sends a signal to one process by pid (kill), never to a group: a pid below 1 raises (-1 would be every process).
Prefer a handle's `kill`, which no reused pid can misdirect; this is for processes without one, such as those of
a frozen v1 cgroup, which cannot exit (and so cannot be replaced by another pid) until thawed.
@function kill
@tparam integer pid
@tparam integer|string signal
@treturn boolean true
@error "kill pid N: message", "ENAME"
*/
static int proc_kill(lua_State *L) {
    pid_t pid = (pid_t)lunas_check_range(L, 1, 1, "pid", 1, INT32_MAX);
    int sig = lunas_check_signal(L, 2, 2, "signal");
    if (kill(pid, sig) < 0) return lunas_push_errorf(L, errno, "kill pid %d", (int)pid);
    lua_pushboolean(L, 1);
    return 1;
}

void lunas_open_proc(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"spawn", proc_spawn},
        {"kill", proc_kill},
        {"exec", proc_exec},
        {"pidfd_open", proc_pidfd_open},
        {"reaper", proc_reaper},
        {"reaper_image", proc_reaper_image},
        {"reaper_exec", proc_reaper_exec},
        {"exit", proc_exit},
        {"getpid", proc_getpid},
        {"getppid", proc_getppid},
        {"setsid", proc_setsid},
        {"join_session_keyring", proc_join_session_keyring},
        {"reset_signals", proc_reset_signals},
        {"prctl", proc_prctl},
        {"prctl_get", proc_prctl_get},
        {"setrlimit", proc_setrlimit},
        {"getrlimit", proc_getrlimit},
        {"personality", proc_personality},
        {"setresuid", proc_setresuid},
        {"setresgid", proc_setresgid},
        {"setgroups", proc_setgroups},
        {"ids", proc_ids},
        {"pipe", proc_pipe},
        {"socketpair", proc_socketpair},
        {"unix_connect", proc_unix_connect},
        {"unix_listen", proc_unix_listen},
        {"unix_accept", proc_unix_accept},
        {"close_range", proc_close_range},
        {"open", proc_open},
        {"chdir", proc_chdir},
        {"umask", proc_umask},
        {"chroot", proc_chroot},
        {"getcwd", proc_getcwd},
        {"dup2", proc_dup2},
        {"isatty", proc_isatty},
        {"send_fd", proc_send_fd},
        {"recv_fd", proc_recv_fd},
        {"process_read", proc_process_read},
        {NULL, NULL},
    };
    open_process_class(L);
    luaL_setfuncs(L, functions, 0);
}
