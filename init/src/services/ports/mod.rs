//! Published ports: the guest's table of what containers publish (kept by
//! following the engine, see [`discover`]), streamed to the host over the
//! control port so it can listen on its own loopback, and the forward port
//! that carries each host connection to a published container port
//! ([`forward`]). Wire formats: `skiff_proto::ports`.

pub mod discover;
pub mod forward;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ::vsock::VsockStream;
use skiff_proto::ports::{self as wire, Proto, Published, Update};

/// How often an idle update stream sends `alive` (the host gives up after
/// missing a few).
const KEEPALIVE: Duration = Duration::from_secs(5);

/// The current table and a version bumped at every change.
struct State {
    entries: BTreeSet<Published>,
    version: u64,
}

static TABLE: Mutex<State> = Mutex::new(State { entries: BTreeSet::new(), version: 0 });
static CHANGED: Condvar = Condvar::new();

fn table() -> MutexGuard<'static, State> {
    // A panicking holder cannot leave the set half-updated (it is replaced whole).
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replaces the table with what the engine reports now; logs the changes.
pub fn replace(new: BTreeSet<Published>) {
    let mut t = table();
    if t.entries == new {
        return;
    }
    for u in wire::diff(&t.entries, &new) {
        match u {
            Update::Add(p) => log::info!("ports: published {}", p.describe()),
            Update::Del(p) => log::info!("ports: unpublished {}", p.describe()),
            _ => {}
        }
    }
    t.entries = new;
    t.version += 1;
    CHANGED.notify_all();
}

/// True if some published port leads to `proto` `ip`:`port` right now.
pub fn is_published(proto: Proto, ip: IpAddr, port: u16) -> bool {
    table().entries.iter().any(|p| p.targets(proto, ip, port))
}

/// Waits up to `timeout` for the table to differ from `version`; returns
/// the (possibly unchanged) version and table.
fn wait_change(version: u64, timeout: Duration) -> (u64, BTreeSet<Published>) {
    let guard = table();
    let (t, _) = CHANGED.wait_timeout_while(guard, timeout, |t| t.version == version).unwrap_or_else(|e| e.into_inner());
    (t.version, t.entries.clone())
}

/// Serves `SKIFF-CONTROL/1 ports`: a full snapshot, then changes as they
/// happen, until the host goes away.
pub fn serve_updates(stream: VsockStream) {
    if let Err(e) = send_updates(stream) {
        log::debug!("ports: update stream ended: {e}");
    }
}

fn send_updates(mut stream: VsockStream) -> io::Result<()> {
    // A host that stops reading must not hold this thread forever.
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let (mut version, mut sent) = {
        let t = table();
        (t.version, t.entries.clone())
    };
    write_updates(&mut stream, &wire::snapshot(&sent))?;
    loop {
        let (v, now) = wait_change(version, KEEPALIVE);
        let updates = if v == version { vec![Update::Alive] } else { wire::diff(&sent, &now) };
        write_updates(&mut stream, &updates)?;
        (version, sent) = (v, now);
    }
}

fn write_updates(stream: &mut VsockStream, updates: &[Update]) -> io::Result<()> {
    let text: String = updates.iter().map(wire::encode).collect();
    stream.write_all(text.as_bytes())
}
