//! UDP datagrams over a vsock stream (published UDP ports): each datagram
//! travels as a 2-byte big-endian length and its bytes, so boundaries
//! survive the stream. A flow ends when either side closes the stream.

use std::io::{self, Read, Write};

/// The largest datagram carried (the largest a UDP socket can hold).
pub const MAX: usize = u16::MAX as usize;

/// Writes one datagram as one frame.
pub fn write<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram over 65535 bytes"))?;
    let mut frame = Vec::with_capacity(payload.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// Reads one datagram into `buf` (replacing its contents). `Ok(false)` on
/// a clean end of stream between datagrams; a stream that ends inside one
/// is an error.
pub fn read<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 2];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.clear();
    buf.resize(u16::from_be_bytes(len) as usize, 0);
    r.read_exact(buf)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn datagrams_keep_their_boundaries() {
        let mut stream = Vec::new();
        for d in [&b"one"[..], b"", b"three"] {
            write(&mut stream, d).unwrap();
        }
        let mut r = Cursor::new(stream);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while read(&mut r, &mut buf).unwrap() {
            got.push(buf.clone());
        }
        assert_eq!(got, [b"one".to_vec(), Vec::new(), b"three".to_vec()]);
    }

    #[test]
    fn the_largest_datagram_fits_and_a_larger_one_is_refused() {
        let mut stream = Vec::new();
        write(&mut stream, &vec![7u8; MAX]).unwrap();
        assert_eq!(stream.len(), MAX + 2);
        assert_eq!(write(&mut Vec::new(), &vec![0u8; MAX + 1]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_stream_cut_inside_a_datagram_is_an_error() {
        let mut buf = Vec::new();
        assert!(read(&mut Cursor::new(vec![0u8]), &mut buf).is_err(), "half a length");
        assert!(read(&mut Cursor::new(vec![0u8, 5, b'a']), &mut buf).is_err(), "short payload");
        assert!(!read(&mut Cursor::new(Vec::new()), &mut buf).unwrap(), "clean end");
    }
}
