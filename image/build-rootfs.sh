#!/bin/sh
# Assembles the appliance's root filesystem from Debian 13 (trixie) packages:
# only the binaries the engine needs, plus the shared libraries they load
# (found by walking ELF NEEDED entries), Skiff's /etc and the init.
# netavark and aardvark-dns come from HELPERS_DIR (image/build-netavark.sh
# builds them for size) when it is given, else from Debian's packages; the
# engine from PODMAN (image/build-podman.sh builds it from Podman's Go module
# with Skiff's patches) when it is given, else from Debian's podman package.
# ARCH aarch64 takes Debian's arm64 packages (their .debs and staging trees
# under CACHE/arm64).
# Usage: image/build-rootfs.sh CACHE INIT_BINARY OUT_DIR [x86_64|aarch64 [HELPERS_DIR [PODMAN]]]
set -eu
cache=$1; init=$(realpath "$2"); out=$(realpath -m "$3"); arch=${4:-x86_64}; helpers=${5:+$(realpath "$5")}
podman=${6:+$(realpath "$6")}
here=$(cd "$(dirname "$0")/.." && pwd)
apt="$here/image/trixie-apt.sh"
# Debian's name for the architecture, its library folder, and the dynamic
# loader with the path every binary names (made a link to the real file).
case $arch in
  x86_64) deb_arch=amd64; store=$cache; loader=ld-linux-x86-64.so.2; loader_link=usr/lib64/ld-linux-x86-64.so.2 ;;
  aarch64) deb_arch=arm64; store=$cache/arm64; loader=ld-linux-aarch64.so.1; loader_link=usr/lib/ld-linux-aarch64.so.1 ;;
  *) echo "rootfs: unknown architecture $arch (x86_64 or aarch64)" >&2; exit 1 ;;
esac
triplet=$arch-linux-gnu
export SKIFF_DEB_ARCH=$deb_arch

# Our own podman needs only libc, libseccomp and libsqlite3 from these (the
# libraries it loads are found below, as for every binary); Debian's package
# brings gpgme, libsubid, SELinux, AppArmor and systemd's libraries too.
packages="crun conmon netavark aardvark-dns catatonit nftables e2fsprogs ca-certificates golang-github-containers-common busybox"
if [ -n "$podman" ]; then packages="libseccomp2 libsqlite3-0 $packages"; else packages="podman $packages"; fi

# Binaries to copy from the packages, at the same path in the image.
binaries="
/usr/bin/crun
/usr/bin/conmon
/usr/bin/catatonit
/usr/sbin/nft
/usr/sbin/mke2fs
/usr/sbin/e2fsck
"
[ -n "$podman" ] || binaries="/usr/bin/podman $binaries"

# The shared cache is one build's at a time from here on: the package
# lists, the .debs and the staging trees (pruned below) are all in it.
debs="$store/debs"
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
stage="$store/stage-$key"
for old in "$store"/stage-*; do
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
mkdir -p usr/bin usr/sbin "usr/lib/$triplet" usr/lib64 usr/lib/podman usr/libexec/podman \
  etc/containers etc/ssl/certs proc sys dev run tmp var/tmp var/lib/containers var/lib/skiff mnt root usr/share/containers
ln -s usr/bin bin; ln -s usr/sbin sbin; ln -s usr/lib lib; ln -s usr/lib64 lib64
chmod 1777 tmp var/tmp; chmod 0700 root

# Resolve a library name to a real file in the staging tree.
find_lib() {
  for dir in "usr/lib/$triplet" "lib/$triplet" usr/lib lib; do
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
    copy_with_libs "$stage/$path" "usr/lib/$triplet/$lib"
  done
)
for b in $binaries; do copy_with_libs "$stage$b" "$b"; done
[ -z "$podman" ] || copy_with_libs "$podman" usr/bin/podman
for b in netavark aardvark-dns; do
  if [ -n "$helpers" ]; then copy_with_libs "$helpers/$b" "usr/lib/podman/$b"
  else copy_with_libs "$stage/usr/lib/podman/$b" "usr/lib/podman/$b"; fi
done
# The dynamic loader, at the path every binary names.
copy_with_libs "$stage/usr/lib/$triplet/$loader" "usr/lib/$triplet/$loader"
ln -sf "$(realpath -m --relative-to="$(dirname "$out/$loader_link")" "$out/usr/lib/$triplet/$loader")" "$loader_link"
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
# listed through the staging tree's dynamic loader; a foreign
# architecture's busybox cannot run here, so the build machine's lists them.
copy_with_libs "$stage/usr/bin/busybox" usr/bin/busybox
if [ "$arch" = "$(uname -m)" ]; then
  applets=$("$stage/usr/lib/$triplet/$loader" --library-path "$stage/usr/lib/$triplet" "$stage/usr/bin/busybox" --list)
else
  applets=$(busybox --list)
fi
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
