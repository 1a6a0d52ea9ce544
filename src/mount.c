/* mount.c: mounts and the file system inside a sandbox's root: mount(2)/umount2(2), pivot_root, the new mount
 * API (open_tree, mount_setattr, move_mount, fsopen/fsconfig/fsmount with the kernel's own error text), and
 * paths resolved inside a root without following symlinks out of it (openat2 RESOLVE_IN_ROOT): a target whose last
 * component is a symlink is refused, never followed (CVE-2015-1335, CVE-2019-18837). */
/*** @module lunas.core */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "lunas.h"

static const struct lunas_flag mount_flags[] = {
    {"rdonly", MS_RDONLY},     {"ro", MS_RDONLY},           {"nosuid", MS_NOSUID},         {"nodev", MS_NODEV},
    {"noexec", MS_NOEXEC},     {"sync", MS_SYNCHRONOUS},    {"remount", MS_REMOUNT},       {"mand", MS_MANDLOCK},
    {"dirsync", MS_DIRSYNC},   {"noatime", MS_NOATIME},     {"nodiratime", MS_NODIRATIME}, {"bind", MS_BIND},
    {"move", MS_MOVE},         {"rec", MS_REC},             {"silent", MS_SILENT},         {"unbindable", MS_UNBINDABLE},
    {"private", MS_PRIVATE},   {"slave", MS_SLAVE},         {"shared", MS_SHARED},         {"relatime", MS_RELATIME},
    {"strictatime", MS_STRICTATIME}, {"lazytime", MS_LAZYTIME}, {NULL, 0},
};

static const struct lunas_flag umount_flags[] = {
    {"force", MNT_FORCE}, {"detach", MNT_DETACH}, {"expire", MNT_EXPIRE}, {"nofollow", UMOUNT_NOFOLLOW}, {NULL, 0},
};

static const char *opt_path(lua_State *L, int arg, const char *field) {
    if (lua_isnoneornil(L, arg)) return NULL;
    size_t len;
    const char *s = luaL_checklstring(L, arg, &len);
    if (strlen(s) != len) lunas_field_error(L, arg, field, "contains a NUL byte");
    return s;
}

/***
Mounts and paths.
mount(2) and umount2(2), pivot_root, the new mount API (open_tree, mount_setattr, move_mount, and
fsopen/fsconfig/fsmount with the kernel's own error text), and paths resolved inside a root without following
symlinks out of it (openat2 RESOLVE_IN_ROOT): a target whose last component is a symlink is refused, never
followed (CVE-2015-1335, CVE-2019-18837).
@section mounts
*/

/***
Mounts a file system, binds, remounts or changes propagation (mount(2)).
@function mount
@tparam string|nil source
@tparam string target
@tparam string|nil fstype
@tparam[opt] integer|string|table flags rdonly (ro), nosuid, nodev, noexec, sync, remount, mand, dirsync,
  noatime, nodiratime, bind, move, rec, silent, unbindable, private, slave, shared, relatime, strictatime,
  lazytime
@tparam[opt] string data file system options ("mode=0755,size=64M")
@treturn boolean true
@error "mount TARGET: message", "ENAME"
*/
static int mount_mount(lua_State *L) {
    const char *source = opt_path(L, 1, "source");
    const char *target = opt_path(L, 2, "target");
    if (!target) return lunas_field_error(L, 2, "target", "path expected");
    const char *fstype = opt_path(L, 3, "fstype");
    unsigned long flags = (unsigned long)lunas_check_flags(L, 4, 4, mount_flags, "flags");
    const char *data = opt_path(L, 5, "data");
    if (mount(source, target, fstype, flags, data) < 0) return lunas_push_error(L, errno, "mount", target);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Unmounts (umount2).
@function umount
@tparam string target
@tparam[opt] integer|string|table flags force, detach, expire, nofollow
@treturn boolean true
@error "umount TARGET: message", "ENAME"
*/
static int mount_umount(lua_State *L) {
    const char *target = opt_path(L, 1, "target");
    if (!target) return lunas_field_error(L, 1, "target", "path expected");
    int flags = (int)lunas_check_flags(L, 2, 2, umount_flags, "flags");
    if (umount2(target, flags) < 0) return lunas_push_error(L, errno, "umount", target);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The names in a directory, without "." and "..", unsorted.
@function listdir
@tparam string path
@treturn table
@error "opendir PATH: message", "ENAME"
*/
static int mount_listdir(lua_State *L) {
    const char *path = opt_path(L, 1, "path");
    if (!path) return lunas_field_error(L, 1, "path", "path expected");
    lua_newtable(L);
    DIR *dir = opendir(path);
    if (!dir) return lunas_push_error(L, errno, "opendir", path);
    lua_Integer n = 0;
    struct dirent *entry;
    errno = 0;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        lua_pushstring(L, entry->d_name);
        lua_rawseti(L, -2, ++n);
    }
    int err = errno;
    closedir(dir);
    if (err) return lunas_push_error(L, err, "readdir", path);
    return 1;
}

/***
Makes `new_root` the root of the caller's mount namespace and moves the old root to `put_old` (pivot_root).
`pivot_root(".", ".")` stacks the old root on the new one, to be unmounted with `umount(".", "detach")`.
@function pivot_root
@tparam string new_root a mount point
@tparam string put_old a directory at or below new_root
@treturn boolean true
@error "pivot_root NEW_ROOT: message", "ENAME"
*/
static int mount_pivot_root(lua_State *L) {
    const char *new_root = luaL_checkstring(L, 1);
    const char *put_old = luaL_checkstring(L, 2);
    if (syscall(SYS_pivot_root, new_root, put_old) < 0) return lunas_push_error(L, errno, "pivot_root", new_root);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- the new mount API ------------------------------------------------------- */

static const struct lunas_flag mount_attrs[] = {
    {"rdonly", MOUNT_ATTR_RDONLY}, {"ro", MOUNT_ATTR_RDONLY}, {"nosuid", MOUNT_ATTR_NOSUID},
    {"nodev", MOUNT_ATTR_NODEV},   {"noexec", MOUNT_ATTR_NOEXEC}, {"relatime", MOUNT_ATTR_RELATIME},
    {"noatime", MOUNT_ATTR_NOATIME}, {"strictatime", MOUNT_ATTR_STRICTATIME}, {"nodiratime", MOUNT_ATTR_NODIRATIME},
    {"nosymfollow", MOUNT_ATTR_NOSYMFOLLOW}, {NULL, 0},
};

static const struct lunas_flag propagations[] = {
    {"private", MS_PRIVATE}, {"shared", MS_SHARED}, {"slave", MS_SLAVE}, {"unbindable", MS_UNBINDABLE}, {NULL, 0},
};

/* A mount or path argument: an fd object / integer (used with AT_EMPTY_PATH) or a path string. */
struct location {
    int dirfd;
    const char *path;
    int empty_path;
};

static struct location check_location(lua_State *L, int arg, const char *field) {
    struct location loc = {AT_FDCWD, NULL, 0};
    if (lua_type(L, arg) == LUA_TSTRING) {
        loc.path = lua_tostring(L, arg);
    } else {
        loc.dirfd = lunas_check_fd(L, arg, arg, field);
        loc.path = "";
        loc.empty_path = 1;
    }
    return loc;
}

/***
A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE), ready for `mount_setattr` and
`move_mount`: a bind mount made in two steps, whose attributes are set before anything can see it.
@function open_tree
@tparam string|fd path a path, or a descriptor (then the mount it is on)
@tparam[opt] table opts
@tparam[opt=true] boolean opts.clone a detached copy; false opens the mount itself
@tparam[opt=true] boolean opts.recursive with every mount below it
@treturn fd a mount descriptor
@error "open_tree PATH: message", "ENAME"
*/
static int mount_open_tree(lua_State *L) {
    static const char *const allowed[] = {"clone", "recursive", NULL};
    struct location loc = check_location(L, 1, "path");
    int clone = 1, recursive = 1;
    if (!lua_isnoneornil(L, 2)) {
        lunas_check_options(L, 2, allowed);
        clone = lunas_opt_boolean(L, 2, "clone", 1);
        recursive = lunas_opt_boolean(L, 2, "recursive", 1);
    }
    unsigned flags = OPEN_TREE_CLOEXEC | (clone ? OPEN_TREE_CLONE : 0) | (recursive ? AT_RECURSIVE : 0) |
                     (loc.empty_path ? AT_EMPTY_PATH : 0);
    struct lunas_fd *f = lunas_new_fd(L, -1);
    f->fd = open_tree(loc.dirfd, loc.path, flags);
    if (f->fd < 0) return lunas_push_error(L, errno, "open_tree", loc.empty_path ? "(fd)" : loc.path);
    return 1;
}

/***
Changes the attributes of a mount, or of a whole tree (mount_setattr).
@function mount_setattr
@tparam string|fd target a path or a mount descriptor (`open_tree`, `fs_mount`)
@tparam table opts
@tparam[opt] integer|string|table opts.set attributes to set: rdonly (ro), nosuid, nodev, noexec, relatime,
  noatime, strictatime, nodiratime, nosymfollow
@tparam[opt] integer|string|table opts.clear attributes to clear, the same names
@tparam[opt] string opts.propagation "private", "shared", "slave" or "unbindable"
@tparam[opt=true] boolean opts.recursive the whole tree below
@tparam[opt] fd|integer|handle opts.idmap a user namespace (a namespace handle or an fd of one): the mount becomes
  idmapped through its maps (MOUNT_ATTR_IDMAP; a detached mount only, on a file system that supports it)
@treturn boolean true
@error "mount_setattr TARGET: message", "ENAME" ("EINVAL" where the file system cannot be idmapped)
*/
static int mount_mount_setattr(lua_State *L) {
    static const char *const allowed[] = {"set", "clear", "propagation", "recursive", "idmap", NULL};
    struct location loc = check_location(L, 1, "target");
    lunas_check_options(L, 2, allowed);
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    lua_getfield(L, 2, "set");
    attr.attr_set = lunas_check_flags(L, -1, 2, mount_attrs, "set");
    lua_getfield(L, 2, "clear");
    attr.attr_clr = lunas_check_flags(L, -1, 2, mount_attrs, "clear");
    /* atime modes are one field: changing it needs the whole field cleared. */
    if (attr.attr_set & (MOUNT_ATTR_NOATIME | MOUNT_ATTR_STRICTATIME)) attr.attr_clr |= MOUNT_ATTR__ATIME;
    const char *propagation = lunas_opt_string(L, 2, "propagation", NULL);
    if (propagation) attr.propagation = lunas_check_flag_name(L, 2, propagation, propagations, "propagation");
    int recursive = lunas_opt_boolean(L, 2, "recursive", 1);
    /* An idmapped mount: files show and are written through the id mapping of that user namespace. */
    if (lunas_opt_field(L, 2, "idmap", LUA_TNONE) != LUA_TNIL) {
        attr.userns_fd = (uint64_t)lunas_check_fd(L, -1, 2, "idmap");
        attr.attr_set |= MOUNT_ATTR_IDMAP;
    }
    unsigned flags = (recursive ? AT_RECURSIVE : 0) | (loc.empty_path ? AT_EMPTY_PATH : 0);
    if (mount_setattr(loc.dirfd, loc.path, flags, &attr, sizeof attr) < 0)
        return lunas_push_error(L, errno, "mount_setattr", loc.empty_path ? "(fd)" : loc.path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Attaches a mount descriptor at a place (move_mount), or moves a mount.
@function move_mount
@tparam string|fd from a mount descriptor (`open_tree`, `fs_mount`) or a path
@tparam string|fd to a path, or an O_PATH descriptor (`open_in_root`)
@treturn boolean true
@error "move_mount TO: message", "ENAME"
*/
static int mount_move_mount(lua_State *L) {
    struct location from = check_location(L, 1, "from");
    struct location to = check_location(L, 2, "to");
    unsigned flags = (from.empty_path ? MOVE_MOUNT_F_EMPTY_PATH : 0) | (to.empty_path ? MOVE_MOUNT_T_EMPTY_PATH : 0);
    if (move_mount(from.dirfd, from.path, to.dirfd, to.path, flags) < 0)
        return lunas_push_error(L, errno, "move_mount", to.empty_path ? "(fd)" : to.path);
    lua_pushboolean(L, 1);
    return 1;
}

/* The kernel's messages about a failed fs context ("e tmpfs: Bad value for 'size'"), joined; "" when none. */
static void read_fs_context_log(int fsfd, char *out, size_t size) {
    size_t len = 0;
    out[0] = '\0';
    char line[512];
    ssize_t n;
    while ((n = read(fsfd, line, sizeof line - 1)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\0')) n--;
        line[n] = '\0';
        if (n < 3 || (line[0] != 'e' && line[0] != 'w')) continue;
        int w = snprintf(out + len, size - len, "%s%s", len ? "; " : "", line + 2);
        if (w < 0 || (size_t)w >= size - len) break;
        len += (size_t)w;
    }
}

static int fs_mount_fail(lua_State *L, int err, int fsfd, const char *fstype, const char *what) {
    char text[768];
    if (fsfd >= 0) {
        read_fs_context_log(fsfd, text, sizeof text);
        close(fsfd);
    } else {
        text[0] = '\0';
    }
    if (text[0]) return lunas_push_errorf(L, err, "%s %s (%s)", what, fstype, text);
    return lunas_push_errorf(L, err, "%s %s", what, fstype);
}

/***
A new instance of a file system as a detached mount (fsopen, fsconfig, fsmount), to attach with `move_mount`.
Failures carry the kernel's own text ("tmpfs: Bad value for 'size'").
@function fs_mount
@tparam string fstype "tmpfs", "proc", "mqueue", ...
@tparam[opt] table options file system options: `{size = "64M", mode = "0755", ro = true}` (true sets a flag)
@tparam[opt] table opts
@tparam[opt] integer|string|table opts.attrs mount attributes, the names of `mount_setattr`: "nosuid,nodev"
@tparam[opt] string opts.source the source (a device, "none")
@treturn fd a mount descriptor
@error "fsconfig KEY FSTYPE (kernel text): message", "ENAME" (or fsopen, fs_mount, fsmount)
*/
static int mount_fs_mount(lua_State *L) {
    static const char *const allowed[] = {"attrs", "source", NULL};
    /* Slots 2 and 3 stay the arguments' even when absent: the fd object pushed below must not take slot 2 (the
     * options loop would then walk a userdata; found by the fuzzer with fs_mount("overlay")). */
    lua_settop(L, 3);
    const char *fstype = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    unsigned attrs = 0;
    const char *source = NULL;
    if (!lua_isnoneornil(L, 3)) {
        lunas_check_options(L, 3, allowed);
        lua_getfield(L, 3, "attrs");
        attrs = (unsigned)lunas_check_flags(L, -1, 3, mount_attrs, "attrs");
        source = lunas_opt_string(L, 3, "source", NULL);
    }
    struct lunas_fd *f = lunas_new_fd(L, -1);
    int fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
    if (fsfd < 0) return fs_mount_fail(L, errno, -1, fstype, "fsopen");
    if (source && fsconfig(fsfd, FSCONFIG_SET_STRING, "source", source, 0) < 0)
        return fs_mount_fail(L, errno, fsfd, fstype, "fsconfig source");
    if (!lua_isnoneornil(L, 2)) {
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) != LUA_TSTRING) return luaL_argerror(L, 2, "option names must be strings");
            const char *key = lua_tostring(L, -2);
            int r;
            if (lua_type(L, -1) == LUA_TBOOLEAN) {
                r = lua_toboolean(L, -1) ? fsconfig(fsfd, FSCONFIG_SET_FLAG, key, NULL, 0) : 0;
            } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
                r = fsconfig(fsfd, FSCONFIG_SET_STRING, key, lua_tostring(L, -1), 0);
            } else {
                close(fsfd);
                return lunas_field_error(L, 2, key, "string, number or boolean expected");
            }
            if (r < 0) {
                char what[128];
                snprintf(what, sizeof what, "fsconfig %s", key);
                return fs_mount_fail(L, errno, fsfd, fstype, what);
            }
            lua_pop(L, 1);
        }
    }
    if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) return fs_mount_fail(L, errno, fsfd, fstype, "fs_mount");
    f->fd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
    if (f->fd < 0) return fs_mount_fail(L, errno, fsfd, fstype, "fsmount");
    close(fsfd);
    return 1;
}

/* ---- paths inside a root ------------------------------------------------------- */

static int open_in_root_at(int root, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/* Opens the directory that holds path's last component, inside root (symlinks on the way resolve inside it),
 * creating missing directories (with parent_mode) when create. Copies the last component into base. -1 with
 * errno. */
static int open_parent_in_root(int root, const char *path, int create, mode_t parent_mode, char *base,
                               size_t base_size) {
    char buf[PATH_MAX];
    while (*path == '/') path++;
    size_t len = strlen(path);
    while (len > 0 && path[len - 1] == '/') len--;
    if (len == 0 || len >= sizeof buf) {
        errno = len ? ENAMETOOLONG : EINVAL;
        return -1;
    }
    memcpy(buf, path, len);
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    const char *last = slash ? slash + 1 : buf;
    if (strlen(last) >= base_size || strcmp(last, ".") == 0 || strcmp(last, "..") == 0) {
        errno = EINVAL;
        return -1;
    }
    snprintf(base, base_size, "%s", last);
    if (!slash) return fcntl(root, F_DUPFD_CLOEXEC, 0);
    *slash = '\0';
    /* Resolve each prefix from the root (so absolute symlinks stay inside), making what is missing. */
    int dir = fcntl(root, F_DUPFD_CLOEXEC, 0);
    for (char *p = buf;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        int next = open_in_root_at(root, buf, O_PATH | O_DIRECTORY);
        if (next < 0 && errno == ENOENT && create) {
            const char *comp = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
            if (mkdirat(dir, comp, parent_mode) < 0 && errno != EEXIST) next = -1;
            else next = open_in_root_at(root, buf, O_PATH | O_DIRECTORY);
        }
        *p = saved;
        int err = errno;
        close(dir);
        if (next < 0) {
            errno = err;
            return -1;
        }
        dir = next;
        if (saved == '\0') return dir;
    }
}

static const char *const create_kinds[] = {"none", "dir", "file", NULL};

/***
An O_PATH descriptor of `path` resolved inside `root`: symlinks on the way resolve inside the root, and a last
component that is a symlink is refused (ELOOP), even when swapped in meanwhile, unless `follow` is set: then it
is followed inside the root too (an absolute link's "/" is the root; ".." stops there), as bubblewrap follows a
destination that is a symlink.
@function open_in_root
@tparam fd|integer root a directory descriptor, the root
@tparam string path a path inside it ("/" or "": the root itself)
@tparam[opt] table opts
@tparam[opt="none"] string opts.create "dir" or "file": create what is missing, directories on the way included
@tparam[opt] integer opts.mode of what is created (default 0755 for a directory, 0644 for a file)
@tparam[opt=0755] integer opts.parents the mode of directories created on the way
@tparam[opt=false] boolean opts.follow a last component that is a symlink is followed inside the root
@treturn fd
@error "resolve in root PATH: message", "ENAME"; "ELOOP" for a symlink
*/
static int mount_open_in_root(lua_State *L) {
    static const char *const allowed[] = {"create", "mode", "parents", "follow", NULL};
    int root = lunas_check_fd(L, 1, 1, "root");
    const char *path = luaL_checkstring(L, 2);
    int create = 0, mode = -1, parents = 0755, follow = 0;
    if (!lua_isnoneornil(L, 3)) {
        lunas_check_options(L, 3, allowed);
        const char *kind = lunas_opt_string(L, 3, "create", "none");
        for (int i = 0; create_kinds[i]; i++)
            if (strcmp(create_kinds[i], kind) == 0) create = i;
        if (create == 0 && strcmp(kind, "none") != 0) return lunas_field_error(L, 3, "create", "'dir' or 'file' expected");
        mode = (int)lunas_opt_integer(L, 3, "mode", -1, -1, 07777);
        parents = (int)lunas_opt_integer(L, 3, "parents", 0755, 0, 07777);
        follow = lunas_opt_boolean(L, 3, "follow", 0);
    }
    struct lunas_fd *f = lunas_new_fd(L, -1);
    if (path[strspn(path, "/")] == '\0') { /* the root itself */
        f->fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
        if (f->fd < 0) return lunas_push_error(L, errno, "resolve in root", path);
        return 1;
    }
    char base[NAME_MAX + 1];
    int parent = open_parent_in_root(root, path, create != 0, (mode_t)parents, base, sizeof base);
    if (parent < 0) return lunas_push_error(L, errno, "resolve in root", path);
    struct stat st;
    int err = 0;
    if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode) && !follow) err = ELOOP;
    } else if (errno != ENOENT || !create) {
        err = errno;
    } else if (create == 1) {
        if (mkdirat(parent, base, mode >= 0 ? (mode_t)mode : 0755) < 0 && errno != EEXIST) err = errno;
    } else {
        int fd = openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode >= 0 ? (mode_t)mode : 0644);
        if (fd < 0 && errno != EEXIST) err = errno;
        if (fd >= 0) close(fd);
    }
    if (!err && follow) {
        /* The link's target, resolved from the root as every other component is. */
        f->fd = open_in_root_at(root, path, O_PATH);
        if (f->fd < 0) err = errno;
    } else if (!err) {
        f->fd = openat(parent, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (f->fd < 0) err = errno;
        else if (fstat(f->fd, &st) == 0 && S_ISLNK(st.st_mode)) err = ELOOP; /* swapped in meanwhile */
    }
    close(parent);
    if (err == ELOOP && !follow) return lunas_push_errorf(L, ELOOP, "resolve in root %s (a symlink: refused as a target)", path);
    if (err) return lunas_push_error(L, err, "resolve in root", path);
    return 1;
}

/* Copying a tree (an OCI mount's tmpcopyup): every name is opened relative to its directory with O_NOFOLLOW, so a
 * symlink of the source is copied as a link and never followed, wherever it points. */
#define COPY_MAX_DEPTH 128

struct copy_error {
    int err;
    char path[PATH_MAX];
};

static int copy_failed(struct copy_error *e, int err, const char *parent, const char *name) {
    e->err = err;
    int len = snprintf(e->path, sizeof e->path, "%s%s%s", parent, *parent ? "/" : "", name);
    if (len < 0 || (size_t)len >= sizeof e->path) snprintf(e->path, sizeof e->path, "(a path too long to name)");
    return -1;
}

static int copy_bytes(int in, int out) {
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 20, 0);
        if (n == 0) return 0;
        if (n > 0) continue;
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) return -1;
        break;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return (int)n;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return -1;
            done += w;
        }
    }
}

static int copy_file(int src_dir, int dst_dir, const char *name) {
    int in = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (in < 0) return -1;
    int out = openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int r = out < 0 ? -1 : copy_bytes(in, out);
    int saved = errno;
    close(in);
    if (out >= 0) close(out);
    errno = saved;
    return r;
}

static int copy_symlink(int src_dir, int dst_dir, const char *name, const struct stat *st) {
    char target[PATH_MAX];
    ssize_t n = readlinkat(src_dir, name, target, sizeof target - 1);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof target - 1 || (st->st_size > 0 && n != st->st_size)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    target[n] = '\0';
    return symlinkat(target, dst_dir, name);
}

/* Owner, then mode (a chown clears the set-id bits), then times; a link has no mode of its own. */
static int copy_attributes(int dst_dir, const char *name, const struct stat *st) {
    if (fchownat(dst_dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0) return -1;
    if (!S_ISLNK(st->st_mode) && fchmodat(dst_dir, name, st->st_mode & 07777, 0) < 0) return -1;
    const struct timespec times[2] = {st->st_atim, st->st_mtim};
    return utimensat(dst_dir, name, times, AT_SYMLINK_NOFOLLOW);
}

static int copy_dir(int src_dir, int dst_dir, int depth, const char *rel, struct copy_error *e);

static int copy_entry(int src_dir, int dst_dir, int depth, const char *rel, const char *name, struct copy_error *e) {
    struct stat st;
    if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return copy_failed(e, errno, rel, name);
    int r;
    if (S_ISDIR(st.st_mode)) {
        char sub[PATH_MAX];
        int len = snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name);
        if (len < 0 || (size_t)len >= sizeof sub) return copy_failed(e, ENAMETOOLONG, rel, name);
        if (mkdirat(dst_dir, name, 0700) < 0) return copy_failed(e, errno, rel, name);
        int from = openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int to = from < 0 ? -1 : openat(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (from < 0 || to < 0) {
            int saved = errno;
            if (from >= 0) close(from);
            return copy_failed(e, saved, rel, name);
        }
        r = copy_dir(from, to, depth + 1, sub, e);
        close(from);
        close(to);
        if (r < 0) return -1;
    } else if (S_ISREG(st.st_mode)) {
        r = copy_file(src_dir, dst_dir, name);
    } else if (S_ISLNK(st.st_mode)) {
        r = copy_symlink(src_dir, dst_dir, name, &st);
    } else {
        r = mknodat(dst_dir, name, st.st_mode & (S_IFMT | 0777), st.st_rdev);
    }
    if (r < 0 || copy_attributes(dst_dir, name, &st) < 0) return copy_failed(e, errno, rel, name);
    return 0;
}

static int copy_dir(int src_dir, int dst_dir, int depth, const char *rel, struct copy_error *e) {
    if (depth > COPY_MAX_DEPTH) return copy_failed(e, ELOOP, rel, "");
    int fd = openat(src_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd < 0 ? NULL : fdopendir(fd);
    if (!dir) {
        int saved = errno;
        if (fd >= 0) close(fd);
        return copy_failed(e, saved, rel, "");
    }
    int r = 0;
    struct dirent *d;
    errno = 0;
    while (r == 0 && (d = readdir(dir)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        r = copy_entry(src_dir, dst_dir, depth, rel, d->d_name, e);
        errno = 0;
    }
    if (r == 0 && errno != 0) r = copy_failed(e, errno, rel, "");
    closedir(dir);
    return r;
}

/***
Copies what a directory holds into another, recursively (an OCI mount's tmpcopyup: the image's files on a new
tmpfs): directories, regular files, symlinks (as links, never followed) and other nodes, with their owners, modes
and times. The destination's own mode and owner are left as they are; it should be empty.
@function copy_tree
@tparam fd|integer source a directory
@tparam fd|integer dest a directory (a mount descriptor from `fs_mount` too)
@treturn boolean true
@error "copy_tree PATH: message", "ENAME" (PATH relative to source; "EEXIST" for a name dest already has)
*/
static int mount_copy_tree(lua_State *L) {
    int src = lunas_check_fd(L, 1, 1, "source");
    int dst = lunas_check_fd(L, 2, 2, "dest");
    struct copy_error *e = lua_newuserdatauv(L, sizeof *e, 0);
    e->err = 0;
    e->path[0] = '\0';
    if (copy_dir(src, dst, 0, "", e) < 0)
        return lunas_push_errorf(L, e->err, "copy_tree %s", e->path[0] ? e->path : ".");
    lua_pushboolean(L, 1);
    return 1;
}

/***
Creates or replaces a regular file inside `root` (never through a symlink), with the missing directories.
@function write_in_root
@tparam fd|integer root
@tparam string path
@tparam string contents
@tparam[opt=0644] integer mode
@treturn boolean true
@error "create file PATH: message", "ENAME" (or "resolve in root", "write file")
*/
static int mount_write_in_root(lua_State *L) {
    int root = lunas_check_fd(L, 1, 1, "root");
    const char *path = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    mode_t mode = (mode_t)(lua_isnoneornil(L, 4) ? 0644 : lunas_check_range(L, 4, 4, "mode", 0, 07777));
    char base[NAME_MAX + 1];
    int parent = open_parent_in_root(root, path, 1, 0755, base, sizeof base);
    if (parent < 0) return lunas_push_error(L, errno, "resolve in root", path);
    int fd = openat(parent, base, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    int err = errno;
    close(parent);
    if (fd < 0) return lunas_push_error(L, err, "create file", path);
    int r = lunas_write_all(fd, data, len);
    err = errno;
    if (r == 0 && fchmod(fd, mode) < 0) {
        r = -1;
        err = errno;
    }
    close(fd);
    if (r < 0) return lunas_push_error(L, err, "write file", path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Creates a symlink inside `root`, with the missing directories; an identical existing one is fine.
@function symlink_in_root
@tparam fd|integer root
@tparam string target the link's text
@tparam string path where the link goes
@treturn boolean true
@error "symlink PATH: message", "ENAME"
*/
static int mount_symlink_in_root(lua_State *L) {
    int root = lunas_check_fd(L, 1, 1, "root");
    const char *target = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    char base[NAME_MAX + 1];
    int parent = open_parent_in_root(root, path, 1, 0755, base, sizeof base);
    if (parent < 0) return lunas_push_error(L, errno, "resolve in root", path);
    int err = 0;
    if (symlinkat(target, parent, base) < 0) {
        err = errno;
        char existing[PATH_MAX];
        ssize_t n = readlinkat(parent, base, existing, sizeof existing - 1);
        if (err == EEXIST && n >= 0) {
            existing[n] = '\0';
            if (strcmp(existing, target) == 0) err = 0;
        }
    }
    close(parent);
    if (err) return lunas_push_error(L, err, "symlink", path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Changes the mode of a file inside `root`, never through a symlink.
@function chmod_in_root
@tparam fd|integer root
@tparam string path
@tparam integer mode
@treturn boolean true
@error "chmod PATH: message", "ENAME"
*/
static int mount_chmod_in_root(lua_State *L) {
    int root = lunas_check_fd(L, 1, 1, "root");
    const char *path = luaL_checkstring(L, 2);
    mode_t mode = (mode_t)lunas_check_range(L, 3, 3, "mode", 0, 07777);
    char base[NAME_MAX + 1];
    int parent = open_parent_in_root(root, path, 0, 0755, base, sizeof base);
    if (parent < 0) return lunas_push_error(L, errno, "resolve in root", path);
    /* fchmodat(AT_SYMLINK_NOFOLLOW) goes through /proc/self/fd in glibc, and a root under construction has no
     * /proc: open the entry itself, never following it, and change the descriptor. */
    int fd = openat(parent, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int err = errno;
    close(parent);
    if (fd < 0) return lunas_push_error(L, err, "chmod", path);
    int r = fchmod(fd, mode);
    err = errno;
    close(fd);
    if (r < 0) return lunas_push_error(L, err, "chmod", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* The kernel's dev_t (include/linux/kdev_t.h): 12 bits of major, 20 of minor. */
#define DEV_MAJOR_MAX 4095
#define DEV_MINOR_MAX 1048575

static const char *const node_types[] = {"char", "block", "fifo", "file", NULL};
static const mode_t node_modes[] = {S_IFCHR, S_IFBLK, S_IFIFO, S_IFREG};

struct node_request {
    mode_t mode; /* type and permission bits */
    dev_t dev;
    uid_t uid;   /* (uid_t)-1: unchanged */
    gid_t gid;
};

/* A device number field: required for a device, absent or 0 for the others (they have none). */
static unsigned check_device_number(lua_State *L, int idx, const char *field, int device, lua_Integer max) {
    if (device && lunas_opt_field(L, idx, field, LUA_TNONE) == LUA_TNIL)
        lunas_field_error(L, idx, field, "integer expected for a device, got nil");
    lua_settop(L, idx);
    lua_Integer v = lunas_opt_integer(L, idx, field, 0, 0, max);
    if (!device && v != 0) lunas_field_error(L, idx, field, "only char and block devices have one");
    return (unsigned)v;
}

static void check_node_request(lua_State *L, int idx, struct node_request *req) {
    static const char *const allowed[] = {"type", "major", "minor", "mode", "uid", "gid", NULL};
    lunas_check_options(L, idx, allowed);
    lua_settop(L, idx);
    const char *name = lunas_opt_string(L, idx, "type", NULL);
    int type = -1;
    for (int i = 0; name && node_types[i]; i++)
        if (strcmp(node_types[i], name) == 0) type = i;
    if (type < 0) lunas_field_error(L, idx, "type", "'char', 'block', 'fifo' or 'file' expected");
    int device = node_modes[type] == S_IFCHR || node_modes[type] == S_IFBLK;
    unsigned maj = check_device_number(L, idx, "major", device, DEV_MAJOR_MAX);
    unsigned min = check_device_number(L, idx, "minor", device, DEV_MINOR_MAX);
    req->dev = makedev(maj, min);
    req->mode = node_modes[type] | (mode_t)lunas_opt_integer(L, idx, "mode", 0666, 0, 07777);
    req->uid = (uid_t)lunas_opt_integer(L, idx, "uid", -1, 0, UINT32_MAX - 1);
    req->gid = (gid_t)lunas_opt_integer(L, idx, "gid", -1, 0, UINT32_MAX - 1);
}

/* mknodat with exactly the mode asked for: the umask is process-wide, but lunas runs one thread and no Lua runs
 * in between. */
static int make_node(int dir, const char *name, const struct node_request *req) {
    mode_t mask = umask(0);
    int r = mknodat(dir, name, req->mode, req->dev);
    int err = errno;
    umask(mask);
    errno = err;
    return r;
}

/***
Creates a device node, a FIFO or an empty file inside `root`, as an OCI runtime makes linux.devices in a
container's /dev: the directories on the way resolve inside the root (missing ones are made, 0755 less the
umask), and the last component is never followed: anything already there, a symlink too, fails with EEXIST.
The node gets exactly `mode` (the umask does not apply), then the owner when `uid` or `gid` is given (fchownat
without following, on the new node; a node that cannot get its owner is removed). Device nodes need CAP_MKNOD in
the initial user namespace.
@function mknod_in_root
@tparam fd|integer root a directory descriptor, the root
@tparam string path where the node goes
@tparam table node
@tparam string node.type "char", "block", "fifo" or "file"
@tparam[opt] integer node.major 0 to 4095: required for "char" and "block", absent or 0 otherwise
@tparam[opt] integer node.minor 0 to 1048575: likewise
@tparam[opt=0666] integer node.mode permission bits, 0 to 07777
@tparam[opt] integer node.uid the owner (default: unchanged)
@tparam[opt] integer node.gid the group (default: unchanged)
@treturn boolean true
@error "mknod PATH: message", "ENAME" ("EEXIST" when something is there; "EPERM" for a device without
  CAP_MKNOD); "resolve in root PATH: ..." or "chown PATH: ..." for those steps
*/
static int mount_mknod_in_root(lua_State *L) {
    int root = lunas_check_fd(L, 1, 1, "root");
    const char *path = opt_path(L, 2, "path");
    if (!path) return lunas_field_error(L, 2, "path", "path expected");
    struct node_request req;
    check_node_request(L, 3, &req);
    char base[NAME_MAX + 1];
    int parent = open_parent_in_root(root, path, 1, 0755, base, sizeof base);
    if (parent < 0) return lunas_push_error(L, errno, "resolve in root", path);
    const char *op = "mknod";
    int err = 0;
    if (make_node(parent, base, &req) < 0) {
        err = errno;
    } else if ((req.uid != (uid_t)-1 || req.gid != (gid_t)-1) &&
               fchownat(parent, base, req.uid, req.gid, AT_SYMLINK_NOFOLLOW) < 0) {
        err = errno;
        op = "chown";
        unlinkat(parent, base, 0); /* all or nothing: a node with the wrong owner is not left behind */
    }
    close(parent);
    if (err) return lunas_push_error(L, err, op, path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Makes a FIFO (mkfifo(3)): the mode less the umask, EEXIST when anything is there. An OCI runtime's exec FIFO in
its state directory.
@function mkfifo
@tparam string path
@tparam integer mode 0 to 07777
@treturn boolean true
@error "mkfifo PATH: message", "ENAME"
*/
static int mount_mkfifo(lua_State *L) {
    const char *path = opt_path(L, 1, "path");
    if (!path) return lunas_field_error(L, 1, "path", "path expected");
    mode_t mode = (mode_t)lunas_check_range(L, 2, 2, "mode", 0, 07777);
    if (mkfifo(path, mode) < 0) return lunas_push_error(L, errno, "mkfifo", path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The type of a file, without following a final symlink (lstat, or fstat of a descriptor).
@function file_type
@tparam string|fd path
@treturn string "dir", "file", "link", "char", "block", "fifo" or "socket"
@treturn string the file's identity, "DEV:INO": equal for two names of one file
@treturn integer its permission bits (st_mode & 07777)
@error "stat PATH: message", "ENAME" ("ENOENT" when missing)
*/
static int mount_file_type(lua_State *L) {
    struct stat st;
    if (lua_type(L, 1) == LUA_TSTRING) {
        const char *path = lua_tostring(L, 1);
        if (lstat(path, &st) < 0) return lunas_push_error(L, errno, "stat", path);
    } else {
        int fd = lunas_check_fd(L, 1, 1, "path");
        if (fstat(fd, &st) < 0) return lunas_push_errorf(L, errno, "stat fd %d", fd);
    }
    const char *type = S_ISDIR(st.st_mode)    ? "dir"
                       : S_ISREG(st.st_mode)  ? "file"
                       : S_ISLNK(st.st_mode)  ? "link"
                       : S_ISCHR(st.st_mode)  ? "char"
                       : S_ISBLK(st.st_mode)  ? "block"
                       : S_ISFIFO(st.st_mode) ? "fifo"
                                              : "socket";
    lua_pushstring(L, type);
    /* Which file it is: two names (or a name and a descriptor) for the same inode give the same string. */
    lua_pushfstring(L, "%I:%I", (lua_Integer)st.st_dev, (lua_Integer)st.st_ino);
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    return 3;
}

/***
The id of the mount a path (or descriptor) is on, as /proc/self/mountinfo numbers mounts (statx STATX_MNT_ID,
Linux 5.8): two paths are on the same mount when their ids are equal. A symlink at the end is followed.
@function mount_id
@tparam string|fd path
@treturn integer
@error "statx PATH: message", "ENAME"
*/
static int mount_mount_id(lua_State *L) {
    struct statx stx;
    int r;
    const char *what;
    if (lua_type(L, 1) == LUA_TSTRING) {
        what = lua_tostring(L, 1);
        r = statx(AT_FDCWD, what, AT_STATX_DONT_SYNC, STATX_MNT_ID, &stx);
    } else {
        int fd = lunas_check_fd(L, 1, 1, "path");
        what = lua_pushfstring(L, "fd %d", fd);
        r = statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &stx);
    }
    if (r < 0) return lunas_push_error(L, errno, "statx", what);
    if (!(stx.stx_mask & STATX_MNT_ID)) return lunas_push_error(L, ENOSYS, "statx", what);
    lua_pushinteger(L, (lua_Integer)stx.stx_mnt_id);
    return 1;
}

/***
Makes one directory (not its parents), for lunas's own state under /run/lunas: EEXIST when anything is there, so a
path another tool made never passes for ours.
@function mkdir
@tparam string path
@tparam[opt=0755] integer mode
@treturn boolean true
@error "mkdir PATH: message", "ENAME"
*/
static int mount_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    mode_t mode = lua_isnoneornil(L, 2) ? 0755 : (mode_t)lunas_check_range(L, 2, 2, "mode", 0, 07777);
    if (mkdir(path, mode) < 0) return lunas_push_error(L, errno, "mkdir", path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Removes an empty directory.
@function rmdir
@tparam string path
@treturn boolean true
@error "rmdir PATH: message", "ENAME"
*/
static int mount_rmdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (rmdir(path) < 0) return lunas_push_error(L, errno, "rmdir", path);
    lua_pushboolean(L, 1);
    return 1;
}

/***
The canonical absolute path, every symlink resolved as the caller sees them (realpath).
@function realpath
@tparam string path
@treturn string
@error "realpath PATH: message", "ENAME"
*/
static int mount_realpath(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char resolved[PATH_MAX];
    if (!realpath(path, resolved)) return lunas_push_error(L, errno, "realpath", path);
    lua_pushstring(L, resolved);
    return 1;
}

/***
The target of a symbolic link, as written in it (readlink).
@function readlink
@tparam string path
@treturn string
@error "readlink PATH: message", "ENAME" ("EINVAL" when path is not a symlink)
*/
static int mount_readlink(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof target);
    if (n < 0) return lunas_push_error(L, errno, "readlink", path);
    if ((size_t)n == sizeof target) return lunas_push_error(L, ENAMETOOLONG, "readlink", path);
    lua_pushlstring(L, target, (size_t)n);
    return 1;
}

void lunas_open_mount(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"mount", mount_mount},
        {"umount", mount_umount},
        {"listdir", mount_listdir},
        {"pivot_root", mount_pivot_root},
        {"open_tree", mount_open_tree},
        {"mount_setattr", mount_mount_setattr},
        {"move_mount", mount_move_mount},
        {"fs_mount", mount_fs_mount},
        {"open_in_root", mount_open_in_root},
        {"write_in_root", mount_write_in_root},
        {"copy_tree", mount_copy_tree},
        {"symlink_in_root", mount_symlink_in_root},
        {"chmod_in_root", mount_chmod_in_root},
        {"mknod_in_root", mount_mknod_in_root},
        {"mkfifo", mount_mkfifo},
        {"file_type", mount_file_type},
        {"mount_id", mount_mount_id},
        {"realpath", mount_realpath},
        {"readlink", mount_readlink},
        {"mkdir", mount_mkdir},
        {"rmdir", mount_rmdir},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
