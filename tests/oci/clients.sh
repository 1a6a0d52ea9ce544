#!/bin/bash
# make test-oci: the real clients of an OCI runtime -- podman (through conmon) and containerd (through ctr and the
# io.containerd.runc.v2 shim) -- driving the runtime under test, scenario by scenario, as TAP.
#
#   tests/oci/clients.sh RUNTIME [STATE_ROOT]                  (as root)
#
# RUNTIME is the runtime's path (build/bin/lunas-oci, /usr/sbin/runc, /usr/bin/crun); STATE_ROOT is where it keeps
# its state when no --root is given (podman passes none), /run/<basename of RUNTIME> by default (runc: /run/runc,
# lunas-oci: /run/lunas-oci). Exit status 0 when every scenario passed, 1 when one failed, 2 when the harness could
# not start.
#
# Environment:
#   OCI_TEST_ONLY=podman|containerd     run one client's scenarios only
#   OCI_TEST_WRAP=0                     call the runtime directly, not through the argv-logging wrapper
#   OCI_TEST_KEEP=DIR                   copy the logs (runtime argv, containerd, per-test evidence) to DIR
#   OCI_TEST_TIMEOUT=SECONDS            limit for one client call (default 60)
#   OCI_TEST_STORAGE_DRIVER=vfs         podman's storage driver (default overlay)
#   OCI_TEST_HIDE_CGROUP2=1             leave the cgroup2 hierarchy of a hybrid host unmounted inside (crun 1.8 refuses
#                                       a hybrid layout whose cgroup2 tree has controllers -- the host's has hugetlb --
#                                       but the tree rooted at our child cgroup shows none: not needed here)
#   OCI_TEST_PODMAN_LOG_LEVEL=LEVEL     podman --log-level (default warn); its stderr is part of the evidence
#   OCI_TEST_HOOK=FILE                  a bash file sourced by the inner part after the clients' scenarios, in the same
#                                       namespaces, with the same helpers (run_test, x, check_cg_file, $RTW, ...):
#                                       for checks of one's own (e.g. containerd's CRI plugin with a runtime handler)
#
# Isolation. Everything runs inside namespaces made here, and nothing the clients write reaches the host's files:
#   --net     no network at all: the containers get podman's --network none or ctr's default new network namespace
#             (the CRI-shaped one joins the namespace of a container the test made);
#   --mount   private propagation; /run is a fresh tmpfs holding every state, storage and socket directory (podman's
#             graphroot/runroot, containerd's root/state/socket, the runtime's default state root, the shims'
#             sockets); /dev/shm is a fresh tmpfs (podman's lock table); /etc, /var and /tmp are overlays with a
#             tmpfs upper layer (podman's /var/lib/containers/cache, conmon's /tmp/conmon-term.*: written there by
#             default, whatever the configuration says); /etc/containers holds this harness's containers.conf,
#             storage.conf, registries.conf (also named by CONTAINERS_CONF & co.);
#   --pid     the inner part is PID 1: when it ends, whatever it started ends with it (containerd, shims, conmon);
#   --cgroup  the harness makes one child cgroup lunas-oci-clients.PID below its own cgroup in every hierarchy (v1
#             controllers, name=systemd, the cgroup2 tree), moves into it, and only then unshares the cgroup
#             namespace, so that the namespace's root is that child; inside, /sys/fs/cgroup is a new tmpfs with every
#             hierarchy mounted again from within the namespace, i.e. rooted at the child. The absolute cgroupsPath
#             values clients pass (podman /libpod_parent/libpod-ID, containerd /NAMESPACE/ID, /kubepods/...) land
#             below our own cgroup; the scenarios check that from outside (a process of ours left in the host's
#             mount and cgroup namespaces, entered with nsenter), and the harness removes the whole subtree at the end.
# The runtime is called through a wrapper of the same basename that logs each call (caller, cwd, argv) and execs it.
set -u

die() { echo "clients.sh: $*" >&2; exit 2; }
self=$(realpath "$0")
created=() hostw="" hier="" before_outside="" before_host=""

# ---------------------------------------------------------------------------------------------------------------
# Outer part: host namespaces. Makes the cgroups, starts the inner part in new namespaces, cleans up after it.
# ---------------------------------------------------------------------------------------------------------------
outer() {
  [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 RUNTIME [STATE_ROOT]"
  [ "$(id -u)" = 0 ] || die "run as root"
  local rt
  rt=$(realpath -e "$1" 2>/dev/null) || die "runtime not found: $1"
  [ -f "$rt" ] && [ -x "$rt" ] || die "runtime not executable: $rt"
  OCI_RT=$rt OCI_STATE_ROOT=${2:-/run/$(basename "$rt")}
  local state_root=$OCI_STATE_ROOT
  local t
  for t in podman conmon ctr containerd containerd-shim-runc-v2 unshare nsenter script timeout busybox tar \
           findmnt realpath; do
    command -v "$t" >/dev/null || die "missing program: $t (make test-oci installs OCI_TEST_PACKAGES)"
  done

  cgname=lunas-oci-clients.$$
  hostw=$(mktemp -d /tmp/lunas-oci-clients.XXXXXX) || die "mktemp failed"
  created=()
  trap outer_cleanup EXIT
  trap 'exit 130' INT TERM HUP    # (until the inner part runs; then see below)

  # The cgroup hierarchies: "type|mountpoint|mount options|our own directory" per line.
  local fstype mp root sopts key opts own dir ctrls p hidecg2
  hidecg2=${OCI_TEST_HIDE_CGROUP2:-0}
  while read -r fstype mp root sopts; do
    if [ "$fstype" = cgroup2 ]; then
      own=$(sed -n 's/^0:://p' /proc/self/cgroup)
      opts=$(echo "$sopts" | tr , '\n' | grep -vx -e rw -e ro | paste -sd, -)
    else
      opts=$(echo "$sopts" | tr , '\n' | grep -vx -e rw -e ro -e clone_children -e noprefix -e xattr -e cpuset_v2_mode \
             | grep -v '^release_agent=' | paste -sd, -)
      key=${opts%%,*}
      own=""
      while IFS=: read -r _ ctrls p; do
        case ",$ctrls," in *",$key,"*) own=$p ;; esac
      done < /proc/self/cgroup
    fi
    [ -n "$own" ] || die "no entry for $mp ($sopts) in /proc/self/cgroup"
    [[ $own/ == "${root%/}/"* ]] || die "$mp: our cgroup $own is outside the mount's root $root"
    own=${own#"${root%/}"}
    dir="$mp${own%/}"
    [ -d "$dir" ] || die "our own cgroup $dir does not exist"
    hier+="$fstype|$mp|$opts|$dir"$'\n'
  done < <(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break;
                  if (($(i+1) == "cgroup" || $(i+1) == "cgroup2") && $5 ~ "^/sys/fs/cgroup") print $(i+1), $5, $4, $(i+3) }' \
                /proc/self/mountinfo)
  [ -n "$hier" ] || die "no cgroup hierarchy mounted under /sys/fs/cgroup"

  # What exists already at the hierarchies' roots under the names clients use (the test reports only new ones).
  before_outside=$(outside_names "$hier")
  before_host=$(host_entries)

  # One child cgroup below our own in every hierarchy (cpuset: with the parent's cpus and mems, or nothing can join).
  while IFS='|' read -r fstype mp opts dir; do
    [ -n "$fstype" ] || continue
    mkdir "$dir/$cgname" || die "cannot create $dir/$cgname"
    created+=("$dir/$cgname")
    if [ -f "$dir/cpuset.cpus" ] && [ "$fstype" = cgroup ]; then
      cat "$dir/cpuset.cpus" > "$dir/$cgname/cpuset.cpus" && cat "$dir/cpuset.mems" > "$dir/$cgname/cpuset.mems" \
        || die "cannot initialise $dir/$cgname/cpuset.{cpus,mems}"
    fi
  done <<< "$hier"

  export OCI_RT="$rt" OCI_STATE_ROOT="$state_root" OCI_OUTER_PID=$$ OCI_HIER="$hier" OCI_CGNAME="$cgname" \
         OCI_HOSTW="$hostw" OCI_HIDE_CGROUP2="$hidecg2"
  # The process that unshares the cgroup namespace first moves itself into the new cgroups: the namespace's root
  # in every hierarchy is the cgroup the process is in at unshare time.
  # Interrupted, the harness stops unshare, whose --kill-child then ends the pid namespace and all in it.
  bash -c 'for d in "$@"; do echo $$ > "$d/cgroup.procs" || exit 2; done
           exec unshare --cgroup --mount --net --pid --fork --kill-child --propagation private -- /bin/bash "$0" --inner' \
    "$self" "${created[@]}" < /dev/null &
  inner_pid=$!
  trap 'kill -KILL $inner_pid 2>/dev/null; wait $inner_pid; exit 130' INT TERM HUP   # (unshare ignores TERM)
  wait $inner_pid 2>/dev/null
  inner_rc=$?
  [ -f "$hostw/counts" ] || { echo "Bail out! the harness's inner part ended early (exit status $inner_rc)"; exit 2; }
  # (outer_cleanup prints the last checks and the summary)
}

# The names clients give cgroups, where they would appear if the namespace did not hold: each hierarchy's root and
# our own cgroup (one line per existing directory).
outside_names() {
  local fstype mp opts dir n
  while IFS='|' read -r fstype mp opts dir; do
    [ -n "$fstype" ] || continue
    for n in libpod_parent lunas-test kubepods; do
      [ -e "$mp/$n" ] && echo "$mp/$n"
      [ -e "$dir/$n" ] && echo "$dir/$n"
    done
  done <<< "$1" | sort -u
}

# Entries of the host's shared directories named like what the clients make (state and storage directories,
# sockets, lock tables), and the runtime's default state root: none may appear because of the run (its own are in
# private mounts). (Other users of the machine may make such names meanwhile: the entries are shown.)
host_entries() {
  {
    find /run /tmp /var/tmp /var/lib /etc /dev/shm -mindepth 1 -maxdepth 1 2>/dev/null \
      | grep -E '/(conmon-term\..*|pty[0-9]+|runc-process[0-9]+|libpod.*|containers|containerd|cni|podman|netns)$'
    [ -e "$OCI_STATE_ROOT" ] && echo "$OCI_STATE_ROOT"
  } | sort
}

outer_cleanup() {
  local rc=$? d busy left after new report=""
  trap - EXIT INT TERM HUP
  trap '' PIPE          # (a reader that went away must not stop the clean-up)
  local tn=0 pass=0 fail=0
  [ -n "$hostw" ] && [ -f "$hostw/counts" ] && read -r tn pass fail < "$hostw/counts"
  # The pid namespace is gone with the inner part; its last processes may take a moment to be reaped.
  for d in "${created[@]}"; do
    for _ in $(seq 1 100); do
      busy=$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)
      [ -z "$busy" ] && break
      sleep 0.1
    done
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  left=""
  for d in "${created[@]}"; do [ -e "$d" ] && left+=" $d($(find "$d" -name cgroup.procs -exec cat {} + | tr '\n' ' '))"; done
  if [ "$tn" -gt 0 ]; then
    tn=$((tn + 1))
    if [ -z "$left" ]; then
      report+="ok $tn - every cgroup the run created (below ours) is removed"$'\n'; pass=$((pass + 1))
    else
      report+="not ok $tn - every cgroup the run created (below ours) is removed"$'\n'"#   left:$left"$'\n'
      fail=$((fail + 1))
    fi
    tn=$((tn + 1))
    after=$(outside_names "$hier")
    new=$(comm -13 <(echo "$before_outside") <(echo "$after") | grep . || true)
    if [ -z "$new" ]; then
      report+="ok $tn - no cgroup appeared outside our own cgroup (libpod_parent, lunas-test, kubepods)"$'\n'
      pass=$((pass + 1))
    else
      report+="not ok $tn - no cgroup appeared outside our own cgroup"$'\n'"$(echo "$new" | sed 's/^/#   new: /')"$'\n'
      fail=$((fail + 1))
    fi
    tn=$((tn + 1))
    new=$(comm -13 <(echo "$before_host") <(host_entries) || true)
    if [ -z "$new" ]; then
      report+="ok $tn - nothing of the clients' appeared in the host's /run, /tmp, /var/tmp, /var/lib, /etc, /dev/shm"$'\n'
      pass=$((pass + 1))
    else
      report+="not ok $tn - nothing of the clients' appeared in the host's /run, /tmp, /var/tmp, /var/lib, /etc, /dev/shm"
      report+=$'\n'"$(echo "$new" | sed 's/^/#   appeared: /')"$'\n'
      fail=$((fail + 1))
    fi
    report+="1..$tn"$'\n'
  fi
  if [ -n "${OCI_TEST_KEEP:-}" ] && [ -n "$hostw" ] && [ -d "$hostw/logs" ]; then
    mkdir -p "$OCI_TEST_KEEP" && cp -R "$hostw/logs/." "$OCI_TEST_KEEP/" && report+="# logs kept in $OCI_TEST_KEEP"$'\n'
  fi
  [ -n "$hostw" ] && rm -rf "$hostw"
  if [ "$tn" -gt 0 ]; then
    printf '%s' "$report"
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ] && exit 0
    exit 1
  fi
  exit $((rc == 0 ? 2 : rc))
}

# ---------------------------------------------------------------------------------------------------------------
# Inner part: PID 1 of a new pid namespace, in new mount, network and cgroup namespaces.
# ---------------------------------------------------------------------------------------------------------------
W=/run/lunas-oci-t            # short: unix socket paths below it must stay under 108 bytes
TMO=${OCI_TEST_TIMEOUT:-60}
TN=0 PASS=0 FAIL=0
RTW=""                        # the runtime as the clients call it (the wrapper, or the runtime itself)
SOCK=$W/containerd/containerd.sock
IMG=localhost/busybox-lunas
CTR_IMG=""
ANCHOR=""

setup_namespaces() {
  local fstype mp opts dir sub
  mount -t tmpfs -o mode=0755,size=1g lunas-oci-run /run || return 1
  mkdir -p $W/tmp $W/ev $W/cid $W/logs && chmod 1777 $W/tmp || return 1
  # For looking from outside: a process of ours that stays in the host's mount and cgroup namespaces (entered while
  # the host's /proc is still mounted here); later nsenter --target it. (A bind mount of the host's mount namespace
  # file is refused here: only newer namespaces can be bound.)
  nsenter --mount=/proc/"$OCI_OUTER_PID"/ns/mnt --cgroup=/proc/"$OCI_OUTER_PID"/ns/cgroup -- sleep infinity \
    < /dev/null > /dev/null 2>&1 &
  ANCHOR=$!
  # (it must have entered before /proc is replaced: it opens the outer process's namespaces by /proc)
  wait_for 10 test "$(readlink /proc/$ANCHOR/ns/mnt)" = "$(readlink /proc/"$OCI_OUTER_PID"/ns/mnt)" \
    || { echo "the outside anchor did not start" >&2; return 1; }
  mount -t proc -o nosuid,nodev,noexec proc /proc || return 1
  # /sys/fs/cgroup again, from inside the cgroup namespace: every hierarchy rooted at our new child cgroup.
  umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup
  mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup /sys/fs/cgroup || return 1
  while IFS='|' read -r fstype mp opts dir; do
    [ -n "$fstype" ] || continue
    if [ "$fstype" = cgroup2 ] && [ "$OCI_HIDE_CGROUP2" = 1 ] && [ "$mp" != /sys/fs/cgroup ]; then continue; fi
    sub=${mp#/sys/fs/cgroup}
    mkdir -p "/sys/fs/cgroup$sub"
    mount -t "$fstype" ${opts:+-o "$opts"} "$fstype" "/sys/fs/cgroup$sub" || return 1
  done <<< "$OCI_HIER"
  ip link set lo up 2>/dev/null
  # The outer part's directory (results, logs), reachable below $W before /tmp gets its overlay.
  mkdir -p $W/out && mount --bind "$OCI_HOSTW" $W/out || return 1
  # /dev/shm: podman keeps its lock table there (libpod_lock).
  mount -t tmpfs -o mode=1777,nosuid,nodev lunas-oci-shm /dev/shm || return 1
  # /etc, /var and /tmp: overlays with a tmpfs upper layer, so that whatever a client writes there by default
  # (podman's /var/lib/containers/cache, conmon's /tmp/conmon-term.*) stays in this namespace; the host's files
  # are read (the runtime under test may live below /tmp), never written.
  for d in /etc /var /tmp; do
    mkdir -p $W/overlay$d/upper $W/overlay$d/work
    mount -t overlay -o lowerdir=$d,upperdir=$W/overlay$d/upper,workdir=$W/overlay$d/work overlay $d || return 1
  done
  # /etc/containers: this harness's own configuration (the host's files are hidden here).
  mkdir -p $W/etc/containers /etc/containers
  mount --bind $W/etc/containers /etc/containers || return 1
  outside test -d "$(echo "$OCI_HIER" | head -n1 | cut -d'|' -f4)/$OCI_CGNAME" \
    || { echo "cannot look at the host's cgroups from outside (anchor $ANCHOR)" >&2; return 1; }
  return 0
}

# Looking from outside: a command run in the host's mount and cgroup namespaces (paths are the host's).
outside() { nsenter --target "$ANCHOR" --mount --cgroup -- "$@"; }

# A hierarchy by its key -- a v1 controller ("memory", "cpu", "name=systemd") or "unified" for cgroup2: sets
# H_IN (its mount point inside), H_MP (the host's mount point) and H_HOST (our child cgroup's directory, host path).
hier_lookup() { # KEY
  local fstype mp opts dir
  while IFS='|' read -r fstype mp opts dir; do
    [ -n "$fstype" ] || continue
    if { [ "$1" = unified ] && [ "$fstype" = cgroup2 ]; } || { [ "$fstype" = cgroup ] && [[ ,$opts, == *",$1,"* ]]; }; then
      H_IN=/sys/fs/cgroup${mp#/sys/fs/cgroup} H_MP=$mp H_HOST=$dir/$OCI_CGNAME
      return 0
    fi
  done <<< "$OCI_HIER"
  return 1
}
hier_keys() { # every hierarchy's key
  local fstype mp opts dir
  while IFS='|' read -r fstype mp opts dir; do
    [ -n "$fstype" ] || continue
    if [ "$fstype" = cgroup2 ]; then echo unified; else echo "${opts%%,*}"; fi
  done <<< "$OCI_HIER"
}

# ---- TAP ----
run_test() { # DESCRIPTION FUNCTION [ARGS]
  local desc=$1; shift
  TN=$((TN + 1))
  EV=$W/ev/$TN.txt
  CTR_IDS=()
  echo "# test $TN: $desc" > "$EV"
  local mark
  mark=$(wc -l < "$ARGV_LOG" 2>/dev/null || echo 0)
  if "$@" >> "$EV" 2>&1; then
    echo "ok $TN - $desc"; PASS=$((PASS + 1))
  else
    echo "not ok $TN - $desc"; FAIL=$((FAIL + 1))
    dump_logs "$mark" >> "$EV" 2>&1
    sed -n '2,$p' "$EV" | tail -n 120 | sed 's/^/#   /'
  fi
}
fail() { echo "FAIL: $*"; return 1; }
expect_eq() { # WHAT GOT WANT
  if [ "$2" = "$3" ]; then echo "  $1: '$2' (as expected)"; else echo "FAIL: $1: got '$2', want '$3'"; return 1; fi
}
expect_match() { # WHAT GOT ERE
  if [[ $2 =~ $3 ]]; then echo "  $1: matches /$3/"; else echo "FAIL: $1: '$2' does not match /$3/"; return 1; fi
}

# x CMD...: run one client call under timeout; stdout in OUT, stderr in ERR, status in RC; all of it in the evidence.
x() {
  echo "+ $*"
  local start=${EPOCHREALTIME/./}
  OUT=$(timeout -k 5 "$TMO" "$@" 2> $W/stderr)
  RC=$?
  ERR=$(cat $W/stderr)
  ELAPSED_MS=$(( (${EPOCHREALTIME/./} - start) / 1000 )) ELAPSED=$(( (${EPOCHREALTIME/./} - start) / 1000000 ))
  echo "  rc=$RC (${ELAPSED_MS} ms)"
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/  out: /'
  [ -n "$ERR" ] && printf '%s\n' "$ERR" | sed 's/^/  err: /'
  if [ "$RC" = 124 ] || { [ "$RC" = 137 ] && [ "$ELAPSED" -ge "$TMO" ]; }; then echo "  TIMEOUT after ${TMO}s: $1 hung"; fi
  return 0
}
# Under a terminal of its own (script(1) gives the client a pty, as a user's shell would). The commands run this
# way sleep a little before they exit: ctr cancels its copy of the pty's output when the process's exit reaches
# it, and a process that exits at once can lose its output there (seen once in ~20 runs with runc). Its stdin is
# /dev/null: ctr -t forwards stdin, script turns the end of its input into a NUL, and the container's pty echoes
# it as "^@" (echoctl): dropped from OUT, with the pty's CRs.
xt() {
  local cmd
  cmd=$(printf '%q ' "$@")
  x script -qec "$cmd" /dev/null < /dev/null
  OUT=$(printf '%s' "$OUT" | tr -d '\r')
  OUT=${OUT//'^@'/}
}

dump_logs() { # ARGV_LOG_MARK
  local id f c
  echo "---- runtime calls during this test (argv log)"
  [ -f "$ARGV_LOG" ] && tail -n +"$(($1 + 1))" "$ARGV_LOG" | tail -n 40
  for c in $W/cid/"$TN".*; do
    [ -s "$c" ] || continue
    id=$(cat "$c")
    for f in $W/storage/run/overlay-containers/"$id"/userdata/oci-log $W/storage/graph/overlay-containers/"$id"/userdata/ctr.log; do
      [ -f "$f" ] && { echo "---- $f"; tail -n 20 "$f"; }
    done
  done
  for id in "${CTR_IDS[@]}"; do
    f=$W/containerd/state/io.containerd.runtime.v2.task/lunas-test/$id/log.json
    [ -f "$f" ] && { echo "---- $f"; tail -n 20 "$f"; }
    echo "---- containerd log lines for $id"
    grep -F "$id" $W/logs/containerd.log 2>/dev/null | tail -n 20
  done
}

# ---- the runtime, podman's and containerd's configuration, the image ----
setup_runtime() {
  local name
  name=$(basename "$OCI_RT")
  ARGV_LOG=$W/logs/runtime-argv.log
  : > "$ARGV_LOG"
  if [ "${OCI_TEST_WRAP:-1}" = 0 ]; then
    RTW=$OCI_RT
  else
    # Same basename as the runtime (lunas picks its mode by argv[0]); exec keeps the pid, fds and environment.
    mkdir -p $W/wrap
    RTW=$W/wrap/$name
    cat > "$RTW" <<EOF
#!/bin/sh
# tests/oci/clients.sh: one line per call of the runtime under test, then the runtime itself in this process.
{ printf '%s caller=%s(%s) cwd=%s argv:' "\$(date +%s.%N)" "\$PPID" "\$(cat /proc/\$PPID/comm 2>/dev/null)" "\$PWD"
  for a; do printf ' %s' "\$a"; done; printf '\n'; } >> $ARGV_LOG
exec $(printf '%q' "$OCI_RT") "\$@"
EOF
    chmod 0755 "$RTW"
  fi
}

# The clients as programs on PATH (timeout runs programs, not shell functions); each execs the client:
#   pm ARGS      podman --log-level=LEVEL ARGS
#   ct ARGS      ctr --address (our containerd) -n lunas-test ARGS
#   ct-run ARGS  ctr ... run --runc-binary (the runtime under test) ARGS
setup_clients() {
  mkdir -p $W/bin
  printf '#!/bin/sh\nexec podman --log-level=%s "$@"\n' "${OCI_TEST_PODMAN_LOG_LEVEL:-warn}" > $W/bin/pm
  printf '#!/bin/sh\nexec ctr --address %s -n lunas-test "$@"\n' "$SOCK" > $W/bin/ct
  printf '#!/bin/sh\nexec ctr --address %s -n lunas-test run --runc-binary %s "$@"\n' "$SOCK" "$(printf %q "$RTW")" > $W/bin/ct-run
  chmod 0755 $W/bin/pm $W/bin/ct $W/bin/ct-run
  export PATH=$W/bin:$PATH
}

setup_podman() {
  local nofile nproc
  mkdir -p $W/storage/graph $W/storage/run $W/podman/cni $W/podman/tmp $W/home/.config $W/home/.local/share $W/xdg
  chmod 0700 $W/xdg
  export CONTAINERS_CONF=$W/etc/containers/containers.conf
  export CONTAINERS_STORAGE_CONF=$W/etc/containers/storage.conf
  export CONTAINERS_REGISTRIES_CONF=$W/etc/containers/registries.conf
  export HOME=$W/home XDG_CONFIG_HOME=$W/home/.config XDG_DATA_HOME=$W/home/.local/share XDG_RUNTIME_DIR=$W/xdg
  export TMPDIR=$W/tmp
  cat > $CONTAINERS_CONF <<EOF
# tests/oci/clients.sh: podman with the runtime under test, cgroupfs, no network, state under $W
[containers]
log_driver = "k8s-file"
netns = "none"

[engine]
runtime = "lunas-oci"
runtime_supports_json = ["crun", "runc", "lunas-oci"]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$W/podman/events.log"
tmp_dir = "$W/podman/tmp"
volume_path = "$W/storage/volumes"
image_copy_tmp_dir = "$W/tmp"

[engine.runtimes]
lunas-oci = ["$RTW"]

[network]
network_config_dir = "$W/podman/cni"
EOF
  cat > $CONTAINERS_STORAGE_CONF <<EOF
[storage]
driver = "${OCI_TEST_STORAGE_DRIVER:-overlay}"
graphroot = "$W/storage/graph"
runroot = "$W/storage/run"
EOF
  cat > $CONTAINERS_REGISTRIES_CONF <<EOF
unqualified-search-registries = []
EOF
  cat > $W/etc/containers/policy.json <<EOF
{ "default": [ { "type": "insecureAcceptAnything" } ] }
EOF
  # This machine's root lacks CAP_SYS_RESOURCE: podman's default rlimits (1048576) cannot be set. Ask for the
  # hard limits we have.
  nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] && nproc=1048576
  PODMAN_RUN=(--pull=never --network=none --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
}

cidfile() { echo "$W/cid/$TN.${EPOCHREALTIME/./}"; }   # (dump_logs finds a test's files by $TN)

build_rootfs() {
  local r=$W/rootfs
  mkdir -p $r/bin $r/etc $r/proc $r/sys $r/dev $r/tmp $r/root $r/run $r/var/tmp || return 1
  chmod 1777 $r/tmp $r/var/tmp
  cp "$(command -v busybox)" $r/bin/busybox || return 1
  chroot $r /bin/busybox --install -s /bin || return 1
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > $r/etc/passwd
  printf 'root:x:0:\nnobody:x:65534:\n' > $r/etc/group
  tar -C $r -cf $W/rootfs.tar . || return 1
}

t_image() {
  build_rootfs || fail "cannot build the busybox root"
  x pm import --change 'CMD ["/bin/sh"]' $W/rootfs.tar $IMG:latest
  [ "$RC" = 0 ] || fail "podman import failed" || return 1
  x pm save --format docker-archive -o $W/image.tar $IMG:latest
  [ "$RC" = 0 ] || fail "podman save failed" || return 1
  x pm run --rm "${PODMAN_RUN[@]}" $IMG:latest true
  [ "$RC" = 0 ] || fail "podman cannot run the image" || return 1
}

# ---------------------------------------------------------------------------------------------------------------
# podman scenarios
# ---------------------------------------------------------------------------------------------------------------
# The container's cgroup (namespace view: the path below our own cgroup) in the hierarchy KEY, from its pid.
cg_of() { # PID KEY
  local p
  if [ "$2" = unified ]; then p=$(sed -n 's/^0:://p' /proc/"$1"/cgroup)
  else p=$(awk -F: -v c="$2" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' /proc/"$1"/cgroup)
  fi
  [ -n "$p" ] && echo "$p"
}

# The cgroup file FILE of the container whose pid is PID in the hierarchy KEY, read inside and from outside (the
# host's directory below our own cgroup, where PID must be a member); both must equal WANT.
check_cg_file() { # PID KEY FILE WANT [PATH-PREFIX]
  local pid=$1 key=$2 file=$3 want=$4 prefix=${5:-} path in hostval procs
  hier_lookup "$key" || fail "no $key hierarchy" || return 1
  path=$(cg_of "$pid" "$key") || fail "pid $pid has no $key cgroup" || return 1
  echo "  pid $pid: $key cgroup $path (namespace view)"
  [ -z "$prefix" ] || [[ $path == "$prefix"* ]] || fail "$key cgroup $path is not below $prefix" || return 1
  in=$(cat "$H_IN$path/$file" 2>&1)
  expect_eq "$H_IN$path/$file (inside)" "$in" "$want" || return 1
  hostval=$(outside cat "$H_HOST$path/$file" 2>&1)
  expect_eq "$H_HOST$path/$file (from outside)" "$hostval" "$want" || return 1
  procs=$(outside cat "$H_HOST$path/cgroup.procs" 2>&1)
  grep -qx "$pid" <<< "$procs" || fail "pid $pid is not in $H_HOST$path/cgroup.procs (outside): $procs" || return 1
  echo "  pid $pid is in $H_HOST$path (outside)"
  if [ "$path" != / ] && outside test -e "$H_MP$path"; then
    fail "$H_MP$path exists at the hierarchy's root, outside our own cgroup"; return 1
  fi
}

wait_for() { # SECONDS COMMAND...: poll until COMMAND succeeds
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
pm_status() { timeout 20 podman inspect -f '{{.State.Status}}' "$1" 2>/dev/null; }
pm_status_is() { [ "$(pm_status "$1")" = "$2" ]; }
pm_pid() { timeout 20 podman inspect -f '{{.State.Pid}}' "$1" 2>/dev/null; }
pm_logs_have() { timeout 20 podman logs "$1" 2>/dev/null | grep -q "$2"; }

t_pm_run() {
  x pm run --rm --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sh -c 'echo hello from podman; echo to-stderr >&2; exit 7'
  expect_eq "exit status" "$RC" 7 || return 1
  expect_eq "stdout" "$OUT" "hello from podman" || return 1
  expect_match "stderr" "$ERR" "to-stderr"
}

t_pm_run_tty() {
  xt pm run --rm -t --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG \
     sh -c 'tty; test -c /dev/console && echo console-is-a-char-device; test -t 0 && echo stdin-is-a-tty; sleep 0.5; exit 4'
  expect_eq "exit status" "$RC" 4 || return 1
  expect_match "tty" "$OUT" $'(^|\n)/dev/pts/0(\n|$)' || return 1
  expect_match "/dev/console" "$OUT" "console-is-a-char-device" || return 1
  expect_match "stdin" "$OUT" "stdin-is-a-tty"
}

t_pm_exec() {
  x pm run -d --name pm-exec --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sleep 1000
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  x pm exec pm-exec sh -c 'echo exec out; exit 5'
  expect_eq "exec exit status" "$RC" 5 || return 1
  expect_eq "exec stdout" "$OUT" "exec out" || return 1
  x pm exec pm-exec sh -c 'tr "\000" " " < /proc/1/cmdline'
  expect_eq "pid 1 of the container (the process of process.args)" "$OUT" "sleep 1000 "
}

t_pm_exec_tty() {
  xt pm exec -t pm-exec sh -c 'tty; test -t 0 && echo stdin-is-a-tty; sleep 0.5; exit 6'
  expect_eq "exec -t exit status" "$RC" 6 || return 1
  expect_match "tty" "$OUT" $'(^|\n)/dev/pts/[0-9]+(\n|$)' || return 1
  expect_match "stdin" "$OUT" "stdin-is-a-tty" || return 1
  x pm rm -f -t 0 pm-exec
  [ "$RC" = 0 ] || fail "podman rm -f failed"
}

t_pm_stop_term() {
  x pm run -d --name pm-term --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG \
     sh -c 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done'
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  wait_for 20 pm_logs_have pm-term ready || fail "the container never said ready" || return 1
  x pm stop -t 20 pm-term
  [ "$RC" = 0 ] || fail "podman stop failed" || return 1
  [ "$ELAPSED" -lt 10 ] || fail "stop took ${ELAPSED_MS} ms: TERM was not delivered" || return 1
  x pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' pm-term
  expect_eq "state after stop" "$OUT" "exited 3" || return 1
  x pm logs pm-term
  expect_match "logs" "$OUT" "got TERM" || return 1
  x pm rm pm-term
  [ "$RC" = 0 ] || fail "podman rm failed"
}

t_pm_stop_kill() {
  x pm run -d --name pm-noterm --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG \
     sh -c 'trap "" TERM; echo ready; while :; do sleep 0.1; done'
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  wait_for 20 pm_logs_have pm-noterm ready || fail "the container never said ready" || return 1
  x pm stop -t 1 pm-noterm
  [ "$RC" = 0 ] || fail "podman stop failed" || return 1
  [ "$ELAPSED_MS" -ge 1000 ] || fail "stop took ${ELAPSED_MS} ms: the TERM grace period was not waited for" || return 1
  x pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' pm-noterm
  expect_eq "state after stop (TERM ignored, then KILL)" "$OUT" "exited 137" || return 1
  x pm rm pm-noterm
  [ "$RC" = 0 ] || fail "podman rm failed"
}

t_pm_kill() {
  local pid
  x pm run -d --name pm-kill --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sleep 1000
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  pid=$(pm_pid pm-kill)
  x pm kill pm-kill
  [ "$RC" = 0 ] || fail "podman kill failed" || return 1
  wait_for 20 pm_status_is pm-kill exited || true
  x pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' pm-kill
  expect_eq "state after kill" "$OUT" "exited 137" || return 1
  [ ! -e /proc/"$pid" ] || [ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = Z ] \
    || fail "pid $pid still alive" || return 1
  x pm rm pm-kill
  [ "$RC" = 0 ] || fail "podman rm failed"
}

t_pm_pause() {
  local pid
  x pm run -d --name pm-pause --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sleep 1000
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  pid=$(pm_pid pm-pause)
  echo "  container pid $pid"
  x pm pause pm-pause
  [ "$RC" = 0 ] || fail "podman pause failed" || return 1
  expect_eq "podman inspect status" "$(pm_status pm-pause)" paused || return 1
  check_cg_file "$pid" freezer freezer.state FROZEN /libpod_parent/ || return 1
  x pm unpause pm-pause
  [ "$RC" = 0 ] || fail "podman unpause failed" || return 1
  expect_eq "podman inspect status" "$(pm_status pm-pause)" running || return 1
  check_cg_file "$pid" freezer freezer.state THAWED /libpod_parent/ || return 1
  x pm rm -f -t 0 pm-pause
  [ "$RC" = 0 ] || fail "podman rm -f failed"
}

t_pm_resources() {
  local pid
  x pm run -d --name pm-res --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" --memory 64m --pids-limit 20 --cpus 0.5 $IMG sleep 1000
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  pid=$(pm_pid pm-res)
  echo "  container pid $pid"
  check_cg_file "$pid" memory memory.limit_in_bytes 67108864 /libpod_parent/ || return 1
  check_cg_file "$pid" pids pids.max 20 /libpod_parent/ || return 1
  check_cg_file "$pid" cpu cpu.cfs_quota_us 50000 /libpod_parent/ || return 1
  check_cg_file "$pid" cpu cpu.cfs_period_us 100000 /libpod_parent/ || return 1
  x pm rm -f -t 0 pm-res
  [ "$RC" = 0 ] || fail "podman rm -f failed"
}

t_pm_cgroup_place() {
  # Where the container's cgroups are, in every hierarchy, seen from outside: below our own cgroup.
  local pid key path ok=0
  x pm run -d --name pm-place --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sleep 1000
  [ "$RC" = 0 ] || fail "podman run -d failed" || return 1
  pid=$(pm_pid pm-place)
  echo "  /proc/$pid/cgroup (namespace view):"; sed 's/^/    /' /proc/"$pid"/cgroup
  echo "  /proc/self/mountinfo (cgroup mounts):"; grep -E ' - cgroup2? ' /proc/self/mountinfo | sed 's/^/    /'
  grep -E ' - cgroup2? ' /proc/self/mountinfo | awk '$4 != "/" { bad = 1 } END { exit bad }' \
    || fail "a cgroup hierarchy inside is not mounted at the namespace's root" || return 1
  for key in $(hier_keys); do
    [ "$key" = unified ] && [ "$OCI_HIDE_CGROUP2" = 1 ] && continue
    hier_lookup "$key"
    path=$(cg_of "$pid" "$key") || { echo "FAIL: no $key line in /proc/$pid/cgroup"; ok=1; continue; }
    if outside grep -qx "$pid" "$H_HOST${path%/}/cgroup.procs" 2>/dev/null; then
      echo "  $key: $path -> $H_HOST${path%/} (outside: pid present)"
    else
      echo "FAIL: $key: pid $pid not in $H_HOST${path%/}/cgroup.procs (outside)"; ok=1
    fi
    if [ "$path" != / ] && outside test -e "$H_MP$path"; then
      echo "FAIL: $key: $H_MP$path exists at the hierarchy's root (outside our cgroup)"; ok=1
    fi
  done
  x pm rm -f -t 0 pm-place
  return $ok
}

t_pm_readonly() {
  x pm run --rm --read-only --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sh -c 'touch /written; echo touch=$?; touch /tmp/ok && echo tmp-writable'
  expect_eq "exit status" "$RC" 0 || return 1
  expect_match "write to /" "$OUT" "touch=1" || return 1
  expect_match "error" "$ERR" "Read-only file system" || return 1
  expect_match "/tmp (podman's tmpfs)" "$OUT" "tmp-writable"
}

t_pm_user() {
  x pm run --rm --user 1000:1000 --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG sh -c 'echo $(id -u) $(id -g); grep -E "^(Uid|Gid)" /proc/self/status'
  expect_eq "exit status" "$RC" 0 || return 1
  expect_eq "id -u id -g" "$(head -n1 <<< "$OUT")" "1000 1000" || return 1
  expect_match "Uid" "$OUT" $'Uid:\t1000\t1000\t1000\t1000'
}

t_pm_caps() {
  x pm run --rm --cap-drop ALL --cap-add NET_RAW --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG grep -E '^Cap(Eff|Prm|Bnd|Inh|Amb)' /proc/self/status
  expect_eq "exit status" "$RC" 0 || return 1
  expect_match "CapEff" "$OUT" $'CapEff:\t0000000000002000' || return 1
  expect_match "CapBnd" "$OUT" $'CapBnd:\t0000000000002000' || return 1
  expect_match "CapInh" "$OUT" $'CapInh:\t0000000000000000'
}

t_pm_seccomp() {
  cat > $W/deny-mkdir.json <<'EOF'
{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [ { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 } ]
}
EOF
  x pm run --rm --security-opt seccomp=$W/deny-mkdir.json --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG \
     sh -c 'mkdir /tmp/d; echo mkdir=$?; touch /tmp/f && echo touch-ok; grep ^Seccomp: /proc/self/status'
  expect_eq "exit status" "$RC" 0 || return 1
  expect_match "mkdir" "$OUT" "mkdir=1" || return 1
  expect_match "mkdir's error" "$ERR" "Operation not permitted" || return 1
  expect_match "other calls" "$OUT" "touch-ok" || return 1
  expect_match "Seccomp" "$OUT" $'Seccomp:\t2'
}

t_pm_nnp() {
  x pm run --rm --security-opt no-new-privileges --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG grep ^NoNewPrivs: /proc/self/status
  expect_eq "exit status" "$RC" 0 || return 1
  expect_eq "with no-new-privileges" "$OUT" $'NoNewPrivs:\t1' || return 1
  x pm run --rm --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG grep ^NoNewPrivs: /proc/self/status
  expect_eq "without (podman's default)" "$OUT" $'NoNewPrivs:\t0'
}

t_pm_rootfs() {
  cp -a $W/rootfs $W/rootfs-copy || return 1
  x pm run --rm --rootfs --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $W/rootfs-copy sh -c 'echo rootfs ok; head -n1 /etc/passwd; exit 9'
  expect_eq "exit status" "$RC" 9 || return 1
  expect_eq "stdout" "$OUT" $'rootfs ok\nroot:x:0:0:root:/root:/bin/sh'
}

# OCI hooks from podman's hooks directory (the oci-hooks JSON files NVIDIA's toolkit and others install), one per
# kind. Each host hook logs its kind, the status of the state on its stdin and whether it ran in the runtime's mount
# namespace or the container's; the startContainer hook (a path of the container's) leaves its state in the
# container's /tmp for the program to read. (podman runs the poststop hooks itself; runc 1.1 runs poststart in
# create, before start: "created")
t_pm_hooks() {
  local hd=$W/hooks.d log=$W/hooks.log stage want
  mkdir -p "$hd" && : > "$log" || return 1
  cat > $W/hook.sh <<EOF
#!/bin/sh
status=\$(sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
where=container; [ "\$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] && where=runtime
echo "\$1 \$status \$where" >> $log
EOF
  chmod 0755 $W/hook.sh
  for stage in prestart createRuntime createContainer poststart poststop; do
    printf '{"version": "1.0.0", "hook": {"path": "%s", "args": ["hook.sh", "%s"]}, "when": {"always": true}, "stages": ["%s"]}\n' \
      "$W/hook.sh" "$stage" "$stage" > "$hd/$stage.json"
  done
  printf '{"version": "1.0.0", "hook": {"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start-state"]}, "when": {"always": true}, "stages": ["startContainer"]}\n' \
    > "$hd/startContainer.json"
  x pm --hooks-dir "$hd" run --rm --cidfile "$(cidfile)" "${PODMAN_RUN[@]}" $IMG \
    sh -c 'sed -n "s/.*\"status\":\"\([a-z]*\)\".*/startContainer \1/p" /tmp/start-state; exit 5'
  echo "  hooks' log:"; sed 's/^/    /' "$log"
  expect_eq "exit status" "$RC" 5 || return 1
  expect_eq "stdout" "$OUT" "startContainer created" || return 1
  want=$'^prestart creating runtime\ncreateRuntime creating runtime\ncreateContainer creating container\n'
  want+=$'poststart (created|running) runtime\npoststop stopped runtime$'
  expect_match "hooks" "$(cat "$log")" "$want"
}

# ---------------------------------------------------------------------------------------------------------------
# containerd scenarios
# ---------------------------------------------------------------------------------------------------------------
CTRD_PID=""
start_containerd() {
  local d=$W/containerd
  mkdir -p $d/root $d/state $d/opt
  cat > $d/config.toml <<EOF
# tests/oci/clients.sh: a private containerd, no CRI, no network
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  level = "debug"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
  containerd --config $d/config.toml > $W/logs/containerd.log 2>&1 &
  CTRD_PID=$!
  echo "  containerd pid $CTRD_PID"
  wait_for 30 timeout 5 ctr --address $SOCK version >/dev/null 2>&1
}

stop_containerd() {
  [ -n "$CTRD_PID" ] || return 0
  kill -TERM "$CTRD_PID" 2>/dev/null
  wait_for 15 eval '! kill -0 '"$CTRD_PID"' 2>/dev/null' || kill -KILL "$CTRD_PID" 2>/dev/null
  wait "$CTRD_PID" 2>/dev/null
  CTRD_PID=""
}

ctr_pid() { timeout 20 ctr --address $SOCK -n lunas-test task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }'; }
ctr_status() { timeout 20 ctr --address $SOCK -n lunas-test task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
ctr_status_is() { [ "$(ctr_status "$1")" = "$2" ]; }
ctr_nprocs_ge() { [ "$(timeout 20 ctr --address $SOCK -n lunas-test task ps "$1" 2>/dev/null | awk 'NR > 1' | wc -l)" -ge "$2" ]; }

t_ctr_image() {
  start_containerd || fail "containerd did not start" || return 1
  x ct images import $W/image.tar
  [ "$RC" = 0 ] || fail "ctr images import failed" || return 1
  x ct images ls -q
  CTR_IMG=$(grep -m1 busybox-lunas <<< "$OUT")
  [ -n "$CTR_IMG" ] || fail "the imported image is not listed" || return 1
  echo "  image: $CTR_IMG"
}

t_ctr_run() {
  CTR_IDS=(ctr-run)
  x ct-run --rm "$CTR_IMG" ctr-run sh -c 'echo hello from ctr; exit 7'
  expect_eq "exit status" "$RC" 7 || return 1
  expect_eq "stdout" "$OUT" "hello from ctr"
}

t_ctr_run_tty() {
  CTR_IDS=(ctr-tty)
  xt ct-run --rm -t "$CTR_IMG" ctr-tty \
     sh -c 'tty; test -c /dev/console && echo console-is-a-char-device; test -t 0 && echo stdin-is-a-tty; sleep 0.5; exit 4'
  expect_eq "exit status" "$RC" 4 || return 1
  expect_match "tty" "$OUT" $'(^|\n)/dev/pts/0(\n|$)' || return 1
  expect_match "/dev/console" "$OUT" "console-is-a-char-device" || return 1
  expect_match "stdin" "$OUT" "stdin-is-a-tty"
}

t_ctr_exec() {
  CTR_IDS=(ctr-sleep)
  x ct-run -d "$CTR_IMG" ctr-sleep sleep 1000
  [ "$RC" = 0 ] || fail "ctr run -d failed" || return 1
  x ct task exec --exec-id e1 ctr-sleep sh -c 'echo exec out; exit 5'
  expect_eq "exec exit status" "$RC" 5 || return 1
  expect_eq "exec stdout" "$OUT" "exec out"
}

t_ctr_exec_tty() {
  CTR_IDS=(ctr-sleep)
  xt ct task exec -t --exec-id e2 ctr-sleep sh -c 'tty; test -t 0 && echo stdin-is-a-tty; sleep 0.5; exit 6'
  expect_eq "exec -t exit status" "$RC" 6 || return 1
  expect_match "tty" "$OUT" $'(^|\n)/dev/pts/[0-9]+(\n|$)' || return 1
  expect_match "stdin" "$OUT" "stdin-is-a-tty"
}

t_ctr_ps() {
  local pid epid
  CTR_IDS=(ctr-sleep)
  pid=$(ctr_pid ctr-sleep)
  echo "  task pid $pid"
  x ct task exec -d --exec-id e3 ctr-sleep sleep 999
  [ "$RC" = 0 ] || fail "ctr task exec -d failed" || return 1
  x ct task ps ctr-sleep
  [ "$RC" = 0 ] || fail "ctr task ps failed" || return 1
  grep -qE "^${pid}[[:space:]]" <<< "$OUT" || fail "the task's pid $pid is not listed" || return 1
  epid=$(awk 'NR > 1 && $1 != '"$pid"' { print $1 }' <<< "$OUT")
  [ -n "$epid" ] && [ "$(tr '\0' ' ' < /proc/"$epid"/cmdline 2>/dev/null)" = "sleep 999 " ] \
    || fail "the exec'd process is not listed (or is not 'sleep 999': $epid)" || return 1
  echo "  listed: task $pid, exec $epid"
}

t_ctr_pause() {
  local pid
  CTR_IDS=(ctr-sleep)
  pid=$(ctr_pid ctr-sleep)
  x ct task pause ctr-sleep
  [ "$RC" = 0 ] || fail "ctr task pause failed" || return 1
  expect_eq "task status" "$(ctr_status ctr-sleep)" PAUSED || return 1
  check_cg_file "$pid" freezer freezer.state FROZEN /lunas-test/ctr-sleep || return 1
  x ct task resume ctr-sleep
  [ "$RC" = 0 ] || fail "ctr task resume failed" || return 1
  expect_eq "task status" "$(ctr_status ctr-sleep)" RUNNING || return 1
  check_cg_file "$pid" freezer freezer.state THAWED /lunas-test/ctr-sleep
}

t_ctr_kill() {
  CTR_IDS=(ctr-term)
  mkdir -p $W/ctr-logs
  x ct-run -d --log-uri file://$W/ctr-logs/ctr-term.log "$CTR_IMG" ctr-term \
     sh -c 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done'
  [ "$RC" = 0 ] || fail "ctr run -d failed" || return 1
  wait_for 20 grep -q ready $W/ctr-logs/ctr-term.log || fail "the container never said ready" || return 1
  x ct task kill ctr-term
  [ "$RC" = 0 ] || fail "ctr task kill failed" || return 1
  wait_for 20 ctr_status_is ctr-term STOPPED || fail "the task did not stop: $(ctr_status ctr-term)" || return 1
  grep -q "got TERM" $W/ctr-logs/ctr-term.log || fail "no 'got TERM' in the log" || return 1
  x ct task delete ctr-term
  # (ctr 1.6's task delete exits 0 and reports a non-zero exit status as a warning)
  expect_match "exit status (ctr task delete)" "$ERR" "exit with non-zero exit code 3\"" || return 1
  x ct containers rm ctr-term
}

t_ctr_kill_all() {
  local pid procs p
  CTR_IDS=(ctr-all)
  x ct-run -d "$CTR_IMG" ctr-all sh -c 'trap "" TERM; sleep 1000 & sleep 1000 & wait'
  [ "$RC" = 0 ] || fail "ctr run -d failed" || return 1
  x ct task exec -d --exec-id e1 ctr-all sleep 998
  pid=$(ctr_pid ctr-all)
  wait_for 10 ctr_nprocs_ge ctr-all 4
  x ct task ps ctr-all
  procs=$(awk 'NR > 1 { print $1 }' <<< "$OUT")
  [ "$(wc -l <<< "$procs")" -ge 4 ] || fail "expected 4 processes (sh, 2 sleeps, exec'd sleep)" || return 1
  x ct task kill -s SIGKILL --all ctr-all
  [ "$RC" = 0 ] || fail "ctr task kill --all failed" || return 1
  wait_for 20 ctr_status_is ctr-all STOPPED || fail "the task did not stop" || return 1
  for p in $procs; do
    [ -e /proc/"$p" ] && [ "$(awk '{print $3}' /proc/"$p"/stat 2>/dev/null)" != Z ] && { fail "pid $p survived"; return 1; }
  done
  echo "  all of $(echo $procs) are gone"
  x ct task delete ctr-all
  expect_match "exit status (ctr task delete)" "$ERR" "exit with non-zero exit code 137\"" || return 1
  x ct containers rm ctr-all
}

t_ctr_cri_shape() {
  local pod app netpod netapp netours
  CTR_IDS=(ctr-pod app1)
  x ct-run -d "$CTR_IMG" ctr-pod sleep 1000
  [ "$RC" = 0 ] || fail "ctr run -d (pod) failed" || return 1
  pod=$(ctr_pid ctr-pod)
  x ct-run -d --with-ns network:/proc/"$pod"/ns/net --cgroup /kubepods/podtest/app1 "$CTR_IMG" app1 sleep 1000
  [ "$RC" = 0 ] || fail "ctr run -d (app1 in the pod's network namespace) failed" || return 1
  app=$(ctr_pid app1)
  netpod=$(readlink /proc/"$pod"/ns/net) netapp=$(readlink /proc/"$app"/ns/net) netours=$(readlink /proc/self/ns/net)
  expect_eq "app1's network namespace" "$netapp" "$netpod" || return 1
  [ "$netpod" != "$netours" ] || fail "the pod shares the harness's network namespace" || return 1
  check_cg_file "$app" memory cgroup.procs "$app" /kubepods/podtest/app1 || return 1
  expect_eq "app1's pids cgroup" "$(cg_of "$app" pids)" /kubepods/podtest/app1 || return 1
  expect_eq "the pod's memory cgroup" "$(cg_of "$pod" memory)" /lunas-test/ctr-pod
}

t_ctr_cleanup() {
  local id ids ok=0
  ids=$(timeout 20 ctr --address $SOCK -n lunas-test containers ls -q 2>/dev/null)
  read -r -a CTR_IDS <<< "$(echo $ids)"
  for id in $ids; do
    if [ -n "$(ctr_status "$id")" ]; then
      x ct task kill -s SIGKILL --all "$id"
      wait_for 20 ctr_status_is "$id" STOPPED || { echo "FAIL: $id did not stop"; ok=1; }
      x ct task delete "$id"
      [ "$RC" = 0 ] || { echo "FAIL: ctr task delete $id"; ok=1; }
    fi
    x ct containers rm "$id"
    [ "$RC" = 0 ] || { echo "FAIL: ctr containers rm $id"; ok=1; }
  done
  x ct task ls -q
  [ -z "$OUT" ] || { echo "FAIL: tasks left: $OUT"; ok=1; }
  x ct containers ls -q
  [ -z "$OUT" ] || { echo "FAIL: containers left: $OUT"; ok=1; }
  x ct images rm "$CTR_IMG"
  return $ok
}

# ---------------------------------------------------------------------------------------------------------------
# What must be left after a client's scenarios: nothing.
# ---------------------------------------------------------------------------------------------------------------
procs_left() { # LEFT="pid(comm) ..." for every process of the namespace but PID 1 (this shell) and zombies
  local d p comm st rest
  LEFT=""
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] || [ "$p" = "$ANCHOR" ] && continue
    read -r comm < "$d/comm" 2>/dev/null || continue
    read -r _ _ st rest < "$d/stat" 2>/dev/null || continue
    [ "$st" = Z ] && continue
    LEFT+="$p($comm) "
  done
}

no_procs_left() { procs_left; [ -z "$LEFT" ]; }

t_nothing_left() { # STATE_DIR...
  local ok=0 d left m
  # (conmon and the podman cleanup process it starts, a shim, end shortly after the container: give them time)
  wait_for 15 no_procs_left
  if [ -n "$LEFT" ]; then echo "FAIL: processes left: $LEFT"; ok=1; else echo "  no process left in the namespace"; fi
  for d in "$@"; do
    if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then echo "FAIL: state left in $d: $(ls -A "$d")"; ok=1
    else echo "  $d: empty or absent"; fi
  done
  # No cgroup of ours with a process in it (but our own), no container cgroup left.
  m=$(find /sys/fs/cgroup -mindepth 2 -name cgroup.procs -exec grep -H . {} + 2>/dev/null | grep -v '^/sys/fs/cgroup/[^/]*/cgroup.procs:')
  if [ -n "$m" ]; then echo "FAIL: processes in container cgroups: $m"; ok=1; fi
  m=$(find /sys/fs/cgroup -mindepth 2 -type d \( -name 'libpod-*' -o -path '*/lunas-test/*' -o -path '*/kubepods/*/*' \) 2>/dev/null)
  if [ -n "$m" ]; then echo "FAIL: container cgroups left: $m"; ok=1; else echo "  no container cgroup left"; fi
  # Mounts: the same mount points as before the clients ran.
  m=$(comm -13 $W/mounts-before <(awk '{ print $5 }' /proc/self/mountinfo | sort))
  if [ -n "$m" ]; then echo "FAIL: mounts left: $m"; ok=1; else echo "  no mount left"; fi
  return $ok
}

inner() {
  local only=${OCI_TEST_ONLY:-}
  setup_namespaces || { echo "Bail out! cannot set up the private namespaces"; exit 2; }
  cd $W || exit 2     # the clients' (and so the runtime's) working directory: nothing of the caller's
  setup_runtime
  setup_clients
  setup_podman
  echo "# runtime: $OCI_RT (state root $OCI_STATE_ROOT)$([ "$RTW" != "$OCI_RT" ] && echo ", called through $RTW")"
  echo "# $(timeout 10 "$OCI_RT" --version 2>&1 | head -n1); $(podman --version); $(containerd --version | cut -d' ' -f1,3)"
  echo "# cgroup namespace root: $OCI_CGNAME below our own cgroup; work dir $W (tmpfs)"
  awk '{ print $5 }' /proc/self/mountinfo | sort > $W/mounts-before

  run_test "image: busybox root imported as $IMG, runnable" t_image
  if [ "$FAIL" != 0 ]; then echo "Bail out! no image"; finish; fi
  awk '{ print $5 }' /proc/self/mountinfo | sort > $W/mounts-before

  if [ -z "$only" ] || [ "$only" = podman ]; then
    run_test "podman run --rm: output, stderr and exit status 7" t_pm_run
    run_test "podman run --rm -t: a pty (/dev/pts/0), /dev/console, exit status" t_pm_run_tty
    run_test "podman exec into a detached container: output and exit status" t_pm_exec
    run_test "podman exec -t: a pty" t_pm_exec_tty
    run_test "podman stop: a container that traps TERM exits by it" t_pm_stop_term
    run_test "podman stop -t 1: a container that ignores TERM is killed (137)" t_pm_stop_kill
    run_test "podman kill: SIGKILL, exit 137" t_pm_kill
    run_test "podman pause/unpause: state and freezer.state (inside and outside)" t_pm_pause
    run_test "podman --memory 64m --pids-limit 20 --cpus 0.5: the v1 cgroup files (inside and outside)" t_pm_resources
    run_test "podman's /libpod_parent cgroups land below our own cgroup in every hierarchy (seen from outside)" t_pm_cgroup_place
    run_test "podman --read-only: writing to / fails" t_pm_readonly
    run_test "podman --user 1000:1000" t_pm_user
    run_test "podman --cap-drop ALL --cap-add NET_RAW: CapEff 0x2000" t_pm_caps
    run_test "podman --security-opt seccomp=FILE: mkdir fails with EPERM" t_pm_seccomp
    run_test "podman --security-opt no-new-privileges: NoNewPrivs 1" t_pm_nnp
    run_test "podman run --rootfs DIR" t_pm_rootfs
    run_test "podman --hooks-dir: every kind of OCI hook, where and when it runs, the state it reads" t_pm_hooks
    x pm rm -a -f -t 0 > $W/logs/podman-rm-all.log 2>&1
    run_test "podman: nothing left (processes, runtime state, cgroups, mounts)" t_nothing_left "$OCI_STATE_ROOT"
  fi

  if [ -z "$only" ] || [ "$only" = containerd ]; then
    run_test "containerd: started privately, image imported" t_ctr_image
    if [ -n "$CTR_IMG" ]; then
      run_test "ctr run --rm: output and exit status 7" t_ctr_run
      run_test "ctr run --rm -t: a pty (/dev/pts/0), /dev/console, exit status" t_ctr_run_tty
      run_test "ctr task exec: output and exit status" t_ctr_exec
      run_test "ctr task exec -t: a pty" t_ctr_exec_tty
      run_test "ctr task ps: the task's and an exec'd process's pids" t_ctr_ps
      run_test "ctr task pause/resume: status and freezer.state (inside and outside)" t_ctr_pause
      run_test "ctr task kill: TERM reaches a trapping task, exit status 3" t_ctr_kill
      run_test "ctr task kill -s SIGKILL --all: every process of the task dies" t_ctr_kill_all
      run_test "CRI shape: --with-ns network:(the pod's) + --cgroup /kubepods/podtest/app1" t_ctr_cri_shape
      run_test "ctr: tasks and containers removed" t_ctr_cleanup
    fi
    stop_containerd
    run_test "containerd: nothing left (processes, runtime state, cgroups, mounts)" t_nothing_left \
      "$OCI_STATE_ROOT" /run/containerd/runc/lunas-test
  fi
  if [ -n "${OCI_TEST_HOOK:-}" ]; then
    # shellcheck disable=SC1090
    . "$OCI_TEST_HOOK"
  fi
  finish
}

finish() {
  stop_containerd
  [ -n "$ANCHOR" ] && kill "$ANCHOR" 2>/dev/null && wait "$ANCHOR" 2>/dev/null
  mkdir -p $W/out/logs && cp -R $W/logs/. $W/ev $W/out/logs/ 2>/dev/null
  echo "$TN $PASS $FAIL" > $W/out/counts
  exit 0
}

if [ "${1:-}" = --inner ]; then inner; else outer "$@"; fi
