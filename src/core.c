/* core.c: the lunas.core module: the assembly of every area's functions into one table, with the module's own
 * few (now, errno_name, strerror) and tables. Above every area; the helpers they share are in helpers.c. */
/***
The C core: the kernel's isolation primitives as functions and a few object types.

`local core = require "lunas.core"`. Every function follows the same conventions:

- misuse (a wrong type, an unknown flag, option or field name, a value out of range) raises an error naming the
  argument or field at fault: option tables are strict, and a typo is never silently ignored;
- a failure of the system returns `nil, "op target: message", "ENAME"`: the errno name as a string ("ENOENT");
  netlink failures carry the kernel's errno and its extended-ack text. Wrap a call in `assert` or
  `lunas.errors.check` where a failure should raise;
- flags (namespaces, mount flags, ...) take an integer, a comma string (`"user,pid,net"`) or a table of names;
- signals take a number, `"TERM"`, `"SIGTERM"` or `"RTMIN+n"`;
- a descriptor argument takes an `fd` object, any handle with a `fileno()` method (process, namespace, netlink,
  landlock ruleset) or a non-negative integer;
- objects that wrap a descriptor have an idempotent `close()`, `__close` (for `local x <close> = ...`), and a
  `__gc` that closes only in the process that created them: a forked child never closes its parent's
  descriptors behind its back. A closed object raises "attempt to use a closed X".

The same table is available as `lunas.core`. The host binary `lunas` has it built in.
@module lunas.core
*/
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "lunas.h"

/* ---- module ------------------------------------------------------------- */

/***
The monotonic clock (CLOCK_MONOTONIC): for measuring durations, unaffected by changes of the date.
@function now
@treturn number seconds, with nanosecond resolution
*/
static int core_now(lua_State *L) {
    lua_pushnumber(L, lunas_now());
    return 1;
}

/***
Random bytes from the kernel (getrandom(2)): for names nobody can guess or meet again.
@function random
@tparam integer n how many bytes, 1 to 256
@treturn string n bytes
@error "getrandom: message", "ENAME"
*/
static int core_random(lua_State *L) {
    size_t n = (size_t)lunas_check_range(L, 1, 1, "n", 1, 256);
    unsigned char buf[256];
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return lunas_push_error(L, errno, "getrandom", NULL);
        got += (size_t)r;
    }
    lua_pushlstring(L, (const char *)buf, n);
    return 1;
}

/***
The name of an errno value, as the error convention gives it.
@function errno_name
@tparam integer errno
@treturn string "ENOENT" for 2; "E<number>" for a value without a known name
*/
static int core_errno_name(lua_State *L) {
    lua_pushstring(L, lunas_errno_name((int)luaL_checkinteger(L, 1)));
    return 1;
}

/***
The C library's text for an errno value.
@function strerror
@tparam integer|string errno a number or a name ("ENOENT"); an unknown name raises
@treturn string "No such file or directory"
*/
static int core_strerror(lua_State *L) {
    int err = lua_type(L, 1) == LUA_TSTRING ? lunas_errno_from_name(lua_tostring(L, 1)) : (int)luaL_checkinteger(L, 1);
    if (err < 0) return lunas_field_error(L, 1, NULL, "unknown errno name '%s'", lua_tostring(L, 1));
    lua_pushstring(L, strerror(err));
    return 1;
}

static void push_flag_table(lua_State *L, const struct lunas_flag *flags) {
    lua_newtable(L);
    for (const struct lunas_flag *f = flags; f->name; f++) {
        lua_pushinteger(L, (lua_Integer)f->value);
        lua_setfield(L, -2, f->name);
    }
}

/***
Errno values by name: `core.errno.ENOENT == 2`.
@table errno
*/

/***
Signal numbers by name, without the SIG prefix: `core.signals.TERM == 15`. Real-time signals are not listed
(functions that take a signal accept "RTMIN+n").
@table signals
*/

/***
The CLONE_NEW* flag of each namespace name: user, pid, mount (and mnt), uts, ipc, net, cgroup, time.
@table namespaces
*/

/***
The version of lunas, "MAJOR.MINOR.PATCH".
@field version
*/
int luaopen_lunas_core(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"now", core_now}, {"random", core_random}, {"errno_name", core_errno_name}, {"strerror", core_strerror}, {NULL, NULL}};
    luaL_newlib(L, functions);
    lunas_open_fd_class(L);
    lunas_open_proc(L);
    lunas_open_ns(L);
    lunas_open_mount(L);
    lunas_open_tty(L);
    lunas_open_net(L);
    lunas_open_tc(L);
    lunas_open_nft(L);
    lunas_open_caps(L);
    lunas_open_seccomp(L);
    lunas_open_landlock(L);
    lunas_open_cgroup(L);
    lunas_open_interrupt(L);
    lunas_open_watch(L);
    lunas_push_errno_table(L);
    lua_setfield(L, -2, "errno");
    lunas_push_signal_table(L);
    lua_setfield(L, -2, "signals");
    push_flag_table(L, lunas_ns_flags);
    lua_setfield(L, -2, "namespaces");
    lua_pushliteral(L, LUNAS_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
