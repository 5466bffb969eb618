//! The byte pump every relay uses: `io::copy` with a buffer large enough
//! that big transfers are not bound by syscalls.

use std::io::{self, Read, Write};

/// Copy buffer size.
pub const BUF: usize = 256 * 1024;

/// Copies `r` to `w` until EOF; returns the byte count.
pub fn copy<R: Read + ?Sized, W: Write + ?Sized>(r: &mut R, w: &mut W) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_across_buffer_boundaries() {
        let data: Vec<u8> = (0..BUF * 2 + 17).map(|i| i as u8).collect();
        let mut out = Vec::new();
        assert_eq!(copy(&mut data.as_slice(), &mut out).unwrap(), data.len() as u64);
        assert_eq!(out, data);
    }
}
