//! The per-VM secret every host connection presents before anything else:
//! the line `SKIFF-AUTH/1 <64 hex digits>\n`, on every guest vsock port.
//!
//! Kernel AF_VSOCK lets any local user of the host connect to a guest's
//! CID, so the 0600 socket on the host alone protects nothing there. The
//! host CLI generates 32 random bytes per VM into its private state folder
//! and gives them to the guest out of band (QEMU fw_cfg, or config.toml /
//! cidata for other hypervisors); the guest compares in constant time.

use std::fmt;

/// Bytes of secret.
pub const SECRET_LEN: usize = 32;
/// What an auth line starts with.
pub const PREFIX: &[u8] = b"SKIFF-AUTH/1 ";
/// Length of a whole auth line, `\n` included.
pub const LINE_LEN: usize = PREFIX.len() + 2 * SECRET_LEN + 1;
/// How the guest's refusal line starts on ports that do not speak HTTP.
pub const REFUSED: &str = "skiff: refused: ";

/// A per-VM secret. Its `Debug` never shows the bytes, so it cannot leak
/// into a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a connection's auth line was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// The connection did not start with an auth line.
    Missing,
    /// It started like one but is not `SKIFF-AUTH/1 <64 hex digits>\n`.
    Malformed,
    /// A well-formed line with another secret.
    Wrong,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "this VM requires its secret (SKIFF-AUTH/1 line) first; use `skiff bridge --secret-file`",
            Self::Malformed => "malformed SKIFF-AUTH/1 line (expected 64 hex digits)",
            Self::Wrong => "wrong secret",
        })
    }
}

impl std::error::Error for AuthError {}

impl Secret {
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Secret {
        Secret(bytes)
    }

    /// Exactly 64 hex digits (either case), surrounding whitespace ignored
    /// (a file written with `openssl rand -hex 32 > secret` has a newline).
    pub fn from_hex(text: &str) -> Result<Secret, AuthError> {
        let digits = text.trim().as_bytes();
        if digits.len() != 2 * SECRET_LEN {
            return Err(AuthError::Malformed);
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (b, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            *b = (hex_digit(pair[0]).ok_or(AuthError::Malformed)? << 4) | hex_digit(pair[1]).ok_or(AuthError::Malformed)?;
        }
        Ok(Secret(bytes))
    }

    /// Lower-case hex, 64 digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The auth line for this secret, `\n` included.
    pub fn line(&self) -> Vec<u8> {
        let mut line = PREFIX.to_vec();
        line.extend_from_slice(self.to_hex().as_bytes());
        line.push(b'\n');
        line
    }

    /// Equality in time independent of where the secrets differ.
    pub fn matches(&self, other: &Secret) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Compares every byte whatever the first difference (lengths are public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What the first bytes of a connection say about an auth line.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// They do not start an auth line.
    NotAuth,
    /// They are the start of one; wait for more.
    NeedMore,
    /// An auth line (well-formed or not) of this many bytes, `\n` included;
    /// a line that runs past [`LINE_LEN`] counts as [`LINE_LEN`] bytes.
    Line(usize),
}

/// Classifies the first bytes received on a connection.
pub fn sniff(first: &[u8]) -> Sniff {
    let n = first.len().min(PREFIX.len());
    if first[..n] != PREFIX[..n] {
        return Sniff::NotAuth;
    }
    let upto = first.len().min(LINE_LEN);
    match first[..upto].iter().position(|&b| b == b'\n') {
        Some(i) => Sniff::Line(i + 1),
        None if upto == LINE_LEN => Sniff::Line(LINE_LEN),
        None => Sniff::NeedMore,
    }
}

/// Checks a complete auth line against the expected secret.
pub fn check(line: &[u8], expected: &Secret) -> Result<(), AuthError> {
    let body = line.strip_prefix(PREFIX).ok_or(AuthError::Missing)?;
    let hex = body.strip_suffix(b"\n").ok_or(AuthError::Malformed)?;
    let text = std::str::from_utf8(hex).map_err(|_| AuthError::Malformed)?;
    if text.len() != 2 * SECRET_LEN {
        return Err(AuthError::Malformed);
    }
    let given = Secret::from_hex(text)?;
    if given.matches(expected) { Ok(()) } else { Err(AuthError::Wrong) }
}

/// The guest's refusal on a port that does not speak HTTP.
pub fn refusal_line(reason: &str) -> String {
    format!("{REFUSED}{reason}\n")
}

/// The reason in a refusal line, if `text` is one.
pub fn parse_refusal(text: &[u8]) -> Option<String> {
    let rest = text.strip_prefix(REFUSED.as_bytes())?;
    let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
    Some(String::from_utf8_lossy(line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: u8) -> Secret {
        Secret::from_bytes([fill; SECRET_LEN])
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let s = Secret::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        assert_eq!(Secret::from_hex(&s.to_hex()), Ok(s.clone()));
        assert_eq!(Secret::from_hex(&format!("  {}\n", s.to_hex().to_uppercase())), Ok(s.clone()));
        assert_eq!(Secret::from_hex(&s.to_hex()[..63]), Err(AuthError::Malformed));
        assert_eq!(Secret::from_hex(&format!("{}0", s.to_hex())), Err(AuthError::Malformed));
        assert_eq!(Secret::from_hex(&"g".repeat(64)), Err(AuthError::Malformed));
        assert_eq!(Secret::from_hex(&"é".repeat(32)), Err(AuthError::Malformed), "multi-byte characters");
        assert_eq!(Secret::from_hex(""), Err(AuthError::Malformed));
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = secret(0xab);
        assert!(!format!("{s:?}").contains("ab"));
    }

    #[test]
    fn line_is_checked() {
        let good = secret(1);
        let line = good.line();
        assert_eq!(line.len(), LINE_LEN);
        assert_eq!(check(&line, &good), Ok(()));
        assert_eq!(check(&secret(2).line(), &good), Err(AuthError::Wrong));
        let mut one_bit = line.clone();
        one_bit[LINE_LEN - 2] ^= 1; // '1' → '0': still hex, another secret
        assert_eq!(check(&one_bit, &good), Err(AuthError::Wrong));
        assert_eq!(check(b"GET / HTTP/1.1\r\n", &good), Err(AuthError::Missing));
        assert_eq!(check(b"SKIFF-AUTH/1 abc\n", &good), Err(AuthError::Malformed));
        assert_eq!(check(&line[..LINE_LEN - 1], &good), Err(AuthError::Malformed), "no newline");
        let mut bad_char = line.clone();
        bad_char[PREFIX.len()] = b'z';
        assert_eq!(check(&bad_char, &good), Err(AuthError::Malformed));
    }

    #[test]
    fn sniff_finds_the_line_and_leaves_the_rest() {
        let line = secret(3).line();
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(b"SKIFF-AU"), Sniff::NeedMore);
        assert_eq!(sniff(&line[..40]), Sniff::NeedMore);
        assert_eq!(sniff(&line), Sniff::Line(LINE_LEN));
        let mut more = line.clone();
        more.extend_from_slice(b"SKIFF-FRAMES/1\n");
        assert_eq!(sniff(&more), Sniff::Line(LINE_LEN));
        assert_eq!(sniff(b"GET /_ping HTTP/1.0\r\n"), Sniff::NotAuth);
        assert_eq!(sniff(b"SKIFF-FRAMES/1\n"), Sniff::NotAuth);
        assert_eq!(sniff(b"SKIFF-CONTROL/1 logs\n"), Sniff::NotAuth);
        assert_eq!(sniff(b"SKIFF-AUTH/1 short\nrest"), Sniff::Line(19));
        assert_eq!(sniff(&[b"SKIFF-AUTH/1 ".as_slice(), &[b'a'; 100]].concat()), Sniff::Line(LINE_LEN), "over-long");
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn refusal_lines_round_trip() {
        let line = refusal_line("wrong secret");
        assert_eq!(line, "skiff: refused: wrong secret\n");
        assert_eq!(parse_refusal(line.as_bytes()).as_deref(), Some("wrong secret"));
        assert_eq!(parse_refusal(b"[ 1.0] init"), None);
    }
}
