/* nft.c: nftables rule sets through libnftables (NAT and port forwarding for labs). */
#include "lunas.h"

void lunas_open_nft(lua_State *L) { (void)L; }
