//! What the host CLI reads from QEMU's QMP socket: events are skipped, the
//! answer is the first `return` line (or an error for an `error` line),
//! and no line is longer than the reader's bound.
#![no_main]

use std::io::{BufReader, Cursor};

use libfuzzer_sys::fuzz_target;
use skiff::vm::qmp;

fuzz_target!(|data: &[u8]| {
    let mut r = BufReader::with_capacity(7, Cursor::new(data));
    while let Ok(line) = qmp::read_reply(&mut r, "system_powerdown") {
        assert!(line.trim_start_matches(['{', ' ']).starts_with("\"return\""), "{line:?}");
        assert!(!line.contains('\n') && line.len() <= 64 * 1024);
    }
});
