//! A minimal HTTP/1.1 client reader for the engine's API on its unix socket:
//! response head, body framing (chunked, Content-Length or until close) and
//! newline-delimited JSON streams (`GET /events`). Pure byte handling with
//! bounded sizes, so the engine (or anything on its socket) cannot make PID 1
//! allocate without limit; the socket I/O is in [`get`] and [`Stream`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest chunk-size line (hex size plus extensions).
const MAX_CHUNK_LINE: usize = 256;

/// Why a response could not be read.
#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The head is not HTTP, or longer than [`MAX_HEAD`].
    BadHead(&'static str),
    /// The status was not 200.
    Status(u16),
    /// The chunked framing is broken.
    BadChunk(&'static str),
    /// The body (or one line of it) is longer than the caller allows.
    TooLong,
    /// The connection ended before the body did.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::BadHead(why) => write!(f, "bad response head: {why}"),
            Error::Status(code) => write!(f, "status {code}"),
            Error::BadChunk(why) => write!(f, "bad chunked body: {why}"),
            Error::TooLong => write!(f, "response too long"),
            Error::Truncated => write!(f, "response truncated"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

/// The parts of a response head the client needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
}

/// The request for `path` (HTTP/1.1; the server closes after the response).
pub fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n")
}

/// Index just past the blank line ending the head, if `buf` holds it all.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a complete response head (status line and headers).
pub fn parse_head(head: &[u8]) -> Result<Head, Error> {
    let text = std::str::from_utf8(head).map_err(|_| Error::BadHead("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
        return Err(Error::BadHead("not an HTTP/1 status line"));
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or(Error::BadHead("no status code"))?;
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            framing = Framing::Length(value.parse().map_err(|_| Error::BadHead("bad Content-Length"))?);
        }
    }
    Ok(Head { status, framing })
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size line.
    Size,
    /// This many data bytes left in the chunk.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last (empty) chunk: trailer lines until a blank one.
    Trailer,
    Done,
}

/// Turns body bytes as they arrive into payload bytes.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    chunk: Chunk,
    line: Vec<u8>,
    /// Body bytes seen (for Content-Length).
    seen: usize,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        Decoder { framing, chunk: Chunk::Size, line: Vec::new(), seen: 0 }
    }

    /// True once the body is complete (never for [`Framing::UntilClose`]).
    pub fn done(&self) -> bool {
        match self.framing {
            Framing::Chunked => self.chunk == Chunk::Done,
            Framing::Length(n) => self.seen >= n,
            Framing::UntilClose => false,
        }
    }

    /// Called when the connection ended: was the body complete?
    pub fn finish(&self) -> Result<(), Error> {
        match self.framing {
            Framing::UntilClose => Ok(()),
            _ if self.done() => Ok(()),
            _ => Err(Error::Truncated),
        }
    }

    /// Decodes `input`, appending payload to `out`; bytes after the end of
    /// the body are ignored.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match self.framing {
            Framing::UntilClose => {
                out.extend_from_slice(input);
                return Ok(());
            }
            Framing::Length(n) => {
                let take = input.len().min(n - self.seen.min(n));
                out.extend_from_slice(&input[..take]);
                self.seen += take;
                return Ok(());
            }
            Framing::Chunked => {}
        }
        while !input.is_empty() {
            match self.chunk {
                Chunk::Done => return Ok(()),
                Chunk::Size | Chunk::Trailer | Chunk::DataEnd => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        self.push_line(input)?;
                        return Ok(());
                    };
                    self.push_line(&input[..nl])?;
                    input = &input[nl + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.chunk = match self.chunk {
                        Chunk::DataEnd if line.is_empty() => Chunk::Size,
                        Chunk::DataEnd => return Err(Error::BadChunk("no CRLF after chunk data")),
                        Chunk::Trailer if line.is_empty() => Chunk::Done,
                        Chunk::Trailer => Chunk::Trailer,
                        _ => match chunk_size(line)? {
                            0 => Chunk::Trailer,
                            n => Chunk::Data(n),
                        },
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.chunk = if take == left { Chunk::DataEnd } else { Chunk::Data(left - take) };
                }
            }
        }
        Ok(())
    }

    fn push_line(&mut self, part: &[u8]) -> Result<(), Error> {
        if self.line.len() + part.len() > MAX_CHUNK_LINE {
            return Err(Error::BadChunk("over-long size or trailer line"));
        }
        self.line.extend_from_slice(part);
        Ok(())
    }
}

/// The size on a chunk-size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<usize, Error> {
    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
    let hex = std::str::from_utf8(hex).map_err(|_| Error::BadChunk("size not ASCII"))?.trim();
    if hex.is_empty() || hex.len() > 8 {
        return Err(Error::BadChunk("bad size"));
    }
    usize::from_str_radix(hex, 16).map_err(|_| Error::BadChunk("size not hex"))
}

/// Splits a byte stream into `\n`-terminated lines of at most `max` bytes.
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    max: usize,
}

impl Lines {
    pub fn new(max: usize) -> Self {
        Lines { buf: Vec::new(), max }
    }

    /// Adds `input`; returns the lines it completed (without `\n`, blank
    /// lines skipped). A line longer than `max` is an error.
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let mut lines = Vec::new();
        for part in input.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match part.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (part, false),
            };
            if self.buf.len() + body.len() > self.max {
                self.buf.clear();
                return Err(Error::TooLong);
            }
            self.buf.extend_from_slice(body);
            if complete {
                let line = std::mem::take(&mut self.buf);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    lines.push(line);
                }
            }
        }
        Ok(lines)
    }
}

/// Every [`Stream`] still open, so the shutdown can end them: the engine,
/// told to stop, waits up to a second for open requests, and the init's
/// own event followers would otherwise be those requests.
static OPEN: Mutex<Vec<Weak<UnixStream>>> = Mutex::new(Vec::new());

/// Ends every open [`Stream`] (their readers see the end of the body).
/// Called before the engine is told to stop.
pub fn close_streams() {
    let open = std::mem::take(&mut *OPEN.lock().unwrap_or_else(|e| e.into_inner()));
    for sock in open.iter().filter_map(Weak::upgrade) {
        let _ = sock.shutdown(Shutdown::Both);
    }
}

/// A response being read from the engine's socket.
pub struct Stream {
    sock: Arc<UnixStream>,
    decoder: Decoder,
    /// Payload decoded but not yet handed out.
    pending: Vec<u8>,
}

impl Stream {
    /// Sends `GET path` to the unix socket `socket` and reads the head
    /// (reads waiting at most 10 s, or `timeout` if longer: an engine
    /// answers a healthcheck once it has run); reads of the body time out
    /// after `timeout` (so a caller can do periodic work).
    pub fn open(socket: &str, path: &str, timeout: Duration) -> Result<Stream, Error> {
        let mut sock = UnixStream::connect(socket)?;
        sock.set_read_timeout(Some(timeout.max(Duration::from_secs(10))))?;
        sock.set_write_timeout(Some(Duration::from_secs(5)))?;
        sock.write_all(request(path).as_bytes())?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                return Err(Error::Truncated);
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head_end(&head) {
                break end;
            }
            if head.len() > MAX_HEAD {
                return Err(Error::BadHead("too long"));
            }
        };
        sock.set_read_timeout(Some(timeout))?;
        let parsed = parse_head(&head[..end])?;
        if parsed.status != 200 {
            return Err(Error::Status(parsed.status));
        }
        let mut decoder = Decoder::new(parsed.framing);
        let mut pending = Vec::new();
        decoder.feed(&head[end..], &mut pending)?;
        let sock = Arc::new(sock);
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|s| s.strong_count() > 0);
        open.push(Arc::downgrade(&sock));
        Ok(Stream { sock, decoder, pending })
    }

    /// The next piece of payload; `Ok(None)` at the end of the body. A read
    /// timeout comes back as an `Io` error of kind `WouldBlock`/`TimedOut`.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let mut buf = [0u8; 8192];
        while self.pending.is_empty() {
            if self.decoder.done() {
                return Ok(None);
            }
            let n = (&*self.sock).read(&mut buf)?;
            if n == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
            self.decoder.feed(&buf[..n], &mut self.pending)?;
        }
        Ok(Some(std::mem::take(&mut self.pending)))
    }
}

/// `GET path` on the unix socket `socket`: the whole body, at most `max` bytes.
pub fn get(socket: &str, path: &str, max: usize, timeout: Duration) -> Result<Vec<u8>, Error> {
    let mut stream = Stream::open(socket, path, timeout)?;
    let mut body = Vec::new();
    while let Some(piece) = stream.next()? {
        if body.len() + piece.len() > max {
            return Err(Error::TooLong);
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// True if `e` is a read timeout rather than a failure.
pub fn is_timeout(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(framing: Framing, wire: &[u8], piece: usize) -> (Vec<u8>, Decoder) {
        let mut d = Decoder::new(framing);
        let mut out = Vec::new();
        for p in wire.chunks(piece) {
            d.feed(p, &mut out).unwrap();
        }
        (out, d)
    }

    #[test]
    fn parses_heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(h, Head { status: 200, framing: Framing::Chunked });
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n").unwrap();
        assert_eq!(h, Head { status: 404, framing: Framing::Length(12) });
        assert_eq!(parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().framing, Framing::UntilClose);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn decodes_chunked_bodies_in_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\nignored";
        for piece in 1..wire.len() {
            let (out, d) = decode_in_pieces(Framing::Chunked, wire, piece);
            assert_eq!(out, b"hello, world", "split every {piece} bytes");
            assert!(d.done());
            assert!(d.finish().is_ok());
        }
    }

    #[test]
    fn chunked_errors_and_truncation() {
        let mut out = Vec::new();
        assert!(Decoder::new(Framing::Chunked).feed(b"zz\r\n", &mut out).is_err());
        assert!(Decoder::new(Framing::Chunked).feed(b"3\r\nabcX\r\n", &mut out).is_err());
        assert!(Decoder::new(Framing::Chunked).feed(b"fffffffff\r\n", &mut out).is_err());
        assert!(Decoder::new(Framing::Chunked).feed(&[b'1'; 300], &mut out).is_err());
        let (_, d) = decode_in_pieces(Framing::Chunked, b"5\r\nhel", 3);
        assert!(!d.done());
        assert!(matches!(d.finish(), Err(Error::Truncated)));
    }

    #[test]
    fn length_and_close_bodies() {
        let (out, d) = decode_in_pieces(Framing::Length(5), b"hello extra", 2);
        assert_eq!(out, b"hello");
        assert!(d.done());
        let (out, d) = decode_in_pieces(Framing::UntilClose, b"all of it", 4);
        assert_eq!(out, b"all of it");
        assert!(!d.done() && d.finish().is_ok());
        let (_, d) = decode_in_pieces(Framing::Length(5), b"hel", 1);
        assert!(matches!(d.finish(), Err(Error::Truncated)));
    }

    #[test]
    fn splits_event_lines() {
        let mut l = Lines::new(16);
        assert_eq!(l.push(b"{\"a\":1}\n{\"b\"").unwrap(), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(l.push(b":2}\n\n  \n").unwrap(), vec![b"{\"b\":2}".to_vec()]);
        assert!(l.push(b"").unwrap().is_empty());
        assert!(matches!(l.push(&[b'x'; 17]), Err(Error::TooLong)));
        // After an over-long line the splitter starts afresh.
        assert_eq!(l.push(b"ok\n").unwrap(), vec![b"ok".to_vec()]);
    }

    #[test]
    fn random_input_never_panics() {
        // A deterministic xorshift: mutated and random chunked bodies.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = b"4\r\nabcd\r\n0\r\n\r\n".to_vec();
        for _ in 0..5000 {
            let mut wire = base.clone();
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % wire.len();
                wire[i] = rnd() as u8;
            }
            let mut d = Decoder::new(Framing::Chunked);
            let mut out = Vec::new();
            let _ = d.feed(&wire, &mut out);
            assert!(out.len() <= wire.len());
            let _ = parse_head(&wire);
            let _ = Lines::new(8).push(&wire);
        }
    }

    #[test]
    fn close_streams_ends_a_stream_the_engine_keeps_open() {
        use std::os::unix::net::UnixListener;
        let path = std::env::temp_dir().join(format!("skiff-http-close-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::scope(|s| {
            // An engine that answers the head of an event stream, then holds it open.
            let engine = s.spawn(|| {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
                let _ = conn.read(&mut buf); // returns once the init's side is shut
                conn
            });
            let mut stream = Stream::open(path.to_str().unwrap(), "/events", Duration::from_secs(30)).unwrap();
            let began = std::time::Instant::now();
            let reader = s.spawn(move || stream.next().map(|piece| piece.is_none()));
            std::thread::sleep(Duration::from_millis(50));
            close_streams();
            let ended = reader.join().unwrap();
            assert!(began.elapsed() < Duration::from_secs(5), "the reader waited for its 30 s timeout");
            assert!(ended.is_err() || ended.unwrap(), "the stream did not end");
            drop(engine.join().unwrap());
        });
        let _ = std::fs::remove_file(&path);
    }
}
