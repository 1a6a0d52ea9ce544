#!/bin/sh
# make test-vm: the whole suite again on Debian's stock kernel (pure cgroup v2, netem, dummy, vlan, ipvlan, ... as
# modules), booted under qemu with software emulation (TCG: a KVM boot hung on these machines), the host's root
# shared read-only over 9p under a tmpfs overlay. The guest's summary line and exit status come back here.
#
# Environment: LUNAS_ROOT, LUNAS_BUILD (default ROOT/build), VM_TIMEOUT (seconds for the whole VM run, default
# 5400), VM_MEMORY (MiB, default 3072), LUNAS_BUSTED_ARGS (passed on to the guest's tests/run.sh), VM_LANE
# ("default": Debian's kernel as it boots, AppArmor its security module; "selinux": SELinux instead, permissive,
# with Debian's reference policy loaded by tests/vm/guest.sh: make test-vm-selinux runs the LSM specs there).
set -eu

ROOT=${LUNAS_ROOT:-$(pwd)}
BUILD=${LUNAS_BUILD:-$ROOT/build}
CACHE=$BUILD/vm-cache
WORKDIR=$BUILD/vm
VM_TIMEOUT=${VM_TIMEOUT:-5400}
VM_MEMORY=${VM_MEMORY:-3072}
VM_LANE=${VM_LANE:-default}
case "$VM_LANE" in
default) LOG=$WORKDIR/console.log; lane_args="" ;;
# (security= picks the one exclusive module; enforcing=0 keeps it permissive, the lane looks at labels only)
selinux) LOG=$WORKDIR/console-selinux.log; lane_args=" security=selinux selinux=1 enforcing=0 lunas.lane=selinux" ;;
*) echo "vm: VM_LANE must be default or selinux, not $VM_LANE" >&2; echo "0 passed, 1 failed"; exit 1 ;;
esac

say() { echo "vm: $*" >&2; }
die() { say "$*"; echo "0 passed, 1 failed"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the guest shares the host's root file system)"
[ -x "$BUILD/bin/lunas" ] || die "no build in $BUILD: run make first"
if [ "$VM_LANE" = selinux ]; then
    [ -f /etc/selinux/config ] && command -v load_policy >/dev/null ||
        die "the SELinux lane needs Debian's reference policy (selinux-policy-default, policycoreutils)"
fi

# ---- the kernel: the one linux-image-amd64 depends on, unpacked into the cache --------------------------------
package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$package" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
fi
[ -n "$package" ] || die "cannot tell which kernel linux-image-amd64 depends on (apt-cache depends)"
version=${package#linux-image-}
kroot=$CACHE/$version
if [ ! -f "$kroot/boot/vmlinuz-$version" ] || [ ! -f "$kroot/lib/modules/$version/modules.dep" ]; then
    say "fetching $package"
    rm -rf "$kroot" "$CACHE/download"
    mkdir -p "$CACHE/download"
    (cd "$CACHE/download" && apt-get download "$package" >/dev/null 2>&1) || die "apt-get download $package failed"
    dpkg-deb -x "$CACHE"/download/*.deb "$kroot" || die "dpkg-deb -x failed"
    rm -rf "$CACHE/download"
    depmod -b "$kroot" "$version" || die "depmod failed"
fi
modules_dir=$kroot/lib/modules/$version

# ---- the initramfs: busybox, /init and the modules in dependency order ----------------------------------------
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file_type=$(od -An -c -N4 "$busybox" | tr -d ' ') || file_type=""
[ "$file_type" = '177ELF' ] || die "busybox (package busybox-static) not found"
stage=$WORKDIR/initramfs
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib/modules" "$stage/proc" "$stage/sys" "$stage/dev"
cp "$busybox" "$stage/bin/busybox"
cp "$ROOT/tests/vm/init" "$stage/init"
chmod 0755 "$stage/init" "$stage/bin/busybox"
lua5.4 "$ROOT/tests/vm/modules.lua" "$modules_dir" "$ROOT/tests/vm/modules" > "$stage/lib/modules/load-order" \
    || die "resolving modules failed"
while read -r module; do
    mkdir -p "$stage/lib/modules/$(dirname "$module")"
    cp "$modules_dir/$module" "$stage/lib/modules/$module"
done < "$stage/lib/modules/load-order"
# The tree and build paths travel as files, not on the kernel command line, which splits them at spaces.
printf '%s' "$ROOT" > "$stage/lunas-root" && printf '%s' "$BUILD" > "$stage/lunas-build" ||
    die "cannot write the paths into the initramfs"
initrd=$WORKDIR/initramfs.cpio.gz
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd" || die "cpio failed"

# The guest's runner takes the same LUNAS_BUSTED_ARGS (a --filter, say), through the shared build directory.
printf '%s' "${LUNAS_BUSTED_ARGS:-}" > "$WORKDIR/busted-args" || die "cannot write $WORKDIR/busted-args"

# ---- boot -----------------------------------------------------------------------------------------------------
say "booting $version under TCG, lane $VM_LANE ($(wc -l < "$stage/lib/modules/load-order") modules), bound ${VM_TIMEOUT}s, console log $LOG"
start=$(date +%s)
set +e
timeout --foreground -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp 2 -m "$VM_MEMORY" -nodefaults -no-reboot -display none \
    -serial stdio -monitor none \
    -kernel "$kroot/boot/vmlinuz-$version" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init$lane_args" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    < /dev/null 2>&1 | tr -d '\r' | tee "$LOG"
status=$(grep -a '^LUNAS-VM-EXIT ' "$LOG" | tail -n 1 | awk '{ print $2 }')
set -e
elapsed=$(( $(date +%s) - start ))
summary=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -n 1)

echo
if [ -z "$status" ]; then
    if [ "$elapsed" -ge "$VM_TIMEOUT" ]; then say "the VM did not finish within ${VM_TIMEOUT}s"; else say "the VM stopped without reporting"; fi
    say "console log: $LOG"
    # whatever the guest finished counts, and the unfinished run is one failure more
    passed=$(echo "$summary" | awk '{ print $1 + 0 }')
    failed=$(echo "$summary" | awk '{ print $3 + 1 }')
    echo "$passed passed, $failed failed"
    exit 1
fi
say "kernel $version, lane $VM_LANE, ${elapsed}s, guest exit status $status, console log $LOG"
[ -n "$summary" ] || { echo "0 passed, 1 failed"; exit 1; }
echo "$summary"
[ "$status" = 0 ]
