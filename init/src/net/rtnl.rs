//! The rtnetlink socket: one request at a time, each waiting for the
//! kernel's acknowledgement (or its address dump). Messages are built and
//! parsed in `netlink`; this file only does the socket I/O.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

use super::netlink::{self, Ack};

/// A request/acknowledge rtnetlink socket.
pub(crate) struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    pub(crate) fn open() -> io::Result<Self> {
        // Protocol `None` is NETLINK_ROUTE.
        let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(2)))?;
        Ok(Self { fd, seq: 0 })
    }

    /// Sends one request built by `build(seq)` and waits for its ack.
    pub(crate) fn call(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        self.seq += 1;
        let msg = build(self.seq);
        send(&self.fd, &msg, SendFlags::empty())?;
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = recv(&self.fd, &mut buf, RecvFlags::empty())?;
            match netlink::parse_ack(&buf[..n], self.seq) {
                Ack::Ok => return Ok(()),
                Ack::Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
                Ack::Missing => continue,
            }
        }
    }

    /// Every address of every link.
    pub(crate) fn addresses(&mut self) -> io::Result<Vec<netlink::Address>> {
        self.seq += 1;
        let seq = self.seq;
        send(&self.fd, &netlink::dump_addresses(seq), SendFlags::empty())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let (n, _) = recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            for (kind, msg_seq, payload) in netlink::messages(&buf[..n]) {
                match kind {
                    _ if msg_seq != seq => {}
                    netlink::NLMSG_DONE => return Ok(out),
                    netlink::NLMSG_ERROR => return Err(io::Error::other("address dump refused")),
                    netlink::RTM_NEWADDR => out.extend(netlink::parse_address(payload)),
                    _ => {}
                }
            }
        }
    }
}
