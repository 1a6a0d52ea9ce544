/* caps.c: capabilities through libcap: the five sets of a process (effective, permitted, inheritable, bounding,
 * ambient) read and written by name, the IAB text form, securebits and keepcaps, and the drop of everything a
 * sandbox does by default.
 *
 * Capability sets cross the Lua boundary as tables of names ("sys_admin"; "CAP_SYS_ADMIN" and "cap_sys_admin" are
 * accepted too), "all", a comma string or a bit mask. Names are parsed into a mask before libcap allocates
 * anything, so a misuse error never leaks a libcap object. */
/*** @module lunas.core */

#include <ctype.h>
#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "lunas.h"

/* Names without the CAP_ prefix, in kernel order; capabilities newer than this table print as numbers. */
static const char *const capability_names[] = {
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
};
#define KNOWN_CAPABILITIES ((int)(sizeof capability_names / sizeof capability_names[0]))

/* The number of capabilities the running kernel has (libcap asks the kernel once). */
static int kernel_capabilities(void) {
    int bits = (int)cap_max_bits();
    if (bits <= 0 || bits > 64) bits = KNOWN_CAPABILITIES;
    return bits;
}

static uint64_t all_capabilities(void) {
    int bits = kernel_capabilities();
    return bits >= 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
}

/* The capability number of a name in any of the accepted spellings, or -1. */
static int capability_from_name(const char *name) {
    char lower[64];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof lower) return -1;
    for (size_t i = 0; i <= len; i++) lower[i] = (char)tolower((unsigned char)name[i]);
    const char *bare = strncmp(lower, "cap_", 4) == 0 ? lower + 4 : lower;
    for (int cap = 0; cap < KNOWN_CAPABILITIES; cap++)
        if (strcmp(bare, capability_names[cap]) == 0) return cap;
    char *end;
    long number = strtol(bare, &end, 10);
    if (*bare && *end == '\0' && number >= 0 && number < kernel_capabilities()) return (int)number;
    return -1;
}

static void push_capability_name(lua_State *L, int cap) {
    if (cap < KNOWN_CAPABILITIES) lua_pushstring(L, capability_names[cap]);
    else lua_pushfstring(L, "%d", cap);
}

static uint64_t check_capability_name(lua_State *L, int arg, const char *field, const char *name) {
    if (strcmp(name, "all") == 0) return all_capabilities();
    int cap = capability_from_name(name);
    if (cap < 0 || cap >= kernel_capabilities())
        lunas_field_error(L, arg, field, "unknown capability '%s'", name);
    return UINT64_C(1) << cap;
}

uint64_t lunas_check_capabilities(lua_State *L, int idx, int arg, const char *field) {
    idx = lua_absindex(L, idx);
    uint64_t mask = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        return 0;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) || (lua_tointeger(L, idx) & ~(lua_Integer)all_capabilities()) != 0)
            lunas_field_error(L, arg, field, "bit mask of this kernel's capabilities expected");
        return (uint64_t)lua_tointeger(L, idx);
    case LUA_TSTRING: {
        const char *text = lua_tostring(L, idx);
        if (strlen(text) >= 4096) lunas_field_error(L, arg, field, "list too long");
        char copy[4096];
        strcpy(copy, text);
        char *save = NULL;
        for (char *name = strtok_r(copy, ", ", &save); name; name = strtok_r(NULL, ", ", &save))
            mask |= check_capability_name(L, arg, field, name);
        return mask;
    }
    case LUA_TTABLE: {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
                lunas_field_error(L, arg, field, "entry %d: capability name expected, got %s", (int)i,
                                  luaL_typename(L, -1));
            mask |= check_capability_name(L, arg, field, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        return mask;
    }
    default:
        lunas_field_error(L, arg, field, "capability names expected (table, string or mask), got %s",
                          luaL_typename(L, idx));
        return 0;
    }
}

/* Pushes the names in mask as an array, in kernel order. */
static void push_capability_list(lua_State *L, uint64_t mask) {
    lua_createtable(L, 0, 0);
    int n = 0;
    for (int cap = 0; cap < 64; cap++) {
        if (!(mask & (UINT64_C(1) << cap))) continue;
        push_capability_name(L, cap);
        lua_rawseti(L, -2, ++n);
    }
}

/* ---- reading ------------------------------------------------------------ */

static uint64_t flag_mask(cap_t caps, cap_flag_t flag) {
    uint64_t mask = 0;
    int bits = kernel_capabilities();
    for (int cap = 0; cap < bits; cap++) {
        cap_flag_value_t value = CAP_CLEAR;
        if (cap_get_flag(caps, (cap_value_t)cap, flag, &value) == 0 && value == CAP_SET) mask |= UINT64_C(1) << cap;
    }
    return mask;
}

static uint64_t iab_mask(cap_iab_t iab, cap_iab_vector_t vector) {
    uint64_t mask = 0;
    int bits = kernel_capabilities();
    for (int cap = 0; cap < bits; cap++)
        if (cap_iab_get_vector(iab, vector, (cap_value_t)cap) == CAP_SET) mask |= UINT64_C(1) << cap;
    return mask;
}

struct capability_state {
    uint64_t effective, permitted, inheritable, bounding, ambient;
};

/* The sets of pid (0: this process). The IAB of a process carries its bounding set as "blocked" (the complement),
 * and libcap reads another process's from /proc/PID/status. */
static int read_capability_state(pid_t pid, struct capability_state *state) {
    cap_t caps = pid ? cap_get_pid(pid) : cap_get_proc();
    if (!caps) return -1;
    state->effective = flag_mask(caps, CAP_EFFECTIVE);
    state->permitted = flag_mask(caps, CAP_PERMITTED);
    state->inheritable = flag_mask(caps, CAP_INHERITABLE);
    cap_free(caps);
    cap_iab_t iab = pid ? cap_iab_get_pid(pid) : cap_iab_get_proc();
    if (!iab) return -1;
    state->ambient = iab_mask(iab, CAP_IAB_AMB);
    state->bounding = all_capabilities() & ~iab_mask(iab, CAP_IAB_BOUND);
    cap_free(iab);
    return 0;
}

/***
Capabilities.
The five capability sets of a process (effective, permitted, inheritable, bounding, ambient) by name, the IAB
text form, securebits and keepcaps. A set is given as a table of names ("sys_admin"; "CAP_SYS_ADMIN" and
"cap_sys_admin" too), a comma string, "all" or a bit mask, and read back as an array of names in kernel order
(capabilities newer than lunas as numbers).
@section capabilities
*/

/***
The capability sets of a process.
@function caps_get
@tparam[opt] integer pid default: the caller
@treturn table `{effective = {names}, permitted = ..., inheritable = ..., bounding = ..., ambient = ...}`
@error "caps get PID: message", "ENAME"
*/
static int caps_get(lua_State *L) {
    pid_t pid = (pid_t)luaL_optinteger(L, 1, 0);
    if (pid < 0) return luaL_argerror(L, 1, "pid must be positive (or 0/none for this process)");
    struct capability_state state;
    if (read_capability_state(pid, &state) < 0) return lunas_push_errorf(L, errno, "caps get %d", (int)pid);
    lua_createtable(L, 0, 5);
    const struct {
        const char *name;
        uint64_t mask;
    } sets[] = {{"effective", state.effective}, {"permitted", state.permitted}, {"inheritable", state.inheritable},
                {"bounding", state.bounding}, {"ambient", state.ambient}};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        push_capability_list(L, sets[i].mask);
        lua_setfield(L, -2, sets[i].name);
    }
    return 1;
}

/***
The inheritable, ambient and bounding sets of a process in libcap's IAB text.
@function caps_iab
@tparam[opt] integer pid default: the caller
@treturn string such as "!cap_sys_admin,^cap_net_raw": "!" not in the bounding set, "^" ambient (and
  inheritable), bare inheritable
@error "caps iab PID: message", "ENAME"
*/
static int caps_iab(lua_State *L) {
    pid_t pid = (pid_t)luaL_optinteger(L, 1, 0);
    if (pid < 0) return luaL_argerror(L, 1, "pid must be positive (or 0/none for this process)");
    cap_iab_t iab = pid ? cap_iab_get_pid(pid) : cap_iab_get_proc();
    if (!iab) return lunas_push_errorf(L, errno, "caps iab %d", (int)pid);
    char *text = cap_iab_to_text(iab);
    int err = errno;
    cap_free(iab);
    if (!text) return lunas_push_error(L, err, "caps iab", "to text");
    lua_pushstring(L, text);
    cap_free(text);
    return 1;
}

/* ---- writing ------------------------------------------------------------ */

/***
Sets the inheritable, ambient and bounding sets at once from IAB text, in the order the kernel accepts.
@function caps_iab_set
@tparam string text as `caps_iab` gives it
@treturn boolean true
@error "caps iab_set 'TEXT': message", "ENAME" ("EINVAL" for text that is not IAB)
*/
static int caps_iab_set(lua_State *L) {
    const char *text = luaL_checkstring(L, 1);
    cap_iab_t iab = cap_iab_from_text(text);
    if (!iab) return lunas_push_errorf(L, EINVAL, "caps iab_set '%s': not IAB text", text);
    int r = cap_iab_set_proc(iab);
    int err = errno;
    cap_free(iab);
    if (r < 0) return lunas_push_errorf(L, err, "caps iab_set '%s'", text);
    lua_pushboolean(L, 1);
    return 1;
}

static void set_flag_mask(cap_t caps, cap_flag_t flag, uint64_t mask) {
    int bits = kernel_capabilities();
    for (int cap = 0; cap < bits; cap++) {
        cap_value_t value = (cap_value_t)cap;
        cap_set_flag(caps, flag, 1, &value, (mask & (UINT64_C(1) << cap)) ? CAP_SET : CAP_CLEAR);
    }
}

/***
Replaces the effective, permitted and inheritable sets of the caller (capset); a set not given keeps its value.
@function caps_set
@tparam table sets
@tparam[opt] table|string|integer sets.effective
@tparam[opt] table|string|integer sets.permitted
@tparam[opt] table|string|integer sets.inheritable
@treturn boolean true
@error "caps set: message", "ENAME"
*/
static int caps_set(lua_State *L) {
    static const char *const allowed[] = {"effective", "permitted", "inheritable", NULL};
    static const cap_flag_t flags[] = {CAP_EFFECTIVE, CAP_PERMITTED, CAP_INHERITABLE};
    lunas_check_options(L, 1, allowed);
    uint64_t masks[3];
    int given[3];
    for (int i = 0; i < 3; i++) {
        given[i] = lua_getfield(L, 1, allowed[i]) != LUA_TNIL;
        masks[i] = lunas_check_capabilities(L, -1, 1, allowed[i]);
        lua_pop(L, 1);
    }
    cap_t caps = cap_get_proc();
    if (!caps) return lunas_push_error(L, errno, "caps set", "read");
    for (int i = 0; i < 3; i++)
        if (given[i]) set_flag_mask(caps, flags[i], masks[i]);
    int r = cap_set_proc(caps);
    int err = errno;
    cap_free(caps);
    if (r < 0) return lunas_push_error(L, err, "caps set", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Drops capabilities from the caller's bounding set: after an exec no process here can hold them again. Needs
CAP_SETPCAP; a capability the kernel lacks is not an error.
@function caps_bounding_drop
@tparam table|string|integer capabilities names, or "all"
@treturn boolean true
@error "caps bounding_drop NAME: message", "ENAME"
*/
static int caps_bounding_drop(lua_State *L) {
    uint64_t mask = lunas_check_capabilities(L, 1, 1, "capabilities");
    for (int cap = 0; cap < 64; cap++) {
        if (!(mask & (UINT64_C(1) << cap))) continue;
        if (cap_drop_bound((cap_value_t)cap) < 0 && errno != EINVAL) {
            int err = errno;
            lua_settop(L, 0);
            push_capability_name(L, cap);
            return lunas_push_errorf(L, err, "caps bounding_drop %s", lua_tostring(L, 1));
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Changes the caller's ambient set: clear first, then lower, then raise. Raising needs the capability in the
permitted and inheritable sets, and no securebit forbidding it.
@function caps_ambient
@tparam table opts
@tparam[opt=false] boolean opts.clear empty the set
@tparam[opt] table|string|integer opts.lower capabilities to remove
@tparam[opt] table|string|integer opts.raise capabilities to add: they survive an exec by a process of any uid
@treturn boolean true
@error "caps ambient raise NAME: message", "ENAME"
*/
static int caps_ambient(lua_State *L) {
    static const char *const allowed[] = {"raise", "lower", "clear", NULL};
    lunas_check_options(L, 1, allowed);
    int clear = lunas_opt_boolean(L, 1, "clear", 0);
    lua_getfield(L, 1, "lower");
    uint64_t lower = lunas_check_capabilities(L, -1, 1, "lower");
    lua_getfield(L, 1, "raise");
    uint64_t raise = lunas_check_capabilities(L, -1, 1, "raise");
    lua_settop(L, 1);
    if (clear && cap_reset_ambient() < 0) return lunas_push_error(L, errno, "caps ambient", "clear");
    for (int pass = 0; pass < 2; pass++) {
        uint64_t mask = pass == 0 ? lower : raise;
        for (int cap = 0; cap < 64; cap++) {
            if (!(mask & (UINT64_C(1) << cap))) continue;
            if (cap_set_ambient((cap_value_t)cap, pass == 0 ? CAP_CLEAR : CAP_SET) == 0) continue;
            int err = errno;
            push_capability_name(L, cap);
            return lunas_push_errorf(L, err, "caps ambient %s %s", pass == 0 ? "lower" : "raise",
                                     lua_tostring(L, -1));
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- securebits and keepcaps ------------------------------------------- */

static const struct lunas_flag securebit_names[] = {
    {"noroot", SECBIT_NOROOT},
    {"noroot_locked", SECBIT_NOROOT_LOCKED},
    {"no_setuid_fixup", SECBIT_NO_SETUID_FIXUP},
    {"no_setuid_fixup_locked", SECBIT_NO_SETUID_FIXUP_LOCKED},
    {"keep_caps", SECBIT_KEEP_CAPS},
    {"keep_caps_locked", SECBIT_KEEP_CAPS_LOCKED},
    {"no_cap_ambient_raise", SECBIT_NO_CAP_AMBIENT_RAISE},
    {"no_cap_ambient_raise_locked", SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED},
    {NULL, 0},
};

/***
The caller's securebits.
@function securebits
@treturn table the bits that are set, as `{noroot = true, ...}`: noroot, noroot_locked, no_setuid_fixup,
  no_setuid_fixup_locked, keep_caps, keep_caps_locked, no_cap_ambient_raise, no_cap_ambient_raise_locked
@error "securebits get: message", "ENAME"
*/
static int caps_securebits(lua_State *L) {
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (bits < 0) return lunas_push_error(L, errno, "securebits", "get");
    lua_createtable(L, 0, 8);
    for (const struct lunas_flag *f = securebit_names; f->name; f++) {
        if ((uint64_t)bits & f->value) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, f->name);
        }
    }
    return 1;
}

/***
Sets the caller's securebits: the whole value, as the kernel takes it. A locked bit cannot change any more;
needs CAP_SETPCAP.
@function securebits_set
@tparam table|string|integer bits the names of `securebits`
@treturn boolean true
@error "securebits set 0xN: message", "ENAME"
*/
static int caps_securebits_set(lua_State *L) {
    uint64_t bits = lunas_check_flags(L, 1, 1, securebit_names, "securebits");
    if (bits > 0xff) return lunas_field_error(L, 1, "securebits", "unknown bits in 0x%llx", (unsigned long long)bits);
    if (prctl(PR_SET_SECUREBITS, (unsigned long)bits, 0, 0, 0) < 0)
        return lunas_push_errorf(L, errno, "securebits set 0x%llx", (unsigned long long)bits);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Whether permitted capabilities survive a change from uid 0 to another uid (PR_SET_KEEPCAPS; cleared by exec).
@function keepcaps
@tparam boolean on
@treturn boolean true
@error "keepcaps: message", "ENAME"
*/
static int caps_keepcaps(lua_State *L) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    if (prctl(PR_SET_KEEPCAPS, lua_toboolean(L, 1), 0, 0, 0) < 0) return lunas_push_error(L, errno, "keepcaps", NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Every capability of the running kernel, in order.
@function capability_names
@treturn table an array of names ("chown", "dac_override", ...)
*/
static int caps_names(lua_State *L) {
    push_capability_list(L, all_capabilities());
    return 1;
}

/* ---- dropping everything ------------------------------------------------ */

/* Empties the bounding and ambient sets. Without CAP_SETPCAP (an unprivileged caller without a user namespace)
 * the bounding set cannot shrink, and such a process holds nothing now; what the set would still guard is exec of
 * setuid or file-capability programs, which no_new_privs forbids: that is set instead. */
static int drop_bounding_and_ambient(lua_State *L) {
    int bits = kernel_capabilities();
    for (int cap = 0; cap < bits; cap++) {
        if (cap_drop_bound((cap_value_t)cap) == 0 || errno == EINVAL) continue;
        if (errno == EPERM && cap == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) break;
        return lunas_push_errorf(L, errno, "drop capabilities: bounding set, capability %d", cap);
    }
    if (cap_reset_ambient() < 0 && errno != EINVAL) return lunas_push_error(L, errno, "drop capabilities", "ambient set");
    return 0;
}

/***
Drops every capability, as a sandbox does by default. Without CAP_SETPCAP (an unprivileged caller outside a user
namespace) the bounding set cannot shrink; such a caller holds nothing now, and what the set would still guard,
the exec of setuid or file-capability programs, is forbidden by setting no_new_privs instead.
@function drop_capabilities
@tparam[opt] table opts
@tparam[opt=true] boolean opts.bounding empty the bounding and ambient sets (needs CAP_SETPCAP: do it before
  any change of uid)
@tparam[opt=true] boolean opts.sets empty the effective, permitted and inheritable sets
@treturn boolean true: with both, even uid 0 holds nothing after exec
@error "drop capabilities: ...: message", "ENAME"
*/
static int caps_drop_capabilities(lua_State *L) {
    static const char *const allowed[] = {"bounding", "sets", NULL};
    int bounding = 1, sets = 1;
    if (!lua_isnoneornil(L, 1)) {
        lunas_check_options(L, 1, allowed);
        bounding = lunas_opt_boolean(L, 1, "bounding", 1);
        sets = lunas_opt_boolean(L, 1, "sets", 1);
    }
    if (bounding) {
        int n = drop_bounding_and_ambient(L);
        if (n) return n;
    }
    if (sets) {
        cap_t empty = cap_init();
        if (!empty) return lunas_push_error(L, errno, "drop capabilities", "allocate");
        int r = cap_set_proc(empty);
        int err = errno;
        cap_free(empty);
        if (r < 0) return lunas_push_error(L, err, "drop capabilities", "capset");
    }
    lua_pushboolean(L, 1);
    return 1;
}

void lunas_open_caps(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"drop_capabilities", caps_drop_capabilities},
        {"caps_get", caps_get},
        {"caps_set", caps_set},
        {"caps_bounding_drop", caps_bounding_drop},
        {"caps_ambient", caps_ambient},
        {"caps_iab", caps_iab},
        {"caps_iab_set", caps_iab_set},
        {"securebits", caps_securebits},
        {"securebits_set", caps_securebits_set},
        {"keepcaps", caps_keepcaps},
        {"capability_names", caps_names},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
