#!/bin/sh
# Builds the Skiff kernel from Debian 13's linux-source-6.12 with
# `make tinyconfig` + ./kernel-config + ./kernel-config.ARCH, and caches it
# under CACHE keyed by the configs, this script and the source package
# version: a rebuild takes minutes. x86_64 gives a bzImage (xz inside);
# aarch64 is cross-built with aarch64-linux-gnu-gcc and gives Image.gz, which
# GRUB decompresses while loading it (an arm64 Image carries no decompressor).
# Usage: image/build-kernel.sh CACHE OUT_KERNEL [x86_64|aarch64]
set -eu
cache=$1; out=$2; arch=${3:-x86_64}
here=$(cd "$(dirname "$0")/.." && pwd)
case $arch in
  x86_64) kmake="ARCH=x86"; target=bzImage; image=arch/x86/boot/bzImage ;;
  aarch64) kmake="ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-"; target=Image.gz; image=arch/arm64/boot/Image.gz ;;
  *) echo "kernel: unknown architecture $arch (x86_64 or aarch64)" >&2; exit 1 ;;
esac
fragments="$here/kernel-config $here/kernel-config.$arch"
apt="$here/image/trixie-apt.sh"
kdir="$cache/kernel"
mkdir -p "$kdir"

version=$("$apt" "$cache" apt-cache show --no-all-versions linux-source-6.12 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
if [ -z "$version" ]; then
  "$apt" "$cache" apt-get update >/dev/null
  version=$("$apt" "$cache" apt-cache show --no-all-versions linux-source-6.12 | sed -n 's/^Version: //p' | head -n1)
fi
# shellcheck disable=SC2086
key=$arch-$(cat $fragments "$0" | sha256sum | cut -c1-16)-$version
cached="$kdir/$target-$key"
# A cached kernel is written whole (rename), so it can be taken without the
# lock: a checkout whose kernel is cached never waits behind another's build.
use_cached() {
  [ -f "$cached" ] || return 1
  echo "kernel: cached $cached"
  mkdir -p "$(dirname "$out")"; cp "$cached" "$out"
}
use_cached && exit 0
# One build at a time (parallel checkouts share the cache); the build we
# waited for may have been this very kernel: look again under the lock.
exec 9>"$kdir/.lock"
flock 9
use_cached && exit 0

deb="$kdir/linux-source-6.12_${version}_all.deb"
if [ ! -f "$deb" ]; then
  rm -f "$kdir"/linux-source-6.12_*.deb
  (cd "$kdir" && "$apt" "$cache" apt-get download "linux-source-6.12=$version")
fi
src="$kdir/src-$version"
if [ ! -f "$src/Makefile" ]; then
  echo "kernel: unpacking linux-source-6.12 $version"
  rm -rf "$src"; mkdir -p "$src"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './usr/src/linux-source-6.12.tar.xz' | tar -xJ -C "$src" --strip-components=1
fi

build="$kdir/build-$key"
rm -rf "$build"; mkdir -p "$build"
echo "kernel: configuring $arch (tinyconfig + kernel-config + kernel-config.$arch)"
# ARCH is given on make's command line (x86, not x86_64: the x86_64 tinyconfig
# differs from the 32-bit one the fragment grew from): `make iso ARCH=aarch64` puts
# ARCH=aarch64 in the environment, which the kernel does not know.
# shellcheck disable=SC2086
make -s -C "$src" $kmake O="$build" tinyconfig
# shellcheck disable=SC2086
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" $fragments >/dev/null
# shellcheck disable=SC2086
make -s -C "$src" $kmake O="$build" olddefconfig
# Report options of the fragments that Kconfig dropped (a missing dependency).
# shellcheck disable=SC2086
grep -hE '^CONFIG_[A-Z0-9_]+=y' $fragments | while read -r line; do
  grep -qx "$line" "$build/.config" || { echo "kernel: warning: $line did not stick"; }
done
echo "kernel: building $arch $target with $(nproc) jobs"
# shellcheck disable=SC2086
make -s -C "$src" $kmake O="$build" -j"$(nproc)" $target
cp "$build/.config" "$kdir/config-$key"
# The kernel has no symbol table (kernel-config): this names a panic's addresses.
cp "$build/System.map" "$kdir/System.map-$key"
cp "$build/$image" "$cached.tmp" && mv "$cached.tmp" "$cached"
rm -rf "$build"
mkdir -p "$(dirname "$out")"; cp "$cached" "$out"
echo "kernel: built $cached ($(stat -c %s "$cached") bytes; symbols: $kdir/System.map-$key)"
