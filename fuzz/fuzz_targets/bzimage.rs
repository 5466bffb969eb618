//! The ISO's kernel as the host CLI reads it (an ISO from anywhere): the
//! bzImage header's payload fields and the ELF's PVH note. The payload is
//! inside the file and is an xz stream; a note found is a note that is
//! there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_proto::bzimage;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = bzimage::payload(data) {
        assert!(payload.starts_with(&bzimage::XZ_MAGIC));
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        assert!(payload.as_ptr() as usize >= start && payload.as_ptr() as usize + payload.len() <= end);
    }
    if bzimage::has_pvh_note(data) {
        assert!(data.windows(4).any(|w| w == b"Xen\0"));
    }
    // The same bytes behind a bzImage header that points at them.
    let mut bz = vec![0u8; 5 * 512];
    bz[0x1f1] = 4;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    bz[0x24c..0x250].copy_from_slice(&(data.len() as u32).to_le_bytes());
    bz.extend_from_slice(data);
    assert_eq!(bzimage::payload(&bz).ok(), data.starts_with(&bzimage::XZ_MAGIC).then_some(data));
});
