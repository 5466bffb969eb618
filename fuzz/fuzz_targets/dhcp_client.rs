//! The DHCP client's state machine and lease timers, driven by a hostile
//! server and clock: any sequence of replies (built from the input, with
//! the transaction id the client expects, or raw) and timer runs. It never
//! panics, never asks to be woken in the past forever (a busy loop in PID
//! 1), configures only leases with sane timers, and drops only the lease
//! it configured.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use skiff_init::net::dhcp::{Action, Client, Lease, State};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
/// Most timer runs in a row at one instant that may still send packets.
const MAX_SPIN: u32 = 4;
/// The clock stops here (a century of uptime).
const END: Duration = Duration::from_secs(100 * 365 * 86400);

/// A BOOTREPLY for our MAC and `xid`, its fields and options from `u`; its
/// address is often the last one offered, so exchanges get past OFFER.
fn reply(u: &mut Unstructured<'_>, xid: u32, offered: &mut [u8; 4]) -> Result<Vec<u8>> {
    let mut p = vec![0u8; 240];
    p[..3].copy_from_slice(&[2, 1, 6]);
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    if u.arbitrary()? {
        *offered = u.arbitrary()?;
    }
    p[16..20].copy_from_slice(offered);
    p[28..34].copy_from_slice(&MAC);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    let kind = *u.choose(&[2u8, 5, 6, 1, 3])?;
    p.extend_from_slice(&[53, 1, kind]);
    // Server id, mask, router, lease time, T1, T2: each present or not.
    for code in [54u8, 1, 3, 51, 58, 59] {
        if u.arbitrary()? {
            p.extend_from_slice(&[code, 4]);
            let value: [u8; 4] = match (code, u.arbitrary::<u8>()? % 4) {
                (51 | 58 | 59, 0) => u32::MAX.to_be_bytes(),
                (51 | 58 | 59, 1) => u.int_in_range(0u32..=100_000)?.to_be_bytes(),
                _ => u.arbitrary()?,
            };
            p.extend_from_slice(&value);
        }
    }
    let extra: Vec<u8> = u.arbitrary()?;
    p.extend_from_slice(&extra);
    p.push(255);
    Ok(p)
}

fn check_lease(l: &Lease) {
    assert!(l.t1 < l.t2 || l.length.is_none(), "{l:?}");
    if let Some(length) = l.length {
        assert!(l.t2 < length && length >= Duration::from_secs(10), "{l:?}");
    }
    assert!((1..=32).contains(&l.prefix));
    assert!(!l.address.is_unspecified() && !l.address.is_broadcast());
}

/// Checks and follows what the client asks: the transaction id of what it
/// sent, the lease it holds.
fn apply(actions: Vec<Action>, xid: &mut u32, configured: &mut Option<Lease>) {
    for a in actions {
        match a {
            Action::Send(packet, _) => {
                assert!(packet.len() >= 240 && packet[28..34] == MAC);
                *xid = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
            }
            Action::Configure(l) => {
                check_lease(&l);
                *configured = Some(l);
            }
            Action::Deconfigure(l) => {
                let had = configured.take().expect("a lease dropped that was never configured");
                assert_eq!(had.address, l.address);
            }
        }
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut c = Client::new(MAC, u.arbitrary()?);
    let mut now = Duration::ZERO;
    let mut xid = 0u32;
    let mut configured: Option<Lease> = None;
    let mut offered = [10, 0, 2, 15];
    while !u.is_empty() && now < END {
        match u.arbitrary::<u8>()? % 5 {
            // The clock moves on, or straight to the next deadline.
            0 => now += Duration::from_millis(u.int_in_range(0..=10_000_000)?),
            1 => now = c.deadline().map_or(now, |d| d.max(now)).min(END),
            2 => {
                let packet = reply(u, xid, &mut offered)?;
                apply(c.on_packet(now, &packet), &mut xid, &mut configured);
            }
            3 => {
                let mut packet: Vec<u8> = u.arbitrary()?;
                if packet.len() >= 8 && u.arbitrary()? {
                    packet[4..8].copy_from_slice(&xid.to_be_bytes());
                }
                apply(c.on_packet(now, &packet), &mut xid, &mut configured);
            }
            _ => {
                if let Some((_, server, lease)) = c.release() {
                    assert_eq!(Some(server), configured.as_ref().map(|l| l.server));
                    assert_eq!(Some(lease.address), configured.as_ref().map(|l| l.address));
                }
                assert_eq!((c.state(), c.deadline()), (State::Stopped, None));
                return Ok(());
            }
        }
        // Run the timers as client.rs does: whenever the deadline passed.
        let mut runs = 0;
        while c.deadline().is_some_and(|d| d <= now) {
            let before = (c.state(), c.deadline());
            let actions = c.on_timer(now);
            runs += 1;
            assert!(runs <= MAX_SPIN, "timer keeps firing at {now:?}: {before:?} -> {:?}", (c.state(), c.deadline()));
            apply(actions, &mut xid, &mut configured);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
