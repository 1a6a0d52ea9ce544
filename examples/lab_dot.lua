-- lab_dot.lua: a lab drawn by lab:dot(). Two office hosts on a switch, a router to a server subnet, and an
-- impaired link; the DOT text goes to stdout (pipe it into `dot -Tsvg > lab.svg`), or, with the argument
-- "svg", lunas runs Graphviz itself through lab:svg().
-- Run as root: lunas examples/lab_dot.lua [svg]
local net = require "lunas.net"

local lab <close> = net.lab{ name = "office" }
local s1 = lab:switch("s1")
local pc1, pc2, gw, server = lab:host("pc1"), lab:host("pc2"), lab:router("gw"), lab:host("server")
lab:link(pc1, s1)
lab:link(pc2, s1, { rate = "100mbit" })
lab:link(gw, s1)
lab:link(gw, server, { rate = "1gbit" })
pc1:addr("eth0", "192.168.1.10/24")
pc2:addr("eth0", "192.168.1.11/24")
gw:addr("eth0", "192.168.1.1/24"):addr("eth1", "10.9.0.1/24")
server:addr("eth0", "10.9.0.10/24")

io.write(arg and arg[1] == "svg" and lab:svg() or lab:dot())
