#!/bin/sh
# Runs apt-get against a private Debian 13 (trixie) setup kept under $CACHE/apt,
# so the build machine's own apt configuration (Debian 12) is never touched.
# Usage: image/trixie-apt.sh CACHE apt-get|apt-cache ARGS...
set -eu
cache=$1; tool=$2; shift 2
root="$cache/apt"
mkdir -p "$root/state/lists/partial" "$root/cache/archives/partial" "$root/etc/preferences.d" "$root/etc/apt.conf.d"
[ -f "$root/status" ] || : > "$root/status"
cat > "$root/etc/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-stable.gpg] http://deb.debian.org/debian trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-security-automatic.gpg] http://deb.debian.org/debian-security trixie-security main
deb [signed-by=/usr/share/keyrings/debian-archive-trixie-automatic.gpg] http://deb.debian.org/debian trixie-updates main
LIST
exec "$tool" \
  -o Dir::State="$root/state" \
  -o Dir::State::status="$root/status" \
  -o Dir::Cache="$root/cache" \
  -o Dir::Etc::SourceList="$root/etc/sources.list" \
  -o Dir::Etc::SourceParts=/dev/null \
  -o Dir::Etc::Preferences="$root/etc/preferences" \
  -o Dir::Etc::PreferencesParts="$root/etc/preferences.d" \
  -o Dir::Etc::Parts="$root/etc/apt.conf.d" \
  -o APT::Install-Recommends=false \
  -o APT::Get::Assume-Yes=true \
  -o Debug::NoLocking=true \
  -o APT::Sandbox::User=root \
  "$@"
