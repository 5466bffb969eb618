//! The guest's milestones (`skiff_proto::events`), followed over the
//! control port for as long as the guest sends them: `skiff run` decides
//! from them (init running, engine ready, powering off, a failed /usr),
//! never from the console, and copies each to DIR/events for `skiff
//! start`, the tests and the bench. The stream also shows whether the
//! vsock transport answers at all: the guest sends a keep-alive every 5 s,
//! and refuses at once a connection it does not serve yet.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::control::{self, Request, DEFAULT_CONTROL_PORT};
use skiff_proto::events::{self as wire, Event, Stamped, MAX_LINE};
use skiff_proto::hybrid::HandshakeError;

use crate::guest::backoff::Backoff;
use crate::guest::{Addr, Link, Target};
use crate::state::file;
use crate::threads;

/// What the guest has reported so far, with when each event arrived here.
#[derive(Debug, Default)]
pub struct Seen {
    got: Vec<(Instant, Event)>,
    /// The sequence number expected next (a reconnection replays the ring).
    next: u64,
    /// When the guest last answered over vsock (a line, a keep-alive, a
    /// connection taken or refused).
    heard: Option<Instant>,
    /// This boot is over: no reconnection (a next boot has its own follower).
    closed: bool,
    /// Streams that got as far as the guest's header.
    streams: u64,
}

impl Seen {
    /// Takes `s` unless it was had already; true if it is new.
    fn add(&mut self, s: Stamped, now: Instant) -> bool {
        if s.seq < self.next {
            return false;
        }
        self.next = s.seq + 1;
        self.got.push((now, s.event));
        true
    }

    /// How long the guest has not answered over vsock (None: never yet).
    pub fn silent_for(&self) -> Option<Duration> {
        self.heard.map(|t| t.elapsed())
    }

    fn heard(&mut self) {
        self.heard = Some(Instant::now());
    }

    /// When the engine was last reported ready, unless it exited since.
    pub fn engine_ready(&self) -> Option<Instant> {
        let last = self.got.iter().rev().find(|(_, e)| matches!(e, Event::EngineReady | Event::EngineRestarting { .. } | Event::EngineStarted { .. }));
        last.filter(|(_, e)| *e == Event::EngineReady).map(|(t, _)| *t)
    }

    /// When the guest said it powers off.
    pub fn powering_off(&self) -> Option<Instant> {
        self.got.iter().find(|(_, e)| *e == Event::PoweringOff).map(|(t, _)| *t)
    }

    /// True once the init runs (it watches the power button from then on).
    pub fn init_runs(&self) -> bool {
        self.got.iter().any(|(_, e)| matches!(e, Event::InitStarted | Event::InitRunning))
    }

    /// The first failure the guest reported, by its code.
    pub fn failure(&self) -> Option<&str> {
        self.got.iter().find_map(|(_, e)| match e {
            Event::Failed { what } => Some(what.as_str()),
            _ => None,
        })
    }
}

/// The milestones reached, named for people (`skiff start`'s progress).
pub fn progress(events: &[Event]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for e in events {
        let name = match e {
            Event::InitStarted | Event::InitRunning => "init",
            Event::UsrMounted => "medium",
            Event::Disk(_) => "disk",
            Event::Network { .. } => "network",
            Event::EngineStarted { .. } => "engine",
            _ => continue,
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The events in an events file (DIR/events), skipping what does not parse.
pub fn read_file(path: &Path) -> Vec<Event> {
    let text = file::read(path, 1 << 20).unwrap_or_default();
    text.lines().filter_map(|l| wire::parse(l.as_bytes()).ok().flatten()).map(|s| s.event).collect()
}

/// The guest's events as this process follows them.
#[derive(Clone, Default)]
pub struct Events {
    seen: Arc<Mutex<Seen>>,
}

/// How long a connected stream may stay silent (keep-alives come every
/// 5 s) before it is taken for lost, unless the VM was paused meanwhile.
const SILENCE_LIMIT: Duration = Duration::from_secs(20);
/// Reconnection backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Events {
    /// What has been reported so far.
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the guest's events on a thread of its own, writing each to
    /// `copy` (a new private file), until the guest said it powers off and
    /// closed the stream; a lost stream is reconnected (the guest replays
    /// what it holds, and what was had is skipped).
    pub fn follow(&self, guest: Target, copy: &Path) -> io::Result<()> {
        let mut out = file::create(copy)?;
        let this = self.clone();
        threads::spawn("guest events", move || {
            let (mut backoff, mut said) = (Backoff::new(BACKOFF_MIN, BACKOFF_MAX), false);
            loop {
                let streams = this.seen().streams;
                let result = this.read(&guest, &mut out);
                if this.seen().powering_off().is_some() || this.seen().closed {
                    return;
                }
                // A stream that worked and then ended: reconnect at once.
                if this.seen().streams > streams {
                    backoff.reset();
                    said = false;
                }
                // Said once, when retries have slowed down (early refusals
                // are normal: the port opens once the guest's services run).
                if let (Err(e), false, true) = (result, said, backoff.at_max()) {
                    eprintln!("skiff: guest events: {e}; still trying");
                    said = true;
                }
                // A stopped VM is not connected to (see `Target::set_paused`).
                while guest.link.paused_within(Duration::ZERO) {
                    thread::sleep(BACKOFF_MIN);
                }
                backoff.wait();
            }
        })?;
        Ok(())
    }

    /// Stops following once the current stream ends (the boot is over).
    pub fn close(&self) {
        self.seen().closed = true;
    }

    fn read(&self, guest: &Target, out: &mut File) -> io::Result<()> {
        let mut conn = match guest.connect(DEFAULT_CONTROL_PORT) {
            Ok(conn) => conn,
            // The guest said no (its control port is not open yet, or the
            // secret is refused): the transport works.
            Err(e) if refused_by_guest(&guest.addr, &e) => {
                self.seen().heard();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.seen().heard();
        conn.set_read_timeout(Some(SILENCE_LIMIT))?;
        conn.write_all(control::encode(&Request::Events).as_bytes())?;
        self.take(Patient(BufReader::new(conn), &guest.link), out)
    }

    /// Reads a stream (header, then events) to its end.
    fn take(&self, mut stream: impl BufRead, out: &mut impl Write) -> io::Result<()> {
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            if stream.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let text = line.strip_suffix(b"\n").ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "over-long event line"))?;
            self.seen().heard();
            let bad = |e| io::Error::new(io::ErrorKind::InvalidData, e);
            if std::mem::take(&mut first) {
                wire::parse_header(text).map_err(bad)?;
                self.seen().streams += 1;
                continue;
            }
            let Some(s) = wire::parse(text).map_err(bad)? else { continue };
            let encoded = wire::encode(&s);
            let mut seen = self.seen();
            seen.heard();
            if seen.add(s, Instant::now()) {
                // The copy is for others to read; the decision is made here.
                let _ = out.write_all(encoded.as_bytes());
            }
        }
    }
}

/// True if `e` is the guest's own refusal of a connection (the vsock
/// transport works), not a device or socket that does not answer.
fn refused_by_guest(addr: &Addr, e: &io::Error) -> bool {
    // The secret handshake ran and the guest said no.
    if e.kind() == io::ErrorKind::PermissionDenied {
        return true;
    }
    match addr {
        Addr::Uds(_) => e.get_ref().is_some_and(|inner| inner.is::<HandshakeError>()),
        Addr::Cid(_) => matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset),
        Addr::Unix(_) => false,
    }
}

/// A stream whose read timeouts are waited out while the VM is paused (a
/// stopped VM sends nothing, and reconnecting then would break the vsock
/// device, see `Target::set_paused`), and are errors otherwise.
struct Patient<'a, R>(R, &'a Link);

impl<R: Read> Read for Patient<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) && self.1.paused_within(SILENCE_LIMIT) => continue,
                other => return other,
            }
        }
    }
}

impl<R: BufRead> BufRead for Patient<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.0.fill_buf() {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) && self.1.paused_within(SILENCE_LIMIT) => continue,
                // Re-borrowed: the loop above cannot return the first borrow.
                Ok(_) => return self.0.fill_buf(),
                Err(e) => return Err(e),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.0.consume(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, event: Event) -> String {
        wire::encode(&Stamped { seq, at: Duration::from_millis(seq), event })
    }

    #[test]
    fn a_stream_is_taken_once_even_when_replayed() {
        let events = Events::default();
        let mut copy = Vec::new();
        let first = format!("{}\n{}{}\n{}", wire::HEADER, line(0, Event::InitRunning), line(1, Event::EngineReady), "9 9 engine-paused\n");
        events.take(first.as_bytes(), &mut copy).unwrap();
        assert!(events.seen().init_runs() && events.seen().engine_ready().is_some());
        // A reconnection replays the ring: what was had is skipped.
        let again = format!("{}\n{}{}{}", wire::HEADER, line(0, Event::InitRunning), line(1, Event::EngineReady), line(2, Event::PoweringOff));
        events.take(again.as_bytes(), &mut copy).unwrap();
        let copied: Vec<Event> = String::from_utf8(copy).unwrap().lines().filter_map(|l| wire::parse(l.as_bytes()).unwrap()).map(|s| s.event).collect();
        assert_eq!(copied, [Event::InitRunning, Event::EngineReady, Event::PoweringOff]);
        assert!(events.seen().powering_off().is_some());
        assert_eq!(events.seen().streams, 2, "each stream that reached its header resets the reconnection delay");
    }

    #[test]
    fn other_versions_and_junk_end_the_stream() {
        let events = Events::default();
        assert!(events.take(&b"SKIFF-EVENTS/2\n0 0 engine-ready\n"[..], &mut Vec::new()).is_err());
        assert_eq!(events.seen().streams, 0, "a stream of another version is no working stream");
        assert!(events.take(format!("{}\n0 x engine-ready\n", wire::HEADER).as_bytes(), &mut Vec::new()).is_err());
        let long = format!("{}\n{}\n", wire::HEADER, "1".repeat(MAX_LINE + 10));
        assert!(events.take(long.as_bytes(), &mut Vec::new()).is_err());
        assert!(events.seen().engine_ready().is_none());
    }

    #[test]
    fn decisions_follow_the_latest_engine_event() {
        let mut seen = Seen::default();
        let t = Instant::now();
        for (seq, event) in [Event::InitStarted, Event::EngineStarted { pid: 10 }, Event::EngineReady, Event::EngineRestarting { reason: "signal-9".into() }].into_iter().enumerate() {
            seen.add(Stamped { seq: seq as u64, at: Duration::ZERO, event }, t);
        }
        assert!(seen.init_runs());
        assert_eq!(seen.engine_ready(), None, "ready, then exited: not ready");
        assert_eq!(seen.failure(), None);
        seen.add(Stamped { seq: 9, at: Duration::ZERO, event: Event::EngineReady }, t);
        assert_eq!(seen.engine_ready(), Some(t));
        assert!(!seen.add(Stamped { seq: 3, at: Duration::ZERO, event: Event::PoweringOff }, t), "an old sequence number is skipped");
        assert_eq!(seen.powering_off(), None);
        seen.add(Stamped { seq: 10, at: Duration::ZERO, event: Event::Failed { what: wire::FAILED_USR.into() } }, t);
        assert_eq!(seen.failure(), Some(wire::FAILED_USR));
        assert!(!Seen::default().init_runs());
    }

    #[test]
    fn only_the_guests_own_refusal_counts_as_an_answer() {
        let uds = Addr::Uds("/x".into());
        let closed = io::Error::new(io::ErrorKind::ConnectionRefused, HandshakeError::Closed);
        assert!(refused_by_guest(&uds, &closed));
        assert!(!refused_by_guest(&uds, &io::Error::new(io::ErrorKind::ConnectionRefused, "/x: connection refused (is the VM running?)")), "a dead device daemon");
        assert!(!refused_by_guest(&uds, &io::Error::new(io::ErrorKind::TimedOut, "no answer to CONNECT")));
        assert!(refused_by_guest(&Addr::Cid(3), &io::Error::from(io::ErrorKind::ConnectionReset)));
        assert!(!refused_by_guest(&Addr::Cid(3), &io::Error::from(io::ErrorKind::TimedOut)));
        assert!(refused_by_guest(&uds, &io::Error::new(io::ErrorKind::PermissionDenied, "the guest refused: bad secret")));
    }

    #[test]
    fn progress_names_each_milestone_once_in_order() {
        let net = Event::Network { link: "eth0".into(), addr: "10.0.2.15".parse().unwrap(), prefix: 24 };
        let events = [Event::InitStarted, Event::InitRunning, Event::UsrMounted, Event::Disk(wire::Disk::None), Event::EngineStarted { pid: 1 }, net, Event::EngineReady];
        assert_eq!(progress(&events), ["init", "medium", "disk", "engine", "network"]);
        assert!(progress(&[]).is_empty());
    }
}
