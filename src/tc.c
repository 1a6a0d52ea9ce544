/* tc.c: queueing disciplines through libnl-route-3 (netem, tbf, htb). */
#include "lunas.h"

void lunas_open_tc(lua_State *L) { (void)L; }
