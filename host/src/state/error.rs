//! What can go wrong with the state folder, for callers to decide on
//! (`skiff start` does not roll back to the previous ISO for any of these:
//! none says the ISO does not boot). Each variant's message says what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum StateError {
    /// The folder could not be made (or its permissions tightened).
    Create { path: PathBuf, error: io::Error },
    /// A command that talks to a running VM found no folder.
    NotFound(PathBuf),
    /// The folder belongs to another user: it is theirs, never used.
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    /// Another `skiff run` holds the folder.
    Locked { path: PathBuf, pid: i32 },
    /// Reading or writing a record in it failed.
    Io { path: PathBuf, error: io::Error },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Create { path, error } => {
                write!(f, "cannot create the state folder {}: {error}; choose another with --dir or SKIFF_DIR", path.display())
            }
            StateError::NotFound(path) => write!(f, "no VM state folder at {} (is a VM running? `skiff start` makes one)", path.display()),
            StateError::NotOurs { path, owner, me } => write!(
                f,
                "the state folder {} belongs to uid {owner}, not to you (uid {me}); refusing to use it: choose your own with --dir or SKIFF_DIR",
                path.display()
            ),
            StateError::Locked { path, pid } => write!(
                f,
                "a VM is already running from {} (pid {pid}); `skiff stop` it first, or use another --dir",
                path.display()
            ),
            StateError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Create { error, .. } | StateError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Kept inside, so a caller holding an `io::Error` can still match it.
impl From<StateError> for io::Error {
    fn from(e: StateError) -> io::Error {
        io::Error::other(e)
    }
}
