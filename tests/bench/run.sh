#!/bin/sh
# tests/bench/run.sh - lunas benchmarks, side by side with the reference "raw limit" and peers.
#
# usage: sh tests/bench/run.sh [--markdown] [--only spawn|lab]   (run from anywhere; `make bench` runs it as root)
#   --only spawn   only the spawn, throughput, file system and start-up rows
#   --only lab     only the network lab rows (`make bench BENCH_ARGS="--only lab"`)
#
# Builds into build/bench/: rawns (from $LUNAS_ROOT/../shared/reference/rawns.c), topo_nl (from
# .../reference/topo_nl.c, with libnl-route-3), timeit (tests/bench/timeit.c) and empty (tests/bench/empty.c).
# Then measures, interleaved in one run (every round runs every command in turn, the starting command rotating
# each round, so machine drift hits all of them alike), and prints one table:
#   - spawn /bin/true in user+pid+mount+uts+ipc namespaces: rawns (the base), unshare, bwrap, lunas-bwrap, crun,
#     lunas run
#   - the same plus a net namespace
#   - an OCI runtime's run (create, start, wait, delete) of one bundle with a cgroup: crun (the base), runc and
#     lunas-oci where /sys/fs/cgroup shows the cgroup2 tree alone; runc and lunas-oci on a hybrid host's layout
#   - podman run --rm IMAGE true with crun (the base), runc and lunas-oci as podman's runtime, through conmon, in
#     the private namespaces of tests/oci/clients.sh (tests/bench/podman.sh; BENCH_PODMAN=0 leaves it out)
#   - spawns per second inside one process: rawns -r N vs build/bin/lunas tests/bench/throughput.lua N
#   - a spawn with limits (its own cgroup with memory, pids and cpu limits) against the same spawn without
#   - start-up of an empty program: C, lua5.4 -e "", lunas -e ""
#   - a lab of N hosts on one switch (netns, veth to the bridge, IPv4 address, up), built and torn down, for each
#     N of BENCH_LAB_N: topo_nl build N -g + teardown N -g (the base: one group delete), the same lab as one
#     `ip -batch` file for the build and one for the teardown, a bash script of `ip` commands
#     (tests/bench/lab_ip.sh), and build/bin/lunas tests/bench/lab.lua N (lunas.net). Every run is a fresh
#     `unshare --net --mount --propagation private -- sh -c 'mount -t tmpfs tmpfs /run && ...'`, so nothing
#     touches the machine's network; a row of that wrapper alone gives the overhead that ms/host leaves out.
#     The lab rounds run after the spawn rounds, one timed run per command per round (the probe run before
#     them is the warm-up, and checks that the namespace is left without netns, links or netns mounts).
# Columns: median ms (whole process, pooled over all runs of all rounds), ratio to raw (latency:
# median / rawns median, lower is better; throughput: spawns/s / rawns spawns/s, higher is better;
# lab: median / topo_nl -g median, lower is better), peak RSS MiB (max over runs of wait4's ru_maxrss: the
# tool's process tree), note (lab rows: ms per host = (median - wrapper median) / N).
#
# Environment:
#   LUNAS_ROOT        repo root (default: two directories above this script)
#   BENCH_ROUNDS      rounds (default 10)
#   BENCH_RUNS        timed runs per latency command per round (default 30)
#   BENCH_WARMUP      untimed runs before them, per round (default 3)
#   BENCH_TP_N        spawns per throughput run (default 500); one throughput run per round
#   BENCH_RAWNS_SRC   reference spawner source (default $LUNAS_ROOT/../shared/reference/rawns.c)
#   BENCH_LUNAS       lunas binary to measure (default build/bin/lunas)
#   BENCH_TIMEOUT     seconds before a latency run is killed and counted failed (default 30)
#   BENCH_LAB_N       lab sizes, space-separated (default "10 100 1000")
#   BENCH_LAB_ROUNDS  lab rounds (default 5); one timed run of each lab command per round
#   BENCH_LAB_ROUNDS_BIG  rounds for the sizes >= 1000 (default 3: the first rounds only)
#   BENCH_LAB_BASH_MAX    largest N the bash script runs at (default 100: at 1000 a cycle takes a minute or more)
#   BENCH_LAB_TIMEOUT seconds before a lab run is killed and counted failed (default 900)
#   BENCH_LAB_SETTLE  after each lab run, wait at most this many seconds (+ N/50) for the kernel to finish
#                     destroying its namespaces (default 10; see "settling" in this script)
#   BENCH_TOPO_SRC    reference lab builder source (default $LUNAS_ROOT/../shared/reference/topo_nl.c)
#
# A command that is missing or fails gets "n/a" and its reason in its row; the bench goes on.
# Exit status: 0 if every row was measured, 1 if some row other than the optional crun (or the bash script
# beyond BENCH_LAB_BASH_MAX) is n/a or a lab run changed the machine's netns list or link count, 2 if the
# harness itself could not be set up. Raw samples stay in build/bench/results/.
set -u
LC_ALL=C
export LC_ALL

MARKDOWN=0
DO_SPAWN=1
DO_LAB=1
only() {
    case $1 in
    spawn) DO_LAB=0 ;;
    lab) DO_SPAWN=0 ;;
    *)
        echo "bench: --only spawn or --only lab expected, got '$1'" >&2
        exit 2
        ;;
    esac
}
want_only=0
for a in "$@"; do
    if [ $want_only = 1 ]; then
        only "$a"
        want_only=0
        continue
    fi
    case $a in
    --markdown) MARKDOWN=1 ;;
    --only) want_only=1 ;;
    --only=*) only "${a#--only=}" ;;
    -h | --help)
        awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
        exit 0
        ;;
    *)
        echo "bench: unknown option: $a (try --help)" >&2
        exit 2
        ;;
    esac
done
[ $want_only = 1 ] && {
    echo "bench: --only needs spawn or lab" >&2
    exit 2
}

die() {
    echo "bench: $*" >&2
    exit 2
}

if [ -n "${LUNAS_ROOT:-}" ]; then
    ROOT=$LUNAS_ROOT
else
    ROOT=$(cd "$(dirname "$0")/../.." && pwd) || die "cannot find the repo root"
fi
ROOT=$(cd "$ROOT" && pwd) || die "cannot cd to $ROOT"
cd "$ROOT" || die "cannot cd to $ROOT"

posint() { # NAME VALUE DEFAULT
    case ${2:-x} in
    *[!0-9]* | 0) die "$1 must be a positive integer, got '${2}'" ;;
    esac
}
ROUNDS=${BENCH_ROUNDS:-10}
RUNS=${BENCH_RUNS:-30}
WARMUP=${BENCH_WARMUP:-3}
TP_N=${BENCH_TP_N:-500}
posint BENCH_ROUNDS "$ROUNDS"
posint BENCH_RUNS "$RUNS"
posint BENCH_TP_N "$TP_N"
posint BENCH_TIMEOUT "${BENCH_TIMEOUT:-30}"
case $WARMUP in *[!0-9]* | '') die "BENCH_WARMUP must be a non-negative integer, got '$WARMUP'" ;; esac
RAWNS_SRC=${BENCH_RAWNS_SRC:-$ROOT/../shared/reference/rawns.c}
LAT_TIMEOUT=${BENCH_TIMEOUT:-30}   # seconds, per run: a hung run is killed and counted as failed
TP_TIMEOUT=300
LAB_N=${BENCH_LAB_N:-10 100 1000}
LAB_ROUNDS=${BENCH_LAB_ROUNDS:-5}
LAB_ROUNDS_BIG=${BENCH_LAB_ROUNDS_BIG:-3}
LAB_BASH_MAX=${BENCH_LAB_BASH_MAX:-100}
LAB_TIMEOUT=${BENCH_LAB_TIMEOUT:-900}
LAB_SETTLE=${BENCH_LAB_SETTLE:-10}
TOPO_SRC=${BENCH_TOPO_SRC:-$ROOT/../shared/reference/topo_nl.c}
posint BENCH_LAB_ROUNDS "$LAB_ROUNDS"
posint BENCH_LAB_ROUNDS_BIG "$LAB_ROUNDS_BIG"
posint BENCH_LAB_BASH_MAX "$LAB_BASH_MAX"
posint BENCH_LAB_TIMEOUT "$LAB_TIMEOUT"
posint BENCH_LAB_SETTLE "$LAB_SETTLE"
for n in $LAB_N; do posint "BENCH_LAB_N (each)" "$n"; done
[ $DO_LAB = 1 ] && [ -z "$LAB_N" ] && die "BENCH_LAB_N is empty"

B=build/bench
R=$B/results
mkdir -p "$B" || die "cannot create $B"
rm -rf "$R" || die "cannot remove $R"
mkdir -p "$R" || die "cannot create $R"

# ---------------------------------------------------------------- build
command -v gcc >/dev/null 2>&1 || die "gcc not found (needed to build rawns, topo_nl, timeit, empty)"
[ $DO_SPAWN = 0 ] || [ -f "$RAWNS_SRC" ] || die "reference spawner not found: $RAWNS_SRC"
build() { # OUT SRC CFLAGS...
    b_out=$1
    b_src=$2
    shift 2
    # shellcheck disable=SC3013  # -nt: dash, bash and busybox sh all have it
    if [ ! -x "$b_out" ] || [ "$b_src" -nt "$b_out" ] || [ "$0" -nt "$b_out" ]; then
        echo "bench: gcc $* -o $b_out $b_src" >&2
        gcc "$@" -o "$b_out" "$b_src" || die "failed to build $b_out"
    fi
}
[ $DO_SPAWN = 1 ] && build "$B/rawns" "$RAWNS_SRC" -O2
build "$B/timeit" tests/bench/timeit.c -O2 -Wall -Wextra -Werror
[ $DO_SPAWN = 1 ] && build "$B/empty" tests/bench/empty.c -O2
TIMEIT=$B/timeit

# The lab's raw limit; the lab rows are n/a (with the reason) when it cannot be built.
TOPO_NA=""
if [ $DO_LAB = 1 ]; then
    if [ ! -f "$TOPO_SRC" ]; then
        TOPO_NA="reference lab builder not found: $TOPO_SRC"
    elif ! pkg-config --exists libnl-route-3.0 2>/dev/null; then
        TOPO_NA="libnl-route-3.0 not found by pkg-config (apt-get install -y libnl-route-3-dev pkg-config)"
    else
        # shellcheck disable=SC3013  # -nt: dash, bash and busybox sh all have it
        if [ ! -x "$B/topo_nl" ] || [ "$TOPO_SRC" -nt "$B/topo_nl" ] || [ "$0" -nt "$B/topo_nl" ]; then
            # shellcheck disable=SC2046  # pkg-config's flags are words
            set -- -O2 $(pkg-config --cflags libnl-route-3.0) -o "$B/topo_nl" "$TOPO_SRC" $(pkg-config --libs libnl-route-3.0)
            echo "bench: gcc $*" >&2
            gcc "$@" || TOPO_NA="cannot build $B/topo_nl from $TOPO_SRC"
        fi
    fi
    # one ip -batch file per size for the build, one for the teardown
    mkdir -p "$B/lab" || die "cannot create $B/lab"
    for n in $LAB_N; do
        bash tests/bench/lab_ip.sh batch "$n" "$B/lab" || die "cannot write the ip -batch files for N=$n"
    done
fi

# bubblewrap is a required peer: install it if missing (Debian), as the CI contract says.
if ! command -v bwrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bench: bwrap missing, running: apt-get install -y bubblewrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap >&2 ||
        echo "bench: apt-get install bubblewrap failed" >&2
fi

# ---------------------------------------------------------------- crun bundle (optional peer)
# root = an empty dir with the host's /usr bound read-only (plus /bin, /lib... as on the host),
# a fresh /proc, the same namespaces as rawns, no cgroup (--cgroup-manager=disabled), state kept
# in build/bench/crun/state. crun cannot use "/" itself as the root (pivot_root fails).
CRUN_NOTE=""
# On a hybrid cgroup layout (a tmpfs at /sys/fs/cgroup) crun's runs go through the wrapper in run_job.
CRUN_WRAP=""
[ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] && CRUN_WRAP=1
crun_setup() {
    c=$B/crun
    rm -rf "$c/rootfs" "$c/base" "$c/net" && mkdir -p "$c/rootfs/usr" "$c/rootfs/proc" "$c/rootfs/dev" \
        "$c/state" "$c/base" "$c/net" || return 1
    mounts='{"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}'
    for d in bin sbin lib lib32 lib64 libx32; do
        if [ -L "/$d" ]; then
            ln -s "$(readlink "/$d")" "$c/rootfs/$d" || return 1
        elif [ -d "/$d" ]; then
            mkdir -p "$c/rootfs/$d" || return 1
            mounts="$mounts, {\"destination\": \"/$d\", \"type\": \"bind\", \"source\": \"/$d\", \"options\": [\"rbind\", \"ro\"]}"
        fi
    done
    mounts="$mounts, {\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"}"
    # The OCI rows' bundles: the base one with a cgroup below our own, which the runtimes make and remove: "oci"
    # below the deepest of our cgroups (every hierarchy of this host), "oci2" below our cgroup2 one (the rows run
    # where /sys/fs/cgroup shows the cgroup2 tree alone).
    own_cg=$(awk -F: '{ if (length($3) > length(best)) best = $3 } END { print best }' /proc/self/cgroup)
    own_cg2=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
    mkdir -p "$c/oci" "$c/oci2" || return 1
    for v in base net oci oci2; do
        ns='{"type": "user"}, {"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}'
        [ $v = net ] && ns="$ns, {\"type\": \"network\"}"
        cg=""
        [ $v = oci ] && cg="\"cgroupsPath\": \"${own_cg%/}/lunas-bench-oci\","
        [ $v = oci2 ] && cg="\"cgroupsPath\": \"${own_cg2%/}/lunas-bench-oci\","
        cat >"$c/$v/config.json" <<EOF || return 1
{
  "ociVersion": "1.0.0",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/bin/true"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/"
  },
  "root": {"path": "$ROOT/$c/rootfs", "readonly": true},
  "hostname": "bench",
  "mounts": [$mounts],
  "linux": {$cg
    "uidMappings": [{"containerID": 0, "hostID": $(id -u), "size": 1}],
    "gidMappings": [{"containerID": 0, "hostID": $(id -g), "size": 1}],
    "namespaces": [$ns]
  }
}
EOF
    done
}

# ---------------------------------------------------------------- jobs
# job ID GROUP KIND TOOL CMD...   KIND: lat (latency runs) | tp (one throughput run per round)
NJ=0
sq() { # single-quote one word for eval
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
show() { # a word as a reader would type it
    case $1 in
    '') printf '""' ;;
    *[!A-Za-z0-9_./,=:+-]*) sq "$1" ;;
    *) printf '%s' "$1" ;;
    esac
}
job() {
    NJ=$((NJ + 1))
    eval "J_id_$NJ=\$1 J_grp_$NJ=\$2 J_kind_$NJ=\$3 J_tool_$NJ=\$4 J_na_$NJ='' J_opt_$NJ=0 J_probe_$NJ='' J_v2_$NJ=''"
    # the first job of a group is its base (the raw limit)
    eval "[ -n \"\${G_base_$2:-}\" ] || G_base_$2=$NJ"
    shift 4
    j_cmd=""
    j_show=""
    for w in "$@"; do
        j_cmd="$j_cmd $(sq "$w")"
        j_show="$j_show${j_show:+ }$(show "$w")"
    done
    eval "J_cmd_$NJ=\$j_cmd J_show_$NJ=\$j_show"
}
get() { # FIELD INDEX
    eval "printf '%s' \"\${J_$1_$2}\""
}
set_na() { # INDEX REASON
    eval "J_na_$1=\$2"
}

LUNAS=${BENCH_LUNAS:-build/bin/lunas}
LUNAS_BWRAP=$(dirname "$LUNAS")/lunas-bwrap
LUNAS_NA=""
if [ ! -e "$LUNAS" ]; then LUNAS_NA="$LUNAS missing: run make first"
elif [ ! -x "$LUNAS" ]; then LUNAS_NA="$LUNAS is not executable"
fi

UNSHARE="unshare --user --map-root-user --pid --fork --mount --mount-proc --uts --ipc"
BWRAP="bwrap --unshare-user --unshare-pid --unshare-uts --unshare-ipc"
CRUN_ID=lunas-bench-$$
CRUN="crun --root $B/crun/state --cgroup-manager=disabled run"

# shellcheck disable=SC2086  # the tool prefixes above are plain words on purpose
[ $DO_SPAWN = 1 ] && {
    job rawns ns lat "rawns" "$B/rawns" /bin/true
    job unshare ns lat "unshare" $UNSHARE /bin/true
    job bwrap ns lat "bwrap" $BWRAP --dev-bind / / --proc /proc /bin/true
    # lunas as bubblewrap, bwrap's options and defaults (issue 18's target: at most 0.8x bwrap)
    job lunas-bwrap ns lat "lunas-bwrap" "$LUNAS_BWRAP" --unshare-user --unshare-pid --unshare-uts --unshare-ipc --dev-bind / / --proc /proc /bin/true
    job crun ns lat "crun" $CRUN --bundle "$B/crun/base" "$CRUN_ID"
    # lunas doing rawns' work: the host's mount table and a fresh /proc (--rootfs host), no /proc masks (the default
    # tree and bwrap-style trees cost more: see the file system rows)
    job lunas ns lat "lunas run --rootfs host" "$LUNAS" run --unshare-user --unshare-pid --unshare-ipc --unshare-uts --rootfs host --no-harden -- /bin/true
    # Run by root, the row above gets a range of host ids of its own (an id range lock, maps written while the
    # child waits); --host-root maps onto root's own, as rawns and the earlier lunas did.
    job lunas-hr ns lat "lunas run --rootfs host --host-root" "$LUNAS" run --unshare-user --unshare-pid --unshare-ipc --unshare-uts --rootfs host --no-harden --host-root -- /bin/true

    job rawns-net net lat "rawns -n" "$B/rawns" -n /bin/true
    job unshare-net net lat "unshare" $UNSHARE --net /bin/true
    job bwrap-net net lat "bwrap" $BWRAP --unshare-net --dev-bind / / --proc /proc /bin/true
    job crun-net net lat "crun" $CRUN --bundle "$B/crun/net" "$CRUN_ID"
    job lunas-net net lat "lunas run --rootfs host" "$LUNAS" run --unshare-user --unshare-pid --unshare-ipc --unshare-uts --unshare-net --rootfs host --no-harden -- /bin/true

    # An OCI runtime's whole life of a container, as `run` does it (create, start, wait, delete), on one bundle
    # whose cgroup each runtime makes and removes. crun, the peer to beat, is the base; it refuses a hybrid cgroup
    # layout, so on such a host these rows run where /sys/fs/cgroup shows the cgroup2 tree alone (as crun's rows
    # above): all three alike.
    job crun-oci oci lat "crun" crun --root "$B/crun/state" run --bundle "$B/crun/oci2" "$CRUN_ID"
    job runc-oci oci lat "runc" runc --root "$B/crun/runc-state" run --bundle "$B/crun/oci2" "$CRUN_ID"
    job lunas-oci oci lat "lunas-oci" "$(dirname "$LUNAS")/lunas-oci" --root "$B/crun/lunas-oci-state" run --bundle "$B/crun/oci2" "$CRUN_ID"
    eval "J_v2_$((NJ - 2))=1 J_v2_$((NJ - 1))=1 J_v2_$NJ=1"
    # The same on this host's own layout (a hybrid one: the cgroup in every v1 hierarchy too, each first move
    # into a v1 hierarchy waiting for an RCU grace period): runc is the base, crun cannot run there.
    job runc-ocih ocih lat "runc" runc --root "$B/crun/runc-state" run --bundle "$B/crun/oci" "$CRUN_ID"
    job lunas-ocih ocih lat "lunas-oci" "$(dirname "$LUNAS")/lunas-oci" --root "$B/crun/lunas-oci-state" run --bundle "$B/crun/oci" "$CRUN_ID"

    job rawns-tp tp tp "rawns -r $TP_N" "$B/rawns" -r "$TP_N" /bin/true
    job lunas-tp tp tp "lunas recipe, rawns' work" "$LUNAS" tests/bench/throughput.lua "$TP_N"
    job lunas-tp-tree tp tp "lunas recipe, default tree" "$LUNAS" tests/bench/throughput.lua "$TP_N" - default
    job rawns-tpnet tpnet tp "rawns -n -r $TP_N" "$B/rawns" -n -r "$TP_N" /bin/true
    job lunas-tpnet tpnet tp "lunas recipe, rawns' work" "$LUNAS" tests/bench/throughput.lua "$TP_N" net

    # A bubblewrap-style file system, all namespaces: bwrap is the base here. lunas also masks /proc and mounts the
    # sandbox's own /sys by default (hardening), which bwrap does not; --no-harden does the same work as bwrap.
    job bwrap-fs fs lat "bwrap" bwrap --unshare-all --ro-bind / / --tmpfs /tmp --proc /proc --dev /dev /bin/true
    job lunas-bwrap-fs fs lat "lunas-bwrap" "$LUNAS_BWRAP" --unshare-all --ro-bind / / --tmpfs /tmp --proc /proc --dev /dev /bin/true
    job lunas-fs fs lat "lunas run" "$LUNAS" run --unshare-all --ro-bind / / --tmpfs /tmp --proc /proc --dev /dev -- /bin/true
    job lunas-fs-nh fs lat "lunas run --no-harden" "$LUNAS" run --unshare-all --ro-bind / / --tmpfs /tmp --proc /proc --dev /dev --no-harden -- /bin/true
    # The default sandbox: every namespace, the default tree (programs read-only, private /tmp /run /var HOME, the
    # working directory's view), hardening, the default confinement.
    job lunas-default fs lat "lunas run (the default sandbox)" "$LUNAS" run -- /bin/true

    # The cost of a cgroup of its own with limits (memory, pids, cpu): made, joined (CLONE_INTO_CGROUP, plus the
    # v1 hierarchies on a hybrid host), read for usage and removed, around the same spawn as the first row.
    job rawns-cg cg lat "rawns" "$B/rawns" /bin/true
    job lunas-cg0 cg lat "lunas run --rootfs host" "$LUNAS" run --unshare-user --unshare-pid --unshare-ipc --unshare-uts --rootfs host --no-harden -- /bin/true
    job lunas-cg cg lat "lunas run ... --memory --pids --cpu" "$LUNAS" run --unshare-user --unshare-pid --unshare-ipc --unshare-uts --rootfs host --no-harden --memory 64M --pids 64 --cpu 0.5 -- /bin/true

    job empty start lat "C: empty main()" "$B/empty"
    job lua start lat "lua5.4 -e \"\"" lua5.4 -e ""
    job lunas-e start lat "lunas -e \"\"" "$LUNAS" -e ""
}

# ---------------------------------------------------------------- lab jobs
# Each lab run: a fresh private network + mount namespace with a tmpfs on /run, then the command's cycle (build
# and teardown). The probe run appends LEAK_CHECK: no netns left, no link but lo, no netns bind mount.
# shellcheck disable=SC2016  # code for the inner sh
LEAK_CHECK='l=$(ip netns list; ip -o link show | grep -v ": lo:"; grep " /run/netns/" /proc/self/mountinfo); [ -z "$l" ] || { echo "leak: $l" | head -n 5 | tr "\n" " " >&2; exit 3; }'
lab_job() { # ID GROUP TOOL N FIRST LAST  (sh code: FIRST && LAST, LAST run with exec in the timed runs)
    lj_first=${5:+$5 && }
    job "$1" "$2" lab "$3" unshare --net --mount --propagation private -- sh -c "mount -t tmpfs tmpfs /run && ${lj_first}exec $6"
    lj_probe=""
    lj_show=""
    for w in unshare --net --mount --propagation private -- sh -c "mount -t tmpfs tmpfs /run && $lj_first$6 && $LEAK_CHECK"; do
        lj_probe="$lj_probe $(sq "$w")"
        lj_show="$lj_show${lj_show:+ }$(show "$w")"
    done
    eval "J_probe_$NJ=\$lj_probe J_n_$NJ=\$4 J_noprobe_$NJ=0"
    # From N = 1000 on a cycle takes seconds to a minute: no probe run, every timed run checks for leaks itself
    # (a few ms in seconds).
    if [ "$4" -ge 1000 ]; then
        eval "J_cmd_$NJ=\$lj_probe J_show_$NJ=\$lj_show J_noprobe_$NJ=1"
    fi
}
[ $DO_LAB = 1 ] && {
    lab_job lab-wrap labwrap "unshare + sh + tmpfs alone" 0 "" true
    for n in $LAB_N; do
        lab_job "topo-$n" "lab$n" "topo_nl -g" "$n" "$B/topo_nl build $n -g" "$B/topo_nl teardown $n -g"
        lab_job "batch-$n" "lab$n" "ip -batch" "$n" "ip -batch $B/lab/build-$n.batch" "ip -batch $B/lab/teardown-$n.batch"
        lab_job "bash-$n" "lab$n" "bash + ip" "$n" "" "bash tests/bench/lab_ip.sh cycle $n"
        if [ "$n" -gt "$LAB_BASH_MAX" ]; then
            set_na $NJ "not run: N > BENCH_LAB_BASH_MAX=$LAB_BASH_MAX"
            eval "J_opt_$NJ=1"
        fi
        lab_job "lunas-$n" "lab$n" "lunas lab.lua" "$n" "" "$LUNAS tests/bench/lab.lua $n"
    done
}

base_of() { # GROUP -> index of its raw-limit job (the first job of the group)
    eval "printf '%s' \"\${G_base_$1:-}\""
}

# what is not there
i=1
while [ $i -le $NJ ]; do
    case $(get tool $i) in
    runc | lunas-oci)
        if [ "$(get tool $i)" = runc ] && ! command -v runc >/dev/null 2>&1; then
            set_na $i "runc not installed (apt-get install -y runc)"
        elif [ "$(get tool $i)" = lunas-oci ] && [ -n "$LUNAS_NA" ]; then
            set_na $i "$LUNAS_NA"
        elif [ -z "$CRUN_NOTE" ]; then
            if crun_setup; then CRUN_NOTE=ok; else CRUN_NOTE="cannot write the OCI bundle in $B/crun"; fi
        fi
        [ "$CRUN_NOTE" != "" ] && [ "$CRUN_NOTE" != ok ] && set_na $i "$CRUN_NOTE"
        ;;
    lunas*) [ -n "$LUNAS_NA" ] && set_na $i "$LUNAS_NA" ;;
    "unshare + sh"*) command -v unshare >/dev/null 2>&1 || set_na $i "unshare (util-linux) not installed" ;;
    bwrap) command -v bwrap >/dev/null 2>&1 || set_na $i "bwrap not installed (apt-get install -y bubblewrap)" ;;
    unshare) command -v unshare >/dev/null 2>&1 || set_na $i "unshare (util-linux) not installed" ;;
    lua5.4*) command -v lua5.4 >/dev/null 2>&1 || set_na $i "lua5.4 not installed" ;;
    topo_nl*) [ -n "$TOPO_NA" ] && set_na $i "$TOPO_NA" ;;
    "ip -batch") command -v ip >/dev/null 2>&1 || set_na $i "ip (iproute2) not installed" ;;
    "bash + ip")
        [ -z "$(get na $i)" ] && ! command -v bash >/dev/null 2>&1 && set_na $i "bash not installed"
        [ -z "$(get na $i)" ] && ! command -v ip >/dev/null 2>&1 && set_na $i "ip (iproute2) not installed"
        ;;
    crun)
        eval "J_opt_$i=1"
        if ! command -v crun >/dev/null 2>&1; then
            set_na $i "crun not installed; optional"
        elif [ -z "$CRUN_NOTE" ]; then
            if crun_setup; then CRUN_NOTE=ok; else CRUN_NOTE="cannot write the OCI bundle in $B/crun"; fi
        fi
        [ "$CRUN_NOTE" != "" ] && [ "$CRUN_NOTE" != ok ] && set_na $i "$CRUN_NOTE"
        ;;
    esac
    i=$((i + 1))
done

# first line of a file worth showing, squeezed and cut
first_line() {
    [ -s "$1" ] || return 0
    grep -v '^[[:space:]]*$' "$1" | head -n 1 | tr -s ' \t' '  ' | cut -c 1-100
}
# why a run failed: "exit N: first stderr line"
fail_reason() { # INDEX STATUS
    if [ "$2" = "?" ]; then
        fr="a warm-up run failed"
    elif [ "$2" = 124 ]; then
        fr="timed out (status 124)"
    elif [ "$2" -gt 128 ] && [ "$2" -lt 160 ]; then
        fr="status $2 (signal $(($2 - 128))?)"
    else
        fr="exit $2"
    fi
    fl=$(first_line "$R/$1.err")
    [ -z "$fl" ] && fl=$(first_line "$R/$1.timeit")
    [ -n "$fl" ] && fr="$fr: $fl"
    printf '%s' "$fr"
}

# one timeit invocation for job I; appends to its samples; prints timeit's line
# (rj_probe=1: a lab job's probe command, with the leak check)
run_job() { # INDEX RUNS WARMUP
    if [ "${rj_probe:-0}" = 1 ] && [ -n "$(get probe "$1")" ]; then
        eval "set -- $(get probe "$1") "
    else
        eval "set -- $(get cmd "$1") "
    fi
    if [ "$(get kind "$rj_i")" = tp ]; then
        "$TIMEIT" -n 1 -w 0 -t $TP_TIMEOUT -o "$R/$rj_i.samples" -s "$R/$rj_i.out" -E "$R/$rj_i.err" -- "$@" 2>>"$R/$rj_i.timeit"
    elif [ "$(get kind "$rj_i")" = lab ]; then
        "$TIMEIT" -n 1 -w 0 -t "$LAB_TIMEOUT" -o "$R/$rj_i.samples" -s "$R/$rj_i.out" -E "$R/$rj_i.err" -- "$@" 2>>"$R/$rj_i.timeit"
    elif { [ "$(get tool "$rj_i")" = crun ] || [ -n "$(get v2 "$rj_i")" ]; } && [ -n "$CRUN_WRAP" ]; then
        # crun refuses a hybrid cgroup layout even with --cgroup-manager=disabled: timeit (and so crun) runs in a
        # mount namespace whose /sys/fs/cgroup is the cgroup2 tree alone; the timed part is crun's process as ever
        unshare --mount --propagation private -- sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh \
            "$TIMEIT" -n "$rj_n" -w "$rj_w" -t "$LAT_TIMEOUT" -o "$R/$rj_i.samples" -E "$R/$rj_i.err" -- "$@" 2>>"$R/$rj_i.timeit"
    else
        "$TIMEIT" -n "$rj_n" -w "$rj_w" -t "$LAT_TIMEOUT" -o "$R/$rj_i.samples" -E "$R/$rj_i.err" -- "$@" 2>>"$R/$rj_i.timeit"
    fi
}

# ---------------------------------------------------------------- settling after a lab run
# A lab's network namespaces are destroyed by the kernel after its run has exited (cleanup_net, run by a kworker
# of the netns work queue, whose name reads "kworker/...+netns" while it works). Left running, that work would be
# charged to whichever command runs next, always the same one in a rotated order. So after each lab run the
# harness waits, untimed, at least 0.3 s and then until no netns kworker has been seen working for 0.2 s, at most
# BENCH_LAB_SETTLE + N/50 seconds, and records how long that took. (The net_namespace slab count is no signal:
# SLUB counts objects freed to a CPU's own slab as still active.)
netns_work() {
    grep -qs '+netns' /proc/[0-9]*/comm
}
now_ms() {
    d=$(date +%s%N 2>/dev/null)
    case $d in *N* | '') echo $(($(date +%s) * 1000)) ;; *) echo $((d / 1000000)) ;; esac
}
settle() { # INDEX
    se_t0=$(now_ms)
    se_cap=$(((LAB_SETTLE + $(get n "$1") / 50) * 1000))
    sleep 0.3
    se_idle=0
    while [ $se_idle -lt 4 ] && [ $(($(now_ms) - se_t0)) -lt "$se_cap" ]; do
        if netns_work; then se_idle=0; else se_idle=$((se_idle + 1)); fi
        sleep 0.05
    done
    echo $(($(now_ms) - se_t0)) >>"$R/$1.settle"
}

# ---------------------------------------------------------------- probe: one run each, outside the samples
echo "bench: probing $NJ commands" >&2
i=1
while [ $i -le $NJ ]; do
    if [ -z "$(get na $i)" ] && [ "$(get kind $i)" = lab ] && [ "$(get noprobe $i)" = 1 ]; then
        : # checked by its timed runs
    elif [ -z "$(get na $i)" ]; then
        rj_i=$i rj_n=1 rj_w=0 rj_probe=1
        : >"$R/$i.err"
        [ "$(get kind $i)" = lab ] && echo "bench:   probe $(get id $i)" >&2
        run_job $i >/dev/null
        rj_probe=0
        if [ "$(get kind $i)" = lab ]; then
            settle $i
            rm -f "$R/$i.settle"
        fi
        st=$(awk '{ s = $3 } END { print (s == "" ? "none" : s) }' "$R/$i.samples" 2>/dev/null)
        if [ "$st" = none ]; then
            set_na $i "$(first_line "$R/$i.timeit")"
            [ -z "$(get na $i)" ] && set_na $i "timeit failed"
        elif [ "$st" != 0 ]; then
            set_na $i "$(fail_reason $i "$st")"
        elif [ "$(get kind $i)" = tp ] && [ "$(get id $i)" != "$(get id "$(base_of "$(get grp $i)")")" ] &&
            ! grep -q '^spawns_per_sec [0-9]' "$R/$i.out" 2>/dev/null; then
            set_na $i "no 'spawns_per_sec <float>' line on stdout"
        fi
        rm -f "$R/$i.samples" "$R/$i.out"
        [ -n "$(get na $i)" ] && echo "bench:   $(get show $i): n/a ($(get na $i))" >&2
    fi
    i=$((i + 1))
done

# ---------------------------------------------------------------- rounds
# run_rounds LABEL NROUNDS INDEXES...: every round runs each job of INDEXES once (latency jobs: RUNS timed runs
# after WARMUP; throughput and lab jobs: one run), the starting job rotating each round. Lab jobs of N >= 1000
# run in the first LAB_ROUNDS_BIG rounds only.
run_rounds() {
    rr_label=$1
    rr_rounds=$2
    shift 2
    rr_list=$*
    rr_count=$#
    [ "$rr_count" -gt 0 ] || return 0
    r=1
    while [ $r -le "$rr_rounds" ]; do
        echo "bench: $rr_label round $r/$rr_rounds" >&2
        k=0
        while [ $k -lt "$rr_count" ]; do
            # shellcheck disable=SC2086  # the index list is words
            set -- $rr_list
            shift $(((r - 1 + k) % rr_count))
            i=$1
            k=$((k + 1))
            [ -n "$(get na "$i")" ] && continue
            if [ "$(get kind "$i")" = lab ] && [ "$(get n "$i")" -ge 1000 ] && [ $r -gt "$LAB_ROUNDS_BIG" ]; then
                continue
            fi
            rj_i=$i rj_n=$RUNS rj_w=$WARMUP
            : >"$R/$i.err"
            line=$(run_job "$i")
            rc=$?
            [ "$(get kind "$i")" = lab ] && settle "$i"
            if [ $rc -ne 0 ]; then
                # the first failing timed run of this round, with the command's stderr (warm-up
                # failures count in timeit's total but leave no sample; then the status is unknown)
                st=$(awk '$3 != 0 { print $3; exit }' "$R/$i.samples" 2>/dev/null)
                [ -z "$st" ] && [ -n "$line" ] && st="?"
                nf=$(printf '%s\n' "$line" | awk '{ print $5 }')
                if [ -z "$st" ]; then
                    set_na "$i" "round $r: timeit failed ($(first_line "$R/$i.timeit"))"
                else
                    set_na "$i" "round $r: ${nf:-some} of $((rj_n + rj_w)) runs failed, first: $(fail_reason "$i" "$st")"
                fi
                echo "bench: $(get show "$i"): n/a ($(get na "$i"))" >&2
            fi
        done
        r=$((r + 1))
    done
}
SPAWN_JOBS=""
LAB_JOBS=""
i=1
while [ $i -le $NJ ]; do
    if [ "$(get kind $i)" = lab ]; then LAB_JOBS="$LAB_JOBS $i"; else SPAWN_JOBS="$SPAWN_JOBS $i"; fi
    i=$((i + 1))
done
# shellcheck disable=SC2086  # index lists are words
run_rounds spawn "$ROUNDS" $SPAWN_JOBS
if [ -n "$LAB_JOBS" ]; then
    HOST_NETNS_BEFORE=$(ip netns list 2>/dev/null)
    HOST_LINKS_BEFORE=$(ip -o link show 2>/dev/null | wc -l)
    # shellcheck disable=SC2086
    run_rounds lab "$LAB_ROUNDS" $LAB_JOBS
    # the lab ran in private namespaces: the machine's own must look as before
    if [ "$(ip netns list 2>/dev/null)" != "$HOST_NETNS_BEFORE" ] ||
        [ "$(ip -o link show 2>/dev/null | wc -l)" != "$HOST_LINKS_BEFORE" ]; then
        echo "bench: the machine's netns list or link count changed during the lab rounds" >&2
        LAB_LEAK=1
    fi
fi

# ---------------------------------------------------------------- aggregate
stats() { # SAMPLES -> "median p10 p90 maxrss_kib n"
    sort -n -k1,1 "$1" | awk '
        { ms[NR] = $1; if ($2 > rss) rss = $2 }
        function pct(p,   pos, lo) {
            pos = p * (NR - 1); lo = int(pos)
            if (lo >= NR - 1) return ms[NR]
            return ms[lo + 1] + (ms[lo + 2] - ms[lo + 1]) * (pos - lo)
        }
        END { if (NR) printf "%.4f %.4f %.4f %d %d\n", pct(0.5), pct(0.1), pct(0.9), rss, NR }'
}
median_of() { # FILE with one number per line
    sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR) printf "%.4f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt_ms() { awk -v v="$1" 'BEGIN { printf (v >= 100 ? "%.1f" : "%.2f"), v }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

i=1
while [ $i -le $NJ ]; do
    s=""
    [ -z "$(get na $i)" ] && [ -s "$R/$i.samples" ] && s=$(stats "$R/$i.samples")
    [ -z "$(get na $i)" ] && [ -z "$s" ] && set_na $i "no samples"
    eval "J_stats_$i=\$s"
    i=$((i + 1))
done

# median ms of the job with this id, if it was measured
med_of_id() {
    mo_i=1
    while [ $mo_i -le $NJ ]; do
        if [ "$(get id $mo_i)" = "$1" ]; then
            [ -z "$(get na $mo_i)" ] && get stats $mo_i | awk '{ print $1 }'
            return 0
        fi
        mo_i=$((mo_i + 1))
    done
}

TAB=$(printf '\t')
ROWS=$R/table.tsv
: >"$ROWS"
FAILED=""
prev_grp=""
i=1
while [ $i -le $NJ ]; do
    grp=$(get grp $i)
    case $grp in
    ns) work="spawn /bin/true, user+pid+mnt+uts+ipc" ;;
    net) work="same + net" ;;
    tp) work="spawns/s in one process, N=$TP_N" ;;
    tpnet) work="same + net, N=$TP_N" ;;
    fs) work="bubblewrap-style fs, all namespaces" ;;
    cg) work="spawn with limits (cgroup)" ;;
    oci) work="OCI run: create+start+wait+delete (cgroup2 view)" ;;
    ocih) work="OCI run, this host's hybrid layout" ;;
    start) work="start-up, empty program" ;;
    labwrap) work="lab: the namespace wrapper alone" ;;
    lab*) work="lab N=$(get n $i) build+teardown" ;;
    esac
    [ "$grp" = "$prev_grp" ] && work=""
    prev_grp=$grp
    tool=$(get tool $i)
    na=$(get na $i)
    if [ -n "$na" ]; then
        printf '%s\t%s\tn/a\t-\t-\tn/a (%s)\n' "$work" "$tool" "$na" >>"$ROWS"
        [ "$(get opt $i)" = 1 ] || FAILED="$FAILED $(get id $i)"
        i=$((i + 1))
        continue
    fi
    # shellcheck disable=SC2046  # five numbers, split on purpose
    set -- $(get stats $i)
    med=$1 p10=$2 p90=$3 rss=$4 n=$5
    b=$(base_of "$grp")
    bstats=$(get stats "$b")
    bmed=$(printf '%s\n' "$bstats" | awk '{ print $1 }')
    mib=$(awk -v k="$rss" 'BEGIN { printf "%.2f", k / 1024 }')
    case $grp in
    tp | tpnet)
        whole=$(awk -v n="$TP_N" -v ms="$med" 'BEGIN { printf "%.0f", n * 1000 / ms }')
        if [ $i = "$b" ]; then
            rate=$whole
            ratio="1.00x"
            note="$rate spawns/s (whole process), n=$n"
        else
            grep '^spawns_per_sec ' "$R/$i.out" | awk '{ print $2 }' >"$R/$i.rates"
            rate=$(median_of "$R/$i.rates" | awk '{ printf "%.0f", $1 }')
            brate=""
            [ -n "$bmed" ] && [ -z "$(get na "$b")" ] &&
                brate=$(awk -v n="$TP_N" -v ms="$bmed" 'BEGIN { printf "%.4f", n * 1000 / ms }')
            if [ -n "$brate" ]; then ratio="$(div "$rate" "$brate")x"; else ratio="-"; fi
            note="$rate spawns/s (self-timed; whole process $whole/s), n=$n"
            grep -q '^clock os.time' "$R/$i.out" && note="$note; os.time clock, 1 s resolution!"
        fi
        ;;
    labwrap)
        ratio="-"
        note="subtracted from the lab rows' ms/host; p10 $(fmt_ms "$p10"), p90 $(fmt_ms "$p90"), n=$n"
        ;;
    lab*)
        if [ -n "$bmed" ] && [ -z "$(get na "$b")" ]; then ratio="$(div "$med" "$bmed")x"; else ratio="-"; fi
        ln=$(get n $i)
        wmed=$(med_of_id lab-wrap)
        note="$(awk -v m="$med" -v w="${wmed:-0}" -v n="$ln" 'BEGIN { printf "%.3f", (m - w) / n }') ms/host"
        # the cost of one more host between the previous size and this one (no fixed costs in it)
        prev_n=""
        for pn in $LAB_N; do
            [ "$pn" = "$ln" ] && break
            prev_n=$pn
        done
        tool_id=$(get id $i)
        tool_id=${tool_id%-*}
        pmed=""
        [ -n "$prev_n" ] && [ "$prev_n" -lt "$ln" ] && pmed=$(med_of_id "$tool_id-$prev_n")
        [ -n "$pmed" ] && note="$note (marginal $(awk -v a="$med" -v b="$pmed" -v n="$ln" -v p="$prev_n" 'BEGIN { printf "%.3f", (a - b) / (n - p) }') from N=$prev_n)"
        case $(get id $i) in
        lunas-*)
            bash_med=$(med_of_id "bash-$ln")
            [ -n "$bash_med" ] && note="$note; bash + ip / lunas = $(div "$bash_med" "$med")x"
            if grep -q '^build_ms ' "$R/$i.out" 2>/dev/null; then
                grep '^build_ms ' "$R/$i.out" | awk '{ print $2 }' >"$R/$i.build"
                grep '^teardown_ms ' "$R/$i.out" | awk '{ print $2 }' >"$R/$i.teardown"
                note="$note; self-timed build $(fmt_ms "$(median_of "$R/$i.build")") + teardown $(fmt_ms "$(median_of "$R/$i.teardown")")"
            fi
            ;;
        esac
        [ -s "$R/$i.settle" ] && note="$note; then $(median_of "$R/$i.settle" | awk '{ printf "%.0f", $1 }') ms of netns cleanup"
        note="$note; p10 $(fmt_ms "$p10"), p90 $(fmt_ms "$p90"), n=$n"
        ;;
    *)
        if [ -n "$bmed" ] && [ -z "$(get na "$b")" ]; then ratio="$(div "$med" "$bmed")x"; else ratio="-"; fi
        note="p10 $(fmt_ms "$p10"), p90 $(fmt_ms "$p90"), n=$n"
        if [ "$grp" = start ] && [ $i != "$b" ] && [ -n "$bmed" ] && [ -z "$(get na "$b")" ]; then
            note="$(awk -v a="$med" -v b="$bmed" 'BEGIN { printf "%+.2f", a - b }') ms over C; $note"
        fi
        ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$work" "$tool" "$(fmt_ms "$med")" "$ratio" "$mib" "$note" >>"$ROWS"
    i=$((i + 1))
done

# ---------------------------------------------------------------- print
ver() { "$@" 2>/dev/null | head -n 1; }
KERNEL=$(uname -r)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
CPUS=$(nproc 2>/dev/null || echo '?')
VERSIONS="$(ver unshare --version); $(ver bwrap --version)"
command -v crun >/dev/null 2>&1 && VERSIONS="$VERSIONS; $(ver crun --version)"
command -v lua5.4 >/dev/null 2>&1 && VERSIONS="$VERSIONS; $(lua5.4 -v 2>&1 | cut -d' ' -f1-2)"
HEAD1="lunas bench: kernel $KERNEL, $DATE, $CPUS CPUs"
HEAD2=""
[ $DO_SPAWN = 1 ] && HEAD2="$ROUNDS rounds, interleaved; per round: $RUNS timed runs (+$WARMUP warm-up) of each latency command, 1 throughput run of $TP_N spawns"
if [ $DO_LAB = 1 ]; then
    HEAD2="$HEAD2${HEAD2:+; }lab: $LAB_ROUNDS rounds ($LAB_ROUNDS_BIG for N >= 1000), interleaved, 1 timed run of each lab command per round"
fi
LEGEND1="median ms: wall time of the whole process (fork to wait4), median over all timed runs of all rounds; throughput rows: one process doing all N spawns."
LEGEND2="ratio: latency rows = median / the group's first row (rawns, bwrap for the file system rows, or the empty C program), lower is better; throughput rows = spawns/s / rawns spawns/s, higher is better."
LEGEND3="peak RSS: max over runs of wait4's ru_maxrss, i.e. the largest process in the tool's process tree."
LEGEND4="lab rows: one run = a fresh unshare --net --mount + tmpfs on /run, then build and teardown of the lab (topo_nl: two processes; ip -batch: two ip processes, which fork an ip per 'netns exec' line; bash + ip: about 5 ip processes per host); ratio = median / topo_nl -g median, lower is better; ms/host = (median - the wrapper's median) / N, marginal = (median - median at the previous N) / (N - previous N); 'then X ms of netns cleanup': the median wait after the run (untimed, at least 300 ms) until the kernel's netns work queue had been idle for 0.2 s; the next run starts after it. The bash script runs up to N = $LAB_BASH_MAX (BENCH_LAB_BASH_MAX)."
# Targets for the lab rows: lunas within 1.25x of topo_nl -g and at least 25x faster than bash + ip, per N.
TARGETS=""
if [ $DO_LAB = 1 ]; then
    for n in $LAB_N; do
        lm=$(med_of_id "lunas-$n")
        tm=$(med_of_id "topo-$n")
        bm=$(med_of_id "bash-$n")
        [ -n "$lm" ] || continue
        t="N=$n:"
        if [ -n "$tm" ]; then
            t="$t lunas / topo_nl -g = $(div "$lm" "$tm")x (target <= 1.25x: $(awk -v a="$lm" -v b="$tm" 'BEGIN { print (a <= 1.25 * b) ? "met" : "NOT met" }'))"
        fi
        if [ -n "$bm" ]; then
            t="$t; bash + ip / lunas = $(div "$bm" "$lm")x (target >= 25x: $(awk -v a="$bm" -v b="$lm" 'BEGIN { print (a >= 25 * b) ? "met" : "NOT met" }'))"
        fi
        TARGETS="$TARGETS$t
"
    done
fi

# podman run --rm IMAGE true through conmon, with crun (the base), runc and lunas-oci as podman's runtime: in the
# private namespaces of tests/oci/clients.sh (its podman, storage and image), rounds interleaved. Needs podman.
if [ $DO_SPAWN = 1 ] && [ "${BENCH_PODMAN:-1}" != 0 ]; then
    pm_work="podman run --rm IMAGE true"
    if ! command -v podman >/dev/null 2>&1 || ! command -v conmon >/dev/null 2>&1; then
        printf '%s\t%s\tn/a\t-\t-\tn/a (podman or conmon not installed)\n' "$pm_work" "podman" >>"$ROWS"
    else
        case $LUNAS in /*) pm_oci=$(dirname "$LUNAS")/lunas-oci ;; *) pm_oci=$ROOT/$(dirname "$LUNAS")/lunas-oci ;; esac
        pm_rts="$(command -v crun || echo /usr/bin/crun) $(command -v runc || echo /usr/sbin/runc) $pm_oci"
        # (crun refuses a hybrid layout whose cgroup2 tree has controllers: that tree stays unmounted inside)
        OCI_TEST_ONLY=bench OCI_TEST_WRAP=0 OCI_TEST_HIDE_CGROUP2=1 OCI_TEST_HOOK="$ROOT/tests/bench/podman.sh" \
            BENCH_PODMAN_RUNTIMES="$pm_rts" BENCH_PODMAN_ROUNDS="${BENCH_PODMAN_ROUNDS:-$ROUNDS}" \
            bash "$ROOT/tests/oci/clients.sh" "$pm_oci" >"$R/podman.out" 2>"$R/podman.err"
        pm_base=""
        for rt in $pm_rts; do
            line=$(grep "^podman-bench $rt " "$R/podman.out")
            # shellcheck disable=SC2086
            set -- $line
            name=$(basename "$rt")
            if [ -z "$line" ] || [ "${7:-0}" -gt 0 ] || [ "$3" = - ]; then
                why=$(grep -v '^#' "$R/podman.err" | head -n 1 | cut -c 1-100)
                printf '%s\t%s\tn/a\t-\t-\tn/a (%s)\n' "$pm_work" "$name" "${why:-no timing: see $R/podman.out}" >>"$ROWS"
                [ "$name" = crun ] || FAILED="$FAILED podman-$name"
            else
                [ -z "$pm_base" ] && pm_base=$3
                printf '%s\t%s\t%s\t%sx\t-\tp10 %s, p90 %s, n=%s\n' "$pm_work" "$name" "$3" "$(div "$3" "$pm_base")" "$4" "$5" "$6" >>"$ROWS"
            fi
            pm_work=""
        done
    fi
fi

if [ $MARKDOWN = 1 ]; then
    echo "$HEAD1."
    echo "$HEAD2."
    echo
    awk -F"$TAB" 'BEGIN { print "| work | tool | median ms | ratio to raw | peak RSS MiB | note |"; print "|---|---|--:|--:|--:|---|" }
        { for (c = 1; c <= 6; c++) gsub(/\|/, "\\|", $c)
          printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$ROWS"
    echo
    echo "- $LEGEND1"
    echo "- $LEGEND2"
    echo "- $LEGEND3"
    [ $DO_LAB = 1 ] && echo "- $LEGEND4"
    if [ -n "$TARGETS" ]; then
        echo
        echo "Lab targets:"
        echo
        printf '%s' "$TARGETS" | sed 's/^/- /'
    fi
    echo
    echo "Commands (from the repo root):"
    echo
    i=1
    while [ $i -le $NJ ]; do
        echo "- \`$(get show $i)\`"
        i=$((i + 1))
    done
else
    echo "$HEAD1"
    echo "$HEAD2"
    echo "tools: $VERSIONS"
    echo
    awk -F"$TAB" '
        { for (c = 1; c <= 6; c++) { cell[NR, c] = $c; if (length($c) > w[c]) w[c] = length($c) } }
        END {
            split("work|tool|median ms|ratio to raw|peak RSS MiB|note", h, "|")
            for (c = 1; c <= 6; c++) if (length(h[c]) > w[c]) w[c] = length(h[c])
            fmt = "%-" w[1] "s  %-" w[2] "s  %" w[3] "s  %" w[4] "s  %" w[5] "s  %s\n"
            printf fmt, h[1], h[2], h[3], h[4], h[5], h[6]
            line = ""
            for (c = 1; c <= 6; c++) { s = ""; for (k = 0; k < (c < 6 ? w[c] : 4); k++) s = s "-"; line = line s (c < 6 ? "  " : "") }
            print line
            for (r = 1; r <= NR; r++) printf fmt, cell[r, 1], cell[r, 2], cell[r, 3], cell[r, 4], cell[r, 5], cell[r, 6]
        }' "$ROWS"
    echo
    echo "$LEGEND1"
    echo "$LEGEND2"
    echo "$LEGEND3"
    [ $DO_LAB = 1 ] && echo "$LEGEND4"
    if [ -n "$TARGETS" ]; then
        echo
        echo "lab targets:"
        printf '%s' "$TARGETS" | sed 's/^/  /'
    fi
    echo
    echo "commands (from $ROOT):"
    i=1
    while [ $i -le $NJ ]; do
        printf '  %-26s %s\n' "$(get tool $i)" "$(get show $i)"
        i=$((i + 1))
    done
fi

if [ -n "${LAB_LEAK:-}" ]; then
    echo "bench: the lab rounds changed the machine's netns list or link count" >&2
    exit 1
fi
if [ -n "$FAILED" ]; then
    echo "bench: n/a rows (see their notes):$FAILED" >&2
    exit 1
fi
exit 0
