#!/bin/sh
# Builds the Skiff kernel (bzImage) from Debian 13's linux-source-6.12 with
# `make tinyconfig` + ./kernel-config, and caches it under CACHE keyed by the
# config, this script and the source package version: a rebuild takes minutes.
# Usage: image/build-kernel.sh CACHE OUT_BZIMAGE
set -eu
cache=$1; out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
apt="$here/image/trixie-apt.sh"
kdir="$cache/kernel"
mkdir -p "$kdir"
# One build at a time (parallel checkouts share the cache).
exec 9>"$kdir/.lock"
flock 9

version=$("$apt" "$cache" apt-cache show --no-all-versions linux-source-6.12 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
if [ -z "$version" ]; then
  "$apt" "$cache" apt-get update >/dev/null
  version=$("$apt" "$cache" apt-cache show --no-all-versions linux-source-6.12 | sed -n 's/^Version: //p' | head -n1)
fi
key=$(cat "$here/kernel-config" "$0" | sha256sum | cut -c1-16)-$version
cached="$kdir/bzImage-$key"
if [ -f "$cached" ]; then
  echo "kernel: cached $cached"
  mkdir -p "$(dirname "$out")"; cp "$cached" "$out"; exit 0
fi

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
echo "kernel: configuring (tinyconfig + kernel-config)"
make -s -C "$src" O="$build" tinyconfig
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$here/kernel-config" >/dev/null
make -s -C "$src" O="$build" olddefconfig
# Report options of the fragment that Kconfig dropped (a missing dependency).
grep -E '^CONFIG_[A-Z0-9_]+=y' "$here/kernel-config" | while read -r line; do
  grep -qx "$line" "$build/.config" || { echo "kernel: warning: $line did not stick"; }
done
echo "kernel: building bzImage with $(nproc) jobs"
make -s -C "$src" O="$build" -j"$(nproc)" bzImage
cp "$build/arch/x86/boot/bzImage" "$cached.tmp" && mv "$cached.tmp" "$cached"
cp "$build/.config" "$kdir/config-$key"
rm -rf "$build"
mkdir -p "$(dirname "$out")"; cp "$cached" "$out"
echo "kernel: built $cached ($(stat -c %s "$cached") bytes)"
