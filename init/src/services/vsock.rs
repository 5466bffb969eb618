//! Serves the guest's vsock ports: the engine API (each connection is
//! forwarded to the engine's unix socket, both ways, with half-close kept)
//! and, through [`serve_port`], every other port.
//!
//! Every listener admits connections in one place ([`listen`]): only the
//! host (CID 2) is served, at most [`MAX_CONNECTIONS`] at a time per port,
//! and when the VM has a secret each connection must open with its auth
//! line (`skiff_proto::auth`) within [`AUTH_DEADLINE`]. Until then it
//! waits (`waiting`): when every place is taken, a silent waiting
//! connection gives its place to the newcomer, so unauthenticated peers
//! never keep the owner out. When the secret setting is unusable
//! ([`Admission::Nobody`]), every connection is refused at
//! accept, before a byte of it is read.
//!
//! A connection that starts with the framing preamble carries the host's EOF
//! in-band (see `skiff_proto::framing`); any other is plain pass-through.

use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::auth::{self, AuthError, Secret};
use skiff_proto::events::Note;
use skiff_proto::framing::{self, FrameReader, Sniff};
use vsock::{VsockListener, VsockStream, VMADDR_CID_ANY, VMADDR_CID_HOST};

use crate::services::waiting::{Waiting, GRACE};


/// Connections served at once per port; more are turned away with a
/// message (each costs PID 1 two threads and two descriptors).
pub const MAX_CONNECTIONS: usize = 512;

/// The accept queue of every listener. The vsock crate listens with 128,
/// and the guest kernel resets connections past the queue: a burst of
/// clients (compose starting many services, a flood) arriving faster than
/// the accept loop spawns threads was reset before it could be served or
/// clearly turned away. A listening socket's queue is re-sized by calling
/// listen(2) again.
const ACCEPT_QUEUE: i32 = 1024;
/// Time from accept for the whole handshake (`skiff_proto::auth`).
pub const AUTH_DEADLINE: Duration = Duration::from_secs(5);
/// Time from accept for the first bytes of an engine request (framing sniff).
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between looks at a partly arrived challenge line.
const PEEK_PAUSE: Duration = Duration::from_millis(20);
/// At most one console line per this long for each kind of refusal.
const NOTICE_EVERY: Duration = Duration::from_secs(10);

/// Answer sent while the engine socket cannot be reached.
const UNAVAILABLE_BODY: &str = "skiff: the container engine is not running yet (starting or restarting); try again shortly\n";

/// Who the host's connections must prove to be, as the boot sequence
/// decided it from the secret setting (`config::SecretSetting`).
#[derive(Debug)]
pub enum Admission {
    /// No secret anywhere: every host connection is served.
    Everyone,
    /// Every connection must open with this secret.
    Secret(Secret),
    /// The secret setting cannot be used (why, never its value): none is served.
    Nobody(String),
}

/// Who every port admits, shared by all the listeners: made once by the
/// boot sequence from the secret setting, before any listener, and handed
/// to each ([`spawn_listener`], [`serve_port`]).
#[derive(Clone, Debug)]
pub struct Door(Arc<DoorState>);

#[derive(Debug)]
struct DoorState {
    admission: Admission,
    /// The secret `skiff run` handed over once the guest was up (`rekey` on
    /// the control port), held in this process's memory alone: it replaces
    /// the boot secret, whose fw_cfg copy a container with enough rights can read.
    rekeyed: Mutex<Option<Secret>>,
    /// Set at shutdown: new connections are refused from then on.
    stopping: AtomicBool,
}

impl Door {
    /// The console says, once, who can reach the guest.
    pub fn new(admission: Admission) -> Self {
        match &admission {
            Admission::Everyone => log::warn!(
                "vsock: no secret configured (none from the host's fw_cfg, config.toml or cidata): every local user of \
                 the host who can reach this VM's vsock can use the engine and the debug shell"
            ),
            Admission::Secret(_) => log::info!("vsock: connections must present the VM's secret"),
            Admission::Nobody(why) => log::error!(
                "vsock: the secret setting cannot be used ({why}): no connection will be served on any port until it \
                 is fixed (the secret is never shown)"
            ),
        }
        Door(Arc::new(DoorState { admission, rekeyed: Mutex::new(None), stopping: AtomicBool::new(false) }))
    }

    /// From now on, connections must prove `secret` instead of the boot secret.
    pub fn rekey(&self, secret: Secret) {
        *self.0.rekeyed.lock().unwrap_or_else(|e| e.into_inner()) = Some(secret);
        log::info!("vsock: the host replaced the boot secret; the fw_cfg copy admits nobody now");
        crate::boot::events::note(Note::SecretReplaced, "vsock");
    }

    /// Stops accepting new connections (shutdown's first step).
    pub fn stop_accepting(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
    }

    /// What a connection accepted now must prove (`None`: nothing), or
    /// why none is served.
    fn decide(&self) -> Result<Option<Secret>, Closed> {
        if self.0.stopping.load(Ordering::SeqCst) {
            return Err(Closed::Stopping);
        }
        let rekeyed = self.0.rekeyed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match gate(&self.0.admission, rekeyed.as_ref()) {
            Gate::Shut => Err(Closed::Shut),
            Gate::Open => Ok(None),
            Gate::Secret(s) => Ok(Some(s.clone())),
        }
    }
}

/// Why the door serves no connection.
#[derive(Debug, PartialEq, Eq)]
enum Closed {
    /// Shutdown began: connections are dropped unread.
    Stopping,
    /// The secret setting is unusable: each is told so.
    Shut,
}

/// What the accept loop does with a host connection, by the secret setting.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate<'a> {
    /// Serve it; a challenge (a host with a secret) is refused.
    Open,
    /// Serve it once it presents this secret.
    Secret(&'a Secret),
    /// Refuse it without reading from it.
    Shut,
}

/// The admission decision for a connection; a secret the host handed
/// over later wins over the boot one.
pub fn gate<'a>(setting: &'a Admission, rekeyed: Option<&'a Secret>) -> Gate<'a> {
    match setting {
        Admission::Everyone => Gate::Open,
        Admission::Secret(s) => Gate::Secret(rekeyed.unwrap_or(s)),
        Admission::Nobody(_) => Gate::Shut,
    }
}

/// The reason given to a connection refused by a shut gate.
const SHUT: &str = "the VM's secret setting cannot be used (see the guest's console)";

/// How a port turns a connection away: an HTTP answer (the engine port, so
/// `docker` shows it) or a `skiff: refused: ...` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Http,
    Line,
}

/// Listens on vsock `port` in a background thread, forwarding to `engine`.
pub fn spawn_listener(door: &Door, port: u32, engine: &'static str) {
    listen(door, port, "engine API", Answer::Http, move |stream| serve(stream, engine));
}

/// Listens on vsock `port` in a background thread and runs `handle` in a
/// thread per admitted connection; refusals are `skiff: refused:` lines.
pub fn serve_port(door: &Door, port: u32, what: &'static str, handle: impl Fn(VsockStream) + Send + Sync + Clone + 'static) {
    listen(door, port, what, Answer::Line, handle)
}

/// The one accept loop of every port: host only, capped, authenticated.
/// Binding is retried (a transport can appear late); it never blocks boot.
fn listen(door: &Door, port: u32, what: &'static str, answer: Answer, handle: impl Fn(VsockStream) + Send + Sync + Clone + 'static) {
    let door = door.clone();
    let spawned = thread::Builder::new().name("vsock".into()).spawn(move || {
        let mut delay = Duration::from_millis(200);
        let listener = loop {
            match VsockListener::bind_with_cid_port(VMADDR_CID_ANY, port) {
                Ok(l) => break l,
                Err(e) => {
                    log::error!("vsock: cannot listen on port {port}: {e} (no vsock device?); retrying in {delay:?}");
                    thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        if let Err(e) = rustix::net::listen(listener.as_fd(), ACCEPT_QUEUE) {
            log::warn!("vsock: port {port}: cannot grow the accept queue to {ACCEPT_QUEUE}: {e}; bursts may be reset");
        }
        log::info!("vsock: {what} on vsock port {port}");
        // One counter per port, alive as long as the listener (forever).
        let open: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let waiting: &'static Waiting<Slot> = Box::leak(Box::default());
        let notices = Notices::default();
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) => {
                    notices.accept.note(|| format!("vsock: accept on port {port} failed: {e}"));
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if !peer_allowed(peer.cid()) {
                notices.peer.note(|| format!("vsock: port {port}: closed a connection from cid {} (only the host, cid 2, is served)", peer.cid()));
                continue;
            }
            let secret = match door.decide() {
                Ok(secret) => secret,
                Err(Closed::Stopping) => continue, // dropped, which closes it
                Err(Closed::Shut) => {
                    turn_away(stream, answer, "403 Forbidden", SHUT);
                    continue;
                }
            };
            let Some(slot) = Slot::take(open, MAX_CONNECTIONS).or_else(|| waiting.give_way(GRACE)) else {
                notices.busy.note(|| {
                    crate::boot::events::note(Note::ConnectionsCapped, &port.to_string());
                    format!("vsock: port {port}: {MAX_CONNECTIONS} connections open; turning new ones away")
                });
                turn_away(stream, answer, "503 Service Unavailable", &format!("too many connections ({MAX_CONNECTIONS} open); try again later"));
                continue;
            };
            let ticket = match waiting.enter(&stream, slot) {
                Ok(t) => t,
                Err(e) => {
                    notices.spawn.note(|| format!("vsock: port {port}: cannot keep a connection: {e}; connection dropped"));
                    continue;
                }
            };
            let auth_notice = Arc::clone(&notices.auth);
            let handle = handle.clone();
            let spawned = thread::Builder::new().name("vsock-conn".into()).spawn(move || {
                let mut stream = stream;
                match admit(&mut stream, secret.as_ref(), Instant::now() + AUTH_DEADLINE) {
                    // None: it gave way to a newcomer while silent (then cut off).
                    Ok(()) => match ticket.admitted() {
                        Some(_slot) => handle(stream),
                        None => log::debug!("vsock: port {port}: a silent connection gave way"),
                    },
                    Err(r) => {
                        auth_notice.note(|| {
                            crate::boot::events::note(Note::ConnectionRefused, &port.to_string());
                            format!("vsock: port {port}: refused a connection from the host: {r}")
                        });
                        if let Err(e) = refuse(stream, answer, &r.to_string()) {
                            log::debug!("vsock: refusing: {e}");
                        }
                    }
                }
            });
            if let Err(e) = spawned {
                notices.spawn.note(|| format!("vsock: port {port}: cannot start a connection thread: {e}; connection dropped"));
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("vsock: cannot start listener thread for port {port}: {e}");
    }
}

/// Only the host may connect: never a container (loopback, own CID) or
/// another VM.
pub fn peer_allowed(cid: u32) -> bool {
    cid == VMADDR_CID_HOST
}

/// One of at most `max` places (connections of a port, shells), given
/// back on drop.
pub struct Slot(&'static AtomicUsize);

impl Slot {
    pub fn take(open: &'static AtomicUsize, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Keeps a flood of refusals from flooding the console: at most one line
/// per [`NOTICE_EVERY`], saying how many were not shown.
#[derive(Debug, Default)]
pub struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last line)` if a line may be written now.
    pub fn allow(&mut self, now: Instant, every: Duration) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A rate-limited console line.
#[derive(Debug, Default)]
struct Notice(Mutex<RateLimit>);

impl Notice {
    fn note(&self, text: impl FnOnce() -> String) {
        let allowed = self.0.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now(), NOTICE_EVERY);
        match allowed {
            Some(0) => log::warn!("{}", text()),
            Some(n) => log::warn!("{} ({n} similar not shown)", text()),
            None => {}
        }
    }
}

/// One rate limit per kind of refusal, so one kind cannot hide another.
#[derive(Default)]
struct Notices {
    accept: Notice,
    peer: Notice,
    busy: Notice,
    spawn: Notice,
    auth: Arc<Notice>,
}

/// Why a host connection was refused before its service saw a byte.
#[derive(Debug)]
pub enum Refusal {
    /// No, a malformed or a wrong handshake.
    Auth(AuthError),
    /// The handshake did not end within [`AUTH_DEADLINE`].
    Timeout,
    /// The host closed before sending anything.
    Closed,
    Io(io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auth(e) => write!(f, "{e}"),
            Self::Timeout => write!(f, "no SKIFF-AUTH/2 handshake within {}s", AUTH_DEADLINE.as_secs()),
            Self::Closed => write!(f, "closed before authenticating"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Admits a host connection: with a secret, it must open with the
/// challenge line, whole, and then prove it holds the secret
/// (`skiff_proto::auth`), all before `until`. Without one, a challenge (a
/// host that has a secret the guest was not given) is refused, and anything
/// else is left unread for the service. Looks with MSG_PEEK, so nothing but
/// the handshake is ever consumed.
pub fn admit<C: Conn>(conn: &mut C, secret: Option<&Secret>, until: Instant) -> Result<(), Refusal> {
    let mut first = [0u8; auth::LINE_LEN];
    let result = loop {
        let n = match ReadBy::new(conn, until).peek(&mut first) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break if secret.is_some() { Err(Refusal::Timeout) } else { Ok(()) },
            Err(e) => break Err(Refusal::Io(e)),
        };
        let sniffed = if n == 0 { auth::Sniff::NotAuth } else { auth::sniff(&first[..n]) };
        match sniffed {
            auth::Sniff::NotAuth => break match secret {
                Some(_) if n == 0 => Err(Refusal::Closed),
                Some(_) => Err(Refusal::Auth(AuthError::Missing)),
                None => Ok(()),
            },
            auth::Sniff::NeedMore if Instant::now() >= until => {
                break if secret.is_some() { Err(Refusal::Timeout) } else { Ok(()) };
            }
            auth::Sniff::NeedMore => thread::sleep(PEEK_PAUSE),
            auth::Sniff::Line(len) => {
                if let Err(e) = ReadBy::new(conn, until).read_exact(&mut first[..len]) {
                    break Err(Refusal::Io(e));
                }
                break match secret {
                    Some(s) => prove(conn, &first[..len], s, until),
                    None => Err(Refusal::Auth(AuthError::NoSecret)),
                };
            }
        }
    };
    conn.set_read_timeout(None).map_err(Refusal::Io)?;
    result
}

/// Answers the host's challenge `line` with this guest's nonce and tag,
/// then checks the host's proof, which must arrive before `until`.
fn prove<C: Conn>(conn: &mut C, line: &[u8], secret: &Secret, until: Instant) -> Result<(), Refusal> {
    let host = auth::parse_challenge(line).map_err(Refusal::Auth)?;
    let guest = auth::nonce().map_err(Refusal::Io)?;
    conn.write_all(&auth::answer(secret, &host, &guest)).map_err(Refusal::Io)?;
    let mut proof = [0u8; auth::PROOF_LEN];
    ReadBy::new(conn, until).read_exact(&mut proof).map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut => Refusal::Timeout,
        io::ErrorKind::UnexpectedEof => Refusal::Closed,
        _ => Refusal::Io(e),
    })?;
    auth::check_proof(&proof, secret, &host, &guest).map_err(Refusal::Auth)
}

/// Reads from a connection with one deadline for all reads together (a
/// per-read timeout would let a sender dribble one byte at a time forever).
pub struct ReadBy<'a, C: Conn> {
    conn: &'a mut C,
    until: Instant,
}

impl<'a, C: Conn> ReadBy<'a, C> {
    pub fn new(conn: &'a mut C, until: Instant) -> Self {
        Self { conn, until }
    }

    /// Arms the socket's timeout with the time left.
    fn arm(&self) -> io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.conn.set_read_timeout(Some(left))
    }

    /// Looks at what has arrived without consuming it (waits for a byte).
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        rustix::net::recv(self.conn.as_fd(), buf, rustix::net::RecvFlags::PEEK)
            .map(|(n, _)| n)
            .map_err(|e| timed_out(e.into()))
    }
}

impl<C: Conn> Read for ReadBy<'_, C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.conn.read(buf).map_err(timed_out)
    }
}

/// A socket timeout (EAGAIN) as `TimedOut`.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
    } else {
        e
    }
}

/// A connected byte stream the forwarder can split and half-close:
/// AF_VSOCK in the guest, a unix socket in tests (same half-close
/// semantics), and the engine's or a container's socket on the other side.
pub trait Conn: Read + Write + AsFd + Send + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

/// Each stream type's own methods, which already have `Conn`'s signatures.
macro_rules! impl_conn {
    ($($t:ty),*) => {$(
        impl Conn for $t {
            fn try_clone(&self) -> io::Result<Self> {
                <$t>::try_clone(self)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$t>::shutdown(self, how)
            }
            fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, t)
            }
        }
    )*};
}
impl_conn!(VsockStream, TcpStream, UnixStream);

fn serve(stream: VsockStream, engine: &str) {
    if let Err(e) = forward(stream, engine, crate::supervise::engine::is_ready) {
        log::debug!("vsock: connection ended with error: {e}");
    }
}

/// Reads until the first bytes say whether the connection is framed, all
/// within [`HANDSHAKE_DEADLINE`].
fn sniff_mode<C: Conn>(stream: &mut C) -> io::Result<(Sniff, Vec<u8>)> {
    let mut first = Vec::with_capacity(framing::PREAMBLE.len());
    let mut buf = [0u8; 64];
    let mut timed = ReadBy::new(stream, Instant::now() + HANDSHAKE_DEADLINE);
    let mode = loop {
        match framing::sniff(&first) {
            Sniff::NeedMore => {}
            decided => break decided,
        }
        let want = framing::PREAMBLE.len() - first.len();
        let n = timed.read(&mut buf[..want])?;
        if n == 0 {
            break Sniff::Plain;
        }
        first.extend_from_slice(&buf[..n]);
    };
    stream.set_read_timeout(None)?;
    let leftover = if mode == Sniff::Framed { first.split_off(framing::PREAMBLE.len()) } else { first };
    Ok((mode, leftover))
}

/// Forwards one connection; `ready` says whether the engine has answered
/// /_ping since it last started (if not, the client gets a 503).
pub fn forward<C: Conn>(mut vs: C, engine_path: &str, ready: fn() -> bool) -> io::Result<()> {
    let (mode, leftover) = sniff_mode(&mut vs)?;
    if !ready() {
        log::debug!("vsock: engine not ready");
        return refuse_unavailable(vs);
    }
    let engine = match UnixStream::connect(engine_path) {
        Ok(e) => e,
        Err(e) => {
            log::debug!("vsock: engine socket unavailable: {e}");
            return refuse_unavailable(vs);
        }
    };
    relay(vs, leftover, mode == Sniff::Framed, engine)
}

/// Relays a host connection `vs` to `target` until both directions are done.
/// `leftover` is host input already read; `framed` says the host's bytes are
/// frames carrying its EOF in-band.
///
/// Target → host: plain bytes. When the target has closed, the exchange is
/// over: close the vsock connection both ways. A half-close alone would
/// leave this connection open forever if the host never sends its EOF
/// (a client that hung up early), and hybrid vsock does not pass a guest
/// half-close on to the host at all. Host → target: at the host's EOF,
/// half-close the target.
pub fn relay<C: Conn, T: Conn>(vs: C, leftover: Vec<u8>, framed: bool, target: T) -> io::Result<()> {
    let mut target_rd = target.try_clone()?;
    let mut vs_wr = vs.try_clone()?;
    // `io::copy`'s 8 KiB writes, not `skiff_proto::copy`'s 256 KiB: with
    // big guest writes vhost-device-vsock stops granting credit and the
    // transfer hangs (rust-vmm/vhost-device#494); small ones keep flowing.
    let back = thread::Builder::new().name("vsock-back".into()).spawn(move || {
        let r = io::copy(&mut target_rd, &mut vs_wr);
        let _ = vs_wr.shutdown(Shutdown::Both);
        r
    })?;
    let mut target_wr = target;
    let input = Cursor::new(leftover).chain(vs);
    let sent = if framed { io::copy(&mut FrameReader::new(input), &mut target_wr) } else { io::copy(&mut { input }, &mut target_wr) };
    let _ = target_wr.shutdown(Shutdown::Write);
    let got = back.join().map_err(|_| io::Error::other("forwarding thread panicked"))?;
    sent?;
    got.map(|_| ())
}

/// Time from the handshake for a whole request line (control, forward).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// Reads one request line (at most `max` bytes) byte by byte, so nothing
/// after it is consumed, all within [`REQUEST_DEADLINE`]: a total deadline,
/// so a slow sender is cut off.
pub fn read_line<C: Conn>(stream: &mut C, max: usize) -> io::Result<Vec<u8>> {
    let line = skiff_proto::read_line(&mut ReadBy::new(stream, Instant::now() + REQUEST_DEADLINE), max);
    stream.set_read_timeout(None)?;
    line
}

/// Answers 503 and closes.
fn refuse_unavailable<C: Conn>(vs: C) -> io::Result<()> {
    answer_and_close(vs, unavailable_response().as_bytes())
}

/// Turns a connection away (`403 Forbidden` on HTTP) with `reason`.
pub fn refuse<C: Conn>(vs: C, answer: Answer, reason: &str) -> io::Result<()> {
    answer_and_close(vs, refusal(answer, "403 Forbidden", reason).as_bytes())
}

/// Writes `text`, then drains the unread request briefly before closing:
/// closing with unread input would turn the answer into a connection reset.
fn answer_and_close<C: Conn>(mut vs: C, text: &[u8]) -> io::Result<()> {
    vs.write_all(text)?;
    vs.shutdown(Shutdown::Write)?;
    let _ = io::copy(&mut ReadBy::new(&mut vs, Instant::now() + Duration::from_secs(1)), &mut io::sink());
    Ok(())
}

/// Answers from the accept loop itself (no thread to spare): a short write
/// that cannot block for long, and nothing read.
fn turn_away(vs: VsockStream, answer: Answer, status: &str, reason: &str) {
    let _ = vs.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = (&vs).write_all(refusal(answer, status, reason).as_bytes());
    let _ = vs.shutdown(Shutdown::Both);
}

/// The refusal text: an HTTP answer with `status` and the refusal line as
/// its body, or the `skiff: refused:` line alone.
pub fn refusal(answer: Answer, status: &str, reason: &str) -> String {
    match answer {
        Answer::Line => auth::refusal_line(reason),
        Answer::Http => http_response(status, &auth::refusal_line(reason)),
    }
}

/// The HTTP answer given while the engine is down, instead of a reset.
pub fn unavailable_response() -> String {
    http_response("503 Service Unavailable", UNAVAILABLE_BODY)
}

fn http_response(status: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test may panic if it cannot start a thread
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    /// A stand-in engine: reads its request to EOF (the half-close), then
    /// answers with the byte count and closes.
    fn fake_engine(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("skiff-fwd-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(format!("got {} bytes: {}", got.len(), String::from_utf8_lossy(&got)).as_bytes()).unwrap();
        });
        path
    }

    /// Runs the forwarder on one end of a socket pair; returns the other end.
    fn connect(engine: &std::path::Path) -> UnixStream {
        connect_with(engine, || true)
    }

    fn connect_with(engine: &std::path::Path, ready: fn() -> bool) -> UnixStream {
        let (host, guest) = UnixStream::pair().unwrap();
        let engine = engine.to_str().unwrap().to_string();
        thread::spawn(move || forward(guest, &engine, ready));
        host
    }

    #[test]
    fn plain_mode_passes_half_close_through() {
        let engine = fake_engine("plain");
        let mut host = connect(&engine);
        host.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        host.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "got 19 bytes: GET /x HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn framed_mode_carries_eof_in_band() {
        let engine = fake_engine("framed");
        let mut host = connect(&engine);
        let mut wire = framing::PREAMBLE.to_vec();
        framing::encode(b"POST /attach", &mut wire);
        framing::encode(b" stdin", &mut wire);
        wire.extend_from_slice(&framing::EOF_FRAME);
        host.write_all(&wire).unwrap();
        // No shutdown: the EOF frame alone must end the engine's input.
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "got 18 bytes: POST /attach stdin");
    }

    #[test]
    fn engine_close_ends_the_connection_without_host_eof() {
        // An engine that answers and closes without waiting for more input,
        // and a host that never half-closes: the connection must still end.
        let path = std::env::temp_dir().join(format!("skiff-fwd-eager-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nOK").unwrap();
        });
        let (mut host, guest) = UnixStream::pair().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        let engine = path.to_str().unwrap().to_string();
        thread::spawn(move || done_tx.send(forward(guest, &engine, || true).is_ok()));
        host.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").unwrap();
        host.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).expect("EOF from the forwarder, not a timeout");
        assert_eq!(reply, "HTTP/1.0 200 OK\r\n\r\nOK");
        // The host still holds its end open and never sent EOF.
        let finished = done.recv_timeout(Duration::from_secs(10));
        assert!(finished.is_ok(), "forwarder still running: the connection leaked");
        drop(host);
    }

    #[test]
    fn engine_down_gives_503() {
        let mut host = connect(std::path::Path::new("/nonexistent/engine.sock"));
        host.write_all(b"GET /_ping HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    }

    #[test]
    fn engine_not_ready_gives_503_even_if_its_socket_accepts() {
        let engine = fake_engine("unready");
        let mut host = connect_with(&engine, || false);
        host.write_all(b"GET /_ping HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        host.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    }

    #[test]
    fn unavailable_is_well_formed_http() {
        let r = unavailable_response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    /// The host's side of the handshake, as `skiff_proto::auth::authenticate`
    /// runs it, on its own thread; gives back its end once done.
    fn host_side(host: UnixStream, secret: Secret) -> thread::JoinHandle<(std::io::Result<()>, UnixStream)> {
        thread::spawn(move || {
            let mut host = host;
            let r = auth::authenticate(&mut host, &secret, &auth::nonce().unwrap());
            (r, host)
        })
    }

    #[test]
    fn admits_the_right_secret_and_leaves_the_request_unread() {
        let secret = Secret::from_bytes([9; 32]);
        let (host, mut guest) = pair();
        let h = host_side(host, secret.clone());
        admit(&mut guest, Some(&secret), soon()).unwrap();
        let (r, mut host) = h.join().unwrap();
        r.unwrap();
        host.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").unwrap();
        let mut rest = [0u8; 10];
        guest.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"GET /_ping");
    }

    #[test]
    fn refuses_missing_wrong_and_malformed_handshakes() {
        let secret = Secret::from_bytes([9; 32]);
        let challenge = auth::challenge(&[1; auth::NONCE_LEN]);
        type Case = (Vec<u8>, fn(&Refusal) -> bool);
        let cases: [Case; 7] = [
            (b"GET /_ping HTTP/1.0\r\n\r\n".to_vec(), |r| matches!(r, Refusal::Auth(AuthError::Missing))),
            (b"SKIFF-FRAMES/1\n".to_vec(), |r| matches!(r, Refusal::Auth(AuthError::Missing))),
            (b"SKIFF-AUTH/1 1234\n".to_vec(), |r| matches!(r, Refusal::Auth(AuthError::Missing))),
            (b"SKIFF-AUTH/2 1234\n".to_vec(), |r| matches!(r, Refusal::Auth(AuthError::Malformed))),
            (b"".to_vec(), |r| matches!(r, Refusal::Closed)),
            // The challenge, then a proof cut short by the host's close.
            ([challenge.as_slice(), b"0123\n"].concat(), |r| matches!(r, Refusal::Closed)),
            // The challenge, then a proof line that is not hex.
            ([challenge.as_slice(), &[b'x'; 32], b"\n"].concat(), |r| matches!(r, Refusal::Auth(AuthError::Malformed))),
        ];
        for (sent, expected) in cases {
            let (mut host, mut guest) = pair();
            host.write_all(&sent).unwrap();
            host.shutdown(Shutdown::Write).unwrap();
            let r = admit(&mut guest, Some(&secret), soon()).unwrap_err();
            assert!(expected(&r), "{:?}: {r:?}", String::from_utf8_lossy(&sent));
        }
        // A host with another secret: the guest's answer does not prove
        // itself to it, so it sends no proof and the guest refuses at close.
        let (mut host, mut guest) = pair();
        let h = thread::spawn(move || auth::authenticate(&mut host, &Secret::from_bytes([8; 32]), &[2; auth::NONCE_LEN]));
        let refused = admit(&mut guest, Some(&secret), soon());
        let r = h.join().unwrap();
        assert!(matches!(refused, Err(Refusal::Closed)), "{refused:?}");
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_stranger_gets_no_proof_it_can_replay() {
        // A stranger sends a challenge, reads the answer and sends the
        // guest's own tag back as its proof, then replays a proof recorded
        // from another connection: both refused.
        let secret = Secret::from_bytes([9; 32]);
        let nonce = [3; auth::NONCE_LEN];
        let (mut host, mut guest) = pair();
        let g = thread::spawn(move || admit(&mut guest, Some(&Secret::from_bytes([9; 32])), soon()));
        host.write_all(&auth::challenge(&nonce)).unwrap();
        let answer = skiff_proto::read_line(&mut host, 200).unwrap();
        host.write_all(&[&answer[answer.len() - 32..], b"\n"].concat()).unwrap();
        assert!(matches!(g.join().unwrap(), Err(Refusal::Auth(AuthError::Wrong))));
        let recorded = auth::check_answer(&[answer.as_slice(), b"\n"].concat(), &secret, &nonce).unwrap();
        let (mut host, mut guest) = pair();
        let g = thread::spawn(move || admit(&mut guest, Some(&Secret::from_bytes([9; 32])), soon()));
        host.write_all(&[auth::challenge(&nonce), recorded].concat()).unwrap();
        assert!(matches!(g.join().unwrap(), Err(Refusal::Auth(AuthError::Wrong))), "the guest's nonce is new each time");
    }

    #[test]
    fn the_deadline_is_for_the_whole_handshake() {
        // A sender that dribbles a byte every 100 ms never lets a per-read
        // timeout fire; the total deadline still does.
        let secret = Secret::from_bytes([9; 32]);
        let (host, mut guest) = pair();
        let line = auth::challenge(&[1; auth::NONCE_LEN]);
        thread::spawn(move || {
            for b in line {
                if (&host).write_all(&[b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let began = Instant::now();
        let r = admit(&mut guest, Some(&secret), Instant::now() + Duration::from_millis(700));
        assert!(matches!(r, Err(Refusal::Timeout)), "{r:?}");
        assert!(began.elapsed() < Duration::from_secs(2), "took {:?}", began.elapsed());
        let (_silent, mut guest) = pair();
        let r = admit(&mut guest, Some(&secret), Instant::now() + Duration::from_millis(300));
        assert!(matches!(r, Err(Refusal::Timeout)), "silent host: {r:?}");
        // The challenge on time, then no proof.
        let (mut host, mut guest) = pair();
        host.write_all(&auth::challenge(&[1; auth::NONCE_LEN])).unwrap();
        let r = admit(&mut guest, Some(&secret), Instant::now() + Duration::from_millis(300));
        assert!(matches!(r, Err(Refusal::Timeout)), "no proof: {r:?}");
    }

    #[test]
    fn without_a_secret_a_challenge_is_refused_and_anything_else_kept() {
        let (mut host, mut guest) = pair();
        host.write_all(&auth::challenge(&[1; auth::NONCE_LEN])).unwrap();
        assert!(matches!(admit(&mut guest, None, soon()), Err(Refusal::Auth(AuthError::NoSecret))));
        let (mut host, mut guest) = pair();
        host.write_all(b"GET /").unwrap();
        admit(&mut guest, None, soon()).unwrap();
        let mut rest = [0u8; 5];
        guest.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"GET /");
        let (_silent, mut guest) = pair();
        assert!(admit(&mut guest, None, Instant::now() + Duration::from_millis(200)).is_ok(), "no secret: a slow client is the service's business");
    }

    #[test]
    fn refusals_are_clear_to_docker_and_to_skiff() {
        let (host, guest) = pair();
        refuse(guest, Answer::Http, "wrong secret").unwrap();
        let mut reply = String::new();
        (&host).read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "skiff: refused: wrong secret\n");
        assert_eq!(refusal(Answer::Line, "403 Forbidden", "x"), "skiff: refused: x\n");
    }

    #[test]
    fn an_unusable_secret_setting_shuts_every_port() {
        let secret = Secret::from_bytes([9; 32]);
        assert_eq!(gate(&Admission::Everyone, None), Gate::Open);
        assert_eq!(gate(&Admission::Secret(secret.clone()), None), Gate::Secret(&secret));
        assert_eq!(gate(&Admission::Nobody("not TOML".into()), None), Gate::Shut);
        let new = Secret::from_bytes([7; 32]);
        assert_eq!(gate(&Admission::Nobody("not TOML".into()), Some(&new)), Gate::Shut, "a rekey never opens a shut gate");
        assert_eq!(gate(&Admission::Everyone, Some(&new)), Gate::Open);
    }

    #[test]
    fn the_door_takes_a_rekey_and_closes_at_shutdown() {
        let (boot, new) = (Secret::from_bytes([9; 32]), Secret::from_bytes([7; 32]));
        let door = Door::new(Admission::Secret(boot.clone()));
        let other = door.clone();
        assert_eq!(door.decide(), Ok(Some(boot)));
        other.rekey(new.clone());
        assert_eq!(door.decide(), Ok(Some(new)), "every listener sees the rekey");
        other.stop_accepting();
        assert_eq!(door.decide(), Err(Closed::Stopping));
        assert_eq!(Door::new(Admission::Nobody("not TOML".into())).decide(), Err(Closed::Shut));
        assert_eq!(Door::new(Admission::Everyone).decide(), Ok(None));
    }

    #[test]
    fn once_rekeyed_only_the_new_secret_is_admitted() {
        let (boot, new) = (Secret::from_bytes([9; 32]), Secret::from_bytes([7; 32]));
        let setting = Admission::Secret(boot.clone());
        let Gate::Secret(wanted) = gate(&setting, Some(&new)) else { panic!("not a secret gate") };
        assert_eq!(wanted, &new);
        // The boot secret (what a container may read from fw_cfg) gets no proof from the guest.
        let (mut host, mut guest) = pair();
        let wanted = wanted.clone();
        let g = thread::spawn(move || admit(&mut guest, Some(&wanted), soon()));
        let e = auth::authenticate(&mut host, &boot, &[4; auth::NONCE_LEN]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        drop(host);
        assert!(g.join().unwrap().is_err());
        let (mut host, mut guest) = pair();
        let g = thread::spawn(move || admit(&mut guest, Some(&Secret::from_bytes([7; 32])), soon()));
        auth::authenticate(&mut host, &new, &[4; auth::NONCE_LEN]).unwrap();
        g.join().unwrap().unwrap();
    }

    #[test]
    fn only_the_host_is_a_peer() {
        assert!(peer_allowed(2));
        for cid in [0, 1, 3, 4, u32::MAX] {
            assert!(!peer_allowed(cid), "cid {cid}");
        }
    }

    #[test]
    fn slots_are_capped_and_given_back() {
        static OPEN: AtomicUsize = AtomicUsize::new(0);
        let held: Vec<Slot> = (0..3).map(|_| Slot::take(&OPEN, 3).unwrap()).collect();
        assert!(Slot::take(&OPEN, 3).is_none());
        drop(held);
        assert_eq!(OPEN.load(Ordering::SeqCst), 0);
        assert!(Slot::take(&OPEN, 3).is_some());
    }

    #[test]
    fn rate_limit_counts_what_it_hides() {
        let mut r = RateLimit::default();
        let t = Instant::now();
        assert_eq!(r.allow(t, Duration::from_secs(10)), Some(0));
        assert_eq!(r.allow(t + Duration::from_secs(1), Duration::from_secs(10)), None);
        assert_eq!(r.allow(t + Duration::from_secs(2), Duration::from_secs(10)), None);
        assert_eq!(r.allow(t + Duration::from_secs(11), Duration::from_secs(10)), Some(2));
    }
}
