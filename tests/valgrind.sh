#!/bin/sh
# valgrind memcheck over the core specs (`make valgrind` runs `sh tests/valgrind.sh` as root from the repo root,
# on a non-sanitizer build made with -O1 -g).
#
#   LUNAS_ROOT=/abs/repo LUNAS_BUILD=/abs/build sh tests/valgrind.sh [SPEC...]
#
# Environment:
#   LUNAS_ROOT          repository root (default: the parent of this script's directory)
#   LUNAS_BUILD         the build to test (default: $LUNAS_ROOT/build/valgrind); must not have sanitizers
#   LUNAS_BUSTED_ARGS   extra busted arguments, shell-quoted (e.g. "--filter='link add'")
#   LUNAS_VALGRIND_ARGS extra valgrind arguments, split at white space (e.g. "--track-origins=yes")
#
# What it does:
#   1. re-executes itself in private network, mount, uts and ipc namespaces with a private /run, /run/netns as
#      `ip netns add` leaves it and lo up, as tests/run.sh does (the root pass only: valgrind runs as root);
#   2. runs each spec file (default tests/core_*_spec.lua) in its own busted under valgrind memcheck, with the
#      suppressions of tests/valgrind.supp, one log per process (forked children that run Lua are followed:
#      valgrind stays with a fork; an exec'd program runs natively, --trace-children=no);
#      LUNAS_VALGRIND=1 makes tests/support/helper.lua turn the tests listed in tests/support/valgrind.lua
#      into pending ones, with the reason they cannot run under valgrind;
#   3. checks that nothing leaked (tests/support/leakcheck.lua), as tests/run.sh does;
#   4. prints every memcheck error and definite leak report, a per-spec summary (tests passed/failed/pending,
#      processes valgrind followed, memcheck errors with definite leaks counted as errors, definitely lost
#      bytes/blocks summed over the processes), the suppressions used and the pending tests, and exits non-zero
#      on any failed test, memcheck error or definite leak. The logs stay in
#      $LUNAS_BUILD/valgrind-logs/SPEC/vg.PID.log.

set -u

if [ "${1:-}" != "--inner" ]; then
    case "$0" in
        /*) self=$0 ;;
        *) self=$(pwd)/$0 ;;
    esac
    if [ -z "${LUNAS_ROOT:-}" ]; then
        LUNAS_ROOT=$(cd "$(dirname "$self")/.." && pwd)
    fi
    export LUNAS_ROOT
    if [ "$(id -u)" != 0 ]; then
        echo "tests/valgrind.sh: must run as root (it creates a private network and mount namespace)" >&2
        exit 1
    fi
    command -v valgrind >/dev/null || { echo "tests/valgrind.sh: valgrind is not installed" >&2; exit 1; }
    LUNAS_HOST_NETNS=$(readlink /proc/self/ns/net)
    LUNAS_HOST_MNTNS=$(readlink /proc/self/ns/mnt)
    export LUNAS_HOST_NETNS LUNAS_HOST_MNTNS
    exec unshare --net --mount --uts --ipc --propagation private -- /bin/sh "$self" --inner "$@"
    echo "tests/valgrind.sh: unshare failed" >&2
    exit 1
fi
shift

# ---- inside the private network + mount namespace ---------------------------------

die() {
    echo "tests/valgrind.sh: $*" >&2
    exit 1
}

my_net=$(readlink /proc/self/ns/net)
my_mnt=$(readlink /proc/self/ns/mnt)
if [ -z "${LUNAS_HOST_NETNS:-}" ] || [ -z "${LUNAS_HOST_MNTNS:-}" ] ||
   [ "$my_net" = "$LUNAS_HOST_NETNS" ] || [ "$my_mnt" = "$LUNAS_HOST_MNTNS" ] ||
   [ "$my_net" = "$(readlink /proc/1/ns/net)" ] || [ "$my_mnt" = "$(readlink /proc/1/ns/mnt)" ]; then
    die "--inner must run in the private namespaces valgrind.sh creates"
fi

cd "$LUNAS_ROOT" || die "cannot cd to LUNAS_ROOT=$LUNAS_ROOT"
LUNAS_BUILD=${LUNAS_BUILD:-$LUNAS_ROOT/build/valgrind}
export LUNAS_BUILD
[ -f "$LUNAS_BUILD/lib/lunas/core.so" ] || die "no $LUNAS_BUILD/lib/lunas/core.so (make valgrind builds it)"
if nm -D "$LUNAS_BUILD/lib/lunas/core.so" 2>/dev/null | grep -q '__asan_'; then
    die "$LUNAS_BUILD has AddressSanitizer: valgrind needs a plain build"
fi

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || die "cannot mount a tmpfs on /run"
mkdir -p /run/netns /run/lunas
{ mount --bind /run/netns /run/netns && mount --make-shared /run/netns; } || die "cannot set up /run/netns"
ip link set lo up || die "cannot bring lo up"

WORK=$(mktemp -d /run/lunas-valgrind.XXXXXX) || die "mktemp failed"
# shellcheck disable=SC2317  # (called from the EXIT trap)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LUNAS_TEST_RUN=$(cat /proc/sys/kernel/random/uuid)
LUNAS_TEST_PASS=root
LUNAS_VALGRIND=1
export LUNAS_TEST_RUN LUNAS_TEST_PASS LUNAS_VALGRIND

LOGS=$LUNAS_BUILD/valgrind-logs
rm -rf "$LOGS"
mkdir -p "$LOGS" || die "cannot create $LOGS"

SPECS=""
if [ $# -gt 0 ]; then
    SPECS="$*"
else
    for spec in tests/core_*_spec.lua; do
        [ -f "$spec" ] && SPECS="$SPECS $spec"
    done
fi
[ -n "$SPECS" ] || die "no spec files"

eval "set -- ${LUNAS_BUSTED_ARGS:-}" || die "cannot parse LUNAS_BUSTED_ARGS"
VG_EXTRA=${LUNAS_VALGRIND_ARGS:-}

# memcheck's exit status for a process with errors: distinct from busted's (number of failures) and from the
# statuses the specs' children use (0-127, 125 and 127 included)
VG_STATUS=99

lua5.4 tests/support/leakcheck.lua snapshot "$WORK/before" || die "leak check snapshot failed"

STARTED=$(date +%s)
FAILED=0
for spec in $SPECS; do
    name=$(basename "$spec" .lua)
    mkdir -p "$LOGS/$name"
    echo "== $spec under valgrind =="
    t0=$(date +%s)
    # shellcheck disable=SC2086
    LUNAS_RESULTS="$WORK/$name.results" \
    valgrind --tool=memcheck --error-exitcode=$VG_STATUS --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --keep-debuginfo=yes --track-fds=no --trace-children=no --num-callers=30 -s \
        --suppressions="$LUNAS_ROOT/tests/valgrind.supp" --log-file="$LOGS/$name/vg.%p.log" $VG_EXTRA \
        lua5.4 /usr/bin/busted \
        --helper=tests/support/helper.lua \
        -o tests/support/output.lua \
        --lpath="$LUNAS_ROOT/lua/?.lua;$LUNAS_ROOT/lua/?/init.lua;$LUNAS_ROOT/tests/?.lua" \
        --cpath="$LUNAS_BUILD/lib/?.so" \
        --no-shuffle --no-recursive \
        "$@" "$spec"
    echo "$? $(($(date +%s) - t0))" > "$WORK/$name.status"
    echo
done
ELAPSED=$(($(date +%s) - STARTED))

echo "== leak check =="
lua5.4 tests/support/leakcheck.lua check "$WORK/before" "$WORK/leak.results"
rc=$?
if [ $rc -ne 0 ] || ! grep -q '^passed 1' "$WORK/leak.results" 2>/dev/null; then
    echo "leak check: failed (status $rc)"
    FAILED=1
fi
echo

# ---- memcheck reports -----------------------------------------------------------------
# A log's error count is its "ERROR SUMMARY" line; a process killed by a signal (tests kill their children)
# writes none and is counted as "no summary" (it reported whatever errors it had before, which are counted
# from their "Invalid ..." / "... uninitialised ..." lines).
report=0
for spec in $SPECS; do
    name=$(basename "$spec" .lua)
    for log in "$LOGS/$name"/vg.*.log; do
        [ -f "$log" ] || continue
        if ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
            if grep -q 'ERROR SUMMARY: [1-9]' "$log" || grep -Eq '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Argument|.* definitely lost)' "$log"; then
                [ $report = 0 ] && echo "== memcheck reports =="
                report=1
                echo "--- $log"
                # the reports, without valgrind's banner
                sed -n '/^==[0-9]*== Copyright\|^==[0-9]*== Using Valgrind\|^==[0-9]*== Command:/d; /^==[0-9]*== Parent PID/d; p' "$log"
            fi
        fi
    done
done
[ $report = 1 ] && echo

# ---- summary ------------------------------------------------------------------------
echo "== valgrind summary ($(valgrind --version), build $LUNAS_BUILD) =="
printf '%-26s %6s %6s %6s %7s %6s %7s %11s %6s %5s\n' spec passed failed errors pending procs memchk "lost bytes" blocks time
total_err=0; total_lost=0; total_failed=0
for spec in $SPECS; do
    name=$(basename "$spec" .lua)
    res="$WORK/$name.results"
    read -r status secs < "$WORK/$name.status"
    passed=$(awk '$1 == "passed" { print $2 }' "$res" 2>/dev/null); passed=${passed:-0}
    failed=$(awk '$1 == "failed" { print $2 }' "$res" 2>/dev/null); failed=${failed:-0}
    errors=$(awk '$1 == "errors" { print $2 }' "$res" 2>/dev/null); errors=${errors:-0}
    pending=$(grep -c '^pending ' "$res" 2>/dev/null); pending=${pending:-0}
    procs=$(find "$LOGS/$name" -name 'vg.*.log' | wc -l)
    # errors: the summaries' counts plus, for processes without a summary, their error headers
    memchk=$(cat "$LOGS/$name"/vg.*.log 2>/dev/null | awk '
        /ERROR SUMMARY:/ { for (i = 1; i <= NF; i++) if ($i == "SUMMARY:") n += $(i + 1) }
        END { print n + 0 }')
    nosummary=0
    for log in "$LOGS/$name"/vg.*.log; do
        [ -f "$log" ] || continue
        grep -q 'ERROR SUMMARY' "$log" && continue
        k=$(grep -Ec '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination|Argument)' "$log")
        nosummary=$((nosummary + k))
    done
    memchk=$((memchk + nosummary))
    lost=$(cat "$LOGS/$name"/vg.*.log 2>/dev/null | awk '
        /definitely lost:/ { gsub(",", ""); for (i = 1; i <= NF; i++) if ($i == "lost:") { b += $(i + 1); k += $(i + 4) } }
        END { print b + 0, k + 0 }')
    lost_bytes=${lost% *}
    lost_blocks=${lost#* }
    printf '%-26s %6s %6s %6s %7s %6s %7s %11s %6s %4ss\n' "$name" "$passed" "$failed" "$errors" "$pending" \
        "$procs" "$memchk" "$lost_bytes" "$lost_blocks" "$secs"
    total_err=$((total_err + memchk)); total_lost=$((total_lost + lost_bytes))
    if [ ! -s "$res" ]; then
        echo "  $name: busted recorded no results (status $status)"
        total_failed=$((total_failed + 1))
    elif [ "$status" -ne 0 ] && [ "$status" -ne $VG_STATUS ] && [ "$((failed + errors))" -eq 0 ]; then
        echo "  $name: busted exited with status $status without reporting a failure"
        total_failed=$((total_failed + 1))
    fi
    total_failed=$((total_failed + failed + errors))
done

# which suppressions matched, and how often (-s lists them at the end of each log)
used=$(cat "$LOGS"/*/vg.*.log 2>/dev/null | awk '
    /used_suppression:/ { for (i = 1; i <= NF; i++) if ($i == "used_suppression:") n[$(i + 2)] += $(i + 1) }
    END { for (k in n) printf "  %-32s %d\n", k, n[k] }' | sort)
if [ -n "$used" ]; then
    echo
    echo "suppressions used (tests/valgrind.supp), errors suppressed:"
    echo "$used"
fi

pend=$(cat "$WORK"/*.results 2>/dev/null | grep -c '^pending ')
if [ "${pend:-0}" -gt 0 ]; then
    echo
    echo "pending:"
    cat "$WORK"/*.results | grep '^pending ' | sed 's/^pending //' \
        | awk -F '\t' '{ printf "  %s%s (%s)\n", $1, ($2 == "" ? "" : ": " $2), $3 }'
fi

echo
echo "logs: $LOGS"
echo "$total_failed failed tests, $total_err memcheck errors, $total_lost bytes definitely lost; ${ELAPSED}s"
if [ "$total_failed" -ne 0 ] || [ "$total_err" -ne 0 ] || [ "$total_lost" -ne 0 ] || [ "$FAILED" -ne 0 ]; then
    exit 1
fi
exit 0
