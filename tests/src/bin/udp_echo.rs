//! A static UDP echo server for the published-ports test: run inside a
//! container in the guest, it answers each datagram with "echo " and the
//! datagram, to the address it came from.
//!
//! Usage: `udp_echo PORT`.

use std::net::UdpSocket;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: udp_echo PORT");
    let sock = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
    let mut buf = [0u8; 65535];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        let reply = [&b"echo "[..], &buf[..n]].concat();
        let _ = sock.send_to(&reply, from);
    }
}
