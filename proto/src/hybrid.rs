//! The "hybrid vsock" handshake of Firecracker, Cloud Hypervisor and
//! vhost-device-vsock: the host connects to a unix socket, writes
//! `CONNECT <port>\n` and reads `OK <host port>\n` before bytes flow.

use std::fmt;
use std::io::{self, Read, Write};

/// Longest reply line we accept; anything longer is not a handshake.
const MAX_REPLY: usize = 64;

/// Why a hybrid vsock handshake failed.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The backend closed the connection before answering (nothing listens on that port).
    Closed,
    /// The reply was not `OK <number>`; the text is what was received.
    Refused(String),
    /// The reply line was longer than any valid answer.
    TooLong,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => write!(f, "vsock backend closed the connection (is the guest listening?)"),
            Self::Refused(line) => write!(f, "vsock backend refused: {line:?}"),
            Self::TooLong => write!(f, "vsock backend sent an over-long handshake reply"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The request line for `port`.
pub fn connect_request(port: u32) -> String {
    format!("CONNECT {port}\n")
}

/// Parses one reply line (without its `\n`) into the host-side port number.
pub fn parse_reply(line: &[u8]) -> Result<u32, HandshakeError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    let port = text
        .strip_prefix("OK ")
        .and_then(|rest| rest.trim().parse::<u32>().ok());
    port.ok_or_else(|| HandshakeError::Refused(text.to_string()))
}

/// Performs the handshake on `stream`, reading the reply one byte at a time so
/// no payload byte after the `\n` is consumed.
pub fn handshake<S: Read + Write>(stream: &mut S, port: u32) -> io::Result<u32> {
    stream.write_all(connect_request(port).as_bytes())?;
    let line = crate::read_line(stream, MAX_REPLY).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(io::ErrorKind::ConnectionRefused, HandshakeError::Closed),
        io::ErrorKind::InvalidData => io::Error::new(io::ErrorKind::InvalidData, HandshakeError::TooLong),
        _ => e,
    })?;
    parse_reply(&line).map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A fake stream: reads come from `input`, writes are recorded.
    struct Fake {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }
    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    fn fake(input: &[u8]) -> Fake {
        Fake { input: Cursor::new(input.to_vec()), written: Vec::new() }
    }

    #[test]
    fn request_line() {
        assert_eq!(connect_request(2375), "CONNECT 2375\n");
    }

    #[test]
    fn parses_ok_reply() {
        assert_eq!(parse_reply(b"OK 1073741824"), Ok(1073741824));
        assert_eq!(parse_reply(b"OK 5\r"), Ok(5));
    }

    #[test]
    fn rejects_other_replies() {
        assert!(matches!(parse_reply(b"ERR no listener"), Err(HandshakeError::Refused(_))));
        assert!(matches!(parse_reply(b"OK"), Err(HandshakeError::Refused(_))));
        assert!(matches!(parse_reply(b"OK x"), Err(HandshakeError::Refused(_))));
        assert!(matches!(parse_reply(b"\xff\xfe"), Err(HandshakeError::Refused(_))));
    }

    #[test]
    fn handshake_leaves_payload_unread() {
        let mut s = fake(b"OK 77\nHTTP/1.1 200 OK");
        assert_eq!(handshake(&mut s, 2375).unwrap(), 77);
        assert_eq!(s.written, b"CONNECT 2375\n");
        let mut rest = String::new();
        s.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "HTTP/1.1 200 OK");
    }

    #[test]
    fn handshake_reports_close_and_garbage() {
        assert_eq!(handshake(&mut fake(b""), 1).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(handshake(&mut fake(&[b'x'; 200]), 1).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
