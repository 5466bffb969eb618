//! The guest's serial console, a log for people: its tail is shown on
//! failure. No decision reads it: the host decides from the guest's events
//! (`guest::events`).

use std::path::Path;

use crate::state::file;

/// The last `n` bytes of a file (a long-running VM's console can be large).
pub fn tail(path: &Path, n: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file::open_regular(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(n))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_end_of_a_file() {
        let path = std::env::temp_dir().join(format!("skiff-tail-{}", std::process::id()));
        std::fs::write(&path, "a".repeat(100) + "powering off").unwrap();
        assert_eq!(tail(&path, 12).as_deref(), Some("powering off"));
        assert_eq!(tail(&path, 1000).map(|t| t.len()), Some(112));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(tail(&path, 10), None);
    }
}
