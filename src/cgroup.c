/* cgroup.c: the few things cgroup management needs from C. Cgroups are files, and their policy (layout, limits,
 * units, attach, kill) lives in lua/lunas/cgroup.lua; what Lua cannot do well is here:
 *  - reads and writes that report the errno (one write() per value: the kernel parses each write on its own, and a
 *    buffered io.write would report EINVAL at close, or not at all);
 *  - directory fds for CLONE_INTO_CGROUP, and the child cgroups of a directory (by d_type, for removal);
 *  - waiting until a cgroup is empty or frozen (poll on cgroup.events, the kernel's own notification);
 *  - chown for delegation, and the device number of a block device for io limits;
 *  - cgroup v2's device policy, which is no file but a BPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the
 *    cgroup's directory: built here from a rule list, loaded and attached with bpf(2), as runc and crun do. */
/*** @module lunas.core */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- cgroup v2's device policy: a BPF program ----------------------------------------------------------- */

/* The name lunas gives its device programs: how a later call tells its own programs, which it replaces, from
 * the programs of others (systemd's, another runtime's), which it leaves alone. */
#define DEVICE_PROGRAM_NAME "lunas_devices"
/* Far more than any real policy (runc's defaults are ten rules), and few enough that a jump across one access
 * section of the program (at most 8 instructions a rule) fits the 16-bit offset of a BPF jump. */
#define DEVICE_RULES_MAX 2048
#define DEVICE_ACCESS_ALL (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)
#define DEVICE_TYPE_ANY (BPF_DEVCG_DEV_CHAR | BPF_DEVCG_DEV_BLOCK)
/* The kernel's dev_t has 12 bits of major and 20 of minor: larger numbers name no device. */
#define DEVICE_MAJOR_MAX 4095
#define DEVICE_MINOR_MAX 1048575
/* The kernel keeps at most 64 programs of one attach type on a cgroup (BPF_CGROUP_MAX_PROGS). */
#define DEVICE_PROGRAMS_MAX 64
#define VERIFIER_LOG_SIZE ((size_t)64 << 10)

struct device_rule {
    int allow;
    uint32_t type;        /* BPF_DEVCG_DEV_CHAR, BPF_DEVCG_DEV_BLOCK or both ("a") */
    int64_t major, minor; /* -1: any */
    uint32_t access;      /* BPF_DEVCG_ACC_* */
};

static long bpf_call(int cmd, union bpf_attr *attr) {
    return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* Raises "bad argument #2 (field 'rules[I].FIELD': message)": the rule and the field at fault. */
__attribute__((format(printf, 4, 5))) static int rule_error(lua_State *L, lua_Integer i, const char *field,
                                                            const char *fmt, ...) {
    char name[64], msg[256];
    snprintf(name, sizeof name, "rules[%lld]%s%s", (long long)i, field ? "." : "", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lunas_field_error(L, 2, name, "%s", msg);
}

/* Only the fields a rule has: a typo (acess = "r") would otherwise widen or narrow the policy in silence. */
static void check_rule_keys(lua_State *L, int t, lua_Integer i) {
    static const char *const known[] = {"allow", "type", "major", "minor", "access", NULL};
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int found = 0;
        for (const char *const *k = known; key && *k && !found; k++) found = strcmp(*k, key) == 0;
        if (!found) rule_error(L, i, NULL, "unknown field '%s'", key ? key : luaL_typename(L, -1));
    }
}

/* major or minor: an integer in [0, max], or -1 or nil for any. */
static int64_t check_rule_number(lua_State *L, int t, lua_Integer i, const char *field, int64_t max) {
    int64_t v = -1;
    if (lua_getfield(L, t, field) != LUA_TNIL) {
        int ok = 0;
        lua_Integer n = lua_tointegerx(L, -1, &ok);
        if (!ok || lua_type(L, -1) != LUA_TNUMBER)
            rule_error(L, i, field, "integer expected (-1 or nil: any), got %s", luaL_typename(L, -1));
        if (n < -1 || n > max) rule_error(L, i, field, "%lld out of range [-1, %lld]", (long long)n, (long long)max);
        v = n;
    }
    lua_pop(L, 1);
    return v;
}

static uint32_t check_rule_type(lua_State *L, int t, lua_Integer i) {
    uint32_t type = DEVICE_TYPE_ANY;
    if (lua_getfield(L, t, "type") != LUA_TNIL) {
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(s, "c") == 0) type = BPF_DEVCG_DEV_CHAR;
        else if (strcmp(s, "b") == 0) type = BPF_DEVCG_DEV_BLOCK;
        else if (strcmp(s, "a") != 0) rule_error(L, i, "type", "\"a\", \"c\" or \"b\" expected");
    }
    lua_pop(L, 1);
    return type;
}

static uint32_t check_rule_access(lua_State *L, int t, lua_Integer i) {
    uint32_t access = DEVICE_ACCESS_ALL;
    if (lua_getfield(L, t, "access") != LUA_TNIL) {
        size_t len;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!s || len == 0) rule_error(L, i, "access", "a non-empty string of r, w and m expected");
        access = 0;
        for (size_t k = 0; k < len; k++) {
            if (s[k] == 'r') access |= BPF_DEVCG_ACC_READ;
            else if (s[k] == 'w') access |= BPF_DEVCG_ACC_WRITE;
            else if (s[k] == 'm') access |= BPF_DEVCG_ACC_MKNOD;
            else rule_error(L, i, "access", "only r, w and m expected, got '%c'", s[k] ? s[k] : '0');
        }
    }
    lua_pop(L, 1);
    return access;
}

/* The rule list at idx as an array (in a userdata pushed on the stack, so a raise frees it); raises naming the
 * rule and field at fault. */
static struct device_rule *check_device_rules(lua_State *L, int idx, size_t *count) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > DEVICE_RULES_MAX) lunas_field_error(L, idx, "rules", "at most %d rules", DEVICE_RULES_MAX);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)
            lunas_field_error(L, idx, "rules", "an array of rules expected (a key %s is not an index)",
                              luaL_tolstring(L, -1, NULL));
    }
    struct device_rule *rules = lua_newuserdatauv(L, sizeof *rules * (size_t)(n > 0 ? n : 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
            rule_error(L, i, NULL, "table expected, got %s", luaL_typename(L, -1));
        int t = lua_gettop(L);
        check_rule_keys(L, t, i);
        struct device_rule *r = &rules[i - 1];
        if (lua_getfield(L, t, "allow") != LUA_TBOOLEAN)
            rule_error(L, i, "allow", "boolean expected, got %s", luaL_typename(L, -1));
        r->allow = lua_toboolean(L, -1);
        lua_pop(L, 1);
        r->type = check_rule_type(L, t, i);
        r->major = check_rule_number(L, t, i, "major", DEVICE_MAJOR_MAX);
        r->minor = check_rule_number(L, t, i, "minor", DEVICE_MINOR_MAX);
        r->access = check_rule_access(L, t, i);
        lua_pop(L, 1);
    }
    *count = (size_t)n;
    return rules;
}

/* ---- the program -----------------------------------------------------------------------------------------
 * The ctx is struct bpf_cgroup_dev_ctx: access_type (device type in the low 16 bits, access bits in the high
 * 16), major, minor. The rules are v1's: nothing is allowed unless a rule says so, and the last rule that
 * matches decides. A request can ask for several accesses at once (open O_RDWR: read and write), and rules can
 * split them ("c 1:3 rw" allows, a later "c 1:3 w" denies): so each access bit asked for is decided on its own,
 * by the last rule that names it and matches the device, and the request passes only when every one of its
 * bits does. One section per access bit:
 *     if !(access & BIT) goto end;
 *     for each rule naming BIT, last first:
 *         if type != T goto next; if major != M goto next; if minor != N goto next;   (checks of "any" left out)
 *         allow: goto end           deny: return 0
 *     return 0                      (no rule: denied)
 *   end:
 * and after the three sections, return 1.
 * Each check loads its field from the ctx again into one scratch register, rather than keeping the fields in
 * registers: the verifier learns "major == 1" on the way past a check, and with the fields kept it would see a
 * different state at every rule for every way of getting there (4096 rules hit its limit of a million
 * instructions). With nothing live between rules but the ctx, it meets each rule in one state only.
 * Jump targets are known in advance (every block's size is), so the program is written in one pass. */

struct program {
    struct bpf_insn *insns;
    size_t count, size;
};

enum { R0 = 0, R1 = 1, R6 = 6 };

/* The halves of access_type, loaded 16 bits at a time (the kernel allows narrow loads of that field): where
 * each half lies depends on the byte order. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DEV_TYPE_OFFSET 0
#define DEV_ACCESS_OFFSET 2
#else
#define DEV_TYPE_OFFSET 2
#define DEV_ACCESS_OFFSET 0
#endif

/* Writes one instruction; past the computed size it only counts (the caller checks the count at the end). */
static void emit(struct program *p, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    if (p->count < p->size)
        p->insns[p->count] = (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
    p->count++;
}

/* A jump to the instruction at index `target`, from the one about to be written: offsets count from the next. */
static void emit_jump(struct program *p, uint8_t code, uint8_t dst, int32_t imm, size_t target) {
    emit(p, code, dst, 0, (int16_t)((ptrdiff_t)target - (ptrdiff_t)(p->count + 1)), imm);
}

static void emit_return(struct program *p, int32_t value) {
    emit(p, BPF_ALU | BPF_MOV | BPF_K, R0, 0, 0, value);
    emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

/* R6 = the ctx field at offset (size BPF_H or BPF_W); then to `target` unless it equals value. */
static void emit_check(struct program *p, uint8_t size, int16_t offset, int64_t value, size_t target) {
    emit(p, BPF_LDX | size | BPF_MEM, R6, R1, offset, 0);
    emit_jump(p, BPF_JMP | BPF_JNE | BPF_K, R6, (int32_t)value, target);
}

static size_t rule_size(const struct device_rule *r, uint32_t bit) {
    if (!(r->access & bit)) return 0;
    return 2 * ((r->type != DEVICE_TYPE_ANY) + (r->major >= 0) + (r->minor >= 0)) + (r->allow ? 1 : 2);
}

/* Its head: 1 load, 2 for a request with no access bit (READ's section only), 2 for the test of the bit. */
static size_t section_head_size(uint32_t bit) {
    return bit == BPF_DEVCG_ACC_READ ? 5 : 3;
}

/* A rule with nothing to check (type "a", any major and minor) decides every request for its access: the rules
 * before it are never reached, and the verifier refuses a program with unreachable instructions (EINVAL). */
static int decides_all(const struct device_rule *r, uint32_t bit) {
    return (r->access & bit) && r->type == DEVICE_TYPE_ANY && r->major < 0 && r->minor < 0;
}

/* The index of the first rule the section holds (rules from there to the last): 0, or the last rule that
 * decides every request for this access. */
static size_t section_first_rule(const struct device_rule *rules, size_t n, uint32_t bit) {
    for (size_t i = n; i-- > 0;)
        if (decides_all(&rules[i], bit)) return i;
    return 0;
}

static size_t section_size(const struct device_rule *rules, size_t n, uint32_t bit) {
    size_t first = section_first_rule(rules, n, bit);
    /* (the final "denied" is reached only when no rule decides everything) */
    size_t size = section_head_size(bit) + (n > 0 && decides_all(&rules[first], bit) ? 0 : 2);
    for (size_t i = first; i < n; i++) size += rule_size(&rules[i], bit);
    return size;
}

static const uint32_t access_bits[] = {BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE, BPF_DEVCG_ACC_MKNOD};

static size_t program_size(const struct device_rule *rules, size_t n) {
    size_t size = 2;
    for (size_t b = 0; b < 3; b++) size += section_size(rules, n, access_bits[b]);
    return size;
}

static void emit_rule(struct program *p, const struct device_rule *r, uint32_t bit, size_t section_end) {
    size_t next = p->count + rule_size(r, bit);
    if (r->type != DEVICE_TYPE_ANY) emit_check(p, BPF_H, DEV_TYPE_OFFSET, r->type, next);
    if (r->major >= 0) emit_check(p, BPF_W, offsetof(struct bpf_cgroup_dev_ctx, major), r->major, next);
    if (r->minor >= 0) emit_check(p, BPF_W, offsetof(struct bpf_cgroup_dev_ctx, minor), r->minor, next);
    if (r->allow) emit_jump(p, BPF_JMP | BPF_JA, 0, 0, section_end);
    else emit_return(p, 0);
}

static void emit_section(struct program *p, const struct device_rule *rules, size_t n, uint32_t bit) {
    size_t end = p->count + section_size(rules, n, bit);
    emit(p, BPF_LDX | BPF_H | BPF_MEM, R6, R1, DEV_ACCESS_OFFSET, 0);
    if (bit == BPF_DEVCG_ACC_READ) {
        /* A check that asks for no access at all (access(2) with F_OK on a device node) is decided as a read:
         * with no bit to decide, every section would be skipped and any device allowed. */
        emit_jump(p, BPF_JMP | BPF_JSET | BPF_K, R6, DEVICE_ACCESS_ALL, p->count + 2);
        emit(p, BPF_ALU | BPF_MOV | BPF_K, R6, 0, 0, BPF_DEVCG_ACC_READ);
    }
    emit_jump(p, BPF_JMP | BPF_JSET | BPF_K, R6, (int32_t)bit, p->count + 2);
    emit_jump(p, BPF_JMP | BPF_JA, 0, 0, end);
    size_t first = section_first_rule(rules, n, bit);
    for (size_t i = n; i-- > first;)
        if (rules[i].access & bit) emit_rule(p, &rules[i], bit, end);
    if (!(n > 0 && decides_all(&rules[first], bit))) emit_return(p, 0);
}

/* The program for the rules, in a userdata pushed on the stack. */
static struct program build_program(lua_State *L, const struct device_rule *rules, size_t n) {
    struct program p = {.size = program_size(rules, n)};
    p.insns = lua_newuserdatauv(L, sizeof *p.insns * p.size, 0);
    memset(p.insns, 0, sizeof *p.insns * p.size);
    for (size_t b = 0; b < 3; b++) emit_section(&p, rules, n, access_bits[b]);
    emit_return(&p, 1);
    return p;
}

/* ---- loading, attaching, replacing ---------------------------------------------------------------------- */

static int load_program(const struct program *p, char *log, size_t log_size) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)p->insns;
    attr.insn_cnt = (uint32_t)p->size;
    /* (the program calls no helper, so no GPL-only one either: any license string does) */
    attr.license = (uint64_t)(uintptr_t) "MIT";
    memcpy(attr.prog_name, DEVICE_PROGRAM_NAME, sizeof DEVICE_PROGRAM_NAME);
    if (log) {
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = (uint32_t)log_size;
        attr.log_level = 1;
    }
    return (int)bpf_call(BPF_PROG_LOAD, &attr);
}

/* The verifier's last word in its log (what it refused: "unreachable insn 7"), in place; "" without one. Its
 * closing statistics ("processed 0 insns (limit 1000000) ...", "verification time ...") say nothing of why. */
static const char *last_log_line(char *log, size_t size) {
    log[size - 1] = '\0';
    for (;;) {
        size_t len = strlen(log);
        while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == ' ')) log[--len] = '\0';
        char *nl = strrchr(log, '\n');
        char *line = nl ? nl + 1 : log;
        if (!nl || (strncmp(line, "processed ", 10) != 0 && strncmp(line, "verification time", 17) != 0 &&
                    strncmp(line, "stack depth", 11) != 0))
            return line;
        *nl = '\0';
    }
}

/* Loads the program; on failure pushes the error (with the verifier's last word, from a second load that asks
 * for its log: a log costs time on every successful load) and returns -1. */
static int load_or_push_error(lua_State *L, const struct program *p, const char *what) {
    int fd = load_program(p, NULL, 0);
    if (fd >= 0) return fd;
    int err = errno;
    char *log = lua_newuserdatauv(L, VERIFIER_LOG_SIZE, 0);
    log[0] = '\0';
    int again = load_program(p, log, VERIFIER_LOG_SIZE);
    if (again >= 0) return again; /* (whatever failed the first time did not last) */
    const char *line = last_log_line(log, VERIFIER_LOG_SIZE);
    if (line[0]) lunas_push_errorf(L, err, "load device program for %s (verifier: %.200s)", what, line);
    else lunas_push_errorf(L, err, "load device program for %s", what);
    return -1;
}

/* The ids of the device programs attached to the cgroup itself (not those it inherits): their count, or -1
 * with errno. */
static int query_programs(int dir_fd, uint32_t ids[DEVICE_PROGRAMS_MAX]) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.query.target_fd = (uint32_t)dir_fd;
    attr.query.attach_type = BPF_CGROUP_DEVICE;
    attr.query.prog_ids = (uint64_t)(uintptr_t)ids;
    attr.query.prog_cnt = DEVICE_PROGRAMS_MAX;
    if (bpf_call(BPF_PROG_QUERY, &attr) < 0) return -1;
    return (int)(attr.query.prog_cnt < DEVICE_PROGRAMS_MAX ? attr.query.prog_cnt : DEVICE_PROGRAMS_MAX);
}

/* A descriptor of program `id` and its name; -1 with errno (ENOENT: detached and freed meanwhile). */
static int open_program(uint32_t id, char name[BPF_OBJ_NAME_LEN + 1]) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_id = id;
    int fd = (int)bpf_call(BPF_PROG_GET_FD_BY_ID, &attr);
    if (fd < 0) return -1;
    struct bpf_prog_info info;
    memset(&info, 0, sizeof info);
    memset(&attr, 0, sizeof attr);
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = sizeof info;
    attr.info.info = (uint64_t)(uintptr_t)&info;
    if (bpf_call(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    memcpy(name, info.name, BPF_OBJ_NAME_LEN);
    name[BPF_OBJ_NAME_LEN] = '\0';
    return fd;
}

static int attach_program(int dir_fd, int prog_fd, int detach) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)dir_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    /* ALLOW_MULTI: beside the programs of others (each must allow), and so that a cgroup below can have its own */
    attr.attach_flags = detach ? 0 : BPF_F_ALLOW_MULTI;
    return (int)bpf_call(detach ? BPF_PROG_DETACH : BPF_PROG_ATTACH, &attr);
}

/* Detaches the programs among `ids` that lunas made (by name); 0, or -1 with errno and *failed set. */
static int detach_own(int dir_fd, const uint32_t *ids, int n, uint32_t *failed) {
    for (int i = 0; i < n; i++) {
        char name[BPF_OBJ_NAME_LEN + 1];
        int fd = open_program(ids[i], name);
        if (fd < 0 && errno == ENOENT) continue;
        int rc = fd < 0 ? -1 : strcmp(name, DEVICE_PROGRAM_NAME) == 0 ? attach_program(dir_fd, fd, 1) : 0;
        int saved = errno;
        if (fd >= 0) close(fd);
        if (rc < 0 && saved != ENOENT) {
            *failed = ids[i];
            errno = saved;
            return -1;
        }
    }
    return 0;
}

/* The cgroup argument: an absolute directory path (opened here: *owned set) or a descriptor. */
static int open_cgroup_arg(lua_State *L, int arg, char *what, size_t what_size, int *owned) {
    *owned = lua_type(L, arg) == LUA_TSTRING;
    if (!*owned) {
        int fd = lunas_check_fd(L, arg, arg, "dir");
        snprintf(what, what_size, "fd %d", fd);
        return fd;
    }
    const char *dir = check_dir(L, arg);
    snprintf(what, what_size, "%s", dir);
    return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/***
Sets the device policy of a cgroup v2 directory: what may be opened (read, written) and created (mknod) among
char and block devices. cgroup v2 has no devices.allow file: the policy is a BPF program
(BPF_PROG_TYPE_CGROUP_DEVICE) built from the rules, loaded and attached to the directory with
BPF_F_ALLOW_MULTI, as runc and crun do; it works on any cgroup2 directory, a hybrid host's unified tree too.
The rules read as cgroup v1's devices.allow and devices.deny lines written in order: nothing is allowed unless a
rule says so, and for each access asked (r, w, m) the last rule that names it and matches the device decides.
A later call replaces the policy: the new program is attached first, then the programs lunas attached before
are detached (so there is no moment without one); the programs of others stay, and each of them must allow an
access too. The program goes with the cgroup when it is removed.
@function cgroup_device_filter
@tparam string|fd dir an absolute cgroup2 directory path, or a descriptor of one (`cgroup_open`)
@tparam table rules an array of `{allow = boolean, type = "a" | "c" | "b" (default "a": both), major = integer
  (-1 or nil: any), minor = integer (-1 or nil: any), access = a string of "r", "w", "m" (default "rwm")}`;
  `{}` denies every device
@treturn boolean true
@error "load device program for DIR (verifier: text): message", "attach device program to DIR: message",
  "query device programs of DIR: message", "detach device program ID from DIR: message"; EPERM without
  CAP_SYS_ADMIN (or CAP_BPF) in the initial user namespace
*/
static int cgroup_device_filter(lua_State *L) {
    if (lua_type(L, 1) == LUA_TSTRING) check_dir(L, 1);
    else lunas_check_fd(L, 1, 1, "dir");
    size_t n;
    const struct device_rule *rules = check_device_rules(L, 2, &n);
    struct program p = build_program(L, rules, n);
    if (p.count != p.size) return luaL_error(L, "cgroup_device_filter: program of %d instructions, %d expected",
                                             (int)p.count, (int)p.size);
    char what[PATH_MAX + 16];
    int owned;
    int dir_fd = open_cgroup_arg(L, 1, what, sizeof what, &owned);
    if (dir_fd < 0) return lunas_push_error(L, errno, "open", what);
    uint32_t ids[DEVICE_PROGRAMS_MAX];
    int old = query_programs(dir_fd, ids);
    int pushed = 0, prog_fd = -1;
    uint32_t failed = 0;
    if (old < 0) pushed = lunas_push_errorf(L, errno, "query device programs of %s", what);
    else if ((prog_fd = load_or_push_error(L, &p, what)) < 0) pushed = 3;
    else if (attach_program(dir_fd, prog_fd, 0) < 0)
        pushed = lunas_push_errorf(L, errno, "attach device program to %s", what);
    else if (detach_own(dir_fd, ids, old, &failed) < 0)
        pushed = lunas_push_errorf(L, errno, "detach device program %u from %s", failed, what);
    int saved = errno;
    if (prog_fd >= 0) close(prog_fd);
    if (owned) close(dir_fd);
    errno = saved;
    if (pushed) return pushed;
    lua_pushboolean(L, 1);
    return 1;
}

/***
The device programs attached to a cgroup v2 directory (not those it inherits from above), lunas's and others'.
@function cgroup_device_programs
@tparam string|fd dir an absolute cgroup2 directory path, or a descriptor of one
@treturn table an array of `{id = integer, name = string}` in the order they run; name is "lunas_devices" for
  the ones `cgroup_device_filter` attached, nil for a program that cannot be opened
@error "query device programs of DIR: message", "ENAME"
*/
static int cgroup_device_programs(lua_State *L) {
    char what[PATH_MAX + 16];
    int owned;
    int dir_fd = open_cgroup_arg(L, 1, what, sizeof what, &owned);
    if (dir_fd < 0) return lunas_push_error(L, errno, "open", what);
    uint32_t ids[DEVICE_PROGRAMS_MAX];
    int n = query_programs(dir_fd, ids);
    int saved = errno;
    if (owned) close(dir_fd);
    if (n < 0) return lunas_push_errorf(L, saved, "query device programs of %s", what);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, ids[i]);
        lua_setfield(L, -2, "id");
        char name[BPF_OBJ_NAME_LEN + 1];
        int fd = open_program(ids[i], name);
        if (fd >= 0) {
            close(fd);
            lua_pushstring(L, name);
            lua_setfield(L, -2, "name");
        }
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
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
        {"cgroup_device_filter", cgroup_device_filter},
        {"cgroup_device_programs", cgroup_device_programs},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
