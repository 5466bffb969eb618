//! The host CLI as a library: the modules the `skiff` binary is made of
//! (its `main.rs` is the command line). The library exists so the fuzz
//! targets in `fuzz/` reach the parsers of what the guest, QEMU and the
//! state folder hand the CLI; the binary is the only other user.

pub mod commands;
pub mod guest;
pub mod state;
#[cfg(test)]
mod testutil;
mod threads;
pub mod vm;
pub mod watch;
