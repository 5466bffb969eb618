//! A static inotify watcher for the host-edits test (Debian's busybox has
//! no `inotifyd`): run inside a container in the guest, it watches each
//! folder given and prints one line per event, `EVENTS\tFOLDER\tNAME`
//! (NAME empty for an event on the folder itself), after a `ready` line.
//!
//! Usage: `inotify_watch FOLDER...`.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Write;

const NAMES: [(u32, &str); 8] = [
    (libc::IN_MODIFY, "MODIFY"),
    (libc::IN_ATTRIB, "ATTRIB"),
    (libc::IN_CLOSE_WRITE, "CLOSE_WRITE"),
    (libc::IN_CREATE, "CREATE"),
    (libc::IN_DELETE, "DELETE"),
    (libc::IN_MOVED_FROM, "MOVED_FROM"),
    (libc::IN_MOVED_TO, "MOVED_TO"),
    (libc::IN_Q_OVERFLOW, "OVERFLOW"),
];

fn main() {
    // SAFETY: inotify_init1 takes flags only.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
    let mut folders = HashMap::new();
    for dir in std::env::args().skip(1) {
        let c = CString::new(dir.clone()).expect("folder");
        let mask = NAMES.iter().fold(0, |m, (bit, _)| m | bit);
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
        assert!(wd >= 0, "watch {dir}: {}", std::io::Error::last_os_error());
        folders.insert(wd, dir);
    }
    let mut out = std::io::stdout();
    writeln!(out, "ready").and_then(|()| out.flush()).expect("stdout");
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0, "read: {}", std::io::Error::last_os_error());
        let mut at = 0;
        while at < n as usize {
            // SAFETY: the kernel writes whole events; read_unaligned copes with alignment.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let start = at + std::mem::size_of::<libc::inotify_event>();
            let name = CStr::from_bytes_until_nul(&buf[start..start + ev.len as usize]).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
            let what: Vec<&str> = NAMES.iter().filter(|(bit, _)| ev.mask & bit != 0).map(|(_, n)| *n).collect();
            let folder = folders.get(&ev.wd).map(String::as_str).unwrap_or("?");
            writeln!(out, "{}\t{folder}\t{name}", what.join("|")).and_then(|()| out.flush()).expect("stdout");
            at = start + ev.len as usize;
        }
    }
}
