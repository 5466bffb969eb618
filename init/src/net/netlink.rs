//! rtnetlink messages, encoded as plain bytes (no `ip` binary in the image).
//!
//! Only what boot needs: set a link up, add an IPv4 address, add a default
//! route, and read the kernel's acknowledgement.

use std::net::Ipv4Addr;

// Values from <linux/netlink.h> and <linux/rtnetlink.h>; a test checks them
// against linux-raw-sys.
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_NEWROUTE: u16 = 24;
pub const NLMSG_ERROR: u16 = 2;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 1;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

/// A netlink request under construction.
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Self { buf }
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
        self
    }

    /// The finished message with its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// RTM_NEWLINK: set link `index` up, and its MTU if given.
pub fn link_up(seq: u32, index: u32, mtu: Option<u32>) -> Vec<u8> {
    let mut r = Request::new(RTM_NEWLINK, 0, seq);
    r.buf.extend_from_slice(&[AF_UNSPEC, 0]);
    r.buf.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    r.buf.extend_from_slice(&(index as i32).to_ne_bytes());
    r.buf.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    r.buf.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    match mtu {
        Some(mtu) => r.attr(IFLA_MTU, &mtu.to_ne_bytes()).finish(),
        None => r.finish(),
    }
}

/// RTM_NEWADDR: add (or replace) `addr/prefix` on link `index`.
pub fn add_address(seq: u32, index: u32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut r = Request::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq);
    r.buf.extend_from_slice(&[AF_INET, prefix, 0, 0]);
    r.buf.extend_from_slice(&index.to_ne_bytes());
    r.attr(IFA_LOCAL, &addr.octets()).attr(IFA_ADDRESS, &addr.octets()).finish()
}

/// RTM_NEWROUTE: default route via `gateway` on link `index`.
pub fn add_default_route(seq: u32, index: u32, gateway: Ipv4Addr) -> Vec<u8> {
    let mut r = Request::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq);
    // family, dst_len, src_len, tos, table, protocol, scope (universe), type
    r.buf.extend_from_slice(&[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]);
    r.buf.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    r.attr(RTA_GATEWAY, &gateway.octets()).attr(RTA_OIF, &index.to_ne_bytes()).finish()
}

/// What the kernel answered to request `seq`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ack {
    Ok,
    /// A positive errno.
    Err(i32),
    /// No acknowledgement for `seq` in this buffer.
    Missing,
}

/// Finds the NLMSG_ERROR acknowledgement for `seq` in a received buffer.
/// Malformed or truncated input yields `Missing`, never a panic.
pub fn parse_ack(mut buf: &[u8], seq: u32) -> Ack {
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let msg_seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if len < 16 || len > buf.len() {
            return Ack::Missing;
        }
        if kind == NLMSG_ERROR && msg_seq == seq && len >= 20 {
            let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            return if code == 0 { Ack::Ok } else { Ack::Err(-code) };
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    Ack::Missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use linux_raw_sys::netlink as sys;

    #[test]
    fn constants_match_the_kernel_headers() {
        assert_eq!(u32::from(NLM_F_REQUEST), sys::NLM_F_REQUEST);
        assert_eq!(u32::from(NLM_F_ACK), sys::NLM_F_ACK);
        assert_eq!(u32::from(NLM_F_CREATE), sys::NLM_F_CREATE);
        assert_eq!(u32::from(NLM_F_REPLACE), sys::NLM_F_REPLACE);
        assert_eq!(u32::from(NLMSG_ERROR), sys::NLMSG_ERROR);
        assert_eq!(u32::from(RTPROT_BOOT), sys::RTPROT_BOOT);
        assert_eq!(RTM_NEWLINK, sys::RTM_NEWLINK as u16);
        assert_eq!(RTM_NEWADDR, sys::RTM_NEWADDR as u16);
        assert_eq!(RTM_NEWROUTE, sys::RTM_NEWROUTE as u16);
        assert_eq!(IFLA_MTU, sys::IFLA_MTU as u16);
        assert_eq!(IFA_LOCAL, sys::IFA_LOCAL as u16);
        assert_eq!(RTA_GATEWAY, sys::rtattr_type_t::RTA_GATEWAY as u16);
        assert_eq!(RTA_OIF, sys::rtattr_type_t::RTA_OIF as u16);
        assert_eq!(RTN_UNICAST, sys::RTN_UNICAST as u8);
        assert_eq!(u32::from(RT_TABLE_MAIN), sys::rt_class_t::RT_TABLE_MAIN as u32);
    }

    #[test]
    fn link_up_layout() {
        let m = link_up(7, 2, None);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 2);
        assert_eq!(link_up(7, 2, Some(1500)).len(), 40);
    }

    #[test]
    fn address_and_route_carry_their_attributes() {
        let a = add_address(1, 3, Ipv4Addr::new(10, 0, 2, 15), 24);
        assert_eq!(a.len(), 16 + 8 + 8 + 8);
        assert_eq!(a[17], 24);
        assert_eq!(&a[28..32], &[10, 0, 2, 15]);
        let r = add_default_route(2, 3, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(r.len(), 16 + 12 + 8 + 8);
        assert_eq!(&r[32..36], &[10, 0, 2, 2]);
    }

    #[test]
    fn acks_are_found_and_garbage_is_safe() {
        let mut ok = Vec::new();
        ok.extend_from_slice(&36u32.to_ne_bytes());
        ok.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ok.extend_from_slice(&0u16.to_ne_bytes());
        ok.extend_from_slice(&9u32.to_ne_bytes());
        ok.extend_from_slice(&0u32.to_ne_bytes());
        ok.extend_from_slice(&(-17i32).to_ne_bytes());
        ok.resize(36, 0);
        assert_eq!(parse_ack(&ok, 9), Ack::Err(17));
        assert_eq!(parse_ack(&ok, 8), Ack::Missing);
        ok[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert_eq!(parse_ack(&ok, 9), Ack::Ok);
        assert_eq!(parse_ack(&ok[..10], 9), Ack::Missing);
        assert_eq!(parse_ack(&[0xff; 40], 9), Ack::Missing);
        assert_eq!(parse_ack(&[0; 40], 9), Ack::Missing);
    }
}
