//! What the disk probe reads from any attached disk: its first and last
//! bytes (GPT, MBR, filesystem superblocks) and windows sampled across it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::disk::probe;

fuzz_target!(|data: &[u8]| {
    let (first, last) = data.split_at(data.len() / 2);
    let ends = probe::probe(first, last);
    let _ = ends.describe();
    let _ = probe::sampled(ends, &[(1 << 20, first), (2 << 20, last)]);
});
