//! `skiff logs`, `skiff shell` and the guest's figures for `skiff status`:
//! the guest's control port (vsock 2376).

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Args;
use skiff_proto::control::{self, Request, DEFAULT_CONTROL_PORT};
use skiff_proto::shell::{self, Msg, Start};
use skiff_proto::status;

use crate::threads;
use crate::guest::{Addr, Conn, Target};
use crate::state::secret;
use crate::state::StateDir;

/// Where the guest is: a `skiff run` state folder, or an explicit vsock address.
#[derive(Args, Debug)]
pub struct GuestArgs {
    /// State folder of a VM started by `skiff run` (its recorded vsock address).
    #[arg(long, env = "SKIFF_DIR", default_value_os_t = crate::state::default_dir())]
    pub dir: PathBuf,
    /// Guest context id, for kernel AF_VSOCK (a VM not started by `skiff run`).
    #[arg(long, conflicts_with = "uds")]
    pub cid: Option<u32>,
    /// Hybrid-vsock unix socket (Firecracker, Cloud Hypervisor, vhost-device-vsock).
    #[arg(long)]
    pub uds: Option<PathBuf>,
    /// Guest vsock port of the control service.
    #[arg(long, default_value_t = DEFAULT_CONTROL_PORT)]
    pub control_port: u32,
    /// The VM's secret (64 hex digits), for --cid/--uds; with --dir it is DIR/secret.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
}

impl GuestArgs {
    /// An explicit address, else what `skiff run` recorded in the state
    /// folder; never a guessed CID, which could be another user's VM.
    fn target(&self) -> io::Result<Target> {
        let mut target = match (&self.cid, &self.uds) {
            (Some(cid), _) => Target::new(Addr::Cid(*cid)),
            (None, Some(uds)) => Target::new(Addr::Uds(uds.clone())),
            (None, None) => crate::guest::record::recorded(&StateDir::existing(&self.dir)?)?,
        };
        if let Some(path) = &self.secret_file {
            target.secret = Some(secret::read(path)?);
        }
        Ok(target)
    }
}

/// Replaces the VM's boot secret, which the guest read from fw_cfg (where
/// a container with enough rights can read it too), with a new one held
/// only by the guest's memory, this process and the secret file `file`
/// (rewritten, for other terminals); the boot secret admits nobody then.
/// `skiff run` calls it once the guest is up.
pub fn rekey(target: &Target, file: &std::path::Path) -> io::Result<()> {
    let Some(boot) = &target.secret else { return Ok(()) };
    let new = secret::generate()?;
    let mut conn = target.connect(DEFAULT_CONTROL_PORT)?;
    conn.write_all(control::encode(&Request::Rekey(new.clone())).as_bytes())?;
    conn.set_read_timeout(Some(STATUS_LIMIT))?;
    let reply = match skiff_proto::read_line(&mut conn, 1024) {
        Ok(reply) => reply,
        // No answer: the guest may have taken the new secret all the same,
        // and then admits only it. If it proves it, it did.
        Err(e) => {
            let probe = Target { secret: Some(new.clone()), ..target.clone() };
            probe.connect(DEFAULT_CONTROL_PORT).and_then(|mut c| c.write_all(control::encode(&Request::Status).as_bytes())).map_err(|_| e)?;
            b"OK".to_vec()
        }
    };
    if reply != b"OK" {
        let text = String::from_utf8_lossy(&reply);
        let reason = skiff_proto::auth::parse_refusal(format!("{text}\n").as_bytes()).unwrap_or_else(|| text.into_owned());
        return Err(io::Error::other(format!("the guest did not take the new secret: {}", reason.escape_debug())));
    }
    target.link.rekeyed(boot.clone(), new.clone());
    secret::write(file, &new)
}

/// Connects to the control port and sends `req`.
pub fn connect(g: &GuestArgs, req: &Request) -> io::Result<Conn> {
    let mut conn = g.target()?.connect(g.control_port)?;
    conn.write_all(control::encode(req).as_bytes())?;
    Ok(conn)
}

/// Fails with the guest's reason if its first line is a refusal (a wrong
/// or missing secret, too many shells): no log line or shell message
/// starts with a lower-case `s`.
fn check_refusal(conn: &mut BufReader<Conn>) -> io::Result<()> {
    if conn.fill_buf()?.first() != Some(&b's') {
        return Ok(());
    }
    let mut line = Vec::new();
    conn.by_ref().take(1024).read_until(b'\n', &mut line)?;
    let reason = skiff_proto::auth::parse_refusal(&line).unwrap_or_else(|| String::from_utf8_lossy(&line).trim_end().to_string());
    Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("the guest refused: {reason}")))
}

/// Sends `req` to the control port of `target` and fails with the guest's
/// reason if it refuses; reads wait at most [`STATUS_LIMIT`].
fn ask(target: &Target, req: &Request) -> io::Result<BufReader<Conn>> {
    let mut conn = target.connect(DEFAULT_CONTROL_PORT)?;
    conn.write_all(control::encode(req).as_bytes())?;
    let mut conn = BufReader::new(conn);
    conn.get_ref().set_read_timeout(Some(STATUS_LIMIT))?;
    check_refusal(&mut conn)?;
    Ok(conn)
}

/// How long the guest may take to answer a status request, in all.
const STATUS_LIMIT: Duration = Duration::from_secs(5);

/// The guest's own figures (build, memory, data disk use, shares), read
/// within [`STATUS_LIMIT`] and at most `status::MAX_STATUS` bytes.
pub fn guest_status(target: &Target) -> io::Result<status::GuestStatus> {
    let end = std::time::Instant::now() + STATUS_LIMIT;
    let mut conn = ask(target, &Request::Status)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the guest did not answer the status request in time"));
        }
        conn.get_ref().set_read_timeout(Some(left))?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if answer.len() + n > status::MAX_STATUS => return Err(io::Error::other(status::Error::TooLong)),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    status::parse(&answer).map_err(io::Error::other)
}

/// Tells the guest the host's time (it stood still while the VM was
/// paused or the host slept); returns how far off the guest was (host
/// minus guest, ns).
pub fn tell_time(target: &Target) -> io::Result<i64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(io::Error::other)?;
    let mut conn = ask(target, &Request::Clock(now.as_nanos() as i128))?;
    let mut line = String::new();
    conn.by_ref().take(64).read_line(&mut line)?;
    line.trim().parse().map_err(|_| io::Error::other(format!("the guest answered the time with {line:?}")))
}

/// `skiff logs`: prints the guest's log (and follows it with `follow`).
pub fn logs(g: &GuestArgs, follow: bool) -> io::Result<()> {
    let mut conn = BufReader::new(connect(g, &Request::Logs { follow })?);
    check_refusal(&mut conn)?;
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // NUL bytes are the guest's keep-alives while following.
        let text: Vec<u8> = buf[..n].iter().copied().filter(|&b| b != 0).collect();
        out.write_all(&text)?;
        out.flush()?;
    }
}

/// The terminal's size (rows, cols), if stdout or stdin is one.
fn window_size() -> Option<(u16, u16)> {
    let (out, stdin) = (io::stdout(), io::stdin());
    let size = [out.as_fd(), stdin.as_fd()]
        .into_iter()
        .filter_map(|fd| rustix::termios::tcgetwinsize(fd).ok())
        .find(|ws| ws.ws_row > 0)
        .map(|ws| (ws.ws_row, ws.ws_col));
    size
}

/// Puts the terminal on stdin in raw mode; restores it on drop.
struct RawMode(rustix::termios::Termios);

impl RawMode {
    fn enter() -> io::Result<RawMode> {
        use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};
        let saved = tcgetattr(io::stdin())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(io::stdin(), OptionalActions::Now, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(io::stdin(), rustix::termios::OptionalActions::Now, &self.0);
    }
}

/// The host half of the shell connection's writing side. Stdin and window
/// size frames come from two threads; each frame is written whole under
/// one lock, so they can never interleave on the wire.
struct Sender<W>(Arc<Mutex<W>>);

impl<W> Clone for Sender<W> {
    fn clone(&self) -> Self {
        Sender(Arc::clone(&self.0))
    }
}

impl<W: Write> Sender<W> {
    fn new(w: W) -> Self {
        Sender(Arc::new(Mutex::new(w)))
    }

    fn send(&self, msg: &Msg) -> io::Result<()> {
        let mut buf = Vec::new();
        shell::encode(msg, &mut buf);
        let mut w = self.0.lock().map_err(|_| io::Error::other("shell writer poisoned"))?;
        w.write_all(&buf)
    }
}

/// `skiff shell`: a root shell in the guest; returns its exit code.
pub fn shell(g: &GuestArgs, command: Option<String>, force_tty: bool) -> io::Result<i32> {
    let tty = io::stdin().is_terminal() && (command.is_none() || force_tty);
    let (rows, cols) = window_size().unwrap_or((24, 80));
    let start = Start { tty, rows, cols, term: std::env::var("TERM").unwrap_or_default(), command };
    let conn = connect(g, &Request::Shell)?;
    let sender = Sender::new(conn.try_clone()?);
    sender.send(&Msg::Start(start))?;
    let _raw = if tty { Some(RawMode::enter()?) } else { None };

    // stdin → guest, until EOF.
    let to_guest = sender.clone();
    threads::spawn("shell stdin", move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_guest.send(&Msg::Stdin(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = to_guest.send(&Msg::StdinEof);
    })?;
    // Window size changes, polled (no signal handler needed).
    if tty {
        let resize = sender.clone();
        threads::spawn("shell resize", move || {
            let mut last = window_size();
            loop {
                thread::sleep(Duration::from_millis(200));
                let now = window_size();
                if now != last {
                    if let Some((rows, cols)) = now {
                        if resize.send(&Msg::Resize { rows, cols }).is_err() {
                            return;
                        }
                    }
                    last = now;
                }
            }
        })?;
    }
    // guest → stdout/stderr, until the exit status.
    let mut conn = BufReader::new(conn);
    check_refusal(&mut conn)?;
    let (mut out, mut err) = (io::stdout(), io::stderr());
    loop {
        match shell::read_msg(&mut conn)? {
            Some(Msg::Stdout(d)) => {
                out.write_all(&d)?;
                out.flush()?;
            }
            Some(Msg::Stderr(d)) => {
                err.write_all(&d)?;
                err.flush()?;
            }
            Some(Msg::Exit(code)) => return Ok(code),
            Some(other) => return Err(io::Error::other(format!("unexpected message from the guest: {other:?}"))),
            None => return Err(io::Error::other("the guest closed the shell connection without an exit status")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::auth::{self, Secret};
    use std::os::unix::net::{UnixListener, UnixStream};

    /// The guest's side of one connection: the handshake with `secret`,
    /// then the request line.
    fn guest_accepts(listener: &UnixListener, secret: &Secret) -> (UnixStream, Vec<u8>) {
        let (mut s, _) = listener.accept().unwrap();
        let mut line = [0u8; auth::LINE_LEN];
        s.read_exact(&mut line).unwrap();
        let host = auth::parse_challenge(&line).unwrap();
        s.write_all(&auth::answer(secret, &host, &[6; auth::NONCE_LEN])).unwrap();
        let mut proof = [0u8; auth::PROOF_LEN];
        s.read_exact(&mut proof).unwrap();
        assert_eq!(auth::check_proof(&proof, secret, &host, &[6; auth::NONCE_LEN]), Ok(()));
        let request = skiff_proto::read_line(&mut s, 200).unwrap();
        (s, request)
    }

    #[test]
    fn rekey_hands_over_a_new_secret_and_every_later_connection_proves_it() {
        let path = crate::testutil::SocketPath::new("control-rekey", "guest.sock");
        let file = path.parent().unwrap().join("secret");
        let listener = UnixListener::bind(&*path).unwrap();
        let boot = Secret::from_bytes([0x3c; auth::SECRET_LEN]);
        secret::write(&file, &boot).unwrap();
        let target = Target::with_secret(Addr::Unix(path.to_path_buf()), Some(boot.clone()));
        let t = target.clone();
        let f = file.clone();
        let host = thread::spawn(move || rekey(&t, &f));
        let (mut s, request) = guest_accepts(&listener, &boot);
        let Ok(Request::Rekey(new)) = control::parse(&request) else { panic!("not a rekey: {request:?}") };
        assert!(!new.matches(&boot));
        s.write_all(b"OK\n").unwrap();
        host.join().unwrap().unwrap();
        assert_eq!(secret::read(&file).unwrap(), new, "other terminals read the new secret");
        // A clone made before the rekey (the bridge's) proves the new one too.
        let later = thread::spawn(move || target.connect(DEFAULT_CONTROL_PORT).map(|mut c| c.write_all(b"x\n")));
        let (_s, request) = guest_accepts(&listener, &new);
        assert_eq!(request, b"x");
        later.join().unwrap().unwrap().unwrap();
    }

    #[test]
    fn a_rekey_whose_answer_is_lost_is_checked_with_the_new_secret() {
        let path = crate::testutil::SocketPath::new("control-rekey-lost", "guest.sock");
        let file = path.parent().unwrap().join("secret");
        let listener = UnixListener::bind(&*path).unwrap();
        let boot = Secret::from_bytes([0x3e; auth::SECRET_LEN]);
        secret::write(&file, &boot).unwrap();
        let target = Target::with_secret(Addr::Unix(path.to_path_buf()), Some(boot.clone()));
        let f = file.clone();
        let host = thread::spawn(move || rekey(&target, &f));
        let (s, request) = guest_accepts(&listener, &boot);
        let Ok(Request::Rekey(new)) = control::parse(&request) else { panic!("not a rekey: {request:?}") };
        drop(s); // taken, but the OK never arrives
        let n = new.clone();
        let probe = thread::spawn(move || guest_accepts(&listener, &n).1);
        host.join().unwrap().expect("the guest took the new secret: the host must use it");
        assert_eq!(control::parse(&probe.join().unwrap()), Ok(Request::Status));
        assert_eq!(secret::read(&file).unwrap(), new);
    }

    #[test]
    fn a_refused_rekey_keeps_the_secret_file() {
        let path = crate::testutil::SocketPath::new("control-rekey-refused", "guest.sock");
        let file = path.parent().unwrap().join("secret");
        let listener = UnixListener::bind(&*path).unwrap();
        let boot = Secret::from_bytes([0x3d; auth::SECRET_LEN]);
        secret::write(&file, &boot).unwrap();
        let target = Target::with_secret(Addr::Unix(path.to_path_buf()), Some(boot.clone()));
        let f = file.clone();
        let host = thread::spawn(move || rekey(&target, &f));
        let (mut s, _) = guest_accepts(&listener, &boot);
        s.write_all(b"skiff: refused: bad request\n").unwrap();
        let e = host.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("bad request"), "{e}");
        assert_eq!(secret::read(&file).unwrap(), boot);
    }

    /// A writer that yields between bytes, to make interleaving likely.
    struct Slow(Vec<u8>);

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf[0]);
            thread::yield_now();
            Ok(1)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_from_two_threads_never_interleave() {
        let sender = Sender::new(Slow(Vec::new()));
        let threads: Vec<_> = (0..2u16)
            .map(|t| {
                let s = sender.clone();
                thread::spawn(move || {
                    for i in 0..200u16 {
                        let msg = if t == 0 { Msg::Stdin(vec![b'x'; 1 + usize::from(i % 7)]) } else { Msg::Resize { rows: i, cols: i } };
                        s.send(&msg).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let wire = std::mem::take(&mut sender.0.lock().unwrap().0);
        let mut r = &wire[..];
        let (mut stdin, mut resize) = (0, 0);
        while let Some(msg) = shell::read_msg(&mut r).expect("well-formed frames") {
            match msg {
                Msg::Stdin(d) => {
                    assert!(d.iter().all(|&b| b == b'x'));
                    stdin += 1;
                }
                Msg::Resize { rows, cols } => {
                    assert_eq!(rows, cols);
                    resize += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((stdin, resize), (200, 200));
    }
}
