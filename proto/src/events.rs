//! The guest's milestones as typed events (`SKIFF-CONTROL/1 events`), so
//! the host, the tests and the bench decide from them and never from the
//! wording of the console, which is for people.
//!
//! The guest first sends [`HEADER`], then every event it still holds, then
//! new ones as they happen, one per line:
//! `<seq> <guest uptime in µs> <kind>[ <field>...]`. Sequence numbers
//! count from 0 at boot, so a host that reconnects skips what it has. An
//! empty line is a keep-alive. A reader ignores kinds and trailing fields
//! it does not know (a newer guest), and refuses another major version.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

/// First line of the stream: the wire format's version.
pub const HEADER: &str = "SKIFF-EVENTS/1";
/// Longest line either side writes or accepts.
pub const MAX_LINE: usize = 160;
/// Longest reason code (or link name) carried by an event.
pub const MAX_CODE: usize = 32;

/// What the init reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// PID 1 started (in the initramfs).
    InitStarted,
    /// PID 1 runs on its tmpfs root: the boot proper begins.
    InitRunning,
    /// /usr is mounted from the boot medium.
    UsrMounted,
    /// The engine's binary has been read ahead from /usr.
    EngineRead,
    /// The data disk step is over.
    Disk(Disk),
    /// A network link has its address.
    Network { link: String, addr: IpAddr, prefix: u8 },
    /// The engine process was started.
    EngineStarted { pid: u32 },
    /// The engine answers `GET /_ping`.
    EngineReady,
    /// The engine exited (reason code) and will be started again.
    EngineRestarting { reason: String },
    /// The shutdown is done; the machine powers off now.
    PoweringOff,
    /// Something failed that the host may act on (a code, e.g. `usr`).
    Failed { what: String },
    /// A fact about one thing beyond the milestones: what happened and to
    /// what (a device, link, folder, key, port, container or step).
    Noted { note: Note, subject: String },
}

/// What a [`Event::Noted`] says of its subject. The console says the same
/// in words; checks read this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// /usr was mounted from this device (`/dev/sr0`, `/dev/vda`, ...).
    UsrFrom,
    /// A disk the data disk step left untouched (`/dev/vda`): it holds
    /// something else, or cannot be read.
    DiskSkipped,
    /// A blank disk got Skiff's partition table.
    DiskPartitioned,
    /// This partition was formatted as the data disk.
    DiskFormatted,
    /// This partition's filesystem was checked before it was mounted.
    DiskChecked,
    /// This partition is mounted as the data disk.
    DiskMounted,
    /// The data disk (its mount point) was unmounted at shutdown.
    DiskUnmounted,
    /// The guest's host name was set to this.
    HostName,
    /// This link still has no DHCP offer and keeps asking in the background.
    DhcpWaiting,
    /// This link gave its DHCP lease back at shutdown.
    LeaseReleased,
    /// This host folder was unmounted at shutdown.
    ShareUnmounted,
    /// The host replaced the boot secret (subject: `vsock`).
    SecretReplaced,
    /// This vsock port has as many connections open as it takes.
    ConnectionsCapped,
    /// This vsock port refused a connection that did not prove the secret.
    ConnectionRefused,
    /// Healthchecks of this container (short id) run now.
    HealthWatching,
    /// Healthchecks of this container stopped.
    HealthStopped,
    /// A settings key that is unknown (ignored).
    UnknownKey,
    /// A setting whose value cannot be used (the key, never the value).
    SettingRefused,
    /// A file the init would read or write but will not (a FIFO, a
    /// symbolic link, ...): its path.
    FileRefused,
    /// This shutdown step ran into its time limit.
    ShutdownOverran,
}

/// Every note and its wire name.
const NOTES: &[(Note, &str)] = &[
    (Note::UsrFrom, "usr-from"),
    (Note::DiskSkipped, "disk-skipped"),
    (Note::DiskPartitioned, "disk-partitioned"),
    (Note::DiskFormatted, "disk-formatted"),
    (Note::DiskChecked, "disk-checked"),
    (Note::DiskMounted, "disk-mounted"),
    (Note::DiskUnmounted, "disk-unmounted"),
    (Note::HostName, "host-name"),
    (Note::DhcpWaiting, "dhcp-waiting"),
    (Note::LeaseReleased, "lease-released"),
    (Note::ShareUnmounted, "share-unmounted"),
    (Note::SecretReplaced, "secret-replaced"),
    (Note::ConnectionsCapped, "connections-capped"),
    (Note::ConnectionRefused, "connection-refused"),
    (Note::HealthWatching, "health-watching"),
    (Note::HealthStopped, "health-stopped"),
    (Note::UnknownKey, "unknown-key"),
    (Note::SettingRefused, "setting-refused"),
    (Note::FileRefused, "file-refused"),
    (Note::ShutdownOverran, "shutdown-overran"),
];

impl Note {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        NOTES.iter().find(|(n, _)| *n == self).map_or("-", |(_, name)| name)
    }

    fn from_name(name: &str) -> Option<Note> {
        NOTES.iter().find(|(_, n)| *n == name).map(|(note, _)| *note)
    }
}

/// Longest subject of a note, escaped, so a line stays within [`MAX_LINE`].
pub const MAX_SUBJECT: usize = 88;

/// `text` as a note's subject: printable ASCII but space and `%` kept,
/// every other byte `%XX`, cut (at a whole character) to [`MAX_SUBJECT`];
/// never empty.
pub fn subject(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let piece = if c.is_ascii_graphic() && c != '%' {
            c.to_string()
        } else {
            c.to_string().bytes().map(|b| format!("%{b:02X}")).collect()
        };
        if out.len() + piece.len() > MAX_SUBJECT {
            break;
        }
        out.push_str(&piece);
    }
    if out.is_empty() { "-".into() } else { out }
}

/// The text a subject stands for (bytes that are not UTF-8 become U+FFFD).
pub fn unescape(subject: &str) -> Option<String> {
    let b = subject.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// How the data disk step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// Mounted: images, containers and volumes persist.
    Mounted,
    /// No data disk: the engine keeps everything in RAM.
    None,
    /// A disk was there but not used (a reason code: `ambiguous`, `failed`).
    Refused(String),
}

/// `Failed` code: /usr could not be mounted, so the engine never starts.
pub const FAILED_USR: &str = "usr";

/// One event as sent: its sequence number and guest uptime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub seq: u64,
    pub at: Duration,
    pub event: Event,
}

/// `text` as a reason code: ASCII letters, digits, `.` and `-` (anything
/// else becomes `-`), at most [`MAX_CODE`] characters, never empty.
pub fn code(text: &str) -> String {
    let c: String = text.chars().take(MAX_CODE).map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    if c.is_empty() { "-".into() } else { c }
}

/// The line for `s`, with its `\n`.
pub fn encode(s: &Stamped) -> String {
    let mut line = format!("{} {} ", s.seq, s.at.as_micros() as u64);
    let _ = match &s.event {
        Event::InitStarted => write!(line, "init-started"),
        Event::InitRunning => write!(line, "init-running"),
        Event::UsrMounted => write!(line, "usr"),
        Event::EngineRead => write!(line, "engine-read"),
        Event::Disk(Disk::Mounted) => write!(line, "disk mounted"),
        Event::Disk(Disk::None) => write!(line, "disk none"),
        Event::Disk(Disk::Refused(why)) => write!(line, "disk refused {}", code(why)),
        Event::Network { link, addr, prefix } => write!(line, "net {} {addr}/{prefix}", code(link)),
        Event::EngineStarted { pid } => write!(line, "engine-started {pid}"),
        Event::EngineReady => write!(line, "engine-ready"),
        Event::EngineRestarting { reason } => write!(line, "engine-restarting {}", code(reason)),
        Event::PoweringOff => write!(line, "powering-off"),
        Event::Failed { what } => write!(line, "failed {}", code(what)),
        Event::Noted { note, subject: about } => write!(line, "note {} {}", note.name(), subject(about)),
    };
    line.push('\n');
    line
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not UTF-8, or longer than [`MAX_LINE`].
    Malformed,
    /// No sequence number and uptime, or a known kind with a bad field.
    BadField(&'static str),
    /// The stream's first line is not [`HEADER`] (holds at most 40 characters of it).
    Version(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Malformed => write!(f, "malformed event line"),
            ParseError::BadField(what) => write!(f, "bad event field: {what}"),
            ParseError::Version(line) => write!(f, "not a {HEADER} stream: {line:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Checks the stream's first line (without its `\n`).
pub fn parse_header(line: &[u8]) -> Result<(), ParseError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    if text == HEADER { Ok(()) } else { Err(ParseError::Version(text.chars().take(40).collect())) }
}

/// Parses one event line (without its `\n`). `Ok(None)`: a keep-alive or
/// a kind this side does not know, to be skipped.
pub fn parse(line: &[u8]) -> Result<Option<Stamped>, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::Malformed);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::Malformed)?.trim_end_matches('\r');
    let mut f = text.split(' ');
    let Some(seq) = f.next().filter(|s| !s.is_empty()) else { return Ok(None) };
    let seq = seq.parse().map_err(|_| ParseError::BadField("sequence number"))?;
    let at = f.next().and_then(|t| t.parse().ok()).map(Duration::from_micros).ok_or(ParseError::BadField("uptime"))?;
    let kind = f.next().ok_or(ParseError::BadField("kind"))?;
    let mut arg = |what| f.next().filter(|a| !a.is_empty() && a.len() <= MAX_CODE).map(str::to_string).ok_or(ParseError::BadField(what));
    let event = match kind {
        "init-started" => Event::InitStarted,
        "init-running" => Event::InitRunning,
        "usr" => Event::UsrMounted,
        "engine-read" => Event::EngineRead,
        "disk" => match arg("disk outcome")?.as_str() {
            "mounted" => Event::Disk(Disk::Mounted),
            "none" => Event::Disk(Disk::None),
            "refused" => Event::Disk(Disk::Refused(arg("disk reason")?)),
            _ => return Ok(None),
        },
        "net" => {
            let link = arg("link")?;
            let cidr = f.next().ok_or(ParseError::BadField("address"))?;
            let (addr, prefix) = cidr.split_once('/').ok_or(ParseError::BadField("address"))?;
            let addr = addr.parse().map_err(|_| ParseError::BadField("address"))?;
            let prefix = prefix.parse().ok().filter(|p| *p <= 128).ok_or(ParseError::BadField("prefix"))?;
            Event::Network { link, addr, prefix }
        }
        "engine-started" => Event::EngineStarted { pid: arg("pid")?.parse().map_err(|_| ParseError::BadField("pid"))? },
        "engine-ready" => Event::EngineReady,
        "engine-restarting" => Event::EngineRestarting { reason: arg("reason")? },
        "powering-off" => Event::PoweringOff,
        "failed" => Event::Failed { what: arg("failure")? },
        "note" => {
            let Some(note) = Note::from_name(&arg("note")?) else { return Ok(None) };
            let about = f.next().filter(|a| !a.is_empty() && a.len() <= MAX_SUBJECT).ok_or(ParseError::BadField("subject"))?;
            Event::Noted { note, subject: unescape(about).ok_or(ParseError::BadField("subject"))? }
        }
        _ => return Ok(None),
    };
    Ok(Some(Stamped { seq, at, event }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Event> {
        vec![
            Event::InitStarted,
            Event::InitRunning,
            Event::UsrMounted,
            Event::EngineRead,
            Event::Disk(Disk::Mounted),
            Event::Disk(Disk::None),
            Event::Disk(Disk::Refused("ambiguous".into())),
            Event::Network { link: "eth0".into(), addr: "10.0.2.15".parse().unwrap(), prefix: 24 },
            Event::Network { link: "enp0s3".into(), addr: "fd00::15".parse().unwrap(), prefix: 64 },
            Event::EngineStarted { pid: 4_000_000 },
            Event::EngineReady,
            Event::EngineRestarting { reason: "exit-code-1".into() },
            Event::PoweringOff,
            Event::Failed { what: FAILED_USR.into() },
        ]
        .into_iter()
        .chain(NOTES.iter().map(|(note, _)| Event::Noted { note: *note, subject: "/dev/vda1".into() }))
        .collect()
    }

    #[test]
    fn a_subject_carries_any_text_on_one_bounded_line() {
        for text in ["/home/a b/100%", "bad\nline 0 0 powering-off", "é", "", "x"] {
            let event = Event::Noted { note: Note::ShareUnmounted, subject: text.into() };
            let line = encode(&Stamped { seq: 1, at: Duration::ZERO, event });
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert_eq!(line.split(' ').count(), 5, "{line:?}");
            let Ok(Some(Stamped { event: Event::Noted { subject: back, .. }, .. })) = parse(line.trim_end().as_bytes()) else { panic!("{line:?}") };
            assert_eq!(back, if text.is_empty() { "-" } else { text });
        }
        let long = subject(&"é".repeat(100));
        assert!(long.len() <= MAX_SUBJECT && long.len() % 6 == 0, "cut at a whole escape: {long}");
        let line = encode(&Stamped { seq: u64::MAX, at: Duration::from_micros(u64::MAX), event: Event::Noted { note: Note::ConnectionsCapped, subject: "/".repeat(500) } });
        assert!(line.len() <= MAX_LINE, "{}", line.len());
        assert_eq!(parse(b"1 2 note disk-exploded /dev/vda"), Ok(None), "a newer guest's note");
        for junk in [&b"1 2 note"[..], b"1 2 note disk-mounted", b"1 2 note disk-mounted %4", b"1 2 note disk-mounted %zz"] {
            assert!(parse(junk).is_err(), "{:?}", String::from_utf8_lossy(junk));
        }
    }

    #[test]
    fn every_event_round_trips_within_the_line_limit() {
        for (i, event) in all().into_iter().enumerate() {
            let s = Stamped { seq: u64::MAX - i as u64, at: Duration::from_micros(u64::MAX), event };
            let line = encode(&s);
            assert!(line.ends_with('\n') && line.len() <= MAX_LINE, "{line:?}");
            assert_eq!(parse(line.trim_end().as_bytes()), Ok(Some(s)));
        }
        let s = Stamped { seq: 3, at: Duration::from_micros(1_234_567), event: Event::EngineReady };
        assert_eq!(encode(&s), "3 1234567 engine-ready\n");
    }

    #[test]
    fn outside_text_becomes_a_bounded_code() {
        let long = Event::EngineRestarting { reason: "signal 9 (SIGKILL)\n0 0 powering-off ".repeat(20) };
        let line = encode(&Stamped { seq: 1, at: Duration::ZERO, event: long });
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        assert!(line.len() <= MAX_LINE);
        let Ok(Some(Stamped { event: Event::EngineRestarting { reason }, .. })) = parse(line.trim_end().as_bytes()) else { panic!("{line:?}") };
        assert_eq!(reason.len(), MAX_CODE);
        assert!(reason.starts_with("signal-9--SIGKILL--0-0-powering"), "{reason}");
        assert_eq!(code(""), "-");
        assert_eq!(code("exit code 1"), "exit-code-1");
    }

    #[test]
    fn unknown_kinds_and_keepalives_are_skipped_extra_fields_ignored() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"7 100 engine-paused x y"), Ok(None), "a newer guest's kind");
        assert_eq!(parse(b"7 100 disk encrypted"), Ok(None), "a newer disk outcome");
        let s = parse(b"7 100 engine-ready with more").unwrap().unwrap();
        assert_eq!((s.seq, s.at, s.event), (7, Duration::from_micros(100), Event::EngineReady));
    }

    #[test]
    fn junk_is_refused() {
        for junk in [&b"x 1 init-running"[..], b"1 soon init-running", b"1", b"1 2", b"1 2 net eth0", b"1 2 net eth0 10.0.0.1", b"1 2 net eth0 10.0.0.1/200", b"1 2 net eth0 host/24", b"1 2 engine-started me", b"1 2 failed", b"1 2 disk", b"1 2 disk refused", b"\xff 1 init-running"] {
            assert!(parse(junk).is_err(), "{:?}", String::from_utf8_lossy(junk));
        }
        assert_eq!(parse(&[b'1'; MAX_LINE + 1]), Err(ParseError::Malformed));
        assert_eq!(parse(format!("1 2 failed {}", "x".repeat(MAX_CODE + 1)).as_bytes()), Err(ParseError::BadField("failure")));
    }

    #[test]
    fn the_header_names_the_version() {
        assert_eq!(parse_header(HEADER.as_bytes()), Ok(()));
        assert_eq!(parse_header(b"SKIFF-EVENTS/1\r"), Ok(()));
        assert!(matches!(parse_header(b"SKIFF-EVENTS/2"), Err(ParseError::Version(_))));
        assert!(matches!(parse_header(b"skiff: refused: bad secret"), Err(ParseError::Version(_))));
    }
}
