#!/bin/sh
# Fetches one of Debian 13's arm64 packages through the private apt setup
# and unpacks it under CACHE/arm64, once per package version; prints the
# unpacked folder. Used for GRUB's arm64 EFI modules (grub-efi-arm64-bin, an
# arm64-only package, for the host's grub-mkimage in image/build-iso.sh) and
# the arm64 busybox-static the aarch64 tests build their image from.
# Usage: image/fetch-arm64.sh CACHE PACKAGE
set -eu
cache=$1; package=$2
here=$(cd "$(dirname "$0")/.." && pwd)
export SKIFF_DEB_ARCH=arm64
apt="$here/image/trixie-apt.sh"
version=$("$apt" "$cache" apt-cache show --no-all-versions "$package" | sed -n 's/^Version: //p' | head -n1)
[ -n "$version" ] || { echo "fetch: $package not found in trixie (arm64)" >&2; exit 1; }
dir="$cache/arm64/pkg-$package/$version"
if [ ! -f "$dir/.unpacked" ]; then
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  (cd "$dl" && "$apt" "$cache" apt-get download -qq "$package=$version" >&2)
  # Older versions go.
  rm -rf "$cache/arm64/pkg-$package"; mkdir -p "$dir.tmp"
  dpkg-deb -x "$dl"/*.deb "$dir.tmp"
  touch "$dir.tmp/.unpacked"
  mv "$dir.tmp" "$dir"
fi
echo "$dir"
