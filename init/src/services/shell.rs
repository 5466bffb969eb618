//! The debug shell behind `skiff shell`: busybox `sh` as root, on a PTY
//! when the host has a terminal (else on pipes), spoken over the control
//! port in `skiff_proto::shell` frames. Reachable only over vsock from the
//! host: there is no TCP listener and no password login.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal};
use rustix::pty::OpenptFlags;
use rustix::termios::{tcsetwinsize, Winsize};
use skiff_proto::shell::{self, Msg, Start};
use vsock::VsockStream;

use crate::supervise::children;
use crate::services::vsock::{ReadBy, Slot};

const SH: &str = "/usr/bin/sh";
/// Shells running at once; more are refused with a message.
pub const MAX_SHELLS: usize = 8;
/// How long a connection may stay open without starting a session.
const START_LIMIT: Duration = Duration::from_secs(30);
static SHELLS: AtomicUsize = AtomicUsize::new(0);
/// How long output may keep coming after the shell exited (background jobs
/// holding the terminal open must not keep the session forever).
const DRAIN: Duration = Duration::from_secs(2);

type Writer = Arc<Mutex<VsockStream>>;

fn send(w: &Writer, msg: &Msg) -> io::Result<()> {
    let mut buf = Vec::new();
    shell::encode(msg, &mut buf);
    w.lock().unwrap_or_else(|e| e.into_inner()).write_all(&buf)
}

/// A running shell: where its input goes and how to resize it.
struct Session {
    pid: Pid,
    input: Option<Box<dyn Write + Send>>,
    /// The PTY master, for window size changes (PTY sessions only).
    master: Option<Arc<OwnedFd>>,
    exited: Receiver<std::process::ExitStatus>,
    /// One message per output stream when it ends.
    outputs_done: Receiver<()>,
    outputs: usize,
}

/// Serves one shell connection (after the control request line).
pub fn serve(stream: VsockStream) {
    if let Err(e) = run(stream) {
        log::info!("shell: session ended: {e}");
    }
}

fn run(mut stream: VsockStream) -> io::Result<()> {
    let start = match shell::read_msg(&mut ReadBy::new(&mut stream, Instant::now() + START_LIMIT))? {
        Some(Msg::Start(s)) => s,
        other => return Err(io::Error::other(format!("expected a start message, got {other:?}"))),
    };
    stream.set_read_timeout(None)?;
    let writer: Writer = Arc::new(Mutex::new(stream.try_clone()?));
    let Some(_slot) = Slot::take(&SHELLS, MAX_SHELLS) else {
        log::warn!("shell: {MAX_SHELLS} shells running; refusing another");
        send(&writer, &Msg::Stderr(format!("skiff: refused: too many shells ({MAX_SHELLS} running)\r\n").into_bytes()))?;
        return send(&writer, &Msg::Exit(126));
    };
    let session = match if start.tty { spawn_pty(&start, &writer) } else { spawn_pipes(&start, &writer) } {
        Ok(s) => s,
        Err(e) => {
            log::warn!("shell: cannot start {SH}: {e}");
            send(&writer, &Msg::Stderr(format!("skiff: cannot start {SH}: {e}\r\n").into_bytes()))?;
            return send(&writer, &Msg::Exit(127));
        }
    };
    log::info!("shell: started {} (pid {}, {})", start.command.as_deref().map_or("an interactive shell".into(), |c| format!("sh -c {c:?}")),
        session.pid.as_raw_nonzero(), if start.tty { "pty" } else { "pipes" });
    let Session { pid, input, master, exited, outputs_done, outputs } = session;
    // Host → shell in a thread of its own; this (the parent) thread waits
    // for the shell, drains its output and sends the exit status.
    let reader = match thread::Builder::new().name("shell-input".into()).spawn(move || feed(stream, input, master)) {
        Ok(r) => Some(r),
        Err(e) => {
            log::error!("shell: cannot start the input thread: {e}; ending the session");
            let _ = send(&writer, &Msg::Stderr(format!("skiff: cannot start the session: {e}\r\n").into_bytes()));
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            None
        }
    };
    let status = children::wait(pid, &exited, Duration::MAX);
    for _ in 0..outputs {
        if outputs_done.recv_timeout(DRAIN).is_err() {
            break;
        }
    }
    let code = status.map_or(255, |s| shell::exit_code(s.code(), std::os::unix::process::ExitStatusExt::signal(&s)));
    log::info!("shell: pid {} exited with {code}", pid.as_raw_nonzero());
    let _ = send(&writer, &Msg::Exit(code));
    let _ = writer.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Both);
    if let Some(r) = reader {
        let _ = r.join();
    }
    Ok(())
}

/// Host → shell: stdin, its end, and window size changes. If the host goes
/// away while the shell runs, the shell's session gets SIGHUP.
fn feed(mut stream: VsockStream, mut input: Option<Box<dyn Write + Send>>, master: Option<Arc<OwnedFd>>) {
    loop {
        match shell::read_msg(&mut stream) {
            Ok(Some(Msg::Stdin(data))) => {
                if let Some(i) = input.as_mut() {
                    if i.write_all(&data).and_then(|()| i.flush()).is_err() {
                        input = None;
                    }
                }
            }
            Ok(Some(Msg::StdinEof)) => match &master {
                // On a terminal, end of input is the EOF character.
                Some(_) => drop(input.as_mut().map(|i| i.write_all(b"\x04"))),
                None => input = None,
            },
            Ok(Some(Msg::Resize { rows, cols })) => {
                if let Some(m) = &master {
                    let _ = tcsetwinsize(&**m, winsize(rows, cols));
                }
            }
            Ok(Some(other)) => log::debug!("shell: ignoring {other:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    // Hang up on the session (a no-op once the shell is gone).
    if let Some(m) = &master {
        let _ = rustix::termios::tcgetpgrp(&**m).map(|pg| rustix::process::kill_process_group(pg, Signal::HUP));
    }
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

fn command(start: &Start) -> Command {
    let mut cmd = Command::new(SH);
    match &start.command {
        Some(c) => cmd.arg("-c").arg(c),
        None => cmd.arg("-l"),
    };
    let term = if start.term.is_empty() { "vt100" } else { &start.term };
    cmd.env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("SHELL", SH)
        .env("TERM", term)
        .env("PS1", "skiff:\\w# ")
        .current_dir("/root");
    cmd
}

/// Copies one output stream of the shell to the host as `wrap` messages.
fn pump(mut from: impl Read + Send + 'static, w: Writer, wrap: fn(Vec<u8>) -> Msg, done: mpsc::Sender<()>) -> io::Result<()> {
    thread::Builder::new().name("shell-output".into()).spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        // A PTY master reads EIO once the last slave fd is closed.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || send(&w, &wrap(buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = done.send(());
    })?;
    Ok(())
}

/// Kills a shell whose session could not be set up, and passes the error on.
fn abandon(pid: Pid, e: io::Error) -> io::Error {
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    e
}

fn spawn_pty(start: &Start, w: &Writer) -> io::Result<Session> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    if start.rows > 0 && start.cols > 0 {
        tcsetwinsize(&master, winsize(start.rows, start.cols))?;
    }
    let mut cmd = command(start);
    cmd.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
    // SAFETY: setsid(2) and ioctl(TIOCSCTTY) are async-signal-safe syscalls
    // that touch no memory of the parent; they run in the forked child only.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
    let (child, exited) = children::spawn(&mut cmd)?;
    drop(cmd); // closes our copies of the slave side
    let master = Arc::new(master);
    let (done_tx, outputs_done) = mpsc::channel();
    let pid = Pid::from_child(&child);
    let reader = File::from(master.try_clone().map_err(|e| abandon(pid, e))?);
    pump(reader, w.clone(), Msg::Stdout, done_tx).map_err(|e| abandon(pid, e))?;
    let input: Box<dyn Write + Send> = Box::new(File::from(master.try_clone().map_err(|e| abandon(pid, e))?));
    Ok(Session { pid, input: Some(input), master: Some(master), exited, outputs_done, outputs: 1 })
}

fn spawn_pipes(start: &Start, w: &Writer) -> io::Result<Session> {
    let mut cmd = command(start);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setsid(2) is an async-signal-safe syscall run in the child only;
    // a session of its own lets a host hang-up reach the shell's jobs.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let (mut child, exited) = children::spawn(&mut cmd)?;
    let (done_tx, outputs_done) = mpsc::channel();
    let pid = Pid::from_child(&child);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(abandon(pid, io::Error::other("no output pipes")));
    };
    pump(stdout, w.clone(), Msg::Stdout, done_tx.clone()).map_err(|e| abandon(pid, e))?;
    pump(stderr, w.clone(), Msg::Stderr, done_tx).map_err(|e| abandon(pid, e))?;
    let input = child.stdin.take().map(|i| Box::new(i) as Box<dyn Write + Send>);
    Ok(Session { pid, input, master: None, exited, outputs_done, outputs: 2 })
}
