//! Relaying one local client connection to an open connection both ways
//! (the guest's engine or forward port, or skiff-buildkit), with half-close
//! kept. On hybrid vsock a host-side half-close would close the guest
//! socket entirely, so the client's EOF is sent in-band as a zero-length
//! frame instead (see `skiff_proto::framing`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

use skiff_proto::copy::copy;
use skiff_proto::framing;

use crate::guest::Conn;
use crate::threads;

/// A local client connection the relay can split and half-close.
pub trait Client: Read + Write + Send + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Client for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

impl Client for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

/// Relays `client` to an open guest connection both ways, carrying the
/// client's EOF in-band when `framed` (after sending the preamble) or as a
/// half-close otherwise.
pub fn relay<C: Client>(client: C, guest: Conn, framed: bool) -> io::Result<()> {
    relay_after(client, &[], guest, framed)
}

/// [`relay`], sending `head` (bytes already read from the client) first.
pub fn relay_after<C: Client>(client: C, head: &[u8], mut guest: Conn, framed: bool) -> io::Result<()> {
    let guest_rd = guest.try_clone()?;
    if framed {
        guest.write_all(framing::PREAMBLE)?;
        let mut guest = Framed(guest);
        if !head.is_empty() {
            guest.write_all(head)?;
        }
        pump(client, guest_rd, guest, |w| w.0.write_all(&framing::EOF_FRAME))
    } else {
        guest.write_all(head)?;
        pump(client, guest_rd, guest, |w| w.shutdown(Shutdown::Write))
    }
}

/// Copies client → guest (ending with `eof`) and guest → client (ending
/// with a half-close of the client), until both directions are done.
pub fn pump<C, R, W, F>(client: C, mut guest_rd: R, mut guest_wr: W, eof: F) -> io::Result<()>
where
    C: Client,
    R: Read + Send + 'static,
    W: Write,
    F: FnOnce(&mut W) -> io::Result<()>,
{
    let mut client_wr = client.try_clone()?;
    let back = threads::spawn("relay", move || {
        let r = copy(&mut guest_rd, &mut client_wr);
        let _ = client_wr.shutdown(Shutdown::Write);
        r
    })?;
    let mut client_rd = client;
    let sent = copy(&mut client_rd, &mut guest_wr).and_then(|_| eof(&mut guest_wr));
    let got = back.join().map_err(|_| io::Error::other("copy thread panicked"))?;
    sent.and(got).map(|_| ())
}

/// A writer that wraps each write in a frame.
struct Framed(Conn);

impl Write for Framed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut frame = Vec::with_capacity(data.len() + 8);
        framing::encode(data, &mut frame);
        self.0.write_all(&frame)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
