//! Wire formats that the Skiff guest init and the host CLI both speak.
//!
//! Pure code only (bytes in, values out), so both sides share one tested
//! implementation instead of two copies.

pub mod control;
pub mod copy;
pub mod framing;
pub mod http;
pub mod hybrid;
pub mod shell;

/// The guest's vsock port for the engine API (Docker's historic plain-text port).
/// Override with `skiff.port=N` on the kernel command line.
pub const DEFAULT_ENGINE_PORT: u32 = 2375;

/// The guest's longest clean shutdown, trigger to power-off, in seconds
/// (the sum of the init's step limits; a unit test there keeps it equal).
/// The host waits longer than this before it kills the VM.
pub const GUEST_SHUTDOWN_WORST_CASE_SECS: u64 = 67;
