#!/bin/sh
# Makes the hybrid ISO that boots under BIOS and UEFI, from CD or written to
# a disk. /usr (the engine and its libraries) goes into a squashfs image on
# the ISO, read on demand by the guest; everything else (the init, /etc)
# goes into a small compressed initramfs. GRUB core images have every
# module and the boot entry built in (no module folders on the medium) and
# the EFI system partition is just big enough for BOOTX64.EFI. Fails past
# the 30 MB budget and prints the size of each part.
# Usage: image/build-iso.sh BZIMAGE ROOTFS_DIR OUT_ISO [xz|zstd]
set -eu
kernel=$1; rootfs=$2; iso=$3; comp=${4:-xz}
here=$(cd "$(dirname "$0")/.." && pwd)
limit=$((30 * 1000 * 1000))
work=$(dirname "$iso")/iso-root
tmp=$(dirname "$iso")/iso-tmp
rm -rf "$work" "$tmp"; mkdir -p "$work/boot/grub" "$tmp"
cp "$kernel" "$work/boot/vmlinuz"
cp "$here/image/grub.cfg" "$work/boot/grub/grub.cfg"
echo "Skiff boot medium" > "$work/boot/grub/skiff.id"

case $comp in
  # BCJ x86 filter: a few % smaller on executables; the kernel decodes it.
  xz) compress="xz -q --x86 --lzma2=preset=9e --check=crc32 -T1"; sqfs="-comp xz -Xbcj x86" ;;
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
# appeared, so that is a harmless echo (tests/tests/smoke.rs boots UEFI
# from a virtio disk).
sed '/^[[:space:]]*#/d' "$here/image/grub-embed.cfg" "$here/image/grub.cfg" > "$tmp/grub-embed.cfg"
modules="iso9660 part_msdos part_gpt linux search echo"
grub-mkimage -O i386-pc-eltorito -p /boot/grub -c "$tmp/grub-embed.cfg" \
  -o "$work/boot/grub/eltorito.img" biosdisk $modules
grub-mkimage -O x86_64-efi -p /boot/grub -c "$tmp/grub-embed.cfg" \
  -o "$tmp/BOOTX64.EFI" efi_gop $modules
efi_kb=$(( $(stat -c %s "$tmp/BOOTX64.EFI") / 1024 + 96 ))
mkfs.vfat -C -n SKIFF-EFI "$work/efi.img" "$efi_kb" >/dev/null
mmd -i "$work/efi.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/efi.img" "$tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

xorriso -as mkisofs -quiet -R -J -V SKIFF -no-pad -o "$iso.tmp" \
  -b boot/grub/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table --grub2-boot-info \
  --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
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
