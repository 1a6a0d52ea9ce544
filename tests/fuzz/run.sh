#!/bin/sh
# tests/fuzz/run.sh: runs the API fuzzer (tests/fuzz/fuzz.lua) where nothing it does can reach the machine.
#
#   sh tests/fuzz/run.sh [--calls N] [--seed S] [--replay S] [--batch K] [--only NAME] [--out DIR]   (as root)
#
# Environment: LUNAS_ROOT (the tree), LUNAS_FUZZ_BUILD (the build whose lib/lunas/core.so is fuzzed, default
# LUNAS_ROOT/build/asan), LUNAS_SANITIZE=1 when that build has AddressSanitizer and UBSan (then the sanitizer
# runtime is preloaded into lua5.4 and every report counts as a finding).
#
# Confinement, from the outside in:
#   1. a private mount namespace (as root) with fresh tmpfs over every directory an unprivileged user can write
#      (/tmp, /var/tmp, /dev/shm, /run) and over /sys/fs/cgroup (a delegated cgroup could be writable);
#   2. the fuzzer runs as uid/gid 1999999, which owns nothing (setpriv, no groups, no capabilities), in its own
#      user namespace where it is root (so mount, netlink, seccomp, landlock and friends get past their
#      permission checks and into lunas's code), and its own pid, mount, net, uts, ipc and cgroup namespaces:
#      its kills reach only its own processes, its links and mounts only its own namespaces, and all of it goes
#      when it exits;
#   3. each batch of calls is a worker in fresh pid, mount, net, uts and ipc namespaces of its own.
# The report: one line "fuzz: ..." with the figures, the findings (if any) and the first sanitizer reports, then
# "fuzz: PASS" or "fuzz: FAIL". DIR (when given) receives summary.json, findings and the sanitizer logs.
# Exit status: 0 no finding; 1 findings (a crash, a sanitizer report, a contract violation); 2 set-up failed.
set -u

ROOT=${LUNAS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
FUZZ_BUILD=${LUNAS_FUZZ_BUILD:-$ROOT/build/asan}
# A uid nothing on the machine belongs to (not even nobody's delegated cgroups or files): whatever the fuzzer
# reaches of the machine, it can only read.
FUZZ_UID=1999999
OUT=""
ARGS=""
while [ $# -gt 0 ]; do
    case $1 in
    --out)
        OUT=$2
        shift 2
        ;;
    --calls | --seed | --replay | --batch | --only | --stall | --verbose)
        ARGS="$ARGS $1 $2"
        shift 2
        ;;
    *)
        echo "fuzz: unknown argument $1" >&2
        exit 2
        ;;
    esac
done

die() {
    echo "fuzz: $*" >&2
    exit 2
}

[ "$(id -u)" = 0 ] || die "run as root (it builds the confinement the fuzzer runs in)"
[ -f "$FUZZ_BUILD/lib/lunas/core.so" ] || die "no $FUZZ_BUILD/lib/lunas/core.so (make BUILD=build/asan SANITIZE=1 all)"
if [ -n "$OUT" ]; then
    mkdir -p "$OUT" || die "cannot make $OUT"
    OUT=$(cd "$OUT" && pwd)
fi

PRELOAD=""
if [ "${LUNAS_SANITIZE:-}" = 1 ]; then
    PRELOAD=$(gcc -print-file-name=libasan.so)
    [ -f "$PRELOAD" ] || die "no libasan.so for the sanitizer build"
fi

ROOT=$ROOT FUZZ_BUILD=$FUZZ_BUILD OUT=$OUT ARGS=$ARGS PRELOAD=$PRELOAD FUZZ_UID=$FUZZ_UID \
    exec unshare --mount --propagation private -- /bin/sh -c '
set -u
die() { echo "fuzz: $*" >&2; exit 2; }
# the caller'"'"'s output directory, reached through the working directory once tmpfs hide its path; the tree
# and the build through descriptors (a checkout under /tmp or /run is hidden too)
if [ -n "$OUT" ]; then cd "$OUT" || die "cannot enter $OUT"; else cd /; fi
exec 8<"$FUZZ_BUILD" 9<"$ROOT" || die "cannot open $ROOT or $FUZZ_BUILD"
ROOT=/proc/self/fd/9 FUZZ_BUILD=/proc/self/fd/8
for dir in /tmp /var/tmp /dev/shm; do
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dir" || die "cannot mount a tmpfs on $dir"
done
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || die "cannot mount a tmpfs on /run"
mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup || die "cannot hide /sys/fs/cgroup"
# what the fuzzer reads, readable by its uid whatever the checkout'"'"'s permissions
tree=/run/fuzz-tree
mkdir -p "$tree/src" "$tree/lua" "$tree/lib/lunas" "$tree/support" || die "mkdir failed"
cp "$ROOT"/src/*.c "$tree/src/" && cp -R "$ROOT/lua/lunas" "$tree/lua/" &&
    cp "$ROOT/tests/fuzz/fuzz.lua" "$ROOT/tests/fuzz/templates.lua" "$tree/" &&
    cp "$ROOT/tests/support/util.lua" "$tree/support/" && cp "$FUZZ_BUILD/lib/lunas/core.so" "$tree/lib/lunas/" ||
    die "cannot copy the tree"
chmod -R a+rX "$tree"
exec 8<&- 9<&-
out=/run/fuzz-out
mkdir -p "$out" && chown "$FUZZ_UID:$FUZZ_UID" "$out" || die "cannot make $out"
SAN=""
if [ -n "$PRELOAD" ]; then
    SAN="LD_PRELOAD=$PRELOAD"
    SAN="$SAN ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:exitcode=86:abort_on_error=0:verify_asan_link_order=0:log_path=$out/sanitizer"
    SAN="$SAN UBSAN_OPTIONS=halt_on_error=1:exitcode=86:print_stacktrace=1:log_path=$out/sanitizer"
fi
# shellcheck disable=SC2086
setpriv --reuid="$FUZZ_UID" --regid="$FUZZ_UID" --clear-groups --inh-caps=-all --bounding-set=-all \
    unshare --user --map-root-user --pid --fork --kill-child --mount --net --uts --ipc --cgroup --mount-proc \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LUNAS_ROOT="$tree" \
        LUA_PATH="$tree/lua/?.lua;$tree/lua/?/init.lua;$tree/?.lua" LUA_CPATH="$tree/lib/?.so" $SAN \
    lua5.4 "$tree/fuzz.lua" $ARGS --out "$out"
status=$?
[ $status -eq 0 ] || echo "fuzz: the fuzzer exited with status $status" >&2
sanitizer_logs=$(ls "$out" | grep "^sanitizer" | wc -l)
findings=0
[ -s "$out/findings" ] && findings=$(wc -l < "$out/findings")
if [ "$findings" -gt 0 ]; then
    echo "fuzz: findings (kind, batch seed, call, what; replay a batch with --replay SEED):"
    sed "s/^/  /" "$out/findings" | head -50
fi
if [ "$sanitizer_logs" -gt 0 ]; then
    echo "fuzz: $sanitizer_logs sanitizer reports; the first ones:"
    for log in $(ls "$out" | grep "^sanitizer" | head -3); do sed "s/^/  /" "$out/$log" | head -60; done
fi
[ -n "$OUT" ] && cp -R "$out"/. . 2>/dev/null
if [ $status -ne 0 ]; then exit 2; fi
if [ "$findings" -gt 0 ] || [ "$sanitizer_logs" -gt 0 ]; then echo "fuzz: FAIL"; exit 1; fi
echo "fuzz: PASS"
'
