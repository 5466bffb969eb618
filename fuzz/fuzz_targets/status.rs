//! The guest's status answer as `skiff status` reads it (whatever the guest
//! sends). A status the host accepts encodes to one it accepts again, with
//! the same text; any status the guest encodes (absolute share paths, in
//! the size limit) is accepted, with its numbers and share paths intact.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use skiff_proto::status::{self, DiskUse, GuestStatus, ShareUse, MAX_SHARES, MAX_STATUS};

fn guest_status(u: &mut Unstructured<'_>) -> Result<GuestStatus> {
    let mut shares = Vec::new();
    for _ in 0..u.int_in_range(0..=MAX_SHARES + 2)? {
        shares.push(ShareUse { fs: u.arbitrary()?, path: format!("/{}", u.arbitrary::<&str>()?) });
    }
    let disk = if u.arbitrary()? { Some(DiskUse { size: u.arbitrary()?, used: u.arbitrary()?, available: u.arbitrary()? }) } else { None };
    Ok(GuestStatus {
        version: u.arbitrary()?,
        build: u.arbitrary()?,
        uptime_secs: u.arbitrary()?,
        mem_total_kib: u.arbitrary()?,
        mem_available_kib: u.arbitrary()?,
        disk,
        shares,
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = status::parse(data) {
        let text = status::encode(&s);
        let again = status::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert_eq!(status::encode(&again), text);
    }

    let Ok(s) = guest_status(&mut Unstructured::new(data)) else { return };
    let text = status::encode(&s);
    if text.len() > MAX_STATUS {
        return;
    }
    let back = status::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!((back.uptime_secs, back.mem_total_kib, back.mem_available_kib, back.disk), (s.uptime_secs, s.mem_total_kib, s.mem_available_kib, s.disk));
    let kept: Vec<&String> = s.shares.iter().take(MAX_SHARES).filter(|sh| !sh.path.chars().any(char::is_control)).map(|sh| &sh.path).collect();
    assert_eq!(back.shares.iter().map(|sh| &sh.path).collect::<Vec<_>>(), kept);
});
