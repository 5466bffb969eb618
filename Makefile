# Skiff: build the appliance ISO and the host CLI, boot it, test it.
#   make run    install deps, build everything, boot the ISO in QEMU
#   make test   install deps, build everything, run every test
#   make iso    out/skiff.iso only
#   make bench  size and speed figures (out/bench.json)
#   make fuzz   fuzz every outside-input parser, FUZZ_SECONDS (20) each
# Slow artefacts (kernel build, trixie packages) are cached in SKIFF_CACHE.

SKIFF_CACHE ?= $(HOME)/.cache/skiff
INITRD_COMPRESSION ?= xz
TARGET := x86_64-unknown-linux-musl
INIT := target/$(TARGET)/release/skiff-init
SKIFF := target/release/skiff
export PATH := $(PATH):$(or $(CARGO_HOME),$(HOME)/.cargo)/bin

.PHONY: all deps iso host run test unit smoke bench fuzz clean FORCE
all: iso host

deps:
	@scripts/install-deps.sh

# PID 1: a static musl binary (static-pie), so it needs nothing from the
# image; musl instead of static glibc keeps it near 1 MiB (1.75 MB with glibc).
$(INIT): FORCE
	cargo build --release --locked -p skiff-init --target $(TARGET)

$(SKIFF): FORCE
	cargo build --release --locked -p skiff

host: $(SKIFF)

out/bzImage: kernel-config image/build-kernel.sh image/trixie-apt.sh
	image/build-kernel.sh $(SKIFF_CACHE) $@

# netavark and aardvark-dns from crates.io, built for size (cached).
out/netavark.stamp: image/build-netavark.sh
	image/build-netavark.sh $(SKIFF_CACHE) x86_64-unknown-linux-gnu out/netavark
	touch $@

out/rootfs.stamp: $(INIT) out/netavark.stamp image/build-rootfs.sh image/trixie-apt.sh $(shell find image/etc -type f)
	image/build-rootfs.sh $(SKIFF_CACHE) $(INIT) out/netavark out/rootfs
	touch $@

out/skiff.iso: out/bzImage out/rootfs.stamp image/build-iso.sh image/grub.cfg image/grub-embed.cfg
	image/build-iso.sh out/bzImage out/rootfs $@ $(INITRD_COMPRESSION)

iso: deps out/skiff.iso

run: deps iso host
	$(SKIFF) run --iso out/skiff.iso

test: deps iso host
	cargo test --workspace --locked -- --nocapture --test-threads=1

bench: deps iso host
	cargo run --release --locked -p skiff-tests --bin bench

# Needs nightly (skipped, saying so, without it); fuzz/ is its own workspace.
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf out
