//! EOF-carrying frames for the host→guest direction of a bridged connection.
//!
//! vhost-device-vsock turns a host-side half-close into a full close of the
//! guest socket, so a plain byte pipe cannot tell the guest "the client sent
//! everything" without also cutting the reply. A framed connection starts with
//! [`PREAMBLE`]; after it the host sends `[u32 big-endian length][payload]`
//! frames, and a zero-length frame means end of input (a half-close). The
//! guest→host direction stays a plain byte stream. Connections that do not
//! start with the preamble are plain pass-through (kernel AF_VSOCK keeps
//! half-close, and `socat` users need nothing special).

use std::io::{self, Read};

/// First bytes of a framed connection. No HTTP request starts with `S`.
pub const PREAMBLE: &[u8] = b"SKIFF-FRAMES/1\n";
/// A zero-length frame: the sender has no more data (half-close).
pub const EOF_FRAME: [u8; 4] = [0; 4];
/// Largest frame accepted; bigger lengths mean a corrupt or hostile stream.
pub const MAX_FRAME: usize = 1 << 20;

/// What the first bytes of a connection say about its mode.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// The connection starts with [`PREAMBLE`].
    Framed,
    /// The connection is a plain byte stream.
    Plain,
    /// The bytes so far are a prefix of the preamble; read more.
    NeedMore,
}

/// Classifies the first bytes received on a connection.
pub fn sniff(prefix: &[u8]) -> Sniff {
    let n = prefix.len().min(PREAMBLE.len());
    if prefix[..n] != PREAMBLE[..n] {
        Sniff::Plain
    } else if n == PREAMBLE.len() {
        Sniff::Framed
    } else {
        Sniff::NeedMore
    }
}

/// Appends `payload` as frames (split at [`MAX_FRAME`]) to `out`.
/// An empty payload appends nothing: use [`EOF_FRAME`] to signal the end.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    for chunk in payload.chunks(MAX_FRAME) {
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Reads the payload of a framed stream; returns `Ok(0)` at the EOF frame or
/// when the stream ends cleanly between frames.
pub struct FrameReader<R> {
    inner: R,
    /// Payload bytes left in the current frame.
    left: usize,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, left: 0, done: false }
    }

    /// Reads the next frame header; `false` means end of stream.
    fn next_header(&mut self) -> io::Result<bool> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {MAX_FRAME}")));
        }
        self.left = len;
        Ok(len != 0)
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 && !self.next_header()? {
            self.done = true;
            return Ok(0);
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame"));
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_all(bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        FrameReader::new(Cursor::new(bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn sniffs_modes() {
        assert_eq!(sniff(b"GET /_ping HTTP/1.1\r\n"), Sniff::Plain);
        assert_eq!(sniff(b"SKIFF"), Sniff::NeedMore);
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(PREAMBLE), Sniff::Framed);
        assert_eq!(sniff(b"SKIFF-FRAMES/1\nxyz"), Sniff::Framed);
        assert_eq!(sniff(b"SKIFF-FRAMES/2\n"), Sniff::Plain);
    }

    #[test]
    fn round_trip_stops_at_eof_frame() {
        let mut wire = Vec::new();
        encode(b"hello ", &mut wire);
        encode(b"", &mut wire);
        encode(b"world", &mut wire);
        wire.extend_from_slice(&EOF_FRAME);
        wire.extend_from_slice(b"ignored after eof");
        assert_eq!(read_all(wire).unwrap(), b"hello world");
    }

    #[test]
    fn large_payloads_are_split() {
        let payload = vec![7u8; MAX_FRAME * 2 + 3];
        let mut wire = Vec::new();
        encode(&payload, &mut wire);
        assert_eq!(wire.len(), payload.len() + 3 * 4);
        assert_eq!(read_all(wire).unwrap(), payload);
    }

    #[test]
    fn clean_end_between_frames_is_eof() {
        let mut wire = Vec::new();
        encode(b"abc", &mut wire);
        assert_eq!(read_all(wire).unwrap(), b"abc");
    }

    #[test]
    fn truncation_and_hostile_lengths_are_errors() {
        assert_eq!(read_all(vec![0, 0]).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read_all(vec![0, 0, 0, 5, b'a']).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(read_all(vec![0xff, 0xff, 0xff, 0xff]).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
