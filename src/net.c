/* net.c: networking. Until the netlink layer lands, only what every new network namespace needs: bringing the
 * loopback interface up (one ioctl, cheaper than a netlink round trip on the sandbox's hot path). */
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lunas.h"

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
    static const luaL_Reg functions[] = {{"loopback_up", net_loopback_up}, {NULL, NULL}};
    luaL_setfuncs(L, functions, 0);
}
