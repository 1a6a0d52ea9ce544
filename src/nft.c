/* nft.c: nftables rule sets through libnftables (NAT and port forwarding for labs).
 *
 * libnftables is opened with dlopen on first use: it pulls in five more libraries (libmnl, libnftnl, libxtables,
 * libjansson, libgmp) that a host binary which never touches nftables should not pay for at start-up.
 *
 * What libnftables 1.0.6 does that shapes this file:
 *  - nft_ctx_new() opens its NETLINK_NETFILTER socket right away, in the calling thread's network namespace, and
 *    calls exit(3) when it cannot ("Unable to initialize Netlink socket"). So we enter the namespace first, and
 *    open and bind a probe socket of the same kind there just before, to turn that exit into an error return.
 *  - A context keeps a cache of the rule set between runs. A context per call means no stale cache and no state
 *    from one call's commands (variables, include paths, flags) leaks into the next one; creating one costs
 *    tens of microseconds, far less than the netlink round trips of a run.
 *  - Allocation failures inside the library still end the process (xmalloc -> exit), as do its internal BUG()
 *    asserts: nothing we can catch from here. */
/*** @module lunas.core */

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "lunas.h"

#define NFT_LIBRARY "libnftables.so.1"
#define NFT_RESULT "lunas.nft_result"
/* A command buffer is a rule set, not a bulk data channel: refuse anything larger than this. */
#define NFT_MAX_COMMANDS ((size_t)1024 * 1024)
/* Error text kept in the message: one error record of libnftables (the message, the offending line, the
 * carets) is three lines; later records mostly repeat the first one's consequences. */
#define NFT_ERROR_LINES 3
#define NFT_ERROR_BYTES 1024

/* ---- the library ---------------------------------------------------------- */

/* Every symbol we use; the field types come from the library's own header, so a mismatch fails to compile. */
#define NFT_SYMBOLS(X)                                                                                           \
    X(nft_ctx_new) X(nft_ctx_free) X(nft_ctx_buffer_output) X(nft_ctx_buffer_error) X(nft_ctx_get_output_buffer) \
    X(nft_ctx_get_error_buffer) X(nft_ctx_output_get_flags) X(nft_ctx_output_set_flags) X(nft_ctx_set_dry_run)   \
    X(nft_run_cmd_from_buffer)

#define NFT_FIELD(name) __typeof__(name) *(name);
struct nft_api {
    NFT_SYMBOLS(NFT_FIELD)
};

static struct nft_api api;
/* Stays open for the life of the process: libnftables keeps global state (xtables, symbol tables) set up by its
 * first nft_ctx_new, and unloading it buys nothing. */
static void *library;

static int resolve_symbols(void *handle, struct nft_api *out) {
    void *sym;
#define NFT_RESOLVE(name)                                                                                        \
    if (!(sym = dlsym(handle, #name))) return -1;                                                                \
    out->name = (__typeof__(out->name))sym;
    NFT_SYMBOLS(NFT_RESOLVE)
#undef NFT_RESOLVE
    return 0;
}

/* Opens libnftables and resolves every symbol, once. 0 when the API is ready; -1 with the reason in buf (the
 * next call tries again: the package may have been installed meanwhile). Touches no Lua state, so it may run
 * while we own a descriptor. */
static int load_library(char *buf, size_t size) {
    if (library) return 0;
    void *handle = dlopen(NFT_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    struct nft_api loaded;
    if (handle && resolve_symbols(handle, &loaded) == 0) {
        api = loaded;
        library = handle;
        return 0;
    }
    /* copy the text before dlclose, which may replace it */
    const char *text = dlerror();
    if (!text) text = "cannot be loaded";
    /* dlopen's text starts with the file name, which the message has already */
    if (strncmp(text, NFT_LIBRARY ": ", strlen(NFT_LIBRARY ": ")) == 0) text += strlen(NFT_LIBRARY ": ");
    snprintf(buf, size, "%s", text);
    if (handle) dlclose(handle);
    return -1;
}

/* ---- results ---------------------------------------------------------------- */

/* The texts of one run, copied out of the context so that it can be freed inside the namespace. The Lua strings
 * are made only after we are back in our own namespace (pushing may raise); the userdata frees the copies if it
 * does. */
struct nft_result {
    char *output;
    char *error;
};

static int result_gc(lua_State *L) {
    struct nft_result *r = luaL_checkudata(L, 1, NFT_RESULT);
    free(r->output);
    free(r->error);
    r->output = r->error = NULL;
    return 0;
}

static struct nft_result *new_result(lua_State *L) {
    struct nft_result *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->output = r->error = NULL;
    luaL_setmetatable(L, NFT_RESULT);
    return r;
}

/* ---- one run ------------------------------------------------------------------ */

struct nft_request {
    const char *commands;
    unsigned int output_flags; /* NFT_CTX_OUTPUT_* added to the defaults */
    int dry_run;
};

/* libnftables exits the process when its netlink socket cannot be opened or bound: try the same thing first so
 * that the likely causes (EMFILE, ENOBUFS, a seccomp filter, no nfnetlink) become an error return. */
static int probe_netlink(void) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (s < 0) return -1;
    struct sockaddr_nl addr = {.nl_family = AF_NETLINK};
    int r = bind(s, (struct sockaddr *)&addr, sizeof addr);
    int err = errno;
    close(s);
    errno = err;
    return r;
}

static char *copy_text(const char *s) {
    return strdup(s ? s : "");
}

/* Runs the request with a fresh context in the current network namespace and fills res. Returns 0 when the
 * commands ran, 1 when libnftables reported a failure (its text in res->error), or -1 with errno set and *op
 * naming the step when the run could not start. */
static int run_in_namespace(const struct nft_request *req, struct nft_result *res, const char **op) {
    *op = "netlink socket";
    if (probe_netlink() < 0) return -1;
    *op = "context";
    struct nft_ctx *ctx = api.nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) {
        errno = ENOMEM;
        return -1;
    }
    /* without buffers libnftables writes to our stdout and stderr */
    if (api.nft_ctx_buffer_output(ctx) != 0 || api.nft_ctx_buffer_error(ctx) != 0) {
        api.nft_ctx_free(ctx);
        errno = ENOMEM;
        return -1;
    }
    api.nft_ctx_output_set_flags(ctx, api.nft_ctx_output_get_flags(ctx) | req->output_flags);
    api.nft_ctx_set_dry_run(ctx, req->dry_run != 0);
    int status = api.nft_run_cmd_from_buffer(ctx, req->commands);
    res->output = copy_text(api.nft_ctx_get_output_buffer(ctx));
    res->error = copy_text(api.nft_ctx_get_error_buffer(ctx));
    api.nft_ctx_free(ctx);
    *op = "output";
    if (!res->output || !res->error) {
        errno = ENOMEM;
        return -1;
    }
    return status == 0 ? 0 : 1;
}

/* ---- error text ------------------------------------------------------------------ */

/* The part of libnftables' error text worth a message: from the first "Error:" line (warnings may come first),
 * at most NFT_ERROR_LINES lines, trailing blanks removed. Writes into buf. */
static void trim_error(const char *text, char *buf, size_t size) {
    const char *start = strstr(text, "Error:");
    if (start) {
        while (start > text && start[-1] != '\n') start--;
    } else {
        start = text;
    }
    const char *end = start;
    for (int lines = 0; *end && lines < NFT_ERROR_LINES; lines++) {
        const char *nl = strchr(end, '\n');
        end = nl ? nl + 1 : end + strlen(end);
    }
    while (end > start && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
    size_t len = (size_t)(end - start);
    if (len >= size) len = size - 1;
    memcpy(buf, start, len);
    buf[len] = '\0';
    if (len == 0) snprintf(buf, size, "command failed (libnftables gave no error text)");
}

/* libnftables reports kernel failures with strerror() text ("Could not process rule: File exists") and cache
 * lookups the same way ("Error: No such file or directory"). Map the first line back to the errno: the longest
 * match wins ("No such device or address" over "No such device"). Anything else (syntax and evaluation
 * errors) is EINVAL. */
static int error_code(const char *message) {
    size_t first_len = strcspn(message, "\n");
    char first[NFT_ERROR_BYTES];
    if (first_len >= sizeof first) first_len = sizeof first - 1;
    memcpy(first, message, first_len);
    first[first_len] = '\0';
    int best = EINVAL;
    size_t best_len = 0;
    for (int err = 1; err <= EHWPOISON; err++) {
        const char *text = strerror(err);
        size_t len = strlen(text);
        if (len > best_len && strstr(first, text)) {
            best = err;
            best_len = len;
        }
    }
    return best;
}

/* ---- core.nft ------------------------------------------------------------------ */

static const char *check_commands(lua_State *L, int arg) {
    if (lua_type(L, arg) != LUA_TSTRING)
        lunas_field_error(L, arg, "commands", "string expected, got %s", luaL_typename(L, arg));
    size_t len;
    const char *s = lua_tolstring(L, arg, &len);
    if (strlen(s) != len) lunas_field_error(L, arg, "commands", "string contains a NUL byte");
    if (len > NFT_MAX_COMMANDS)
        lunas_field_error(L, arg, "commands", "%zu bytes, at most %zu expected", len, NFT_MAX_COMMANDS);
    return s;
}

static void check_request_options(lua_State *L, int arg, struct nft_request *req) {
    static const char *const allowed[] = {"json", "check", "handles", NULL};
    if (lua_isnoneornil(L, arg)) return;
    lunas_check_options(L, arg, allowed);
    if (lunas_opt_boolean(L, arg, "json", 0)) req->output_flags |= NFT_CTX_OUTPUT_JSON;
    if (lunas_opt_boolean(L, arg, "handles", 0)) req->output_flags |= NFT_CTX_OUTPUT_HANDLE;
    req->dry_run = lunas_opt_boolean(L, arg, "check", 0);
}

/* Pushes nil, "nft <netns>: <libnftables' error>", "ENAME". */
static int push_nft_error(lua_State *L, const char *what, const char *text) {
    char message[NFT_ERROR_BYTES];
    trim_error(text, message, sizeof message);
    lua_pushnil(L);
    lua_pushfstring(L, "nft %s: %s", what, message);
    lua_pushstring(L, lunas_errno_name(error_code(message)));
    return 3;
}

/***
Network.
@section network
*/

/***
Runs an nftables command buffer (the language of `nft -f`) inside a network namespace, through libnftables
(loaded on first use). Each call gets a fresh context: no cache or state carries over from one call to the next.
@function nft
@tparam ns|string|nil netns as for `netlink`
@tparam string commands at most 1 MiB
@tparam[opt] table opts
@tparam[opt=false] boolean opts.json output (and listings) in JSON
@tparam[opt=false] boolean opts.check only check the commands (dry run)
@tparam[opt=false] boolean opts.handles show rule handles in listings
@treturn string the output ("" for most commands)
@error "nft NETNS: libnftables' error (first lines)", "ENAME" (the errno its text names, else "EINVAL");
  "ENOPKG" when libnftables cannot be loaded
*/
static int nft_run(lua_State *L) {
    struct nft_request req = {.commands = check_commands(L, 2)};
    check_request_options(L, 3, &req);
    struct nft_result *res = new_result(L);
    /* last: a name or path is opened here, and nothing may raise while we own that descriptor */
    int owned = 0;
    char what[PATH_MAX + 32];
    int fd = lunas_check_netns(L, 1, 1, "netns", &owned, what, sizeof what);
    if (fd == -2) return lunas_push_error(L, errno, "nft", what);
    char reason[512];
    if (load_library(reason, sizeof reason) < 0) {
        if (owned) close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "nft: " NFT_LIBRARY ": %s", reason);
        lua_pushliteral(L, "ENOPKG");
        return 3;
    }
    int saved = -1;
    if (lunas_netns_enter(fd, &saved) < 0) {
        int err = errno;
        if (owned) close(fd);
        return lunas_push_errorf(L, err, "nft %s: setns", what);
    }
    const char *op = NULL;
    int status = run_in_namespace(&req, res, &op);
    int err = errno;
    lunas_netns_leave(saved);
    if (owned) close(fd);
    if (status < 0) return lunas_push_errorf(L, err, "nft %s: %s", what, op);
    if (status > 0) return push_nft_error(L, what, res->error);
    lua_pushstring(L, res->output);
    return 1;
}

void lunas_open_nft(lua_State *L) {
    static const luaL_Reg result_meta[] = {{"__gc", result_gc}, {NULL, NULL}};
    static const luaL_Reg functions[] = {{"nft", nft_run}, {NULL, NULL}};
    lunas_new_class(L, NFT_RESULT, result_meta, NULL);
    luaL_setfuncs(L, functions, 0);
}
