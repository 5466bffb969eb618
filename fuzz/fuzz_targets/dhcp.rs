//! DHCP replies: any UDP payload that reaches port 68 on the guest's links.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::net::dhcp_packet;

fuzz_target!(|data: &[u8]| {
    let _ = dhcp_packet::decode(data);
});
