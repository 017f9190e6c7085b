#!/usr/bin/env bash
# Build the base guest image for the simulator's QEMU hypervisor.
#
# The image is an "Ubuntu-like" Debian bookworm guest: it stands in for stackfleet's
# `ubuntu` OS flavor (default user `ubuntu` with passwordless sudo, cloud-init, containerd,
# ifupdown + dhclient networking), built from Debian's packages only because no Ubuntu
# archive can be reached here. The CloudStack datasource is tried first, so a guest finds
# the simulator's metadata server at its DHCP server / default gateway; without one it
# falls back to the None datasource and still boots to a login prompt.
#
# Usage: build-image.sh OUT_DIR      (as root)
#
# Writes OUT_DIR/{disk.qcow2,vmlinuz,initrd.img,manifest.json}. The guest is booted with
# QEMU direct kernel boot: root=/dev/vda (whole disk, ext4, no partition table).
# The mirror is $STACKFLEET_DEBIAN_MIRROR, or else the host's own apt source for Debian.
# OUT_DIR must not exist or be empty; it appears atomically (rename) once all is built.
set -euo pipefail

SUITE=bookworm
DISK_SIZE=3G
PACKAGES=(
    systemd-sysv udev dbus kmod procps
    linux-image-cloud-amd64 initramfs-tools
    cloud-init python3 wget
    openssh-server sudo curl ca-certificates tar gzip
    ifupdown isc-dhcp-client iproute2 netbase ethtool
    containerd iptables conntrack socat
)

die() {
    echo "build-image: $*" >&2
    exit 1
}

log() {
    echo "build-image: [${SECONDS}s] $*" >&2
}

# First URL of the main Debian archive in the host's apt sources (not -security etc.).
host_mirror() {
    local f url
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        url=$(awk '$1 == "URIs:" {
                  for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit }
              }' "$f")
        if [[ -n "$url" ]]; then
            echo "${url%/}"
            return 0
        fi
    done
    if [[ -f /etc/apt/sources.list ]]; then
        url=$(awk '$1 == "deb" {
                  for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit }
              }' /etc/apt/sources.list)
        if [[ -n "$url" ]]; then
            echo "${url%/}"
            return 0
        fi
    fi
    return 1
}

[[ $# -eq 1 ]] || die "usage: build-image.sh OUT_DIR"
OUT_DIR=$1
[[ $EUID -eq 0 ]] || die "must run as root (debootstrap and chroot need it)"
for tool in debootstrap mkfs.ext4 qemu-img chroot; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
if [[ -e "$OUT_DIR" ]] && [[ -n "$(ls -A "$OUT_DIR")" ]]; then
    die "$OUT_DIR exists and is not empty"
fi

MIRROR=${STACKFLEET_DEBIAN_MIRROR:-}
if [[ -z "$MIRROR" ]]; then
    MIRROR=$(host_mirror) || die "no Debian mirror in the host's apt sources; set STACKFLEET_DEBIAN_MIRROR"
fi

PARENT=$(dirname "$OUT_DIR")
mkdir -p "$PARENT"
STAGE=$(mktemp -d "$PARENT/.$(basename "$OUT_DIR").build.XXXXXX")
ROOT=$STAGE/root
OUT=$STAGE/out

cleanup() {
    local mnt
    # debootstrap may leave proc/sys mounted when it fails; never delete through a mount.
    if [[ -d "$ROOT" ]]; then
        awk -v r="$ROOT" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r mnt; do umount -l "$mnt" || true; done
    fi
    rm -rf --one-file-system "$STAGE"
}
trap cleanup EXIT

mkdir -p "$ROOT" "$OUT"
log "debootstrap $SUITE (minbase) from $MIRROR into $ROOT"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$STAGE/debootstrap.log" 2>&1 ||
    { tail -n 30 "$STAGE/debootstrap.log" >&2; die "debootstrap failed"; }

in_root() { chroot "$ROOT" "$@"; }

# debootstrap's own resolver (--include) trips over virtual packages in cloud-init's
# dependencies, so the packages go in with apt in the chroot; no daemon may start there.
# wget: cloud-init 22.4's CloudStack datasource shells out to it for the password server.
log "installing ${#PACKAGES[@]} packages with apt (no recommends)"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
{
    in_root apt-get update &&
        DEBIAN_FRONTEND=noninteractive in_root apt-get install -y --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${PACKAGES[@]}"
} >"$STAGE/apt.log" 2>&1 || { tail -n 30 "$STAGE/apt.log" >&2; die "apt-get install failed"; }
rm -f "$ROOT/usr/sbin/policy-rc.d"
umount "$ROOT/dev/pts" "$ROOT/dev" "$ROOT/sys" "$ROOT/proc"

log "configuring the guest"

# cloud-init: CloudStack first (metadata at the DHCP server / gateway), then None.
# Debian's 90_dpkg.cfg sorts after our file and would override datasource_list: drop it
# and record the same choice in debconf so a reconfigure writes what we want.
rm -f "$ROOT/etc/cloud/cloud.cfg.d/90_dpkg.cfg"
echo "cloud-init cloud-init/datasources multiselect CloudStack, None" | in_root debconf-set-selections
cat >"$ROOT/etc/cloud/cloud.cfg.d/90-stackfleet.cfg" <<'EOF'
# stackfleet base image: stands in for the `ubuntu` flavor (user ubuntu, passwordless sudo).
datasource_list: [ CloudStack, None ]
datasource:
  CloudStack:
    max_wait: 120
    timeout: 10
# No DSA keys (slow to make under TCG, refused by modern clients anyway).
ssh_genkeytypes: [rsa, ecdsa, ed25519]
# C.UTF-8 is built into libc: no locale-gen on first boot.
locale: C.UTF-8
system_info:
  default_user:
    name: ubuntu
    lock_passwd: true
    gecos: Ubuntu
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
  network:
    # ifupdown + dhclient; dhclient's lease names the CloudStack virtual router.
    renderers: [eni]
EOF

cat >"$ROOT/etc/fstab" <<'EOF'
# The kernel mounts root read-write (cmdline `rw`), so there is no fsck pass.
/dev/vda  /  ext4  defaults,errors=remount-ro  0  0
EOF
echo "stackfleet-base" >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
cat >"$ROOT/etc/network/interfaces" <<'EOF'
# cloud-init writes the NIC configuration (DHCP on eth0 by default) to interfaces.d.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
cat >"$ROOT/etc/apt/apt.conf.d/90stackfleet" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/90stackfleet-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF

# ifupdown owns the network; networkd must not fight it.
systemctl --root="$ROOT" mask systemd-networkd.service systemd-networkd.socket \
    systemd-networkd-wait-online.service >/dev/null 2>&1
systemctl --root="$ROOT" enable serial-getty@ttyS0.service >/dev/null 2>&1

in_root passwd -l root >/dev/null
# No SSH host keys in the image: cloud-init generates them on first boot.
rm -f "$ROOT"/etc/ssh/ssh_host_*
# Every VM gets its own machine-id (systemd's first-boot semantics for an empty file).
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
: >"$ROOT/etc/resolv.conf"
in_root cloud-init clean --logs >/dev/null

# Lean: no package lists, caches, docs, man pages or translations.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
    "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
    "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/* "$ROOT"/var/tmp/*
find "$ROOT/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete

log "copying kernel and initrd"
kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
[[ -n "$kernel" ]] || die "no kernel in $ROOT/boot"
kver=${kernel##*/vmlinuz-}
[[ -f "$ROOT/boot/initrd.img-$kver" ]] || die "no initrd for kernel $kver"
install -m 0644 "$kernel" "$OUT/vmlinuz"
install -m 0644 "$ROOT/boot/initrd.img-$kver" "$OUT/initrd.img"

pkg_version() { in_root dpkg-query -W -f="\${Version}" "$1"; }
v_cloudinit=$(pkg_version cloud-init)
v_systemd=$(pkg_version systemd)
v_containerd=$(pkg_version containerd)
n_packages=$(in_root dpkg-query -W -f='.\n' | wc -l)
root_bytes=$(du -s --block-size=1 "$ROOT" | cut -f1)

log "making the ext4 file system ($DISK_SIZE, sparse) and the qcow2 image"
truncate -s "$DISK_SIZE" "$STAGE/disk.raw"
mkfs.ext4 -q -F -L stackfleet-root -d "$ROOT" "$STAGE/disk.raw"
fs_used=$(dumpe2fs -h "$STAGE/disk.raw" 2>/dev/null | awk -F: '
    /^Block count/ { total = $2 } /^Free blocks/ { free = $2 } /^Block size/ { bs = $2 }
    END { printf "%d", (total - free) * bs }')
qemu-img convert -c -O qcow2 "$STAGE/disk.raw" "$OUT/disk.qcow2"
rm -f "$STAGE/disk.raw"
chmod 0644 "$OUT/disk.qcow2"
qcow2_bytes=$(stat -c %s "$OUT/disk.qcow2")

cat >"$OUT/manifest.json" <<EOF
{
  "suite": "$SUITE",
  "flavor": "ubuntu",
  "mirror": "$MIRROR",
  "kernel": "$kver",
  "cloud_init": "$v_cloudinit",
  "systemd": "$v_systemd",
  "containerd": "$v_containerd",
  "packages": $n_packages,
  "build_seconds": $SECONDS,
  "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "disk_size": "$DISK_SIZE",
  "root_tree_bytes": $root_bytes,
  "ext4_used_bytes": $fs_used,
  "qcow2_bytes": $qcow2_bytes,
  "kernel_bytes": $(stat -c %s "$OUT/vmlinuz"),
  "initrd_bytes": $(stat -c %s "$OUT/initrd.img")
}
EOF

mv -T "$OUT" "$OUT_DIR"
log "done: $OUT_DIR (qcow2 $qcow2_bytes bytes, ext4 used $fs_used bytes)"
