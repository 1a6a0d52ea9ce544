#!/bin/sh
# Test runner for lunas (`make test` runs `sh tests/run.sh` as root from the repo root).
#
#   LUNAS_ROOT=/abs/repo sh tests/run.sh
#
# Environment:
#   LUNAS_ROOT         repository root (default: the parent of this script's directory)
#   LUNAS_BUSTED_ARGS  extra busted arguments for both passes, shell-quoted
#                      (e.g. "--filter='link add'"); a --tags narrows the rootless
#                      pass too (that pass only ever runs #rootless tests)
#   LUNAS_SANITIZE=1   the build has sanitizers: sets ASAN_OPTIONS/UBSAN_OPTIONS
#
# What it does:
#   1. re-executes itself in private network, mount, uts and ipc namespaces (unshare), mounts
#      a tmpfs on /run (so /run/netns and /run/lunas are private to the run) and
#      brings lo up; nothing a test does to mounts or the network reaches the host;
#   2. runs every tests/*_spec.lua as root (files in sorted order);
#   3. runs the tests tagged #rootless again as uid/gid 65534 (setpriv), with a
#      fresh HOME, and /etc/subuid + /etc/subgid bind-mounted (in the private
#      mount namespace only) from copies that add "65534:200000:65536";
#   4. checks that nothing leaked (tests/support/leakcheck.lua), counted as one test;
#   5. prints the pending tests, if any, and as the very last line
#      "N passed, N failed" (", N skipped" when tests were pending). Exits non-zero
#      if anything failed or errored.
# Specs see LUNAS_TEST_PASS=root|rootless, LUNAS_ROOT, and LUNAS_HOST_NETNS /
# LUNAS_HOST_MNTNS (readlink of the runner's namespaces before unshare).

set -u

ROOTLESS_UID=65534
ROOTLESS_GID=65534
SUBID_LINE="$ROOTLESS_UID:200000:65536"

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
        echo "tests/run.sh: must run as root (it creates a private network and mount namespace)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    # the host's namespaces, for specs that check they run elsewhere (an
    # unprivileged uid cannot readlink /proc/1/ns/*)
    LUNAS_HOST_NETNS=$(readlink /proc/self/ns/net)
    LUNAS_HOST_MNTNS=$(readlink /proc/self/ns/mnt)
    export LUNAS_HOST_NETNS LUNAS_HOST_MNTNS
    exec unshare --net --mount --uts --ipc --propagation private -- /bin/sh "$self" --inner
    echo "tests/run.sh: unshare failed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# ---- inside the private network + mount namespace ---------------------------------

die() {
    echo "tests/run.sh: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

# never go on in the host's namespaces (e.g. someone ran "run.sh --inner" by hand)
my_net=$(readlink /proc/self/ns/net)
my_mnt=$(readlink /proc/self/ns/mnt)
if [ -z "${LUNAS_HOST_NETNS:-}" ] || [ -z "${LUNAS_HOST_MNTNS:-}" ] ||
   [ "$my_net" = "$LUNAS_HOST_NETNS" ] || [ "$my_mnt" = "$LUNAS_HOST_MNTNS" ] ||
   [ "$my_net" = "$(readlink /proc/1/ns/net)" ] || [ "$my_mnt" = "$(readlink /proc/1/ns/mnt)" ]; then
    die "--inner must run in the private namespaces run.sh creates"
fi

cd "$LUNAS_ROOT" || die "cannot cd to LUNAS_ROOT=$LUNAS_ROOT"
LUNAS_BUILD=${LUNAS_BUILD:-$LUNAS_ROOT/build}
export LUNAS_BUILD

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || die "cannot mount a tmpfs on /run"
# /run/netns as `ip netns add` leaves it (a shared bind mount of itself), set up
# before the leak snapshot so creating the first named netns is not a "leak"
mkdir -p /run/netns /run/lunas
{ mount --bind /run/netns /run/netns && mount --make-shared /run/netns; } || die "cannot set up /run/netns"
ip link set lo up || die "cannot bring lo up"

WORK=$(mktemp -d /run/lunas-tests.XXXXXX) || die "mktemp failed"
chmod 0711 "$WORK"
# shellcheck disable=SC2317  # (called from the EXIT trap)
cleanup() {
    [ -n "${RL_CGROUP_DIRS:-}" ] && lua_run tests/support/cgroup_delegate.lua remove "$RL_CGROUP" 2>/dev/null
    umount /etc/subuid 2>/dev/null
    umount /etc/subgid 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# marks every process of this run (leak check)
LUNAS_TEST_RUN=$(cat /proc/sys/kernel/random/uuid)
export LUNAS_TEST_RUN

if [ "${LUNAS_SANITIZE:-}" = 1 ]; then
    # The specs load the instrumented core.so into a plain lua5.4: its runtime must come first. Leak detection
    # stays off: the interpreter and the tools the specs run are not instrumented.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:print_stacktrace=1:verify_asan_link_order=0}
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
    LD_PRELOAD=$(gcc -print-file-name=libasan.so)
    export ASAN_OPTIONS UBSAN_OPTIONS LD_PRELOAD
fi

# subordinate ids for the rootless pass: copies of the real files plus one line,
# bind-mounted over /etc/subuid and /etc/subgid in this mount namespace only
for f in subuid subgid; do
    if [ -f /etc/$f ]; then
        cat /etc/$f > "$WORK/$f"
        echo "$SUBID_LINE" >> "$WORK/$f"
        chmod 0644 "$WORK/$f"
        mount --bind "$WORK/$f" /etc/$f || die "cannot bind-mount /etc/$f"
    else
        echo "tests/run.sh: warning: no /etc/$f on this host; newuidmap tests will be pending" >&2
    fi
done

# HOME and XDG_RUNTIME_DIR for the rootless pass
RL_HOME=$(mktemp -d "$WORK/home.XXXXXX") || die "mktemp failed"
mkdir -p "$RL_HOME/run"
chmod 0700 "$RL_HOME" "$RL_HOME/run"
chown -R "$ROOTLESS_UID:$ROOTLESS_GID" "$RL_HOME"

# A scratch directory the default sandbox shows (below the working directory, the checkout, which it shows
# read-only), writable by both passes: fixtures that sandboxes must see (tests/security_spec.lua).
mkdir -p "$LUNAS_BUILD/scratch" && chmod 1777 "$LUNAS_BUILD/scratch" || die "cannot make $LUNAS_BUILD/scratch"

# spec files, sorted (the glob sorts; busted --sort-files sorts again)
SPECS=""
for spec in tests/*_spec.lua; do
    [ -f "$spec" ] && SPECS="$SPECS $spec"
done
[ -n "$SPECS" ] || die "no tests/*_spec.lua"

# extra busted arguments, honouring shell quoting
eval "set -- ${LUNAS_BUSTED_ARGS:-}" || die "cannot parse LUNAS_BUSTED_ARGS"

# a cgroup delegated to the rootless uid (as a system delegates one to a user session), so the rootless pass
# gets limits too; its directories (the leaf the rootless processes live in) are in RL_CGROUP_DIRS
RL_CGROUP=lunas-rootless-tests-$$
lua_run() {
    LUA_PATH="$LUNAS_ROOT/lua/?.lua;$LUNAS_ROOT/lua/?/init.lua;$LUNAS_ROOT/tests/?.lua;;" \
    LUA_CPATH="$LUNAS_BUILD/lib/?.so;;" lua5.4 "$@"
}
RL_CGROUP_DIRS=$(lua_run tests/support/cgroup_delegate.lua setup "$ROOTLESS_UID" "$ROOTLESS_GID" "$RL_CGROUP") ||
    die "cannot delegate a cgroup to uid $ROOTLESS_UID"
export RL_CGROUP_DIRS

# run a command as the rootless uid, with its own environment, inside the delegated cgroup
rl() {
    sh -c 'for d in $RL_CGROUP_DIRS; do echo $$ > "$d/cgroup.procs" || exit 125; done; exec "$@"' rl \
    setpriv --reuid="$ROOTLESS_UID" --regid="$ROOTLESS_GID" --clear-groups --inh-caps=-all \
        env HOME="$RL_HOME" USER=nobody LOGNAME=nobody XDG_RUNTIME_DIR="$RL_HOME/run" \
        LUNAS_TEST_PASS=rootless LUNAS_RESULTS="$RL_HOME/rootless.results" "$@"
}

# busted with our helper and output handler; $RUNNER (empty or "rl") in front
busted_run() {
    # shellcheck disable=SC2086
    $RUNNER lua5.4 /usr/bin/busted \
        --helper=tests/support/helper.lua \
        -o tests/support/output.lua \
        --lpath="$LUNAS_ROOT/lua/?.lua;$LUNAS_ROOT/lua/?/init.lua;$LUNAS_ROOT/tests/?.lua" \
        --cpath="$LUNAS_BUILD/lib/?.so" \
        --no-shuffle --sort-files --no-recursive \
        "$@" $SPECS
}

FAILED_EXTRA=0
RUN_ERRORS=""
runner_error() {
    FAILED_EXTRA=$((FAILED_EXTRA + 1))
    RUN_ERRORS="$RUN_ERRORS
  $*"
}

# busted's exit status must agree with what the output handler recorded
check_status() { # check_status PASS STATUS RESULTS
    if [ ! -s "$3" ]; then
        runner_error "$1 pass: busted exited with status $2 and recorded no results"
    elif [ "$2" -ne 0 ] && ! grep -Eq '^(failed|errors) [1-9]' "$3"; then
        runner_error "$1 pass: busted exited with status $2 without reporting a failure"
    fi
}

lua5.4 tests/support/leakcheck.lua snapshot "$WORK/before" "$RL_HOME/run" || die "leak check snapshot failed"

# ---- pass 1: root -------------------------------------------------------------------
echo "== root pass: $(id), $my_net =="
(
    RUNNER=
    LUNAS_TEST_PASS=root LUNAS_RESULTS="$WORK/root.results"
    export LUNAS_TEST_PASS LUNAS_RESULTS
    busted_run "$@"
)
check_status root $? "$WORK/root.results"

# ---- pass 2: rootless ---------------------------------------------------------------
echo
echo "== rootless pass: $(rl id 2>&1), $my_net =="
# what the rootless pass loads: specs and helpers, Lua modules, the C module (and
# the host binary); other build products (benchmarks, rootfs trees) do not matter
unreadable=$(rl find "$LUNAS_ROOT/tests" "$LUNAS_ROOT/lua" "$LUNAS_BUILD/lib" "$LUNAS_BUILD/bin" \
                ! -type l \( ! -readable -o -type d ! -executable \) -print 2>&1 \
             | grep -v 'No such file or directory$' | head -20)
if ! rl test -x "$LUNAS_ROOT" || [ -n "$unreadable" ]; then
    # The checkout is not readable by the rootless uid (a clone under /root, say): give that pass a readable
    # copy of the tree and the build, inside this run's private /run.
    echo "(uid $ROOTLESS_UID cannot read $LUNAS_ROOT: the rootless pass runs on a copy under $WORK/tree)"
    mkdir -p "$WORK/tree/build"
    for entry in tests lua examples src rockspec man completions doc config.ld Makefile README.md; do
        [ -e "$LUNAS_ROOT/$entry" ] && cp -a "$LUNAS_ROOT/$entry" "$WORK/tree/"
    done
    for entry in bin lib obj tests; do
        [ -e "$LUNAS_BUILD/$entry" ] && cp -a "$LUNAS_BUILD/$entry" "$WORK/tree/build/"
    done
    chmod -R a+rX "$WORK/tree"
    mkdir -p "$WORK/tree/build/scratch" && chmod 1777 "$WORK/tree/build/scratch"
    chmod a+x "$WORK"
    RL_ROOT="$WORK/tree"
else
    RL_ROOT="$LUNAS_ROOT"
fi
(
    if [ "$RL_ROOT" != "$LUNAS_ROOT" ]; then
        LUNAS_ROOT=$RL_ROOT
        LUNAS_BUILD=$RL_ROOT/build
        export LUNAS_ROOT LUNAS_BUILD
    fi
    cd "$LUNAS_ROOT" || exit 1
    RUNNER=rl
    busted_run "$@"
)
rc=$?
cp "$RL_HOME/rootless.results" "$WORK/rootless.results" 2>/dev/null
rm -f "$RL_HOME/rootless.results"
check_status rootless $rc "$WORK/rootless.results"

[ -n "$RL_CGROUP_DIRS" ] && { lua_run tests/support/cgroup_delegate.lua remove "$RL_CGROUP" ||
    runner_error "cannot remove the rootless pass's cgroup $RL_CGROUP"; }

# ---- leak check ---------------------------------------------------------------------
echo
echo "== leak check =="
lua5.4 tests/support/leakcheck.lua check "$WORK/before" "$WORK/leak.results" "$RL_HOME/run"
rc=$?
if [ $rc -ne 0 ] || [ ! -s "$WORK/leak.results" ]; then
    runner_error "leak check: exited with status $rc"
fi

# ---- summary ------------------------------------------------------------------------
sum() { # sum KEY FILE...
    key=$1; shift
    cat "$@" 2>/dev/null | awk -v k="$key" '$1 == k { s += $2 } END { print s + 0 }'
}
R="$WORK/root.results $WORK/rootless.results $WORK/leak.results"
# shellcheck disable=SC2086
passed=$(sum passed $R)
# shellcheck disable=SC2086
failed=$(( $(sum failed $R) + $(sum errors $R) + FAILED_EXTRA ))
skipped=0
for pass in root rootless; do
    n=$(grep -c '^pending ' "$WORK/$pass.results" 2>/dev/null)
    skipped=$((skipped + ${n:-0}))
done

echo
if [ -n "$RUN_ERRORS" ]; then
    echo "runner errors:$RUN_ERRORS"
    echo
fi
if [ "$skipped" -gt 0 ]; then
    echo "pending (counted as skipped):"
    for pass in root rootless; do
        grep '^pending ' "$WORK/$pass.results" 2>/dev/null | sed 's/^pending //' \
            | awk -F '\t' -v p="$pass" '{ printf "  [%s] %s%s (%s)\n", p, $1, ($2 == "" ? "" : ": " $2), $3 }'
    done
    echo
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
