//! `make bench`: size, boot, memory, socket-path, published-port and shutdown figures of the
//! appliance, measured in one run, printed as a table and written as JSON.
//! Benchmarks print; they assert only that what they measure happened.

pub mod baseline;
pub mod boot;
pub mod console;
pub mod cpio;
pub mod floor;
pub mod giveback;
pub mod http;
pub mod memory;
pub mod ports;
pub mod report;
pub mod shares;
pub mod size;
pub mod socket;
pub mod stats;
pub mod table;
pub mod watch;

/// Everything one run measured.
pub struct Results {
    pub vm_memory_mib: u32,
    pub vm_cpus: u32,
    pub sizes: size::Sizes,
    pub boots: Vec<boot::Boot>,
    pub floors: Vec<floor::FloorBoot>,
    pub memory_idle: memory::Memory,
    pub memory_after: memory::Memory,
    pub containers_run: usize,
    pub load: socket::Transfer,
    pub save: socket::Transfer,
    pub image_bytes: u64,
    pub paths: Vec<socket::PathFigures>,
    pub not_compared: Vec<String>,
    pub shares: Vec<shares::ShareFigures>,
    pub ports: ports::PortFigures,
    /// The aarch64 ISO, when measured (`SKIFF_BENCH_AARCH64=1`).
    pub aarch64: Option<Aarch64>,
    /// Memory and disk given back, on and off (`SKIFF_BENCH_GIVEBACK=0` skips).
    pub giveback: Option<giveback::GiveBack>,
    /// The same appliance with Debian's podman package (`SKIFF_BENCH_DEBIAN_ENGINE=1`).
    pub debian_engine: Option<DebianEngine>,
    /// Host edits to file watchers, on and off (`SKIFF_BENCH_WATCH=0` skips).
    pub watch: Option<watch::Watch>,
}

/// The aarch64 ISO's sizes and one boot's milestones (qemu-system-aarch64,
/// TCG, edk2): beside x86_64's, as issue 14 asks.
pub struct Aarch64 {
    pub sizes: size::Sizes,
    pub boot: boot::Boot,
}

/// The appliance built with Debian 13's podman package instead of our
/// build: its sizes, one boot and its idle memory, so the own-engine build
/// is judged against what it replaced in one run.
pub struct DebianEngine {
    pub sizes: size::Sizes,
    pub boot: boot::Boot,
    pub memory_idle: memory::Memory,
}
