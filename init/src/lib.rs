//! Skiff's PID 1 as a library: the modules the `skiff-init` binary is made
//! of (its `main.rs` is the boot sequence), grouped by concern. The library
//! exists so the fuzz targets in `fuzz/` reach the parsers that take outside
//! input; the binary is the only other user.
//! Threads are started only with `thread::Builder` (a failure is an error
//! to handle, where `thread::spawn` panics: a kernel panic in PID 1);
//! init/clippy.toml makes `std::thread::spawn` a lint error here.

#![deny(clippy::disallowed_methods)]

pub mod boot;
pub mod config;
pub mod disk;
pub mod net;
pub mod secs;
pub mod services;
pub mod supervise;
