#!/bin/sh
# Fetches GRUB's arm64 EFI modules (Debian 13's grub-efi-arm64-bin, an
# arm64-only package, through the private apt setup) and unpacks them under
# CACHE/arm64, once per package version; prints the module folder, for the
# host's grub-mkimage (image/build-iso.sh).
# Usage: image/fetch-grub.sh CACHE
set -eu
cache=$1
here=$(cd "$(dirname "$0")/.." && pwd)
export SKIFF_DEB_ARCH=arm64
apt="$here/image/trixie-apt.sh"
version=$("$apt" "$cache" apt-cache show --no-all-versions grub-efi-arm64-bin | sed -n 's/^Version: //p' | head -n1)
[ -n "$version" ] || { echo "grub: grub-efi-arm64-bin not found in trixie" >&2; exit 1; }
dir="$cache/arm64/grub-$version"
if [ ! -f "$dir/usr/lib/grub/arm64-efi/linux.mod" ]; then
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  (cd "$dl" && "$apt" "$cache" apt-get download -qq "grub-efi-arm64-bin=$version" >&2)
  rm -rf "$cache"/arm64/grub-*; mkdir -p "$dir.tmp"
  dpkg-deb -x "$dl"/grub-efi-arm64-bin_*.deb "$dir.tmp"
  mv "$dir.tmp" "$dir"
fi
echo "$dir/usr/lib/grub/arm64-efi"
