#!/bin/sh
# Assembles the appliance's root filesystem from Debian 13 (trixie) packages:
# only the binaries the engine needs, plus the shared libraries they load
# (found by walking ELF NEEDED entries), Skiff's /etc and the init.
# netavark and aardvark-dns come from HELPERS_DIR (image/build-netavark.sh
# builds them for size) instead of Debian's packages.
# Usage: image/build-rootfs.sh CACHE INIT_BINARY HELPERS_DIR OUT_DIR
set -eu
cache=$1; init=$(realpath "$2"); helpers=$(realpath "$3"); out=$(realpath -m "$4")
here=$(cd "$(dirname "$0")/.." && pwd)
apt="$here/image/trixie-apt.sh"

packages="podman crun conmon netavark aardvark-dns catatonit nftables e2fsprogs ca-certificates golang-github-containers-common busybox"

# Binaries to copy from the packages, at the same path in the image.
binaries="
/usr/bin/podman
/usr/bin/crun
/usr/bin/conmon
/usr/bin/catatonit
/usr/sbin/nft
/usr/sbin/mke2fs
/usr/sbin/e2fsck
"

# The shared cache is one build's at a time from here on: the package
# lists, the .debs and the staging trees (pruned below) are all in it.
debs="$cache/debs"
mkdir -p "$debs"
lock="$cache/apt.lock"
exec 9>"$lock"
flock 9
export SKIFF_APT_LOCKED="$lock"

# The .debs apt resolves now (newest versions, with their dependencies):
# only these are unpacked, so an older download can never overwrite a
# security update. (--print-uris into an empty folder lists them all.)
resolve=$(mktemp -d)
trap 'rm -rf "$resolve"' EXIT
mkdir "$resolve/partial"
"$apt" "$cache" apt-get install --print-uris -qq -o Dir::Cache::archives="$resolve" $packages > "$resolve/uris"
sed -n "s/^'[^']*' \([^ ]*\.deb\) .*/\1/p" "$resolve/uris" | sort > "$resolve/wanted"
[ -s "$resolve/wanted" ] || { echo "rootfs: apt resolved no packages" >&2; exit 1; }
"$apt" "$cache" apt-get install --download-only -qq -o Dir::Cache::archives="$debs" $packages >/dev/null
while read -r f; do
  [ -f "$debs/$f" ] || { echo "rootfs: $f was resolved but not downloaded" >&2; exit 1; }
done < "$resolve/wanted"
# Superseded .debs go (apt keeps every version it ever fetched).
for d in "$debs"/*.deb; do
  grep -qxF "$(basename "$d")" "$resolve/wanted" || { echo "rootfs: pruning superseded $(basename "$d")"; rm -f "$d"; }
done

# Unpack the resolved packages once into a staging tree keyed by their set;
# older staging trees are removed.
key=$(sha256sum < "$resolve/wanted" | cut -c1-16)
stage="$cache/stage-$key"
for old in "$cache"/stage-*; do
  [ "$old" = "$stage" ] || [ ! -e "$old" ] || rm -rf "$old"
done
if [ ! -d "$stage" ]; then
  mkdir -p "$stage.tmp"
  while read -r f; do dpkg-deb -x "$debs/$f" "$stage.tmp"; done < "$resolve/wanted"
  mv "$stage.tmp" "$stage"
fi
echo "rootfs: $(wc -l < "$resolve/wanted") packages (newest resolved versions), staged in $stage"

rm -rf "$out"; mkdir -p "$out"
cd "$out"
mkdir -p usr/bin usr/sbin usr/lib/x86_64-linux-gnu usr/lib64 usr/lib/podman usr/libexec/podman \
  etc/containers etc/ssl/certs proc sys dev run tmp var/tmp var/lib/containers var/lib/skiff mnt root usr/share/containers
ln -s usr/bin bin; ln -s usr/sbin sbin; ln -s usr/lib lib; ln -s usr/lib64 lib64
chmod 1777 tmp var/tmp; chmod 0700 root

# Resolve a library name to a real file in the staging tree.
find_lib() {
  for dir in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu usr/lib lib; do
    if [ -e "$stage/$dir/$1" ]; then echo "$dir/$1"; return 0; fi
  done
  return 1
}
# Copy FILE (a path on the build machine; symlinks followed) to DST in the
# image, then (for ELF files) every library it needs, from the staging tree,
# recursively. The body is a subshell, so each call keeps its own variables:
# an error names the file that needs the missing library.
copy_with_libs() (
  src=$1; dst=$2
  [ -e "$out/$dst" ] && exit 0
  mkdir -p "$out/$(dirname "$dst")"
  cp -L "$src" "$out/$dst"
  for lib in $(readelf -d "$src" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    path=$(find_lib "$lib") || { echo "rootfs: /$dst needs $lib, not found" >&2; exit 1; }
    copy_with_libs "$stage/$path" "usr/lib/x86_64-linux-gnu/$lib"
  done
)
for b in $binaries; do copy_with_libs "$stage$b" "$b"; done
for b in netavark aardvark-dns; do copy_with_libs "$helpers/$b" "usr/lib/podman/$b"; done
# The dynamic loader, at the path every binary names.
copy_with_libs "$stage/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 usr/lib64/ld-linux-x86-64.so.2
# NSS modules are loaded at run time (not NEEDED): files is built into glibc 2.41, dns too.
ln -sf ../../bin/catatonit usr/libexec/podman/catatonit
ln -sf mke2fs usr/sbin/mkfs.ext4
# e2fsck refuses to check without a mount table to tell it the disk is unmounted.
ln -s ../proc/self/mounts etc/mtab
# The seccomp profile the engine applies to containers by default.
cp "$stage/usr/share/containers/seccomp.json" usr/share/containers/
# CA bundle, as update-ca-certificates would write it.
find "$stage/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat > etc/ssl/certs/ca-certificates.crt
# The debug shell (`skiff shell`): busybox's sh and its usual tools, as
# applet links only; names that a real binary already has are left alone.
# Debian's dynamically linked busybox (0.8 MB; busybox-static is 2.0 MB
# with its own copy of glibc). It needs trixie's glibc, so its applets are
# listed through the staging tree's dynamic loader.
copy_with_libs "$stage/usr/bin/busybox" usr/bin/busybox
applets=$("$stage/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$stage/usr/lib/x86_64-linux-gnu" \
  "$stage/usr/bin/busybox" --list)
[ -n "$applets" ] || { echo "rootfs: busybox lists no applets" >&2; exit 1; }
for applet in $applets; do
  case $applet in init|linuxrc|busybox) continue ;; esac
  [ -e "usr/bin/$applet" ] || [ -e "usr/sbin/$applet" ] || ln -s busybox "usr/bin/$applet"
done
# Skiff's own configuration files, then the init.
cp -R "$here/image/etc/." etc/
install -m 0755 "$init" init
mknod -m 600 dev/console c 5 1 2>/dev/null || echo "rootfs: cannot create dev/console (not root?); init will reopen it" >&2
echo "rootfs: $(du -sh . | cut -f1) in $(find . -type f | wc -l) files"
