/* netlink.h: what the two files of the network area (net.c, tc.c) share: the netlink handle and its error,
 * interface and address helpers. */
#ifndef LUNAS_NETLINK_H
#define LUNAS_NETLINK_H

#include <stddef.h>
#include <sys/types.h>

#include "lunas.h"

struct nl_sock;
struct nl_addr;

#define LUNAS_NETLINK "lunas.netlink"

/* A rtnetlink socket bound to one network namespace. err and ext_ack hold the kernel's answer to the last
 * failed request (filled by an error callback: libnl's own codes lose the errno). */
struct lunas_netlink {
    struct nl_sock *sock;
    int netns_fd; /* the namespace, for work that is not netlink (tun devices); -1: where lunas was */
    pid_t owner;  /* __gc frees only in the creating process */
    int err;
    char ext_ack[256];
    char where[64]; /* printable namespace name for messages; empty for the current one */
};

/* The open handle at idx, with its error state cleared for a new request. Raises when closed. */
struct lunas_netlink *lunas_check_netlink(lua_State *L, int idx);
/* Pushes nil, "op target in NETNS (kernel text): strerror", "ENAME" from the last failure (or from the libnl
 * code nlerr when the kernel said nothing) and returns 3. */
int lunas_netlink_error(lua_State *L, struct lunas_netlink *nl, int nlerr, const char *op, const char *target);
/* For listings: r is the result of allocating the cache `listed`; on success also allocates the link cache that
 * names its interfaces. Returns 0, or pushes the error (freeing `listed` if it was made) and returns 3. */
struct nl_cache;
int lunas_netlink_with_links(lua_State *L, struct lunas_netlink *nl, int r, struct nl_cache *listed, const char *op,
                             struct nl_cache **links);
/* Interface name check (the kernel's rules: 1-15 bytes, no '/', ':' or spaces); raises naming field. */
const char *lunas_check_ifname(lua_State *L, int idx, int arg, const char *field);
/* ifindex of a link given by name or index in nl's namespace, or a negative libnl error. */
int lunas_netlink_ifindex(lua_State *L, struct lunas_netlink *nl, int idx, int arg, const char *field, char *label,
                          size_t label_size);
/* "10.0.0.1/24" | "fd00::1/64" | bare address (| "default" with allow_default) -> new nl_addr; family 0: any. */
struct nl_addr *lunas_check_prefix(lua_State *L, int idx, int arg, const char *field, int allow_prefix,
                                   int allow_default, int family);
/* Text of an address ("default" for a zero-length prefix when with_prefix). */
void lunas_format_prefix(struct nl_addr *a, int with_prefix, char *buf, size_t size);

#endif
