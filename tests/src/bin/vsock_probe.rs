//! A static vsock client for the security test: run inside a container in
//! the guest, it tries the engine and control ports on the CIDs given and
//! prints what happened, one line each, so the test can assert that no
//! container is ever served.
//!
//! Usage: `vsock_probe CID:PORT...`. Output lines:
//! `probe CID:PORT connect failed: ...`, `probe CID:PORT closed without a reply`,
//! `probe CID:PORT reply: "..."`.

use std::io::{Read, Write};
use std::time::Duration;

use vsock::VsockStream;

fn probe(cid: u32, port: u32) -> String {
    let mut s = match VsockStream::connect_with_cid_port(cid, port) {
        Ok(s) => s,
        Err(e) => return format!("connect failed: {e}"),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    // An engine request on 2375, a control request elsewhere: whatever
    // would be served to the host.
    let request: &[u8] = if port == 2375 { skiff_proto::http::PING_REQUEST } else { b"SKIFF-CONTROL/1 logs\n" };
    if let Err(e) = s.write_all(request) {
        return format!("connected, write failed: {e}");
    }
    let mut reply = Vec::new();
    match s.take(300).read_to_end(&mut reply) {
        Ok(_) if reply.is_empty() => "closed without a reply".into(),
        Ok(_) => format!("reply: {:?}", String::from_utf8_lossy(&reply)),
        Err(e) if reply.is_empty() => format!("connected, read failed: {e}"),
        Err(e) => format!("reply: {:?} then {e}", String::from_utf8_lossy(&reply)),
    }
}

fn main() {
    for arg in std::env::args().skip(1) {
        let parsed = arg.split_once(':').and_then(|(c, p)| Some((c.parse::<u32>().ok()?, p.parse::<u32>().ok()?)));
        let Some((cid, port)) = parsed else {
            println!("probe {arg} bad argument (expected CID:PORT)");
            continue;
        };
        println!("probe {cid}:{port} {}", probe(cid, port));
    }
}
