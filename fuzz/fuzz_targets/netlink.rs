//! rtnetlink answers: acknowledgements and address dumps from the kernel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::net::netlink;

fuzz_target!(|data: &[u8]| {
    for (_, seq, payload) in netlink::messages(data) {
        let _ = netlink::parse_address(payload);
        let _ = netlink::parse_ack(data, seq);
    }
});
