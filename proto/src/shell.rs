//! Frames of the debug shell (`skiff shell`), after the control request line.
//!
//! Each message is `[u8 tag][u32 big-endian length][payload]`. Unlike a
//! plain byte pipe, this carries window-size changes, the end of the host's
//! stdin (hybrid vsock cannot half-close) and the shell's exit status.

use std::io::{self, Read};

/// Largest payload accepted; bigger lengths mean a corrupt stream.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One shell message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Host → guest, first: the terminal and what to run.
    Start(Start),
    /// Host → guest: bytes for the shell's stdin.
    Stdin(Vec<u8>),
    /// Host → guest: the host's stdin ended.
    StdinEof,
    /// Host → guest: the terminal was resized.
    Resize { rows: u16, cols: u16 },
    /// Guest → host: output (the PTY's, or stdout without a PTY).
    Stdout(Vec<u8>),
    /// Guest → host: stderr (only without a PTY).
    Stderr(Vec<u8>),
    /// Guest → host, last: the exit code (128 + signal number if killed).
    Exit(i32),
}

/// How the host wants the shell run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Start {
    /// Give the shell a PTY (the host's stdin is a terminal).
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
    /// The host's `TERM`, passed on to the shell.
    pub term: String,
    /// `sh -c COMMAND` instead of an interactive shell.
    pub command: Option<String>,
}

const START: u8 = b'S';
const STDIN: u8 = b'D';
const STDIN_EOF: u8 = b'E';
const RESIZE: u8 = b'W';
const STDOUT: u8 = b'O';
const STDERR: u8 = b'R';
const EXIT: u8 = b'X';

fn put(tag: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends `msg` to `out`. Data longer than [`MAX_PAYLOAD`] is split.
pub fn encode(msg: &Msg, out: &mut Vec<u8>) {
    match msg {
        Msg::Start(s) => {
            let term = &s.term.as_bytes()[..s.term.len().min(255)];
            let mut p = Vec::with_capacity(6 + term.len());
            p.extend_from_slice(&s.rows.to_be_bytes());
            p.extend_from_slice(&s.cols.to_be_bytes());
            p.push(u8::from(s.tty) | (u8::from(s.command.is_some()) << 1));
            p.push(term.len() as u8);
            p.extend_from_slice(term);
            if let Some(c) = &s.command {
                p.extend_from_slice(c.as_bytes());
            }
            put(START, &p, out)
        }
        Msg::Stdin(d) | Msg::Stdout(d) | Msg::Stderr(d) => {
            let tag = match msg {
                Msg::Stdin(_) => STDIN,
                Msg::Stdout(_) => STDOUT,
                _ => STDERR,
            };
            if d.is_empty() {
                put(tag, &[], out);
            }
            for chunk in d.chunks(MAX_PAYLOAD) {
                put(tag, chunk, out);
            }
        }
        Msg::StdinEof => put(STDIN_EOF, &[], out),
        Msg::Resize { rows, cols } => put(RESIZE, &[rows.to_be_bytes(), cols.to_be_bytes()].concat(), out),
        Msg::Exit(code) => put(EXIT, &code.to_be_bytes(), out),
    }
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Builds a message from its tag and payload.
pub fn decode(tag: u8, p: Vec<u8>) -> io::Result<Msg> {
    let u16_at = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    Ok(match tag {
        START if p.len() >= 6 && p.len() >= 6 + p[5] as usize => {
            let term_end = 6 + p[5] as usize;
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| invalid("shell start is not UTF-8".into()));
            Msg::Start(Start {
                rows: u16_at(0),
                cols: u16_at(2),
                tty: p[4] & 1 != 0,
                term: text(&p[6..term_end])?,
                command: if p[4] & 2 != 0 { Some(text(&p[term_end..])?) } else { None },
            })
        }
        STDIN => Msg::Stdin(p),
        STDIN_EOF if p.is_empty() => Msg::StdinEof,
        RESIZE if p.len() == 4 => Msg::Resize { rows: u16_at(0), cols: u16_at(2) },
        STDOUT => Msg::Stdout(p),
        STDERR => Msg::Stderr(p),
        EXIT if p.len() == 4 => Msg::Exit(i32::from_be_bytes([p[0], p[1], p[2], p[3]])),
        _ => return Err(invalid(format!("bad shell message (tag {tag:#04x}, {} bytes)", p.len()))),
    })
}

/// Reads the next message; `Ok(None)` when the stream ends between messages.
pub fn read_msg<R: Read>(r: &mut R) -> io::Result<Option<Msg>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a message header")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(invalid(format!("shell message of {len} bytes exceeds {MAX_PAYLOAD}")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    decode(head[0], payload).map(Some)
}

/// The exit code a host process should return for a guest wait status:
/// the exit code, or 128 + the signal number, as shells report it.
pub fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn round_trip(msgs: &[Msg]) -> Vec<Msg> {
        let mut wire = Vec::new();
        for m in msgs {
            encode(m, &mut wire);
        }
        let mut r = Cursor::new(wire);
        let mut out = Vec::new();
        while let Some(m) = read_msg(&mut r).unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = vec![
            Msg::Start(Start { tty: true, rows: 50, cols: 132, term: "xterm-256color".into(), command: None }),
            Msg::Start(Start { tty: false, rows: 0, cols: 0, term: String::new(), command: Some("echo 'hi'; exit 3".into()) }),
            Msg::Start(Start { tty: false, rows: 1, cols: 2, term: "vt100".into(), command: Some(String::new()) }),
            Msg::Stdin(b"ls\r".to_vec()),
            Msg::Stdin(Vec::new()),
            Msg::StdinEof,
            Msg::Resize { rows: 24, cols: 80 },
            Msg::Stdout(b"\x1b[1mhello\r\n".to_vec()),
            Msg::Stderr(b"oops\n".to_vec()),
            Msg::Exit(-1),
            Msg::Exit(137),
        ];
        assert_eq!(round_trip(&msgs), msgs);
    }

    #[test]
    fn long_data_is_split_but_complete() {
        let data = vec![b'x'; MAX_PAYLOAD + 10];
        let got = round_trip(&[Msg::Stdout(data.clone())]);
        assert_eq!(got.len(), 2);
        let joined: Vec<u8> = got.into_iter().flat_map(|m| if let Msg::Stdout(d) = m { d } else { panic!() }).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let err = |bytes: &[u8]| read_msg(&mut Cursor::new(bytes.to_vec())).unwrap_err().kind();
        assert_eq!(err(b"X\0\0"), io::ErrorKind::UnexpectedEof);
        assert_eq!(err(b"X\0\0\0\x04\0"), io::ErrorKind::UnexpectedEof);
        assert_eq!(err(b"X\0\0\0\x03abc"), io::ErrorKind::InvalidData, "exit needs 4 bytes");
        assert_eq!(err(b"?\0\0\0\0"), io::ErrorKind::InvalidData, "unknown tag");
        assert_eq!(err(b"D\xff\xff\xff\xff"), io::ErrorKind::InvalidData, "hostile length");
        assert_eq!(err(b"S\0\0\0\x06\0\x18\0\x50\x01\x09"), io::ErrorKind::InvalidData, "term longer than payload");
        assert!(read_msg(&mut Cursor::new(Vec::new())).unwrap().is_none());
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(Some(3), None), 3);
        assert_eq!(exit_code(None, Some(9)), 137);
        assert_eq!(exit_code(None, None), 255);
    }
}
