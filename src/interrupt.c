/* interrupt.c: SIGHUP, SIGINT, SIGQUIT and SIGTERM as an interruption of lunas rather than its death: the first
 * one becomes a Lua error at the next safe point (any instruction of code that is not lunas's own, or any
 * blocking call of the core), so the recipe's <close> scopes and lunas's own clean-up run; a second one ends the
 * process at once, as if nothing handled it. The state the handlers share with the blocking calls lives with the
 * helpers (helpers.c); this file installs the handlers and the hook. */
/*** @module lunas.core */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <fcntl.h>

#include "lunas.h"

static const int interrupt_signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM};
#define INTERRUPT_SIGNALS (sizeof interrupt_signals / sizeof interrupt_signals[0])

static struct sigaction previous[INTERRUPT_SIGNALS];
static lua_State *hooked_thread; /* the owner's main thread: where the hook goes */

/* The default action of sig, now: for a second signal, and for a child that inherited our handlers (even one
 * that shares our memory, whose getpid() differs). */
static void die_by(int sig) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    kill(getpid(), sig); /* blocked while we handle it: delivered as the handler returns */
}

static void interrupt_hook(lua_State *L, lua_Debug *ar);

static volatile sig_atomic_t from_terminal; /* the kernel sent it: a terminal's ^C, ^\\ or hang-up */

static void on_interrupt(int sig, siginfo_t *info, void *context) {
    int saved = errno;
    (void)context;
    if (lunas_interrupt_owner != getpid() || lunas_interrupt_signal != 0) {
        die_by(sig);
    } else {
        from_terminal = info && info->si_code == SI_KERNEL;
        lunas_interrupt_signal = sig;
        if (lunas_interrupt_pipe[1] >= 0) (void)!write(lunas_interrupt_pipe[1], "", 1);
        /* lua.c's way of stopping a running chunk: lua_sethook is safe to call from a handler. */
        if (hooked_thread) lua_sethook(hooked_thread, interrupt_hook, LUA_MASKCOUNT, 1);
    }
    errno = saved;
}

/* Is the running Lua function one of lunas's own modules? Those are left to finish what they are doing (a
 * link half made, a process not yet recorded) and are interrupted at their next blocking call, or once control
 * is back in the recipe. */
static int listed(lua_State *L, const char *table, const char *source) {
    int found = 0;
    if (lua_getfield(L, LUA_REGISTRYINDEX, table) == LUA_TTABLE) {
        found = lua_getfield(L, -1, source) != LUA_TNIL;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return found;
}

static int running_own_code(lua_State *L, lua_Debug *ar) {
    if (!lua_getinfo(L, "S", ar)) return 0;
    /* The modules a host binary carries are its own from their first instruction (main.c lists them as it loads
     * them); others from the moment they register (interrupt_catch's `own`). */
    return listed(L, LUNAS_EMBEDDED_SOURCES, ar->source) || listed(L, "lunas.interrupt_own", ar->source);
}

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
    int caught = lunas_interrupt_owner == getpid() && !lunas_interrupt_raised ? lunas_interrupt_signal : 0;
    if (!caught) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    if (lunas_interrupt_held > 0 || running_own_code(L, ar)) {
        lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 100); /* look again soon, cheaply */
        return;
    }
    lunas_raise_interrupt(L);
}

static void close_interrupt_pipe(void) {
    for (int i = 0; i < 2; i++) {
        if (lunas_interrupt_pipe[i] >= 0) close(lunas_interrupt_pipe[i]);
        lunas_interrupt_pipe[i] = -1;
    }
}

/***
Interruption.
What SIGHUP, SIGINT, SIGQUIT and SIGTERM do to the process that asks for it (the host binary `lunas` does, for
every recipe and command): the first one raises an error at the next safe point, so `<close>` scopes and
clean-up run; blocking calls (`process:wait`, `poll`, `fd:read`, `fd:lock`, `recv_fd`, `cgroup_wait`,
`seccomp_notify_receive`) wake up for it. A second one ends the process at once, by that signal. Children (even
those that share the caller's memory) keep the default actions. A hook on the main thread raises in code that is
not lunas's own; coroutines other than the main one are reached at their blocking calls.
@section interruption
*/

/***
Catches SIGHUP, SIGINT, SIGQUIT and SIGTERM in this process as an interruption (see the section). Calling it
again updates the options.
@function interrupt_catch
@tparam[opt] table opts
@tparam[opt] function opts.error builds the error raised: `error(name, number)` with name "TERM"; without it, the
  error is the string "interrupted by SIGTERM"
@tparam[opt] table opts.own a set `{[source] = true}` of chunk sources (`debug.getinfo(f, "S").source`) whose
  code is never interrupted between two instructions, only at blocking calls
@treturn boolean true
@error "interrupt_catch: message", "ENAME"
*/
static int interrupt_catch(lua_State *L) {
    static const char *const allowed[] = {"error", "own", NULL};
    if (!lua_isnoneornil(L, 1)) {
        lunas_check_options(L, 1, allowed);
        if (lunas_opt_field(L, 1, "error", LUA_TFUNCTION) == LUA_TNIL) lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, "lunas.interrupt_error");
        if (lunas_opt_field(L, 1, "own", LUA_TTABLE) == LUA_TNIL) lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, "lunas.interrupt_own");
    }
    if (lunas_interrupt_owner == getpid()) {
        lua_pushboolean(L, 1);
        return 1;
    }
    /* Inherited from a parent that caught them: this process starts afresh. */
    close_interrupt_pipe();
    lunas_interrupt_signal = 0;
    lunas_interrupt_raised = 0;
    if (pipe2(lunas_interrupt_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return lunas_push_error(L, errno, "interrupt_catch", "pipe");
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    hooked_thread = lua_tothread(L, -1);
    lua_pop(L, 1);
    lunas_interrupt_owner = getpid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_interrupt;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < INTERRUPT_SIGNALS; i++) sigaddset(&sa.sa_mask, interrupt_signals[i]);
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: a call that cannot be polled (flock) returns EINTR */
    for (size_t i = 0; i < INTERRUPT_SIGNALS; i++) sigaction(interrupt_signals[i], &sa, &previous[i]);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Gives SIGHUP, SIGINT, SIGQUIT and SIGTERM back their earlier actions and forgets any interruption.
@function interrupt_release
@treturn boolean true
*/
static int interrupt_release(lua_State *L) {
    if (lunas_interrupt_owner == getpid()) {
        for (size_t i = 0; i < INTERRUPT_SIGNALS; i++) sigaction(interrupt_signals[i], &previous[i], NULL);
        lunas_interrupt_owner = 0;
        close_interrupt_pipe();
        lua_sethook(hooked_thread, NULL, 0, 0);
        hooked_thread = NULL;
        lunas_interrupt_signal = 0;
        lunas_interrupt_raised = 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
The interruption this process has caught, if any.
@function interrupted
@treturn[1] string the signal's name ("TERM")
@treturn[1] integer its number
@treturn[1] boolean whether it has been raised in Lua yet
@treturn[1] boolean whether a terminal sent it (the kernel did: ^C, ^\\, a hang-up), and so to its whole
  foreground process group, not to lunas alone
@return[2] nil when nothing interrupted this process
*/
static int interrupt_state(lua_State *L) {
    int sig = lunas_interrupt_owner == getpid() ? lunas_interrupt_signal : 0;
    if (!sig) {
        lua_pushnil(L);
        return 1;
    }
    const char *name = lunas_signal_name(sig);
    lua_pushstring(L, name ? name : "?");
    lua_pushinteger(L, sig);
    lua_pushboolean(L, lunas_interrupt_raised);
    lua_pushboolean(L, from_terminal);
    return 4;
}

/***
A safe point for code that loops without blocking: raises the interruption if one is pending and not raised.
@function interrupt_check
@treturn boolean true when nothing is pending
*/
static int interrupt_check(lua_State *L) {
    if (lunas_interrupt_pending()) return lunas_raise_interrupt(L);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Runs `fn(...)` with interruptions held back: lunas's own clean-up (a lab's teardown, a sandbox's close) is not
cut in the middle by a signal that arrives meanwhile; the interruption is raised at the next safe point after
it. Errors of fn propagate.
@function interrupt_defer
@tparam function fn
@param ... its arguments
@return fn's results
*/
static int interrupt_defer(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int depth = lunas_interrupt_held;
    lunas_interrupt_held = depth + 1;
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    lunas_interrupt_held = depth;
    if (status != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

/***
Ends the process by the signal that interrupted it, once its clean-up is done: the caller's shell sees 128+N,
and a shell script running it stops as it would had the signal killed it outright. SIGQUIT leaves no core dump
(its clean-up ran). Output is flushed first. Does nothing when nothing interrupted this process.
@function interrupt_exit
@return nothing, when nothing interrupted this process
*/
static int interrupt_exit(lua_State *L) {
    (void)L;
    lunas_exit_if_interrupted();
    return 0;
}

void lunas_exit_if_interrupted(void) {
    int sig = lunas_interrupt_owner == getpid() ? lunas_interrupt_signal : 0;
    if (!sig) return;
    fflush(NULL);
    if (sig == SIGQUIT) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
    _exit(128 + sig); /* not reached: the signal's default action ends the process */
}

void lunas_open_interrupt(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"interrupt_catch", interrupt_catch}, {"interrupt_release", interrupt_release},
        {"interrupted", interrupt_state},     {"interrupt_check", interrupt_check},
        {"interrupt_exit", interrupt_exit},   {"interrupt_defer", interrupt_defer},
        {NULL, NULL},
    };
    luaL_setfuncs(L, functions, 0);
}
