/* tc.c: queueing disciplines on a link, through a netlink handle: netem (delay, jitter, loss, duplicate,
 * corrupt, reorder, rate), tbf and htb shaping, any other qdisc by kind; replace, delete, list. Units are
 * strings as tc writes them ("10ms", "1%", "100mbit", "32kb") or numbers in base units (ms, %, bit/s, bytes).
 *
 * netem is built as a raw message: libnl 3.7 has no 64-bit latency, no rate and no way to add them, and its
 * netem setters abort when the kind is not set first (KERNEL-NOTES). tbf and htb use libnl's typed setters on
 * objects whose kind is set before anything else. */
/*** @module lunas.core */

#include <errno.h>
#include <limits.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <net/if.h>
#include <strings.h>

#include <netlink/netlink.h>
#include <netlink/route/class.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/htb.h>
#include <netlink/route/qdisc/netem.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>

#include "lunas.h"
#include "netlink.h"

/* ---- units -------------------------------------------------------------- */

struct unit {
    const char *suffix;
    double factor;
};

/* value at idx: a number (times number_factor) or "<number><suffix>" with a suffix from units ("" = bare). */
static double check_unit(lua_State *L, int idx, int arg, const char *field, const struct unit *units,
                         double number_factor, const char *example) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double v = lua_tonumber(L, idx);
        if (!(v >= 0) || isinf(v)) lunas_field_error(L, arg, field, "non-negative value expected");
        return v * number_factor;
    }
    if (lua_type(L, idx) != LUA_TSTRING)
        lunas_field_error(L, arg, field, "number or string like \"%s\" expected, got %s", example, luaL_typename(L, idx));
    const char *text = lua_tostring(L, idx);
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno || !(v >= 0) || isinf(v) || !(isdigit((unsigned char)text[0]) || text[0] == '.'))
        lunas_field_error(L, arg, field, "bad value '%s' (like \"%s\")", text, example);
    for (const struct unit *u = units; u->suffix; u++)
        if (strcasecmp(end, u->suffix) == 0) return v * u->factor;
    return lunas_field_error(L, arg, field, "unknown unit in '%s' (like \"%s\")", text, example);
}

/* Time in nanoseconds; a number is milliseconds. */
static double check_time(lua_State *L, int idx, int arg, const char *field) {
    static const struct unit units[] = {{"s", 1e9},   {"sec", 1e9}, {"ms", 1e6},  {"msec", 1e6}, {"us", 1e3},
                                        {"usec", 1e3}, {"ns", 1},   {"nsec", 1}, {NULL, 0}};
    return check_unit(L, idx, arg, field, units, 1e6, "10ms");
}

/* A probability in [0, 1]; a number is a percentage. */
static double check_percent(lua_State *L, int idx, int arg, const char *field) {
    static const struct unit units[] = {{"%", 0.01}, {NULL, 0}};
    double p = check_unit(L, idx, arg, field, units, 0.01, "1%");
    if (p > 1) lunas_field_error(L, arg, field, "more than 100%%");
    return p;
}

/* A rate in bytes per second; a number is bits per second. tc's names: bit/kbit/... are SI bits, kibit/...
 * binary bits, bps/kbps/... bytes. */
static double check_rate(lua_State *L, int idx, int arg, const char *field) {
    static const struct unit units[] = {
        {"bit", 1.0 / 8},       {"kbit", 1e3 / 8},           {"mbit", 1e6 / 8},           {"gbit", 1e9 / 8},
        {"tbit", 1e12 / 8},     {"kibit", 1024.0 / 8},       {"mibit", 1048576.0 / 8},    {"gibit", 1073741824.0 / 8},
        {"bps", 1},             {"kbps", 1e3},               {"mbps", 1e6},               {"gbps", 1e9},
        {NULL, 0}};
    double r = check_unit(L, idx, arg, field, units, 1.0 / 8, "100mbit");
    if (r < 1) lunas_field_error(L, arg, field, "a rate of at least 8bit expected");
    return r;
}

/* A size in bytes; a number is bytes. tc's names: b, k/kb, m/mb, g/gb (binary), kbit/mbit/gbit (bits). */
static double check_size(lua_State *L, int idx, int arg, const char *field) {
    static const struct unit units[] = {{"", 1},          {"b", 1},          {"k", 1024},         {"kb", 1024},
                                        {"m", 1048576},   {"mb", 1048576},   {"g", 1073741824.0}, {"gb", 1073741824.0},
                                        {"kbit", 1024.0 / 8}, {"mbit", 1048576.0 / 8}, {"gbit", 1073741824.0 / 8},
                                        {NULL, 0}};
    return check_unit(L, idx, arg, field, units, 1, "32kb");
}

/* Optional field of the option table at idx through one of the checkers above; -1 when absent. */
static double opt_unit(lua_State *L, int idx, const char *field,
                       double (*check)(lua_State *, int, int, const char *)) {
    double v = -1;
    if (lua_getfield(L, idx, field) != LUA_TNIL) v = check(L, -1, idx, field);
    lua_pop(L, 1);
    return v;
}

static uint32_t probability(double p) { return p >= 1 ? UINT32_MAX : (uint32_t)(p * UINT32_MAX); }

/* ---- handles ("1:", "1:1", "root") ------------------------------------------- */

static uint32_t check_tc_handle(lua_State *L, int idx, const char *field, uint32_t def) {
    const char *text = lunas_opt_string(L, idx, field, NULL);
    if (!text) return def;
    if (strcmp(text, "root") == 0) return TC_H_ROOT;
    if (strcmp(text, "ingress") == 0) return TC_H_INGRESS;
    char *end;
    unsigned long major = strtoul(text, &end, 16), minor = 0;
    if (end == text || *end != ':' || major > 0xffff) lunas_field_error(L, idx, field, "bad handle '%s' (like \"1:\" or \"1:10\")", text);
    if (end[1]) {
        const char *m = end + 1;
        minor = strtoul(m, &end, 16);
        if (end == m || *end || minor > 0xffff) lunas_field_error(L, idx, field, "bad handle '%s'", text);
    }
    return TC_HANDLE(major, minor);
}

static void format_tc_handle(uint32_t h, char *buf, size_t size) {
    if (h == TC_H_ROOT) snprintf(buf, size, "root");
    else if (h == TC_H_INGRESS) snprintf(buf, size, "ingress");
    else if (TC_H_MIN(h)) snprintf(buf, size, "%x:%x", TC_H_MAJ(h) >> 16, TC_H_MIN(h));
    else snprintf(buf, size, "%x:", TC_H_MAJ(h) >> 16);
}

/* ---- netem ---------------------------------------------------------------- */

struct netem_params {
    double delay, jitter, loss, duplicate, corrupt, reorder, rate; /* ns, ns, probabilities, bytes/s; -1 unset */
    lua_Integer limit, gap;
};

static void read_netem_params(lua_State *L, int idx, struct netem_params *p) {
    p->delay = opt_unit(L, idx, "delay", check_time);
    p->jitter = opt_unit(L, idx, "jitter", check_time);
    p->loss = opt_unit(L, idx, "loss", check_percent);
    p->duplicate = opt_unit(L, idx, "duplicate", check_percent);
    p->corrupt = opt_unit(L, idx, "corrupt", check_percent);
    p->reorder = opt_unit(L, idx, "reorder", check_percent);
    p->rate = opt_unit(L, idx, "rate", check_rate);
    p->limit = lunas_opt_integer(L, idx, "limit", 1000, 1, UINT32_MAX);
    p->gap = lunas_opt_integer(L, idx, "gap", 0, 0, UINT32_MAX);
    if (p->jitter > 0 && p->delay <= 0) lunas_field_error(L, idx, "jitter", "jitter needs a delay");
    /* As tc: reordering sends some packets at once while the others wait, so it needs a delay and a gap. */
    if (p->reorder > 0 && p->delay <= 0) lunas_field_error(L, idx, "reorder", "reordering needs a delay");
    if (p->reorder > 0 && p->gap == 0) p->gap = 1;
}

static int put_netem_options(struct nl_msg *msg, const struct netem_params *p) {
    struct tc_netem_qopt qopt;
    memset(&qopt, 0, sizeof qopt);
    qopt.limit = (uint32_t)p->limit;
    qopt.gap = (uint32_t)p->gap;
    if (p->loss > 0) qopt.loss = probability(p->loss);
    if (p->duplicate > 0) qopt.duplicate = probability(p->duplicate);
    /* The legacy tick fields stay 0: the 64-bit nanosecond attributes below override them. */
    struct nlattr *options = (struct nlattr *)nlmsg_tail(nlmsg_hdr(msg));
    if (nla_put(msg, TCA_OPTIONS, sizeof qopt, &qopt) < 0) return -1;
    int64_t delay = p->delay > 0 ? (int64_t)p->delay : 0, jitter = p->jitter > 0 ? (int64_t)p->jitter : 0;
    if (nla_put(msg, TCA_NETEM_LATENCY64, sizeof delay, &delay) < 0) return -1;
    if (nla_put(msg, TCA_NETEM_JITTER64, sizeof jitter, &jitter) < 0) return -1;
    struct tc_netem_reorder reorder = {.probability = p->reorder > 0 ? probability(p->reorder) : 0};
    if (nla_put(msg, TCA_NETEM_REORDER, sizeof reorder, &reorder) < 0) return -1;
    struct tc_netem_corrupt corrupt = {.probability = p->corrupt > 0 ? probability(p->corrupt) : 0};
    if (nla_put(msg, TCA_NETEM_CORRUPT, sizeof corrupt, &corrupt) < 0) return -1;
    struct tc_netem_rate rate;
    memset(&rate, 0, sizeof rate);
    uint64_t bytes = p->rate > 0 ? (uint64_t)p->rate : 0;
    rate.rate = bytes >= UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
    if (nla_put(msg, TCA_NETEM_RATE, sizeof rate, &rate) < 0) return -1;
    if (bytes >= UINT32_MAX && nla_put_u64(msg, TCA_NETEM_RATE64, bytes) < 0) return -1;
    /* TCA_OPTIONS of netem is a struct followed by attributes: its length covers both. */
    options->nla_len = (uint16_t)((char *)nlmsg_tail(nlmsg_hdr(msg)) - (char *)options);
    return 0;
}

static int replace_netem(lua_State *L, struct lunas_netlink *nl, int idx, int ifindex, uint32_t parent,
                         uint32_t handle, const char *label) {
    struct netem_params p;
    read_netem_params(L, idx, &p);
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE);
    struct tcmsg tcm = {.tcm_family = AF_UNSPEC, .tcm_ifindex = ifindex, .tcm_handle = handle, .tcm_parent = parent};
    if (!msg || nlmsg_append(msg, &tcm, sizeof tcm, NLMSG_ALIGNTO) < 0 || nla_put_string(msg, TCA_KIND, "netem") < 0 ||
        put_netem_options(msg, &p) < 0) {
        nlmsg_free(msg);
        return luaL_error(L, "out of memory");
    }
    int r = nl_send_sync(nl->sock, msg);
    if (r < 0) return lunas_netlink_error(L, nl, r, "qdisc replace netem on", label);
    return 0;
}

/* ---- tbf, htb, others -------------------------------------------------------- */

static struct rtnl_qdisc *new_qdisc(lua_State *L, int ifindex, uint32_t parent, uint32_t handle, const char *kind) {
    struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    if (!q) luaL_error(L, "out of memory");
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), parent);
    rtnl_tc_set_handle(TC_CAST(q), handle);
    if (rtnl_tc_set_kind(TC_CAST(q), kind) < 0) {
        rtnl_qdisc_put(q);
        luaL_error(L, "out of memory");
    }
    return q;
}

/* A burst that keeps the rate at timer granularity: 10 ms worth of bytes, at least 16 KiB. */
static double default_burst(double rate) { return rate / 100 > 16384 ? rate / 100 : 16384; }

/* tbf and htb give the kernel a bucket as the time it takes to send it at the rate, in a u32 of 64 ns ticks
 * (about 274 s); libnl's conversion wraps silently past that (16 KiB at 8bit became a 223-byte bucket).
 * given: whether the burst came from the caller (blame it) or is the default (blame the rate). */
static void check_bucket(lua_State *L, int idx, const char *burst_field, const char *rate_field, double burst,
                         double rate, int given) {
    const double max_seconds = 4294967295.0 * 64e-9;
    if (burst / rate <= max_seconds) return;
    if (given) lunas_field_error(L, idx, burst_field, "%.0f bytes take more than %.0f s at this rate", burst, max_seconds);
    lunas_field_error(L, idx, rate_field, "too low for a %.0f-byte %s: give a smaller %s", burst, burst_field, burst_field);
}

static int replace_tbf(lua_State *L, struct lunas_netlink *nl, int idx, int ifindex, uint32_t parent,
                       uint32_t handle, const char *label) {
    double rate = opt_unit(L, idx, "rate", check_rate);
    if (rate < 0) lunas_field_error(L, idx, "rate", "tbf needs a rate");
    if (rate > INT_MAX) lunas_field_error(L, idx, "rate", "more than libnl's tbf can express (17gbit): use htb");
    double burst = opt_unit(L, idx, "burst", check_size);
    int burst_given = burst >= 0;
    if (burst < 0) burst = default_burst(rate);
    if (burst < 1 || burst > INT_MAX) lunas_field_error(L, idx, "burst", "1 byte to 2 GiB expected");
    check_bucket(L, idx, "burst", "rate", burst, rate, burst_given);
    double latency = opt_unit(L, idx, "latency", check_time), limit = opt_unit(L, idx, "limit", check_size);
    if (latency >= 0 && limit >= 0) lunas_field_error(L, idx, "limit", "give limit or latency, not both");
    if (limit > INT_MAX) lunas_field_error(L, idx, "limit", "too large");
    if (latency > 1e9 * 60) lunas_field_error(L, idx, "latency", "more than a minute");
    /* libnl turns a latency into limit = rate x latency + burst, in an int. */
    if (latency >= 0 && rate * (latency / 1e9) + burst > INT_MAX)
        lunas_field_error(L, idx, "latency", "more than 2 GiB queued at this rate: give a lower latency");
    struct rtnl_qdisc *q = new_qdisc(L, ifindex, parent, handle, "tbf");
    rtnl_qdisc_tbf_set_rate(q, (int)rate, (int)burst, 0);
    if (limit >= 0) rtnl_qdisc_tbf_set_limit(q, (int)limit);
    else rtnl_qdisc_tbf_set_limit_by_latency(q, (int)((latency >= 0 ? latency : 50e6) / 1e3));
    int r = rtnl_qdisc_add(nl->sock, q, NLM_F_CREATE | NLM_F_REPLACE);
    rtnl_qdisc_put(q);
    if (r < 0) return lunas_netlink_error(L, nl, r, "qdisc replace tbf on", label);
    return 0;
}

/* Whether the qdisc at parent on ifindex is an htb with that handle and default class 1 (what replace_htb
 * makes). Leaves nl's error state as it was. */
static int is_htb_shaper(struct lunas_netlink *nl, int ifindex, uint32_t parent, uint32_t handle) {
    int err = nl->err;
    char ext_ack[sizeof nl->ext_ack];
    memcpy(ext_ack, nl->ext_ack, sizeof ext_ack);
    struct nl_cache *cache;
    int found = 0;
    if (rtnl_qdisc_alloc_cache(nl->sock, &cache) == 0) {
        struct rtnl_qdisc *old = rtnl_qdisc_get(cache, ifindex, handle);
        if (old) {
            const char *kind = rtnl_tc_get_kind(TC_CAST(old));
            found = kind && strcmp(kind, "htb") == 0 && rtnl_tc_get_parent(TC_CAST(old)) == parent &&
                    rtnl_htb_get_defcls(old) == 1;
            rtnl_qdisc_put(old);
        }
        nl_cache_free(cache);
    }
    nl->err = err;
    memcpy(nl->ext_ack, ext_ack, sizeof ext_ack);
    return found;
}

/* htb as a shaper: the qdisc (default class 1) and its class 1 with rate, ceil and bursts. */
static int replace_htb(lua_State *L, struct lunas_netlink *nl, int idx, int ifindex, uint32_t parent,
                       uint32_t handle, const char *label) {
    double rate = opt_unit(L, idx, "rate", check_rate);
    if (rate < 0) lunas_field_error(L, idx, "rate", "htb needs a rate");
    double ceil = opt_unit(L, idx, "ceil", check_rate);
    if (ceil < 0) ceil = rate;
    if (ceil < rate) lunas_field_error(L, idx, "ceil", "lower than rate");
    double burst = opt_unit(L, idx, "burst", check_size), cburst = opt_unit(L, idx, "cburst", check_size);
    int burst_given = burst >= 0, cburst_given = cburst >= 0;
    if (burst < 0) burst = default_burst(rate);
    if (cburst < 0) cburst = default_burst(ceil);
    if (burst > UINT32_MAX || cburst > UINT32_MAX) lunas_field_error(L, idx, "burst", "too large");
    check_bucket(L, idx, "burst", "rate", burst, rate, burst_given);
    check_bucket(L, idx, "cburst", "ceil", cburst, ceil, cburst_given);
    if (TC_H_MIN(handle)) lunas_field_error(L, idx, "handle", "a qdisc handle has no minor number (\"1:\")");
    struct rtnl_qdisc *q = new_qdisc(L, ifindex, parent, handle, "htb");
    rtnl_htb_set_defcls(q, 1);
    int r = rtnl_qdisc_add(nl->sock, q, NLM_F_CREATE | NLM_F_REPLACE);
    rtnl_qdisc_put(q);
    /* htb has no change operation: replacing an htb by an htb fails ("Change operation not supported by
     * specified qdisc"). When the one there is already this shaper (same parent and handle, default class 1),
     * only its class needs the new rates. */
    if (r < 0 && !is_htb_shaper(nl, ifindex, parent, handle))
        return lunas_netlink_error(L, nl, r, "qdisc replace htb on", label);
    nl->err = 0;
    nl->ext_ack[0] = '\0';
    struct rtnl_class *c = rtnl_class_alloc();
    if (!c) return luaL_error(L, "out of memory");
    rtnl_tc_set_ifindex(TC_CAST(c), ifindex);
    rtnl_tc_set_parent(TC_CAST(c), handle);
    rtnl_tc_set_handle(TC_CAST(c), handle | 1);
    if (rtnl_tc_set_kind(TC_CAST(c), "htb") < 0) {
        rtnl_class_put(c);
        return luaL_error(L, "out of memory");
    }
    rtnl_htb_set_rate64(c, (uint64_t)rate);
    rtnl_htb_set_ceil64(c, (uint64_t)ceil);
    rtnl_htb_set_rbuffer(c, (uint32_t)burst);
    rtnl_htb_set_cbuffer(c, (uint32_t)cburst);
    r = rtnl_class_add(nl->sock, c, NLM_F_CREATE | NLM_F_REPLACE);
    rtnl_class_put(c);
    if (r < 0) return lunas_netlink_error(L, nl, r, "class replace htb on", label);
    return 0;
}

/* Any other kind as a bare RTM_NEWQDISC with TCA_KIND and no options, as tc sends it: the kernel applies the
 * kind's defaults. Not through rtnl_qdisc_add: libnl fills options for the kinds it knows and refuses (fifo:
 * NLE_INVAL without a limit) or aborts the process (prio, pfifo_fast: BUG() without a priomap) when they are unset. */
static int replace_plain(lua_State *L, struct lunas_netlink *nl, int ifindex, uint32_t parent, uint32_t handle,
                         const char *kind, const char *label) {
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE);
    struct tcmsg tcm = {.tcm_family = AF_UNSPEC, .tcm_ifindex = ifindex, .tcm_handle = handle, .tcm_parent = parent};
    if (!msg || nlmsg_append(msg, &tcm, sizeof tcm, NLMSG_ALIGNTO) < 0 || nla_put_string(msg, TCA_KIND, kind) < 0) {
        nlmsg_free(msg);
        return luaL_error(L, "out of memory");
    }
    int r = nl_send_sync(nl->sock, msg); /* frees msg */
    if (r < 0) {
        char op[64];
        snprintf(op, sizeof op, "qdisc replace %s on", kind);
        return lunas_netlink_error(L, nl, r, op, label);
    }
    return 0;
}

static const char *const netem_options[] = {"kind", "parent", "handle", "delay", "jitter", "loss", "duplicate",
                                            "corrupt", "reorder", "rate", "limit", "gap", NULL};
static const char *const tbf_options[] = {"kind", "parent", "handle", "rate", "burst", "latency", "limit", NULL};
static const char *const htb_options[] = {"kind", "parent", "handle", "rate", "ceil", "burst", "cburst", NULL};
static const char *const plain_options[] = {"kind", "parent", "handle", NULL};

static const char *check_qdisc_kind(lua_State *L, int idx) {
    const char *kind = lunas_opt_string(L, idx, "kind", NULL);
    if (!kind) lunas_field_error(L, idx, "kind", "qdisc kind expected (netem, tbf, htb, ...)");
    size_t len = strlen(kind);
    if (len == 0 || len >= 16 || strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
        lunas_field_error(L, idx, "kind", "bad qdisc kind '%s'", kind);
    return kind;
}

/***
Netlink handles.
@type netlink
*/

/***
Creates or replaces the queueing discipline of a link at `parent` (what `tc qdisc replace` does).
Units are strings as tc writes them or numbers in base units: times "10ms", "1s", "500us" (a number is ms);
probabilities "1%" (a number is a percentage); rates "100mbit", "1gbit", "10mbps" (bytes), "1mibit" (a number
is bit/s); sizes "32kb", "1m", "1500" (a number is bytes).
@function netlink:qdisc_replace
@tparam string|integer link
@tparam table opts
@tparam string opts.kind "netem", "tbf", "htb", or any other kind by name (sent with no options: the kernel's
  defaults, as `tc qdisc replace dev X root fq_codel` does)
@tparam[opt="root"] string opts.parent "root", "ingress" or a handle "1:10"
@tparam[opt] string opts.handle such as "1:" (default: chosen by the kernel; "1:" for htb)
@tparam[opt] string|number opts.delay netem: the added delay
@tparam[opt] string|number opts.jitter netem: random variation of the delay (needs a delay)
@tparam[opt] string|number opts.loss netem: the share of packets dropped
@tparam[opt] string|number opts.duplicate netem: the share duplicated
@tparam[opt] string|number opts.corrupt netem: the share with a flipped bit
@tparam[opt] string|number opts.reorder netem: the share sent at once while the others wait the delay (needs a
  delay; gap defaults to 1)
@tparam[opt] string|number opts.rate netem, tbf, htb (required for tbf and htb): the rate
@tparam[opt=1000] integer opts.limit netem: the queue length in packets; tbf: the queue size (a size, or give
  latency instead)
@tparam[opt=0] integer opts.gap netem: reordering gap
@tparam[opt] string|number opts.burst tbf, htb: the bucket size (default: 10 ms worth of the rate, at least
  16 KiB)
@tparam[opt] string|number opts.latency tbf: the longest a packet may wait (default 50ms; or give limit)
@tparam[opt] string|number opts.ceil htb: the most the class may borrow up to (default: rate)
@tparam[opt] string|number opts.cburst htb: the bucket for ceil
@treturn boolean true
@error "qdisc replace KIND on LINK in NETNS (kernel text): message", "ENAME"
@usage nl:qdisc_replace("eth0", {kind = "netem", delay = "20ms", jitter = "5ms", loss = "1%"})
nl:qdisc_replace("eth0", {kind = "htb", rate = "100mbit"}) -- one class, 1:1, takes all traffic
*/
static int tc_qdisc_replace(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    luaL_checktype(L, 3, LUA_TTABLE);
    const char *kind = check_qdisc_kind(L, 3);
    int is_netem = strcmp(kind, "netem") == 0, is_tbf = strcmp(kind, "tbf") == 0, is_htb = strcmp(kind, "htb") == 0;
    lunas_check_options(L, 3, is_netem ? netem_options : is_tbf ? tbf_options : is_htb ? htb_options : plain_options);
    uint32_t parent = check_tc_handle(L, 3, "parent", TC_H_ROOT);
    uint32_t handle = check_tc_handle(L, 3, "handle", is_htb ? TC_HANDLE(1, 0) : 0);
    char label[IFNAMSIZ + 16];
    int ifindex = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
    if (ifindex < 0) return lunas_netlink_error(L, nl, ifindex, "qdisc replace on", label);
    int r = is_netem ? replace_netem(L, nl, 3, ifindex, parent, handle, label)
          : is_tbf   ? replace_tbf(L, nl, 3, ifindex, parent, handle, label)
          : is_htb   ? replace_htb(L, nl, 3, ifindex, parent, handle, label)
                     : replace_plain(L, nl, ifindex, parent, handle, kind, label);
    if (r) return r;
    lua_pushboolean(L, 1);
    return 1;
}

/***
Removes a queueing discipline; the link falls back to its default one.
@function netlink:qdisc_del
@tparam string|integer link
@tparam[opt] table opts
@tparam[opt="root"] string opts.parent
@tparam[opt] string opts.handle
@treturn boolean true
@error "qdisc delete on LINK in NETNS: message", "ENAME"
*/
static int tc_qdisc_del(lua_State *L) {
    static const char *const allowed[] = {"parent", "handle", NULL};
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    uint32_t parent = TC_H_ROOT, handle = 0;
    if (!lua_isnoneornil(L, 3)) {
        lunas_check_options(L, 3, allowed);
        parent = check_tc_handle(L, 3, "parent", TC_H_ROOT);
        handle = check_tc_handle(L, 3, "handle", 0);
    }
    char label[IFNAMSIZ + 16];
    int ifindex = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
    if (ifindex < 0) return lunas_netlink_error(L, nl, ifindex, "qdisc delete on", label);
    struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    if (!q) return luaL_error(L, "out of memory");
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), parent);
    if (handle) rtnl_tc_set_handle(TC_CAST(q), handle);
    int r = rtnl_qdisc_delete(nl->sock, q);
    rtnl_qdisc_put(q);
    if (r < 0) return lunas_netlink_error(L, nl, r, "qdisc delete on", label);
    lua_pushboolean(L, 1);
    return 1;
}

static void set_number(lua_State *L, const char *key, lua_Number v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, key);
}

static void set_int(lua_State *L, const char *key, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
}

/* What the kind-specific part says, for the kinds lunas creates (delays in ms, probabilities in %). */
static void push_qdisc_options(lua_State *L, struct rtnl_qdisc *q, const char *kind) {
    if (strcmp(kind, "netem") == 0) {
        set_number(L, "delay", rtnl_netem_get_delay(q) / 1e3);
        set_number(L, "jitter", rtnl_netem_get_jitter(q) / 1e3);
        set_number(L, "loss", (uint32_t)rtnl_netem_get_loss(q) * 100.0 / UINT32_MAX);
        set_number(L, "duplicate", (uint32_t)rtnl_netem_get_duplicate(q) * 100.0 / UINT32_MAX);
        set_int(L, "limit", rtnl_netem_get_limit(q));
    } else if (strcmp(kind, "tbf") == 0) {
        set_number(L, "rate", rtnl_qdisc_tbf_get_rate(q) * 8.0);
        set_int(L, "burst", rtnl_qdisc_tbf_get_rate_bucket(q));
        set_int(L, "limit", rtnl_qdisc_tbf_get_limit(q));
    } else if (strcmp(kind, "htb") == 0) {
        set_int(L, "default", rtnl_htb_get_defcls(q));
    }
}

static void push_qdisc(lua_State *L, struct rtnl_qdisc *q, const char *link_name) {
    char buf[32];
    struct rtnl_tc *tc = TC_CAST(q);
    const char *kind = rtnl_tc_get_kind(tc);
    lua_createtable(L, 0, 12);
    if (link_name) {
        lua_pushstring(L, link_name);
        lua_setfield(L, -2, "dev");
    }
    lua_pushstring(L, kind ? kind : "");
    lua_setfield(L, -2, "kind");
    format_tc_handle(rtnl_tc_get_handle(tc), buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "handle");
    format_tc_handle(rtnl_tc_get_parent(tc), buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "parent");
    static const struct {
        const char *name;
        enum rtnl_tc_stat id;
    } stats[] = {{"bytes", RTNL_TC_BYTES}, {"packets", RTNL_TC_PACKETS}, {"drops", RTNL_TC_DROPS},
                 {"overlimits", RTNL_TC_OVERLIMITS}, {"qlen", RTNL_TC_QLEN}, {"backlog", RTNL_TC_BACKLOG}};
    for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) set_int(L, stats[i].name, (lua_Integer)rtnl_tc_get_stat(tc, stats[i].id));
    if (kind) push_qdisc_options(L, q, kind);
}

/***
The queueing disciplines of the namespace, or of one link.
@function netlink:qdisc_list
@tparam[opt] string|integer link
@treturn table an array of `{dev, kind, handle = "1:", parent = "root", bytes, packets, drops, overlimits,
  qlen, backlog}` plus, for netem, `delay` and `jitter` (ms), `loss` and `duplicate` (%), `limit`; for tbf
  `rate` (bit/s), `burst`, `limit`; for htb `default` (the default class)
@error "qdisc list in NETNS: message", "ENAME"
*/
static int tc_qdisc_list(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    int only = 0;
    char label[IFNAMSIZ + 16];
    if (!lua_isnoneornil(L, 2)) {
        only = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
        if (only < 0) return lunas_netlink_error(L, nl, only, "qdisc list on", label);
    }
    struct nl_cache *qdiscs, *links;
    if (lunas_netlink_with_links(L, nl, rtnl_qdisc_alloc_cache(nl->sock, &qdiscs), qdiscs, "qdisc list", &links))
        return 3;
    lua_newtable(L);
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(qdiscs); o; o = nl_cache_get_next(o)) {
        struct rtnl_qdisc *q = (struct rtnl_qdisc *)o;
        int index = rtnl_tc_get_ifindex(TC_CAST(q));
        if (only && index != only) continue;
        char name[IFNAMSIZ];
        push_qdisc(L, q, rtnl_link_i2name(links, index, name, sizeof name));
        lua_rawseti(L, -2, ++n);
    }
    nl_cache_free(qdiscs);
    nl_cache_free(links);
    return 1;
}

void lunas_open_tc(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"qdisc_replace", tc_qdisc_replace}, {"qdisc_del", tc_qdisc_del}, {"qdisc_list", tc_qdisc_list}, {NULL, NULL}};
    /* The methods join the netlink handle's class (net.c registers it first). */
    luaL_getmetatable(L, LUNAS_NETLINK);
    lua_getfield(L, -1, "__index");
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 2);
}
