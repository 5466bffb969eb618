#!/bin/sh
# Builds the engine, Podman, from its Go module (github.com/containers/podman/v5
# at the version engine/go.mod requires; every module's checksum is pinned in
# engine/go.sum), with Skiff's patches (engine/patches/*.patch, applied in name
# order to a writable copy of the module, outside the checkout; those in
# engine/patches/common/ to a copy of containers/common) and the
# appliance's build tags: no systemd, AppArmor, SELinux or libsubid, no btrfs,
# devicemapper or zfs graph drivers, OpenPGP in Go instead of gpgme.
# cgo compiles against Debian 13's headers and links against its libraries
# (libc, libseccomp, libsqlite3: the ones the image ships), unpacked into a
# sysroot from the private trixie apt setup, so the binary needs nothing
# newer than the image has.
# The result is cached under CACHE keyed by every input (go.mod, go.sum, the
# patches, the tags, the Go version, the trixie .debs and this script); Go's
# own caches (GOMODCACHE, GOCACHE) stay where Go keeps them, so a changed key
# recompiles only what changed. Needs Go >= 1.24 and gcc.
# aarch64 is cross-built (aarch64-linux-gnu-gcc) against Debian's arm64
# packages.
# Usage: image/build-podman.sh CACHE OUT_BINARY [x86_64|aarch64]
set -eu
cache=$1; out=$2; arch=${3:-x86_64}
here=$(cd "$(dirname "$0")/.." && pwd)
apt="$here/image/trixie-apt.sh"
engine="$here/engine"
# Go's and Debian's names for the architecture, the C compiler, and the
# dynamic loader (to check that the result starts).
case $arch in
  x86_64) goarch=amd64; deb_arch=amd64; cc=gcc; loader=ld-linux-x86-64.so.2 ;;
  aarch64) goarch=arm64; deb_arch=arm64; cc=aarch64-linux-gnu-gcc; loader=ld-linux-aarch64.so.1 ;;
  *) echo "podman: unknown architecture $arch (x86_64 or aarch64)" >&2; exit 1 ;;
esac
triplet=$arch-linux-gnu
export SKIFF_DEB_ARCH=$deb_arch
# The appliance's tags (Podman's Makefile adds systemd, apparmor, selinux,
# libsubid, seccomp and its btrfs/devicemapper exclusions by default).
# libsqlite3: link Debian's SQLite (security updates arrive with each build)
# instead of compiling go-sqlite3's amalgamation. The Rekor stub leaves out
# transparency-log checks of sigstore signatures, which only a policy.json
# asking for them uses (Skiff's accepts anything). Not usable in 5.4.2:
# containers_image_fulcio_stub does not build (containers/image 5.34), and
# containers_image_docker_daemon_stub panics at start ("Duplicate image
# transport name docker-daemon": Podman imports the real transport too).
# skiff: our patch 0014's tag, which leaves out the CLI's machine parts.
tags="skiff seccomp libsqlite3 containers_image_openpgp exclude_graphdriver_btrfs btrfs_noversion
  exclude_graphdriver_devicemapper exclude_graphdriver_zfs containers_image_rekor_stub"
tags=$(echo $tags)
# The development packages cgo compiles and links against (with their
# dependencies: libc6, linux-libc-dev, libseccomp2, libsqlite3-0, ...).
devs="libc6-dev libseccomp-dev libsqlite3-dev"
command -v go >/dev/null || { echo "podman: go is missing (Go >= 1.24)" >&2; exit 1; }
command -v "$cc" >/dev/null || { echo "podman: $cc is missing" >&2; exit 1; }

pdir="$cache/podman"
mkdir -p "$pdir"
# One build at a time (parallel checkouts share the cache and the sysroot).
exec 9>"$pdir/.lock"
flock 9

# The trixie .debs apt resolves now (newest versions): part of the key, so a
# security update of libc or libseccomp rebuilds against it.
debs="$pdir/debs-$arch"
mkdir -p "$debs/partial"
resolve=$(mktemp -d)
trap 'rm -rf "$resolve"' EXIT
mkdir "$resolve/partial"
"$apt" "$cache" apt-get install --print-uris -qq -o Dir::Cache::archives="$resolve" $devs > "$resolve/uris"
sed -n "s/^'[^']*' \([^ ]*\.deb\) .*/\1/p" "$resolve/uris" | sort > "$resolve/wanted"
[ -s "$resolve/wanted" ] || { echo "podman: apt resolved no packages" >&2; exit 1; }

version=$(awk '$1 == "github.com/containers/podman/v5" { print $2 } $1 == "require" && $2 == "github.com/containers/podman/v5" { print $3 }' "$engine/go.mod")
[ -n "$version" ] || { echo "podman: engine/go.mod requires no podman version" >&2; exit 1; }
key=$( (echo "$version $arch $tags"; go version; "$cc" --version | head -n1; cat "$resolve/wanted" "$0" \
  "$engine/go.mod" "$engine/go.sum"; cat "$engine"/patches/*.patch "$engine"/patches/common/*.patch 2>/dev/null) |
  sha256sum | cut -c1-16)
cached="$pdir/podman-$arch-$version-$key"
# OUT is rewritten only when it differs, so make rebuilds nothing after it
# when the cached engine is the same.
put() { mkdir -p "$(dirname "$out")"; cmp -s "$cached" "$out" || cp "$cached" "$out"; }
if [ -x "$cached" ]; then
  echo "podman: cached $cached"
  put; exit 0
fi

start=$(date +%s)
# The sysroot: the resolved .debs unpacked, keyed by their set.
"$apt" "$cache" apt-get install --download-only -qq -o Dir::Cache::archives="$debs" $devs >/dev/null
skey=$(sha256sum < "$resolve/wanted" | cut -c1-16)
sysroot="$pdir/sysroot-$arch-$skey"
if [ ! -d "$sysroot" ]; then
  rm -rf "$pdir/sysroot-$arch"-*
  mkdir -p "$sysroot.tmp"
  while read -r f; do dpkg-deb -x "$debs/$f" "$sysroot.tmp"; done < "$resolve/wanted"
  # The merged /usr of a Debian 13 system (libc.so names /lib/...): without
  # these links ld takes the build machine's older libc.so.6 instead.
  ln -s usr/lib "$sysroot.tmp/lib"; ln -s usr/lib64 "$sysroot.tmp/lib64"
  mv "$sysroot.tmp" "$sysroot"
fi
for d in "$debs"/*.deb; do
  grep -qxF "$(basename "$d")" "$resolve/wanted" || rm -f "$d"
done

# The module, checked against go.sum by `go mod download`, copied writable
# and patched; our module builds it through a replace directive, in a copy
# of engine/ (the checkout is never written to).
work="$pdir/work-$arch"
rm -rf "$work"; mkdir -p "$work"
cp "$engine/go.mod" "$engine/go.sum" "$work/"
moddir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/containers/podman/v5@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$moddir" ] || { echo "podman: go mod download gave no folder for podman $version" >&2; exit 1; }
cp -R "$moddir" "$work/podman"
chmod -R u+w "$work/podman"
for p in "$engine"/patches/*.patch; do
  [ -e "$p" ] || continue
  echo "podman: applying $(basename "$p")"
  patch -s -p1 -d "$work/podman" --no-backup-if-mismatch < "$p"
done
(cd "$work" && go mod edit -replace "github.com/containers/podman/v5=./podman")
# containers/common (libnetwork, libimage), at the version go.mod selects,
# gets engine/patches/common/*.patch the same way.
if ls "$engine"/patches/common/*.patch >/dev/null 2>&1; then
  common=$(awk '$1 == "github.com/containers/common" { print $2 }' "$engine/go.mod")
  [ -n "$common" ] || { echo "podman: engine/go.mod requires no containers/common version" >&2; exit 1; }
  cdir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/containers/common@$common" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$cdir" ] || { echo "podman: go mod download gave no folder for containers/common $common" >&2; exit 1; }
  cp -R "$cdir" "$work/common"
  chmod -R u+w "$work/common"
  for p in "$engine"/patches/common/*.patch; do
    echo "podman: applying common/$(basename "$p")"
    patch -s -p1 -d "$work/common" --no-backup-if-mismatch < "$p"
  done
  (cd "$work" && go mod edit -replace "github.com/containers/common=./common")
fi

echo "podman: building $version for $arch with $(nproc) jobs (tags: $tags; about 15 minutes cold, on 2 cores)"
# --sysroot: trixie's headers and libraries (gcc's own libgcc stays the
# build machine's). gcc searches its own library folder, which is the build
# machine's /usr/lib/$triplet, before the sysroot's: -L and -B put trixie's
# libc and crt files first. -mod=mod: the module has no vendor folder.
libdir="$sysroot/usr/lib/$triplet"
(cd "$work" && CC=$cc CGO_ENABLED=1 GOOS=linux GOARCH=$goarch GOFLAGS=-mod=mod \
  CGO_CFLAGS="--sysroot=$sysroot -O2" CGO_LDFLAGS="--sysroot=$sysroot -B$libdir -L$libdir" \
  go build -trimpath -tags "$tags" -ldflags '-s -w' -o "$cached.tmp" github.com/containers/podman/v5/cmd/podman)
# It must start: run it with trixie's loader and libraries (the build
# machine's libc is older than the one it was linked against). A panic at
# start (two packages registering one name, say) fails the build here
# instead of in the booted guest.
if [ "$arch" = "$(uname -m)" ]; then
  "$libdir/$loader" --library-path "$libdir" "$cached.tmp" --version ||
    { echo "podman: the built binary does not start" >&2; exit 1; }
fi
mv "$cached.tmp" "$cached"
rm -rf "$work"
for old in "$pdir"/podman-"$arch"-*; do
  [ "$old" = "$cached" ] || rm -f "$old"
done
echo "podman: built in $(( $(date +%s) - start )) s, $(stat -c %s "$cached") bytes, needs:" \
  $(readelf -d "$cached" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
put
