#!/bin/sh
# Builds vhost-device-vsock, the user-space vsock device `skiff run` starts
# where there is no /dev/vhost-vsock, from its released crate with Skiff's
# patches (vsockdev/patches/*.patch, applied in name order: 0.3.0, the
# newest release, loses its only worker thread to a connection made while
# the device's queues are not ready, during boot or a pause), and installs
# it as CARGO_HOME/bin/vhost-device-vsock, where skiff and the tests find
# it, replacing any other build there (cargo install's unpatched 0.3.0).
# The crate comes from crates.io and must match the sha256 pinned here
# (crates.io's index checksum); it ships its Cargo.lock, so --locked pins
# every dependency. The binary is cached under CACHE keyed by the checksum,
# the patches and this script; cargo's target folder is kept beside it, so
# a changed patch recompiles only the crate itself.
# Usage: scripts/build-vsockdev.sh CACHE
set -eu
cache=$1
here=$(cd "$(dirname "$0")/.." && pwd)
version=0.3.0
sha256=52ce95d81af89ad693d067c650e42df0f217addfbc96cc4820f7c62eb4a28b13
url="https://static.crates.io/crates/vhost-device-vsock/vhost-device-vsock-$version.crate"

vdir="$cache/vsockdev"
mkdir -p "$vdir"
# One build at a time (parallel checkouts share the cache).
exec 9>"$vdir/.lock"
flock 9

key=$( (echo "$version $sha256"; cat "$0" "$here"/vsockdev/patches/*.patch) | sha256sum | cut -c1-16)
cached="$vdir/vhost-device-vsock-$version-$key"
if [ ! -x "$cached" ]; then
  crate="$vdir/vhost-device-vsock-$version.crate"
  if ! echo "$sha256  $crate" | sha256sum -c --status 2>/dev/null; then
    echo "vsockdev: fetching $url"
    curl -fsSL --retry 3 -o "$crate.tmp" "$url"
    if ! echo "$sha256  $crate.tmp" | sha256sum -c --status; then
      echo "vsockdev: $url does not match the pinned sha256 $sha256" >&2
      rm -f "$crate.tmp"; exit 1
    fi
    mv "$crate.tmp" "$crate"
  fi
  src="$vdir/src"
  rm -rf "$src"; mkdir -p "$src"
  tar -xzf "$crate" -C "$src" --strip-components=1
  for p in "$here"/vsockdev/patches/*.patch; do
    echo "vsockdev: applying $(basename "$p")"
    patch -s -p1 -d "$src" --no-backup-if-mismatch < "$p"
  done
  echo "vsockdev: building vhost-device-vsock $version (a minute or two, once)"
  (cd "$src" && CARGO_TARGET_DIR="$vdir/target" cargo build --quiet --release --locked)
  built="$vdir/target/release/vhost-device-vsock"
  # It must start before it replaces anything.
  "$built" --version >/dev/null
  cp "$built" "$cached.tmp"; mv "$cached.tmp" "$cached"
  # Older builds (another version, patch set or script) go.
  for old in "$vdir"/vhost-device-vsock-*; do
    case $old in "$cached"|"$crate") ;; *) rm -rf "$old" ;; esac
  done
fi

# Installed by rename, so a running device keeps its binary and no reader
# ever sees half a file.
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! cmp -s "$cached" "$bin/vhost-device-vsock"; then
  mkdir -p "$bin"
  cp "$cached" "$bin/.vhost-device-vsock.new"
  mv -f "$bin/.vhost-device-vsock.new" "$bin/vhost-device-vsock"
  echo "vsockdev: installed the patched vhost-device-vsock $version as $bin/vhost-device-vsock"
fi
