//! Just enough HTTP/1.1 to drive the Docker API with exact byte counts and
//! timings: requests with a streamed body, responses with Content-Length,
//! chunked or to-EOF bodies. Endpoints are a unix socket (the bridge, a
//! relay) or a guest vsock port reached through a hybrid-vsock socket.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Where requests go.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// A unix socket speaking the Docker API (docker.sock, a relay).
    Unix(PathBuf),
    /// A guest vsock port through a hybrid-vsock socket, plain (no frames),
    /// with the VM's secret for Skiff's own ports (a socat port has none).
    Hybrid(PathBuf, u32, Option<skiff_proto::auth::Secret>),
}

impl Endpoint {
    /// A new connection, ready for HTTP.
    pub fn connect(&self) -> io::Result<UnixStream> {
        let s = match self {
            Endpoint::Unix(p) => UnixStream::connect(p)?,
            Endpoint::Hybrid(p, port, secret) => {
                let mut s = UnixStream::connect(p)?;
                skiff_proto::hybrid::handshake(&mut s, *port)?;
                if let Some(secret) = secret {
                    skiff_proto::auth::authenticate(&mut s, secret, &skiff_proto::auth::nonce()?)?;
                }
                s
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(s)
    }
}

/// The head of a request; `body_len` adds a Content-Length header.
pub fn request_head(method: &str, path: &str, body_len: Option<u64>, extra: &[&str]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: skiff\r\n");
    if let Some(n) = body_len {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// How a response body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    ToEof,
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
}

/// Parses a response head (status line and headers, CRLF-separated).
pub fn parse_head(text: &str) -> Option<Head> {
    let mut lines = text.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut framing = Framing::ToEof;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked;
        } else if name == "content-length" && framing != Framing::Chunked {
            framing = Framing::Length(value.parse().ok()?);
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Some(Head { status, framing })
}

/// Reads a response head off `r`.
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<Head> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        text.push_str(&line);
        if text.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too long"));
        }
    }
    parse_head(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad response head: {text:?}")))
}

/// Copies a response body from `r` to `w`; returns its length.
pub fn read_body<R: BufRead, W: Write>(r: &mut R, framing: &Framing, w: &mut W) -> io::Result<u64> {
    match framing {
        Framing::Length(n) => {
            let got = io::copy(&mut r.take(*n), w)?;
            if got != *n {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("body cut at {got} of {n} bytes")));
            }
            Ok(got)
        }
        Framing::ToEof => io::copy(r, w),
        Framing::Chunked => {
            let mut total = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line)?;
                let size = line.trim().split(';').next().unwrap_or("");
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, if any, end with an empty line.
                    loop {
                        let mut t = String::new();
                        if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                            return Ok(total);
                        }
                    }
                }
                let got = io::copy(&mut r.by_ref().take(size), w)?;
                if got != size {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunk cut short"));
                }
                total += got;
                let mut crlf = String::new();
                r.read_line(&mut crlf)?;
            }
        }
    }
}

/// One request on a new connection: sends the head and `body` (exactly
/// `body_len` bytes), copies the response body into `sink`. Returns the
/// status and the body's length.
pub fn exchange<B: Read, W: Write>(
    ep: &Endpoint,
    method: &str,
    path: &str,
    body: Option<(B, u64)>,
    sink: &mut W,
) -> io::Result<(u16, u64)> {
    let stream = ep.connect()?;
    let mut writer = stream.try_clone()?;
    let extra = ["Connection: close", "Content-Type: application/x-tar"];
    let head = request_head(method, path, body.as_ref().map(|b| b.1), &extra);
    writer.write_all(head.as_bytes())?;
    if let Some((mut b, n)) = body {
        let sent = skiff_proto::copy::copy(&mut b, &mut writer)?;
        if sent != n {
            return Err(io::Error::other(format!("body was {sent} bytes, announced {n}")));
        }
    }
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let head = read_head(&mut reader)?;
    let len = read_body(&mut reader, &head.framing, sink)?;
    Ok((head.status, len))
}

/// A kept-alive connection for repeated `GET /_ping`.
pub struct KeepAlive(BufReader<UnixStream>);

impl KeepAlive {
    pub fn open(ep: &Endpoint) -> io::Result<Self> {
        Ok(Self(BufReader::new(ep.connect()?)))
    }

    /// One ping; true if the engine answered 200 "OK".
    pub fn ping(&mut self) -> io::Result<bool> {
        self.0.get_mut().write_all(request_head("GET", "/_ping", None, &[]).as_bytes())?;
        let head = read_head(&mut self.0)?;
        let mut body = Vec::new();
        read_body(&mut self.0, &head.framing, &mut body)?;
        Ok(head.status == 200 && body == b"OK")
    }
}

/// A ping on a new connection (what each `docker` command pays). The
/// whole answer is read before the connection is closed: on the hybrid-vsock
/// path, closing while the guest is still sending leaves the guest's end
/// of the connection open (see docs/performance.md). Returns what came back
/// when it was not 200 "OK".
pub fn ping_new(ep: &Endpoint) -> Result<(), String> {
    let mut s = ep.connect().map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    s.write_all(skiff_proto::http::PING_REQUEST).map_err(|e| format!("write: {e}"))?;
    let mut r = BufReader::new(s);
    let head = read_head(&mut r).map_err(|e| format!("head: {e}"))?;
    let mut body = Vec::new();
    if head.framing == Framing::ToEof {
        // The server closes, but the hybrid path does not pass that on.
        return Err(format!("status {} without a length", head.status));
    }
    read_body(&mut r, &head.framing, &mut body).map_err(|e| format!("body: {e}"))?;
    if head.status == 200 && body == b"OK" {
        Ok(())
    } else {
        Err(format!("status {}, body {:?}", head.status, String::from_utf8_lossy(&body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_framing() {
        let h = parse_head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n").unwrap();
        assert_eq!(h, Head { status: 200, framing: Framing::Length(2) });
        let h = parse_head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nContent-Length: 9\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_head("HTTP/1.0 500 Internal Server Error\r\n").unwrap();
        assert_eq!(h, Head { status: 500, framing: Framing::ToEof });
        assert_eq!(parse_head("HTTP/1.1 204 No Content\r\n").unwrap().framing, Framing::Length(0));
        assert!(parse_head("garbage").is_none());
        assert!(parse_head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n").is_none());
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let wire = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut r = io::BufReader::new(&wire[..]);
        let mut out = Vec::new();
        assert_eq!(read_body(&mut r, &Framing::Chunked, &mut out).unwrap(), 10);
        assert_eq!(out, b"Wikipedia ");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn length_bodies_stop_at_the_length_and_detect_truncation() {
        let mut r = io::BufReader::new(&b"OKnext"[..]);
        let mut out = Vec::new();
        assert_eq!(read_body(&mut r, &Framing::Length(2), &mut out).unwrap(), 2);
        assert_eq!(out, b"OK");
        let mut short = io::BufReader::new(&b"O"[..]);
        assert!(read_body(&mut short, &Framing::Length(2), &mut Vec::new()).is_err());
    }

    #[test]
    fn full_exchange_reads_the_head_then_the_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut r = io::BufReader::new(&wire[..]);
        let head = read_head(&mut r).unwrap();
        let mut out = Vec::new();
        read_body(&mut r, &head.framing, &mut out).unwrap();
        assert_eq!(out, b"hello");
        assert!(read_head(&mut io::BufReader::new(&b""[..])).is_err());
    }

    #[test]
    fn request_heads_carry_length_and_extra_headers() {
        let h = request_head("POST", "/images/load", Some(7), &["Connection: close"]);
        assert_eq!(h, "POST /images/load HTTP/1.1\r\nHost: skiff\r\nContent-Length: 7\r\nConnection: close\r\n\r\n");
    }
}
