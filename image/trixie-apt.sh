#!/bin/sh
# Runs apt-get against a private Debian 13 (trixie) setup kept under $CACHE/apt,
# so the build machine's own apt configuration (Debian 12) is never touched.
# The package lists are refreshed when they are missing or a day old, so a
# build picks up the day's security updates. Builds from several checkouts
# share CACHE: each call holds $CACHE/apt.lock, unless its caller holds it
# already (SKIFF_APT_LOCKED names it; build-rootfs.sh does, around its apt
# steps and staging). SKIFF_DEB_ARCH=arm64 works on Debian's arm64 packages
# instead (its own package lists and state under $CACHE/apt-arm64).
# Usage: [SKIFF_DEB_ARCH=amd64|arm64] image/trixie-apt.sh CACHE apt-get|apt-cache ARGS...
set -eu
cache=$1; tool=$2; shift 2
arch=${SKIFF_DEB_ARCH:-amd64}
lock="$cache/apt.lock"
if [ "${SKIFF_APT_LOCKED:-}" != "$lock" ]; then
  mkdir -p "$cache"
  SKIFF_APT_LOCKED=$lock exec flock "$lock" "$0" "$cache" "$tool" "$@"
fi
root="$cache/apt"; [ "$arch" = amd64 ] || root="$cache/apt-$arch"
mkdir -p "$root/state/lists/partial" "$root/cache/archives/partial" "$root/etc/preferences.d" "$root/etc/apt.conf.d"
[ -f "$root/status" ] || : > "$root/status"
cat > "$root/etc/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-stable.gpg] http://deb.debian.org/debian trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-security-automatic.gpg] http://deb.debian.org/debian-security trixie-security main
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-automatic.gpg] http://deb.debian.org/debian trixie-updates main
LIST
run() {
  program=$1; shift
  "$program" \
    -o Dir::State="$root/state" \
    -o Dir::State::status="$root/status" \
    -o Dir::Cache="$root/cache" \
    -o Dir::Etc::SourceList="$root/etc/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences="$root/etc/preferences" \
    -o Dir::Etc::PreferencesParts="$root/etc/preferences.d" \
    -o Dir::Etc::Parts="$root/etc/apt.conf.d" \
    -o APT::Architecture="$arch" \
    -o APT::Architectures="$arch" \
    -o APT::Install-Recommends=false \
    -o APT::Get::Assume-Yes=true \
    -o Debug::NoLocking=true \
    -o APT::Sandbox::User=root \
    "$@"
}
stamp="$root/state/lists/skiff-updated"
if [ "$tool" = apt-get ] && [ "${1:-}" = update ]; then
  run apt-get "$@"; touch "$stamp"; exit 0
fi
if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
  if run apt-get update -qq; then
    touch "$stamp"
  elif [ -f "$stamp" ]; then
    echo "apt: WARNING: cannot refresh the trixie package lists; using those of $(date -r "$stamp" '+%F %R') (security updates since then are missing)" >&2
  else
    echo "apt: cannot fetch the trixie package lists (network?)" >&2; exit 1
  fi
fi
run "$tool" "$@"
