//! The first lines a host connection sends: the secret, the control
//! request, a published-port forward request, port-table lines, and the
//! hybrid-vsock handshake answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::services::ports::forward;
use skiff_proto::{auth, control, hybrid, ports};

fuzz_target!(|data: &[u8]| {
    let _ = control::parse(data);
    let _ = auth::sniff(data);
    let _ = auth::check(data, &auth::Secret::from_bytes([7; auth::SECRET_LEN]));
    let _ = auth::parse_refusal(data);
    let _ = forward::check(data, |_, _, _| true);
    let _ = ports::parse(data);
    let _ = ports::parse_forward(data);
    let _ = ports::parse_forward_reply(data);
    let _ = hybrid::parse_reply(data);
});
