//! Relaying one local client connection to an open connection both ways
//! (the guest's engine or forward port, or skiff-buildkit), with half-close
//! kept. On hybrid vsock a host-side half-close would close the guest
//! socket entirely, so the client's EOF is sent in-band as a zero-length
//! frame instead (see `skiff_proto::framing`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
pub fn relay_after<C: Client>(client: C, head: &[u8], guest: Conn, framed: bool) -> io::Result<()> {
    let guest_rd = guest.try_clone()?;
    relay_with(client, head, guest, guest_rd, framed)
}

/// [`relay`] for a published port's client, ended once no byte has moved
/// either way for `idle`: both sockets are then shut down, which also wakes
/// a direction blocked writing to a peer that stopped reading. Reads wake
/// every quarter of `idle` to look at the clock.
pub fn relay_idle(client: TcpStream, guest: Conn, framed: bool, idle: Duration) -> io::Result<()> {
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
    client.set_read_timeout(Some(tick))?;
    guest.set_read_timeout(Some(tick))?;
    let watch = Arc::new(Watch { start: Instant::now(), last: AtomicU64::new(0), idle, client: client.try_clone()?, guest: guest.try_clone()? });
    let guest_rd = Watched(guest.try_clone()?, Arc::clone(&watch));
    relay_with(Watched(client, watch), &[], guest, guest_rd, framed)
}

fn relay_with<C: Client, R: Read + Send + 'static>(client: C, head: &[u8], mut guest: Conn, guest_rd: R, framed: bool) -> io::Result<()> {
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

/// When either direction of one connection last read a byte, and what to
/// shut down when neither has for `idle`.
struct Watch {
    start: Instant,
    /// Milliseconds from `start` to the last byte read either way.
    last: AtomicU64,
    idle: Duration,
    client: TcpStream,
    guest: Conn,
}

/// A reader whose bytes count as the connection's traffic, and which ends
/// the connection (a `TimedOut` error) once it has had none for too long.
struct Watched<T>(T, Arc<Watch>);

impl<T: Read> Read for Watched<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let w = &self.1;
        loop {
            match self.0.read(buf) {
                Ok(n) => {
                    w.last.store(w.start.elapsed().as_millis() as u64, Ordering::Relaxed);
                    return Ok(n);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    let quiet = w.start.elapsed().saturating_sub(Duration::from_millis(w.last.load(Ordering::Relaxed)));
                    if quiet >= w.idle {
                        let _ = w.client.shutdown(Shutdown::Both);
                        let _ = w.guest.shutdown(Shutdown::Both);
                        return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no traffic either way for {}s", w.idle.as_secs())));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Watched<TcpStream> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Client for Watched<TcpStream> {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(Watched(self.0.try_clone()?, Arc::clone(&self.1)))
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.0.shutdown(how)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A relayed connection: the local client's end, the guest's end, and
    /// the relay's result once it ends.
    fn relayed(idle: Duration) -> (TcpStream, UnixStream, std::sync::mpsc::Receiver<io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let (guest, guest_end) = UnixStream::pair().unwrap();
        let (tx, done) = std::sync::mpsc::channel();
        threads::spawn("test relay", move || tx.send(relay_idle(accepted, Conn::Unix(guest), false, idle))).unwrap();
        // Read with a timeout: a missed close fails the test, never hangs it.
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        guest_end.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (client, guest_end, done)
    }

    #[test]
    fn a_silent_connection_is_closed_after_the_idle_limit() {
        let began = Instant::now();
        let (mut client, mut guest, done) = relayed(Duration::from_millis(400));
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).expect("closed, not still open after 5 s"), 0);
        assert_eq!(guest.read(&mut buf).expect("closed, not still open after 5 s"), 0);
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "closed after {took:?}");
        let result = done.recv_timeout(Duration::from_secs(5)).expect("the relay ended");
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn traffic_either_way_keeps_a_connection_open() {
        let (mut client, mut guest, done) = relayed(Duration::from_millis(400));
        let mut buf = [0u8; 16];
        // 1.5 s of traffic, a byte every 100 ms, alternately each way.
        for i in 0..15u8 {
            if i % 2 == 0 {
                client.write_all(&[i]).unwrap();
                guest.read_exact(&mut buf[..1]).unwrap();
            } else {
                guest.write_all(&[i]).unwrap();
                client.read_exact(&mut buf[..1]).unwrap();
            }
            assert_eq!(buf[0], i);
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(done.try_recv().is_err(), "closed while in use");
        // Then silence: it goes.
        assert_eq!(client.read(&mut buf).expect("closed once silent"), 0);
        assert!(done.recv_timeout(Duration::from_secs(5)).is_ok());
    }
}
