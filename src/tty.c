/* tty.c: pseudo-terminals: a master from a particular devpts instance, its slave opened through the master
 * (TIOCGPTPEER: no path lookup, so neither the caller's /dev/pts nor a symlink planted in a container's /dev can
 * substitute another terminal), window sizes, the controlling terminal, and the raw mode a terminal relay puts
 * the user's terminal in. */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "lunas.h"

/* Every ptmx (/dev/ptmx and each devpts instance's own) is this character device; a master keeps its inode. */
#define PTMX_MAJOR 5
#define PTMX_MINOR 2

static int is_ptmx(const struct stat *st) {
    return S_ISCHR(st->st_mode) && major(st->st_rdev) == PTMX_MAJOR && minor(st->st_rdev) == PTMX_MINOR;
}

static int fail_with(int err) {
    errno = err;
    return -1;
}

static const char *check_path(lua_State *L, int arg, const char *field) {
    size_t len;
    const char *s = lua_tolstring(L, arg, &len);
    if (strlen(s) != len) lunas_field_error(L, arg, field, "contains a NUL byte");
    if (len == 0) lunas_field_error(L, arg, field, "empty path");
    return s;
}

/* The terminal ioctls below go to terminals only: other drivers give some of their numbers other meanings (the
 * old sound timer ioctls reuse 'T' numbers), while TCGETS, isatty's test, means nothing anywhere else. */
static int require_terminal(int fd) {
    struct termios t;
    return tcgetattr(fd, &t);
}

/***
Terminals.
Pseudo-terminals from a particular devpts instance, their window sizes, the controlling terminal, and raw mode
for a terminal relay.
@section terminals
*/

/* Opens the ptmx the argument names: a path is checked before it is opened (no other device is opened by
 * mistake); a devpts directory gives its "ptmx"; a ptmx descriptor (O_PATH ones too) is opened again read-write
 * through /proc. -1 with errno. */
static int open_ptmx(lua_State *L, int arg, char *what, size_t size) {
    const int flags = O_RDWR | O_NOCTTY | O_CLOEXEC;
    struct stat st;
    if (lua_type(L, arg) == LUA_TSTRING) {
        const char *path = check_path(L, arg, "ptmx");
        snprintf(what, size, "%s", path);
        if (stat(path, &st) < 0) return -1;
        if (!is_ptmx(&st)) return fail_with(ENOTTY);
        return open(path, flags);
    }
    int fd = lunas_check_fd(L, arg, arg, "ptmx");
    snprintf(what, size, "fd %d", fd);
    if (fstat(fd, &st) < 0) return -1;
    if (S_ISDIR(st.st_mode)) return openat(fd, "ptmx", flags | O_NOFOLLOW);
    if (!is_ptmx(&st)) return fail_with(ENOTTY);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return open(proc, flags);
}

/* Unlocks the new master's slave and reads its number. -1 with errno. */
static int unlock_pty(int master, unsigned *number) {
    struct stat st;
    int unlock = 0;
    if (fstat(master, &st) < 0) return -1;
    if (!is_ptmx(&st)) return fail_with(ENOTTY); /* swapped after the check */
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) return -1;
    return ioctl(master, TIOCGPTN, number);
}

/***
A new pseudo-terminal of a particular devpts instance: opens its ptmx (read-write, close-on-exec, never as a
controlling terminal) and unlocks the slave. The slave is `pty_peer(master)`: it lives in the instance the ptmx
belongs to, whatever /dev/pts is where the caller runs.
@function openpt
@tparam string|fd|integer ptmx the path of a ptmx ("/dev/pts/ptmx" of a devpts mounted with newinstance, or
  "/dev/ptmx"), a descriptor of a devpts directory (its "ptmx" is opened, never through a symlink), or a descriptor
  of a ptmx (an O_PATH one too; opened again through /proc/self/fd)
@treturn fd the master
@treturn integer the pty number in that instance (the slave is N in its devpts)
@error "openpt PTMX: message", "ENAME" ("ENOTTY" when it is not a ptmx)
*/
static int tty_openpt(lua_State *L) {
    char what[512];
    lua_settop(L, 1);
    if (lua_isnoneornil(L, 1)) return lunas_field_error(L, 1, "ptmx", "path or descriptor expected, got nil");
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = open_ptmx(L, 1, what, sizeof what);
    unsigned number = 0;
    if (f->fd < 0 || unlock_pty(f->fd, &number) < 0) return lunas_push_error(L, errno, "openpt", what);
    lua_pushinteger(L, (lua_Integer)number);
    return 2;
}

/***
Opens the slave of a master (TIOCGPTPEER): through the master's own devpts instance, with no path lookup, so
it is that master's slave even when /dev/pts shows another instance or a container's /dev holds planted
symlinks. Read-write and never as a controlling terminal (O_NOCTTY): `set_controlling_tty` makes it one.
@function pty_peer
@tparam fd|integer master from `openpt`
@tparam[opt] table opts
@tparam[opt=true] boolean opts.cloexec close-on-exec; false for a slave a program is to inherit as it is
@treturn fd the slave
@error "pty_peer fd N: message", "ENAME" ("ENOTTY" when it is not a master)
*/
static int tty_pty_peer(lua_State *L) {
    static const char *const allowed[] = {"cloexec", NULL};
    int master = lunas_check_fd(L, 1, 1, "master");
    int cloexec = 1;
    if (!lua_isnoneornil(L, 2)) {
        lunas_check_options(L, 2, allowed);
        cloexec = lunas_opt_boolean(L, 2, "cloexec", 1);
    }
    struct lunas_fd *f = lunas_new_fd(L, -1);
    struct stat st;
    if (fstat(master, &st) < 0) return lunas_push_errorf(L, errno, "pty_peer fd %d", master);
    /* TIOCGPTPEER is _IO('T', 0x41): only a master may see it. */
    if (!is_ptmx(&st)) return lunas_push_errorf(L, ENOTTY, "pty_peer fd %d", master);
    f->fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | (cloexec ? O_CLOEXEC : 0));
    if (f->fd < 0) return lunas_push_errorf(L, errno, "pty_peer fd %d", master);
    return 1;
}

static unsigned short check_dimension(lua_State *L, int idx, const char *field) {
    if (lunas_opt_field(L, idx, field, LUA_TNONE) == LUA_TNIL)
        lunas_field_error(L, idx, field, "integer expected, got nil");
    lua_pop(L, 1);
    return (unsigned short)lunas_opt_integer(L, idx, field, 0, 0, 65535);
}

/***
The window size of a terminal (TIOCGWINSZ), or sets it (TIOCSWINSZ): on a master or its slave, it is the
pair's, and the slave's foreground process group gets SIGWINCH when it changes.
@function tty_winsize
@tparam fd|integer fd a terminal
@tparam[opt] table size `{rows =, cols =}`, both 0 to 65535: sets them (the pixel sizes become 0, unknown)
@treturn table|boolean `{rows =, cols =}` without `size`; true with it
@error "tty_winsize fd N: message", "ENAME" ("ENOTTY" for what is not a terminal)
*/
static int tty_tty_winsize(lua_State *L) {
    static const char *const allowed[] = {"rows", "cols", NULL};
    int fd = lunas_check_fd(L, 1, 1, "fd");
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    if (lua_isnoneornil(L, 2)) {
        if (require_terminal(fd) < 0 || ioctl(fd, TIOCGWINSZ, &ws) < 0)
            return lunas_push_errorf(L, errno, "tty_winsize fd %d", fd);
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, ws.ws_row);
        lua_setfield(L, -2, "rows");
        lua_pushinteger(L, ws.ws_col);
        lua_setfield(L, -2, "cols");
        return 1;
    }
    lunas_check_options(L, 2, allowed);
    ws.ws_row = check_dimension(L, 2, "rows");
    ws.ws_col = check_dimension(L, 2, "cols");
    if (require_terminal(fd) < 0 || ioctl(fd, TIOCSWINSZ, &ws) < 0)
        return lunas_push_errorf(L, errno, "tty_winsize fd %d", fd);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Makes a terminal the controlling terminal of the caller's session (TIOCSCTTY): the caller must be a session
leader (`setsid`) without one. The terminal's signals (^C, ^Z, hang-up) then reach the session's foreground
process group.
@function set_controlling_tty
@tparam fd|integer fd a terminal (a slave from `pty_peer`)
@tparam[opt=false] boolean steal take it even when it is another session's controlling terminal (needs
  CAP_SYS_ADMIN); 0 and 1 are accepted too
@treturn boolean true
@error "set_controlling_tty fd N: message", "ENAME" ("EPERM" when not a session leader or the terminal is
  another session's)
*/
static int tty_set_controlling_tty(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "fd");
    int steal = 0;
    if (lua_type(L, 2) == LUA_TBOOLEAN) steal = lua_toboolean(L, 2);
    else if (lua_type(L, 2) == LUA_TNUMBER) steal = (int)lunas_check_range(L, 2, 2, "steal", 0, 1);
    else if (!lua_isnoneornil(L, 2))
        return lunas_field_error(L, 2, "steal", "boolean expected, got %s", luaL_typename(L, 2));
    if (require_terminal(fd) < 0 || ioctl(fd, TIOCSCTTY, steal) < 0)
        return lunas_push_errorf(L, errno, "set_controlling_tty fd %d", fd);
    lua_pushboolean(L, 1);
    return 1;
}

/* TCSADRAIN, as ssh enters and leaves raw mode: what was already written is sent under the settings it was
 * written for, and what the user typed ahead is kept (TCSAFLUSH would throw it away). The drain can wait (a real
 * line, flow control); a signal that cuts it short gets the change made at once with TCSANOW, since a terminal
 * left in the wrong mode is worse than a few bytes sent under the new one. */
static int set_termios(int fd, const struct termios *t) {
    if (tcsetattr(fd, TCSADRAIN, t) == 0) return 0;
    if (errno != EINTR) return -1;
    return tcsetattr(fd, TCSANOW, t);
}

/***
Puts a terminal in raw mode, as ssh and docker do with the user's terminal while they relay a remote one: no
echo, no line editing, no signals from ^C or ^Z, no CR/LF translation, 8-bit bytes, reads that return each byte
(cfmakeraw). A process of a background group gets SIGTTOU for it, as for any change of its terminal's settings.
@function tty_raw
@tparam fd|integer fd a terminal
@treturn string the previous settings (the bytes of a struct termios), for `tty_restore`
@error "tty_raw fd N: message", "ENAME" ("ENOTTY" for what is not a terminal)
*/
static int tty_tty_raw(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "fd");
    struct termios saved, raw;
    if (tcgetattr(fd, &saved) < 0) return lunas_push_errorf(L, errno, "tty_raw fd %d", fd);
    raw = saved;
    cfmakeraw(&raw);
    if (set_termios(fd, &raw) < 0) return lunas_push_errorf(L, errno, "tty_raw fd %d", fd);
    lua_pushlstring(L, (const char *)&saved, sizeof saved);
    return 1;
}

/***
Gives a terminal back the settings `tty_raw` returned.
@function tty_restore
@tparam fd|integer fd a terminal
@tparam string saved what `tty_raw` returned (a string of exactly that size: anything else raises)
@treturn boolean true
@error "tty_restore fd N: message", "ENAME"
*/
static int tty_tty_restore(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "fd");
    if (lua_type(L, 2) != LUA_TSTRING)
        return lunas_field_error(L, 2, "saved", "string from tty_raw expected, got %s", luaL_typename(L, 2));
    size_t len;
    const char *bytes = lua_tolstring(L, 2, &len);
    struct termios saved;
    if (len != sizeof saved)
        return lunas_field_error(L, 2, "saved", "length %zu, not the %zu bytes of settings from tty_raw", len, sizeof saved);
    memcpy(&saved, bytes, sizeof saved);
    if (require_terminal(fd) < 0 || set_termios(fd, &saved) < 0)
        return lunas_push_errorf(L, errno, "tty_restore fd %d", fd);
    lua_pushboolean(L, 1);
    return 1;
}

void lunas_open_tty(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"openpt", tty_openpt},
        {"pty_peer", tty_pty_peer},
        {"tty_winsize", tty_tty_winsize},
        {"set_controlling_tty", tty_set_controlling_tty},
        {"tty_raw", tty_tty_raw},
        {"tty_restore", tty_tty_restore},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
