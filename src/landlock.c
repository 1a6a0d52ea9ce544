/* landlock.c: Landlock, the unprivileged access-control LSM. A ruleset object names the rights it handles (file
 * system, TCP ports, scopes), collects rules that allow some of them (beneath a path, on a port) and restricts the
 * calling thread for good. Rights are named, never raw bits: one table below gives each name its category, bit
 * and the ABI that introduced it, so a right the running kernel lacks is reported before the kernel sees it and
 * the Lua policy decides between best effort and failure. */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/landlock.h>

#include "lunas.h"

/* ---- kernel interface ------------------------------------------------------------------------------------ */

/* Debian's <linux/landlock.h> stops at ABI 2: what came later is declared here. */
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif
/* enum landlock_rule_type in the header: values, not macros, so no #ifndef can tell whether they exist. */
#define RULE_PATH_BENEATH 1
#define RULE_NET_PORT 2

/* The ruleset attribute as of ABI 6. Older kernels accept the larger struct as long as the fields they do not
 * know are zero, which they are whenever the ABI check below let the rights through. */
struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

static int create_ruleset(const struct ruleset_attr *attr, size_t size, uint32_t flags) {
    return (int)syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

static int add_rule(int ruleset_fd, int type, const void *attr) {
    return (int)syscall(SYS_landlock_add_rule, ruleset_fd, type, attr, 0U);
}

static int restrict_self(int ruleset_fd) { return (int)syscall(SYS_landlock_restrict_self, ruleset_fd, 0U); }

/* ---- the rights table -------------------------------------------------------------------------------------- */

enum category { FS, NET, SCOPED, CATEGORIES };

static const char *const category_names[CATEGORIES] = {"fs", "net", "scoped"};

struct right {
    const char *name;
    enum category category;
    uint64_t bit;
    int abi;
    int on_files; /* meaningful on a file, not only on a directory (the kernel refuses the others on files) */
};

static const struct right rights[] = {
    {"execute", FS, LANDLOCK_ACCESS_FS_EXECUTE, 1, 1},
    {"write_file", FS, LANDLOCK_ACCESS_FS_WRITE_FILE, 1, 1},
    {"read_file", FS, LANDLOCK_ACCESS_FS_READ_FILE, 1, 1},
    {"read_dir", FS, LANDLOCK_ACCESS_FS_READ_DIR, 1, 0},
    {"remove_dir", FS, LANDLOCK_ACCESS_FS_REMOVE_DIR, 1, 0},
    {"remove_file", FS, LANDLOCK_ACCESS_FS_REMOVE_FILE, 1, 0},
    {"make_char", FS, LANDLOCK_ACCESS_FS_MAKE_CHAR, 1, 0},
    {"make_dir", FS, LANDLOCK_ACCESS_FS_MAKE_DIR, 1, 0},
    {"make_reg", FS, LANDLOCK_ACCESS_FS_MAKE_REG, 1, 0},
    {"make_sock", FS, LANDLOCK_ACCESS_FS_MAKE_SOCK, 1, 0},
    {"make_fifo", FS, LANDLOCK_ACCESS_FS_MAKE_FIFO, 1, 0},
    {"make_block", FS, LANDLOCK_ACCESS_FS_MAKE_BLOCK, 1, 0},
    {"make_sym", FS, LANDLOCK_ACCESS_FS_MAKE_SYM, 1, 0},
    {"refer", FS, LANDLOCK_ACCESS_FS_REFER, 2, 0},
    {"truncate", FS, LANDLOCK_ACCESS_FS_TRUNCATE, 3, 1},
    {"ioctl_dev", FS, LANDLOCK_ACCESS_FS_IOCTL_DEV, 5, 1},
    {"bind_tcp", NET, LANDLOCK_ACCESS_NET_BIND_TCP, 4, 0},
    {"connect_tcp", NET, LANDLOCK_ACCESS_NET_CONNECT_TCP, 4, 0},
    {"abstract_unix_socket", SCOPED, LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET, 6, 0},
    {"signal", SCOPED, LANDLOCK_SCOPE_SIGNAL, 6, 0},
};

#define RIGHTS_COUNT (sizeof rights / sizeof rights[0])

static const struct right *find_right(const char *name, size_t len) {
    for (size_t i = 0; i < RIGHTS_COUNT; i++)
        if (strlen(rights[i].name) == len && memcmp(rights[i].name, name, len) == 0) return &rights[i];
    return NULL;
}

/* The first right of mask (in one category) that the predicate rejects, or NULL. */
static const struct right *first_right(enum category c, uint64_t mask, int (*rejects)(const struct right *, int),
                                       int arg) {
    for (size_t i = 0; i < RIGHTS_COUNT; i++)
        if (rights[i].category == c && (mask & rights[i].bit) && rejects(&rights[i], arg)) return &rights[i];
    return NULL;
}

static int newer_than(const struct right *r, int abi) { return r->abi > abi; }

static int directory_only(const struct right *r, int unused) {
    (void)unused;
    return !r->on_files;
}

/* ---- parsing rights --------------------------------------------------------------------------------------- */

/* The bit of one named right of category c; a name that is unknown or of another category raises. */
static uint64_t check_right(lua_State *L, int arg, const char *field, enum category c, const char *name,
                            size_t len) {
    if (memchr(name, '\0', len)) return lunas_field_error(L, arg, field, "right name contains a NUL byte");
    const struct right *r = find_right(name, len);
    if (!r) return lunas_field_error(L, arg, field, "unknown right '%.*s'", (int)len, name);
    if (r->category != c)
        return lunas_field_error(L, arg, field, "right '%s' is a %s right, not %s", r->name,
                                 category_names[r->category], category_names[c]);
    return r->bit;
}

static uint64_t rights_from_string(lua_State *L, int idx, int arg, const char *field, enum category c) {
    size_t total;
    const char *s = lua_tolstring(L, idx, &total);
    uint64_t mask = 0;
    /* Scanned by length, not strcspn: an embedded NUL must make a name unknown, not end the list. */
    for (size_t start = 0, i = 0; i <= total; i++) {
        if (i < total && s[i] != ',' && s[i] != ' ') continue;
        if (i > start) mask |= check_right(L, arg, field, c, s + start, i - start);
        start = i + 1;
    }
    return mask;
}

static uint64_t rights_from_table(lua_State *L, int idx, int arg, const char *field, enum category c) {
    uint64_t mask = 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
            lunas_field_error(L, arg, field, "entry %d: right name expected, got %s", (int)i, luaL_typename(L, -1));
        size_t len;
        const char *name = lua_tolstring(L, -1, &len);
        mask |= check_right(L, arg, field, c, name, len);
        lua_pop(L, 1);
    }
    return mask;
}

/* Rights of category c from the value at idx: nil, a comma string or a table of names. Raw bit masks are refused
 * on purpose: names are what lets a right newer than the kernel be reported by name. */
static uint64_t check_rights(lua_State *L, int idx, int arg, const char *field, enum category c) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
        return 0;
    case LUA_TSTRING:
        return rights_from_string(L, idx, arg, field, c);
    case LUA_TTABLE:
        return rights_from_table(L, idx, arg, field, c);
    default:
        return lunas_field_error(L, arg, field, "rights expected (table of names or comma string), got %s",
                                 luaL_typename(L, idx));
    }
}

/* ---- results ------------------------------------------------------------------------------------------------ */

/* nil, message, "ENAME" for a failure whose message says more than strerror would. */
static int push_failure(lua_State *L, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int push_failure(lua_State *L, int err, const char *fmt, ...) {
    va_list ap;
    lua_pushnil(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushstring(L, lunas_errno_name(err));
    return 3;
}

static int push_true(lua_State *L) {
    lua_pushboolean(L, 1);
    return 1;
}

/* The running kernel's ABI, or -1 with errno. */
static int kernel_abi(void) { return create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION); }

/* ---- module functions ---------------------------------------------------------------------------------------- */

/***
Landlock.
The unprivileged access-control LSM. A ruleset names the rights it handles, rules allow some of them (beneath a
path, on a port), and `restrict` confines the calling thread for good. Rights are named, never raw bits, so a
right newer than the running kernel is reported by name before the kernel sees it. File system rights: execute,
write_file, read_file, read_dir, remove_dir, remove_file, make_char, make_dir, make_reg, make_sock, make_fifo,
make_block, make_sym, refer (ABI 2), truncate (3), ioctl_dev (5). Network: bind_tcp, connect_tcp (4). Scopes:
abstract_unix_socket, signal (6).
@section landlock
*/

/***
The Landlock ABI version of the running kernel.
@function landlock_abi
@treturn[1] integer 1 or more
@return[2] 0 (not nil: the number still compares), "landlock: message", "ENOSYS" or "EOPNOTSUPP" when Landlock
  is not built in or not enabled
*/
static int landlock_abi(lua_State *L) {
    int abi = kernel_abi();
    if (abi >= 0) {
        lua_pushinteger(L, abi);
        return 1;
    }
    int err = errno;
    lunas_push_error(L, err, "landlock", NULL);
    if (err == ENOSYS || err == EOPNOTSUPP) {
        lua_pushinteger(L, 0);
        lua_replace(L, -4);
    }
    return 3;
}

/***
Every right lunas knows, with the ABI that introduced it.
@function landlock_rights
@treturn table `{fs = {execute = 1, ..., refer = 2, truncate = 3, ioctl_dev = 5}, net = {bind_tcp = 4,
  connect_tcp = 4}, scoped = {abstract_unix_socket = 6, signal = 6}}`, a fresh table each call
*/
static int landlock_rights(lua_State *L) {
    lua_createtable(L, 0, CATEGORIES);
    for (int c = 0; c < CATEGORIES; c++) {
        lua_newtable(L);
        for (size_t i = 0; i < RIGHTS_COUNT; i++) {
            if ((int)rights[i].category != c) continue;
            lua_pushinteger(L, rights[i].abi);
            lua_setfield(L, -2, rights[i].name);
        }
        lua_setfield(L, -2, category_names[c]);
    }
    return 1;
}

/* ---- ruleset objects ----------------------------------------------------------------------------------------- */

#define LUNAS_LANDLOCK "lunas.landlock"

/* Like struct lunas_fd: the ruleset fd, closed by __gc only in the process that created it. */
struct landlock_ruleset {
    int fd;
    pid_t owner;
    uint64_t handled[CATEGORIES];
};

static struct landlock_ruleset *check_ruleset(lua_State *L, int idx) {
    struct landlock_ruleset *r = luaL_checkudata(L, idx, LUNAS_LANDLOCK);
    if (r->fd < 0) lunas_closed_error(L, "landlock ruleset");
    return r;
}

/* Fails (without touching the kernel) when a right is newer than the running kernel. */
static int check_kernel_knows(lua_State *L, const uint64_t handled[CATEGORIES]) {
    int abi = kernel_abi();
    if (abi < 0) return lunas_push_error(L, errno, "landlock ruleset", NULL);
    for (int c = 0; c < CATEGORIES; c++) {
        const struct right *r = first_right((enum category)c, handled[c], newer_than, abi);
        if (r)
            return push_failure(L, EOPNOTSUPP, "landlock ruleset: right '%s' needs ABI %d, the kernel has %d",
                                r->name, r->abi, abi);
    }
    return 0;
}

/***
A new ruleset. Rights are tables of names or comma strings.
@function landlock_ruleset
@tparam table handled at least one right
@tparam[opt] table|string handled.fs the file system rights to restrict
@tparam[opt] table|string handled.net the TCP rights to restrict
@tparam[opt] table|string handled.scoped the scopes to restrict
@treturn landlock
@error "landlock ruleset: right 'NAME' needs ABI N, the kernel has M", "EOPNOTSUPP"; "landlock ruleset:
  message", "ENAME"
*/
static int landlock_ruleset(lua_State *L) {
    static const char *const allowed[] = {"fs", "net", "scoped", NULL};
    lunas_check_options(L, 1, allowed);
    uint64_t handled[CATEGORIES];
    for (int c = 0; c < CATEGORIES; c++) {
        lunas_opt_field(L, 1, category_names[c], LUA_TNONE);
        handled[c] = check_rights(L, -1, 1, category_names[c], (enum category)c);
        lua_pop(L, 1);
    }
    if (!(handled[FS] | handled[NET] | handled[SCOPED]))
        return luaL_argerror(L, 1, "at least one right expected in 'fs', 'net' or 'scoped'");
    int failed = check_kernel_knows(L, handled);
    if (failed) return failed;

    struct landlock_ruleset *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->fd = -1;
    r->owner = getpid();
    memcpy(r->handled, handled, sizeof r->handled);
    luaL_setmetatable(L, LUNAS_LANDLOCK);
    struct ruleset_attr attr = {
        .handled_access_fs = handled[FS], .handled_access_net = handled[NET], .scoped = handled[SCOPED]};
    r->fd = create_ruleset(&attr, sizeof attr, 0);
    if (r->fd < 0) return lunas_push_error(L, errno, "landlock ruleset", NULL);
    return 1;
}

/* Rights of category c at idx for a rule: at least one, and each handled by the ruleset (a rule for a right the
 * ruleset does not handle would allow what is allowed anyway: the kernel refuses it, and so do we, by name). */
static uint64_t check_rule_rights(lua_State *L, int idx, const struct landlock_ruleset *r, enum category c) {
    uint64_t mask = check_rights(L, idx, idx, "rights", c);
    if (!mask) lunas_field_error(L, idx, "rights", "at least one right expected");
    for (size_t i = 0; i < RIGHTS_COUNT; i++)
        if (rights[i].category == c && (mask & rights[i].bit) && !(r->handled[c] & rights[i].bit))
            lunas_field_error(L, idx, "rights", "right '%s' is not handled by this ruleset", rights[i].name);
    return mask;
}

/* An O_PATH descriptor for the path or fd at idx; *owned tells the caller to close it. Raises on misuse; -1 with
 * errno when a path cannot be opened. */
static int rule_target(lua_State *L, int idx, int *owned, const char **what) {
    *owned = 0;
    if (lua_type(L, idx) != LUA_TSTRING) {
        int fd = lunas_check_fd(L, idx, idx, "path");
        *what = lua_pushfstring(L, "fd %d", fd);
        return fd;
    }
    size_t len;
    const char *path = lua_tolstring(L, idx, &len);
    if (strlen(path) != len) lunas_field_error(L, idx, "path", "string contains a NUL byte");
    *what = path;
    /* Symlinks are followed, as in the kernel's sample: the rule is about what the path names. */
    int fd = open(path, O_PATH | O_CLOEXEC);
    *owned = fd >= 0;
    return fd;
}

/* Adds the path-beneath rule for fd: 0 or an errno. A directory right on a file, which the kernel would only answer
 * with a bare EINVAL, is caught first and named in *dir_right. No Lua call here: the caller may hold an fd. */
static int add_path_rule(const struct landlock_ruleset *r, int fd, uint64_t mask, const struct right **dir_right) {
    struct stat st;
    if (fstat(fd, &st) < 0) return errno;
    *dir_right = S_ISDIR(st.st_mode) ? NULL : first_right(FS, mask, directory_only, 0);
    if (*dir_right) return EINVAL;
    struct landlock_path_beneath_attr attr = {.allowed_access = mask, .parent_fd = fd};
    return add_rule(r->fd, RULE_PATH_BENEATH, &attr) < 0 ? errno : 0;
}

/***
Landlock rulesets.
A ruleset under construction (`landlock_ruleset`). `tostring` gives "landlock ruleset (fd N)".
@type landlock
*/

/***
Allows rights on a file, or on everything beneath a directory. Symlinks in the path are followed: the rule is
about what the path names.
@function landlock:allow_path
@tparam string|fd path
@tparam table|string rights file system rights, each handled by the ruleset; on a file, only the rights that
  apply to files (execute, write_file, read_file, truncate, ioctl_dev)
@treturn boolean true
@error "landlock allow_path PATH: message", "ENAME"; "EINVAL" for a directory right on a file
*/
static int ruleset_allow_path(lua_State *L) {
    struct landlock_ruleset *r = check_ruleset(L, 1);
    luaL_checkany(L, 2);
    uint64_t mask = check_rule_rights(L, 3, r, FS);
    int owned;
    const char *what;
    int fd = rule_target(L, 2, &owned, &what);
    if (fd < 0) return lunas_push_errorf(L, errno, "landlock allow_path %s", what);
    const struct right *dir_right = NULL;
    int err = add_path_rule(r, fd, mask, &dir_right);
    if (owned) close(fd);
    if (dir_right)
        return push_failure(L, EINVAL, "landlock allow_path %s: right '%s' applies to directories only", what,
                            dir_right->name);
    if (err) return lunas_push_errorf(L, err, "landlock allow_path %s", what);
    return push_true(L);
}

/***
Allows binding or connecting to a TCP port.
@function landlock:allow_port
@tparam integer port 0 to 65535
@tparam table|string rights "bind_tcp", "connect_tcp"
@treturn boolean true
@error "landlock allow_port N: message", "ENAME"
*/
static int ruleset_allow_port(lua_State *L) {
    struct landlock_ruleset *r = check_ruleset(L, 1);
    lua_Integer port = lunas_check_range(L, 2, 2, "port", 0, 65535);
    struct net_port_attr attr = {.allowed_access = check_rule_rights(L, 3, r, NET), .port = (uint64_t)port};
    if (add_rule(r->fd, RULE_NET_PORT, &attr) < 0)
        return lunas_push_errorf(L, errno, "landlock allow_port %d", (int)port);
    return push_true(L);
}

/***
Confines the calling thread (and what it forks and execs from now on) to the ruleset. There is no way back.
@function landlock:restrict
@treturn boolean true
@error "landlock restrict: message", "ENAME" ("EPERM": set no_new_privs first)
*/
static int ruleset_restrict(lua_State *L) {
    struct landlock_ruleset *r = check_ruleset(L, 1);
    if (restrict_self(r->fd) == 0) return push_true(L);
    int err = errno;
    if (err == EPERM)
        return push_failure(L, err, "landlock restrict: %s (set no_new_privs first)", strerror(err));
    return lunas_push_error(L, err, "landlock restrict", NULL);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pushes the sorted names of the rights of mask in category c. */
static void push_names(lua_State *L, enum category c, uint64_t mask) {
    const char *names[RIGHTS_COUNT];
    size_t n = 0;
    for (size_t i = 0; i < RIGHTS_COUNT; i++)
        if (rights[i].category == c && (mask & rights[i].bit)) names[n++] = rights[i].name;
    qsort(names, n, sizeof names[0], compare_names);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/***
The rights the ruleset handles.
@function landlock:handled
@treturn table `{fs = {names}, net = {names}, scoped = {names}}`, each sorted
*/
static int ruleset_handled(lua_State *L) {
    struct landlock_ruleset *r = check_ruleset(L, 1);
    lua_createtable(L, 0, CATEGORIES);
    for (int c = 0; c < CATEGORIES; c++) {
        push_names(L, (enum category)c, r->handled[c]);
        lua_setfield(L, -2, category_names[c]);
    }
    return 1;
}

/***
The ruleset's descriptor number.
@function landlock:fileno
@treturn integer
*/
static int ruleset_fileno(lua_State *L) {
    lua_pushinteger(L, check_ruleset(L, 1)->fd);
    return 1;
}

/***
Closes the ruleset (a restriction already made stays). Closing again does nothing.
@function landlock:close
*/
static int ruleset_close(lua_State *L) {
    struct landlock_ruleset *r = luaL_checkudata(L, 1, LUNAS_LANDLOCK);
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    return 0;
}

/* As for fd objects: a forked child holds a copy of the object, and only the creating process closes on
 * collection. */
static int ruleset_gc(lua_State *L) {
    struct landlock_ruleset *r = luaL_checkudata(L, 1, LUNAS_LANDLOCK);
    if (r->fd >= 0 && r->owner == getpid()) close(r->fd);
    r->fd = -1;
    return 0;
}

static int ruleset_tostring(lua_State *L) {
    struct landlock_ruleset *r = luaL_checkudata(L, 1, LUNAS_LANDLOCK);
    if (r->fd < 0)
        lua_pushliteral(L, "landlock ruleset (closed)");
    else
        lua_pushfstring(L, "landlock ruleset (fd %d)", r->fd);
    return 1;
}

void lunas_open_landlock(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", ruleset_gc}, {"__close", ruleset_close}, {"__tostring", ruleset_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"allow_path", ruleset_allow_path},
        {"allow_port", ruleset_allow_port},
        {"restrict", ruleset_restrict},
        {"handled", ruleset_handled},
        {"fileno", ruleset_fileno},
        {"close", ruleset_close},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"landlock_abi", landlock_abi},
        {"landlock_rights", landlock_rights},
        {"landlock_ruleset", landlock_ruleset},
        {NULL, NULL},
    };
    lunas_new_class(L, LUNAS_LANDLOCK, meta, methods);
    luaL_setfuncs(L, functions, 0);
}
