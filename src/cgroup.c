/* cgroup.c: the few things cgroup management needs from C. Cgroups are files, and their policy (layout, limits,
 * units, attach, kill) lives in lua/lunas/cgroup.lua; what Lua cannot do well is here:
 *  - reads and writes that report the errno (one write() per value: the kernel parses each write on its own, and a
 *    buffered io.write would report EINVAL at close, or not at all);
 *  - directory fds for CLONE_INTO_CGROUP, and the child cgroups of a directory (by d_type, for removal);
 *  - waiting until a cgroup is empty or frozen (poll on cgroup.events, the kernel's own notification);
 *  - chown for delegation, and the device number of a block device for io limits. */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "lunas.h"

#define CGROUP_FILE_MAX ((off_t)64 << 20)

/* A cgroup directory: an absolute path without NUL (the kernel would stop there). */
static const char *check_dir(lua_State *L, int arg) {
    size_t len;
    const char *dir = luaL_checklstring(L, arg, &len);
    if (len == 0 || dir[0] != '/' || strlen(dir) != len || len >= PATH_MAX)
        lunas_field_error(L, arg, "dir", "absolute path expected, got '%s'", dir);
    return dir;
}

/* A file inside a cgroup directory: a plain name, so nothing can reach outside the directory. */
static const char *check_file_name(lua_State *L, int arg) {
    size_t len;
    const char *name = luaL_checklstring(L, arg, &len);
    if (len == 0 || len > NAME_MAX || strlen(name) != len || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        lunas_field_error(L, arg, "file", "a file name without '/' expected, got '%s'", name);
    return name;
}

static int open_in_dir(const char *dir, const char *name, int flags) {
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    int fd = openat(dfd, name, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    int saved = errno;
    close(dfd);
    errno = saved;
    return fd;
}

/* Reads from offset 0 to EOF into a Lua string (pushed); -1 with errno on failure. */
static int push_whole_file(lua_State *L, int fd) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    off_t offset = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = pread(fd, chunk, sizeof chunk, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        luaL_addlstring(&b, chunk, (size_t)n);
        offset += n;
        if (offset > CGROUP_FILE_MAX) {
            errno = EFBIG;
            return -1;
        }
    }
    luaL_pushresult(&b);
    return 0;
}

/***
Cgroups.
The few things cgroup management needs from C (the policy lives in `lunas.cgroup`): reads and writes that report
the errno (one write() per value: the kernel parses each write on its own), directory descriptors for
CLONE_INTO_CGROUP, waiting on cgroup.events, chown for delegation. `dir` is an absolute directory path, `file` a
plain name inside it (no '/').
@section cgroups
*/

/***
Reads a whole cgroup file (at most 64 MiB).
@function cgroup_read
@tparam string dir
@tparam string file
@treturn string the contents
@error "read FILE in DIR: message", "ENAME"
*/
static int cgroup_read(lua_State *L) {
    const char *dir = check_dir(L, 1);
    const char *name = check_file_name(L, 2);
    int fd = open_in_dir(dir, name, O_RDONLY);
    if (fd < 0) return lunas_push_errorf(L, errno, "read %s in %s", name, dir);
    int rc = push_whole_file(L, fd);
    int saved = errno;
    close(fd);
    if (rc < 0) return lunas_push_errorf(L, saved, "read %s in %s", name, dir);
    return 1;
}

/***
Writes a value to a cgroup file in one write(), as the kernel expects: the errno of a refused value comes back
here, not at a later close.
@function cgroup_write
@tparam string dir
@tparam string file
@tparam string|number value
@treturn boolean true
@error "write FILE=VALUE in DIR: message", "ENAME"
*/
static int cgroup_write(lua_State *L) {
    const char *dir = check_dir(L, 1);
    const char *name = check_file_name(L, 2);
    luaL_argcheck(L, lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER, 3, "string or number expected");
    size_t len;
    const char *value = lua_tolstring(L, 3, &len);
    int fd = open_in_dir(dir, name, O_WRONLY);
    if (fd < 0) return lunas_push_errorf(L, errno, "write %s in %s", name, dir);
    ssize_t n;
    do n = write(fd, value, len);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0 || (size_t)n != len) {
        /* Show what was written, without a trailing newline and cut short: enough to see which value failed. */
        int shown = (int)(len > 64 ? 64 : len);
        while (shown > 0 && value[shown - 1] == '\n') shown--;
        return lunas_push_errorf(L, n < 0 ? saved : EIO, "write %s=%.*s in %s", name, shown, value, dir);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Creates a cgroup directory (mode 0755).
@function cgroup_mkdir
@tparam string dir
@treturn boolean true
@error "mkdir DIR: message", "ENAME"
*/
static int cgroup_mkdir(lua_State *L) {
    const char *dir = check_dir(L, 1);
    if (mkdir(dir, 0755) < 0) return lunas_push_error(L, errno, "mkdir", dir);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Removes an empty cgroup directory (EBUSY while a process or child cgroup is inside).
@function cgroup_rmdir
@tparam string dir
@treturn boolean true
@error "rmdir DIR: message", "ENAME"
*/
static int cgroup_rmdir(lua_State *L) {
    const char *dir = check_dir(L, 1);
    if (rmdir(dir) < 0) return lunas_push_error(L, errno, "rmdir", dir);
    lua_pushboolean(L, 1);
    return 1;
}

/***
A descriptor of a cgroup directory: what `spawn{cgroup = fd}` (CLONE_INTO_CGROUP) takes.
@function cgroup_open
@tparam string dir
@treturn fd
@error "open DIR: message", "ENAME"
*/
static int cgroup_open(lua_State *L) {
    const char *dir = check_dir(L, 1);
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->fd < 0) return lunas_push_error(L, errno, "open", dir);
    return 1;
}

/***
The child cgroups of a directory: its subdirectories only, told apart by d_type (a cgroup directory holds dozens
of files, and a removal walks every level).
@function cgroup_children
@tparam string dir
@treturn table an array of names
@error "list DIR: message", "ENAME"
*/
static int cgroup_children(lua_State *L) {
    const char *dir = check_dir(L, 1);
    DIR *d = opendir(dir);
    if (!d) return lunas_push_error(L, errno, "list", dir);
    lua_newtable(L);
    lua_Integer n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    int saved = errno;
    closedir(d);
    if (saved) return lunas_push_error(L, saved, "list", dir);
    return 1;
}

static int contains_line(const char *text, size_t len, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; p && (size_t)(p - text) + n <= len;) {
        if (memcmp(p, line, n) == 0 && ((size_t)(p - text) + n == len || p[n] == '\n')) return 1;
        const char *nl = memchr(p, '\n', len - (size_t)(p - text));
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* 1 when the file holds `line` as a whole line (or is empty, for an empty `line`), 0 when not, -1 on error. */
static int file_has_line(int fd, const char *line) {
    char buf[4096];
    ssize_t n;
    do n = pread(fd, buf, sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (!line[0]) return n == 0;
    return contains_line(buf, (size_t)n, line);
}

static int remaining_ms(double deadline) {
    if (deadline < 0) return -1;
    double left = deadline - lunas_now();
    return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

/* cgroup.events is notified (POLLPRI) the moment "populated" or "frozen" flips, and reading re-arms it. Other
 * files (v1's cgroup.procs, freezer.state) are not: those are read again after a growing pause. */
static int wait_for_line(int fd, const char *line, int notified, double deadline) {
    int pause_ms = 1;
    for (;;) {
        int found = file_has_line(fd, line);
        if (found != 0) return found;
        int ms = remaining_ms(deadline);
        if (ms == 0) return 0;
        if (notified) {
            struct pollfd p = {.fd = fd, .events = POLLPRI};
            if (lunas_poll(&p, 1, ms) < 0) return -1;
        } else {
            if (lunas_poll(NULL, 0, ms < 0 || ms > pause_ms ? pause_ms : ms) < 0) return -1;
            if (pause_ms < 50) pause_ms *= 2;
        }
    }
}

/***
Waits until a cgroup file holds a line. cgroup.events is watched with poll (the kernel notifies each change of
"populated" or "frozen"); other files, such as v1's cgroup.procs or freezer.state, are read again after a
growing pause.
@function cgroup_wait
@tparam string dir
@tparam string file "cgroup.events", "cgroup.procs", "freezer.state", ...
@tparam string line the whole line to wait for: "populated 0" (no process left), "frozen 1"; "" waits until the
  file is empty
@tparam[opt] number timeout seconds; without it, waits for ever
@treturn boolean true once the line is there, false on timeout
@error "wait for 'LINE' in DIR/FILE: message", "ENAME"
*/
static int cgroup_wait(lua_State *L) {
    const char *dir = check_dir(L, 1);
    const char *name = check_file_name(L, 2);
    const char *line = luaL_checkstring(L, 3);
    double timeout = luaL_optnumber(L, 4, -1);
    if (!lua_isnoneornil(L, 4) && !(timeout >= 0 && timeout < 1e9))
        return lunas_field_error(L, 4, "timeout", "0 or more seconds expected");
    double deadline = timeout < 0 ? -1 : lunas_now() + timeout;
    int fd = open_in_dir(dir, name, O_RDONLY);
    if (fd < 0) return lunas_push_errorf(L, errno, "wait for '%s' in %s/%s", line, dir, name);
    int rc = wait_for_line(fd, line, strcmp(name, "cgroup.events") == 0, deadline);
    int saved = errno;
    close(fd);
    if (rc < 0 && saved == EINTR) return lunas_raise_interrupt(L);
    if (rc < 0) return lunas_push_errorf(L, saved, "wait for '%s' in %s/%s", line, dir, name);
    lua_pushboolean(L, rc);
    return 1;
}

/***
Changes the owner of a path, never following a symlink (lchown): what delegating a cgroup to an unprivileged
user is made of.
@function chown
@tparam string path absolute
@tparam integer uid
@tparam integer gid
@treturn boolean true
@error "chown PATH: message", "ENAME"
*/
static int cgroup_chown(lua_State *L) {
    const char *path = check_dir(L, 1);
    uid_t uid = (uid_t)lunas_check_range(L, 2, 2, "uid", 0, UINT32_MAX - 1);
    gid_t gid = (gid_t)lunas_check_range(L, 3, 3, "gid", 0, UINT32_MAX - 1);
    if (lchown(path, uid, gid) < 0) return lunas_push_error(L, errno, "chown", path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The device number of a block device: io limits name disks by number.
@function device_number
@tparam string path absolute ("/dev/vda")
@treturn integer major
@treturn integer minor
@error "stat PATH: message", "ENAME"; "ENOTBLK" for anything but a block device
*/
static int cgroup_device_number(lua_State *L) {
    const char *path = check_dir(L, 1);
    struct stat st;
    if (stat(path, &st) < 0) return lunas_push_error(L, errno, "stat", path);
    if (!S_ISBLK(st.st_mode)) return lunas_push_errorf(L, ENOTBLK, "device number of %s", path);
    lua_pushinteger(L, major(st.st_rdev));
    lua_pushinteger(L, minor(st.st_rdev));
    return 2;
}

void lunas_open_cgroup(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"cgroup_read", cgroup_read},
        {"cgroup_write", cgroup_write},
        {"cgroup_mkdir", cgroup_mkdir},
        {"cgroup_rmdir", cgroup_rmdir},
        {"cgroup_open", cgroup_open},
        {"cgroup_children", cgroup_children},
        {"cgroup_wait", cgroup_wait},
        {"chown", cgroup_chown},
        {"device_number", cgroup_device_number},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
