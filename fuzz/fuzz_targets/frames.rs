//! The EOF-carrying frames (`SKIFF-FRAMES/1`) a host connection may speak.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use skiff_proto::framing;

fuzz_target!(|data: &[u8]| {
    let _ = framing::sniff(data);
    let mut reader = framing::FrameReader::new(data);
    let mut buf = [0u8; 512];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
});
