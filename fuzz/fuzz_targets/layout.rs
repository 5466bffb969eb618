//! The data disk's layout version file (anyone who can write the disk
//! writes it): the verdict is a version this init understands, "newer"
//! for a larger number, or "unreadable" with a short excerpt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::disk::layout::{self, Error, VERSION};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match layout::verdict(Some(&text)) {
        Ok(v) => assert!((1..=VERSION).contains(&v) && text.trim().parse::<u32>() == Ok(v)),
        Err(Error::Newer(v)) => assert!(v > VERSION && text.trim().parse::<u32>() == Ok(v)),
        Err(Error::Unreadable(excerpt)) => {
            assert!(excerpt.chars().count() <= 32);
            assert!(text.trim().parse::<u32>().map_or(true, |v| v == 0));
        }
        Err(e) => panic!("no file is read here: {e}"),
    }
});
