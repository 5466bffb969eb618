//! The init's milestones for the host (`skiff_proto::events`), beside the
//! human log: kept in a small ring, so a host that connects late still
//! hears the boot, and sent to each follower of `SKIFF-CONTROL/1 events`
//! as they happen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::events::{self, Event, Note, Stamped};

use super::logger::{self, Ring};

/// Bytes of events kept (50 and more: a boot has about ten).
const RING_BYTES: usize = 8 * 1024;

static RING: Mutex<Ring> = Mutex::new(Ring::new(RING_BYTES));
static NEW: Condvar = Condvar::new();
/// Followers connected now, and the furthest sequence number one has written.
static FOLLOWERS: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);

/// Records `event` as happening now.
pub fn emit(event: Event) {
    emit_at(logger::uptime(), event)
}

/// Records a [`Event::Noted`]: `note` about `subject`.
#[inline(never)]
pub fn note(note: Note, subject: &str) {
    emit(Event::Noted { note, subject: subject.into() })
}

/// Records `event` as having happened at guest uptime `at`.
pub fn emit_at(at: Duration, event: Event) {
    let mut ring = logger::lock(&RING);
    let line = events::encode(&Stamped { seq: ring.next(), at, event });
    ring.push(line);
    drop(ring);
    NEW.notify_all();
}

/// Feeds one follower: `write` gets the events from the first kept on,
/// then each new one (an empty line after `keepalive` of silence), until
/// it fails.
pub fn follow<E>(keepalive: Duration, mut write: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    FOLLOWERS.fetch_add(1, Ordering::SeqCst);
    let mut next = 0;
    let result = loop {
        let (lines, n) = logger::wait_since(&RING, &NEW, next, keepalive);
        let text = if lines.is_empty() { "\n".to_string() } else { lines.concat() };
        if let Err(e) = write(&text) {
            break Err(e);
        }
        next = n;
        SENT.fetch_max(n, Ordering::SeqCst);
    };
    FOLLOWERS.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Waits (at most `limit`) until a follower, if any, has written every
/// event so far: the power-off must not beat its last event out.
pub fn wait_sent(limit: Duration) {
    let end = Instant::now() + limit;
    let last = logger::lock(&RING).next();
    while FOLLOWERS.load(Ordering::SeqCst) > 0 && SENT.load(Ordering::SeqCst) < last && Instant::now() < end {
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_late_follower_hears_the_past_then_the_new_and_the_power_off_waits_for_it() {
        emit(Event::InitRunning);
        let (tx, rx) = mpsc::channel::<String>();
        let follower = thread::spawn(move || follow(Duration::from_millis(50), |text| tx.send(text.to_string())));
        let mut got = String::new();
        let heard = |got: &mut String, what: &str| {
            let end = Instant::now() + Duration::from_secs(10);
            while !got.contains(what) {
                assert!(Instant::now() < end, "never heard {what:?}: {got:?}");
                if let Ok(t) = rx.recv_timeout(Duration::from_millis(100)) {
                    got.push_str(&t);
                }
            }
        };
        heard(&mut got, "init-running\n");
        emit(Event::PoweringOff);
        wait_sent(Duration::from_secs(10));
        assert!(SENT.load(Ordering::SeqCst) >= logger::lock(&RING).next(), "wait_sent returned before the follower wrote");
        heard(&mut got, "powering-off\n");
        heard(&mut got, "\n\n"); // a keep-alive in the silence after
        let parsed: Vec<Event> = got.lines().filter_map(|l| events::parse(l.as_bytes()).unwrap()).map(|s| s.event).collect();
        // Other tests in this process may note things meanwhile (one ring).
        let milestones: Vec<&Event> = parsed.iter().filter(|e| !matches!(e, Event::Noted { .. })).collect();
        let from = milestones.iter().position(|e| **e == Event::InitRunning).unwrap();
        assert_eq!(milestones[from..].last(), Some(&&Event::PoweringOff), "{got}");
        drop(rx);
        assert!(follower.join().unwrap().is_err(), "the follower ends when its writes fail");
        assert_eq!(FOLLOWERS.load(Ordering::SeqCst), 0);
    }
}
