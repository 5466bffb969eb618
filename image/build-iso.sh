#!/bin/sh
# Packs the root filesystem into a compressed initramfs and makes a hybrid
# ISO (BIOS and UEFI, CD and disk) with GRUB. Fails past the 30 MB budget and
# prints the size of each part.
# Usage: image/build-iso.sh BZIMAGE ROOTFS_DIR OUT_ISO [zstd|xz]
set -eu
kernel=$1; rootfs=$2; iso=$3; comp=${4:-zstd}
here=$(cd "$(dirname "$0")/.." && pwd)
limit=$((30 * 1000 * 1000))
work=$(dirname "$iso")/iso-root
rm -rf "$work"; mkdir -p "$work/boot/grub"
cp "$kernel" "$work/boot/vmlinuz"
cp "$here/image/grub.cfg" "$work/boot/grub/grub.cfg"

case $comp in
  zstd) compress="zstd -q -19 -T0 --check" ;;
  xz) compress="xz -9 -T0 --check=crc32" ;;
  *) echo "iso: unknown compression $comp" >&2; exit 1 ;;
esac
(cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$work/initramfs.cpio"
raw=$(stat -c %s "$work/initramfs.cpio")
$compress < "$work/initramfs.cpio" > "$work/boot/initramfs.img"
rm "$work/initramfs.cpio"

grub-mkrescue -o "$iso.tmp" --compress=xz --fonts= --locales= --themes= \
  --install-modules="linux normal iso9660 biosdisk part_msdos part_gpt fat configfile all_video echo test" \
  "$work" -- -quiet 2>/dev/null
mv "$iso.tmp" "$iso"

size=$(stat -c %s "$iso"); k=$(stat -c %s "$work/boot/vmlinuz"); i=$(stat -c %s "$work/boot/initramfs.img")
printf 'iso: %s %d bytes (kernel %d, initramfs %d %s of %d raw, boot loader and ISO overhead %d)\n' \
  "$iso" "$size" "$k" "$i" "$comp" "$raw" $((size - k - i))
if [ "$size" -ge "$limit" ]; then
  echo "iso: ERROR: $size bytes is over the 30 MB budget" >&2; rm -f "$iso"; exit 1
fi
