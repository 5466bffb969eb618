#!/bin/sh
# Installs what building, running and testing Skiff needs on Debian 12:
# Debian packages (only those missing) and vhost-device-vsock from crates.io.
# The system's apt sources are not changed; trixie packages for the image are
# fetched separately through image/trixie-apt.sh.
set -eu
packages="qemu-system-x86 qemu-utils ovmf xorriso grub-pc-bin grub-efi-amd64-bin grub-common mtools
  squashfs-tools docker.io socat busybox-static bc bison flex libelf-dev libssl-dev cpio zstd xz-utils make
  binutils gcc dosfstools e2fsprogs debian-archive-keyring ca-certificates openssl"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

vhdv_version=0.3.0
bin="${CARGO_HOME:-$HOME/.cargo}/bin/vhost-device-vsock"
if ! "$bin" --version 2>/dev/null | grep -q "$vhdv_version"; then
  echo "deps: cargo install vhost-device-vsock $vhdv_version (a few minutes, once)"
  cargo install --quiet --locked vhost-device-vsock --version "$vhdv_version"
fi
