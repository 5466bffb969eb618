//! Helpers shared by the unit tests.

use std::path::{Path, PathBuf};

/// A socket path in a folder of the calling test's own, removed with it.
pub struct SocketPath(PathBuf);

impl SocketPath {
    /// `file` in a fresh folder named after `test` (a stale socket is removed).
    pub fn new(test: &str, file: &str) -> SocketPath {
        let dir = std::env::temp_dir().join(format!("skiff-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl std::ops::Deref for SocketPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for SocketPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
