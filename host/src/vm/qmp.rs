//! QEMU's machine protocol (QMP) on a unix socket in the state folder: the
//! power button today. QMP instead of the human monitor: a fixed JSON
//! grammar, and no way to type arbitrary monitor commands at the VM.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A QMP session past the capabilities handshake.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects and negotiates (greeting, then `qmp_capabilities`).
    pub fn connect(path: &Path) -> io::Result<Qmp> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        let greeting = qmp.line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(io::Error::other(format!("not a QMP socket: {greeting}")));
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    /// Runs a command without arguments; returns its `return` line.
    pub fn execute(&mut self, command: &str) -> io::Result<String> {
        self.writer.write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())?;
        read_reply(&mut self.reader, command)
    }

    fn line(&mut self) -> io::Result<String> {
        read_line(&mut self.reader)
    }
}

/// Longest QMP line read: QEMU's greeting, replies and events are short;
/// whatever answers on the socket must not fill memory with an endless line.
const MAX_LINE: u64 = 64 * 1024;

/// Reads the answer to `command`, just sent: its `return` line, or an
/// error for its `error` line; events before it are skipped.
pub fn read_reply(r: &mut impl BufRead, command: &str) -> io::Result<String> {
    loop {
        let line = read_line(r)?;
        match reply_kind(&line) {
            Reply::Return => return Ok(line),
            Reply::Error => return Err(io::Error::other(format!("QMP {command}: {line}"))),
            Reply::Event => continue,
        }
    }
}

/// One line, without its line end, of at most [`MAX_LINE`] bytes.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if r.take(MAX_LINE + 1).read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QMP socket closed"));
    }
    if line.len() as u64 > MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a QMP line longer than {MAX_LINE} bytes")));
    }
    let line = String::from_utf8(line).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a QMP line that is not UTF-8"))?;
    Ok(line.trim_end().to_string())
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Return,
    Error,
    Event,
}

/// QMP answers a command with `{"return": ...}` or `{"error": ...}`; other
/// lines are asynchronous events.
fn reply_kind(line: &str) -> Reply {
    let head = line.trim_start_matches(['{', ' ']);
    if head.starts_with("\"return\"") {
        Reply::Return
    } else if head.starts_with("\"error\"") {
        Reply::Error
    } else {
        Reply::Event
    }
}

/// The name of the event on a QMP event line (`{"event": "RESUME", ...}`).
pub fn event_name(line: &str) -> Option<&str> {
    let rest = &line[line.find("\"event\"")? + 7..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(name, _)| name)
}

impl Qmp {
    /// The next line QEMU sends (an event, once negotiated); a read timeout
    /// comes back as an error of kind `WouldBlock` or `TimedOut`.
    pub fn next_line(&mut self, timeout: Duration) -> io::Result<String> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        self.line()
    }
}

/// Presses the VM's ACPI power button.
pub fn powerdown(path: &Path) -> io::Result<()> {
    Qmp::connect(path)?.execute("system_powerdown").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn event_names() {
        assert_eq!(event_name(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#), Some("RESUME"));
        assert_eq!(event_name(r#"{"event":"STOP","timestamp":{}}"#), Some("STOP"));
        assert_eq!(event_name(r#"{"return": {}}"#), None);
        assert_eq!(event_name(r#"{"event": 5}"#), None);
        assert_eq!(event_name(r#"{"event": "UNTERMINATED"#), None);
    }

    #[test]
    fn classifies_replies() {
        assert_eq!(reply_kind(r#"{"return": {}}"#), Reply::Return);
        assert_eq!(reply_kind(r#"{"error": {"class": "GenericError", "desc": "x"}}"#), Reply::Error);
        assert_eq!(reply_kind(r#"{"timestamp": {"seconds": 1}, "event": "POWERDOWN"}"#), Reply::Event);
    }

    #[test]
    fn an_endless_line_is_refused_not_stored() {
        let endless = vec![b'x'; MAX_LINE as usize * 4];
        let err = read_reply(&mut io::Cursor::new(endless), "system_powerdown").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let longest = [vec![b' '; MAX_LINE as usize - 15], b"{\"return\": {}}\n".to_vec()].concat();
        assert_eq!(read_reply(&mut io::Cursor::new(longest), "x").unwrap().trim_start(), "{\"return\": {}}", "a line of MAX_LINE bytes is read");
    }

    /// A scripted QMP server: greeting, capabilities, an event, then the reply.
    #[test]
    fn powerdown_speaks_qmp_and_skips_events() {
        let path = std::env::temp_dir().join(format!("skiff-qmp-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").unwrap();
            let mut got = Vec::new();
            for reply in ["{\"return\": {}}\n", "{\"event\": \"POWERDOWN\"}\n{\"return\": {}}\n"] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                got.push(line);
                w.write_all(reply.as_bytes()).unwrap();
            }
            got
        });
        powerdown(&path).unwrap();
        let got = server.join().unwrap();
        assert_eq!(got, ["{\"execute\":\"qmp_capabilities\"}\n", "{\"execute\":\"system_powerdown\"}\n"]);
        std::fs::remove_file(&path).unwrap();
    }
}
