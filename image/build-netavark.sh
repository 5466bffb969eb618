#!/bin/sh
# Builds the engine's network helpers, netavark and aardvark-dns, from
# crates.io at the version Debian 13 ships, with the size profile the init
# uses (opt-level s, LTO, one codegen unit, stripped): about half the bytes
# of Debian's build. Each is cached under CACHE keyed by its version, its
# profile, TARGET and this script, so only the first build pays (about
# 5 minutes each on 2 cores); the cargo target folder is kept too, so a
# changed key rebuilds only what changed. Needs protoc (Debian's
# protobuf-compiler) for netavark.
# Usage: image/build-netavark.sh CACHE TARGET OUT_DIR
#   TARGET is a Rust target triple, e.g. x86_64-unknown-linux-gnu;
#   OUT_DIR receives netavark and aardvark-dns.
set -eu
cache=$1; target=$2; out=$3
version=1.14.0
# The release profile, as environment overrides for `cargo install` (which
# ignores any workspace's profile).
profile="CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
  CARGO_PROFILE_RELEASE_STRIP=true"
# panic=abort only where no panic is caught: netavark runs one command and
# exits (only its DHCP proxy, which Skiff does not run, spawns tasks).
# aardvark-dns answers each query in a tokio task, and tokio catches a
# task's panic, so one bad query cannot stop name resolution: it keeps
# unwinding.
panic_of() { case $1 in netavark) echo abort ;; *) echo unwind ;; esac; }

ndir="$cache/netavark"
mkdir -p "$ndir"
# One build at a time (parallel checkouts share the cache).
exec 9>"$ndir/.lock"
flock 9

mkdir -p "$out"
for crate in netavark aardvark-dns; do
  panic=$(panic_of "$crate")
  key=$( (echo "$crate $version $target $panic $profile"; cat "$0") | sha256sum | cut -c1-16)
  cached="$ndir/$target-$crate-$version-$key"
  if [ ! -x "$cached/bin/$crate" ]; then
    [ "$crate" != netavark ] || command -v protoc >/dev/null ||
      { echo "netavark: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
    echo "netavark: building $crate $version for $target, panic=$panic (a few minutes, once)"
    rm -rf "$cached.tmp"
    # From the cache folder: no workspace, its Cargo.lock or its
    # .cargo/config is involved. --locked uses the crate's own lock file.
    (cd "$ndir" && env $profile CARGO_PROFILE_RELEASE_PANIC="$panic" CARGO_TARGET_DIR="$ndir/target-$target" \
      cargo install --quiet --locked --root "$cached.tmp" --target "$target" --version "$version" "$crate")
    rm -rf "$cached"; mv "$cached.tmp" "$cached"
    # Older builds of this crate (another version, profile or script) go.
    for old in "$ndir/$target-$crate"-*; do
      [ "$old" = "$cached" ] || rm -rf "$old"
    done
  fi
  cp "$cached/bin/$crate" "$out/$crate"
  echo "netavark: $crate $(stat -c %s "$out/$crate") bytes (cached in $cached)"
done
