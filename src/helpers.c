/* helpers.c: what every area of the core shares (declared in lunas.h): errno names and the error convention,
 * flag and option parsing, signal names, string arrays, descriptor objects, classes, small I/O utilities and
 * network namespace entry. It depends on no area; every area and the module's assembly (core.c) depend on it. */
/*** @module lunas.core */

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lunas.h"

/* ---- errno names -------------------------------------------------------- */

#define ERRNO_LIST(X)                                                                                            \
    X(EPERM) X(ENOENT) X(ESRCH) X(EINTR) X(EIO) X(ENXIO) X(E2BIG) X(ENOEXEC) X(EBADF) X(ECHILD) X(EAGAIN)       \
    X(ENOMEM) X(EACCES) X(EFAULT) X(ENOTBLK) X(EBUSY) X(EEXIST) X(EXDEV) X(ENODEV) X(ENOTDIR) X(EISDIR)        \
    X(EINVAL) X(ENFILE) X(EMFILE) X(ENOTTY) X(ETXTBSY) X(EFBIG) X(ENOSPC) X(ESPIPE) X(EROFS) X(EMLINK) X(EPIPE) \
    X(EDOM) X(ERANGE) X(EDEADLK) X(ENAMETOOLONG) X(ENOLCK) X(ENOSYS) X(ENOTEMPTY) X(ELOOP) X(ENOMSG) X(EIDRM)  \
    X(ENOSTR) X(ENODATA) X(ETIME) X(ENOSR) X(ENOLINK) X(EPROTO) X(EBADMSG) X(EOVERFLOW) X(EILSEQ) X(EUSERS)    \
    X(ENOTSOCK) X(EDESTADDRREQ) X(EMSGSIZE) X(EPROTOTYPE) X(ENOPROTOOPT) X(EPROTONOSUPPORT)                    \
    X(ESOCKTNOSUPPORT) X(EOPNOTSUPP) X(EPFNOSUPPORT) X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL)           \
    X(ENETDOWN) X(ENETUNREACH) X(ENETRESET) X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS) X(EISCONN) X(ENOTCONN)    \
    X(ESHUTDOWN) X(ETOOMANYREFS) X(ETIMEDOUT) X(ECONNREFUSED) X(EHOSTDOWN) X(EHOSTUNREACH) X(EALREADY)         \
    X(EINPROGRESS) X(ESTALE) X(EDQUOT) X(ECANCELED) X(ENOKEY) X(EKEYEXPIRED) X(EKEYREVOKED) X(EKEYREJECTED)    \
    X(EOWNERDEAD) X(ENOTRECOVERABLE) X(ERFKILL) X(EHWPOISON) X(ENOMEDIUM) X(EMEDIUMTYPE) X(EREMOTEIO)          \
    X(ENOTUNIQ) X(EBADFD) X(EREMCHG) X(ELIBACC) X(ELIBBAD) X(ELIBSCN) X(ELIBMAX) X(ELIBEXEC) X(ERESTART)        \
    X(ESTRPIPE) X(EUCLEAN) X(ENOTNAM) X(ENAVAIL) X(EISNAM) X(ECHRNG) X(EL2NSYNC) X(EL3HLT) X(EL3RST) X(ELNRNG)  \
    X(EUNATCH) X(ENOCSI) X(EL2HLT) X(EBADE) X(EBADR) X(EXFULL) X(ENOANO) X(EBADRQC) X(EBADSLT) X(EBFONT)        \
    X(ENONET) X(ENOPKG) X(EREMOTE) X(EADV) X(ESRMNT) X(ECOMM) X(EDOTDOT)

struct errno_entry {
    int value;
    const char *name;
};

#define ERRNO_ENTRY(e) {e, #e},
static const struct errno_entry errno_table[] = {ERRNO_LIST(ERRNO_ENTRY){0, NULL}};

const char *lunas_errno_name(int err) {
    static char unknown[24];
    for (const struct errno_entry *e = errno_table; e->name; e++)
        if (e->value == err) return e->name;
    snprintf(unknown, sizeof unknown, "E%d", err);
    return unknown;
}

int lunas_errno_from_name(const char *name) {
    for (const struct errno_entry *e = errno_table; e->name; e++)
        if (strcmp(e->name, name) == 0) return e->value;
    return -1;
}

int lunas_push_error(lua_State *L, int err, const char *op, const char *target) {
    lua_pushnil(L);
    if (target)
        lua_pushfstring(L, "%s %s: %s", op, target, strerror(err));
    else
        lua_pushfstring(L, "%s: %s", op, strerror(err));
    lua_pushstring(L, lunas_errno_name(err));
    return 3;
}

int lunas_push_errorf(lua_State *L, int err, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lunas_push_error(L, err, what, NULL);
}

int lunas_field_error(lua_State *L, int arg, const char *field, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (field) return luaL_argerror(L, arg, lua_pushfstring(L, "field '%s': %s", field, msg));
    return luaL_argerror(L, arg, msg);
}

void lunas_push_errno_table(lua_State *L) {
    lua_newtable(L);
    for (const struct errno_entry *e = errno_table; e->name; e++) {
        lua_pushinteger(L, e->value);
        lua_setfield(L, -2, e->name);
    }
}

/* ---- flags -------------------------------------------------------------- */

const struct lunas_flag lunas_ns_flags[] = {
    {"user", CLONE_NEWUSER}, {"pid", CLONE_NEWPID},       {"mount", CLONE_NEWNS}, {"mnt", CLONE_NEWNS},
    {"uts", CLONE_NEWUTS},   {"ipc", CLONE_NEWIPC},       {"net", CLONE_NEWNET},  {"cgroup", CLONE_NEWCGROUP},
    {"time", CLONE_NEWTIME}, {NULL, 0},
};

const char *lunas_ns_name(uint64_t flag) {
    for (const struct lunas_flag *f = lunas_ns_flags; f->name; f++)
        if (f->value == flag) return f->name;
    return NULL;
}

uint64_t lunas_check_flag_name(lua_State *L, int arg, const char *name, const struct lunas_flag *names,
                               const char *field) {
    for (const struct lunas_flag *f = names; f->name; f++)
        if (strcmp(f->name, name) == 0) return f->value;
    lunas_field_error(L, arg, field, "unknown name '%s'", name);
    return 0;
}

static uint64_t flags_from_string(lua_State *L, int arg, const char *s, const struct lunas_flag *names,
                                  const char *field) {
    uint64_t value = 0;
    char word[64];
    while (*s) {
        size_t len = strcspn(s, ", ");
        if (len == 0) {
            s++;
            continue;
        }
        if (len >= sizeof word) lunas_field_error(L, arg, field, "unknown name '%.*s'", (int)len, s);
        memcpy(word, s, len);
        word[len] = '\0';
        value |= lunas_check_flag_name(L, arg, word, names, field);
        s += len;
    }
    return value;
}

uint64_t lunas_check_flags(lua_State *L, int idx, int arg, const struct lunas_flag *names, const char *field) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
        return 0;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) || lua_tointeger(L, idx) < 0)
            lunas_field_error(L, arg, field, "non-negative integer expected");
        return (uint64_t)lua_tointeger(L, idx);
    case LUA_TSTRING:
        return flags_from_string(L, arg, lua_tostring(L, idx), names, field);
    case LUA_TTABLE: {
        uint64_t value = 0;
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
                lunas_field_error(L, arg, field, "entry %d: name expected, got %s", (int)i, luaL_typename(L, -1));
            value |= lunas_check_flag_name(L, arg, lua_tostring(L, -1), names, field);
            lua_pop(L, 1);
        }
        return value;
    }
    default:
        lunas_field_error(L, arg, field, "flags expected (integer, string or table), got %s",
                          luaL_typename(L, idx));
        return 0;
    }
}

/* ---- option tables ------------------------------------------------------ */

void lunas_check_options(lua_State *L, int idx, const char *const allowed[]) {
    int arg = lua_absindex(L, idx);
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            luaL_argerror(L, arg, "option names must be strings");
        }
        const char *key = lua_tostring(L, -1);
        int known = 0;
        for (const char *const *a = allowed; *a && !known; a++) known = strcmp(*a, key) == 0;
        if (!known) luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", key));
    }
}

int lunas_opt_field(lua_State *L, int idx, const char *field, int expected_type) {
    int arg = lua_absindex(L, idx);
    int t = lua_getfield(L, arg, field);
    if (t != LUA_TNIL && expected_type != LUA_TNONE && t != expected_type)
        lunas_field_error(L, arg, field, "%s expected, got %s", lua_typename(L, expected_type), luaL_typename(L, -1));
    return t;
}

lua_Integer lunas_opt_integer(lua_State *L, int idx, const char *field, lua_Integer def, lua_Integer min,
                              lua_Integer max) {
    int arg = lua_absindex(L, idx);
    lua_Integer v = def;
    if (lua_getfield(L, arg, field) != LUA_TNIL) {
        int ok = 0;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok || lua_type(L, -1) != LUA_TNUMBER)
            lunas_field_error(L, arg, field, "integer expected, got %s", luaL_typename(L, -1));
        if (v < min || v > max)
            lunas_field_error(L, arg, field, "%lld out of range [%lld, %lld]", (long long)v, (long long)min,
                              (long long)max);
    }
    lua_pop(L, 1);
    return v;
}

int lunas_opt_boolean(lua_State *L, int idx, const char *field, int def) {
    int arg = lua_absindex(L, idx);
    int v = def;
    if (lua_getfield(L, arg, field) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            lunas_field_error(L, arg, field, "boolean expected, got %s", luaL_typename(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

const char *lunas_opt_string(lua_State *L, int idx, const char *field, const char *def) {
    int arg = lua_absindex(L, idx);
    const char *v = def;
    if (lua_getfield(L, arg, field) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            lunas_field_error(L, arg, field, "string expected, got %s", luaL_typename(L, -1));
        size_t len;
        v = lua_tolstring(L, -1, &len);
        if (strlen(v) != len) lunas_field_error(L, arg, field, "string contains a NUL byte");
    }
    lua_pop(L, 1); /* the string stays alive: the option table references it */
    return v;
}

lua_Integer lunas_check_range(lua_State *L, int idx, int arg, const char *field, lua_Integer min, lua_Integer max) {
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok || lua_type(L, idx) != LUA_TNUMBER)
        lunas_field_error(L, arg, field, "integer expected, got %s", luaL_typename(L, idx));
    if (v < min || v > max)
        lunas_field_error(L, arg, field, "%lld out of range [%lld, %lld]", (long long)v, (long long)min,
                          (long long)max);
    return v;
}

/* ---- signals ------------------------------------------------------------ */

static const struct {
    int sig;
    const char *name;
} signal_table[] = {
    {SIGHUP, "HUP"},   {SIGINT, "INT"},       {SIGQUIT, "QUIT"},     {SIGILL, "ILL"},   {SIGTRAP, "TRAP"},
    {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},       {SIGFPE, "FPE"},       {SIGKILL, "KILL"}, {SIGUSR1, "USR1"},
    {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},     {SIGPIPE, "PIPE"},     {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},
    {SIGSTKFLT, "STKFLT"}, {SIGCHLD, "CHLD"}, {SIGCONT, "CONT"},     {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"},
    {SIGTTIN, "TTIN"}, {SIGTTOU, "TTOU"},     {SIGURG, "URG"},       {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"},
    {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"},   {SIGIO, "IO"},     {SIGPWR, "PWR"},
    {SIGSYS, "SYS"},   {0, NULL},
};

const char *lunas_signal_name(int sig) {
    for (int i = 0; signal_table[i].name; i++)
        if (signal_table[i].sig == sig) return signal_table[i].name;
    return NULL;
}

static int signal_from_name(const char *name) {
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    for (int i = 0; signal_table[i].name; i++)
        if (strcmp(signal_table[i].name, name) == 0) return signal_table[i].sig;
    if (strncmp(name, "RTMIN+", 6) == 0 || strcmp(name, "RTMIN") == 0) {
        char *end = NULL;
        long n = name[5] ? strtol(name + 6, &end, 10) : 0;
        if ((end && *end) || n < 0 || SIGRTMIN + n > SIGRTMAX) return -1;
        return SIGRTMIN + (int)n;
    }
    return -1;
}

int lunas_check_signal(lua_State *L, int idx, int arg, const char *field) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        int sig = signal_from_name(lua_tostring(L, idx));
        if (sig < 0) lunas_field_error(L, arg, field, "unknown signal '%s'", lua_tostring(L, idx));
        return sig;
    }
    return (int)lunas_check_range(L, idx, arg, field, 0, SIGRTMAX);
}

void lunas_push_signal_table(lua_State *L) {
    lua_newtable(L);
    for (int i = 0; signal_table[i].name; i++) {
        lua_pushinteger(L, signal_table[i].sig);
        lua_setfield(L, -2, signal_table[i].name);
    }
}

/* ---- string arrays ------------------------------------------------------ */

static char **new_pointer_array(lua_State *L, size_t count) {
    if (count > 1u << 20) luaL_error(L, "array too large (%d entries)", (int)count);
    /* One user value: a table of strings the array points into, when they had to be built. */
    char **array = lua_newuserdatauv(L, (count + 1) * sizeof(char *), 1);
    array[count] = NULL;
    return array;
}

static const char *check_clean_string(lua_State *L, int arg, int value_idx, const char *field, lua_Integer i) {
    size_t len;
    if (lua_type(L, value_idx) != LUA_TSTRING)
        lunas_field_error(L, arg, field, "entry %d: string expected, got %s", (int)i, luaL_typename(L, value_idx));
    const char *s = lua_tolstring(L, value_idx, &len);
    if (strlen(s) != len) lunas_field_error(L, arg, field, "entry %d contains a NUL byte", (int)i);
    return s;
}

char **lunas_check_string_array(lua_State *L, int idx, int arg, const char *field, int min_len) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        lunas_field_error(L, arg, field, "table of strings expected, got %s", luaL_typename(L, idx));
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n < min_len) lunas_field_error(L, arg, field, "at least %d entries expected", min_len);
    char **array = new_pointer_array(L, (size_t)n);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        array[i - 1] = (char *)check_clean_string(L, arg, -1, field, i);
        lua_pop(L, 1); /* the table keeps the string alive */
    }
    return array;
}

char **lunas_check_environment(lua_State *L, int idx, int arg, const char *field) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        lunas_field_error(L, arg, field, "table expected, got %s", luaL_typename(L, idx));
    if (lua_rawlen(L, idx) > 0) return lunas_check_string_array(L, idx, arg, field, 0);
    /* A map {K = V}: the "K=V" strings live in a table kept as the array's user value. */
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
    }
    char **array = new_pointer_array(L, count);
    int array_idx = lua_gettop(L);
    lua_createtable(L, (int)count, 0);
    int strings = lua_gettop(L);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            lunas_field_error(L, arg, field, "string keys and values expected");
        size_t klen, vlen;
        const char *k = lua_tolstring(L, -2, &klen);
        const char *v = lua_tolstring(L, -1, &vlen);
        if (klen == 0 || strlen(k) != klen || strchr(k, '=') || strlen(v) != vlen)
            lunas_field_error(L, arg, field, "bad variable name '%s'", k);
        lua_pushfstring(L, "%s=%s", k, v);
        array[i++] = (char *)lua_tostring(L, -1);
        lua_rawseti(L, strings, (lua_Integer)i);
        lua_pop(L, 1);
    }
    lua_setiuservalue(L, array_idx, 1);
    return array;
}

/* ---- file descriptors ----------------------------------------------------- */

struct lunas_fd *lunas_new_fd(lua_State *L, int fd) {
    struct lunas_fd *f = lua_newuserdatauv(L, sizeof *f, 0);
    f->fd = fd;
    f->owner = getpid();
    luaL_setmetatable(L, LUNAS_FD);
    return f;
}

static struct lunas_fd *check_open_fd(lua_State *L, int arg) {
    struct lunas_fd *f = luaL_checkudata(L, arg, LUNAS_FD);
    if (f->fd < 0) lunas_closed_error(L, "fd");
    return f;
}

int lunas_check_fd(lua_State *L, int idx, int arg, const char *field) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)lunas_check_range(L, idx, arg, field, 0, INT32_MAX);
    if (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__index") != LUA_TNIL) {
        lua_pop(L, 1);
        /* Every lunas handle that wraps a descriptor has a fileno() method. */
        if (lua_getfield(L, idx, "fileno") == LUA_TFUNCTION) {
            lua_pushvalue(L, idx);
            lua_call(L, 1, 1);
            int fd = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
            return fd;
        }
        lua_pop(L, 1);
    }
    return lunas_field_error(L, arg, field, "file descriptor expected, got %s", luaL_typename(L, idx));
}

/***
File descriptor objects.
A descriptor owned by Lua, always close-on-exec, as returned by `pipe`, `socketpair`, `open`, `open_tree`,
`fs_mount`, `open_in_root`, `cgroup_open`, `recv_fd`, `reaper_image` and the seccomp listener functions.
`tostring` gives "fd N" ("fd (closed)").
@type fd
*/

/***
Closes the descriptor. Closing again does nothing.
@function fd:close
*/
static int fd_close(lua_State *L) {
    struct lunas_fd *f = luaL_checkudata(L, 1, LUNAS_FD);
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    return 0;
}

static int fd_gc(lua_State *L) {
    struct lunas_fd *f = luaL_checkudata(L, 1, LUNAS_FD);
    if (f->fd >= 0 && f->owner == getpid()) close(f->fd);
    f->fd = -1;
    return 0;
}

/***
The descriptor number.
@function fd:fileno
@treturn integer
*/
static int fd_fileno(lua_State *L) {
    lua_pushinteger(L, check_open_fd(L, 1)->fd);
    return 1;
}

/***
Reads once: one read(2) of at most `size` bytes. A blocking read waits in poll first, so an interruption of
lunas (`interrupt_catch`) wakes it and raises.
@function fd:read
@tparam[opt=65536] integer size the most bytes to read, 1 to 16 MiB
@treturn string the bytes read; `""` at end of file
@error "read fd N: message", "ENAME" ("EAGAIN" on an empty non-blocking pipe)
*/
static int fd_read(lua_State *L) {
    struct lunas_fd *f = check_open_fd(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, 65536);
    if (max < 1 || max > (1 << 24)) lunas_field_error(L, 2, "size", "out of range [1, 16777216]");
    /* A read that would block waits in poll, where an interruption wakes it. */
    int flags = fcntl(f->fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK) && (flags & O_ACCMODE) != O_WRONLY) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (lunas_poll(&p, 1, -1) < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    }
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)max);
    ssize_t n;
    do n = read(f->fd, p, (size_t)max);
    while (n < 0 && errno == EINTR && !lunas_interrupt_pending());
    if (n < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (n < 0) return lunas_push_errorf(L, errno, "read fd %d", f->fd);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/***
Writes the whole string, retrying short writes and EINTR.
@function fd:write
@tparam string data
@treturn integer the number of bytes written (all of them)
@error "write fd N: message", "ENAME"
*/
static int fd_write(lua_State *L) {
    struct lunas_fd *f = check_open_fd(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (lunas_write_all(f->fd, s, len) < 0) return lunas_push_errorf(L, errno, "write fd %d", f->fd);
    lua_pushinteger(L, (lua_Integer)len);
    return 1;
}

/* A POSIX record lock on the whole file: F_SETLK first, then F_SETLKW only when it has to wait. */
static int record_lock(int fd, int mode, int wait) {
    static const short types[] = {F_WRLCK, F_RDLCK, F_UNLCK};
    struct flock l = {.l_type = types[mode], .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int r = fcntl(fd, F_SETLK, &l);
    if (r < 0 && (errno == EAGAIN || errno == EACCES) && wait) {
        if (lunas_interrupt_pending()) {
            errno = EINTR;
            return -1;
        }
        do r = fcntl(fd, F_SETLKW, &l);
        while (r < 0 && errno == EINTR && !lunas_interrupt_pending());
    }
    if (r < 0 && errno == EACCES) errno = EWOULDBLOCK;
    return r;
}

/* flock cannot be polled: a lock that has to wait is interrupted by EINTR (the handlers do not restart calls);
 * one free at once is taken, pending signal or not. */
static int file_lock(int fd, int mode, int wait) {
    static const int ops[] = {LOCK_EX, LOCK_SH, LOCK_UN};
    int r = flock(fd, ops[mode] | LOCK_NB);
    if (r < 0 && errno == EWOULDBLOCK && wait) {
        if (lunas_interrupt_pending()) {
            errno = EINTR;
            return -1;
        }
        do r = flock(fd, ops[mode]);
        while (r < 0 && errno == EINTR && !lunas_interrupt_pending());
    }
    return r;
}

/***
Takes or drops an advisory lock on the whole file: by default flock(2), held by the open file, so it lasts while
any copy of this descriptor is open, and goes when the last one closes (or its process dies). With `record`, a
POSIX record lock (fcntl F_SETLK, what lockf(3) and Python's fcntl.lockf see): held by the process, and dropped
when it closes any descriptor of that file; a new process (fork, not exec) does not hold it.
@function fd:lock
@tparam[opt="exclusive"] string mode "exclusive", "shared" or "unlock"
@tparam[opt] table opts `{wait = false}`: fail with EWOULDBLOCK at once instead of waiting; `record = true`: a
  POSIX record lock (a shared one needs the file open for reading, an exclusive one for writing)
@treturn boolean true
@error "lock fd N: message", "ENAME" ("EAGAIN", which is EWOULDBLOCK, when held by another and wait = false)
*/
static int fd_lock(lua_State *L) {
    static const char *const modes[] = {"exclusive", "shared", "unlock", NULL};
    static const char *const allowed[] = {"wait", "record", NULL};
    struct lunas_fd *f = check_open_fd(L, 1);
    int mode = luaL_checkoption(L, 2, "exclusive", modes);
    int wait = 1, record = 0;
    if (!lua_isnoneornil(L, 3)) {
        lunas_check_options(L, 3, allowed);
        wait = lunas_opt_boolean(L, 3, "wait", 1);
        record = lunas_opt_boolean(L, 3, "record", 0);
    }
    int r = record ? record_lock(f->fd, mode, wait) : file_lock(f->fd, mode, wait);
    if (r < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (r < 0) return lunas_push_errorf(L, errno, "lock fd %d", f->fd);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Utilities.
Waiting, time, errno names, and the module's tables.
@section utilities
*/

/***
Waits until one of up to 256 descriptors is readable or hung up (poll(2) for POLLIN and POLLPRI).
Anything with a `fileno()` counts: a process handle becomes readable once the process exits (its pidfd), a
seccomp listener hangs up once no process is left under its filter.
@function poll
@tparam table fds an array of 1 to 256 descriptors: fd objects, handles or integers
@tparam[opt] number timeout seconds (0 or more); without it, waits for ever
@treturn table the positions in `fds` that are ready, in order; empty on timeout
@treturn table a set `{[position] = true}` of the positions that hung up (POLLHUP, POLLERR, POLLNVAL)
@error "poll: message", "ENAME"
*/
static int core_poll(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    double timeout = luaL_optnumber(L, 2, -1);
    if (!(timeout == -1 || timeout >= 0)) return luaL_argerror(L, 2, "timeout: seconds (>= 0) expected");
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    if (n < 1 || n > 256) return luaL_argerror(L, 1, "1 to 256 descriptors expected");
    struct pollfd fds[256];
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        fds[i - 1] = (struct pollfd){.fd = lunas_check_fd(L, -1, 1, "fds"), .events = POLLIN | POLLPRI};
        lua_pop(L, 1);
    }
    int r = lunas_poll(fds, (nfds_t)n, lunas_timeout_ms(timeout));
    if (r < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    if (r < 0) return lunas_push_error(L, errno, "poll", NULL);
    lua_createtable(L, r, 0);
    lua_createtable(L, 0, 0);
    int k = 0;
    for (lua_Integer i = 0; i < n; i++) {
        if (!fds[i].revents) continue;
        lua_pushinteger(L, i + 1);
        lua_rawseti(L, -3, ++k);
        if (fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            lua_pushboolean(L, 1);
            lua_rawseti(L, -2, i + 1);
        }
    }
    return 2;
}

static int fd_tostring(lua_State *L) {
    struct lunas_fd *f = luaL_checkudata(L, 1, LUNAS_FD);
    if (f->fd < 0) lua_pushliteral(L, "fd (closed)");
    else lua_pushfstring(L, "fd %d", f->fd);
    return 1;
}

void lunas_open_fd_class(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", fd_gc}, {"__close", fd_close}, {"__tostring", fd_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"close", fd_close}, {"fileno", fd_fileno}, {"read", fd_read}, {"write", fd_write}, {"lock", fd_lock},
        {NULL, NULL}};
    lunas_new_class(L, LUNAS_FD, meta, methods);
    lua_pushcfunction(L, core_poll);
    lua_setfield(L, -2, "poll");
}

/* ---- classes ------------------------------------------------------------ */

void lunas_new_class(lua_State *L, const char *name, const luaL_Reg *metamethods, const luaL_Reg *methods) {
    if (!luaL_newmetatable(L, name)) {
        lua_pop(L, 1);
        return;
    }
    if (metamethods) luaL_setfuncs(L, metamethods, 0);
    if (methods) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

int lunas_closed_error(lua_State *L, const char *what) {
    return luaL_error(L, "attempt to use a closed %s", what);
}

/* ---- small utilities ---------------------------------------------------- */

int lunas_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int lunas_write_file(int dirfd, const char *path, const char *buf, size_t len) {
    int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return -1;
    ssize_t n;
    do n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    if ((size_t)n != len) {
        errno = EIO;
        return -1;
    }
    return 0;
}

double lunas_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- network namespaces --------------------------------------------------- */

static int valid_netns_name(const char *name) {
    return name[0] && strlen(name) < 256 && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int lunas_check_netns(lua_State *L, int idx, int arg, const char *field, int *owned, char *what, size_t what_size) {
    idx = lua_absindex(L, idx);
    *owned = 0;
    if (lua_isnoneornil(L, idx)) {
        snprintf(what, what_size, "current");
        return -1;
    }
    if (lua_type(L, idx) != LUA_TSTRING) {
        int fd = lunas_check_fd(L, idx, arg, field);
        snprintf(what, what_size, "%s", luaL_tolstring(L, idx, NULL));
        lua_pop(L, 1);
        return fd;
    }
    const char *name = lua_tostring(L, idx);
    char path[PATH_MAX];
    if (strchr(name, '/')) {
        if (strlen(name) >= sizeof path) lunas_field_error(L, arg, field, "path too long");
        snprintf(path, sizeof path, "%s", name);
    } else {
        if (!valid_netns_name(name)) lunas_field_error(L, arg, field, "bad network namespace name '%s'", name);
        snprintf(path, sizeof path, "/run/netns/%s", name);
    }
    snprintf(what, what_size, "%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -2;
    *owned = 1;
    return fd;
}

int lunas_ns_returnable(int ns_fd) {
    int owner = ioctl(ns_fd, NS_GET_USERNS);
    if (owner < 0) return -1;
    struct stat own;
    if (stat("/proc/thread-self/ns/user", &own) < 0) {
        int err = errno;
        close(owner);
        errno = err;
        return -1;
    }
    /* Up from the namespace's owner: reaching ours means it is ours or below it. The kernel refuses (EPERM) to
     * go above our own user namespace, and user namespaces nest at most 32 deep. */
    int found = 0;
    for (int depth = 0; depth <= 33; depth++) {
        struct stat st;
        if (fstat(owner, &st) < 0) break;
        if (st.st_dev == own.st_dev && st.st_ino == own.st_ino) {
            found = 1;
            break;
        }
        int parent = ioctl(owner, NS_GET_PARENT);
        if (parent < 0) break;
        close(owner);
        owner = parent;
    }
    close(owner);
    if (found) return 0;
    errno = EPERM;
    return -1;
}

int lunas_netns_enter(int fd, int *saved) {
    *saved = -1;
    if (fd < 0) return 0;
    int current = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (current < 0) return -1;
    if (lunas_ns_returnable(current) < 0 || setns(fd, CLONE_NEWNET) < 0) {
        int err = errno;
        close(current);
        errno = err;
        return -1;
    }
    *saved = current;
    return 0;
}

void lunas_netns_leave(int saved) {
    if (saved < 0) return;
    if (setns(saved, CLONE_NEWNET) < 0) {
        static const char msg[] = "lunas: cannot return to the original network namespace\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    close(saved);
}

/* ---- interruption --------------------------------------------------------- */

volatile sig_atomic_t lunas_interrupt_signal;
volatile sig_atomic_t lunas_interrupt_raised;
volatile pid_t lunas_interrupt_owner;
int lunas_interrupt_pipe[2] = {-1, -1};

static int interrupt_owned(void) {
    return lunas_interrupt_owner != 0 && lunas_interrupt_owner == getpid();
}

int lunas_interrupt_held;

int lunas_interrupt_pending(void) {
    if (!interrupt_owned() || lunas_interrupt_raised || lunas_interrupt_held > 0) return 0;
    return lunas_interrupt_signal;
}

/* Once Lua knows, the byte left in the pipe must not keep waking every poll. */
static void drain_interrupt_pipe(void) {
    char buf[16];
    while (read(lunas_interrupt_pipe[0], buf, sizeof buf) > 0) continue;
}

int lunas_timeout_ms(double seconds) {
    if (!(seconds >= 0)) return -1;
    if (seconds >= INT_MAX / 1000.0) return INT_MAX;
    return (int)ceil(seconds * 1000.0);
}

int lunas_poll(struct pollfd *fds, nfds_t n, int timeout_ms) {
    struct pollfd all[257];
    if (n > 256) {
        errno = EINVAL;
        return -1;
    }
    int watch = interrupt_owned() && lunas_interrupt_pipe[0] >= 0;
    /* Interrupted only where it would wait: what is ready now is reported, pending signal or not. */
    if (n) {
        int ready;
        do ready = poll(fds, n, 0);
        while (ready < 0 && errno == EINTR);
        if (ready != 0 || timeout_ms == 0) return ready;
    }
    double deadline = timeout_ms < 0 ? 0 : lunas_now() + timeout_ms / 1000.0;
    for (;;) {
        if (lunas_interrupt_pending()) {
            errno = EINTR;
            return -1;
        }
        if (n) memcpy(all, fds, n * sizeof *fds);
        if (watch) all[n] = (struct pollfd){.fd = lunas_interrupt_pipe[0], .events = POLLIN};
        int ms = -1;
        if (timeout_ms >= 0) {
            double left = deadline - lunas_now();
            ms = left <= 0 ? 0 : (int)(left * 1000 + 0.999);
        }
        int r = poll(all, n + (nfds_t)watch, ms);
        if (r < 0 && errno != EINTR) return -1;
        if (r < 0) continue;
        if (watch && all[n].revents) {
            if (lunas_interrupt_pending()) continue; /* reported at the top */
            drain_interrupt_pipe();
            r--;
        }
        for (nfds_t i = 0; i < n; i++) fds[i].revents = all[i].revents;
        if (r > 0 || ms == 0) return r;
    }
}

int lunas_raise_interrupt(lua_State *L) {
    int sig = lunas_interrupt_signal;
    lunas_interrupt_raised = 1;
    drain_interrupt_pipe();
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    lua_sethook(lua_tothread(L, -1), NULL, 0, 0);
    lua_pop(L, 1);
    const char *name = lunas_signal_name(sig);
    if (lua_getfield(L, LUA_REGISTRYINDEX, "lunas.interrupt_error") == LUA_TFUNCTION) {
        lua_pushstring(L, name ? name : "?");
        lua_pushinteger(L, sig);
        lua_call(L, 2, 1);
    } else {
        lua_pushfstring(L, "interrupted by SIG%s", name ? name : "?");
    }
    lua_error(L);
    abort(); /* lua_error does not return */
}
