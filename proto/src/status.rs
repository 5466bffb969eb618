//! The guest's answer to `SKIFF-CONTROL/1 status`: what only the guest
//! knows for `skiff status` (its build, memory, the data disk's use as `df`
//! sees it, the host folders it mounted), as `key value` lines closed by
//! `end`, so a cut-off answer is never taken for a whole one:
//!
//! ```text
//! version 0.1.0
//! build 1a2b3c4d5e6f7a8b
//! uptime 123
//! memory 1015000 812000
//! disk 67371577344 52690944 63919185920
//! share virtiofs /home/me
//! end
//! ```
//!
//! `memory` is total and available KiB (/proc/meminfo); `disk` is size,
//! used and available bytes of the mounted data filesystem, or `disk none`
//! when the engine runs in RAM; one `share` line per mounted host folder.

use std::fmt;

/// Longest answer the host reads (and the guest sends: shares that would
/// not fit are left out, so many long share paths never cost the answer).
pub const MAX_STATUS: usize = 64 * 1024;
/// Most `share` lines an answer may carry.
pub const MAX_SHARES: usize = 64;

/// The data filesystem's use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUse {
    pub size: u64,
    pub used: u64,
    pub available: u64,
}

/// One mounted host folder: its transport (`virtiofs`, `9p`) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareUse {
    pub fs: String,
    pub path: String,
}

/// What the guest reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestStatus {
    /// The init's version (the workspace's).
    pub version: String,
    /// The build id of the ISO it booted from.
    pub build: String,
    /// Seconds since the guest kernel started.
    pub uptime_secs: u64,
    /// MemTotal and MemAvailable, KiB.
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    /// `None`: no data disk mounted (images live in RAM).
    pub disk: Option<DiskUse>,
    pub shares: Vec<ShareUse>,
}

/// Why an answer was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Longer than [`MAX_STATUS`].
    TooLong,
    /// No `end` line: the connection closed early.
    Truncated,
    /// A line that is not `key value` as above (the line, shortened).
    BadLine(String),
    /// A required key is missing.
    Missing(&'static str),
    /// More than [`MAX_SHARES`] shares.
    TooManyShares,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLong => write!(f, "the guest's status is longer than {MAX_STATUS} bytes"),
            Error::Truncated => write!(f, "the guest's status ended early (no `end` line)"),
            Error::BadLine(l) => write!(f, "the guest's status has a bad line: {l:?}"),
            Error::Missing(k) => write!(f, "the guest's status has no `{k}` line"),
            Error::TooManyShares => write!(f, "the guest's status lists more than {MAX_SHARES} shares"),
        }
    }
}

impl std::error::Error for Error {}

/// The answer's text. Values are single words except a share's path, which
/// is the rest of its line (share paths hold no control characters).
pub fn encode(s: &GuestStatus) -> String {
    let word = |v: &str| {
        let w: String = v.chars().filter(|c| c.is_ascii_graphic()).collect();
        if w.is_empty() { "-".to_string() } else { w }
    };
    let mut out = format!("version {}\nbuild {}\nuptime {}\nmemory {} {}\n", word(&s.version), word(&s.build), s.uptime_secs, s.mem_total_kib, s.mem_available_kib);
    match s.disk {
        Some(d) => out.push_str(&format!("disk {} {} {}\n", d.size, d.used, d.available)),
        None => out.push_str("disk none\n"),
    }
    const END: &str = "end\n";
    for share in s.shares.iter().take(MAX_SHARES).filter(|sh| !sh.path.chars().any(char::is_control)) {
        let line = format!("share {} {}\n", word(&share.fs), share.path);
        if out.len() + line.len() + END.len() <= MAX_STATUS {
            out.push_str(&line);
        }
    }
    out.push_str(END);
    out
}

/// Parses an answer (all the bytes the guest sent).
pub fn parse(bytes: &[u8]) -> Result<GuestStatus, Error> {
    if bytes.len() > MAX_STATUS {
        return Err(Error::TooLong);
    }
    let text = String::from_utf8_lossy(bytes);
    let mut s = GuestStatus::default();
    let (mut version, mut memory, mut disk, mut ended) = (false, false, false, false);
    for line in text.lines() {
        let bad = || Error::BadLine(line.chars().take(80).collect());
        if ended {
            return Err(bad());
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let numbers = || value.split(' ').map(str::parse::<u64>).collect::<Result<Vec<u64>, _>>().map_err(|_| bad());
        match key {
            "version" if !value.is_empty() => (s.version, version) = (value.to_string(), true),
            "build" if !value.is_empty() => s.build = value.to_string(),
            "uptime" => s.uptime_secs = value.parse().map_err(|_| bad())?,
            "memory" => match numbers()?[..] {
                [total, available] => (s.mem_total_kib, s.mem_available_kib, memory) = (total, available, true),
                _ => return Err(bad()),
            },
            "disk" if value == "none" => (s.disk, disk) = (None, true),
            "disk" => match numbers()?[..] {
                [size, used, available] => (s.disk, disk) = (Some(DiskUse { size, used, available }), true),
                _ => return Err(bad()),
            },
            "share" => {
                let (fs, path) = value.split_once(' ').filter(|(fs, p)| !fs.is_empty() && p.starts_with('/')).ok_or_else(bad)?;
                if s.shares.len() == MAX_SHARES {
                    return Err(Error::TooManyShares);
                }
                s.shares.push(ShareUse { fs: fs.to_string(), path: path.to_string() });
            }
            "end" if value.is_empty() => ended = true,
            _ => return Err(bad()),
        }
    }
    match (ended, version, memory, disk) {
        (false, ..) => Err(Error::Truncated),
        (_, false, ..) => Err(Error::Missing("version")),
        (_, _, false, _) => Err(Error::Missing("memory")),
        (_, _, _, false) => Err(Error::Missing("disk")),
        _ => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GuestStatus {
        GuestStatus {
            version: "0.1.0".into(),
            build: "1a2b3c".into(),
            uptime_secs: 42,
            mem_total_kib: 1_000_000,
            mem_available_kib: 800_000,
            disk: Some(DiskUse { size: 64 << 30, used: 50 << 20, available: 60 << 30 }),
            shares: vec![ShareUse { fs: "virtiofs".into(), path: "/home/a b".into() }, ShareUse { fs: "9p".into(), path: "/src".into() }],
        }
    }

    #[test]
    fn many_long_share_paths_never_make_the_answer_too_long() {
        let mut s = sample();
        s.shares = (0..MAX_SHARES).map(|i| ShareUse { fs: "virtiofs".into(), path: format!("/{i:02}{}", "x".repeat(4093)) }).collect();
        let text = encode(&s);
        assert!(text.len() <= MAX_STATUS, "{} bytes", text.len());
        let back = parse(text.as_bytes()).expect("an answer that fits parses");
        assert!(!back.shares.is_empty() && back.shares.len() < MAX_SHARES, "{} shares", back.shares.len());
        assert_eq!(back.shares[0], s.shares[0]);
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(parse(encode(&s).as_bytes()), Ok(s.clone()));
        let ram = GuestStatus { disk: None, shares: Vec::new(), ..s };
        let text = encode(&ram);
        assert!(text.contains("disk none\n"), "{text}");
        assert_eq!(parse(text.as_bytes()), Ok(ram));
    }

    #[test]
    fn a_cut_off_answer_is_not_whole() {
        let text = encode(&sample());
        let cut = &text[..text.len() - 4];
        assert_eq!(parse(cut.as_bytes()), Err(Error::Truncated));
        assert_eq!(parse(b""), Err(Error::Truncated));
    }

    #[test]
    fn bad_answers_say_why() {
        assert!(matches!(parse(b"version 1\nmemory x 1\ndisk none\nend\n"), Err(Error::BadLine(_))));
        assert!(matches!(parse(b"version 1\nmemory 1\ndisk none\nend\n"), Err(Error::BadLine(_))));
        assert!(matches!(parse(b"version 1\nmemory 1 2\ndisk 1 2\nend\n"), Err(Error::BadLine(_))));
        assert!(matches!(parse(b"version 1\nmemory 1 2\ndisk none\nshare virtiofs rel\nend\n"), Err(Error::BadLine(_))));
        assert!(matches!(parse(b"version 1\nmemory 1 2\ndisk none\nreboot now\nend\n"), Err(Error::BadLine(_))));
        assert!(matches!(parse(b"version 1\nmemory 1 2\ndisk none\nend\nmore\n"), Err(Error::BadLine(_))));
        assert_eq!(parse(b"memory 1 2\ndisk none\nend\n"), Err(Error::Missing("version")));
        assert_eq!(parse(b"version 1\ndisk none\nend\n"), Err(Error::Missing("memory")));
        assert_eq!(parse(b"version 1\nmemory 1 2\nend\n"), Err(Error::Missing("disk")));
        assert_eq!(parse(&vec![b'x'; MAX_STATUS + 1]), Err(Error::TooLong));
        let many: String = (0..=MAX_SHARES).map(|i| format!("share 9p /s{i}\n")).collect();
        assert_eq!(parse(format!("version 1\nmemory 1 2\ndisk none\n{many}end\n").as_bytes()), Err(Error::TooManyShares));
    }

    #[test]
    fn values_cannot_break_lines() {
        let s = GuestStatus { version: "1\nend".into(), build: String::new(), shares: vec![ShareUse { fs: "9p".into(), path: "/a\nend".into() }], ..sample() };
        let back = parse(encode(&s).as_bytes()).unwrap();
        assert_eq!(back.version, "1end");
        assert_eq!(back.build, "-");
        assert!(back.shares.is_empty(), "a path with a newline is left out");
    }
}
