//! One forwarded connection to a published port in the guest: the
//! request on the forward port (2377) and the guest's answer. TCP listeners
//! (`ports`) and UDP flows (`udp`) both start here.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skiff_proto::ports::{self as wire, Forward, Proto, DEFAULT_FORWARD_PORT, MAX_LINE};

use crate::guest::{Conn, Target};

/// Where a host listener sends its connections.
pub type Dest = (IpAddr, u16);

/// Opens a forwarded connection to `ip`:`port` in the guest (request line
/// and answer done), ready to relay. TCP frames the stream's end on hybrid
/// vsock; UDP frames each datagram instead (`skiff_proto::datagram`).
pub fn open_forward(guest: &Target, proto: Proto, ip: IpAddr, port: u16) -> io::Result<Conn> {
    let mut conn = guest.connect(DEFAULT_FORWARD_PORT)?;
    let req = Forward { proto, ip, port, framed: proto == Proto::Tcp && guest.needs_framing() };
    conn.write_all(wire::encode_forward(&req).as_bytes())?;
    conn.set_read_timeout(Some(Duration::from_secs(15)))?;
    let reply = skiff_proto::read_line(&mut conn, MAX_LINE)?;
    conn.set_read_timeout(None)?;
    wire::parse_forward_reply(&reply).map_err(|why| io::Error::new(io::ErrorKind::ConnectionRefused, format!("the guest refused: {why}")))?;
    Ok(conn)
}

/// One of a published port's places (a TCP connection or a UDP flow), at
/// most so many at once over all its host addresses; given back on drop.
pub struct Place(Arc<AtomicUsize>);

impl Place {
    /// A place among `open`, if fewer than `max` are taken.
    pub fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Place> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Place(Arc::clone(open)))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
