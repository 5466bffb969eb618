//! A cidata volume: its ISO 9660 or FAT label and its meta-data/user-data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::config::cidata;

fuzz_target!(|data: &[u8]| {
    let _ = cidata::iso_volume_id(data);
    let _ = cidata::fat_label(data);
    let (meta, user) = data.split_at(data.len() / 2);
    let (meta, user) = (String::from_utf8_lossy(meta), String::from_utf8_lossy(user));
    let _ = cidata::yaml_value(&meta, "hostname");
    let _ = cidata::seed_hostname(&meta, &user);
});
