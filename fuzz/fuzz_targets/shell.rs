//! `skiff shell` messages from the host (start, stdin, resize...).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_proto::shell;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    while let Ok(Some(_)) = shell::read_msg(&mut input) {}
});
