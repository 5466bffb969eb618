//! Threads that may be refused. `thread::spawn` panics when the system
//! will not start a thread (memory, a pids limit), and the release build
//! aborts on a panic, taking `skiff run` and QEMU down uncleanly. Every
//! thread of the CLI starts here instead: a refused per-connection thread
//! costs that connection, a refused service thread is an error.

use std::io;
use std::thread::{self, JoinHandle};

/// Starts `f` on a thread named `name`.
pub fn spawn<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start a thread ({name}): {e}")))
}
