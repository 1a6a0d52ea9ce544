/* seccomp.c: system call filters through libseccomp, and the user-notification API that lets a supervisor in
 * Lua watch or answer the system calls of a sandbox.
 *
 * A filter object wraps a libseccomp context: rules are added one by one (Lua expands groups and profiles), then
 * the filter is loaded, or exported as BPF bytes or PFC text. Everything is validated before libseccomp sees it,
 * and libseccomp's own errors come back as nil, message, ENAME. */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lunas.h"

#define LUNAS_SECCOMP "lunas.seccomp"

struct filter {
    scmp_filter_ctx ctx;
    uint32_t default_action;
    pid_t owner;
    int loaded;
};

/* ---- actions ------------------------------------------------------------- */

static int errno_value(lua_State *L, int idx, int arg, const char *field) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        int err = lunas_errno_from_name(lua_tostring(L, idx));
        if (err < 0) return lunas_field_error(L, arg, field, "unknown errno name '%s'", lua_tostring(L, idx));
        return err;
    }
    return (int)lunas_check_range(L, idx, arg, field, 0, 4095);
}

/* An action from "allow", "kill_process", "kill_thread" (or "kill"), "trap", "log", "notify", "trace", "errno"
 * (EPERM), "errno:ENOSYS", "errno:38", a bare errno name "ENOSYS", {errno = "ENOSYS" | 38}, or {trace = N}. */
static uint32_t check_action(lua_State *L, int idx, int arg, const char *field) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TTABLE) {
        if (lua_getfield(L, idx, "trace") != LUA_TNIL) {
            /* (the tracer reads the 16-bit message with PTRACE_GETEVENTMSG; without one the call fails ENOSYS) */
            uint32_t action = SCMP_ACT_TRACE((uint32_t)lunas_check_range(L, -1, arg, field, 0, 65535));
            lua_pop(L, 1);
            return action;
        }
        lua_pop(L, 1);
        if (lua_getfield(L, idx, "errno") == LUA_TNIL) lunas_field_error(L, arg, field, "{errno = NAME or number} or {trace = N} expected");
        uint32_t action = SCMP_ACT_ERRNO((uint32_t)errno_value(L, -1, arg, field));
        lua_pop(L, 1);
        return action;
    }
    if (lua_type(L, idx) != LUA_TSTRING) {
        lunas_field_error(L, arg, field, "action expected, got %s", luaL_typename(L, idx));
        return 0;
    }
    static const struct {
        const char *name;
        uint32_t action;
    } simple[] = {{"allow", SCMP_ACT_ALLOW}, {"kill_process", SCMP_ACT_KILL_PROCESS},
                  {"kill_thread", SCMP_ACT_KILL_THREAD}, {"kill", SCMP_ACT_KILL_THREAD}, {"trap", SCMP_ACT_TRAP},
                  {"log", SCMP_ACT_LOG}, {"notify", SCMP_ACT_NOTIFY}, {"errno", SCMP_ACT_ERRNO(EPERM)},
                  {"trace", SCMP_ACT_TRACE(0)}};
    const char *name = lua_tostring(L, idx);
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (strcmp(name, simple[i].name) == 0) return simple[i].action;
    const char *err_name = strncmp(name, "errno:", 6) == 0 ? name + 6 : name;
    int err = lunas_errno_from_name(err_name);
    if (err < 0 && err_name != name) {
        char *end;
        long number = strtol(err_name, &end, 10);
        if (*err_name && *end == '\0' && number >= 0 && number <= 4095) err = (int)number;
    }
    if (err < 0) lunas_field_error(L, arg, field, "unknown action '%s'", name);
    return SCMP_ACT_ERRNO((uint32_t)err);
}

/* ---- the filter object --------------------------------------------------- */

static struct filter *check_filter(lua_State *L, int idx) {
    struct filter *f = luaL_checkudata(L, idx, LUNAS_SECCOMP);
    if (!f->ctx) lunas_closed_error(L, "seccomp filter");
    return f;
}

/***
Seccomp.
System call filters through libseccomp, and the user-notification API with which a supervisor in Lua watches or
answers the system calls of a sandbox. An action is "allow", "kill_process", "kill_thread" (or "kill"), "trap",
"log", "notify", "errno" (EPERM), "errno:ENOSYS", "errno:38", a bare errno name ("ENOSYS") or
`{errno = "ENOSYS" | 38}`.
@section seccomp
*/

/***
Seccomp filters.
A libseccomp filter under construction (`seccomp_filter`): add rules, then load it or export it.
`tostring` gives "seccomp filter (not loaded)", "(loaded)" or "(closed)".
@type seccomp
*/

/***
Frees the filter (memory only: a loaded filter stays in force). Closing again does nothing.
@function seccomp:close
*/
static int filter_close(lua_State *L) {
    struct filter *f = luaL_checkudata(L, 1, LUNAS_SECCOMP);
    /* Only memory: harmless to free in any process, but a child sharing our memory must leave it to us. */
    if (f->ctx && f->owner == getpid()) seccomp_release(f->ctx);
    f->ctx = NULL;
    return 0;
}

static int filter_tostring(lua_State *L) {
    struct filter *f = luaL_checkudata(L, 1, LUNAS_SECCOMP);
    lua_pushfstring(L, "seccomp filter (%s)", !f->ctx ? "closed" : f->loaded ? "loaded" : "not loaded");
    return 1;
}

static uint32_t check_arch(lua_State *L, int arg, const char *name) {
    if (strcmp(name, "native") == 0) return seccomp_arch_native();
    if (strcmp(name, "i386") == 0) name = "x86";
    uint32_t arch = seccomp_arch_resolve_name(name);
    if (arch == 0) lunas_field_error(L, arg, "arches", "unknown architecture '%s'", name);
    return arch;
}

static int add_arches(lua_State *L, struct filter *f) {
    if (lua_getfield(L, 1, "arches") == LUA_TNIL) return 0;
    if (lua_type(L, -1) != LUA_TTABLE) return lunas_field_error(L, 1, "arches", "table of names expected");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING) return lunas_field_error(L, 1, "arches", "entry %d: name expected", (int)i);
        uint32_t arch = check_arch(L, 1, lua_tostring(L, -1));
        lua_pop(L, 1);
        int r = seccomp_arch_add(f->ctx, arch);
        if (r < 0 && r != -EEXIST) return lunas_push_errorf(L, -r, "seccomp filter: add architecture %d", (int)arch);
    }
    lua_pop(L, 1);
    return 0;
}

/***
Seccomp.
@section seccomp
*/

/***
A new filter with no rules yet. A process of an architecture not listed meets `badarch`, which kills the whole
process unless told otherwise (libseccomp's own default only kills the thread).
@function seccomp_filter
@tparam table opts
@tparam[opt="allow"] string|table opts.default the action for calls no rule matches
@tparam[opt] table opts.arches architectures: "native" (the default), "x86" (or "i386"), "x86_64", "x32",
  "aarch64", "arm", ... (libseccomp's names)
@tparam[opt="kill_process"] string|table opts.badarch the action for other architectures
@tparam[opt=true] boolean opts.no_new_privs `load` sets no_new_privs first; false needs CAP_SYS_ADMIN
@tparam[opt=false] boolean opts.log log the actions taken, except allow
@treturn seccomp
@error "seccomp filter attributes: message", "ENAME"
*/
static int seccomp_filter_new(lua_State *L) {
    static const char *const allowed[] = {"default", "arches", "badarch", "no_new_privs", "log", NULL};
    lunas_check_options(L, 1, allowed);
    lua_getfield(L, 1, "default");
    uint32_t def = lua_isnil(L, -1) ? SCMP_ACT_ALLOW : check_action(L, -1, 1, "default");
    lua_getfield(L, 1, "badarch");
    uint32_t badarch = lua_isnil(L, -1) ? SCMP_ACT_KILL_PROCESS : check_action(L, -1, 1, "badarch");
    lua_pop(L, 2);
    int nnp = lunas_opt_boolean(L, 1, "no_new_privs", 1);
    int log = lunas_opt_boolean(L, 1, "log", 0);
    struct filter *f = lua_newuserdatauv(L, sizeof *f, 0);
    memset(f, 0, sizeof *f);
    luaL_setmetatable(L, LUNAS_SECCOMP);
    f->owner = getpid();
    f->default_action = def;
    f->ctx = seccomp_init(def);
    if (!f->ctx) return lunas_push_error(L, ENOMEM, "seccomp filter", "init");
    int r = seccomp_attr_set(f->ctx, SCMP_FLTATR_ACT_BADARCH, badarch);
    if (r == 0) r = seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_NNP, (uint32_t)nnp);
    if (r == 0) r = seccomp_attr_set(f->ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
    /* A binary search over syscall numbers instead of a chain: what every syscall of the payload pays, and what
     * the kernel pays once per syscall number when it loads the filter (its allow cache emulates the program). */
    if (r == 0) r = seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r == 0 && log) r = seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_LOG, 1);
    if (r < 0) return lunas_push_error(L, -r, "seccomp filter", "attributes");
    int n = add_arches(L, f);
    if (n) return n;
    lua_settop(L, 2);
    return 1;
}

/* ---- rules ------------------------------------------------------------- */

static const struct {
    const char *name;
    enum scmp_compare op;
} comparisons[] = {{"eq", SCMP_CMP_EQ}, {"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE},
                   {"gt", SCMP_CMP_GT}, {"ge", SCMP_CMP_GE}, {"masked_eq", SCMP_CMP_MASKED_EQ}};

static enum scmp_compare check_comparison(lua_State *L, int arg, const char *field, const char *name) {
    for (size_t i = 0; i < sizeof comparisons / sizeof comparisons[0]; i++)
        if (strcmp(name, comparisons[i].name) == 0) return comparisons[i].op;
    lunas_field_error(L, arg, field, "unknown comparison '%s' (eq, ne, lt, le, gt, ge, masked_eq)", name);
    return SCMP_CMP_EQ;
}

/* One comparison {arg = 0..5, op = "eq", value = N, mask = M, bits = 64 | 32} from the table at the top.
 * The kernel hands a filter all 64 bits of a register even for an int argument, whose high half the system call
 * then ignores: a 64-bit "eq" on such an argument is bypassed by setting high bits (CVE-2019-10063). bits = 32
 * compares only the low half, as the system call sees it: eq becomes masked_eq with 0xffffffff. */
static struct scmp_arg_cmp check_comparison_table(lua_State *L, int arg, const char *field) {
    static const char *const allowed[] = {"arg", "op", "value", "mask", "bits", NULL};
    int t = lua_gettop(L);
    lunas_check_options(L, t, allowed);
    struct scmp_arg_cmp cmp = {0};
    if (lua_getfield(L, t, "arg") == LUA_TNIL) lunas_field_error(L, arg, field, "'arg' (0 to 5) missing");
    cmp.arg = (unsigned int)lunas_check_range(L, -1, arg, "arg", 0, 5);
    if (lua_getfield(L, t, "op") != LUA_TSTRING) lunas_field_error(L, arg, field, "'op' name expected");
    cmp.op = check_comparison(L, arg, field, lua_tostring(L, -1));
    if (lua_getfield(L, t, "value") != LUA_TNUMBER || !lua_isinteger(L, -1))
        lunas_field_error(L, arg, field, "'value' integer expected");
    uint64_t value = (uint64_t)lua_tointeger(L, -1);
    int has_mask = lua_getfield(L, t, "mask") != LUA_TNIL;
    if (has_mask && !lua_isinteger(L, -1)) lunas_field_error(L, arg, field, "'mask' integer expected");
    uint64_t mask = has_mask ? (uint64_t)lua_tointeger(L, -1) : 0;
    if (has_mask != (cmp.op == SCMP_CMP_MASKED_EQ)) lunas_field_error(L, arg, field, "'mask' goes with op 'masked_eq' only");
    lua_Integer bits = 64;
    if (lua_getfield(L, t, "bits") != LUA_TNIL) bits = lunas_check_range(L, -1, arg, "bits", 32, 64);
    if (bits != 32 && bits != 64) lunas_field_error(L, arg, field, "'bits' is 32 or 64");
    lua_settop(L, t);
    if (bits == 32) {
        value &= 0xffffffffu;
        if (cmp.op == SCMP_CMP_NE) lunas_field_error(L, arg, field, "op 'ne' with bits = 32 cannot ignore the high half");
        if (cmp.op == SCMP_CMP_EQ) {
            cmp.op = SCMP_CMP_MASKED_EQ;
            mask = 0xffffffffu;
        } else if (cmp.op == SCMP_CMP_MASKED_EQ) {
            mask &= 0xffffffffu;
        }
    }
    if (cmp.op == SCMP_CMP_MASKED_EQ) {
        cmp.datum_a = mask;
        cmp.datum_b = value;
    } else {
        cmp.datum_a = value;
    }
    return cmp;
}

static int check_syscall(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TNUMBER) return (int)lunas_check_range(L, idx, 3, "syscall", 0, 4095);
    const char *name = luaL_checkstring(L, idx);
    return seccomp_syscall_resolve_name(name);
}

static const char *rule_error(int r) {
    switch (r) {
    case -EACCES: return "the action is the filter's default";
    case -EEXIST: return "conflicts with an earlier rule";
    case -EDOM: return "an architecture of the filter cannot express it";
    default: return strerror(-r);
    }
}

/***
Seccomp filters.
@type seccomp
*/

/***
Adds a rule: calls of `syscall` whose arguments pass every comparison meet `action`.
The kernel hands a filter all 64 bits of a register, even for an int argument whose high half the system call
ignores: a 64-bit "eq" on such an argument is bypassed by setting high bits (CVE-2019-10063). `bits = 32`
compares only the low half, as the system call sees it.
@function seccomp:add
@tparam string|table action
@tparam string|integer syscall a name or a number
@tparam[opt] table comparisons at most 6, each `{arg = 0..5, op = "eq" | "ne" | "lt" | "le" | "gt" | "ge" |
  "masked_eq", value = integer, mask = integer (masked_eq only), bits = 64 | 32}`
@treturn boolean true
@error "seccomp add NAME (no such system call)", "ENOENT" for a name no architecture of the filter knows (so a
  group of names can skip it); "EBUSY" once loaded; "EACCES" when the action is the filter's default, "EEXIST"
  when it conflicts with an earlier rule
*/
static int filter_add(lua_State *L) {
    struct filter *f = check_filter(L, 1);
    uint32_t action = check_action(L, 2, 2, "action");
    int nr = check_syscall(L, 3);
    struct scmp_arg_cmp cmps[6];
    unsigned int count = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_Integer n = (lua_Integer)lua_rawlen(L, 4);
        if (n > 6) return luaL_argerror(L, 4, "at most 6 comparisons");
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, 4, i) != LUA_TTABLE) return lunas_field_error(L, 4, "comparisons", "entry %d: table expected", (int)i);
            cmps[count++] = check_comparison_table(L, 4, "comparisons");
            lua_pop(L, 1);
        }
    }
    const char *what = lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : lua_pushfstring(L, "%d", nr);
    if (nr == __NR_SCMP_ERROR) return lunas_push_errorf(L, ENOENT, "seccomp add %s (no such system call)", what);
    if (f->loaded) return lunas_push_errorf(L, EBUSY, "seccomp add %s: filter already loaded", what);
    int r = seccomp_rule_add_array(f->ctx, action, nr, count, cmps);
    if (r < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "seccomp add %s: %s", what, rule_error(r));
        lua_pushstring(L, lunas_errno_name(-r));
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Loads the filter into the calling process (and so into what it starts from now on): there is no way back.
no_new_privs is set first, unless the filter was made with `no_new_privs = false`.
@function seccomp:load
@treturn boolean true
@error "seccomp load: message", "ENAME"
*/
static int filter_load(lua_State *L) {
    struct filter *f = check_filter(L, 1);
    int r = seccomp_load(f->ctx);
    if (r < 0) return lunas_push_error(L, -r, "seccomp load", NULL);
    f->loaded = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/***
The listener of a loaded filter with notify rules, for `seccomp_notify_receive`.
@function seccomp:notify_fd
@treturn fd owned by the caller
@error "seccomp notify_fd ...: message", "EINVAL" before `load`; "ENOENT" without notify rules
*/
static int filter_notify_fd(lua_State *L) {
    struct filter *f = check_filter(L, 1);
    if (!f->loaded) return lunas_push_error(L, EINVAL, "seccomp notify_fd", "filter not loaded");
    struct lunas_fd *obj = lunas_new_fd(L, -1);
    int fd = seccomp_notify_fd(f->ctx);
    if (fd < 0) return lunas_push_error(L, fd == -1 ? ENOENT : -fd, "seccomp notify_fd", "no notify rule loaded");
    obj->fd = fd;
    /* libseccomp keeps the number to close on a reset: forget it there, the fd object owns it now. */
    return 1;
}

/* Runs an export function into a memfd and returns what it wrote. */
static int export_filter(lua_State *L, int (*export)(const scmp_filter_ctx, int), const char *what) {
    struct filter *f = check_filter(L, 1);
    int fd = memfd_create("lunas-seccomp-export", MFD_CLOEXEC);
    if (fd < 0) return lunas_push_error(L, errno, "seccomp export", what);
    int r = export(f->ctx, fd);
    off_t size = r == 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (r < 0 || size < 0) {
        int err = r < 0 ? -r : errno;
        close(fd);
        return lunas_push_error(L, err, "seccomp export", what);
    }
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, (size_t)size);
    ssize_t got = pread(fd, buf, (size_t)size, 0);
    int err = errno;
    close(fd);
    if (got != size) return lunas_push_error(L, got < 0 ? err : EIO, "seccomp export", what);
    luaL_pushresultsize(&b, (size_t)size);
    return 1;
}

/***
The filter as the kernel receives it (an array of struct sock_filter, 8 bytes each), for `seccomp_load_bpf`.
@function seccomp:bpf
@treturn string
@error "seccomp export bpf: message", "ENAME"
*/
static int filter_bpf(lua_State *L) { return export_filter(L, seccomp_export_bpf, "bpf"); }
/***
The same program as readable pseudo filter code (libseccomp's PFC).
@function seccomp:pfc
@treturn string
@error "seccomp export pfc: message", "ENAME"
*/
static int filter_pfc(lua_State *L) { return export_filter(L, seccomp_export_pfc, "pfc"); }

/***
Seccomp.
@section seccomp
*/

/***
Loads a program exported by `seccomp:bpf` without libseccomp: a sandbox compiles its profile once in the parent,
and each child only loads the bytes. no_new_privs must be set first, or the caller needs CAP_SYS_ADMIN.
@function seccomp_load_bpf
@tparam string program 1 to 4096 instructions of 8 bytes
@tparam[opt] table opts
@tparam[opt=false] boolean opts.listener return the listener of the notify rules
@tparam[opt=false] boolean opts.log log the actions taken, except allow
@tparam[opt=false] boolean opts.spec_allow leave speculative store bypass as it is (no mitigation forced on the
  process, SECCOMP_FILTER_FLAG_SPEC_ALLOW)
@tparam[opt=false] boolean opts.wait_killable_recv a call held for the listener waits killable once received
  (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, Linux 5.19; "EINVAL" before)
@treturn boolean|fd true, or the listener
@error "seccomp load: message", "ENAME" ("EACCES": set no_new_privs first)
*/
static int seccomp_load_bpf(lua_State *L) {
    static const char *const allowed[] = {"listener", "log", "spec_allow", "wait_killable_recv", NULL};
    size_t len;
    const char *program = luaL_checklstring(L, 1, &len);
    if (len == 0 || len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > BPF_MAXINSNS)
        return luaL_argerror(L, 1, "a BPF program (1 to 4096 instructions of 8 bytes) expected");
    unsigned int flags = 0;
    if (!lua_isnoneornil(L, 2)) {
        lunas_check_options(L, 2, allowed);
        if (lunas_opt_boolean(L, 2, "listener", 0)) flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if (lunas_opt_boolean(L, 2, "log", 0)) flags |= SECCOMP_FILTER_FLAG_LOG;
        if (lunas_opt_boolean(L, 2, "spec_allow", 0)) flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        if (lunas_opt_boolean(L, 2, "wait_killable_recv", 0)) flags |= SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }
    struct lunas_fd *obj = flags & SECCOMP_FILTER_FLAG_NEW_LISTENER ? lunas_new_fd(L, -1) : NULL;
    struct sock_fprog prog = {.len = (unsigned short)(len / sizeof(struct sock_filter)),
                              .filter = (struct sock_filter *)(uintptr_t)program};
    /* Without flags, through prctl: a filter loaded before may allow prctl and not seccomp (bubblewrap loads its
     * programs this way, and filters written for it allow that). */
    long r = flags ? syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog)
                   : prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
    if (r < 0) return lunas_push_error(L, errno, "seccomp load", errno == EACCES ? "(set no_new_privs first)" : NULL);
    if (!obj) {
        lua_pushboolean(L, 1);
        return 1;
    }
    obj->fd = (int)r;
    return 1;
}

/* ---- names ------------------------------------------------------------- */

/***
A system call's number and name on an architecture.
@function seccomp_syscall
@tparam string|integer syscall a name or a number
@tparam[opt="native"] string arch
@treturn integer the number
@treturn string the name
@error "seccomp syscall NAME: message", "ENOENT" when that architecture has no such call
*/
static int seccomp_syscall(lua_State *L) {
    uint32_t arch = lua_isnoneornil(L, 2) ? SCMP_ARCH_NATIVE : check_arch(L, 2, luaL_checkstring(L, 2));
    int nr;
    if (lua_type(L, 1) == LUA_TNUMBER) {
        nr = (int)lunas_check_range(L, 1, 1, "syscall", 0, 0x7fffffff);
    } else {
        nr = seccomp_syscall_resolve_name_arch(arch, luaL_checkstring(L, 1));
        if (nr < 0) return lunas_push_errorf(L, ENOENT, "seccomp syscall %s", lua_tostring(L, 1));
    }
    char *name = seccomp_syscall_resolve_num_arch(arch, nr);
    if (!name) return lunas_push_errorf(L, ENOENT, "seccomp syscall %d", nr);
    lua_pushinteger(L, nr);
    lua_pushstring(L, name);
    free(name);
    return 2;
}

/* ---- user notification ------------------------------------------------- */

static uint64_t check_notification_id(lua_State *L, int idx) {
    luaL_argcheck(L, lua_isinteger(L, idx), idx, "notification id (integer) expected");
    return (uint64_t)lua_tointeger(L, idx);
}

static const char *arch_name(uint32_t arch) {
    switch (arch) {
    case SCMP_ARCH_X86_64: return "x86_64";
    case SCMP_ARCH_X86: return "x86";
    case SCMP_ARCH_AARCH64: return "aarch64";
    case SCMP_ARCH_ARM: return "arm";
    default: return "unknown";
    }
}

static void push_notification(lua_State *L, const struct seccomp_notif *req) {
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)req->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, req->pid);
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, req->data.nr);
    lua_setfield(L, -2, "nr");
    lua_pushstring(L, arch_name(req->data.arch));
    lua_setfield(L, -2, "arch");
    char *name = seccomp_syscall_resolve_num_arch(req->data.arch, req->data.nr);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "%d", req->data.nr);
    free(name);
    lua_setfield(L, -2, "syscall");
    lua_pushinteger(L, (lua_Integer)req->data.instruction_pointer);
    lua_setfield(L, -2, "ip");
    lua_createtable(L, 6, 0);
    for (int i = 0; i < 6; i++) {
        lua_pushinteger(L, (lua_Integer)req->data.args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "args");
}

/***
The next system call held by a notify rule. Blocks until there is one: `poll` the listener first for a timeout.
@function seccomp_notify_receive
@tparam fd|integer listener
@treturn table `{id, pid, syscall = name, nr, arch = "x86_64" | "x86" | "aarch64" | "arm" | "unknown",
  args = {6 integers}, ip}`
@error "seccomp notify_receive: message", "ENAME" ("ENOENT": the caller died or the call was interrupted)
*/
static int seccomp_notify_receive_fn(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "listener");
    struct seccomp_notif *req = NULL;
    struct seccomp_notif_resp *resp = NULL;
    /* The receive ioctl blocks until a call comes: wait in poll, where an interruption of lunas wakes us. A
     * listener whose filter has no process left hangs up: the receive then reports that. */
    struct pollfd ready = {.fd = fd, .events = POLLIN};
    if (lunas_poll(&ready, 1, -1) < 0 && errno == EINTR) return lunas_raise_interrupt(L);
    int r = seccomp_notify_alloc(&req, &resp);
    if (r < 0) return lunas_push_error(L, -r, "seccomp notify_receive", "allocate");
    r = seccomp_notify_receive(fd, req);
    if (r < 0) {
        seccomp_notify_free(req, resp);
        return lunas_push_error(L, r == -ECANCELED ? errno : -r, "seccomp notify_receive", NULL);
    }
    struct seccomp_notif copy = *req;
    seccomp_notify_free(req, resp);
    push_notification(L, &copy);
    return 1;
}

/***
Answers a held call: it fails with `error`, returns `value` without running, or runs as if unfiltered with
`continue` (which is no security decision: the caller can change the arguments after we looked).
@function seccomp_notify_respond
@tparam fd|integer listener
@tparam integer id the call's id
@tparam table reply `{error = NAME | n}`, `{value = n}` or `{continue = true}`
@treturn boolean true
@error "seccomp notify_respond ID: message", "ENAME" ("ENOENT": the caller is gone)
*/
static int seccomp_notify_respond_fn(lua_State *L) {
    static const char *const allowed[] = {"error", "value", "continue", NULL};
    int fd = lunas_check_fd(L, 1, 1, "listener");
    uint64_t id = check_notification_id(L, 2);
    lunas_check_options(L, 3, allowed);
    struct seccomp_notif_resp resp = {.id = id};
    if (lua_getfield(L, 3, "error") != LUA_TNIL) resp.error = -errno_value(L, -1, 3, "error");
    if (lua_getfield(L, 3, "value") != LUA_TNIL) {
        luaL_argcheck(L, lua_isinteger(L, -1), 3, "field 'value': integer expected");
        resp.val = (int64_t)lua_tointeger(L, -1);
    }
    int cont = lunas_opt_boolean(L, 3, "continue", 0);
    if (cont && (resp.error || resp.val)) return lunas_field_error(L, 3, "continue", "goes alone, without error or value");
    if (cont) resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0)
        return lunas_push_errorf(L, errno, "seccomp notify_respond %llu", (unsigned long long)id);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Whether a call is still held. Check it after reading the caller's memory: what was read belongs to that call
only if it still waits.
@function seccomp_notify_id_valid
@tparam fd|integer listener
@tparam integer id
@treturn boolean
*/
static int seccomp_notify_id_valid_fn(lua_State *L) {
    int fd = lunas_check_fd(L, 1, 1, "listener");
    uint64_t id = check_notification_id(L, 2);
    lua_pushboolean(L, ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0);
    return 1;
}

/***
Installs a descriptor of ours in the process of a held call.
@function seccomp_notify_addfd
@tparam fd|integer listener
@tparam integer id
@tparam fd|integer fd
@tparam[opt] table opts
@tparam[opt] integer opts.target the number it gets (default: the lowest free one)
@tparam[opt=false] boolean opts.cloexec close-on-exec in that process
@tparam[opt=false] boolean opts.send also answer the call with the new number as its return value
@treturn integer the descriptor's number in that process
@error "seccomp notify_addfd ID: message", "ENAME"
*/
static int seccomp_notify_addfd_fn(lua_State *L) {
    static const char *const allowed[] = {"target", "cloexec", "send", NULL};
    int listener = lunas_check_fd(L, 1, 1, "listener");
    uint64_t id = check_notification_id(L, 2);
    int fd = lunas_check_fd(L, 3, 3, "fd");
    struct seccomp_notif_addfd add = {.id = id, .srcfd = (uint32_t)fd};
    if (!lua_isnoneornil(L, 4)) {
        lunas_check_options(L, 4, allowed);
        lua_Integer target = lunas_opt_integer(L, 4, "target", -1, 0, 0x7fffffff);
        if (target >= 0) {
            add.flags |= SECCOMP_ADDFD_FLAG_SETFD;
            add.newfd = (uint32_t)target;
        }
        if (lunas_opt_boolean(L, 4, "cloexec", 0)) add.newfd_flags = O_CLOEXEC;
        if (lunas_opt_boolean(L, 4, "send", 0)) add.flags |= SECCOMP_ADDFD_FLAG_SEND;
    }
    int r = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
    if (r < 0) return lunas_push_errorf(L, errno, "seccomp notify_addfd %llu", (unsigned long long)id);
    lua_pushinteger(L, r);
    return 1;
}

void lunas_open_seccomp(lua_State *L) {
    static const luaL_Reg metamethods[] = {
        {"__gc", filter_close}, {"__close", filter_close}, {"__tostring", filter_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"add", filter_add}, {"load", filter_load},   {"notify_fd", filter_notify_fd},
                                       {"bpf", filter_bpf}, {"pfc", filter_pfc},     {"close", filter_close},
                                       {NULL, NULL}};
    lunas_new_class(L, LUNAS_SECCOMP, metamethods, methods);
    static const luaL_Reg functions[] = {
        {"seccomp_filter", seccomp_filter_new},
        {"seccomp_syscall", seccomp_syscall},
        {"seccomp_load_bpf", seccomp_load_bpf},
        {"seccomp_notify_receive", seccomp_notify_receive_fn},
        {"seccomp_notify_respond", seccomp_notify_respond_fn},
        {"seccomp_notify_id_valid", seccomp_notify_id_valid_fn},
        {"seccomp_notify_addfd", seccomp_notify_addfd_fn},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
