/* lunas.h: helpers shared by every area of the lunas core.
 *
 * Conventions (see ARCHITECTURE.md):
 *  - misuse raises through luaL_argerror, naming the bad field;
 *  - system failures return nil, "op target: message", "ENAME";
 *  - flags accept an integer, a comma string or a table of names;
 *  - option tables are strict: an unknown key is an error. */
#ifndef LUNAS_H
#define LUNAS_H

#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include <lauxlib.h>
#include <lua.h>

#define LUNAS_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------- */

/* "ENOENT" for ENOENT; "E<number>" for an errno without a known name. */
const char *lunas_errno_name(int err);
/* errno for a name ("ENOENT"), or -1 when unknown. */
int lunas_errno_from_name(const char *name);
/* Push {ENAME = number} and {NAME = signal number} for the module's errno and signals tables. */
void lunas_push_errno_table(lua_State *L);
void lunas_push_signal_table(lua_State *L);
/* Pushes nil, "op target: strerror(err)", "ENAME" and returns 3. target may be NULL. */
int lunas_push_error(lua_State *L, int err, const char *op, const char *target);
/* Same, with a printf-formatted "op target" part. */
int lunas_push_errorf(lua_State *L, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Raises "bad argument #arg to 'fn' (field 'field': <message>)". Never returns. */
int lunas_field_error(lua_State *L, int arg, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- flags -------------------------------------------------------------- */

struct lunas_flag {
    const char *name;
    uint64_t value;
};

/* The checkers below read the value at stack slot idx and, on misuse, raise "bad argument #arg ... (field
 * 'field': ...)": arg is the argument to blame (the options table when idx holds one of its fields). */

/* Parses the value at idx (none/nil -> 0, integer, "a,b" string, or a table of names) against a NULL-terminated
 * table. Unknown names raise naming `field`. */
uint64_t lunas_check_flags(lua_State *L, int idx, int arg, const struct lunas_flag *names, const char *field);
/* The value of a single name, or raises. */
uint64_t lunas_check_flag_name(lua_State *L, int arg, const char *name, const struct lunas_flag *names,
                               const char *field);

/* Namespace flag names (user, pid, mount|mnt, uts, ipc, net, cgroup, time). */
extern const struct lunas_flag lunas_ns_flags[];
/* The canonical name of one CLONE_NEW* flag, or NULL. */
const char *lunas_ns_name(uint64_t flag);

/* ---- option tables ------------------------------------------------------ */

/* Raises unless idx is a table whose keys are all strings listed in `allowed` (NULL-terminated). */
void lunas_check_options(lua_State *L, int idx, const char *const allowed[]);
/* Field getters on the option table at idx: absent (nil) -> def; wrong type or range -> raise naming field. */
lua_Integer lunas_opt_integer(lua_State *L, int idx, const char *field, lua_Integer def, lua_Integer min,
                              lua_Integer max);
int lunas_opt_boolean(lua_State *L, int idx, const char *field, int def);
/* Returns a string owned by the option table (valid while it is alive), or def. */
const char *lunas_opt_string(lua_State *L, int idx, const char *field, const char *def);
/* Pushes field onto the stack and returns its type; LUA_TNIL when absent. */
int lunas_opt_field(lua_State *L, int idx, const char *field, int expected_type);

/* Integer in [min, max] or raises naming field. */
lua_Integer lunas_check_range(lua_State *L, int idx, int arg, const char *field, lua_Integer min, lua_Integer max);

/* ---- capabilities -------------------------------------------------------- */

/* A set of capabilities from a table of names ("sys_admin", "CAP_SYS_ADMIN", "cap_sys_admin"), a comma string,
 * "all" or a bit mask; nil -> 0. Unknown names raise naming field. */
uint64_t lunas_check_capabilities(lua_State *L, int idx, int arg, const char *field);

/* ---- signals ------------------------------------------------------------ */

/* Signal from a number, "TERM" or "SIGTERM" (or "RTMIN+n"); raises naming field. */
int lunas_check_signal(lua_State *L, int idx, int arg, const char *field);
/* "TERM" for SIGTERM, or NULL. */
const char *lunas_signal_name(int sig);

/* ---- string arrays (argv, envp) ------------------------------------------ */

/* Builds a NULL-terminated char* array from the array table at idx. The strings stay owned by Lua; the array
 * itself lives in a userdata pushed on the stack (keep it there while in use). Raises naming field[i] on a
 * non-string or a string containing NUL. min_len: minimum entries (argv needs 1). */
char **lunas_check_string_array(lua_State *L, int idx, int arg, const char *field, int min_len);
/* Builds "K=V" entries from a map {K = V} or keeps an array {"K=V", ...}; same ownership rules. */
char **lunas_check_environment(lua_State *L, int idx, int arg, const char *field);

/* ---- file descriptors ----------------------------------------------------- */

#define LUNAS_FD "lunas.fd"

/* A file descriptor owned by Lua: closed by close() and __close, and by __gc only in the process that created
 * it (a child that shares or copies our memory must never close the parent's descriptors behind its back). */
struct lunas_fd {
    int fd;
    pid_t owner;
};

/* Pushes a new fd object owning fd (fd < 0 allowed only transiently: callers allocate first, then fill). */
struct lunas_fd *lunas_new_fd(lua_State *L, int fd);
/* An fd number from an fd object, a process/namespace handle with a fileno() (via __name lookups) or a
 * non-negative integer; raises naming field. */
int lunas_check_fd(lua_State *L, int idx, int arg, const char *field);
/* Registers the fd class and sets `poll` in the module table on top of the stack. */
void lunas_open_fd_class(lua_State *L);

/* ---- classes and registration -------------------------------------------- */

/* Creates the metatable `name` with `metamethods` (may be NULL) and an __index table of `methods`. Leaves
 * nothing on the stack. */
void lunas_new_class(lua_State *L, const char *name, const luaL_Reg *metamethods, const luaL_Reg *methods);
/* Raises "attempt to use a closed <what>". */
int lunas_closed_error(lua_State *L, const char *what);

/* Each area adds its functions to the module table at the top of the stack. */
void lunas_open_proc(lua_State *L);
void lunas_open_ns(lua_State *L);
void lunas_open_mount(lua_State *L);
void lunas_open_net(lua_State *L);
void lunas_open_caps(lua_State *L);
void lunas_open_seccomp(lua_State *L);
void lunas_open_landlock(lua_State *L);
void lunas_open_tc(lua_State *L);
void lunas_open_nft(lua_State *L);
void lunas_open_cgroup(lua_State *L);
void lunas_open_interrupt(lua_State *L);
void lunas_open_tty(lua_State *L);
void lunas_open_watch(lua_State *L);

/* ---- network namespaces --------------------------------------------------- */

/* A network namespace to work in, from the value at idx: nil/none (the current one: returns -1), a namespace
 * handle or anything with fileno(), a namespace file path, or a bare name under /run/netns (as `ip netns`).
 * Names and paths are opened here: *owned is set and the caller closes the fd. A name or path that cannot be
 * opened returns -2 with errno set. `what` receives a printable name of the namespace for error messages. */
int lunas_check_netns(lua_State *L, int idx, int arg, const char *field, int *owned, char *what, size_t what_size);
/* 0 when the calling thread can setns back into the namespace ns_fd later: the user namespace that owns it is
 * ours or one below ours. -1 with errno (EPERM) otherwise, for instance once this process has unshared a user
 * namespace of its own. Whatever leaves a namespace to come back checks this first: a way out with no way back
 * would strand lunas in the wrong namespace. */
int lunas_ns_returnable(int ns_fd);
/* Moves the calling thread into the network namespace fd (fd < 0: stays) and saves the current one in *saved.
 * 0, or -1 with errno (nothing changed). Pair with lunas_netns_leave. */
int lunas_netns_enter(int fd, int *saved);
/* Returns to the namespace saved by lunas_netns_enter. A failure here would leave lunas in the wrong
 * namespace for every later call, so it aborts the process rather than go on silently. */
void lunas_netns_leave(int saved);

/* ---- small utilities ---------------------------------------------------- */

/* uid/gid maps as the kernel takes them (ns.c): each file written once, in one write. */
#define MAP_MAX_BYTES 4095
struct lunas_id_maps {
    char uid[MAP_MAX_BYTES + 1], gid[MAP_MAX_BYTES + 1];
    size_t uid_len, gid_len;
    const char *setgroups; /* "deny", "allow" or NULL */
};
/* Reads {uid = ranges, gid = ranges, setgroups = "deny" | "allow"} at idx; raises on misuse (naming fields of
 * argument arg). */
void lunas_check_id_maps(lua_State *L, int idx, int arg, struct lunas_id_maps *m);
/* Writes uid_map, setgroups, gid_map in that order into the /proc/PID directory proc_dir; -1 with errno and
 * *failed naming the file. No Lua, no allocation: safe beside a child that shares our memory. */
int lunas_write_id_maps(int proc_dir, const struct lunas_id_maps *m, const char **failed);

/* write() all of buf, retrying on EINTR and short writes. 0 or -1 with errno. */
int lunas_write_all(int fd, const void *buf, size_t len);
/* Opens path (relative to dirfd) for writing and writes buf in ONE write() call (uid_map and friends need
 * exactly that). 0 or -1 with errno. */
int lunas_write_file(int dirfd, const char *path, const char *buf, size_t len);
/* CLOCK_MONOTONIC in seconds. */
double lunas_now(void);

/* ---- interruption --------------------------------------------------------- */

/* The first SIGHUP, SIGINT, SIGQUIT or SIGTERM caught by the handlers interrupt.c installs (0: none), whether Lua
 * has been told, the process those handlers belong to (a child, even one sharing our memory, is never it), and
 * the pipe the handler writes a byte to, which blocking calls poll beside their own descriptors. */
extern volatile sig_atomic_t lunas_interrupt_signal;
extern volatile sig_atomic_t lunas_interrupt_raised;
extern volatile pid_t lunas_interrupt_owner;
extern int lunas_interrupt_pipe[2];
/* While above 0 (interrupt_defer: lunas's own clean-up), an interruption waits: nothing reports it pending. */
extern int lunas_interrupt_held;
/* Registry set of the chunk sources ("@lunas/net.lua") of the modules the host binary carries (main.c). */
#define LUNAS_EMBEDDED_SOURCES "lunas.embedded_sources"
/* The signal caught and not yet raised in Lua, in the process that caught it, outside interrupt_defer; 0
 * otherwise. */
int lunas_interrupt_pending(void);
/* poll(2) that an interruption wakes: >0 descriptors ready, 0 timeout (ms < 0: none), -1 with errno; EINTR
 * only for an interruption pending (call lunas_raise_interrupt once your own resources are released). */
int lunas_poll(struct pollfd *fds, nfds_t n, int timeout_ms);
/* Seconds (negative: for ever) as poll's milliseconds, rounded up and capped at INT_MAX. */
int lunas_timeout_ms(double seconds);
/* Raises the pending interruption as Lua's error (the error object interrupt_catch was given, or "interrupted
 * by SIGTERM") and marks it told. Never returns. */
int lunas_raise_interrupt(lua_State *L) __attribute__((noreturn));
/* Ends the process by the signal that interrupted it (interrupt.c), if one did; returns otherwise. */
void lunas_exit_if_interrupted(void);

#endif
