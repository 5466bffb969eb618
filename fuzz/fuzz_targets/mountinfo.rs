//! /proc/self/mountinfo as the init reads it to unmount the data disk's
//! mounts (their points are set by whoever mounts, containers included):
//! only points at or under the roots come back, and any path escaped as
//! the kernel escapes it comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::disk::mountinfo;

/// The kernel's escaping of a mount point (fs/proc_namespace.c: space,
/// tab, newline and backslash as three octal digits).
fn escape(path: &str) -> String {
    path.chars().map(|c| if matches!(c, ' ' | '\t' | '\n' | '\\') { format!("\\{:03o}", c as u32) } else { c.to_string() }).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (table, root) = text.split_once('\0').unwrap_or((&text, "/var/lib/skiff"));
    let roots = [root, "/mnt/skiff-data"];
    for point in mountinfo::under(table, &roots) {
        assert!(roots.iter().any(|r| point == *r || point.starts_with(&format!("{r}/"))), "{point:?} is not under {roots:?}");
    }

    let point = format!("{}/{}", root.trim_end_matches('/'), table);
    let line = format!("36 22 0:42 / {} rw - tmpfs tmpfs rw\n", escape(&point));
    let found = mountinfo::under(&format!("{table}\n{line}"), &[root.trim_end_matches('/')]);
    if !root.trim_end_matches('/').is_empty() {
        assert_eq!(found.first(), Some(&point), "{line:?}");
    }
});
