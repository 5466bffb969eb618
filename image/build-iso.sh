#!/bin/sh
# Makes the hybrid ISO that boots under BIOS and UEFI (x86_64), or UEFI
# (aarch64), from CD or written to a disk. /usr (the engine and its libraries) goes into a squashfs image on
# the ISO, read on demand by the guest; everything else (the init, /etc)
# goes into a small compressed initramfs. GRUB core images have every
# module and the boot entry built in (no module folders on the medium) and
# the EFI system partition is just big enough for BOOTX64.EFI (BOOTAA64.EFI).
# Fails past the 30 MB budget and prints the size of each part. For aarch64,
# GRUB_DIR is the arm64-efi module folder (image/fetch-arm64.sh grub-efi-arm64-bin) for the
# host's grub-mkimage.
# Usage: image/build-iso.sh KERNEL ROOTFS_DIR OUT_ISO [xz|zstd] [x86_64|aarch64 GRUB_DIR]
set -eu
kernel=$1; rootfs=$2; iso=$3; comp=${4:-xz}; arch=${5:-x86_64}; grub_dir=${6:-}
case $arch in
  x86_64) bcj_xz=--x86; bcj_sqfs="-Xbcj x86"; volume=SKIFF ;;
  # mksquashfs 4.5 has no arm64 filter; xz 5.4 and the kernel have.
  aarch64) bcj_xz=--arm64; bcj_sqfs=""; volume=SKIFF_AARCH64
    [ -f "$grub_dir/linux.mod" ] || { echo "iso: no GRUB arm64-efi modules in '$grub_dir'" >&2; exit 1; } ;;
  *) echo "iso: unknown architecture $arch (x86_64 or aarch64)" >&2; exit 1 ;;
esac
here=$(cd "$(dirname "$0")/.." && pwd)
limit=$((30 * 1000 * 1000))
suffix=""; [ "$arch" = x86_64 ] || suffix="-$arch"
work=$(dirname "$iso")/iso-root$suffix
tmp=$(dirname "$iso")/iso-tmp$suffix
rm -rf "$work" "$tmp"; mkdir -p "$work/boot/grub" "$tmp"
cp "$kernel" "$work/boot/vmlinuz"
# The kernel command line lives in image/cmdline (aarch64: image/cmdline.aarch64)
# alone: the host CLI and the bench read it too.
cmdline_file="$here/image/cmdline"; [ "$arch" = x86_64 ] || cmdline_file="$here/image/cmdline.$arch"
cmdline=$(cat "$cmdline_file")
case $cmdline in *'|'*|*'&'*|*'\\'*) echo "iso: $cmdline_file may not hold | & or \\" >&2; exit 1 ;; esac
sed "s|@CMDLINE@|$cmdline|" "$here/image/grub.cfg" > "$work/boot/grub/grub.cfg"
echo "Skiff boot medium" > "$work/boot/grub/skiff.id"

case $comp in
  # BCJ filter: a few % smaller on executables; the kernel decodes it.
  xz) compress="xz -q $bcj_xz --lzma2=preset=9e --check=crc32 -T1"; sqfs="-comp xz $bcj_sqfs" ;;
  zstd) compress="zstd -q -19 -T0 --check"; sqfs="-comp zstd -Xcompression-level 19" ;;
  *) echo "iso: unknown compression $comp" >&2; exit 1 ;;
esac
mkdir -p "$work/skiff"
mksquashfs "$rootfs/usr" "$work/skiff/usr.squashfs" $sqfs -b 1M -noappend -all-root -no-xattrs -quiet -no-progress >/dev/null
usr_raw=$(du -sb "$rootfs/usr" | cut -f1)
# The init only mounts an ISO whose squashfs matches the one it was built with.
build_id=$(sha256sum "$work/skiff/usr.squashfs" | cut -c1-16)
echo "$build_id" > "$work/skiff/build-id"
# The initramfs: a copy of ROOTFS_DIR without /usr's contents, plus the
# build id (ROOTFS_DIR itself is this step's input and stays unchanged).
initramfs=$(realpath "$tmp")/initramfs-root
mkdir -p "$initramfs"
(cd "$rootfs" && find . -mindepth 1 -not -path './usr/*' | cpio -p -d -m --quiet "$initramfs")
[ -x "$initramfs/init" ] || { echo "iso: $rootfs has no init" >&2; exit 1; }
mkdir -p "$initramfs/etc/skiff"; echo "$build_id" > "$initramfs/etc/skiff/build-id"
(cd "$initramfs" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$tmp/initramfs.cpio"
raw=$(stat -c %s "$tmp/initramfs.cpio")
$compress < "$tmp/initramfs.cpio" > "$work/boot/initramfs.img"

# Both core images have their whole configuration built in and no `normal`
# module (which would add 330 KB to the EFI image: menus, scripting, net,
# crypto, gettext): GRUB runs a built-in configuration with its rescue
# parser, plain commands only. image/grub-embed.cfg finds the Skiff medium
# (CD, or the hybrid ISO written to a disk), then image/grub.cfg (also on
# the medium, for reading) boots it. The parser knows no comments (under
# UEFI from a disk, `Unknown command '#'` stopped at a prompt), so comment
# lines are dropped; in a trial the output of the first line never
# appeared, so that is a harmless echo (tests/tests/boot.rs boots UEFI
# from a virtio disk).
sed '/^[[:space:]]*#/d' "$here/image/grub-embed.cfg" "$work/boot/grub/grub.cfg" > "$tmp/grub-embed.cfg"
modules="iso9660 part_msdos part_gpt linux search echo"
if [ "$arch" = x86_64 ]; then
  grub-mkimage -O i386-pc-eltorito -p /boot/grub -c "$tmp/grub-embed.cfg" \
    -o "$work/boot/grub/eltorito.img" biosdisk $modules
  grub-mkimage -O x86_64-efi -p /boot/grub -c "$tmp/grub-embed.cfg" \
    -o "$tmp/BOOT.EFI" efi_gop $modules
  efi_name=BOOTX64.EFI
  bios="-b boot/grub/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table --grub2-boot-info
    --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img"
else
  # The kernel is an Image.gz: gzio decompresses it as GRUB loads it.
  grub-mkimage -O arm64-efi -d "$grub_dir" -p /boot/grub -c "$tmp/grub-embed.cfg" \
    -o "$tmp/BOOT.EFI" efi_gop gzio $modules
  efi_name=BOOTAA64.EFI
  bios=""
fi
efi_kb=$(( $(stat -c %s "$tmp/BOOT.EFI") / 1024 + 96 ))
mkfs.vfat -C -n SKIFF-EFI "$work/efi.img" "$efi_kb" >/dev/null
mmd -i "$work/efi.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/efi.img" "$tmp/BOOT.EFI" "::/EFI/BOOT/$efi_name"

# shellcheck disable=SC2086
xorriso -as mkisofs -quiet -R -J -V "$volume" -no-pad -o "$iso.tmp" $bios \
  --efi-boot efi.img -efi-boot-part --efi-boot-image --protective-msdos-label \
  "$work"
mv "$iso.tmp" "$iso"
rm -rf "$tmp"

size=$(stat -c %s "$iso"); k=$(stat -c %s "$work/boot/vmlinuz"); i=$(stat -c %s "$work/boot/initramfs.img")
u=$(stat -c %s "$work/skiff/usr.squashfs")
printf 'iso: %s %d bytes: kernel %d, initramfs %d (%s of %d raw), /usr squashfs %d (%s of %d raw), boot loader and ISO overhead %d\n' \
  "$iso" "$size" "$k" "$i" "$comp" "$raw" "$u" "$comp" "$usr_raw" $((size - k - i - u))
if [ "$size" -ge "$limit" ]; then
  echo "iso: ERROR: $size bytes is over the 30 MB budget" >&2; rm -f "$iso"; exit 1
fi
