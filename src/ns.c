/* ns.c: namespaces: unshare, setns, handles on namespace files, persistence by bind mount, uid/gid maps,
 * time namespace offsets, and the UTS names. */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lunas.h"

#define LUNAS_NS "lunas.ns"
/* The kernel takes a uid/gid map in one write of less than a page, and at most 340 lines. */
#define MAP_MAX_LINES 340

struct lunas_ns {
    int fd;
    pid_t owner; /* __gc closes only in the creating process */
    uint64_t type; /* CLONE_NEW* */
    ino_t ino;
    dev_t dev;
};

/* Namespace file names under /proc/PID/ns, by flag. */
static const struct lunas_flag ns_files[] = {
    {"user", CLONE_NEWUSER}, {"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},        {"uts", CLONE_NEWUTS},
    {"ipc", CLONE_NEWIPC},   {"net", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
    {NULL, 0},
};

static const char *ns_file_name(uint64_t type) {
    for (const struct lunas_flag *f = ns_files; f->name; f++)
        if (f->value == type) return f->name;
    return NULL;
}

/* ---- handles ------------------------------------------------------------ */

static struct lunas_ns *check_ns(lua_State *L, int arg) {
    struct lunas_ns *ns = luaL_checkudata(L, arg, LUNAS_NS);
    if (ns->fd < 0) lunas_closed_error(L, "namespace");
    return ns;
}

/* Fills type/ino/dev from an open namespace fd; -1 with errno when fd is not a namespace. */
static int describe_ns_fd(struct lunas_ns *ns) {
    struct stat st;
    if (fstat(ns->fd, &st) < 0) return -1;
    int type = ioctl(ns->fd, NS_GET_NSTYPE);
    if (type < 0) return -1;
    ns->type = (uint64_t)type;
    ns->ino = st.st_ino;
    ns->dev = st.st_dev;
    return 0;
}

/***
Namespaces.
Handles on namespace files, unshare and setns, persistence by bind mount, uid and gid maps, time namespace offsets
and the UTS names.
@section namespaces
*/

/***
Namespace handles.
An open namespace file (/proc/PID/ns/TYPE or a bind mount of one), from `ns_open` and `ns_create`: pass it to
`setns`, `persist`, `netlink` or `sysctl`. Two handles compare equal (`==`) when they name the same namespace;
`tostring` gives "net:[4026532279]" as /proc does.
@type ns
*/

/***
The namespace's type.
@function ns:type
@treturn string "user", "pid", "mount", "uts", "ipc", "net", "cgroup" or "time"
*/
static int ns_type(lua_State *L) {
    lua_pushstring(L, lunas_ns_name(check_ns(L, 1)->type));
    return 1;
}

/***
The namespace's inode number, the id that /proc/PID/ns links, `ip netns identify` and lsns show.
@function ns:id
@treturn integer
*/
static int ns_id(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)check_ns(L, 1)->ino);
    return 1;
}

/***
The descriptor's number.
@function ns:fileno
@treturn integer
*/
static int ns_fileno(lua_State *L) {
    lua_pushinteger(L, check_ns(L, 1)->fd);
    return 1;
}

/***
Closes the descriptor (the namespace lives on while a process or a bind mount holds it). Closing again does
nothing.
@function ns:close
*/
static int ns_close(lua_State *L) {
    struct lunas_ns *ns = luaL_checkudata(L, 1, LUNAS_NS);
    if (ns->fd >= 0) close(ns->fd);
    ns->fd = -1;
    return 0;
}

static int ns_gc(lua_State *L) {
    struct lunas_ns *ns = luaL_checkudata(L, 1, LUNAS_NS);
    if (ns->fd >= 0 && ns->owner == getpid()) close(ns->fd);
    ns->fd = -1;
    return 0;
}

static int ns_eq(lua_State *L) {
    struct lunas_ns *a = check_ns(L, 1), *b = check_ns(L, 2);
    lua_pushboolean(L, a->ino == b->ino && a->dev == b->dev);
    return 1;
}

static int ns_tostring(lua_State *L) {
    struct lunas_ns *ns = luaL_checkudata(L, 1, LUNAS_NS);
    if (ns->fd < 0) lua_pushliteral(L, "namespace (closed)");
    else lua_pushfstring(L, "%s:[%I]", ns_file_name(ns->type), (lua_Integer)ns->ino);
    return 1;
}

/***
Namespaces.
@section namespaces
*/

/***
Opens a namespace: `ns_open(type [, pid])` opens /proc/PID/ns/TYPE (pid defaults to the caller),
`ns_open(path)` a namespace file such as /run/netns/NAME.
@function ns_open
@tparam string what a type ("net", "mnt" or "mount", ...) or a path (anything with a slash)
@tparam[opt] integer pid with a type: the process whose namespace to open
@treturn ns
@error "open namespace PATH: message", "ENAME"; "EINVAL" when the file is not a namespace
*/
static int ns_open(lua_State *L) {
    const char *what = luaL_checkstring(L, 1);
    char path[PATH_MAX];
    uint64_t expect = 0;
    if (strchr(what, '/')) {
        if (!lua_isnoneornil(L, 2)) return lunas_field_error(L, 2, "pid", "not allowed with a path");
        if (strlen(what) >= sizeof path) return lunas_field_error(L, 1, "path", "too long");
        snprintf(path, sizeof path, "%s", what);
    } else {
        expect = lunas_check_flag_name(L, 1, what, lunas_ns_flags, "type");
        if (lua_isnoneornil(L, 2)) snprintf(path, sizeof path, "/proc/self/ns/%s", ns_file_name(expect));
        else
            snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)lunas_check_range(L, 2, 2, "pid", 1, INT32_MAX),
                     ns_file_name(expect));
    }
    struct lunas_ns *ns = lua_newuserdatauv(L, sizeof *ns, 0);
    ns->fd = -1;
    ns->owner = getpid();
    luaL_setmetatable(L, LUNAS_NS);
    ns->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (ns->fd < 0) return lunas_push_error(L, errno, "open namespace", path);
    if (describe_ns_fd(ns) < 0) {
        int err = errno == ENOTTY ? EINVAL : errno;
        close(ns->fd);
        ns->fd = -1;
        return lunas_push_errorf(L, err, "open namespace %s (not a namespace file)", path);
    }
    return 1;
}

/***
The inode number of every namespace of a process, keyed by type (time is left out on a kernel without it).
@function ns_ids
@tparam[opt] integer pid default: the caller
@treturn table `{user = inode, pid = inode, mount = inode, uts = ..., ipc = ..., net = ..., cgroup = ..., time = ...}`
@error "stat /proc/PID/ns/TYPE: message", "ENAME"
*/
static int ns_ids(lua_State *L) {
    int pid = lua_isnoneornil(L, 1) ? 0 : (int)lunas_check_range(L, 1, 1, "pid", 1, INT32_MAX);
    char path[64];
    lua_newtable(L);
    for (const struct lunas_flag *f = ns_files; f->name; f++) {
        struct stat st;
        if (pid) snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, f->name);
        else snprintf(path, sizeof path, "/proc/self/ns/%s", f->name);
        if (stat(path, &st) < 0) {
            if (errno == ENOENT && f->value == CLONE_NEWTIME) continue; /* kernel without time namespaces */
            return lunas_push_error(L, errno, "stat", path);
        }
        lua_pushinteger(L, (lua_Integer)st.st_ino);
        lua_setfield(L, -2, lunas_ns_name(f->value));
    }
    return 1;
}

/* ---- unshare and setns ---------------------------------------------------- */

/* "user,net" for CLONE_NEWUSER|CLONE_NEWNET: error messages name what was asked. */
static void format_ns_flags(uint64_t flags, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (const struct lunas_flag *f = ns_files; f->name; f++) {
        if (!(flags & f->value)) continue;
        int w = snprintf(buf + len, size - len, "%s%s", len ? "," : "", lunas_ns_name(f->value));
        if (w < 0 || (size_t)w >= size - len) break;
        len += (size_t)w;
    }
}

/***
Moves the caller into new namespaces (unshare). A new pid namespace takes effect for the children only.
@function unshare
@tparam integer|string|table flags at least one namespace: "user,net", {"mount"}, ...
@treturn boolean true
@error "unshare user,net: message", "ENAME"
*/
static int ns_unshare(lua_State *L) {
    uint64_t flags = lunas_check_flags(L, 1, 1, lunas_ns_flags, "flags");
    if (flags == 0) return lunas_field_error(L, 1, "flags", "at least one namespace expected");
    if (unshare((int)flags) < 0) {
        int err = errno;
        char names[128];
        format_ns_flags(flags, names, sizeof names);
        return lunas_push_errorf(L, err, "unshare %s", names);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
A new namespace with no process in it, as a handle: the caller unshares, opens it and goes back where it was.
Only types the caller can leave again: net, uts, ipc, cgroup. A user, pid, mount or time namespace raises:
joining back is impossible or would break the host process (KERNEL-NOTES).
@function ns_create
@tparam string type "net", "uts", "ipc" or "cgroup"
@treturn ns
@error "ns_create net: unshare: message", "ENAME"
*/
static int ns_create(lua_State *L) {
    static const struct lunas_flag creatable[] = {
        {"net", CLONE_NEWNET}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC}, {"cgroup", CLONE_NEWCGROUP}, {NULL, 0}};
    uint64_t type = lunas_check_flag_name(L, 1, luaL_checkstring(L, 1), creatable, "type");
    char path[64];
    snprintf(path, sizeof path, "/proc/thread-self/ns/%s", ns_file_name(type));
    struct lunas_ns *ns = lua_newuserdatauv(L, sizeof *ns, 0);
    ns->fd = -1;
    ns->owner = getpid();
    luaL_setmetatable(L, LUNAS_NS);
    int original = open(path, O_RDONLY | O_CLOEXEC);
    if (original < 0) return lunas_push_error(L, errno, "ns_create: open", path);
    if (lunas_ns_returnable(original) < 0) {
        int err = errno;
        close(original);
        return lunas_push_errorf(L, err, "ns_create %s: the current %s namespace could not be joined back (it "
                                 "belongs to a user namespace above this process's own)", ns_file_name(type),
                                 ns_file_name(type));
    }
    if (unshare((int)type) < 0) {
        int err = errno;
        close(original);
        return lunas_push_errorf(L, err, "ns_create %s: unshare", ns_file_name(type));
    }
    ns->fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = errno;
    if (setns(original, (int)type) < 0) {
        static const char msg[] = "lunas: ns_create: cannot return to the original namespace\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    close(original);
    if (ns->fd < 0) return lunas_push_error(L, err, "ns_create: open", path);
    if (describe_ns_fd(ns) < 0) return lunas_push_error(L, errno, "ns_create: describe", path);
    return 1;
}

/***
Moves the caller into namespaces (setns).
@function setns
@tparam ns|string|process|fd|integer target a namespace handle, a namespace file path, a process handle (its
  pidfd: several namespaces at once, named by flags) or a descriptor
@tparam[opt] integer|string|table flags the namespaces to join; required with a process, optional otherwise (with
  a handle it must be the handle's type)
@treturn boolean true
@error "setns TARGET: message", "ENAME"
*/
static int ns_setns(lua_State *L) {
    uint64_t flags = lunas_check_flags(L, 2, 2, lunas_ns_flags, "flags");
    int fd = -1, owned = 0;
    char what[PATH_MAX + 32];
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *path = lua_tostring(L, 1);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return lunas_push_error(L, errno, "setns", path);
        owned = 1;
        snprintf(what, sizeof what, "%s", path);
    } else if (luaL_testudata(L, 1, LUNAS_NS)) {
        struct lunas_ns *ns = check_ns(L, 1);
        fd = ns->fd;
        if (flags && flags != ns->type) return lunas_field_error(L, 2, "flags", "do not match the handle's type");
        snprintf(what, sizeof what, "%s:[%lu]", ns_file_name(ns->type), (unsigned long)ns->ino);
    } else {
        fd = lunas_check_fd(L, 1, 1, "target");
        snprintf(what, sizeof what, "fd %d", fd);
        if (luaL_testudata(L, 1, "lunas.process")) {
            if (!flags) return lunas_field_error(L, 2, "flags", "namespaces to join expected with a process");
            lua_getfield(L, 1, "pid");
            snprintf(what, sizeof what, "pid %d", (int)lua_tointeger(L, -1));
            lua_pop(L, 1);
        }
    }
    int r = setns(fd, (int)flags);
    int err = errno;
    if (owned) close(fd);
    if (r < 0) return lunas_push_error(L, err, "setns", what);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- persistence ---------------------------------------------------------- */

/* Makes dir a shared mount point, binding it onto itself first when it is not a mount yet: what `ip netns add`
 * does so that namespace mounts made later propagate to mount namespaces created earlier. */
static int make_shared_mount_dir(const char *dir) {
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -1;
    if (mount("", dir, NULL, MS_SHARED | MS_REC, NULL) == 0) return 0;
    if (errno != EINVAL) return -1;
    if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
    return mount("", dir, NULL, MS_SHARED | MS_REC, NULL);
}

static int parent_dir(const char *path, char *dir, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path || (size_t)(slash - path) >= size) return -1;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    return 0;
}

/***
Keeps a namespace alive after its last process by bind-mounting it onto `path`.
@function persist
@tparam ns|fd|integer ns the namespace
@tparam string path an absolute path; the file is created and must not exist
@tparam[opt] table opts
@tparam[opt=false] boolean opts.shared_dir make the directory a shared mount point first (binding it onto itself
  if needed), as `ip netns add` does with /run/netns: the bind mount then reaches mount namespaces made earlier,
  so `ip netns` sees it from everywhere
@treturn boolean true
@error "persist: bind PATH: message", "ENAME" (and "persist: create", "persist: share directory")
*/
static int ns_persist(lua_State *L) {
    static const char *const allowed[] = {"shared_dir", NULL};
    int fd = luaL_testudata(L, 1, LUNAS_NS) ? check_ns(L, 1)->fd : lunas_check_fd(L, 1, 1, "ns");
    const char *path = luaL_checkstring(L, 2);
    int shared = 0;
    if (!lua_isnoneornil(L, 3)) {
        lunas_check_options(L, 3, allowed);
        shared = lunas_opt_boolean(L, 3, "shared_dir", 0);
    }
    char dir[PATH_MAX], source[64];
    if (path[0] != '/' || parent_dir(path, dir, sizeof dir) < 0)
        return lunas_field_error(L, 2, "path", "absolute path of a file expected");
    if (shared && make_shared_mount_dir(dir) < 0) return lunas_push_error(L, errno, "persist: share directory", dir);
    int file = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (file < 0) return lunas_push_error(L, errno, "persist: create", path);
    close(file);
    snprintf(source, sizeof source, "/proc/self/fd/%d", fd);
    if (mount(source, path, NULL, MS_BIND, NULL) < 0) {
        int err = errno;
        unlink(path);
        return lunas_push_error(L, err, "persist: bind", path);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Undoes `persist`: detaches the bind mount and removes the file.
@function unpersist
@tparam string path
@treturn boolean true
@error "unpersist: umount PATH: message", "ENAME" (or "unpersist: unlink")
*/
static int ns_unpersist(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
        return lunas_push_error(L, errno, "unpersist: umount", path);
    if (unlink(path) < 0) return lunas_push_error(L, errno, "unpersist: unlink", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- uid/gid maps --------------------------------------------------------- */

/* Formats the ranges table at arg ({ {inside, outside, count}, ... }) as a map file body. */
static size_t format_map(lua_State *L, int arg, int blame, const char *field, char *buf, size_t size) {
    if (lua_type(L, arg) != LUA_TTABLE) lunas_field_error(L, blame, field, "table of {inside, outside, count} expected");
    lua_Integer n = (lua_Integer)lua_rawlen(L, arg);
    if (n < 1 || n > MAP_MAX_LINES) lunas_field_error(L, blame, field, "1 to %d ranges expected", MAP_MAX_LINES);
    size_t len = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, arg, i) != LUA_TTABLE) lunas_field_error(L, blame, field, "range %d: table expected", (int)i);
        lua_Integer v[3];
        for (int k = 0; k < 3; k++) {
            int ok = 0;
            lua_rawgeti(L, -1, k + 1);
            v[k] = lua_tointegerx(L, -1, &ok);
            if (!ok || v[k] < 0 || v[k] > UINT32_MAX - 1)
                lunas_field_error(L, blame, field, "range %d: three ids {inside, outside, count} expected", (int)i);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (v[2] < 1 || v[0] + v[2] > (lua_Integer)UINT32_MAX || v[1] + v[2] > (lua_Integer)UINT32_MAX)
            lunas_field_error(L, blame, field, "range %d: count out of range", (int)i);
        int w = snprintf(buf + len, size - len, "%lld %lld %lld\n", (long long)v[0], (long long)v[1], (long long)v[2]);
        if (w < 0 || (size_t)w >= size - len) lunas_field_error(L, blame, field, "map longer than %d bytes", MAP_MAX_BYTES);
        len += (size_t)w;
    }
    return len;
}

static int open_proc_dir(lua_State *L, int arg) {
    char path[32];
    /* A process's /proc directory opened earlier (before a pivot took /proc out of reach). */
    if (lua_type(L, arg) == LUA_TUSERDATA) return fcntl(lunas_check_fd(L, arg, arg, "pid"), F_DUPFD_CLOEXEC, 0);
    if (lua_isnoneornil(L, arg) || (lua_isinteger(L, arg) && lua_tointeger(L, arg) == 0)) snprintf(path, sizeof path, "/proc/self");
    else snprintf(path, sizeof path, "/proc/%d", (int)lunas_check_range(L, arg, arg, "pid", 0, INT32_MAX));
    return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/***
Writes the uid and gid maps of a process in a new user namespace: /proc/PID/uid_map, setgroups, then gid_map, in
that order and each in one write, as the kernel requires.
@function id_maps
@tparam integer|fd pid the process (0: the caller), or its /proc directory opened earlier
@tparam table maps
@tparam[opt] table maps.uid ranges `{{inside, outside, count}, ...}`, 1 to 340 of them
@tparam[opt] table maps.gid likewise
@tparam[opt] string maps.setgroups "deny" (needed before an unprivileged gid_map) or "allow"
@treturn boolean true
@error "write /proc/PID/uid_map: message", "ENAME"
*/
void lunas_check_id_maps(lua_State *L, int idx, int arg, struct lunas_id_maps *m) {
    static const char *const allowed[] = {"uid", "gid", "setgroups", NULL};
    static const char *const setgroups_values[] = {"deny", "allow", NULL};
    lunas_check_options(L, idx, allowed);
    int top = lua_gettop(L);
    m->uid_len = m->gid_len = 0;
    m->setgroups = NULL;
    if (lua_getfield(L, idx, "uid") != LUA_TNIL) m->uid_len = format_map(L, lua_gettop(L), arg, "uid", m->uid, sizeof m->uid);
    if (lua_getfield(L, idx, "gid") != LUA_TNIL) m->gid_len = format_map(L, lua_gettop(L), arg, "gid", m->gid, sizeof m->gid);
    if (lua_getfield(L, idx, "setgroups") != LUA_TNIL) {
        const char *value = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        for (const char *const *v = setgroups_values; *v && !m->setgroups; v++)
            if (strcmp(*v, value) == 0) m->setgroups = *v;
        if (!m->setgroups) lunas_field_error(L, arg, "setgroups", "'deny' or 'allow' expected");
    }
    lua_settop(L, top);
}

int lunas_write_id_maps(int proc_dir, const struct lunas_id_maps *m, const char **failed) {
    *failed = NULL;
    if (m->uid_len && lunas_write_file(proc_dir, "uid_map", m->uid, m->uid_len) < 0) *failed = "uid_map";
    else if (m->setgroups && lunas_write_file(proc_dir, "setgroups", m->setgroups, strlen(m->setgroups)) < 0)
        *failed = "setgroups";
    else if (m->gid_len && lunas_write_file(proc_dir, "gid_map", m->gid, m->gid_len) < 0) *failed = "gid_map";
    return *failed ? -1 : 0;
}

static int ns_id_maps(lua_State *L) {
    struct lunas_id_maps maps;
    lunas_check_id_maps(L, 2, 2, &maps);
    int dir = open_proc_dir(L, 1);
    if (dir < 0) return lunas_push_error(L, errno, "id_maps: open", "/proc/PID");
    const char *failed;
    lunas_write_id_maps(dir, &maps, &failed);
    int err = errno;
    close(dir);
    if (failed) {
        lua_Integer pid = lua_isnoneornil(L, 1) ? 0 : lua_tointeger(L, 1);
        return pid ? lunas_push_errorf(L, err, "write /proc/%d/%s", (int)pid, failed)
                   : lunas_push_errorf(L, err, "write /proc/self/%s", failed);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- time namespace offsets ---------------------------------------------- */

static int format_offset(char *buf, size_t size, const char *clock, double seconds) {
    long long sec = (long long)seconds;
    long long nsec = (long long)((seconds - (double)sec) * 1e9);
    if (nsec < 0) {
        sec -= 1;
        nsec += 1000000000LL;
    }
    return snprintf(buf, size, "%s %lld %lld\n", clock, sec, nsec);
}

/***
Sets the clock offsets of a new time namespace. Only possible before any process entered it: a process that
unshared CLONE_NEWTIME writes its own /proc/self/timens_offsets, and its children enter the namespace.
@function timens_offsets
@tparam integer pid the process (0: the caller)
@tparam table offsets
@tparam[opt] number offsets.monotonic seconds added to CLOCK_MONOTONIC
@tparam[opt] number offsets.boottime seconds added to CLOCK_BOOTTIME
@treturn boolean true
@error "write /proc/PID/timens_offsets: message", "ENAME"
*/
static int ns_timens_offsets(lua_State *L) {
    static const char *const allowed[] = {"monotonic", "boottime", NULL};
    lunas_check_options(L, 2, allowed);
    char buf[128];
    int len = 0;
    for (const char *const *clock = allowed; *clock; clock++) {
        if (lua_getfield(L, 2, *clock) == LUA_TNIL) continue;
        if (lua_type(L, -1) != LUA_TNUMBER) return lunas_field_error(L, 2, *clock, "number of seconds expected");
        double s = lua_tonumber(L, -1);
        if (!(s > -1e12 && s < 1e12)) return lunas_field_error(L, 2, *clock, "offset out of range");
        len += format_offset(buf + len, sizeof buf - (size_t)len, *clock, s);
    }
    int dir = open_proc_dir(L, 1);
    if (dir < 0) return lunas_push_error(L, errno, "timens_offsets: open", "/proc/PID");
    int r = len ? lunas_write_file(dir, "timens_offsets", buf, (size_t)len) : 0;
    int err = errno;
    close(dir);
    if (r < 0) {
        lua_Integer pid = lua_isinteger(L, 1) ? lua_tointeger(L, 1) : 0;
        return pid ? lunas_push_errorf(L, err, "write /proc/%d/timens_offsets", (int)pid)
                   : lunas_push_errorf(L, err, "write /proc/self/timens_offsets");
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- UTS ------------------------------------------------------------------ */

static const char *check_uts_name(lua_State *L, int arg, const char *field, size_t *len) {
    const char *s = luaL_checklstring(L, arg, len);
    if (*len == 0 || *len > 64 || strlen(s) != *len) lunas_field_error(L, arg, field, "1 to 64 bytes expected");
    return s;
}

/***
Sets the host name of the caller's UTS namespace.
@function sethostname
@tparam string name 1 to 64 bytes
@treturn boolean true
@error "sethostname NAME: message", "ENAME"
*/
static int ns_sethostname(lua_State *L) {
    size_t len;
    const char *name = check_uts_name(L, 1, "hostname", &len);
    if (sethostname(name, len) < 0) return lunas_push_error(L, errno, "sethostname", name);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Sets the NIS domain name of the caller's UTS namespace.
@function setdomainname
@tparam string name 1 to 64 bytes
@treturn boolean true
@error "setdomainname NAME: message", "ENAME"
*/
static int ns_setdomainname(lua_State *L) {
    size_t len;
    const char *name = check_uts_name(L, 1, "domainname", &len);
    if (setdomainname(name, len) < 0) return lunas_push_error(L, errno, "setdomainname", name);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The system's names as uname(2) gives them, the host and domain names from the caller's UTS namespace.
@function uname
@treturn table `{sysname, hostname, release, version, machine, domainname}`
*/
static int ns_uname(lua_State *L) {
    struct utsname u;
    if (uname(&u) < 0) return lunas_push_error(L, errno, "uname", NULL);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, u.sysname);
    lua_setfield(L, -2, "sysname");
    lua_pushstring(L, u.nodename);
    lua_setfield(L, -2, "hostname");
    lua_pushstring(L, u.release);
    lua_setfield(L, -2, "release");
    lua_pushstring(L, u.version);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, u.machine);
    lua_setfield(L, -2, "machine");
    lua_pushstring(L, u.domainname);
    lua_setfield(L, -2, "domainname");
    return 1;
}

void lunas_open_ns(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", ns_gc}, {"__close", ns_close}, {"__eq", ns_eq}, {"__tostring", ns_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"type", ns_type}, {"id", ns_id}, {"fileno", ns_fileno}, {"close", ns_close}, {NULL, NULL}};
    static const luaL_Reg functions[] = {
        {"ns_open", ns_open},
        {"ns_ids", ns_ids},
        {"unshare", ns_unshare},
        {"ns_create", ns_create},
        {"setns", ns_setns},
        {"persist", ns_persist},
        {"unpersist", ns_unpersist},
        {"id_maps", ns_id_maps},
        {"timens_offsets", ns_timens_offsets},
        {"sethostname", ns_sethostname},
        {"setdomainname", ns_setdomainname},
        {"uname", ns_uname},
        {NULL, NULL},
    };
    lunas_new_class(L, LUNAS_NS, meta, methods);
    luaL_setfuncs(L, functions, 0);
}
