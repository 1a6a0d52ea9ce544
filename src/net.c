/* net.c: networking through libnl-route-3: netlink handles bound to a network namespace; links, addresses,
 * routes and neighbours; sysctls of a namespace; and the one-ioctl loopback bring-up of the sandbox hot path.
 *
 * Debian's libnl aborts the process on several misuses (KERNEL-NOTES): every value is validated here before
 * it reaches libnl, only typed allocators are used for typed setters, and libnl's error codes (which are not
 * errno values) are replaced by the kernel's own errno and extended-ack text captured by an error callback. */
/*** @module lunas.core */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/link/macvtap.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vlan.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "lunas.h"
#include "netlink.h"

/* ---- handles ------------------------------------------------------------ */

static int on_netlink_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg) {
    (void)who;
    struct lunas_netlink *nl = arg;
    nl->err = -e->error;
    /* libnl hands us the payload of the NLMSG_ERROR message; its header sits right before it. */
    const struct nlmsghdr *hdr = (const struct nlmsghdr *)(const void *)((const char *)e - NLMSG_HDRLEN);
    if (!(hdr->nlmsg_flags & NLM_F_ACK_TLVS)) return NL_STOP;
    size_t offset = NLMSG_HDRLEN + sizeof *e;
    if (!(hdr->nlmsg_flags & NLM_F_CAPPED) && e->msg.nlmsg_len > NLMSG_HDRLEN) offset += e->msg.nlmsg_len - NLMSG_HDRLEN;
    offset = NLMSG_ALIGN(offset);
    if (offset >= hdr->nlmsg_len) return NL_STOP;
    struct nlattr *attrs = (struct nlattr *)(void *)((char *)(uintptr_t)hdr + offset);
    struct nlattr *a;
    int rem;
    nla_for_each_attr(a, attrs, (int)(hdr->nlmsg_len - offset), rem) {
        if (nla_type(a) == NLMSGERR_ATTR_MSG && nla_len(a) > 0) {
            size_t len = strnlen(nla_data(a), (size_t)nla_len(a));
            if (len >= sizeof nl->ext_ack) len = sizeof nl->ext_ack - 1;
            memcpy(nl->ext_ack, nla_data(a), len);
            nl->ext_ack[len] = '\0';
            while (len > 0 && nl->ext_ack[len - 1] == '\n') nl->ext_ack[--len] = '\0';
        }
    }
    return NL_STOP;
}

struct lunas_netlink *lunas_check_netlink(lua_State *L, int idx) {
    struct lunas_netlink *nl = luaL_checkudata(L, idx, LUNAS_NETLINK);
    if (!nl->sock) lunas_closed_error(L, "netlink handle");
    nl->err = 0;
    nl->ext_ack[0] = '\0';
    return nl;
}

static int errno_from_nle(int nlerr) {
    switch (-nlerr) {
    case NLE_NOMEM: return ENOMEM;
    case NLE_INVAL:
    case NLE_IMMUTABLE:
    case NLE_MISSING_ATTR:
    case NLE_NOATTR: return EINVAL;
    case NLE_RANGE: return ERANGE;
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_EXIST: return EEXIST;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_AF_NOSUPPORT:
    case NLE_AF_MISMATCH: return EAFNOSUPPORT;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_PERM: return EPERM;
    case NLE_BUSY: return EBUSY;
    case NLE_AGAIN: return EAGAIN;
    case NLE_NODEV: return ENODEV;
    case NLE_MSGSIZE: return EMSGSIZE;
    default: return EIO;
    }
}

int lunas_netlink_error(lua_State *L, struct lunas_netlink *nl, int nlerr, const char *op, const char *target) {
    int err = nl->err > 0 ? nl->err : errno_from_nle(nlerr);
    const char *text = nl->err > 0 ? strerror(err) : nl_geterror(nlerr);
    luaL_Buffer b;
    lua_pushnil(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, op);
    if (target) {
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, target);
    }
    if (nl->where[0]) {
        luaL_addstring(&b, " in ");
        luaL_addstring(&b, nl->where);
    }
    if (nl->ext_ack[0]) {
        luaL_addstring(&b, " (");
        luaL_addstring(&b, nl->ext_ack);
        luaL_addchar(&b, ')');
    }
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, text);
    luaL_pushresult(&b);
    lua_pushstring(L, lunas_errno_name(err));
    return 3;
}

/* Errors that happen before any request (ioctl, open): same shape, with the handle's namespace. */
static int netlink_errno(lua_State *L, struct lunas_netlink *nl, int err, const char *op, const char *target) {
    nl->err = err;
    return lunas_netlink_error(L, nl, -NLE_FAILURE, op, target);
}

/***
Network.
Netlink handles bound to a network namespace (links, addresses, routes, neighbours, queueing disciplines),
the network sysctls of a namespace, and bringing lo up.
@section network
*/

/***
Netlink handles.
A rtnetlink socket opened inside one network namespace (`netlink`), which stays bound to it for its whole life,
whatever namespace lunas is in later. Links are named by name or index. Failures read
`nil, "op target in NETNS (the kernel's extended ack): message", "ENAME"`, with the kernel's own errno.
`tostring` gives "netlink (NETNS)".
@type netlink
*/

/***
Closes the socket. Closing again does nothing.
@function netlink:close
*/
static int netlink_close(lua_State *L) {
    struct lunas_netlink *nl = luaL_checkudata(L, 1, LUNAS_NETLINK);
    if (nl->sock && nl->owner == getpid()) nl_socket_free(nl->sock);
    if (nl->netns_fd >= 0 && nl->owner == getpid()) close(nl->netns_fd);
    nl->sock = NULL;
    nl->netns_fd = -1;
    return 0;
}

static int netlink_tostring(lua_State *L) {
    struct lunas_netlink *nl = luaL_checkudata(L, 1, LUNAS_NETLINK);
    if (!nl->sock) lua_pushliteral(L, "netlink (closed)");
    else lua_pushfstring(L, "netlink (%s)", nl->where[0] ? nl->where : "current namespace");
    return 1;
}

/***
The socket's descriptor number.
@function netlink:fileno
@treturn integer
*/
static int netlink_fileno(lua_State *L) {
    lua_pushinteger(L, nl_socket_get_fd(lunas_check_netlink(L, 1)->sock));
    return 1;
}

static int connect_socket(struct lunas_netlink *nl) {
    nl->sock = nl_socket_alloc();
    if (!nl->sock) return -NLE_NOMEM;
    nl_socket_modify_err_cb(nl->sock, NL_CB_CUSTOM, on_netlink_error, nl);
    int r = nl_connect(nl->sock, NETLINK_ROUTE);
    if (r < 0) return r;
    int one = 1, fd = nl_socket_get_fd(nl->sock);
    /* The kernel's own words for a refusal ("Unknown device type"), and no echo of our request in errors. */
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    return 0;
}

/***
Network.
@section network
*/

/***
Opens a netlink handle inside a network namespace.
@function netlink
@tparam[opt] ns|string|fd netns nil for the caller's namespace, a namespace handle (or anything with
  `fileno()`), a namespace file path, or a name under /run/netns as `ip netns` names them
@treturn netlink
@error "netlink: open namespace NAME: message", "ENAME"
*/
static int net_netlink(lua_State *L) {
    char what[sizeof(((struct lunas_netlink *)0)->where)];
    int owned;
    int fd = lunas_check_netns(L, 1, 1, "netns", &owned, what, sizeof what);
    if (fd == -2) return lunas_push_error(L, errno, "netlink: open namespace", what);
    struct lunas_netlink *nl = lua_newuserdatauv(L, sizeof *nl, 0);
    memset(nl, 0, sizeof *nl);
    nl->netns_fd = -1;
    nl->owner = getpid();
    luaL_setmetatable(L, LUNAS_NETLINK);
    if (fd >= 0) {
        snprintf(nl->where, sizeof nl->where, "%s", what);
        nl->netns_fd = owned ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (nl->netns_fd < 0) return lunas_push_error(L, errno, "netlink: dup namespace", what);
    }
    int saved;
    if (lunas_netns_enter(nl->netns_fd, &saved) < 0) return lunas_push_error(L, errno, "netlink: setns", what);
    int r = connect_socket(nl);
    lunas_netns_leave(saved);
    if (r < 0) {
        if (nl->sock) nl_socket_free(nl->sock);
        nl->sock = NULL;
        return lunas_netlink_error(L, nl, r, "netlink: connect", NULL);
    }
    return 1;
}

int lunas_netlink_with_links(lua_State *L, struct lunas_netlink *nl, int r, struct nl_cache *listed, const char *op,
                             struct nl_cache **links) {
    if (r < 0) return lunas_netlink_error(L, nl, r, op, NULL);
    r = rtnl_link_alloc_cache(nl->sock, AF_UNSPEC, links);
    if (r < 0) {
        nl_cache_free(listed);
        return lunas_netlink_error(L, nl, r, op, NULL);
    }
    return 0;
}

/* ---- validation --------------------------------------------------------- */

/* The kernel's dev_valid_name: 1-15 bytes, not "." or "..", no '/', ':' or white space. libnl truncates
 * silently, so a long name must be refused here. */
const char *lunas_check_ifname(lua_State *L, int idx, int arg, const char *field) {
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
        lunas_field_error(L, arg, field, "interface name expected, got %s", luaL_typename(L, idx));
    const char *name = lua_tolstring(L, idx, &len);
    if (len == 0) lunas_field_error(L, arg, field, "empty interface name");
    if (len >= IFNAMSIZ) lunas_field_error(L, arg, field, "interface name '%s' longer than %d bytes", name, IFNAMSIZ - 1);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strlen(name) != len || strpbrk(name, "/: \t\n\r\v\f"))
        lunas_field_error(L, arg, field, "bad interface name '%s'", name);
    return name;
}

/* A link from a name or an index, as an index in nl's namespace. Fills label with a printable name. Returns the
 * index, or a negative libnl error (the link does not exist). */
int lunas_netlink_ifindex(lua_State *L, struct lunas_netlink *nl, int idx, int arg, const char *field, char *label,
                          size_t label_size) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int index = (int)lunas_check_range(L, idx, arg, field, 1, INT32_MAX);
        snprintf(label, label_size, "#%d", index);
        return index;
    }
    const char *name = lunas_check_ifname(L, idx, arg, field);
    snprintf(label, label_size, "%s", name);
    struct rtnl_link *link = NULL;
    int r = rtnl_link_get_kernel(nl->sock, 0, name, &link);
    if (r < 0) return r;
    int index = rtnl_link_get_ifindex(link);
    rtnl_link_put(link);
    return index;
}

/* Parses "10.0.0.1/24", "fd00::1/64" or a bare address (full-length prefix) into a new nl_addr. With
 * allow_default, "default" gives a zero-length prefix of `family` (AF_UNSPEC: decided later). Raises on misuse. */
struct nl_addr *lunas_check_prefix(lua_State *L, int idx, int arg, const char *field, int allow_prefix,
                                   int allow_default, int family) {
    if (lua_type(L, idx) != LUA_TSTRING)
        lunas_field_error(L, arg, field, "address string expected, got %s", luaL_typename(L, idx));
    const char *text = lua_tostring(L, idx);
    unsigned char buf[16];
    if (allow_default && strcmp(text, "default") == 0) {
        memset(buf, 0, sizeof buf);
        int f = family ? family : AF_INET;
        struct nl_addr *a = nl_addr_build(f, buf, f == AF_INET6 ? 16 : 4);
        if (!a) luaL_error(L, "out of memory");
        nl_addr_set_prefixlen(a, 0);
        return a;
    }
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t hostlen = slash ? (size_t)(slash - text) : strlen(text);
    if (hostlen == 0 || hostlen >= sizeof host) lunas_field_error(L, arg, field, "bad address '%s'", text);
    memcpy(host, text, hostlen);
    host[hostlen] = '\0';
    int f = strchr(host, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(f, host, buf) != 1) lunas_field_error(L, arg, field, "bad address '%s'", text);
    if (family && family != f)
        lunas_field_error(L, arg, field, "'%s' is not an %s address", text, family == AF_INET ? "IPv4" : "IPv6");
    int max = f == AF_INET ? 32 : 128, prefix = max;
    if (slash) {
        char *end;
        long value = strtol(slash + 1, &end, 10);
        if (!allow_prefix) lunas_field_error(L, arg, field, "'%s': no prefix length expected", text);
        if (slash[1] == '\0' || *end || value < 0 || value > max || !(slash[1] >= '0' && slash[1] <= '9'))
            lunas_field_error(L, arg, field, "bad prefix length in '%s' (0-%d)", text, max);
        prefix = (int)value;
    }
    struct nl_addr *a = nl_addr_build(f, buf, f == AF_INET ? 4 : 16);
    if (!a) luaL_error(L, "out of memory");
    nl_addr_set_prefixlen(a, prefix);
    return a;
}

/* A hardware address "aa:bb:cc:dd:ee:ff" (6 bytes). */
static struct nl_addr *check_mac(lua_State *L, int idx, int arg, const char *field) {
    if (lua_type(L, idx) != LUA_TSTRING)
        lunas_field_error(L, arg, field, "MAC address string expected, got %s", luaL_typename(L, idx));
    const char *text = lua_tostring(L, idx);
    unsigned int b[6];
    char tail;
    if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 ||
        strlen(text) != 17)
        lunas_field_error(L, arg, field, "bad MAC address '%s' (aa:bb:cc:dd:ee:ff expected)", text);
    unsigned char bytes[6];
    for (int i = 0; i < 6; i++) bytes[i] = (unsigned char)b[i];
    struct nl_addr *a = nl_addr_build(AF_LLC, bytes, 6);
    if (!a) luaL_error(L, "out of memory");
    return a;
}

/* "10.0.0.0/24" style text of an nl_addr; "default" for a zero-length prefix. */
void lunas_format_prefix(struct nl_addr *a, int with_prefix, char *buf, size_t size) {
    char host[INET6_ADDRSTRLEN];
    int f = nl_addr_get_family(a);
    if (nl_addr_get_prefixlen(a) == 0 && with_prefix) {
        snprintf(buf, size, "default");
        return;
    }
    if ((f != AF_INET && f != AF_INET6) || !inet_ntop(f, nl_addr_get_binary_addr(a), host, sizeof host)) {
        nl_addr2str(a, buf, size);
        return;
    }
    if (with_prefix) snprintf(buf, size, "%s/%u", host, nl_addr_get_prefixlen(a));
    else snprintf(buf, size, "%s", host);
}

/* ---- links: reading ------------------------------------------------------- */

/* IFF_LOWER_UP and IFF_DORMANT are in linux/if.h, which clashes with net/if.h. */
static const struct lunas_flag link_flag_names[] = {
    {"up", IFF_UP},           {"broadcast", IFF_BROADCAST}, {"loopback", IFF_LOOPBACK}, {"pointopoint", IFF_POINTOPOINT},
    {"running", IFF_RUNNING}, {"noarp", IFF_NOARP},         {"promisc", IFF_PROMISC},   {"allmulti", IFF_ALLMULTI},
    {"multicast", IFF_MULTICAST}, {"lower_up", 0x10000}, {"dormant", 0x20000}, {NULL, 0},
};

static const struct {
    const char *name;
    rtnl_link_stat_id_t id;
} link_stats[] = {
    {"rx_bytes", RTNL_LINK_RX_BYTES},     {"tx_bytes", RTNL_LINK_TX_BYTES},     {"rx_packets", RTNL_LINK_RX_PACKETS},
    {"tx_packets", RTNL_LINK_TX_PACKETS}, {"rx_errors", RTNL_LINK_RX_ERRORS},   {"tx_errors", RTNL_LINK_TX_ERRORS},
    {"rx_dropped", RTNL_LINK_RX_DROPPED}, {"tx_dropped", RTNL_LINK_TX_DROPPED}, {NULL, 0},
};

static void set_string(lua_State *L, const char *key, const char *value) {
    if (!value) return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, lua_Integer value) {
    lua_pushinteger(L, value);
    lua_setfield(L, -2, key);
}

static void push_link_flags(lua_State *L, unsigned int flags) {
    lua_newtable(L);
    int n = 0;
    for (const struct lunas_flag *f = link_flag_names; f->name; f++)
        if (flags & f->value) {
            lua_pushstring(L, f->name);
            lua_rawseti(L, -2, ++n);
        }
    lua_setfield(L, -2, "flags");
}

static void push_link_stats(lua_State *L, struct rtnl_link *link) {
    lua_newtable(L);
    for (int i = 0; link_stats[i].name; i++) set_integer(L, link_stats[i].name, (lua_Integer)rtnl_link_get_stat(link, link_stats[i].id));
    lua_setfield(L, -2, "stats");
}

/* One link as a table: name, index, kind, up, flags, operstate, mtu, mac, master, group, peer, txqlen, stats.
 * cache (may be NULL) names the master. */
static void push_link(lua_State *L, struct rtnl_link *link, struct nl_cache *cache) {
    char buf[64];
    lua_createtable(L, 0, 16);
    set_string(L, "name", rtnl_link_get_name(link));
    set_integer(L, "index", rtnl_link_get_ifindex(link));
    set_string(L, "kind", rtnl_link_get_type(link));
    unsigned int flags = rtnl_link_get_flags(link);
    lua_pushboolean(L, (flags & IFF_UP) != 0);
    lua_setfield(L, -2, "up");
    push_link_flags(L, flags);
    set_string(L, "operstate", rtnl_link_operstate2str(rtnl_link_get_operstate(link), buf, sizeof buf));
    set_integer(L, "mtu", rtnl_link_get_mtu(link));
    set_integer(L, "txqlen", rtnl_link_get_txqlen(link));
    set_integer(L, "group", rtnl_link_get_group(link));
    struct nl_addr *mac = rtnl_link_get_addr(link);
    if (mac && nl_addr_get_len(mac) > 0) set_string(L, "mac", nl_addr2str(mac, buf, sizeof buf));
    int master = rtnl_link_get_master(link);
    if (master > 0) {
        set_integer(L, "master", master);
        if (cache && rtnl_link_i2name(cache, master, buf, sizeof buf)) set_string(L, "master_name", buf);
    }
    int peer = rtnl_link_get_link(link);
    if (peer > 0 && peer != rtnl_link_get_ifindex(link)) set_integer(L, "link", peer);
    set_string(L, "qdisc", rtnl_link_get_qdisc(link));
    push_link_stats(L, link);
}

/***
Netlink handles.
@type netlink
*/

/***
Every link of the namespace, as `ip link` lists them.
@function netlink:link_list
@treturn table an array of links: `{name, index, kind, up, flags = {"up", "broadcast", "running", "lower_up",
  ...}, operstate, mtu, txqlen, group, mac, master (index), master_name, link (peer or parent index), qdisc,
  stats = {rx_bytes, tx_bytes, rx_packets, tx_packets, rx_errors, tx_errors, rx_dropped, tx_dropped}}`
@error "link list in NETNS: message", "ENAME"
*/
static int netlink_link_list(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    struct nl_cache *cache;
    int r = rtnl_link_alloc_cache(nl->sock, AF_UNSPEC, &cache);
    if (r < 0) return lunas_netlink_error(L, nl, r, "link list", NULL);
    lua_newtable(L);
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
        push_link(L, (struct rtnl_link *)o, cache);
        lua_rawseti(L, -2, ++n);
    }
    nl_cache_free(cache);
    return 1;
}

/***
One link, as in `link_list` (without master_name).
@function netlink:link_get
@tparam string|integer link a name or an index
@treturn table
@error "link get NAME in NETNS: message", "ENODEV"
*/
static int netlink_link_get(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    struct rtnl_link *link = NULL;
    char label[IFNAMSIZ + 16];
    int r;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        int index = (int)lunas_check_range(L, 2, 2, "link", 1, INT32_MAX);
        snprintf(label, sizeof label, "#%d", index);
        r = rtnl_link_get_kernel(nl->sock, index, NULL, &link);
    } else {
        const char *name = lunas_check_ifname(L, 2, 2, "link");
        snprintf(label, sizeof label, "%s", name);
        r = rtnl_link_get_kernel(nl->sock, 0, name, &link);
    }
    if (r < 0) return lunas_netlink_error(L, nl, r, "link get", label);
    push_link(L, link, NULL);
    rtnl_link_put(link);
    return 1;
}

/* ---- links: writing ------------------------------------------------------- */

/* Attributes every kind shares, from the option table at idx, onto link. Returns 0 or pushes an error (3). */
static int apply_common_link_options(lua_State *L, struct lunas_netlink *nl, int idx, struct rtnl_link *link) {
    lua_Integer mtu = lunas_opt_integer(L, idx, "mtu", 0, 68, 65535);
    if (mtu) rtnl_link_set_mtu(link, (unsigned int)mtu);
    lua_Integer txqlen = lunas_opt_integer(L, idx, "txqlen", -1, 0, UINT32_MAX);
    if (txqlen >= 0) rtnl_link_set_txqlen(link, (unsigned int)txqlen);
    if (lunas_opt_field(L, idx, "group", LUA_TNUMBER) != LUA_TNIL)
        rtnl_link_set_group(link, (uint32_t)lunas_check_range(L, -1, idx, "group", 0, UINT32_MAX));
    lua_pop(L, 1);
    if (lunas_opt_field(L, idx, "mac", LUA_TSTRING) != LUA_TNIL) {
        struct nl_addr *mac = check_mac(L, -1, idx, "mac");
        rtnl_link_set_addr(link, mac);
        nl_addr_put(mac);
    }
    lua_pop(L, 1);
    if (lunas_opt_field(L, idx, "up", LUA_TBOOLEAN) != LUA_TNIL) {
        if (lua_toboolean(L, -1)) rtnl_link_set_flags(link, IFF_UP);
        else rtnl_link_unset_flags(link, IFF_UP);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "master");
    if (!lua_isnil(L, -1)) {
        char master_label[IFNAMSIZ + 16];
        int master = lunas_netlink_ifindex(L, nl, -1, idx, "master", master_label, sizeof master_label);
        if (master < 0) {
            lua_pop(L, 1);
            return lunas_netlink_error(L, nl, master, "link master", master_label);
        }
        rtnl_link_set_master(link, master);
    }
    lua_pop(L, 1);
    return 0;
}

static int has_common_link_options(lua_State *L, int idx) {
    static const char *const names[] = {"mtu", "txqlen", "group", "mac", "up", "master", NULL};
    int any = 0;
    for (int i = 0; names[i] && !any; i++) {
        any = lua_getfield(L, idx, names[i]) != LUA_TNIL;
        lua_pop(L, 1);
    }
    return any;
}

/* Applies a change (common options) to an existing link by name (tun/tap devices, made outside netlink). */
static int change_link_by_name(lua_State *L, struct lunas_netlink *nl, struct rtnl_link *change, const char *name) {
    struct rtnl_link *orig = NULL;
    int r = rtnl_link_get_kernel(nl->sock, 0, name, &orig);
    if (r < 0) return lunas_netlink_error(L, nl, r, "link get", name);
    int pushed = 0;
    r = rtnl_link_change(nl->sock, orig, change, 0);
    if (r < 0) pushed = lunas_netlink_error(L, nl, r, "link set", name);
    rtnl_link_put(orig);
    return pushed;
}

/* The libnl objects of one request sit in a guard, a userdata on the Lua stack: misuse raises (a longjmp) and can
 * come after they were allocated, while an option table is read into them. The call releases the guard when it
 * is done with them; when an error unwinds past it, the GC does (as owned_fds below does for descriptors). */
#define NL_GUARD_SLOTS 4
#define LUNAS_NL_GUARD "lunas.nl_guard"
enum nl_guard_kind { GUARD_OBJECT = 1, GUARD_ADDR, GUARD_VETH };
struct nl_guard {
    void *ptr[NL_GUARD_SLOTS];
    enum nl_guard_kind kind[NL_GUARD_SLOTS];
};

static void nl_guard_put(void *ptr, enum nl_guard_kind kind) {
    if (kind == GUARD_ADDR) nl_addr_put(ptr);
    else if (kind == GUARD_VETH) rtnl_link_veth_release(ptr); /* the link and its peer */
    else nl_object_put(ptr);
}

/* Puts what the guard holds; the guard can be used again. */
static void nl_guard_release(struct nl_guard *g) {
    for (int i = 0; i < NL_GUARD_SLOTS; i++) {
        if (g->ptr[i]) nl_guard_put(g->ptr[i], g->kind[i]);
        g->ptr[i] = NULL;
    }
}

static int nl_guard_gc(lua_State *L) {
    nl_guard_release(luaL_checkudata(L, 1, LUNAS_NL_GUARD));
    return 0;
}

/* Pushes an empty guard. */
static struct nl_guard *nl_guard_new(lua_State *L) {
    struct nl_guard *g = lua_newuserdatauv(L, sizeof *g, 0);
    memset(g, 0, sizeof *g);
    if (luaL_newmetatable(L, LUNAS_NL_GUARD)) {
        lua_pushcfunction(L, nl_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return g;
}

/* Hands obj (just allocated; NULL raises "out of memory") to the guard and returns it. */
static void *nl_guard_add(lua_State *L, struct nl_guard *g, void *obj, enum nl_guard_kind kind) {
    if (!obj) luaL_error(L, "out of memory");
    for (int i = 0; i < NL_GUARD_SLOTS; i++) {
        if (!g->ptr[i]) {
            g->ptr[i] = obj;
            g->kind[i] = kind;
            return obj;
        }
    }
    nl_guard_put(obj, kind);
    luaL_error(L, "net.c: more than %d libnl objects in one request", NL_GUARD_SLOTS); /* a bug here */
    return NULL;
}

/* The namespace a link (or a veth peer) goes to: netns = handle | path | name. Returns the fd to use with
 * rtnl_link_set_ns_fd (owned fds are kept in `owned` to close after the request), -1 when absent.
 * The owned fds sit in fd objects on the Lua stack (owned_init pushes two): a misuse error raised after a
 * namespace was opened (a bad mtu, a bad peer name) unwinds past close_owned, and the GC closes them then. */
struct owned_fds {
    struct lunas_fd *slots[2];
    int count;
};

static void owned_init(lua_State *L, struct owned_fds *o) {
    for (int i = 0; i < 2; i++) o->slots[i] = lunas_new_fd(L, -1);
    o->count = 0;
}

static void close_owned(struct owned_fds *o) {
    for (int i = 0; i < o->count; i++) {
        close(o->slots[i]->fd);
        o->slots[i]->fd = -1;
    }
    o->count = 0;
}

/* The netns field of the table at idx; misuse blames argument arg, field `label`. */
static int link_netns_option(lua_State *L, int idx, int arg, const char *label, struct owned_fds *owned, char *what,
                             size_t what_size) {
    lua_getfield(L, idx, "netns");
    int is_owned;
    int fd = lunas_check_netns(L, -1, arg, label, &is_owned, what, what_size);
    lua_pop(L, 1);
    if (is_owned) owned->slots[owned->count++]->fd = fd;
    return fd;
}

static const char *const veth_peer_options[] = {"name", "netns", "mac", "mtu", "group", "txqlen", NULL};

/* The peer table is strict like the option table it sits in; misuse blames the link_add argument (arg), field
 * peer, not the table's stack slot. */
static void check_peer_options(lua_State *L, int peer_idx, int arg) {
    lua_pushnil(L);
    while (lua_next(L, peer_idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) lunas_field_error(L, arg, "peer", "option names must be strings");
        const char *key = lua_tostring(L, -1);
        int known = 0;
        for (int i = 0; veth_peer_options[i]; i++) known |= strcmp(key, veth_peer_options[i]) == 0;
        if (!known)
            lunas_field_error(L, arg, "peer", "unknown option '%s'%s", key,
                              strcmp(key, "up") == 0 ? " (bring the peer up through a handle in its namespace)" : "");
    }
}

/* What link_add must do about a veth's peer after the request: libnl 3.7 leaves IFLA_GROUP out of the peer's
 * attributes (rtnl_link_fill_info has no group; only the outer message carries one), so peer.group is set by a
 * second request in the peer's namespace. */
struct veth_peer {
    const char *name; /* NULL: not a veth */
    int ns;           /* the peer's namespace fd; -1: the handle's */
    int has_group;
    uint32_t group;
};

/* veth: peer = {name=, netns=, mac=, mtu=, group=}. The peer cannot be brought up in the creating request
 * (ENOTCONN): do it afterwards through a handle in its namespace. */
static struct rtnl_link *build_veth(lua_State *L, int idx, struct owned_fds *owned, struct nl_guard *g,
                                    struct veth_peer *out) {
    if (lunas_opt_field(L, idx, "peer", LUA_TTABLE) == LUA_TNIL)
        lunas_field_error(L, idx, "peer", "a veth needs a peer table ({name = ...})");
    int peer_idx = lua_gettop(L);
    check_peer_options(L, peer_idx, idx);
    lua_getfield(L, peer_idx, "name");
    const char *peer_name = lunas_check_ifname(L, -1, idx, "peer.name");
    lua_pop(L, 1);
    char what[64];
    int peer_ns = link_netns_option(L, peer_idx, idx, "peer.netns", owned, what, sizeof what);
    if (peer_ns == -2) {
        lua_pop(L, 1);
        lunas_push_error(L, errno, "link add: peer namespace", what);
        return NULL;
    }
    struct rtnl_link *link = nl_guard_add(L, g, rtnl_link_veth_alloc(), GUARD_VETH);
    /* The link holds its peer: drop the reference get_peer adds at once, so a misuse raised below leaves
     * nothing the guard's rtnl_link_veth_release does not free. */
    struct rtnl_link *peer = rtnl_link_veth_get_peer(link);
    rtnl_link_put(peer);
    rtnl_link_set_name(peer, peer_name);
    if (peer_ns >= 0) rtnl_link_set_ns_fd(peer, peer_ns);
    /* Options of the peer are validated like the link's own; "up" is refused for the reason above. */
    lua_getfield(L, peer_idx, "mtu");
    if (!lua_isnil(L, -1)) rtnl_link_set_mtu(peer, (unsigned int)lunas_check_range(L, -1, idx, "peer.mtu", 68, 65535));
    lua_getfield(L, peer_idx, "group");
    if (!lua_isnil(L, -1)) {
        out->group = (uint32_t)lunas_check_range(L, -1, idx, "peer.group", 0, UINT32_MAX);
        out->has_group = 1;
    }
    lua_getfield(L, peer_idx, "txqlen");
    if (!lua_isnil(L, -1))
        rtnl_link_set_txqlen(peer, (unsigned int)lunas_check_range(L, -1, idx, "peer.txqlen", 0, UINT32_MAX));
    lua_getfield(L, peer_idx, "mac");
    if (!lua_isnil(L, -1)) {
        struct nl_addr *mac = check_mac(L, -1, idx, "peer.mac");
        rtnl_link_set_addr(peer, mac);
        nl_addr_put(mac);
    }
    lua_pop(L, 5);
    out->name = peer_name; /* owned by the peer table, alive in the option table */
    out->ns = peer_ns;
    return link;
}

/* Sets the group of the veth peer `p` by a request on a socket in the peer's namespace. On failure the pair is
 * deleted again (through the peer) and the error is left in nl. */
static int set_peer_group(struct lunas_netlink *nl, const struct veth_peer *p) {
    struct lunas_netlink tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.netns_fd = -1;
    struct lunas_netlink *on = nl;
    int r = 0;
    if (p->ns >= 0) {
        int saved;
        if (lunas_netns_enter(p->ns, &saved) < 0) {
            nl->err = errno;
            return -NLE_FAILURE;
        }
        r = connect_socket(&tmp);
        lunas_netns_leave(saved);
        on = &tmp;
    }
    struct rtnl_link *orig = NULL, *change = NULL;
    if (r == 0) r = rtnl_link_get_kernel(on->sock, 0, p->name, &orig);
    if (r == 0) r = (change = rtnl_link_alloc()) ? 0 : -NLE_NOMEM;
    if (r == 0) {
        rtnl_link_set_group(change, p->group);
        r = rtnl_link_change(on->sock, orig, change, 0);
    }
    if (r < 0 && on == &tmp) {
        nl->err = tmp.err;
        memcpy(nl->ext_ack, tmp.ext_ack, sizeof nl->ext_ack);
    }
    if (r < 0 && orig) (void)rtnl_link_delete(on->sock, orig);
    if (orig) rtnl_link_put(orig);
    if (change) rtnl_link_put(change);
    if (tmp.sock) nl_socket_free(tmp.sock);
    return r;
}

/* macvlan and macvtap: each through its own allocator and setters. libnl's macvlan setters assert that the
 * link is a macvlan and abort the process on a macvtap. */
static struct rtnl_link *build_macvlan(lua_State *L, int idx, struct nl_guard *g, const char *kind) {
    int tap = strcmp(kind, "macvtap") == 0;
    const char *mode = lunas_opt_string(L, idx, "mode", NULL);
    int m = -1;
    if (mode) {
        m = tap ? rtnl_link_macvtap_str2mode(mode) : rtnl_link_macvlan_str2mode(mode);
        if (m < 0)
            lunas_field_error(L, idx, "mode", "unknown %s mode '%s' (private, vepa, bridge, passthru, source)", kind, mode);
    }
    struct rtnl_link *link = nl_guard_add(L, g, tap ? rtnl_link_macvtap_alloc() : rtnl_link_macvlan_alloc(), GUARD_OBJECT);
    if (m >= 0) {
        if (tap) rtnl_link_macvtap_set_mode(link, (uint32_t)m);
        else rtnl_link_macvlan_set_mode(link, (uint32_t)m);
    }
    return link;
}

static struct rtnl_link *build_vxlan(lua_State *L, int idx, struct nl_guard *g) {
    if (lunas_opt_field(L, idx, "id", LUA_TNUMBER) == LUA_TNIL) lunas_field_error(L, idx, "id", "a vxlan needs an id (VNI)");
    uint32_t vni = (uint32_t)lunas_check_range(L, -1, idx, "id", 0, 0xffffff);
    lua_pop(L, 1);
    struct nl_addr *remote = NULL, *local = NULL;
    if (lunas_opt_field(L, idx, "remote", LUA_TSTRING) != LUA_TNIL)
        remote = nl_guard_add(L, g, lunas_check_prefix(L, -1, idx, "remote", 0, 0, 0), GUARD_ADDR);
    lua_pop(L, 1);
    if (lunas_opt_field(L, idx, "src", LUA_TSTRING) != LUA_TNIL) {
        local = lunas_check_prefix(L, -1, idx, "src", 0, 0, remote ? nl_addr_get_family(remote) : 0);
        nl_guard_add(L, g, local, GUARD_ADDR);
    }
    lua_pop(L, 1);
    lua_Integer port = lunas_opt_integer(L, idx, "port", 4789, 1, 65535);
    int learning = lunas_opt_boolean(L, idx, "learning", 1);
    struct rtnl_link *link = nl_guard_add(L, g, rtnl_link_vxlan_alloc(), GUARD_OBJECT);
    rtnl_link_vxlan_set_id(link, vni);
    rtnl_link_vxlan_set_port(link, (uint32_t)port);
    rtnl_link_vxlan_set_learning(link, (uint8_t)learning);
    if (remote) rtnl_link_vxlan_set_group(link, remote);
    if (local) rtnl_link_vxlan_set_local(link, local);
    return link;
}

static struct rtnl_link *build_vlan(lua_State *L, int idx, struct nl_guard *g) {
    if (lunas_opt_field(L, idx, "id", LUA_TNUMBER) == LUA_TNIL) lunas_field_error(L, idx, "id", "a vlan needs an id");
    uint16_t id = (uint16_t)lunas_check_range(L, -1, idx, "id", 1, 4094);
    lua_pop(L, 1);
    struct rtnl_link *link = nl_guard_add(L, g, rtnl_link_vlan_alloc(), GUARD_OBJECT);
    rtnl_link_vlan_set_id(link, id);
    return link;
}

/* Kind names go into IFLA_INFO_KIND as they are: keep them to what a kernel module name can be. */
static const char *check_kind(lua_State *L, int idx) {
    lua_getfield(L, idx, "kind");
    if (lua_type(L, -1) != LUA_TSTRING) lunas_field_error(L, idx, "kind", "link kind expected (veth, bridge, ...)");
    const char *kind = lua_tostring(L, -1);
    size_t len = strlen(kind);
    if (len == 0 || len > 32 || strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789_-") != len)
        lunas_field_error(L, idx, "kind", "bad link kind '%s'", kind);
    lua_pop(L, 1); /* the string stays alive in the option table */
    return kind;
}

static const char *const link_add_options[] = {"name", "kind", "mtu", "mac", "up", "master", "group", "txqlen",
                                               "netns", "peer", "link", "mode", "id", "remote", "src", "port",
                                               "learning", "owner", "owner_group", "persist", "packet_info",
                                               "multi_queue", NULL};

static int create_tun(lua_State *L, struct lunas_netlink *nl, int idx, const char *name, const char *kind);

/* The parent link (macvlan, macvtap, vlan, vxlan): link = name | index, in nl's namespace. macvlan, macvtap and
 * vlan take it as IFLA_LINK; a vxlan reads only its own IFLA_VXLAN_LINK (ip's "dev") and ignores IFLA_LINK. */
static int apply_parent_link(lua_State *L, struct lunas_netlink *nl, int idx, struct rtnl_link *link, const char *kind) {
    int required = strcmp(kind, "macvlan") == 0 || strcmp(kind, "macvtap") == 0 || strcmp(kind, "vlan") == 0;
    lua_getfield(L, idx, "link");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (required) lunas_field_error(L, idx, "link", "this kind needs a parent link");
        return 0;
    }
    char label[IFNAMSIZ + 16];
    int parent = lunas_netlink_ifindex(L, nl, -1, idx, "link", label, sizeof label);
    lua_pop(L, 1);
    if (parent < 0) return lunas_netlink_error(L, nl, parent, "link add: parent", label);
    if (strcmp(kind, "vxlan") == 0) rtnl_link_vxlan_set_link(link, (uint32_t)parent);
    else rtnl_link_set_link(link, parent);
    return 0;
}

/* Options that only some kinds take: refuse them elsewhere rather than ignore them. */
static void refuse_options(lua_State *L, int idx, const char *kind, const char *const names[]) {
    for (int i = 0; names[i]; i++) {
        lua_getfield(L, idx, names[i]);
        if (!lua_isnil(L, -1)) lunas_field_error(L, idx, names[i], "not an option of a %s link", kind);
        lua_pop(L, 1);
    }
}

static const char *const kind_specific[] = {"peer", "link", "mode", "id", "remote", "src", "port", "learning",
                                            "owner", "owner_group", "persist", "packet_info", "multi_queue", NULL};

/* Refuses the kind-specific options that `kind` does not take. */
static void check_kind_options(lua_State *L, int idx, const char *kind) {
    static const struct {
        const char *kind;
        const char *takes;
    } table[] = {
        {"veth", " peer "},
        {"macvlan", " link mode "},
        {"macvtap", " link mode "},
        {"vlan", " link id "},
        {"vxlan", " link id remote src port learning "},
        {"tun", " owner owner_group persist packet_info multi_queue "},
        {"tap", " owner owner_group persist packet_info multi_queue "},
        {NULL, ""},
    };
    const char *takes = "";
    for (int i = 0; table[i].kind; i++)
        if (strcmp(table[i].kind, kind) == 0) takes = table[i].takes;
    const char *refused[sizeof kind_specific / sizeof kind_specific[0]];
    int n = 0;
    for (int i = 0; kind_specific[i]; i++) {
        char word[32];
        snprintf(word, sizeof word, " %s ", kind_specific[i]);
        if (!strstr(takes, word)) refused[n++] = kind_specific[i];
    }
    refused[n] = NULL;
    refuse_options(L, idx, kind, refused);
}

/* The link (and the addresses it was built from) go into the guard g. */
static struct rtnl_link *build_link(lua_State *L, struct lunas_netlink *nl, int idx, const char *kind,
                                    struct owned_fds *owned, struct nl_guard *g, struct veth_peer *peer) {
    if (strcmp(kind, "veth") == 0) return build_veth(L, idx, owned, g, peer);
    if (strcmp(kind, "bridge") == 0) return nl_guard_add(L, g, rtnl_link_bridge_alloc(), GUARD_OBJECT);
    if (strcmp(kind, "macvlan") == 0 || strcmp(kind, "macvtap") == 0) return build_macvlan(L, idx, g, kind);
    if (strcmp(kind, "vxlan") == 0) return build_vxlan(L, idx, g);
    if (strcmp(kind, "vlan") == 0) return build_vlan(L, idx, g);
    /* Any other kind by name: the kernel says whether it knows it ("Unknown device type"). */
    struct rtnl_link *link = nl_guard_add(L, g, rtnl_link_alloc(), GUARD_OBJECT);
    int r = rtnl_link_set_type(link, kind);
    if (r < 0) {
        lunas_netlink_error(L, nl, r, "link add: kind", kind);
        return NULL;
    }
    return link;
}

/***
Creates a link in the handle's namespace (or directly in `netns`). An option of another kind raises.
@function netlink:link_add
@tparam table opts
@tparam string opts.name 1 to 15 bytes, no '/', ':' or white space
@tparam string opts.kind "veth", "bridge", "macvlan", "macvtap", "vlan", "vxlan", "tun", "tap", or any other kind
  the kernel knows by name ("dummy", "ifb", ...)
@tparam[opt] integer opts.mtu 68 to 65535
@tparam[opt] string opts.mac "aa:bb:cc:dd:ee:ff"
@tparam[opt] boolean opts.up
@tparam[opt] string|integer opts.master a bridge to join
@tparam[opt] integer opts.group the link group (see `link_del_group`)
@tparam[opt] integer opts.txqlen
@tparam[opt] ns|string opts.netns create the link there (not for tun and tap)
@tparam[opt] table opts.peer veth: the other end, `{name = (required), netns, mac, mtu, group, txqlen}`. It
  cannot be brought up in the same request: do that through a handle in its namespace.
@tparam[opt] string|integer opts.link macvlan, macvtap, vlan (required), vxlan: the parent link
@tparam[opt] string opts.mode macvlan, macvtap: "private", "vepa", "bridge", "passthru" or "source"
@tparam[opt] integer opts.id vlan: 1 to 4094; vxlan: the VNI, 0 to 16777215 (required for both)
@tparam[opt] string opts.remote vxlan: the remote (or multicast group) address
@tparam[opt] string opts.src vxlan: the local address
@tparam[opt=4789] integer opts.port vxlan: the UDP port
@tparam[opt=true] boolean opts.learning vxlan: learn remote addresses
@tparam[opt] integer opts.owner tun, tap: the uid that may use it
@tparam[opt] integer opts.owner_group tun, tap: the gid that may use it
@tparam[opt=true] boolean opts.persist tun, tap: keep the device after the descriptor closes; false returns the
  descriptor, and the device lives as long as it
@tparam[opt=false] boolean opts.packet_info tun, tap: keep the packet information header (IFF_NO_PI otherwise)
@tparam[opt=false] boolean opts.multi_queue tun, tap: IFF_MULTI_QUEUE
@treturn boolean|fd true; the device's descriptor for a tun or tap with persist = false
@error "link add NAME in NETNS (kernel text): message", "ENAME" ("EEXIST" for a name in use)
*/
static int netlink_link_add(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    lunas_check_options(L, 2, link_add_options);
    lua_getfield(L, 2, "name");
    const char *name = lunas_check_ifname(L, -1, 2, "name");
    lua_pop(L, 1);
    const char *kind = check_kind(L, 2);
    check_kind_options(L, 2, kind);
    if (strcmp(kind, "tun") == 0 || strcmp(kind, "tap") == 0) return create_tun(L, nl, 2, name, kind);
    struct owned_fds owned;
    owned_init(L, &owned);
    char what[64];
    int link_ns = link_netns_option(L, 2, 2, "netns", &owned, what, sizeof what);
    if (link_ns == -2) return lunas_push_error(L, errno, "link add: namespace", what);
    struct nl_guard *g = nl_guard_new(L);
    int top = lua_gettop(L);
    struct veth_peer peer = {NULL, -1, 0, 0};
    struct rtnl_link *link = build_link(L, nl, 2, kind, &owned, g, &peer);
    if (!link) {
        nl_guard_release(g);
        close_owned(&owned);
        return 3;
    }
    lua_settop(L, top);
    rtnl_link_set_name(link, name);
    if (link_ns >= 0) rtnl_link_set_ns_fd(link, link_ns);
    int r = apply_common_link_options(L, nl, 2, link);
    if (r == 0) r = apply_parent_link(L, nl, 2, link, kind);
    if (r) {
        nl_guard_release(g);
        close_owned(&owned);
        return r;
    }
    int err = rtnl_link_add(nl->sock, link, NLM_F_CREATE | NLM_F_EXCL);
    nl_guard_release(g);
    if (err >= 0 && peer.has_group) {
        err = set_peer_group(nl, &peer);
        if (err < 0) {
            close_owned(&owned);
            return lunas_netlink_error(L, nl, err, "link add: peer group of", name);
        }
    }
    close_owned(&owned);
    if (err < 0) return lunas_netlink_error(L, nl, err, "link add", name);
    lua_pushboolean(L, 1);
    return 1;
}

/* tun/tap devices are made by ioctl on /dev/net/tun, in the namespace of whoever opens it: enter the handle's
 * namespace to open it. persist (default true) keeps the device after the descriptor closes; with
 * persist = false the descriptor is returned and the device lives as long as it. */
static int create_tun(lua_State *L, struct lunas_netlink *nl, int idx, const char *name, const char *kind) {
    lua_getfield(L, idx, "netns");
    if (!lua_isnil(L, -1)) lunas_field_error(L, idx, "netns", "a tun/tap is made in the handle's namespace");
    lua_pop(L, 1);
    int persist = lunas_opt_boolean(L, idx, "persist", 1);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    ifr.ifr_flags = (short)((strcmp(kind, "tap") == 0 ? IFF_TAP : IFF_TUN) |
                            (lunas_opt_boolean(L, idx, "packet_info", 0) ? 0 : IFF_NO_PI) |
                            (lunas_opt_boolean(L, idx, "multi_queue", 0) ? IFF_MULTI_QUEUE : 0));
    lua_Integer owner = lunas_opt_integer(L, idx, "owner", -1, 0, UINT32_MAX - 1);
    lua_Integer group = lunas_opt_integer(L, idx, "owner_group", -1, 0, UINT32_MAX - 1);
    /* The common options are read (and a master looked up) before the device exists: a bad one must not leave a
     * persistent device behind. */
    struct rtnl_link *change = NULL;
    struct nl_guard *g = nl_guard_new(L);
    if (has_common_link_options(L, idx)) {
        change = nl_guard_add(L, g, rtnl_link_alloc(), GUARD_OBJECT);
        int pushed = apply_common_link_options(L, nl, idx, change);
        if (pushed) {
            nl_guard_release(g);
            return pushed;
        }
    }
    /* TUNSETIFF attaches to an existing tun/tap of that name instead of failing: link_add makes links, so a
     * name in use is EEXIST as for every other kind (and a descriptor from persist = false would not own the
     * device's life). */
    struct rtnl_link *existing = NULL;
    if (rtnl_link_get_kernel(nl->sock, 0, name, &existing) == 0) {
        rtnl_link_put(existing);
        nl_guard_release(g);
        return netlink_errno(L, nl, EEXIST, "link add", name);
    }
    nl->err = 0; /* the lookup's ENODEV */
    nl->ext_ack[0] = '\0';
    struct lunas_fd *fdobj = persist ? NULL : lunas_new_fd(L, -1);
    int saved, fd = -1, err;
    const char *failed = "link add: setns";
    if (lunas_netns_enter(nl->netns_fd, &saved) < 0) {
        err = errno;
    } else {
        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        err = errno;
        failed = "link add: open /dev/net/tun for";
        lunas_netns_leave(saved);
    }
    if (fd < 0) {
        nl_guard_release(g);
        return netlink_errno(L, nl, err, failed, name);
    }
    const char *step = "TUNSETIFF";
    int r = ioctl(fd, TUNSETIFF, &ifr);
    if (r == 0 && owner >= 0) r = ioctl(fd, TUNSETOWNER, (unsigned long)owner), step = "TUNSETOWNER";
    if (r == 0 && group >= 0) r = ioctl(fd, TUNSETGROUP, (unsigned long)group), step = "TUNSETGROUP";
    if (r == 0 && persist) r = ioctl(fd, TUNSETPERSIST, 1UL), step = "TUNSETPERSIST";
    if (r < 0) {
        err = errno;
        close(fd);
        nl_guard_release(g);
        char op[64];
        snprintf(op, sizeof op, "link add (%s)", step);
        return netlink_errno(L, nl, err, op, name);
    }
    if (change) r = change_link_by_name(L, nl, change, name);
    nl_guard_release(g);
    if (r) {
        if (persist) (void)ioctl(fd, TUNSETPERSIST, 0UL);
        close(fd);
        return r;
    }
    if (persist) {
        close(fd);
        lua_pushboolean(L, 1);
        return 1;
    }
    fdobj->fd = fd;
    return 1;
}

static const char *const link_set_options[] = {"up", "mtu", "mac", "name", "master", "nomaster", "group",
                                               "netns", "txqlen", NULL};

/***
Changes a link.
@function netlink:link_set
@tparam string|integer link
@tparam table opts
@tparam[opt] boolean opts.up
@tparam[opt] integer opts.mtu
@tparam[opt] string opts.mac
@tparam[opt] string opts.name a new name
@tparam[opt] string|integer opts.master a bridge to join
@tparam[opt] boolean opts.nomaster true: leave the bridge (conflicts with master)
@tparam[opt] integer opts.group
@tparam[opt] integer opts.txqlen
@tparam[opt] ns|string opts.netns move the link into that namespace
@treturn boolean true
@error "link set NAME in NETNS: message", "ENAME"
*/
static int netlink_link_set(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    lunas_check_options(L, 3, link_set_options);
    char label[IFNAMSIZ + 16];
    int index = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
    if (index < 0) return lunas_netlink_error(L, nl, index, "link set", label);
    struct owned_fds owned;
    owned_init(L, &owned);
    char what[64];
    int ns = link_netns_option(L, 3, 3, "netns", &owned, what, sizeof what);
    if (ns == -2) return lunas_push_error(L, errno, "link set: namespace", what);
    struct nl_guard *g = nl_guard_new(L);
    struct rtnl_link *orig = nl_guard_add(L, g, rtnl_link_alloc(), GUARD_OBJECT);
    struct rtnl_link *change = nl_guard_add(L, g, rtnl_link_alloc(), GUARD_OBJECT);
    rtnl_link_set_ifindex(orig, index);
    int r = apply_common_link_options(L, nl, 3, change);
    if (r == 0) {
        if (lunas_opt_boolean(L, 3, "nomaster", 0)) {
            lua_getfield(L, 3, "master");
            if (!lua_isnil(L, -1)) lunas_field_error(L, 3, "nomaster", "conflicts with master");
            lua_pop(L, 1);
            rtnl_link_set_master(change, 0);
        }
        lua_getfield(L, 3, "name");
        if (!lua_isnil(L, -1)) rtnl_link_set_name(change, lunas_check_ifname(L, -1, 3, "name"));
        lua_pop(L, 1);
        if (ns >= 0) rtnl_link_set_ns_fd(change, ns);
        int nr = rtnl_link_change(nl->sock, orig, change, 0);
        if (nr < 0) r = lunas_netlink_error(L, nl, nr, "link set", label);
    }
    nl_guard_release(g);
    close_owned(&owned);
    if (r) return r;
    lua_pushboolean(L, 1);
    return 1;
}

/***
Deletes a link; a veth takes its peer along, wherever it is.
@function netlink:link_del
@tparam string|integer link
@treturn boolean true
@error "link delete NAME in NETNS: message", "ENAME"
*/
static int netlink_link_del(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    char label[IFNAMSIZ + 16];
    int index = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
    if (index < 0) return lunas_netlink_error(L, nl, index, "link delete", label);
    struct rtnl_link *link = rtnl_link_alloc();
    if (!link) luaL_error(L, "out of memory");
    rtnl_link_set_ifindex(link, index);
    int r = rtnl_link_delete(nl->sock, link);
    rtnl_link_put(link);
    if (r < 0) return lunas_netlink_error(L, nl, r, "link delete", label);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Deletes every link of a group with one request: the kernel unregisters them in one batch, much faster than one
request per link (a veth takes its peer along, in whatever namespace). Group 0, every link's default, raises.
@function netlink:link_del_group
@tparam integer group 1 or more
@treturn boolean true
@error "link delete group N in NETNS: message", "ENAME" ("ENODEV" when no link is in the group)
*/
static int netlink_link_del_group(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    uint32_t group = (uint32_t)lunas_check_range(L, 2, 2, "group", 1, UINT32_MAX);
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_DELLINK, 0);
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    if (!msg || nlmsg_append(msg, &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 || nla_put_u32(msg, IFLA_GROUP, group) < 0) {
        nlmsg_free(msg);
        return luaL_error(L, "out of memory");
    }
    int r = nl_send_sync(nl->sock, msg); /* frees msg */
    char label[32];
    snprintf(label, sizeof label, "group %u", group);
    if (r < 0) return lunas_netlink_error(L, nl, r, "link delete", label);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- addresses ---------------------------------------------------------- */

static const char *const addr_options[] = {"peer", "broadcast", "label", "nodad", "replace", "noprefixroute", NULL};

static int netlink_addr_change(lua_State *L, int add) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    char label[IFNAMSIZ + 16];
    if (!lua_isnoneornil(L, 4)) lunas_check_options(L, 4, addr_options);
    lua_settop(L, 4); /* the guard goes above the optional table */
    struct nl_guard *g = nl_guard_new(L);
    struct nl_addr *local = nl_guard_add(L, g, lunas_check_prefix(L, 3, 3, "address", 1, 0, 0), GUARD_ADDR);
    lua_Integer family = nl_addr_get_family(local);
    struct rtnl_addr *a = nl_guard_add(L, g, rtnl_addr_alloc(), GUARD_OBJECT);
    rtnl_addr_set_local(a, local);
    int flags = 0;
    if (!lua_isnoneornil(L, 4)) {
        unsigned int ifa_flags = 0;
        if (lunas_opt_boolean(L, 4, "nodad", 0)) ifa_flags |= IFA_F_NODAD;
        if (lunas_opt_boolean(L, 4, "noprefixroute", 0)) ifa_flags |= IFA_F_NOPREFIXROUTE;
        if (ifa_flags) rtnl_addr_set_flags(a, ifa_flags);
        if (lunas_opt_boolean(L, 4, "replace", 0)) flags |= NLM_F_REPLACE;
        static const char *const addr_fields[] = {"peer", "broadcast"};
        for (int i = 0; i < 2; i++) {
            if (lunas_opt_field(L, 4, addr_fields[i], LUA_TSTRING) != LUA_TNIL) {
                struct nl_addr *x = lunas_check_prefix(L, -1, 4, addr_fields[i], i == 0, 0, (int)family);
                if (i == 0) rtnl_addr_set_peer(a, x);
                else rtnl_addr_set_broadcast(a, x);
                nl_addr_put(x);
            }
            lua_pop(L, 1);
        }
        const char *name = lunas_opt_string(L, 4, "label", NULL);
        if (name && (strlen(name) >= IFNAMSIZ || strlen(name) == 0)) {
            nl_guard_release(g);
            return lunas_field_error(L, 4, "label", "1-%d bytes expected", IFNAMSIZ - 1);
        }
        if (name) rtnl_addr_set_label(a, name);
    }
    int index = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
    if (index < 0) {
        nl_guard_release(g);
        return lunas_netlink_error(L, nl, index, add ? "address add" : "address delete", label);
    }
    rtnl_addr_set_ifindex(a, index);
    int r = add ? rtnl_addr_add(nl->sock, a, flags ? flags : NLM_F_EXCL) : rtnl_addr_delete(nl->sock, a, 0);
    nl_guard_release(g);
    if (r < 0) {
        char target[IFNAMSIZ + 80];
        snprintf(target, sizeof target, "%s on %s", lua_tostring(L, 3), label);
        return lunas_netlink_error(L, nl, r, add ? "address add" : "address delete", target);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Adds an address to a link.
@function netlink:addr_add
@tparam string|integer link
@tparam string address "10.0.0.1/24" or "fd00::1/64"; a bare address has the full-length prefix
@tparam[opt] table opts
@tparam[opt] string opts.peer the other end of a point-to-point link (with a prefix)
@tparam[opt] string opts.broadcast
@tparam[opt] string opts.label 1 to 15 bytes ("eth0:1")
@tparam[opt=false] boolean opts.nodad IPv6: no duplicate address detection, usable at once
@tparam[opt=false] boolean opts.noprefixroute no route for the prefix
@tparam[opt=false] boolean opts.replace replace an existing address instead of failing with EEXIST
@treturn boolean true
@error "address add ADDRESS on LINK in NETNS: message", "ENAME"
*/
static int netlink_addr_add(lua_State *L) { return netlink_addr_change(L, 1); }
/***
Removes an address from a link (the options of `addr_add` are accepted).
@function netlink:addr_del
@tparam string|integer link
@tparam string address
@tparam[opt] table opts
@treturn boolean true
@error "address delete ADDRESS on LINK in NETNS: message", "ENAME"
*/
static int netlink_addr_del(lua_State *L) { return netlink_addr_change(L, 0); }

static const char *family_name(int family) {
    return family == AF_INET ? "inet" : family == AF_INET6 ? "inet6" : family == AF_BRIDGE ? "bridge" : "other";
}

/***
The addresses of the namespace, or of one link.
@function netlink:addr_list
@tparam[opt] string|integer link
@treturn table an array of `{link (name), index, family = "inet" | "inet6", address = "10.0.0.1/24", scope,
  label}`
@error "address list in NETNS: message", "ENAME"
*/
static int netlink_addr_list(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    int only = 0;
    char label[IFNAMSIZ + 16];
    if (!lua_isnoneornil(L, 2)) {
        only = lunas_netlink_ifindex(L, nl, 2, 2, "link", label, sizeof label);
        if (only < 0) return lunas_netlink_error(L, nl, only, "address list", label);
    }
    struct nl_cache *addrs, *links;
    if (lunas_netlink_with_links(L, nl, rtnl_addr_alloc_cache(nl->sock, &addrs), addrs, "address list", &links)) return 3;
    lua_newtable(L);
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        int index = rtnl_addr_get_ifindex(a);
        if (only && index != only) continue;
        char buf[INET6_ADDRSTRLEN + 8];
        lua_createtable(L, 0, 6);
        set_integer(L, "index", index);
        if (rtnl_link_i2name(links, index, buf, sizeof buf)) set_string(L, "link", buf);
        set_string(L, "family", family_name(rtnl_addr_get_family(a)));
        if (rtnl_addr_get_local(a)) {
            lunas_format_prefix(rtnl_addr_get_local(a), 0, buf, sizeof buf);
            lua_pushfstring(L, "%s/%d", buf, rtnl_addr_get_prefixlen(a));
            lua_setfield(L, -2, "address");
        }
        set_string(L, "scope", rtnl_scope2str(rtnl_addr_get_scope(a), buf, sizeof buf));
        set_string(L, "label", rtnl_addr_get_label(a));
        lua_rawseti(L, -2, ++n);
    }
    nl_cache_free(addrs);
    nl_cache_free(links);
    return 1;
}

/* ---- routes ------------------------------------------------------------- */

static const char *const route_options[] = {"dst", "via", "dev", "table", "metric", "src", "type", "scope",
                                            "protocol", "onlink", "replace", "family", NULL};

static const struct lunas_flag route_types[] = {
    {"unicast", RTN_UNICAST}, {"local", RTN_LOCAL},         {"blackhole", RTN_BLACKHOLE},
    {"unreachable", RTN_UNREACHABLE}, {"prohibit", RTN_PROHIBIT}, {"throw", RTN_THROW}, {NULL, 0},
};
static const struct lunas_flag route_scopes[] = {
    {"universe", RT_SCOPE_UNIVERSE}, {"global", RT_SCOPE_UNIVERSE}, {"site", RT_SCOPE_SITE},
    {"link", RT_SCOPE_LINK},         {"host", RT_SCOPE_HOST},       {NULL, 0},
};
static const struct lunas_flag address_families[] = {{"inet", AF_INET}, {"inet6", AF_INET6}, {NULL, 0}};

/* The family of a route: from family=, else dst (unless "default"), else via, else src; IPv4 by default. */
static int route_family(lua_State *L, int idx) {
    const char *family = lunas_opt_string(L, idx, "family", NULL);
    if (family) return (int)lunas_check_flag_name(L, idx, family, address_families, "family");
    static const char *const fields[] = {"dst", "via", "src"};
    for (int i = 0; i < 3; i++) {
        const char *text = lunas_opt_string(L, idx, fields[i], NULL);
        if (text && strcmp(text, "default") != 0) return strchr(text, ':') ? AF_INET6 : AF_INET;
    }
    return AF_INET;
}

/* Builds a route from {dst=, via=, dev=, table=, metric=, src=, type=, scope=, protocol=, onlink=}. Raises on
 * misuse; returns NULL after pushing an error when dev does not exist. */
static struct rtnl_route *build_route(lua_State *L, struct lunas_netlink *nl, int idx, int for_delete,
                                      struct nl_guard *g) {
    lunas_check_options(L, idx, route_options);
    int family = route_family(L, idx);
    lua_getfield(L, idx, "dst");
    if (lua_isnil(L, -1)) lunas_field_error(L, idx, "dst", "destination expected (\"default\" or a prefix)");
    struct nl_addr *dst = nl_guard_add(L, g, lunas_check_prefix(L, -1, idx, "dst", 1, 1, family), GUARD_ADDR);
    lua_pop(L, 1);
    struct rtnl_route *route = nl_guard_add(L, g, rtnl_route_alloc(), GUARD_OBJECT);
    rtnl_route_set_family(route, (uint8_t)family);
    rtnl_route_set_dst(route, dst);
    rtnl_route_set_table(route, (uint32_t)lunas_opt_integer(L, idx, "table", RT_TABLE_MAIN, 1, UINT32_MAX));
    lua_Integer metric = lunas_opt_integer(L, idx, "metric", -1, 0, UINT32_MAX);
    if (metric >= 0) rtnl_route_set_priority(route, (uint32_t)metric);
    const char *type = lunas_opt_string(L, idx, "type", NULL);
    int rtype = type ? (int)lunas_check_flag_name(L, idx, type, route_types, "type") : RTN_UNICAST;
    const char *scope = lunas_opt_string(L, idx, "scope", NULL);
    /* A delete matches what it is given, as ip route del: no type is any type, no scope any scope. Left unset,
     * libnl would send unicast and a scope guessed from the nexthop (link without via), and the kernel would
     * not find a gateway route by its destination alone. */
    rtnl_route_set_type(route, (uint8_t)(for_delete && !type ? RTN_UNSPEC : rtype));
    if (scope) rtnl_route_set_scope(route, (uint8_t)lunas_check_flag_name(L, idx, scope, route_scopes, "scope"));
    else if (for_delete) rtnl_route_set_scope(route, RT_SCOPE_NOWHERE);
    if (!for_delete)
        rtnl_route_set_protocol(route, (uint8_t)lunas_opt_integer(L, idx, "protocol", RTPROT_STATIC, 0, 255));
    if (lunas_opt_field(L, idx, "src", LUA_TSTRING) != LUA_TNIL) {
        struct nl_addr *src = lunas_check_prefix(L, -1, idx, "src", 0, 0, family);
        rtnl_route_set_pref_src(route, src);
        nl_addr_put(src);
    }
    lua_pop(L, 1);
    struct nl_addr *via = NULL;
    if (lunas_opt_field(L, idx, "via", LUA_TSTRING) != LUA_TNIL)
        via = nl_guard_add(L, g, lunas_check_prefix(L, -1, idx, "via", 0, 0, family), GUARD_ADDR);
    lua_pop(L, 1);
    int index = 0;
    lua_getfield(L, idx, "dev");
    if (!lua_isnil(L, -1)) {
        char label[IFNAMSIZ + 16];
        index = lunas_netlink_ifindex(L, nl, -1, idx, "dev", label, sizeof label);
        if (index < 0) {
            lua_pop(L, 1);
            lunas_netlink_error(L, nl, index, "route: dev", label);
            return NULL;
        }
    }
    lua_pop(L, 1);
    if (rtype == RTN_UNICAST && !via && !index && !for_delete) {
        nl_guard_release(g);
        lunas_field_error(L, idx, "via", "a unicast route needs via or dev");
    }
    int onlink = lunas_opt_boolean(L, idx, "onlink", 0);
    if (via || index) {
        struct rtnl_nexthop *nh = rtnl_route_nh_alloc(); /* the route owns it once added: no raise in between */
        if (!nh) luaL_error(L, "out of memory");
        if (index) rtnl_route_nh_set_ifindex(nh, index);
        if (via) rtnl_route_nh_set_gateway(nh, via);
        if (onlink) rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
        rtnl_route_add_nexthop(route, nh);
    }
    return route;
}

static int netlink_route_change(lua_State *L, int add) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    struct nl_guard *g = nl_guard_new(L);
    struct rtnl_route *route = build_route(L, nl, 2, !add, g);
    if (!route) {
        nl_guard_release(g);
        return 3;
    }
    int flags = lunas_opt_boolean(L, 2, "replace", 0) ? NLM_F_REPLACE : NLM_F_EXCL;
    int r = add ? rtnl_route_add(nl->sock, route, flags) : rtnl_route_delete(nl->sock, route, 0);
    nl_guard_release(g);
    if (r < 0) {
        lua_getfield(L, 2, "dst");
        return lunas_netlink_error(L, nl, r, add ? "route add" : "route delete", lua_tostring(L, -1));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Adds a route.
@function netlink:route_add
@tparam table opts
@tparam string opts.dst "default" or a prefix ("10.1.0.0/16")
@tparam[opt] string opts.via the gateway
@tparam[opt] string|integer opts.dev the outgoing link (a unicast route needs via or dev)
@tparam[opt=254] integer opts.table (254: main)
@tparam[opt] integer opts.metric
@tparam[opt] string opts.src the preferred source address
@tparam[opt="unicast"] string opts.type "unicast", "local", "blackhole", "unreachable", "prohibit" or "throw"
@tparam[opt] string opts.scope "universe" (or "global"), "site", "link" or "host"
@tparam[opt=4] integer opts.protocol (4: static)
@tparam[opt=false] boolean opts.onlink the gateway is on the link even without a matching prefix
@tparam[opt=false] boolean opts.replace replace an existing route instead of failing with EEXIST
@tparam[opt] string opts.family "inet" or "inet6"; by default the family of dst, else via, else src, else inet
@treturn boolean true
@error "route add DST in NETNS: message", "ENAME"
*/
static int netlink_route_add(lua_State *L) { return netlink_route_change(L, 1); }
/***
Deletes a route, selected by the fields of `route_add`; as with `ip route del`, a type or scope left out
matches any.
@function netlink:route_del
@tparam table opts
@treturn boolean true
@error "route delete DST in NETNS: message", "ENAME"
*/
static int netlink_route_del(lua_State *L) { return netlink_route_change(L, 0); }

static const char *flag_name(const struct lunas_flag *names, uint64_t value) {
    for (const struct lunas_flag *f = names; f->name; f++)
        if (f->value == value) return f->name;
    return NULL;
}

static void push_route(lua_State *L, struct rtnl_route *route, struct nl_cache *links) {
    char buf[INET6_ADDRSTRLEN + 8];
    lua_createtable(L, 0, 8);
    set_string(L, "family", family_name(rtnl_route_get_family(route)));
    lunas_format_prefix(rtnl_route_get_dst(route), 1, buf, sizeof buf);
    set_string(L, "dst", buf);
    set_integer(L, "table", rtnl_route_get_table(route));
    set_integer(L, "metric", rtnl_route_get_priority(route));
    set_string(L, "type", flag_name(route_types, rtnl_route_get_type(route)));
    set_string(L, "scope", flag_name(route_scopes, rtnl_route_get_scope(route)));
    set_integer(L, "protocol", rtnl_route_get_protocol(route));
    if (rtnl_route_get_pref_src(route)) {
        lunas_format_prefix(rtnl_route_get_pref_src(route), 0, buf, sizeof buf);
        set_string(L, "src", buf);
    }
    if (rtnl_route_get_nnexthops(route) > 0) {
        struct rtnl_nexthop *nh = rtnl_route_nexthop_n(route, 0);
        if (rtnl_route_nh_get_gateway(nh)) {
            lunas_format_prefix(rtnl_route_nh_get_gateway(nh), 0, buf, sizeof buf);
            set_string(L, "via", buf);
        }
        int index = rtnl_route_nh_get_ifindex(nh);
        if (index > 0 && rtnl_link_i2name(links, index, buf, sizeof buf)) set_string(L, "dev", buf);
    }
}

/***
The routes of a table.
@function netlink:route_list
@tparam[opt] table opts
@tparam[opt] string opts.family "inet" or "inet6" (default: both)
@tparam[opt=254] integer opts.table 0: every table
@treturn table an array of `{family, dst = "default" | prefix, table, metric, type, scope, protocol, src, via,
  dev}`
@error "route list in NETNS: message", "ENAME"
*/
static int netlink_route_list(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    int family = AF_UNSPEC;
    uint32_t table = RT_TABLE_MAIN;
    if (!lua_isnoneornil(L, 2)) {
        static const char *const allowed[] = {"family", "table", NULL};
        lunas_check_options(L, 2, allowed);
        const char *f = lunas_opt_string(L, 2, "family", NULL);
        if (f) family = (int)lunas_check_flag_name(L, 2, f, address_families, "family");
        table = (uint32_t)lunas_opt_integer(L, 2, "table", RT_TABLE_MAIN, 0, UINT32_MAX);
    }
    struct nl_cache *routes, *links;
    if (lunas_netlink_with_links(L, nl, rtnl_route_alloc_cache(nl->sock, family, 0, &routes), routes, "route list", &links)) return 3;
    lua_newtable(L);
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
        struct rtnl_route *route = (struct rtnl_route *)o;
        if (table && rtnl_route_get_table(route) != table) continue;
        push_route(L, route, links);
        lua_rawseti(L, -2, ++n);
    }
    nl_cache_free(routes);
    nl_cache_free(links);
    return 1;
}

/* ---- neighbours ----------------------------------------------------------- */

static const struct lunas_flag neigh_states[] = {
    {"permanent", NUD_PERMANENT}, {"reachable", NUD_REACHABLE}, {"stale", NUD_STALE}, {"noarp", NUD_NOARP},
    {"delay", NUD_DELAY},         {"probe", NUD_PROBE},         {"failed", NUD_FAILED}, {"incomplete", NUD_INCOMPLETE},
    {"none", NUD_NONE},           {NULL, 0},
};

static int netlink_neigh_change(lua_State *L, int add) {
    static const char *const allowed[] = {"dev", "dst", "lladdr", "state", NULL};
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    lunas_check_options(L, 2, allowed);
    struct nl_guard *g = nl_guard_new(L);
    lua_getfield(L, 2, "dst");
    if (lua_isnil(L, -1)) lunas_field_error(L, 2, "dst", "neighbour address expected");
    struct nl_addr *dst = nl_guard_add(L, g, lunas_check_prefix(L, -1, 2, "dst", 0, 0, 0), GUARD_ADDR);
    const char *dst_text = lua_tostring(L, -1);
    lua_pop(L, 1);
    struct rtnl_neigh *neigh = nl_guard_add(L, g, rtnl_neigh_alloc(), GUARD_OBJECT);
    rtnl_neigh_set_dst(neigh, dst);
    if (lunas_opt_field(L, 2, "lladdr", LUA_TSTRING) != LUA_TNIL) {
        struct nl_addr *mac = check_mac(L, -1, 2, "lladdr");
        rtnl_neigh_set_lladdr(neigh, mac);
        nl_addr_put(mac);
    } else if (add) {
        nl_guard_release(g);
        lunas_field_error(L, 2, "lladdr", "hardware address expected");
    }
    lua_pop(L, 1);
    const char *state = lunas_opt_string(L, 2, "state", "permanent");
    rtnl_neigh_set_state(neigh, (int)lunas_check_flag_name(L, 2, state, neigh_states, "state"));
    lua_getfield(L, 2, "dev");
    if (lua_isnil(L, -1)) lunas_field_error(L, 2, "dev", "link expected");
    char label[IFNAMSIZ + 16];
    int index = lunas_netlink_ifindex(L, nl, -1, 2, "dev", label, sizeof label);
    lua_pop(L, 1);
    if (index < 0) {
        nl_guard_release(g);
        return lunas_netlink_error(L, nl, index, add ? "neighbour add" : "neighbour delete", label);
    }
    rtnl_neigh_set_ifindex(neigh, index);
    int r = add ? rtnl_neigh_add(nl->sock, neigh, NLM_F_CREATE | NLM_F_REPLACE) : rtnl_neigh_delete(nl->sock, neigh, 0);
    nl_guard_release(g);
    if (r < 0) {
        char target[IFNAMSIZ + 80];
        snprintf(target, sizeof target, "%s on %s", dst_text, label);
        return lunas_netlink_error(L, nl, r, add ? "neighbour add" : "neighbour delete", target);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/***
Adds a neighbour (ARP or NDP) entry, replacing an existing one.
@function netlink:neigh_add
@tparam table opts
@tparam string|integer opts.dev
@tparam string opts.dst the IPv4 or IPv6 address
@tparam string opts.lladdr the hardware address "aa:bb:cc:dd:ee:ff"
@tparam[opt="permanent"] string opts.state "permanent", "reachable", "stale", "noarp", "delay", "probe",
  "failed", "incomplete" or "none"
@treturn boolean true
@error "neighbour add DST on DEV in NETNS: message", "ENAME"
*/
static int netlink_neigh_add(lua_State *L) { return netlink_neigh_change(L, 1); }
/***
Deletes a neighbour entry.
@function netlink:neigh_del
@tparam table opts `{dev = link, dst = address}`
@treturn boolean true
@error "neighbour delete DST on DEV in NETNS: message", "ENAME"
*/
static int netlink_neigh_del(lua_State *L) { return netlink_neigh_change(L, 0); }

/***
The IPv4 and IPv6 neighbour entries of the namespace.
@function netlink:neigh_list
@treturn table an array of `{dev, dst, lladdr, state, family}`
@error "neighbour list in NETNS: message", "ENAME"
*/
static int netlink_neigh_list(lua_State *L) {
    struct lunas_netlink *nl = lunas_check_netlink(L, 1);
    struct nl_cache *neighs, *links;
    if (lunas_netlink_with_links(L, nl, rtnl_neigh_alloc_cache(nl->sock, &neighs), neighs, "neighbour list", &links)) return 3;
    lua_newtable(L);
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(neighs); o; o = nl_cache_get_next(o)) {
        struct rtnl_neigh *neigh = (struct rtnl_neigh *)o;
        int family = rtnl_neigh_get_family(neigh);
        if (family != AF_INET && family != AF_INET6) continue;
        char buf[INET6_ADDRSTRLEN + 8];
        lua_createtable(L, 0, 5);
        if (rtnl_link_i2name(links, rtnl_neigh_get_ifindex(neigh), buf, sizeof buf)) set_string(L, "dev", buf);
        if (rtnl_neigh_get_dst(neigh)) {
            lunas_format_prefix(rtnl_neigh_get_dst(neigh), 0, buf, sizeof buf);
            set_string(L, "dst", buf);
        }
        struct nl_addr *ll = rtnl_neigh_get_lladdr(neigh);
        if (ll && nl_addr_get_len(ll) > 0) set_string(L, "lladdr", nl_addr2str(ll, buf, sizeof buf));
        set_string(L, "state", flag_name(neigh_states, (uint64_t)rtnl_neigh_get_state(neigh)));
        set_string(L, "family", family_name(family));
        lua_rawseti(L, -2, ++n);
    }
    nl_cache_free(neighs);
    nl_cache_free(links);
    return 1;
}

/* ---- sysctl ------------------------------------------------------------- */

/* "net.ipv4.ip_forward" or "net/ipv4/conf/eth0.1/forwarding" (with slashes, dots are literal, as sysctl(8)):
 * only keys below net, no empty or dot-dot components. */
static void check_sysctl_key(lua_State *L, const char *key, size_t len, char *path, size_t size) {
    int slashes = strchr(key, '/') != NULL;
    if (strlen(key) != len) lunas_field_error(L, 2, "key", "sysctl key with a NUL byte");
    if (len == 0 || len > 200 || strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./@") != len)
        lunas_field_error(L, 2, "key", "bad sysctl key '%s'", key);
    int n = snprintf(path, size, "/proc/sys/%s", key);
    if (n < 0 || (size_t)n >= size) lunas_field_error(L, 2, "key", "sysctl key too long");
    if (!slashes)
        for (char *p = path + strlen("/proc/sys/"); *p; p++)
            if (*p == '.') *p = '/';
    const char *rel = path + strlen("/proc/sys/");
    if (strncmp(rel, "net/", 4) != 0) lunas_field_error(L, 2, "key", "'%s' is not a network sysctl (net.*)", key);
    for (const char *p = rel; *p;) {
        size_t part = strcspn(p, "/");
        if (part == 0 || (part == 1 && p[0] == '.') || (part == 2 && p[0] == '.' && p[1] == '.'))
            lunas_field_error(L, 2, "key", "bad sysctl key '%s'", key);
        p += part;
        if (*p) p++;
    }
}

/***
Network.
@section network
*/

/***
Reads or writes a network sysctl as seen inside a namespace. The files of /proc/sys/net belong to the
namespace of whoever opens them, so the file is opened from inside it.
@function sysctl
@tparam ns|string|nil netns as for `netlink`
@tparam string key "net.ipv4.ip_forward", or "net/ipv4/conf/eth0.1/forwarding" (with slashes, dots are
  literal, as sysctl(8) reads them); only keys below net
@tparam[opt] string|integer value the value to write
@treturn string|boolean the value (trailing white space removed) when reading; true when writing
@error "sysctl KEY in NETNS: message", "ENAME"
*/
static int net_sysctl(lua_State *L) {
    char what[64], path[256];
    int owned;
    size_t key_len;
    const char *key = luaL_checklstring(L, 2, &key_len);
    check_sysctl_key(L, key, key_len, path, sizeof path);
    const char *value = NULL;
    char number[32];
    if (lua_type(L, 3) == LUA_TNUMBER) {
        snprintf(number, sizeof number, "%lld", (long long)lunas_check_range(L, 3, 3, "value", INT64_MIN, INT64_MAX));
        value = number;
    } else if (!lua_isnoneornil(L, 3)) {
        size_t len;
        value = luaL_checklstring(L, 3, &len);
        if (strlen(value) != len || len > 1024) return lunas_field_error(L, 3, "value", "bad sysctl value");
    }
    int fd = lunas_check_netns(L, 1, 1, "netns", &owned, what, sizeof what);
    if (fd == -2) return lunas_push_error(L, errno, "sysctl: open namespace", what);
    int saved;
    if (lunas_netns_enter(fd, &saved) < 0) {
        int err = errno;
        if (owned) close(fd);
        return lunas_push_error(L, err, "sysctl: setns", what);
    }
    int file = open(path, (value ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
    int err = errno;
    lunas_netns_leave(saved);
    if (owned) close(fd);
    if (file < 0) return lunas_push_errorf(L, err, "sysctl %s in %s", key, what);
    if (value) {
        int r = lunas_write_all(file, value, strlen(value));
        err = errno;
        close(file);
        if (r < 0) return lunas_push_errorf(L, err, "sysctl %s=%s in %s", key, value, what);
        lua_pushboolean(L, 1);
        return 1;
    }
    char buf[4096];
    ssize_t n = read(file, buf, sizeof buf - 1);
    err = errno;
    close(file);
    if (n < 0) return lunas_push_errorf(L, err, "sysctl %s in %s", key, what);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) n--;
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* ---- loopback ------------------------------------------------------------- */

/***
Brings lo up in the caller's network namespace: one ioctl, cheaper than a netlink round trip on a sandbox's hot
path.
@function loopback_up
@treturn boolean true
@error "link up lo: message", "ENAME"
*/
static int net_loopback_up(lua_State *L) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return lunas_push_error(L, errno, "socket", "lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    close(s);
    if (r < 0) return lunas_push_error(L, err, "link up", "lo");
    lua_pushboolean(L, 1);
    return 1;
}

void lunas_open_net(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", netlink_close}, {"__close", netlink_close}, {"__tostring", netlink_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"close", netlink_close},
        {"fileno", netlink_fileno},
        {"link_list", netlink_link_list},
        {"link_get", netlink_link_get},
        {"link_add", netlink_link_add},
        {"link_set", netlink_link_set},
        {"link_del", netlink_link_del},
        {"link_del_group", netlink_link_del_group},
        {"addr_add", netlink_addr_add},
        {"addr_del", netlink_addr_del},
        {"addr_list", netlink_addr_list},
        {"route_add", netlink_route_add},
        {"route_del", netlink_route_del},
        {"route_list", netlink_route_list},
        {"neigh_add", netlink_neigh_add},
        {"neigh_del", netlink_neigh_del},
        {"neigh_list", netlink_neigh_list},
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"netlink", net_netlink}, {"sysctl", net_sysctl}, {"loopback_up", net_loopback_up}, {NULL, NULL}};
    lunas_new_class(L, LUNAS_NETLINK, meta, methods);
    luaL_setfuncs(L, functions, 0);
}
