/* mount.c: mounts. This holds the classic mount(2)/umount2(2) calls the sandbox needs for a fresh /proc; the
 * filesystem work (new mount API, pivot_root, resolution inside a root) extends this file. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/mount.h>

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

/* mount(source, target, fstype, flags, data): source, fstype and data may be nil. */
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

/* umount(target [, flags]) */
static int mount_umount(lua_State *L) {
    const char *target = opt_path(L, 1, "target");
    if (!target) return lunas_field_error(L, 1, "target", "path expected");
    int flags = (int)lunas_check_flags(L, 2, 2, umount_flags, "flags");
    if (umount2(target, flags) < 0) return lunas_push_error(L, errno, "umount", target);
    lua_pushboolean(L, 1);
    return 1;
}

/* listdir(path) -> {names...} without "." and "..", unsorted. */
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

void lunas_open_mount(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"mount", mount_mount}, {"umount", mount_umount}, {"listdir", mount_listdir}, {NULL, NULL}};
    luaL_setfuncs(L, functions, 0);
}
