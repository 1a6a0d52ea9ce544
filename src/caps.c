/* caps.c: capabilities. For now what every sandbox needs by default, with the raw syscalls: dropping every
 * capability (bounding set, ambient set, effective, permitted and inheritable) before the payload runs. Without
 * that, a payload that is root in its user namespace could remount the tree it was given read-write or unmount
 * its masks. The confinement work extends this file through libcap. */
#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lunas.h"

/* The highest capability this kernel knows, from /proc/sys/kernel/cap_last_cap or by probing the bounding set. */
static int last_capability(void) {
    int last = CAP_LAST_CAP;
    while (prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0) last++;
    return last;
}

/* drop_capabilities([{bounding = true, sets = true}]): bounding empties the bounding and ambient sets (it needs
 * CAP_SETPCAP, so before any change of uid); sets empties effective, permitted and inheritable. With both, even
 * uid 0 holds nothing after exec. */
static int caps_drop_capabilities(lua_State *L) {
    static const char *const allowed[] = {"bounding", "sets", NULL};
    int bounding = 1, sets = 1;
    if (!lua_isnoneornil(L, 1)) {
        lunas_check_options(L, 1, allowed);
        bounding = lunas_opt_boolean(L, 1, "bounding", 1);
        sets = lunas_opt_boolean(L, 1, "sets", 1);
    }
    if (bounding) {
        int last = last_capability();
        for (int cap = 0; cap <= last; cap++) {
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0 || errno == EINVAL) continue;
            /* Without CAP_SETPCAP (an unprivileged caller without a user namespace) the bounding set cannot shrink,
             * and such a process holds nothing now; what the set would still guard is exec of setuid or
             * file-capability programs, which no_new_privs forbids. */
            if (errno == EPERM && cap == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) break;
            return lunas_push_errorf(L, errno, "drop capabilities: bounding set, capability %d", cap);
        }
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
            return lunas_push_error(L, errno, "drop capabilities", "ambient set");
    }
    if (!sets) {
        lua_pushboolean(L, 1);
        return 1;
    }
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &header, data) < 0) return lunas_push_error(L, errno, "drop capabilities", "capset");
    lua_pushboolean(L, 1);
    return 1;
}

void lunas_open_caps(lua_State *L) {
    static const luaL_Reg functions[] = {{"drop_capabilities", caps_drop_capabilities}, {NULL, NULL}};
    luaL_setfuncs(L, functions, 0);
}
