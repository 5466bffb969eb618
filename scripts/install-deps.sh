#!/bin/sh
# Installs what building, running and testing Skiff needs on Debian 12:
# Debian packages (only those missing) and tools from crates.io. The system's
# apt sources are not changed; trixie packages for the image are fetched
# separately through image/trixie-apt.sh. Checks again after installing:
# apt may remove a package to satisfy another (a newer qemu-utils from
# backports conflicts with Debian 12's qemu-system-x86).
# Usage: scripts/install-deps.sh [CACHE]
set -eu
packages="qemu-system-x86 qemu-utils ovmf qemu-system-arm qemu-efi-aarch64 gcc-aarch64-linux-gnu xorriso grub-pc-bin grub-efi-amd64-bin grub-common mtools
  squashfs-tools docker.io socat busybox-static bc bison flex libelf-dev libssl-dev cpio zstd xz-utils make
  binutils gcc dosfstools e2fsprogs debian-archive-keyring ca-certificates openssl
  libcap-ng-dev libseccomp-dev pkg-config netcat-openbsd curl protobuf-compiler
  python3-venv patch"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo

missing_packages() {
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf ' %s' "$p"
  done
}
# qemu-utils and qemu-system-arm must match qemu-system-x86's version, or apt
# removes one of them: when one is missing, ask for all, with versions pinned.
install_list() {
  qemu=""
  for p in "$@"; do
    case $p in qemu-system-x86|qemu-utils|qemu-system-arm) qemu=1 ;; *) printf ' %s' "$p" ;; esac
  done
  if [ -n "$qemu" ]; then
    v=$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: //p')
    printf ' qemu-system-x86=%s qemu-utils=%s qemu-system-arm=%s' "$v" "$v" "$v"
  fi
}

missing=$(missing_packages)
if [ -n "$missing" ]; then
  echo "deps: installing$missing"
  $sudo apt-get update -qq
  # shellcheck disable=SC2046
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --allow-downgrades --no-install-recommends \
    $(install_list $missing) >/dev/null
  still=$(missing_packages)
  if [ -n "$still" ]; then
    echo "deps: ERROR: still not installed after apt-get:$still" >&2
    exit 1
  fi
fi

# The init is a static musl binary, for each architecture.
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "deps: rustup target add $target"
    rustup target add "$target"
  fi
done

# Tools from crates.io, each at a fixed version.
cargo_tool() { # binary crate version
  bin="${CARGO_HOME:-$HOME/.cargo}/bin/$1"
  if ! "$bin" --version 2>/dev/null | grep -q "$3"; then
    echo "deps: cargo install $2 $3 (a few minutes, once)"
    cargo install --quiet --locked "$2" --version "$3"
  fi
}
cargo_tool virtiofsd virtiofsd 1.14.0
# vhost-device-vsock: its release with our patches (cached in CACHE, the
# first argument; default ~/.cache/skiff), over any unpatched one.
"$(dirname "$0")/build-vsockdev.sh" "${1:-$HOME/.cache/skiff}"

# Go builds skiff-buildkit (buildkit/, Go >= 1.22) and the engine
# (image/build-podman.sh, from Podman's module: Go >= 1.24 for engine/go.mod's
# tool directive); Debian 12's golang is 1.19, so it must come from elsewhere
# (go.dev's tarball in /usr/local/go).
PATH="$PATH:/usr/local/go/bin"
if ! go version 2>/dev/null | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])'; then
  echo "deps: ERROR: Go >= 1.24 is needed for the engine and skiff-buildkit (found: $(go version 2>/dev/null || echo none)); install it from https://go.dev/dl into /usr/local/go" >&2
  exit 1
fi

# Node >= 20 with npm runs Testcontainers for Node 11 (tests/tests/clients.rs);
# Debian 12's nodejs is 18, so it must come from elsewhere (nodejs.org, NodeSource).
if ! node --version 2>/dev/null | grep -Eq '^v(2[0-9]|[3-9][0-9])\.' || ! command -v npm >/dev/null; then
  echo "deps: WARNING: Node.js >= 20 with npm is needed by tests/tests/clients.rs (found: $(node --version 2>/dev/null || echo none)); make clients will fail without it" >&2
fi
