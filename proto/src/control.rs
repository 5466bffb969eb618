//! The "skiff control" vsock port (2376): a second port beside the engine's,
//! reachable only over vsock from the host. A connection starts with one
//! request line naming the service; what follows depends on it:
//! - `SKIFF-CONTROL/1 logs\n`: the guest sends its log ring buffer and closes;
//! - `SKIFF-CONTROL/1 logs follow\n`: the same, then new lines as they come;
//! - `SKIFF-CONTROL/1 shell\n`: a debug shell, spoken in [`crate::shell`] frames;
//! - `SKIFF-CONTROL/1 ports\n`: the published-port table, then its changes
//!   ([`crate::ports`] lines) until the host goes away;
//! - `SKIFF-CONTROL/1 status\n`: the guest's figures for `skiff status`
//!   ([`crate::status`] lines), then the guest closes;
//! - `SKIFF-CONTROL/1 rekey <64 hex digits>\n`: from now on the guest admits
//!   only this secret (kept in its memory alone), answers `OK\n` and closes;
//! - `SKIFF-CONTROL/1 clock <ns>\n`: the host's time (nanoseconds since the
//!   epoch) after the VM was paused or the host slept; the guest sets its
//!   clock and answers how far off it was (`<ns>\n`, host minus guest);
//! - `SKIFF-CONTROL/1 touch\n`: batches of paths changed on the host
//!   ([`crate::touch`]) until the host goes away.
//! - `SKIFF-CONTROL/1 events\n`: the guest's milestones ([`crate::events`]),
//!   those so far then new ones, until the host goes away.

/// The guest's vsock port for control requests (logs, debug shell).
pub const DEFAULT_CONTROL_PORT: u32 = 2376;
/// Longest request line accepted.
pub const MAX_REQUEST: usize = 128;
const MAGIC: &str = "SKIFF-CONTROL/1 ";

use crate::auth::Secret;

/// What a control connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The log ring buffer; with `follow`, then new lines until the client goes.
    Logs { follow: bool },
    /// An interactive or one-command shell.
    Shell,
    /// The published-port table and its changes.
    Ports,
    /// The guest's version, memory, data disk use and shares.
    Status,
    /// Replace the secret the guest admits (`skiff run` does it once the
    /// guest is up, so the boot secret's fw_cfg copy admits nobody).
    Rekey(Secret),
    /// The host's time, nanoseconds since the epoch.
    Clock(i128),
    /// Paths changed on the host, for file watchers in the guest.
    Touch,
    /// The guest's milestones so far, then new ones.
    Events,
}

/// The request line for `req`, with its `\n`.
pub fn encode(req: &Request) -> String {
    let what = match req {
        Request::Logs { follow: false } => "logs",
        Request::Logs { follow: true } => "logs follow",
        Request::Shell => "shell",
        Request::Ports => "ports",
        Request::Status => "status",
        Request::Touch => "touch",
        Request::Events => "events",
        Request::Rekey(s) => return format!("{MAGIC}rekey {}\n", s.to_hex()),
        Request::Clock(ns) => return format!("{MAGIC}clock {ns}\n"),
    };
    format!("{MAGIC}{what}\n")
}

/// Why a request line is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The line is not UTF-8.
    NotUtf8,
    /// The line does not start with `SKIFF-CONTROL/1 ` (holds the line).
    NotControl(String),
    /// A service this side does not know (holds its name).
    Unknown(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotUtf8 => write!(f, "request is not UTF-8"),
            ParseError::NotControl(line) => write!(f, "not a skiff control request: {line:?}"),
            ParseError::Unknown(what) => write!(f, "unknown control request {what:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a request line (without its `\n`).
pub fn parse(line: &[u8]) -> Result<Request, ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let what = text.trim_end_matches('\r').strip_prefix(MAGIC).ok_or_else(|| ParseError::NotControl(text.into()))?;
    match what {
        "logs" => Ok(Request::Logs { follow: false }),
        "logs follow" => Ok(Request::Logs { follow: true }),
        "shell" => Ok(Request::Shell),
        "ports" => Ok(Request::Ports),
        "status" => Ok(Request::Status),
        "touch" => Ok(Request::Touch),
        "events" => Ok(Request::Events),
        // The value is never echoed: parse errors are logged.
        other => match (other.strip_prefix("rekey "), other.strip_prefix("clock ").map(str::parse)) {
            (Some(hex), _) => Secret::from_hex(hex).map(Request::Rekey).map_err(|_| ParseError::Unknown("rekey <not 64 hex digits>".into())),
            (None, Some(Ok(ns))) => Ok(Request::Clock(ns)),
            _ => Err(ParseError::Unknown(other.into())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = Request::Rekey(Secret::from_bytes([0xab; 32]));
        let reqs = [Request::Logs { follow: false }, Request::Logs { follow: true }, Request::Shell, Request::Ports, Request::Status, Request::Events, key, Request::Clock(1_780_000_000_123_456_789), Request::Clock(-1), Request::Touch];
        for req in reqs {
            let line = encode(&req);
            assert!(line.ends_with('\n'));
            assert_eq!(parse(line.trim_end().as_bytes()), Ok(req));
        }
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(parse(b"GET / HTTP/1.1"), Err(ParseError::NotControl("GET / HTTP/1.1".into())));
        assert_eq!(parse(b"SKIFF-CONTROL/1 reboot"), Err(ParseError::Unknown("reboot".into())));
        assert_eq!(parse(b"SKIFF-CONTROL/2 logs"), Err(ParseError::NotControl("SKIFF-CONTROL/2 logs".into())));
        assert_eq!(parse(b"\xff"), Err(ParseError::NotUtf8));
        let bad = parse(format!("SKIFF-CONTROL/1 rekey {}", "ab".repeat(31)).as_bytes()).unwrap_err();
        assert!(!bad.to_string().contains("abab"), "a malformed secret is never echoed: {bad}");
        assert!(format!("{MAGIC}rekey {}\n", "ab".repeat(32)).len() <= MAX_REQUEST);
        assert_eq!(parse(b"SKIFF-CONTROL/1 clock soon"), Err(ParseError::Unknown("clock soon".into())));
        assert_eq!(parse(b"SKIFF-CONTROL/1 clock 1e9"), Err(ParseError::Unknown("clock 1e9".into())));
        let huge = format!("SKIFF-CONTROL/1 clock {}0", i128::MAX);
        assert!(matches!(parse(huge.as_bytes()), Err(ParseError::Unknown(_))), "out of range");
    }
}
