/* mount.c: mounts. This holds the classic mount(2)/umount2(2) calls the sandbox needs for a fresh /proc; the
 * filesystem work (new mount API, pivot_root, resolution inside a root) extends this file. */
#define _GNU_SOURCE
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
    unsigned long flags = (unsigned long)lunas_check_flags(L, 4, mount_flags, "flags");
    const char *data = opt_path(L, 5, "data");
    if (mount(source, target, fstype, flags, data) < 0) return lunas_push_error(L, errno, "mount", target);
    lua_pushboolean(L, 1);
    return 1;
}

/* umount(target [, flags]) */
static int mount_umount(lua_State *L) {
    const char *target = opt_path(L, 1, "target");
    if (!target) return lunas_field_error(L, 1, "target", "path expected");
    int flags = (int)lunas_check_flags(L, 2, umount_flags, "flags");
    if (umount2(target, flags) < 0) return lunas_push_error(L, errno, "umount", target);
    lua_pushboolean(L, 1);
    return 1;
}

void lunas_open_mount(lua_State *L) {
    static const luaL_Reg functions[] = {{"mount", mount_mount}, {"umount", mount_umount}, {NULL, NULL}};
    luaL_setfuncs(L, functions, 0);
}
