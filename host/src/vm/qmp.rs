//! QEMU's machine protocol (QMP) on a unix socket in the state folder: the
//! power button today. QMP instead of the human monitor: a fixed JSON
//! grammar, and no way to type arbitrary monitor commands at the VM.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What can go wrong talking to QEMU, for callers to decide on.
#[derive(Debug)]
pub enum QmpError {
    /// Nothing answers on the socket: QEMU has exited, or is exiting.
    Unreachable { path: PathBuf, error: io::Error },
    /// Something else answers on the socket.
    NotQmp { path: PathBuf, greeting: String },
    /// QEMU answered the command with an error.
    Refused { command: String, reply: String },
    /// The connection failed midway (closed, timed out, garbled).
    Io(io::Error),
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Unreachable { path, error } => {
                write!(f, "QEMU does not answer on {} ({error}): it has exited or is exiting; `skiff status` says whether the VM runs", path.display())
            }
            QmpError::NotQmp { path, greeting } => write!(
                f,
                "{} is not QEMU's QMP socket (it said {:?}); `skiff stop`, then `skiff start` again",
                path.display(),
                greeting.chars().take(80).collect::<String>()
            ),
            QmpError::Refused { command, reply } => write!(f, "QEMU refused {command}: {reply}"),
            QmpError::Io(e) => write!(f, "the QMP connection to QEMU failed ({e}); try again"),
        }
    }
}

impl std::error::Error for QmpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QmpError::Unreachable { error, .. } | QmpError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for QmpError {
    fn from(e: io::Error) -> QmpError {
        QmpError::Io(e)
    }
}

/// Kept inside, so a caller holding an `io::Error` can still match it.
impl From<QmpError> for io::Error {
    fn from(e: QmpError) -> io::Error {
        io::Error::other(e)
    }
}

/// A QMP session past the capabilities handshake.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects and negotiates (greeting, then `qmp_capabilities`).
    pub fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path).map_err(|error| QmpError::Unreachable { path: path.to_path_buf(), error })?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        let greeting = qmp.line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(QmpError::NotQmp { path: path.to_path_buf(), greeting });
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    /// Runs a command without arguments; returns its `return` line.
    pub fn execute(&mut self, command: &str) -> Result<String, QmpError> {
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
pub fn read_reply(r: &mut impl BufRead, command: &str) -> Result<String, QmpError> {
    loop {
        let line = read_line(r)?;
        match reply_kind(&line) {
            Reply::Return => return Ok(line),
            Reply::Error => return Err(QmpError::Refused { command: command.to_string(), reply: line }),
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
pub fn powerdown(path: &Path) -> Result<(), QmpError> {
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
        assert!(matches!(&err, QmpError::Io(e) if e.kind() == io::ErrorKind::InvalidData), "{err}");
        let longest = [vec![b' '; MAX_LINE as usize - 15], b"{\"return\": {}}\n".to_vec()].concat();
        assert_eq!(read_reply(&mut io::Cursor::new(longest), "x").unwrap().trim_start(), "{\"return\": {}}", "a line of MAX_LINE bytes is read");
    }

    #[test]
    fn a_gone_qemu_a_stranger_and_a_refusal_are_told_apart() {
        let path = std::env::temp_dir().join(format!("skiff-qmp-gone-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(matches!(powerdown(&path), Err(QmpError::Unreachable { .. })));
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"SSH-2.0-OpenSSH\n").unwrap();
        });
        assert!(matches!(powerdown(&path), Err(QmpError::NotQmp { .. })));
        server.join().unwrap();
        std::fs::remove_file(&path).unwrap();
        let refusal = b"{\"event\": \"X\"}\n{\"error\": {\"class\": \"GenericError\"}}\n";
        assert!(matches!(read_reply(&mut io::Cursor::new(&refusal[..]), "stop"), Err(QmpError::Refused { command, .. }) if command == "stop"));
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
