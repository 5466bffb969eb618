//! A paused VM (QMP `stop`, as a hypervisor or a debugger pauses it; the
//! same as a laptop's sleep for the guest): pauses of 1 s, 45 s and 5 min.
//! During each, a docker call fails at once saying the VM is paused (skiff
//! opens no connection into a stopped VM); within 5 s of the resume the
//! guest's clock is the host's again (`skiff run` tells it the time when
//! QEMU reports RESUME; TCG has no PTP clock to follow), and the engine,
//! `skiff shell` and a published port answer.
//! A program that is not skiff (a user's `socat`) may dial the vsock device
//! while its queues are not running, during boot or a pause: the device
//! keeps serving (vhost-device-vsock 0.3.0 lost its worker thread to such a
//! connection; vsockdev/patches/0001).
//! SKIFF_TEST_PAUSES (e.g. `5,90`): other lengths in seconds, to look into a failure.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skiff_tests::{busybox_image, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";
/// How soon after the resume everything must be right.
const RIGHT_WITHIN: Duration = Duration::from_secs(5);
/// How soon after the resume a connection made during the pause is answered.
const DIAL_ANSWERED_WITHIN: Duration = Duration::from_secs(2);

/// Runs QMP commands on the VM's power-button socket (free between `skiff stop`s).
fn qmp(dir: &Path, commands: &[&str]) {
    let sock = UnixStream::connect(dir.join("qmp.sock")).expect("connect to QMP");
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut writer = sock;
    let mut line = String::new();
    reader.read_line(&mut line).expect("QMP greeting");
    for cmd in ["qmp_capabilities"].iter().chain(commands) {
        writer.write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes()).unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("QMP reply");
            if line.contains("\"return\"") {
                break;
            }
            assert!(!line.contains("\"error\""), "QMP {cmd}: {line}");
        }
    }
}

fn host_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// True if the guest's clock (whole seconds, `date +%s`) lies within a
/// second of the host's readings before and after it; None if the shell
/// did not answer.
fn clock_right(vm: &Vm) -> Option<bool> {
    let before = host_secs();
    let out = vm.skiff(&["shell", "-c", "date +%s"], None);
    let guest: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let after = host_secs();
    if guest + 1 < before || guest > after + 1 {
        eprintln!("pause: guest clock {guest}, host {before}..{after}");
        return Some(false);
    }
    Some(true)
}

/// `GET /` on the published port answers with the container's page.
fn port_answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains(" 200 ") && answer.contains("paused and back")
}

fn engine_answers(vm: &Vm) -> bool {
    let out = vm.docker(&["version", "--format", "{{.Server.Version}}"]);
    out.status.success() && !out.stdout.trim_ascii().is_empty()
}

/// One pause of `secs`, a docker call during it, and the checks after it.
fn pause_and_resume(vm: &Vm, secs: u64, web: SocketAddr) {
    qmp(&vm.dir, &["stop"]);
    let paused = Instant::now();
    let call = vm.docker(&["version", "--format", "{{.Server.Version}}"]);
    let said = format!("{}{}", String::from_utf8_lossy(&call.stdout), String::from_utf8_lossy(&call.stderr));
    eprintln!("pause {secs} s: `docker version` during the pause: {} after {:.1} s: {}", call.status, paused.elapsed().as_secs_f64(), said.trim());
    assert!(!call.status.success() && said.contains("paused"), "a call during the pause should fail saying the VM is paused: {said}");
    thread::sleep(Duration::from_secs(secs).saturating_sub(paused.elapsed()));
    qmp(&vm.dir, &["cont"]);
    let resumed = Instant::now();
    let (mut clock, mut engine, mut port) = (None, None, None);
    while resumed.elapsed() < RIGHT_WITHIN && (clock.is_none() || engine.is_none() || port.is_none()) {
        if clock.is_none() && clock_right(vm) == Some(true) {
            clock = Some(resumed.elapsed());
        }
        if engine.is_none() && engine_answers(vm) {
            engine = Some(resumed.elapsed());
        }
        if port.is_none() && port_answers(web) {
            port = Some(resumed.elapsed());
        }
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("pause {secs} s: after the resume: clock and shell right {clock:?}, engine {engine:?}, published port {port:?}");
    assert!(clock.is_some(), "{RIGHT_WITHIN:?} after a {secs} s pause the guest clock is off (or `skiff shell` does not answer)");
    assert!(engine.is_some(), "{RIGHT_WITHIN:?} after a {secs} s pause the engine does not answer");
    assert!(port.is_some(), "{RIGHT_WITHIN:?} after a {secs} s pause the published port does not answer");
}

#[test]
fn pauses_of_1_s_45_s_and_5_min_leave_the_vm_reachable_and_its_clock_right() {
    let scratch = Scratch::new("pause");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let publish = format!("{port}:8080");
    vm.docker_ok(&["run", "-d", "--name", "web", "-p", &publish, IMAGE, "sh", "-c",
        "mkdir -p /www && echo 'paused and back' > /www/index.html && exec httpd -f -p 8080 -h /www"]);
    let web = SocketAddr::from(([127, 0, 0, 1], port));
    let began = Instant::now();
    while !port_answers(web) {
        assert!(began.elapsed() < Duration::from_secs(60), "the published port never answered");
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(clock_right(&vm), Some(true), "the guest clock is off before any pause");

    let pauses: Vec<u64> = std::env::var("SKIFF_TEST_PAUSES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 45, 300]);
    for secs in pauses {
        pause_and_resume(&vm, secs, web);
    }
    vm.shutdown();
}

/// What one dial of the hybrid-vsock socket met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dial {
    /// No socket to connect to (the device not started yet).
    NoSocket,
    /// Closed without an answer (no guest memory yet, or nothing listens).
    Closed,
    /// `OK <port>`: the guest accepted.
    Answered,
    /// No answer within the dial's limit.
    Silent,
    /// `connect` itself did not return (a device that no longer accepts).
    Stuck,
}

/// One connection to the engine port as a program that is not skiff makes
/// it: `CONNECT 2375` on the hybrid-vsock socket, and the answer within
/// `limit`.
fn dial(sock: &Path, limit: Duration) -> Dial {
    let (tx, rx) = mpsc::channel();
    let sock = sock.to_path_buf();
    // In a thread of its own: connect blocks once a dead device's backlog is full.
    thread::spawn(move || {
        let outcome = match UnixStream::connect(&sock) {
            Err(_) => Dial::NoSocket,
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(limit));
                match skiff_proto::hybrid::handshake(&mut s, skiff_proto::DEFAULT_ENGINE_PORT) {
                    Ok(_) => Dial::Answered,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Dial::Silent,
                    Err(_) => Dial::Closed,
                }
            }
        };
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(limit + Duration::from_secs(2)).unwrap_or(Dial::Stuck)
}

/// Dials `sock` over and over until stopped or answered (the guest's init
/// listens by then: the device's queues are long set up); the outcomes,
/// counted.
struct Dialer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<(Dial, usize)>>,
}

impl Dialer {
    fn start(sock: PathBuf) -> Dialer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut seen: Vec<(Dial, usize)> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let outcome = dial(&sock, Duration::from_millis(300));
                match seen.iter_mut().find(|(d, _)| *d == outcome) {
                    Some((_, n)) => *n += 1,
                    None => seen.push((outcome, 1)),
                }
                match outcome {
                    Dial::Answered => break,
                    Dial::NoSocket => thread::sleep(Duration::from_millis(50)),
                    _ => {}
                }
            }
            seen
        });
        Dialer { stop, thread }
    }

    fn stop(self) -> Vec<(Dial, usize)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("dialer thread")
    }
}

/// How long after `since` the engine (`/_ping` through skiff's bridge) and
/// `skiff shell` answered, each None if not within [`RIGHT_WITHIN`].
fn skiff_reaches(vm: &Vm, since: Instant) -> (Option<Duration>, Option<Duration>) {
    let (mut engine, mut shell) = (None, None);
    while since.elapsed() < RIGHT_WITHIN && (engine.is_none() || shell.is_none()) {
        if engine.is_none() && vm.ping() {
            engine = Some(since.elapsed());
        }
        if shell.is_none() && vm.skiff(&["shell", "-c", "echo here"], None).stdout.starts_with(b"here") {
            shell = Some(since.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    (engine, shell)
}

#[test]
fn a_program_that_is_not_skiff_dialing_during_boot_or_a_pause_leaves_the_vm_reachable() {
    let scratch = Scratch::new("pause-dial");
    // From before QEMU starts until the engine answers: through the time
    // the device has the guest's memory but the guest's driver has not set
    // its queues up yet.
    let dialer = Dialer::start(scratch.0.join("vsock.sock"));
    let vm = Vm::boot(&scratch.0);
    let booted = Instant::now();
    let dials = dialer.stop();
    eprintln!("pause: dials of the vsock device during the boot: {dials:?}");
    assert!(dials.iter().any(|(d, _)| *d == Dial::Answered), "no dial during the boot was answered by the guest: {dials:?}");
    let (engine, shell) = skiff_reaches(&vm, booted);
    eprintln!("pause: after the boot: engine {engine:?}, skiff shell {shell:?}");
    assert!(engine.is_some() && shell.is_some(), "after a boot with foreign dials, skiff does not reach the guest");

    // While QEMU has the VM (and the device's queues) stopped.
    qmp(&vm.dir, &["stop"]);
    let sock = vm.dir.join("vsock.sock");
    let during = thread::spawn(move || dial(&sock, Duration::from_secs(20)));
    thread::sleep(Duration::from_secs(3));
    qmp(&vm.dir, &["cont"]);
    let resumed = Instant::now();
    let outcome = during.join().expect("dial thread");
    eprintln!("pause: the dial made during the pause: {outcome:?}, {:.1} s after the resume", resumed.elapsed().as_secs_f64());
    assert_eq!(outcome, Dial::Answered, "a connection made during the pause is not answered after the resume");
    assert!(resumed.elapsed() < DIAL_ANSWERED_WITHIN, "the connection made during the pause took {:?} after the resume", resumed.elapsed());
    let (engine, shell) = skiff_reaches(&vm, resumed);
    eprintln!("pause: after the resume: engine {engine:?}, skiff shell {shell:?}");
    assert!(engine.is_some() && shell.is_some(), "after a foreign dial during a pause, skiff does not reach the guest");
    vm.shutdown();
}
