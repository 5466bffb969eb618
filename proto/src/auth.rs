//! How a host connection and the guest prove to each other that they hold
//! the per-VM secret, on every guest vsock port, without the secret (or
//! anything a listener could replay) ever crossing the wire:
//!
//! 1. host → guest `SKIFF-AUTH/2 <host nonce>\n`
//! 2. guest → host `SKIFF-AUTH/2 <guest nonce> <guest tag>\n`
//! 3. host → guest `<host tag>\n`, sent only once the guest's tag checked
//!
//! Nonces are 16 random bytes, tags 16 bytes, all in lower-case hex. The
//! guest proves itself first: a peer at the VM's address that does not hold
//! the secret (another local user who took the CID while the VM was down)
//! gets a nonce and nothing else, and the host goes no further. Each tag
//! covers both nonces, so none is good for another connection, and a
//! direction label, so the guest, which answers any nonce a stranger sends,
//! never computes a host tag for it.
//!
//! Kernel AF_VSOCK lets any local user of the host connect to a guest's
//! CID, so the 0600 socket on the host alone protects nothing there. The
//! host CLI generates 32 random bytes per VM into its private state folder
//! and gives them to the guest out of band (QEMU fw_cfg, or config.toml /
//! cidata for other hypervisors).
//!
//! The tag is SipHash-2-4 (`core::hash::SipHasher`, already in the init)
//! keyed with each 128-bit half of the secret, over the label and the
//! nonces: 2 × 64 bits. SipHash is a keyed PRF designed for short-input
//! MACs; here a forger must hit 128 output bits at once, the keys are 256
//! bits, and each connection asks for one tag. An HMAC-SHA-256 crate would
//! cost the size-capped init more than its headroom for no practical gain.

use std::fmt;
use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read, Write};

/// Bytes of secret.
pub const SECRET_LEN: usize = 32;
/// Bytes of a nonce and of a tag.
pub const NONCE_LEN: usize = 16;
/// What the host's challenge and the guest's answer start with.
pub const PREFIX: &[u8] = b"SKIFF-AUTH/2 ";
/// Length of the host's challenge line, `\n` included.
pub const LINE_LEN: usize = PREFIX.len() + 2 * NONCE_LEN + 1;
/// Length of the guest's answer line, `\n` included.
pub const ANSWER_LEN: usize = PREFIX.len() + 4 * NONCE_LEN + 2;
/// Length of the host's proof line, `\n` included.
pub const PROOF_LEN: usize = 2 * NONCE_LEN + 1;
/// How the guest's refusal line starts on ports that do not speak HTTP.
pub const REFUSED: &str = "skiff: refused: ";

/// Labels of the two tags: same length, so label and nonces never run
/// into each other.
const GUEST_TAG: &[u8; 11] = b"guest->host";
const HOST_TAG: &[u8; 11] = b"host->guest";

/// A nonce or a tag.
pub type Nonce = [u8; NONCE_LEN];

/// A per-VM secret. Its `Debug` never shows the bytes, so it cannot leak
/// into a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a handshake line was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// The connection did not start with a challenge line.
    Missing,
    /// A line of the handshake is not of its form.
    Malformed,
    /// The host's tag does not match: it does not hold this secret.
    Wrong,
    /// The guest's tag does not match: whoever answered does not hold the
    /// secret, so nothing more is sent to it.
    Unproven,
    /// A challenge reached a guest that was given no secret.
    NoSecret,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "this VM requires its secret (SKIFF-AUTH/2 handshake) first; use `skiff bridge --secret-file`",
            Self::Malformed => "malformed SKIFF-AUTH/2 line",
            Self::Wrong => "wrong secret",
            Self::Unproven => "the peer did not prove it holds the VM's secret (wrong secret file, or not this VM)",
            Self::NoSecret => "this VM was given no secret; connect without one",
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
        let mut bytes = [0u8; SECRET_LEN];
        unhex(text.trim().as_bytes(), &mut bytes)?;
        Ok(Secret(bytes))
    }

    /// Lower-case hex, 64 digits.
    pub fn to_hex(&self) -> String {
        let mut digits = Vec::new();
        push_hex(&mut digits, &self.0, b'\n');
        digits.pop();
        String::from_utf8_lossy(&digits).into_owned()
    }

    /// Equality in time independent of where the secrets differ.
    pub fn matches(&self, other: &Secret) -> bool {
        constant_time_eq(&self.0, &other.0)
    }

    /// The tag for `label` over both nonces: SipHash-2-4 under each half
    /// of the secret.
    fn tag(&self, label: &[u8; 11], host: &Nonce, guest: &Nonce) -> Nonce {
        let message = [label.as_slice(), host, guest].concat();
        let mut tag = [0u8; NONCE_LEN];
        for (out, key) in tag.chunks_mut(8).zip(self.0.chunks(16)) {
            let k = |i: usize| u64::from_le_bytes(key[i..i + 8].try_into().unwrap_or_default());
            #[allow(deprecated)] // SipHasher is SipHash-2-4, deprecated only as a HashMap hasher; stable
            let mut h = std::hash::SipHasher::new_with_keys(k(0), k(8));
            h.write(&message);
            out.copy_from_slice(&h.finish().to_le_bytes());
        }
        tag
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

/// Fills `out` from exactly `2 * out.len()` hex digits.
fn unhex(digits: &[u8], out: &mut [u8]) -> Result<(), AuthError> {
    if digits.len() != 2 * out.len() {
        return Err(AuthError::Malformed);
    }
    for (b, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *b = (hex_digit(pair[0]).ok_or(AuthError::Malformed)? << 4) | hex_digit(pair[1]).ok_or(AuthError::Malformed)?;
    }
    Ok(())
}

/// Appends `bytes` as lower-case hex digits, then `end`.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8], end: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    out.push(end);
}

/// Compares every byte whatever the first difference (lengths are public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// 16 bytes from the kernel's random source (never blocks once booted).
pub fn nonce() -> io::Result<Nonce> {
    let mut n = [0u8; NONCE_LEN];
    File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

/// The host's first line.
pub fn challenge(host: &Nonce) -> Vec<u8> {
    let mut line = PREFIX.to_vec();
    push_hex(&mut line, host, b'\n');
    line
}

/// The host's nonce in a complete challenge line (guest side).
pub fn parse_challenge(line: &[u8]) -> Result<Nonce, AuthError> {
    let body = line.strip_prefix(PREFIX).ok_or(AuthError::Missing)?;
    let mut host = [0u8; NONCE_LEN];
    unhex(body.strip_suffix(b"\n").ok_or(AuthError::Malformed)?, &mut host)?;
    Ok(host)
}

/// The guest's answer to the host's nonce: its own nonce and its tag.
pub fn answer(secret: &Secret, host: &Nonce, guest: &Nonce) -> Vec<u8> {
    let mut line = PREFIX.to_vec();
    push_hex(&mut line, guest, b' ');
    push_hex(&mut line, &secret.tag(GUEST_TAG, host, guest), b'\n');
    line
}

/// Checks the guest's answer line (host side, `\n` included); its proof
/// line, to send only then.
pub fn check_answer(line: &[u8], secret: &Secret, host: &Nonce) -> Result<Vec<u8>, AuthError> {
    let body = line.strip_prefix(PREFIX).and_then(|b| b.strip_suffix(b"\n")).ok_or(AuthError::Malformed)?;
    let (mut guest, mut tag) = ([0u8; NONCE_LEN], [0u8; NONCE_LEN]);
    if body.len() != 4 * NONCE_LEN + 1 || body[2 * NONCE_LEN] != b' ' {
        return Err(AuthError::Malformed);
    }
    unhex(&body[..2 * NONCE_LEN], &mut guest)?;
    unhex(&body[2 * NONCE_LEN + 1..], &mut tag)?;
    if !constant_time_eq(&tag, &secret.tag(GUEST_TAG, host, &guest)) {
        return Err(AuthError::Unproven);
    }
    let mut proof = Vec::new();
    push_hex(&mut proof, &secret.tag(HOST_TAG, host, &guest), b'\n');
    Ok(proof)
}

/// Checks the host's proof line (guest side, `\n` included).
pub fn check_proof(line: &[u8], secret: &Secret, host: &Nonce, guest: &Nonce) -> Result<(), AuthError> {
    let mut tag = [0u8; NONCE_LEN];
    unhex(line.strip_suffix(b"\n").ok_or(AuthError::Malformed)?, &mut tag)?;
    if constant_time_eq(&tag, &secret.tag(HOST_TAG, host, guest)) { Ok(()) } else { Err(AuthError::Wrong) }
}

/// The host's side of the handshake on a fresh connection `s`: nothing
/// else is sent before the guest has proved it holds `secret`. A refusal
/// from the guest (a `skiff: refused:` line, or an HTTP answer carrying
/// one) is `PermissionDenied` with its reason; a guest that does not prove
/// itself is `PermissionDenied` with [`AuthError::Unproven`]. The caller
/// bounds the wait with a read timeout.
pub fn authenticate<S: Read + Write>(s: &mut S, secret: &Secret, host: &Nonce) -> io::Result<()> {
    // A guest that turns every connection away answers and closes without
    // reading, so the challenge can meet a closed socket; its refusal may
    // still be waiting to be read, and it says more than the broken pipe.
    let sent = s.write_all(&challenge(host));
    let mut line = match (sent, crate::read_line(s, 1024)) {
        (_, Ok(line)) if line.starts_with(REFUSED.as_bytes()) || line.starts_with(b"HTTP/") => line,
        (Err(e), _) => return Err(e),
        (Ok(()), read) => read?,
    };
    line.push(b'\n');
    let denied = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    if !line.starts_with(PREFIX) {
        // A refusal: the line itself, or an HTTP answer whose body is one.
        let mut rest = Vec::new();
        let _ = s.take(2048).read_to_end(&mut rest);
        line.extend_from_slice(&rest);
        let at = line.windows(REFUSED.len()).position(|w| w == REFUSED.as_bytes());
        let why = at.and_then(|i| parse_refusal(&line[i..])).unwrap_or_else(|| AuthError::Malformed.to_string());
        let why: String = why.chars().filter(|c| !c.is_control()).collect();
        return Err(denied(format!("the guest refused: {why}")));
    }
    let proof = check_answer(&line, secret, host).map_err(|e| denied(e.to_string()))?;
    s.write_all(&proof)
}

/// What the first bytes of a connection say about a challenge line.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// They do not start a challenge line.
    NotAuth,
    /// They are the start of one; wait for more.
    NeedMore,
    /// A challenge line (well-formed or not) of this many bytes, `\n`
    /// included; a line that runs past [`LINE_LEN`] counts as [`LINE_LEN`] bytes.
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

    const HOST: Nonce = [0x11; NONCE_LEN];
    const GUEST: Nonce = [0x22; NONCE_LEN];

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

    /// The whole exchange between two holders of the secret.
    #[test]
    fn holders_of_the_secret_admit_each_other() {
        let s = Secret::from_bytes(std::array::from_fn(|i| i as u8));
        let line = challenge(&HOST);
        assert_eq!(line.len(), LINE_LEN);
        assert_eq!(sniff(&line), Sniff::Line(LINE_LEN));
        let host = parse_challenge(&line).unwrap();
        let answer = answer(&s, &host, &GUEST);
        assert_eq!(answer.len(), ANSWER_LEN);
        let proof = check_answer(&answer, &s, &HOST).unwrap();
        assert_eq!(proof.len(), PROOF_LEN);
        assert_eq!(check_proof(&proof, &s, &HOST, &GUEST), Ok(()));
    }

    #[test]
    fn the_secret_itself_never_crosses_the_wire() {
        let s = secret(0x5c);
        let wire = [challenge(&HOST), answer(&s, &HOST, &GUEST), check_answer(&answer(&s, &HOST, &GUEST), &s, &HOST).unwrap()].concat();
        let text = String::from_utf8(wire).unwrap();
        assert!(!text.contains(&s.to_hex()) && !text.contains(&s.to_hex()[..32]) && !text.contains(&s.to_hex()[32..]), "{text}");
    }

    #[test]
    fn a_wrong_secret_is_caught_in_both_directions() {
        let (good, bad) = (secret(1), secret(2));
        // A guest with another secret: the host sends no proof.
        assert_eq!(check_answer(&answer(&bad, &HOST, &GUEST), &good, &HOST), Err(AuthError::Unproven));
        // A host with another secret (it cannot get this far against a
        // real host, but a stranger may send any proof line).
        let bad_proof = check_answer(&answer(&bad, &HOST, &GUEST), &bad, &HOST).unwrap();
        assert_eq!(check_proof(&bad_proof, &good, &HOST, &GUEST), Err(AuthError::Wrong));
        // A secret one bit off.
        let mut near = [1u8; SECRET_LEN];
        near[31] ^= 1;
        assert_eq!(check_answer(&answer(&Secret::from_bytes(near), &HOST, &GUEST), &good, &HOST), Err(AuthError::Unproven));
    }

    #[test]
    fn a_recorded_tag_is_good_for_no_other_connection() {
        let s = secret(3);
        // A guest answer recorded on one connection, replayed to a host that chose another nonce.
        let recorded = answer(&s, &HOST, &GUEST);
        assert_eq!(check_answer(&recorded, &s, &[0x12; NONCE_LEN]), Err(AuthError::Unproven));
        // A host proof recorded on one connection, replayed to a guest that chose another nonce.
        let proof = check_answer(&recorded, &s, &HOST).unwrap();
        assert_eq!(check_proof(&proof, &s, &HOST, &[0x23; NONCE_LEN]), Err(AuthError::Wrong));
        assert_eq!(check_proof(&proof, &s, &[0x12; NONCE_LEN], &GUEST), Err(AuthError::Wrong));
    }

    #[test]
    fn the_guest_is_no_oracle_for_host_tags() {
        // A stranger sends the guest a challenge and gets its tag; sent back
        // as a proof (or with nonces swapped) it is refused.
        let s = secret(4);
        let answer = answer(&s, &HOST, &GUEST);
        let guest_tag = &answer[PREFIX.len() + 2 * NONCE_LEN + 1..];
        assert_eq!(guest_tag.len(), PROOF_LEN);
        assert_eq!(check_proof(guest_tag, &s, &HOST, &GUEST), Err(AuthError::Wrong), "same nonces, other direction");
        let swapped = self::answer(&s, &GUEST, &HOST);
        let swapped_tag = &swapped[PREFIX.len() + 2 * NONCE_LEN + 1..];
        assert_eq!(check_proof(swapped_tag, &s, &HOST, &GUEST), Err(AuthError::Wrong), "nonces swapped");
        assert_ne!(s.tag(GUEST_TAG, &HOST, &GUEST), s.tag(HOST_TAG, &HOST, &GUEST));
    }

    #[test]
    fn truncated_and_malformed_lines_are_refused() {
        let s = secret(5);
        let line = challenge(&HOST);
        assert_eq!(parse_challenge(b"GET / HTTP/1.1\r\n"), Err(AuthError::Missing));
        assert_eq!(parse_challenge(b"SKIFF-AUTH/1 abc\n"), Err(AuthError::Missing), "the old version");
        assert_eq!(parse_challenge(&line[..LINE_LEN - 1]), Err(AuthError::Malformed), "no newline");
        assert_eq!(parse_challenge(&[&line[..LINE_LEN - 2], b"\n"].concat()), Err(AuthError::Malformed), "a digit short");
        assert_eq!(parse_challenge(&[&line[..PREFIX.len()], &[b'z'; 32], b"\n"].concat()), Err(AuthError::Malformed));
        let good = answer(&s, &HOST, &GUEST);
        for cut in [0, PREFIX.len(), PREFIX.len() + 32, ANSWER_LEN - 2, ANSWER_LEN - 1] {
            assert_eq!(check_answer(&good[..cut], &s, &HOST), Err(AuthError::Malformed), "answer cut at {cut}");
        }
        let mut no_space = good.clone();
        no_space[PREFIX.len() + 32] = b'0';
        assert_eq!(check_answer(&no_space, &s, &HOST), Err(AuthError::Malformed));
        assert_eq!(check_answer(b"skiff: refused: wrong secret\n", &s, &HOST), Err(AuthError::Malformed));
        let proof = check_answer(&good, &s, &HOST).unwrap();
        assert_eq!(check_proof(&proof[..PROOF_LEN - 1], &s, &HOST, &GUEST), Err(AuthError::Malformed), "no newline");
        assert_eq!(check_proof(&proof[1..], &s, &HOST, &GUEST), Err(AuthError::Malformed), "a digit short");
        assert_eq!(check_proof(b"\n", &s, &HOST, &GUEST), Err(AuthError::Malformed));
        assert_eq!(check_proof(&[b'x'; PROOF_LEN], &s, &HOST, &GUEST), Err(AuthError::Malformed));
    }

    #[test]
    fn sniff_finds_the_line_and_leaves_the_rest() {
        let line = challenge(&HOST);
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(b"SKIFF-AU"), Sniff::NeedMore);
        assert_eq!(sniff(&line[..30]), Sniff::NeedMore);
        assert_eq!(sniff(&line), Sniff::Line(LINE_LEN));
        assert_eq!(sniff(&[line.as_slice(), b"0123"].concat()), Sniff::Line(LINE_LEN));
        assert_eq!(sniff(b"GET /_ping HTTP/1.0\r\n"), Sniff::NotAuth);
        assert_eq!(sniff(b"SKIFF-AUTH/1 abc\n"), Sniff::NotAuth, "the old version");
        assert_eq!(sniff(b"SKIFF-CONTROL/1 logs\n"), Sniff::NotAuth);
        assert_eq!(sniff(b"SKIFF-AUTH/2 short\nrest"), Sniff::Line(19));
        assert_eq!(sniff(&[PREFIX, &[b'a'; 100]].concat()), Sniff::Line(LINE_LEN), "over-long");
    }

    /// One end of a socket pair standing in for the guest, scripted.
    fn host_against(guest: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static, s: &Secret) -> io::Result<()> {
        let (mut host, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let g = std::thread::spawn(move || guest(peer));
        let r = authenticate(&mut host, s, &HOST);
        drop(host);
        g.join().unwrap();
        r
    }

    #[test]
    fn authenticate_reports_the_guests_refusal_and_answers_a_real_guest() {
        let s = secret(6);
        let r = host_against(|mut g| {
            let mut line = [0u8; LINE_LEN];
            g.read_exact(&mut line).unwrap();
            g.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 29\r\n\r\nskiff: refused: wrong secret\n").unwrap();
        }, &s);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "the guest refused: wrong secret");
        let r = host_against(|mut g| {
            let mut line = [0u8; LINE_LEN];
            g.read_exact(&mut line).unwrap();
            g.write_all(b"skiff: refused: \x1b[2Jtoo many\n").unwrap();
        }, &s);
        assert_eq!(r.unwrap_err().to_string(), "the guest refused: [2Jtoo many", "no terminal escapes from the peer");
        // A guest that refuses and closes before the challenge is written.
        let (mut host, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        peer.write_all(b"skiff: refused: shut\n").unwrap();
        drop(peer);
        let e = authenticate(&mut host, &s, &HOST).unwrap_err();
        assert_eq!(e.to_string(), "the guest refused: shut", "the refusal, not the broken pipe");
        let g = s.clone();
        let r = host_against(move |mut peer| {
            let mut line = [0u8; LINE_LEN];
            peer.read_exact(&mut line).unwrap();
            let host = parse_challenge(&line).unwrap();
            peer.write_all(&answer(&g, &host, &GUEST)).unwrap();
            let mut proof = [0u8; PROOF_LEN];
            peer.read_exact(&mut proof).unwrap();
            assert_eq!(check_proof(&proof, &g, &host, &GUEST), Ok(()));
        }, &s);
        r.unwrap();
    }

    #[test]
    fn the_prf_is_siphash_2_4() {
        // The reference vector of the SipHash paper (appendix A).
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(0x0706050403020100, 0x0f0e0d0c0b0a0908);
        h.write(&std::array::from_fn::<u8, 15, _>(|i| i as u8));
        assert_eq!(h.finish(), 0xa129ca6149be45e5);
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }

    #[test]
    fn refusal_lines_round_trip() {
        let line = refusal_line("wrong secret");
        assert_eq!(line, "skiff: refused: wrong secret\n");
        assert_eq!(parse_refusal(line.as_bytes()).as_deref(), Some("wrong secret"));
        assert_eq!(parse_refusal(b"[ 1.0] init"), None);
    }
}
