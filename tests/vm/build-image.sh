#!/usr/bin/env bash
# Build the Debian 12 test image the VM tests boot: mmdebstrap bookworm -> folder -> mkfs.ext4 -d
# -> qcow2, plus the kernel and initrd for qemu's direct kernel boot. No loop devices, no network
# at boot time beyond the Debian mirror during the build.
#
#   tests/vm/build-image.sh [cache-dir]      (default: .vm-cache next to the repo root; needs root)
#
# Prints the image directory on stdout (everything else goes to stderr). The directory name is a
# hash of packages.txt and this script: a rerun with the same inputs reuses it, any change
# rebuilds. It holds base.qcow2, vmlinuz, initrd.img, the admin SSH key pair made for this build
# (id_ed25519, never leaves the cache) and the image's SSH host public keys (for known_hosts).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${1:-$ROOT/.vm-cache}
PACKAGES=$HERE/packages.txt
ADMIN_USER=${VM_ADMIN_USER:-polymm}  # the roles' hardening_admin_user default
ROLE_PACKAGES=$ROOT/roles/common/vars/packages.yml
SUITE=bookworm
MIRROR=${VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${VM_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DISK_SIZE=${VM_DISK_SIZE:-8G}

log() { printf '[build-image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Every package the roles install (roles/common/vars/packages.yml, a plain YAML list under
# common_packages), so a converge finds them present; the apt task itself still runs.
role_packages() {
    [[ -f $ROLE_PACKAGES ]] || return 0
    local found
    found=$(sed -n 's/^[[:space:]]*-[[:space:]]*["'"'"']\{0,1\}\([a-z0-9][a-z0-9.+-]*\)["'"'"']\{0,1\}[[:space:]]*$/\1/p' "$ROLE_PACKAGES")
    [[ -n $found ]] || { echo "build-image.sh: no package names found in $ROLE_PACKAGES" >&2; exit 2; }
    echo "$found"
}
from_roles=$(role_packages)
packages=$( (grep -v '^[[:space:]]*#' "$PACKAGES" | awk 'NF {print $1}'; echo "$from_roles") | awk 'NF' | sort -u)
key=$( (echo "$packages"; cat "$0"; echo "$ADMIN_USER $SUITE $DISK_SIZE") | sha256sum | cut -c1-16)
out=$CACHE/image-$key
if [[ -f $out/ready ]]; then
    log "cached: $out"
    echo "$out"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "build-image.sh: must run as root (mmdebstrap into a folder, device nodes)" >&2
    exit 2
fi
for tool in mmdebstrap mkfs.ext4 qemu-img ssh-keygen; do
    command -v "$tool" >/dev/null || { echo "build-image.sh: $tool not found (make vm-deps)" >&2; exit 2; }
done

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$work/out"

# One admin key per build: it opens only these throwaway VMs and stays in the cache.
ssh-keygen -q -t ed25519 -N '' -C "polymm-vm-test" -f "$work/out/id_ed25519"

include=$(echo "$packages" | paste -sd, -)
start=$SECONDS
log "mmdebstrap $SUITE (${include//,/ })"
# Customize hooks run on the host with the root folder as $1.
mmdebstrap --variant=apt --mode=root --format=directory \
    --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --include="$include" \
    --skip=cleanup/apt/lists \
    --customize-hook='echo "/dev/vda / ext4 defaults,noatime,errors=remount-ro 0 1" > "$1/etc/fstab"' \
    --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 fra ams vm\n::1 localhost ip6-localhost\n" > "$1/etc/hosts"' \
    --customize-hook='echo vm > "$1/etc/hostname"' \
    --customize-hook='rm -f "$1/etc/resolv.conf"; echo "nameserver 10.0.2.3" > "$1/etc/resolv.conf"' \
    --customize-hook='printf "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n" > "$1/etc/systemd/network/10-eth0.network"' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-network-generator' \
    --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer systemd-networkd-wait-online.service' \
    --customize-hook='chroot "$1" systemctl set-default multi-user.target' \
    --customize-hook='chroot "$1" systemctl disable fail2ban' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*; chroot "$1" ssh-keygen -A' \
    --customize-hook='printf "%s\n" 0123456789abcdef0123456789abcdef > "$1/etc/machine-id"' \
    "$SUITE" "$rootfs" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main" \
    >&2
log "mmdebstrap done in $((SECONDS - start)) s"

# Admin user: key-only login, passwordless sudo (what the roles' hardening keeps working).
chroot "$rootfs" useradd --create-home --shell /bin/bash --groups sudo "$ADMIN_USER"
uid=$(chroot "$rootfs" id -u "$ADMIN_USER")
install -d -m 0700 -o "$uid" -g "$uid" "$rootfs/home/$ADMIN_USER/.ssh"
install -m 0600 -o "$uid" -g "$uid" "$work/out/id_ed25519.pub" "$rootfs/home/$ADMIN_USER/.ssh/authorized_keys"
echo "$ADMIN_USER ALL=(ALL) NOPASSWD:ALL" > "$rootfs/etc/sudoers.d/90-$ADMIN_USER"
chmod 0440 "$rootfs/etc/sudoers.d/90-$ADMIN_USER"
cp "$rootfs"/etc/ssh/ssh_host_*_key.pub "$work/out/"

kernel=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
initrd=$(find "$rootfs/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -1)
[[ -n $kernel && -n $initrd ]] || { echo "build-image.sh: no kernel/initrd in the image" >&2; exit 1; }
cp "$kernel" "$work/out/vmlinuz"
cp "$initrd" "$work/out/initrd.img"

start=$SECONDS
truncate -s "$DISK_SIZE" "$work/root.raw"
mkfs.ext4 -q -F -L root -d "$rootfs" "$work/root.raw" >&2
qemu-img convert -O qcow2 "$work/root.raw" "$work/out/base.qcow2"
log "mkfs.ext4 + qcow2 in $((SECONDS - start)) s ($(du -h "$work/out/base.qcow2" | cut -f1))"

date -u +%FT%TZ > "$work/out/ready"
rm -rf "$out"
mv "$work/out" "$out"
# Older images (other package lists) only take space.
find "$CACHE" -maxdepth 1 -name 'image-*' ! -path "$out" -exec rm -rf {} +
echo "$out"
