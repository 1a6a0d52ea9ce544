#!/bin/bash
# tests/bench/lab_ip.sh - the lab of tests/bench/lab.lua and reference/topo_nl.c, as a bash script of `ip` commands.
#
# usage: bash tests/bench/lab_ip.sh build|teardown|cycle N
#        bash tests/bench/lab_ip.sh batch N DIR     (writes DIR/build-N.batch and DIR/teardown-N.batch for ip -batch)
#
# build: br0 (bridge, up); for i in 1..N: netns h<i>, veth vh<i> (master br0, up) <-> eth0 in h<i>,
# 10.250.(i/250).(i%250+1)/16 on eth0, eth0 up. teardown: delete every vh<i> (its peer goes with it), every
# netns h<i>, then br0. One `ip` process per step, as a hand-written script does.
# Run it only inside a network + mount namespace of your own (tests/bench/run.sh does).
#
# The batch files do the same work in one `ip -batch FILE` each. iproute2's batch mode (6.1) knows no per-line
# -n/-netns option, so the two steps that run inside a host are `netns exec h<i> ip ...` lines: ip forks and
# execs one ip per such line.
set -eu

addr() { echo "10.250.$(($1 / 250)).$(($1 % 250 + 1))/16"; }

build() {
    ip link add br0 type bridge
    ip link set br0 up
    for ((i = 1; i <= $1; i++)); do
        ip netns add "h$i"
        ip link add "vh$i" type veth peer name eth0 netns "h$i"
        ip link set "vh$i" master br0 up
        ip -n "h$i" addr add "$(addr "$i")" dev eth0
        ip -n "h$i" link set eth0 up
    done
}

teardown() {
    for ((i = 1; i <= $1; i++)); do
        ip link del "vh$i"
        ip netns del "h$i"
    done
    ip link del br0
}

batch() { # N DIR
    {
        echo "link add br0 type bridge"
        echo "link set br0 up"
        for ((i = 1; i <= $1; i++)); do
            echo "netns add h$i"
            echo "link add vh$i type veth peer name eth0 netns h$i"
            echo "link set vh$i master br0 up"
            echo "netns exec h$i ip addr add $(addr "$i") dev eth0"
            echo "netns exec h$i ip link set eth0 up"
        done
    } >"$2/build-$1.batch"
    {
        for ((i = 1; i <= $1; i++)); do
            echo "link del vh$i"
            echo "netns del h$i"
        done
        echo "link del br0"
    } >"$2/teardown-$1.batch"
}

case ${1:-} in
build | teardown | cycle | batch) ;;
*)
    echo "usage: lab_ip.sh build|teardown|cycle N | batch N DIR" >&2
    exit 2
    ;;
esac
n=${2:-}
case $n in '' | *[!0-9]* | 0)
    echo "lab_ip.sh: N must be a positive integer, got '$n'" >&2
    exit 2
    ;;
esac
case $1 in
build) build "$n" ;;
teardown) teardown "$n" ;;
cycle) build "$n" && teardown "$n" ;;
batch) batch "$n" "${3:?lab_ip.sh batch N DIR}" ;;
esac
