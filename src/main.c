/* main.c: the host binary `lunas`. Modelled on lua.c (pmain under a protected call, a message handler that adds
 * a traceback), with lunas.core linked in and every lunas Lua module embedded as bytecode in package.preload.
 * The command line itself is parsed in Lua (lunas.cli). Runs as root: LUA_PATH, LUA_CPATH and LUA_INIT are
 * ignored unless --lua-env is given first. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lunas.h"

int luaopen_lunas_core(lua_State *L);

struct lunas_embedded {
    const char *name;
    const char *chunkname;
    const unsigned char *code;
    size_t size;
};
extern const struct lunas_embedded lunas_embedded_modules[];

/* The sources of lunas's own modules, before any of their code runs: an interruption waits while it runs. */
static void list_own_source(lua_State *L, const char *chunkname) {
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, LUNAS_EMBEDDED_SOURCES) >= 0) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, chunkname);
    }
    lua_pop(L, 1);
}

static int load_embedded(lua_State *L) {
    const struct lunas_embedded *m = lua_touserdata(L, lua_upvalueindex(1));
    list_own_source(L, m->chunkname);
    if (luaL_loadbufferx(L, (const char *)m->code, m->size, m->chunkname, "b") != LUA_OK) return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

static void preload_modules(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_lunas_core);
    lua_setfield(L, -2, "lunas.core");
    for (const struct lunas_embedded *m = lunas_embedded_modules; m->name; m++) {
        lua_pushlightuserdata(L, (void *)m);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

/* Error objects that are tables (lunas errors) keep their own __tostring; positions are already in them. */
static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int pmain(lua_State *L) {
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int lua_env = argc > 1 && strcmp(argv[1], "--lua-env") == 0;
    if (!lua_env) {
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    }
    luaL_checkversion(L);
    /* Start-up allocates only what lives for the whole run: collecting it is wasted time. lunas.cli restarts
     * the collector before any recipe code runs. */
    lua_gc(L, LUA_GCSTOP);
    luaL_openlibs(L);
    preload_modules(L);
    lua_createtable(L, argc, 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    int args = lua_gettop(L);
    lua_pushcfunction(L, msghandler);
    int handler = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lunas.cli");
    if (lua_pcall(L, 1, 1, handler) != LUA_OK) return lua_error(L);
    lua_getfield(L, -1, "main");
    lua_pushvalue(L, args);
    lua_pushboolean(L, lua_env);
    lua_pushvalue(L, handler);
    if (lua_pcall(L, 3, 1, handler) != LUA_OK) return lua_error(L);
    return 1;
}

int main(int argc, char **argv) {
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "lunas: cannot create state: not enough memory\n");
        return 1;
    }
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int code;
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fprintf(stderr, "lunas: %s\n", msg ? msg : "(error object is not a string)");
        code = 1;
    } else {
        code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    }
    /* Interrupted (SIGINT, SIGTERM...): the clean-up has run; end by that signal, so the caller sees it. */
    lunas_exit_if_interrupted();
    fflush(NULL);
#if defined(__SANITIZE_ADDRESS__)
    lua_close(L); /* so LeakSanitizer sees what the state still owns */
#else
    /* Freeing every object one by one only delays the exit: the kernel reclaims the whole address space, and
     * descriptors close with the process. Output is flushed above. */
    (void)L;
#endif
    return code;
}
