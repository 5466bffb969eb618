//! The tiny bit of HTTP both sides need: the engine's liveness probe.

use std::io::{self, Read, Write};

/// `GET /_ping`, the Docker API's liveness endpoint (HTTP/1.0: the server closes after answering).
pub const PING_REQUEST: &[u8] = b"GET /_ping HTTP/1.0\r\nHost: skiff\r\n\r\n";

/// True for a status line `HTTP/1.x 200 ...`.
pub fn is_ok_status(head: &[u8]) -> bool {
    head.len() >= 12 && head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200"
}

/// Sends the ping on `stream` and reports whether the answer was 200.
pub fn ping<S: Read + Write>(stream: &mut S) -> io::Result<bool> {
    stream.write_all(PING_REQUEST)?;
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(is_ok_status(&head[..got]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ok_status_lines() {
        assert!(is_ok_status(b"HTTP/1.1 200 OK\r\n"));
        assert!(is_ok_status(b"HTTP/1.0 200 OK"));
        assert!(!is_ok_status(b"HTTP/1.1 503 Service"));
        assert!(!is_ok_status(b"HTTP/1.1 20"));
        assert!(!is_ok_status(b"SSH-2.0-OpenSSH"));
        assert!(!is_ok_status(b""));
    }
}
