/* landlock.c: placeholder while the area is written. */
#include "lunas.h"

void lunas_open_landlock(lua_State *L) { (void)L; }
