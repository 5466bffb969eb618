//! The first lines a host connection sends and gets: the SKIFF-AUTH/2
//! handshake, the control request, a published-port forward request,
//! port-table lines, and the hybrid-vsock handshake answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::services::ports::forward;
use skiff_proto::{auth, control, hybrid, ports};

fuzz_target!(|data: &[u8]| {
    let _ = control::parse(data);
    let _ = auth::sniff(data);
    let secret = auth::Secret::from_bytes([7; auth::SECRET_LEN]);
    let _ = auth::parse_challenge(data);
    let _ = auth::check_answer(data, &secret, &[1; auth::NONCE_LEN]);
    let _ = auth::check_proof(data, &secret, &[1; auth::NONCE_LEN], &[2; auth::NONCE_LEN]);
    let _ = auth::parse_refusal(data);
    let _ = forward::check(data, |_, _, _| true);
    let _ = ports::parse(data);
    let _ = ports::parse_forward(data);
    let _ = ports::parse_forward_reply(data);
    let _ = hybrid::parse_reply(data);
});
