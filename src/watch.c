/* watch.c: notifications the kernel gives instead of a polling loop: inotify (a directory of records, a cgroup's
 * cgroup.events or memory.events, which the kernel marks modified when their state changes) and eventfd (what a
 * v1 memory cgroup signals an OOM through, once registered in its cgroup.event_control). Both are fd objects:
 * `poll` waits on them. */
/*** @module lunas.core */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "lunas.h"

static const struct lunas_flag inotify_events[] = {
    {"access", IN_ACCESS},         {"modify", IN_MODIFY},           {"attrib", IN_ATTRIB},
    {"close_write", IN_CLOSE_WRITE}, {"close_nowrite", IN_CLOSE_NOWRITE}, {"open", IN_OPEN},
    {"moved_from", IN_MOVED_FROM}, {"moved_to", IN_MOVED_TO},       {"create", IN_CREATE},
    {"delete", IN_DELETE},         {"delete_self", IN_DELETE_SELF}, {"move_self", IN_MOVE_SELF},
    {"unmount", IN_UNMOUNT},       {"overflow", IN_Q_OVERFLOW},     {"ignored", IN_IGNORED},
    {"isdir", IN_ISDIR},           {"onlydir", IN_ONLYDIR},         {"dont_follow", IN_DONT_FOLLOW},
    {"excl_unlink", IN_EXCL_UNLINK}, {NULL, 0},
};

/* The bits add_watch may ask for (the rest are reported, never requested). */
#define WATCH_REQUESTABLE (IN_ALL_EVENTS | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/***
A new inotify instance (non-blocking, close-on-exec): watch paths with `inotify_add`, wait with `poll`, read what
happened with `inotify_read`.
@function inotify
@treturn fd
@error "inotify: message", "ENAME" (EMFILE at the per-user instance limit)
*/
static int core_inotify(lua_State *L) {
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f->fd < 0) return lunas_push_error(L, errno, "inotify", NULL);
    return 1;
}

/***
Watches a path.
@function inotify_add
@tparam fd fd an inotify instance
@tparam string path
@tparam string|table events names: access, modify, attrib, close_write, close_nowrite, open, moved_from,
  moved_to, create, delete, delete_self, move_self, onlydir, dont_follow, excl_unlink
@treturn integer the watch descriptor (events name it)
@error "inotify_add PATH: message", "ENAME"
*/
/* Is fd an inotify instance? (Reading any other descriptor as one would parse foreign bytes as events, for ever
 * from /dev/zero.) */
static int is_inotify(int fd) {
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) return 0;
    target[n] = 0;
    return strcmp(target, "anon_inode:inotify") == 0;
}

static int check_inotify(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "fd");
    if (!is_inotify(fd)) return lunas_field_error(L, 1, "fd", "an inotify instance expected");
    return fd;
}

static int core_inotify_add(lua_State *L) {
    int fd = check_inotify(L);
    size_t len;
    const char *path = luaL_checklstring(L, 2, &len);
    if (len == 0 || strlen(path) != len) return lunas_field_error(L, 2, "path", "a non-empty path without NUL expected");
    uint64_t mask = lunas_check_flags(L, 3, 3, inotify_events, "events");
    if (mask == 0 || (mask & ~(uint64_t)WATCH_REQUESTABLE))
        return lunas_field_error(L, 3, "events", "one or more requestable events expected");
    int wd = inotify_add_watch(fd, path, (uint32_t)mask);
    if (wd < 0) return lunas_push_error(L, errno, "inotify_add", path);
    lua_pushinteger(L, wd);
    return 1;
}

/***
Stops a watch.
@function inotify_remove
@tparam fd fd
@tparam integer wd
@treturn true
@error "inotify_remove: message", "ENAME" (EINVAL when the watch is gone: its path was removed)
*/
static int core_inotify_remove(lua_State *L) {
    int fd = check_inotify(L);
    int wd = (int)lunas_check_range(L, 2, 2, "wd", 0, INT32_MAX);
    if (inotify_rm_watch(fd, wd) < 0) return lunas_push_error(L, errno, "inotify_remove", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The events queued so far (never waits: `poll` first).
@function inotify_read
@tparam fd fd
@treturn table an array of `{wd = integer, events = {"create", ...}, name = "file" (for a watched directory's
  entries), cookie = integer (pairs moved_from with moved_to)}`; empty when none is queued. "overflow" (wd -1)
  says some were lost.
@error "inotify_read: message", "ENAME"
*/
static int core_inotify_read(lua_State *L) {
    int fd = check_inotify(L);
    /* Aligned for struct inotify_event; room for many events at once, at least one with the longest name. */
    char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)] __attribute__((aligned(__alignof__(struct inotify_event))));
    lua_newtable(L);
    lua_Integer n = 0;
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN) break;
        if (got < 0) return lunas_push_error(L, errno, "inotify_read", NULL);
        if (got == 0) break;
        for (size_t off = 0; (size_t)got - off >= sizeof(struct inotify_event);) {
            const char *p = buf + off;
            struct inotify_event ev;
            memcpy(&ev, p, sizeof ev);
            if ((size_t)got - off - sizeof ev < ev.len) break;
            lua_createtable(L, 0, 4);
            lua_pushinteger(L, ev.wd);
            lua_setfield(L, -2, "wd");
            lua_newtable(L);
            lua_Integer k = 0;
            for (const struct lunas_flag *f = inotify_events; f->name; f++) {
                if (ev.mask & f->value) {
                    lua_pushstring(L, f->name);
                    lua_rawseti(L, -2, ++k);
                }
            }
            lua_setfield(L, -2, "events");
            if (ev.len > 0) {
                const char *name = p + sizeof ev;
                lua_pushlstring(L, name, strnlen(name, ev.len));
                lua_setfield(L, -2, "name");
            }
            if (ev.cookie) {
                lua_pushinteger(L, ev.cookie);
                lua_setfield(L, -2, "cookie");
            }
            lua_rawseti(L, -2, ++n);
            off += sizeof ev + ev.len;
        }
    }
    return 1;
}

/***
A new eventfd counter (non-blocking, close-on-exec): a v1 memory cgroup signals OOMs through one registered in its
cgroup.event_control ("EVENTFD OOM_CONTROL_FD"). `fd:read(8)` gives the count since the last read (a native
64-bit integer: `string.unpack("=I8", s)`); `poll` says when it is non-zero.
@function eventfd
@treturn fd
@error "eventfd: message", "ENAME"
*/
static int core_eventfd(lua_State *L) {
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->fd < 0) return lunas_push_error(L, errno, "eventfd", NULL);
    return 1;
}

void lunas_open_watch(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"inotify", core_inotify},           {"inotify_add", core_inotify_add}, {"inotify_remove", core_inotify_remove},
        {"inotify_read", core_inotify_read}, {"eventfd", core_eventfd},         {NULL, NULL}};
    luaL_setfuncs(L, functions, 0);
}
