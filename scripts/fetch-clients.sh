#!/bin/sh
# Fetches Debian 13's docker CLI and its buildx and compose plugins (the
# clients tests/tests/build.rs drives) through the private apt setup, and
# unpacks them, once per set of versions, into
#   CACHE/clients/trixie-CLI-BUILDX-COMPOSE/{docker,cli-plugins/}
# with CACHE/clients/trixie pointing at the newest. Nothing is installed
# into the system; a test puts cli-plugins/ in its own DOCKER_CONFIG.
# Usage: scripts/fetch-clients.sh CACHE
set -eu
cache=$1
here=$(cd "$(dirname "$0")/.." && pwd)
apt="$here/image/trixie-apt.sh"
packages="docker-cli docker-buildx docker-compose"
key=trixie
for p in $packages; do
  v=$("$apt" "$cache" apt-cache show --no-all-versions "$p" | sed -n 's/^Version: //p' | head -n1)
  [ -n "$v" ] || { echo "fetch-clients: $p not found in trixie" >&2; exit 1; }
  key="$key-$v"
  eval "version_$(echo "$p" | tr - _)=\$v"
done
key=$(echo "$key" | tr ':~+' '___')
dir="$cache/clients/$key"
if [ ! -x "$dir/docker" ]; then
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  (cd "$dl" && "$apt" "$cache" apt-get download -qq \
    "docker-cli=$version_docker_cli" "docker-buildx=$version_docker_buildx" "docker-compose=$version_docker_compose" >&2)
  mkdir -p "$dl/root"
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dl/root"; done
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/cli-plugins"
  cp "$dl/root/usr/bin/docker" "$dir.tmp/docker"
  for plugin in docker-buildx docker-compose; do
    found=$(find "$dl/root" -path '*cli-plugins/*' -name "$plugin" \( -type f -o -type l \) | head -n1)
    [ -n "$found" ] || { echo "fetch-clients: no $plugin plugin in its package" >&2; exit 1; }
    cp -L "$found" "$dir.tmp/cli-plugins/$plugin"
  done
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
fi
ln -sfn "$key" "$cache/clients/trixie.tmp" && mv -T "$cache/clients/trixie.tmp" "$cache/clients/trixie"
echo "$dir"
