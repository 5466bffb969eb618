//! Wire formats that the Skiff guest init and the host CLI both speak.
//!
//! Pure code only (bytes in, values out), so both sides share one tested
//! implementation instead of two copies.

pub mod control;
pub mod copy;
pub mod framing;
pub mod http;
pub mod hybrid;
pub mod ports;
pub mod shell;

/// The guest's vsock port for the engine API (Docker's historic plain-text port).
/// Override with `skiff.port=N` on the kernel command line.
pub const DEFAULT_ENGINE_PORT: u32 = 2375;
