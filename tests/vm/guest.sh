#!/bin/sh
# Runs inside the VM lane, as PID 1 on the overlay of the host's root: sets up a minimal system (pure cgroup v2,
# devices, tmpfs), runs the test suite as root, reports its exit status on the console and powers off.
set -u
# The initramfs left PATH=/bin; the specs run iproute2's tc, nft and friends from the sbin directories.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
fail() { echo "vm-guest: $*"; echo "LUNAS-VM-EXIT 3"; echo o > /proc/sysrq-trigger; while :; do :; done; }
# /proc, /sys and /dev were mounted by the initramfs.
mkdir -p /dev/pts /dev/shm
# The tree and the build may live under /tmp or /run, which get fresh tmpfs below: keep them reachable at a place
# of their own first.
# (A build inside the tree stays inside it: sandboxes that see the working directory see the build too.)
mkdir -p /lunas-tree
mount --bind "$LUNAS_ROOT" /lunas-tree || fail "bind the tree"
case "$LUNAS_BUILD" in
"$LUNAS_ROOT"/*) LUNAS_BUILD=/lunas-tree/${LUNAS_BUILD#"$LUNAS_ROOT"/} ;;
*) mkdir -p /lunas-build && mount --bind "$LUNAS_BUILD" /lunas-build || fail "bind the build"
   LUNAS_BUILD=/lunas-build ;;
esac
LUNAS_ROOT=/lunas-tree
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
# The security modules' interface (AppArmor's profiles are loaded through it); a kernel without it goes on.
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
# The SELinux lane (tests/vm/run.sh, VM_LANE=selinux): the kernel runs SELinux instead of AppArmor, and no init
# loaded a policy: load Debian's reference policy (the host's /etc/selinux, packages selinux-policy-default and
# policycoreutils), permissive, before anything else runs. Processes started before keep the kernel's context.
if grep -qw 'lunas.lane=selinux' /proc/cmdline; then
    mount -t selinuxfs selinuxfs /sys/fs/selinux || fail "mount selinuxfs (is SELinux on? /sys/kernel/security/lsm: $(cat /sys/kernel/security/lsm))"
    load_policy || fail "load_policy"
    echo 0 > /sys/fs/selinux/enforce || fail "permissive mode"
    echo "== VM: SELinux lane, policy $(cat /sys/fs/selinux/policyvers) loaded, enforce $(cat /sys/fs/selinux/enforce), context $(cat /proc/self/attr/current | tr -d '\0') =="
fi
# Controllers for the subtrees the specs create (a pure cgroup v2 host as most distributions run it).
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
echo 1 > /proc/sys/kernel/sysrq
hostname lunas-vm
ip link set lo up
echo "== VM: kernel $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers), LSMs: $(cat /sys/kernel/security/lsm 2>/dev/null) =="
LUNAS_BUSTED_ARGS=$(cat "$LUNAS_BUILD/vm/busted-args" 2>/dev/null)
export LUNAS_BUSTED_ARGS
cd "$LUNAS_ROOT" && LUNAS_ROOT="$LUNAS_ROOT" LUNAS_BUILD="$LUNAS_BUILD" LUNAS_VM=1 sh tests/run.sh
echo "LUNAS-VM-EXIT $?"
sync
echo o > /proc/sysrq-trigger
# PID 1 must not exit while the power-off runs (the kernel would panic): spin without touching the file system.
while :; do :; done
