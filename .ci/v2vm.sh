#!/usr/bin/env bash
# .ci/v2vm.sh 'COMMAND' - run COMMAND (bash -c) as root inside a throwaway QEMU VM whose kernel
# has cgroup v2 only; prints its stdout/stderr (streamed), exits with its exit status.
# .ci/v2vm.sh --install - only install what it needs (exit 0), or say why it cannot (exit 3).
# Run as root on the host. The first call installs qemu from Debian's apt and unpacks Debian's
# kernel into the cache (~2-3 min); later calls boot in ~5-9 s of guest time (~13 s wall for
# a trivial command; ~25 s with V2VM_INIT=systemd). .ci/v2vm-job is the project's CI job on it.
#
#   .ci/v2vm.sh '.venv-test/bin/python -m pytest -q tests/integration/test_cgroups.py'
#
# The guest: Debian 12's stock kernel (linux-image-amd64, 6.1), booted with cgroup_no_v1=all;
# cgroup2 is mounted on /sys/fs/cgroup (nsdelegate, as systemd does), its cgroup.controllers
# lists cpuset cpu io memory hugetlb pids rdma misc, and cgroup.subtree_control starts empty.
# No network device: loopback only. PID 1 is a small bash script unless V2VM_INIT=systemd.
#
# Acceleration: KVM where the CPU offers real VT-x/AMD-V, else TCG (software emulation, ~30-40x
# slower than native for CPU-bound code). A /dev/kvm of PVM-based nested virtualization (module
# kvm_pvm, no vmx/svm flags) cannot boot a stock kernel, so it counts as none.
#
# Files: the host's whole filesystem, read-only over 9p, under a throwaway tmpfs overlay, so
# everything looks writable and nothing written reaches the host. /tmp, /var/tmp, /run and
# /dev/shm are fresh tmpfs; the host's current directory (if under /tmp or /var/tmp), V2VM_HOME
# and any V2VM_KEEP paths under /tmp or /var/tmp are bound back in. The command starts in the
# host's current directory with the host's PATH, HOME=/root, no stdin.
#
# Environment knobs:
#   V2VM_HOME     cache dir (kernel, initramfs, run dirs; ~410 MB)  default /var/cache/stockade-v2vm
#   V2VM_MEM      guest RAM                                        default 4G
#   V2VM_CPUS     guest vCPUs                                      default 2
#   V2VM_TIMEOUT  seconds before the VM is killed (exit 124)       default 3600
#   V2VM_ACCEL    tcg | kvm | auto (kvm only with vmx/svm, no PVM)  default auto
#   V2VM_KEEP     extra host paths under /tmp or /var/tmp to keep visible (space separated)
#   V2VM_APPEND   extra kernel command line
#   V2VM_INIT     bash (default) or systemd: the host's systemd as PID 1 (journald, udev, dbus,
#                 logind; user managers via `loginctl enable-linger`); the command runs as a
#                 oneshot service in system.slice, with Delegate=yes
#   V2VM_VERBOSE  1: also print the guest console (kernel log) to stderr at the end
# Exit: the command's status; 124 on timeout; 125 if the VM died before reporting one; 3 if
# what it needs cannot be installed here (the reason on stderr).
set -euo pipefail

V2VM_HOME=${V2VM_HOME:-/var/cache/stockade-v2vm}
MEM=${V2VM_MEM:-4G}
CPUS=${V2VM_CPUS:-2}
TIMEOUT=${V2VM_TIMEOUT:-3600}
ACCEL=${V2VM_ACCEL:-auto}

if [ $# -ne 1 ]; then
    echo "usage: $0 'COMMAND' | --install" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "v2vm: run as root (installs packages, builds the initramfs)" >&2
    exit 2
fi

log() { echo "v2vm: $*" >&2; }

# ---------------------------------------------------------------- install (idempotent)
install_packages() {
    local missing=() need
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
        || missing+=(busybox-static)
    for need in cpio:cpio depmod:kmod gzip:gzip; do
        command -v "${need%%:*}" >/dev/null || missing+=("${need#*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >&2
    fi
}

# Debian's generic kernel (not -cloud: that one has no 9p), unpacked into the cache, never
# installed: the host's /boot and /lib/modules are left alone.
fetch_kernel() {
    if [ -f "$V2VM_HOME/kernel/.ok" ]; then return; fi
    local pkg tmp
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$pkg" ]; then
        apt-get update -q >&2
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    log "fetching $pkg"
    tmp=$(mktemp -d)
    chown _apt "$tmp" 2>/dev/null || true  # apt downloads as _apt where it can
    (cd "$tmp" && apt-get download -q "$pkg" >&2)
    rm -rf "$V2VM_HOME/kernel"
    dpkg-deb -x "$tmp"/*.deb "$V2VM_HOME/kernel"
    rm -rf "$tmp"
    local kver
    kver=$(ls "$V2VM_HOME/kernel/lib/modules")
    depmod -b "$V2VM_HOME/kernel" "$kver"
    touch "$V2VM_HOME/kernel/.ok"
}

# initramfs: static busybox, the modules to reach the host's files, and stage 1 of init.
build_initramfs() {
    local kver=$1
    local out=$V2VM_HOME/initramfs-$kver.img
    if [ -f "$out" ] && [ "$out" -nt "$0" ]; then return; fi
    log "building $out"
    local dir m path
    dir=$(mktemp -d)
    mkdir -p "$dir"/{bin,mod,proc,sys,dev,host,rw,newroot}
    cp /bin/busybox "$dir/bin/busybox"
    : > "$dir/mod/order"
    for m in virtio_pci 9pnet_virtio 9p overlay virtio_console virtio_rng; do
        modprobe -d "$V2VM_HOME/kernel" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
    done | awk '!seen[$0]++' | while read -r path; do
        cp "$path" "$dir/mod/"
        basename "$path" >> "$dir/mod/order"
    done
    cat > "$dir/init" <<'STAGE1'
#!/bin/busybox sh
# Stage 1 (initramfs): load the modules, mount the host's / (9p, read-only) under a tmpfs
# overlay, hand over to stage 2 on the host's filesystem.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for ko in $(cat /mod/order); do insmod "/mod/$ko" || echo "v2vm: insmod $ko failed"; done
arg() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
fail() { echo "v2vm stage 1: $*"; poweroff -f; }
home=$(arg v2vm.home)
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /host \
    || fail "cannot mount the host's root"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work root /newroot \
    || fail "cannot mount the overlay root"
for fs in proc sys dev; do mount --move "/$fs" "/newroot/$fs"; done
exec switch_root /newroot /bin/bash "$home/stage2.sh"
STAGE1
    chmod 755 "$dir/init"
    (cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$dir"
}

write_stage2() {
    local out=$V2VM_HOME/stage2.sh
    if [ -f "$out" ] && [ "$out" -nt "$0" ]; then return; fi
    cat > "$out.tmp" <<'STAGE2'
#!/bin/bash
# Stage 2, PID 1 on the overlay root: the mounts a booted system has, then the command.
arg() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
RUN=$(arg v2vm.run)
KVER=$(uname -r)
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
ln -sfn /proc/self/fd /dev/fd
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# The kernel's modules (auto-loading: veth, nf_tables, ...) from the cache. A symlink, not a
# bind mount: a mount below /usr (/lib is usr/lib) makes every unprivileged overlay of /usr
# fail with EINVAL ("overlayfs: failed to clone lowerpath": locked child mounts).
mkdir -p /lib/modules
[ -e "/lib/modules/$KVER" ] || ln -s "$(arg v2vm.home)/kernel/lib/modules/$KVER" "/lib/modules/$KVER"
hostname v2vm
ip link set lo up
rm -f /.dockerenv   # the host's container marker: not true in here (systemd reads it)
# /tmp and /var/tmp: fresh tmpfs, with the kept host paths bound back in.
source "$RUN/env"   # CWD, KEEP, HOST_PATH
mkdir -p /run/v2vm-keep
for p in $KEEP; do
    case $p in /tmp/* | /var/tmp/*) ;; *) continue ;; esac
    [ -d "$p" ] || continue
    mkdir -p "/run/v2vm-keep$p" && mount --bind "$p" "/run/v2vm-keep$p"
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp   # suid allowed, as on a root-fs /var/tmp
for p in $KEEP; do
    [ -d "/run/v2vm-keep$p" ] || continue
    mkdir -p "$p" && mount --move "/run/v2vm-keep$p" "$p"
done
# The command's stdout, stderr and exit status go out through virtio serial ports.
for port in /sys/class/virtio-ports/*; do
    ln -sf "/dev/${port##*/}" "/dev/v2vm-$(cat "$port/name")"
done
{
    printf 'export PATH=%q HOME=/root LANG=C.UTF-8 TERM=dumb V2VM=1\n' "$HOST_PATH"
    printf 'cd %q 2>/dev/null || cd /\n' "$CWD"
    printf 'bash %q </dev/null >%q 2>%q\n' "$RUN/cmd" "$(readlink -f /dev/v2vm-out)" \
        "$(readlink -f /dev/v2vm-err)"
    printf 'echo $? > %q\n' "$(readlink -f /dev/v2vm-ret)"
    printf 'sync\n'
    printf 'echo o > /proc/sysrq-trigger  # power off now (qemu -no-reboot exits either way)\n'
    printf 'sleep 10\n'
} > /run/v2vm-job
if [ "$(arg v2vm.init)" != systemd ]; then
    exec bash /run/v2vm-job
fi
# systemd as PID 1, on the host's units, reaching only a target of our own: sysinit
# (journald, udev, tmpfiles, ...), sockets, dbus, logind, then the command as a service.
: > /etc/fstab   # the host's describes the host's disks
for unit in systemd-timesyncd.service getty@tty1.service serial-getty@ttyS0.service; do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done
cat > /etc/systemd/system/v2vm.target <<'UNIT'
[Unit]
Description=v2vm: run one command, then power off
Requires=sysinit.target sockets.target dbus.service systemd-logind.service v2vm.service
After=sysinit.target sockets.target
AllowIsolate=yes
UNIT
cat > /etc/systemd/system/v2vm.service <<'UNIT'
[Unit]
Description=v2vm: the command
After=sysinit.target sockets.target dbus.service systemd-logind.service systemd-user-sessions.service
[Service]
Type=oneshot
ExecStart=/bin/bash /run/v2vm-job
StandardInput=null
TimeoutStartSec=infinity
# The command may manage cgroups below its own (a sandbox's runs); without this, systemd would
# also stop the whole service whenever the OOM killer ends one of them (OOMPolicy=stop).
Delegate=yes
UNIT
exec /lib/systemd/systemd --unit=v2vm.target
STAGE2
    chmod 755 "$out.tmp"
    mv "$out.tmp" "$out"
}

pick_accel() {
    case $ACCEL in
    tcg | kvm) echo "$ACCEL" ;;
    auto)
        if [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] \
            && grep -q -E -w 'vmx|svm' /proc/cpuinfo; then
            echo kvm
        else
            echo tcg
        fi
        ;;
    *) log "V2VM_ACCEL must be tcg, kvm or auto"; exit 2 ;;
    esac
}

# Everything the VM needs, or exit 3 saying what failed (no apt, no mirror, no space).
install_or_say_why() {
    if ! command -v apt-get >/dev/null; then
        log "cannot install QEMU and a kernel: no apt-get (this script knows Debian and Ubuntu)"
        exit 3
    fi
    set +e
    (
        set -e
        mkdir -p "$V2VM_HOME/runs"
        install_packages
        fetch_kernel
    )
    local rc=$?
    set -e
    if [ "$rc" != 0 ]; then
        log "cannot install QEMU and a kernel (exit $rc; apt's messages above)"
        exit 3
    fi
}

main() {
    install_or_say_why
    if [ "$1" = --install ]; then
        exit 0
    fi
    KVER=$(ls "$V2VM_HOME/kernel/lib/modules")
    KERNEL=$V2VM_HOME/kernel/boot/vmlinuz-$KVER
    build_initramfs "$KVER"
    write_stage2

    # ---------------------------------------------------------------- one run
    RUN=$(mktemp -d "$V2VM_HOME/runs/run.XXXXXX")
    QPID=
    CATS=
    cleanup() {
        # shellcheck disable=SC2086
        if [ -n "$QPID$CATS" ]; then kill $QPID $CATS 2>/dev/null || true; fi
        rm -rf "$RUN"
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    printf '%s\n' "$1" > "$RUN/cmd"
    keep="$V2VM_HOME ${V2VM_KEEP:-}"
    case $PWD in /tmp/* | /var/tmp/*) keep="$keep $PWD" ;; esac
    {
        printf 'CWD=%q\n' "$PWD"
        printf 'KEEP=%q\n' "$keep"
        printf 'HOST_PATH=%q\n' "$PATH"
    } > "$RUN/env"

    accel=$(pick_accel)
    if [ "$accel" = kvm ]; then
        accel_opts=(-accel kvm -cpu host)
    else
        accel_opts=(-accel "tcg,thread=multi${V2VM_TCG_OPTS:-}" -cpu "${V2VM_CPU:-max}")
    fi
    append="console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all mitigations=off"
    append="$append random.trust_cpu=on v2vm.home=$V2VM_HOME v2vm.run=$RUN"
    append="$append v2vm.init=${V2VM_INIT:-bash} ${V2VM_APPEND:-}"

    # The guest's stdout/stderr ports reach us through FIFOs that a `cat` of ours copies to our
    # own fds 1 and 2: streamed, and safe when those are files (a reopened /proc/self/fd/1 would
    # write at its own offset and clobber or be clobbered).
    mkfifo "$RUN/out.in" "$RUN/out.out" "$RUN/err.in" "$RUN/err.out"
    cat "$RUN/out.out" &
    CATS=$!
    cat "$RUN/err.out" >&2 &
    CATS="$CATS $!"
    timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
        -M q35 "${accel_opts[@]}" -smp "$CPUS" -m "$MEM" \
        -nodefaults -no-user-config -display none -no-reboot \
        -kernel "$KERNEL" -initrd "$V2VM_HOME/initramfs-$KVER.img" -append "$append" \
        -serial "file:$RUN/console.log" \
        -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
        -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
        -device virtio-rng-pci \
        -device virtio-serial-pci \
        -chardev "pipe,id=out,path=$RUN/out" -device virtserialport,chardev=out,name=out \
        -chardev "pipe,id=err,path=$RUN/err" -device virtserialport,chardev=err,name=err \
        -chardev "file,id=ret,path=$RUN/ret" -device virtserialport,chardev=ret,name=ret &
    QPID=$!
    set +e
    wait "$QPID"
    qrc=$?
    set -e
    QPID=
    # qemu is gone: open and close each FIFO once, so a `cat` still waiting for a writer (qemu
    # failed early) sees one and then EOF; the others have drained to EOF already.
    for f in out err; do
        exec 3<>"$RUN/$f.out"
        exec 3>&-
    done
    # shellcheck disable=SC2086
    wait $CATS
    CATS=
    if [ "${V2VM_VERBOSE:-0}" = 1 ]; then
        log "guest console:"
        cat "$RUN/console.log" >&2
    fi
    if [ "$qrc" = 124 ]; then
        log "timed out after ${TIMEOUT}s"
        exit 124
    fi
    rc=$(tr -dc 0-9 < "$RUN/ret" 2>/dev/null || true)
    if [ -z "$rc" ]; then
        log "the VM stopped without an exit status (qemu exit $qrc); guest console:"
        tail -n 40 "$RUN/console.log" >&2
        exit 125
    fi
    exit "$rc"
}

main "$@"
exit
