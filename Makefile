# Skiff: build the appliance ISO and the host CLI, boot it, test it.
#   make run    install deps, build everything, boot the ISO in QEMU
#   make test   install deps, build everything, run every test
#   make iso    out/skiff.iso only (ARCH=aarch64: out/skiff-aarch64.iso)
#   make bench  size and speed figures (out/bench.json)
#   make fuzz   fuzz every outside-input parser, FUZZ_SECONDS (20) each
# Slow artefacts (kernel build, trixie packages) are cached in SKIFF_CACHE.

SKIFF_CACHE ?= $(HOME)/.cache/skiff
INITRD_COMPRESSION ?= xz
# The ISO `make iso` and `make run` build and boot: x86_64 or aarch64.
ARCH ?= x86_64
TARGET := x86_64-unknown-linux-musl
INIT := target/$(TARGET)/release/skiff-init
SKIFF := target/release/skiff
# BuildKit's /grpc and /session for buildx and compose (Go; buildkit/).
BUILDKIT := target/release/skiff-buildkit
ISO_x86_64 := out/skiff.iso
ISO_aarch64 := out/skiff-aarch64.iso
# aarch64: cross-built init (linker in .cargo/config.toml), parts under out/aarch64.
A64 := out/aarch64
INIT_A64 := target/aarch64-unknown-linux-musl/release/skiff-init
# Go (skiff-buildkit) where the official tarball puts it, if not on PATH.
export PATH := $(PATH):$(or $(CARGO_HOME),$(HOME)/.cargo)/bin:/usr/local/go/bin

.PHONY: all deps iso iso-x86_64 iso-aarch64 host clients run test unit smoke bench fuzz clean FORCE
all: iso host

deps:
	@scripts/install-deps.sh $(SKIFF_CACHE)

# PID 1: a static musl binary (static-pie), so it needs nothing from the
# image; musl instead of static glibc keeps it near 1 MiB (1.75 MB with glibc).
$(INIT): FORCE
	cargo build --release --locked -p skiff-init --target $(TARGET)

$(INIT_A64): FORCE
	cargo build --release --locked -p skiff-init --target aarch64-unknown-linux-musl

$(SKIFF): FORCE
	cargo build --release --locked -p skiff

# Go's own caches (GOMODCACHE, GOCACHE) keep the modules and builds, outside the checkout.
$(BUILDKIT): FORCE
	@command -v go >/dev/null || { echo "make: Go >= 1.22 is needed to build skiff-buildkit (buildkit/): https://go.dev/dl" >&2; exit 1; }
	cd buildkit && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o ../$(BUILDKIT) .

host: $(SKIFF) $(BUILDKIT)

out/bzImage: kernel-config kernel-config.x86_64 image/build-kernel.sh image/trixie-apt.sh
	image/build-kernel.sh $(SKIFF_CACHE) $@ x86_64

# netavark and aardvark-dns from crates.io, built for size (cached).
out/netavark.stamp: image/build-netavark.sh
	image/build-netavark.sh $(SKIFF_CACHE) x86_64-unknown-linux-gnu out/netavark
	touch $@

# The engine: Podman from its Go module (engine/go.mod, go.sum) with the
# patches in engine/patches, built against Debian 13's libraries (cached).
# Run on every build: a security update of those libraries rebuilds it;
# out/podman is rewritten only when it changed.
out/podman: FORCE
	image/build-podman.sh $(SKIFF_CACHE) $@ x86_64

out/rootfs.stamp: $(INIT) out/netavark.stamp out/podman image/build-rootfs.sh image/trixie-apt.sh $(shell find image/etc -type f)
	image/build-rootfs.sh $(SKIFF_CACHE) $(INIT) out/rootfs x86_64 out/netavark out/podman
	touch $@

out/skiff.iso: out/bzImage out/rootfs.stamp image/build-iso.sh image/grub.cfg image/grub-embed.cfg image/cmdline
	image/build-iso.sh out/bzImage out/rootfs $@ $(INITRD_COMPRESSION)

$(A64)/Image.gz: kernel-config kernel-config.aarch64 image/build-kernel.sh image/trixie-apt.sh
	image/build-kernel.sh $(SKIFF_CACHE) $@ aarch64

# Our podman, cross-built (cached); netavark and aardvark-dns stay Debian's.
$(A64)/podman: FORCE
	image/build-podman.sh $(SKIFF_CACHE) $@ aarch64

$(A64)/rootfs.stamp: $(INIT_A64) $(A64)/podman image/build-rootfs.sh image/trixie-apt.sh $(shell find image/etc -type f)
	image/build-rootfs.sh $(SKIFF_CACHE) $(INIT_A64) $(A64)/rootfs aarch64 "" $(A64)/podman
	touch $@

$(ISO_aarch64): $(A64)/Image.gz $(A64)/rootfs.stamp image/build-iso.sh image/grub.cfg image/grub-embed.cfg image/cmdline.aarch64 image/fetch-arm64.sh
	image/build-iso.sh $(A64)/Image.gz $(A64)/rootfs $@ $(INITRD_COMPRESSION) aarch64 "$$(image/fetch-arm64.sh $(SKIFF_CACHE) grub-efi-arm64-bin)/usr/lib/grub/arm64-efi"

# For `make bench` only (SKIFF_BENCH_DEBIAN_ENGINE=1): the same appliance with
# Debian 13's podman package instead of ours, measured side by side.
DEB := out/debian-engine
$(DEB)/rootfs.stamp: $(INIT) out/netavark.stamp image/build-rootfs.sh image/trixie-apt.sh $(shell find image/etc -type f)
	image/build-rootfs.sh $(SKIFF_CACHE) $(INIT) $(DEB)/rootfs x86_64 out/netavark
	touch $@

$(DEB)/skiff.iso: out/bzImage $(DEB)/rootfs.stamp image/build-iso.sh image/grub.cfg image/grub-embed.cfg image/cmdline
	image/build-iso.sh out/bzImage $(DEB)/rootfs $@ $(INITRD_COMPRESSION)

# Debian's arm64 busybox-static, for the aarch64 tests' container image.
$(A64)/busybox-static: image/fetch-arm64.sh
	d=$$(image/fetch-arm64.sh $(SKIFF_CACHE) busybox-static) && \
	  if [ -f "$$d/usr/bin/busybox" ]; then cp "$$d/usr/bin/busybox" $@; else cp "$$d/bin/busybox" $@; fi

iso: deps iso-$(ARCH)
iso-x86_64: $(ISO_x86_64)
iso-aarch64: $(ISO_aarch64)

run: deps iso host
	$(SKIFF) run --iso $(ISO_$(ARCH))

# Both ISOs: the suites boot the aarch64 one too (tests/tests/aarch64.rs).
test: deps iso-x86_64 iso-aarch64 $(A64)/busybox-static host clients
	cd buildkit && go test ./...
	cargo test --workspace --locked -- --nocapture --test-threads=1

# Debian 13's docker CLI with its buildx and compose plugins, for tests/tests/build.rs;
# docker-py and Testcontainers (PyPI, npm), pinned, for tests/tests/clients.rs.
clients:
	scripts/fetch-clients.sh $(SKIFF_CACHE)
	scripts/fetch-py-node-clients.sh $(SKIFF_CACHE)

bench: deps iso host $(if $(filter 1,$(SKIFF_BENCH_AARCH64)),iso-aarch64) $(if $(filter 1,$(SKIFF_BENCH_DEBIAN_ENGINE)),$(DEB)/skiff.iso)
	cargo run --release --locked -p skiff-tests --bin bench

# Needs nightly (skipped, saying so, without it); fuzz/ is its own workspace.
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf out
