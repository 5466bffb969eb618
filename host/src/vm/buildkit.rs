//! skiff-buildkit, the BuildKit endpoint for buildx and compose (the Go
//! program in `buildkit/`), as a child of `skiff run` or `skiff bridge`:
//! started on a private socket, killed and reaped with us. The bridge
//! routes BuildKit's upgrades to that socket (`guest::build`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::guest::build::HELPER;
use crate::vm::process;

/// The program, beside `skiff` (as `make host` builds them) or on PATH.
pub fn find_helper() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(HELPER)));
    beside.filter(|p| p.is_file()).or_else(|| process::find_program(HELPER))
}

/// A running skiff-buildkit, killed and reaped when dropped.
pub struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    /// Starts skiff-buildkit on `socket` (in the private state folder),
    /// building with the engine behind `engine_sock`. `None`, said on
    /// stderr, when the program is not installed: builds then go to the
    /// engine as before (buildx falls back to its own builder).
    pub fn start(socket: &Path, engine_sock: &Path) -> Option<Helper> {
        let Some(program) = find_helper() else {
            eprintln!("skiff: no {HELPER} beside skiff or on PATH: `docker build` with buildx will not find a BuildKit builder (make host builds it)");
            return None;
        };
        match Self::spawn(&program, socket, engine_sock) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("skiff: cannot start {}: {e}; `docker build` with buildx will not find a BuildKit builder", program.display());
                None
            }
        }
    }

    fn spawn(program: &Path, socket: &Path, engine_sock: &Path) -> io::Result<Helper> {
        let _ = std::fs::remove_file(socket);
        let mut child = process::die_with_parent(Command::new(program).arg("--listen").arg(socket).arg("--engine").arg(engine_sock))
            .stdin(Stdio::null())
            .spawn()?;
        if let Err(e) = process::wait_for_path(socket, &mut child, HELPER, Duration::from_secs(10)) {
            process::stop(&mut child);
            return Err(e);
        }
        Ok(Helper { child, socket: socket.to_path_buf() })
    }

    /// Its socket, for the bridge (`bridge::serve`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        process::stop(&mut self.child);
        let _ = std::fs::remove_file(&self.socket);
    }
}
