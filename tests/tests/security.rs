//! Who can reach the guest, and whether PID 1 survives those who try: one
//! boot, many hostile cases. Only the host's user, holding the VM's secret,
//! is served; containers are never served; slow or numerous connections are
//! cut off or turned away and the engine answers again once they are gone.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::auth::{self, Secret};
use skiff_proto::events::{Event, Note};
use skiff_tests::{busybox_root, image_tar, raise_open_files, static_test_bin, Scratch, Vm};

const ENGINE: u32 = 2375;
const CONTROL: u32 = 2376;
/// The guest's per-port cap (init/src/services/vsock.rs MAX_CONNECTIONS).
const CAP: usize = 512;
const FLOOD: usize = 2000;
/// Silent (unauthenticated) connections held at once: more than the cap.
const SILENT: usize = 600;
const PING: &[u8] = skiff_proto::http::PING_REQUEST;
const FW_CFG_RAW: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/skiff/config/raw";

/// Sends `bytes` and reads the answer to its end (or 15 s).
fn exchange(mut s: UnixStream, bytes: &[u8]) -> String {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// Every file in the state folder is private, and the folder too.
fn check_state_folder_private(dir: &Path) {
    let mode = fs::metadata(dir).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "state folder {} is {mode:o}", dir.display());
    for name in ["secret", "console.log", "docker.sock", "qmp.sock"] {
        assert!(dir.join(name).exists(), "no {name} in the state folder");
    }
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        eprintln!("security: {:o} {}", mode, entry.file_name().to_string_lossy());
        assert_eq!(mode & 0o077, 0, "{} is open to others ({mode:o})", entry.path().display());
    }
}

/// The probe image: busybox and the static vsock client.
fn probe_image(dir: &Path) -> std::path::PathBuf {
    let probe = static_test_bin("vsock_probe");
    let root = dir.join("probe-root");
    busybox_root(&root);
    fs::copy(&probe, root.join("bin/vsock_probe")).unwrap();
    image_tar(dir, &root, "skiff-test/probe:latest", r#""Env":["PATH=/bin"],"Cmd":["sh"]"#)
}

/// Sends `bytes` one per second on `s` until the guest closes it; returns
/// how many were sent, the answer, and when the guest closed.
fn dribble(mut s: UnixStream, bytes: Vec<u8>) -> (usize, String, Duration) {
    let began = Instant::now();
    let reader = s.try_clone().unwrap();
    let got = thread::spawn(move || {
        let mut reply = Vec::new();
        let _ = (&reader).take(4096).read_to_end(&mut reply);
        (String::from_utf8_lossy(&reply).into_owned(), began.elapsed())
    });
    let mut sent = 0;
    for b in bytes {
        if got.is_finished() || s.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_secs(1));
    }
    let (reply, closed_after) = got.join().unwrap();
    (sent, reply, closed_after)
}

/// The secret in the fw_cfg item's text (`secret = "<64 hex>"`).
fn boot_secret(fw_cfg: &str) -> Option<Secret> {
    let line = fw_cfg.lines().find(|l| l.trim_start().starts_with("secret"))?;
    Secret::from_hex(line.split('"').nth(1)?).ok()
}

/// What became of one flood connection.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Fate {
    /// Still open, nothing received: being served.
    Held,
    /// Turned away with the "too many connections" answer.
    Busy,
    /// Closed without a word.
    Closed,
    /// Anything else (a failure of the test's expectations).
    Other,
}

/// A flood connection: the stream, and what was read of it in place of the
/// guest's handshake answer (empty once authenticated).
type Flooder = (UnixStream, Vec<u8>);

fn fate((s, head): &mut Flooder) -> (Fate, String) {
    s.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut text = std::mem::take(head);
    let closed = match s.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Ok(0) => true,
        Ok(n) => {
            text.extend_from_slice(&buf[..n]);
            false
        }
        Err(e) => return (Fate::Other, e.to_string()),
    };
    if text.is_empty() {
        return (if closed { Fate::Closed } else { Fate::Held }, String::new());
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let busy = text.starts_with("HTTP/1.1 503") && text.contains("skiff: refused: too many connections");
    (if busy { Fate::Busy } else { Fate::Other }, text)
}

/// Opens an engine connection that authenticates and then sends only part
/// of the framing preamble, so it is held by the guest's forwarder (until
/// its 10 s handshake deadline). A guest that answers the challenge with
/// anything else (a refusal) leaves that answer's first line with it.
fn flooder(vm: &Vm, secret: &Secret) -> std::io::Result<Flooder> {
    let mut s = vm.raw_vsock(ENGINE)?;
    let nonce = auth::nonce()?;
    s.write_all(&auth::challenge(&nonce))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = match skiff_proto::read_line(&mut s, 1024) {
        Ok(line) => line,
        // Closed without a word: the fate check sees it.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok((s, Vec::new())),
        Err(e) => return Err(e),
    };
    line.push(b'\n');
    s.set_read_timeout(None)?;
    match auth::check_answer(&line, secret, &nonce) {
        Ok(proof) => {
            s.write_all(&[proof.as_slice(), b"SKIFF-FRA"].concat())?;
            Ok((s, Vec::new()))
        }
        Err(_) => Ok((s, line)),
    }
}

/// Opens `n` [`flooder`]s with `threads` openers; returns them and the failures.
fn flood(vm: &Vm, secret: &Secret, n: usize, threads: usize) -> (Vec<Flooder>, Vec<std::io::Error>) {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    thread::scope(|scope| {
        for t in 0..threads {
            let (conns, errors) = (Arc::clone(&conns), Arc::clone(&errors));
            scope.spawn(move || {
                for _ in (t..n).step_by(threads) {
                    match flooder(vm, secret) {
                        Ok(s) => conns.lock().unwrap().push(s),
                        Err(e) => errors.lock().unwrap().push(e),
                    }
                }
            });
        }
    });
    let conns = std::mem::take(&mut *conns.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    (conns, errors)
}

/// A connection the vsock transport turned away before PID 1 saw it: closed
/// during the hybrid handshake (reported as refused), reset, or a broken pipe
/// while the handshake was being written.
fn transport_refusal(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// "N× message" for each distinct error, so a failed run shows every kind.
fn tally(errors: &[std::io::Error]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in errors {
        let text = format!("{:?}: {e}", e.kind());
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    counts.iter().map(|(t, n)| format!("{n}× {t}")).collect::<Vec<_>>().join("; ")
}

#[test]
fn only_the_host_with_the_secret_gets_in_and_pid1_cannot_be_exhausted() {
    let limit = raise_open_files();
    assert!(limit > (FLOOD as u64) * 2 + 100, "open-file limit {limit} too low for {FLOOD} connections");
    let scratch = Scratch::new("security");
    let probe = probe_image(&scratch.0);
    // A folder of its own, made by `skiff run` (the scratch folder holds the test's files).
    let vm = Vm::boot(&scratch.0.join("vm"));

    // --- The state folder and the secret's way into the guest.
    check_state_folder_private(&vm.dir);
    let secret = vm.secret().expect("skiff run writes DIR/secret");
    let hex = secret.to_hex();
    assert_eq!(vm.shell_ok(&format!("stat -c %a {FW_CFG_RAW}")).trim(), "400", "fw_cfg item must be root-only");
    // The guest got its boot secret by fw_cfg; `skiff run` replaced it once
    // the guest was up, so that copy (readable by privileged containers)
    // admits nobody.
    let fw_cfg = vm.shell_ok(&format!("cat {FW_CFG_RAW}"));
    let boot = boot_secret(&fw_cfg).expect("the guest did not get a secret by fw_cfg");
    assert!(!boot.matches(&secret) && !fw_cfg.contains(&hex), "the boot secret was not replaced: DIR/secret is the fw_cfg one");
    let e = auth::authenticate(&mut vm.raw_vsock(CONTROL).unwrap(), &boot, &auth::nonce().unwrap()).unwrap_err();
    assert!(e.to_string().contains("did not prove"), "the boot secret still admits: {e}");
    assert!(vm.wait_noted(Duration::from_secs(30), Note::SecretReplaced, "vsock"), "the guest did not report the rekey: {:?}", vm.events());
    assert!(!vm.shell_ok("cat /proc/cmdline").contains(&hex), "secret on the kernel command line");
    let qemu_argv = fs::read(format!("/proc/{}/cmdline", vm.qemu_pid().expect("QEMU pid"))).unwrap();
    assert!(!String::from_utf8_lossy(&qemu_argv).contains(&hex), "secret on QEMU's command line");

    // --- The engine port over the hybrid socket, as another local user
    // with access to it would try (kernel vhost-vsock gives every user that).
    let no_auth = exchange(vm.raw_vsock(ENGINE).unwrap(), PING);
    eprintln!("security: engine, no secret: {no_auth:?}");
    assert!(no_auth.starts_with("HTTP/1.1 403 Forbidden") && no_auth.contains("skiff: refused:"), "{no_auth}");
    // A stranger can start the handshake, but the guest's answer proves
    // nothing it can use: its tag sent back as the proof is refused.
    let mut s = vm.raw_vsock(ENGINE).unwrap();
    s.write_all(&auth::challenge(&[0x5a; auth::NONCE_LEN])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let answer = skiff_proto::read_line(&mut s, 200).unwrap();
    assert!(answer.starts_with(auth::PREFIX) && !String::from_utf8_lossy(&answer).contains(&hex[..16]), "{answer:?}");
    let echoed = exchange(s, &[&answer[answer.len() - 2 * auth::NONCE_LEN..], b"\n", PING].concat());
    eprintln!("security: engine, the guest's own tag as the proof: {echoed:?}");
    assert!(echoed.starts_with("HTTP/1.1 403 Forbidden") && echoed.contains("wrong secret"), "{echoed}");
    // A host with another secret: the guest does not prove itself to it.
    let wrong = Secret::from_bytes([0x5a; 32]);
    let e = auth::authenticate(&mut vm.raw_vsock(ENGINE).unwrap(), &wrong, &auth::nonce().unwrap()).unwrap_err();
    assert!(e.kind() == std::io::ErrorKind::PermissionDenied && e.to_string().contains("did not prove"), "{e}");
    let right = exchange(vm.authed_vsock(ENGINE).unwrap(), PING);
    assert!(right.starts_with("HTTP/1.1 200") || right.starts_with("HTTP/1.0 200"), "right secret: {right}");
    let docker_cli = vm.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(docker_cli.status.success(), "docker through DIR/docker.sock (the bridge sends the secret)");
    // The control port: no logs, no shell without the secret.
    for request in ["SKIFF-CONTROL/1 logs\n", "SKIFF-CONTROL/1 shell\n"] {
        let reply = exchange(vm.raw_vsock(CONTROL).unwrap(), request.as_bytes());
        eprintln!("security: control {:?}, no secret: {reply:?}", request.trim());
        assert!(reply.starts_with("skiff: refused: ") && !reply.contains("init"), "{reply}");
    }
    let wrong_file = scratch.0.join("wrong-secret");
    fs::write(&wrong_file, wrong.to_hex()).unwrap();
    let uds = vm.dir.join("vsock.sock");
    let with_wrong = vm.skiff(&["logs", "--uds", uds.to_str().unwrap(), "--secret-file", wrong_file.to_str().unwrap()], None);
    let said = String::from_utf8_lossy(&with_wrong.stderr);
    eprintln!("security: skiff logs with a wrong secret file: {}", said.trim());
    assert!(!with_wrong.status.success() && said.contains("did not prove it holds the VM's secret"), "{with_wrong:?}");

    // --- Slow senders, started now and checked later: an auth line and a
    // control request line, one byte per second each.
    let slow_auth = {
        let s = vm.raw_vsock(CONTROL).unwrap();
        thread::spawn(move || dribble(s, auth::challenge(&[7; auth::NONCE_LEN])))
    };
    let slow_request = {
        let s = vm.authed_vsock(CONTROL).unwrap();
        thread::spawn(move || dribble(s, b"SKIFF-CONTROL/1 logs follow\n".to_vec()))
    };

    // --- Containers: a static vsock client tries both ports on CID 1
    // (loopback) and on the guest's own CID 3; none may be served.
    vm.docker_ok(&["load", "-i", probe.to_str().unwrap()]);
    let out = vm.docker_ok(&["run", "--rm", "skiff-test/probe", "vsock_probe", "1:2375", "1:2376", "3:2375", "3:2376"]);
    eprintln!("security: container probe:\n{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("probe ")).collect();
    assert_eq!(lines.len(), 4, "{out}");
    for line in &lines {
        let served = line.contains("200 OK") || line.contains("podman") || line.contains("] ") || line.contains("Api-Version");
        assert!(!served, "a container was served: {line}");
        assert!(line.contains("connect failed") || line.contains("closed without a reply") || line.contains("refused"), "{line}");
    }
    let masked = vm.docker(&["run", "--rm", "skiff-test/probe", "cat", FW_CFG_RAW]);
    assert!(!masked.status.success() && !String::from_utf8_lossy(&masked.stdout).contains(&hex), "a container read the fw_cfg item");
    // The other ways a container could reach the fw_cfg item or PID 1:
    // none yields the secret that admits (only a privileged container,
    // root in the VM, can read PID 1's memory; see docs/security.md).
    let boot_hex = boot.to_hex();
    for (route, args, script) in [
        ("-v /:/host", &["-v", "/:/host"][..], format!("cat /host{FW_CFG_RAW}")),
        ("-v /sys:/s", &["-v", "/sys:/s"][..], format!("cat /s{}", FW_CFG_RAW.trim_start_matches("/sys"))),
        ("--cap-add SYS_ADMIN, mount -t sysfs", &["--cap-add", "SYS_ADMIN"][..],
            format!("mkdir /s && busybox mount -t sysfs sysfs /s && cat /s{}", FW_CFG_RAW.trim_start_matches("/sys"))),
        ("--pid host, /proc/1/root, environ, mem", &["--pid", "host"][..],
            format!("cat /proc/1/root{FW_CFG_RAW}; cat /proc/1/environ; dd if=/proc/1/mem bs=4096 count=1 skip=16 | sha256sum")),
        ("--privileged", &["--privileged"][..], format!("cat {FW_CFG_RAW}")),
    ] {
        let out = vm.docker(&[&["run", "--rm"][..], args, &["skiff-test/probe", "sh", "-c", &script]].concat());
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let got = if said.contains(&boot_hex) { "the boot secret (admits nobody now)" } else { "no secret" };
        eprintln!("security: container {route}: {got}; {:?}", said.lines().filter(|l| !l.contains(&boot_hex)).collect::<Vec<_>>());
        assert!(!said.contains(&hex), "a container ({route}) read the secret that admits");
    }

    let (sent, reply, after) = slow_auth.join().unwrap();
    eprintln!("security: slow auth line: {sent} bytes sent, closed after {:.1}s: {reply:?}", after.as_secs_f64());
    assert!(sent < auth::LINE_LEN && after < Duration::from_secs(12), "the slow auth line was not cut off");
    assert!(reply.starts_with("skiff: refused: "), "{reply}");
    let (sent, reply, after) = slow_request.join().unwrap();
    eprintln!("security: slow control request: {sent} bytes sent, closed after {:.1}s: {reply:?}", after.as_secs_f64());
    assert!(sent < 28 && after < Duration::from_secs(18), "the slow request line was not cut off");
    assert!(reply.starts_with("skiff: refused: bad request"), "{reply}");

    // --- A flood: FLOOD connections held from the host, plus an engine
    // restart while they are held.
    let began = Instant::now();
    let (mut conns, errors) = flood(&vm, &secret, FLOOD, 8);
    let opened_in = began.elapsed();
    eprintln!("security: opened {} connections in {:.1}s ({} failed: {})", conns.len(), opened_in.as_secs_f64(),
        errors.len(), tally(&errors));
    thread::sleep(Duration::from_secs(1)); // the last refusals are on their way
    let count = |fates: &[(Fate, String)], f: Fate| fates.iter().filter(|x| x.0 == f).count();
    let fates: Vec<(Fate, String)> = conns.iter_mut().map(fate).collect();
    let (held, busy, closed, other) = (count(&fates, Fate::Held), count(&fates, Fate::Busy), count(&fates, Fate::Closed), count(&fates, Fate::Other));
    eprintln!("security: flood: {held} held, {busy} turned away (503 too many connections), {closed} closed (handshake deadline), {other} other");
    if let Some((_, text)) = fates.iter().find(|x| x.0 == Fate::Other) {
        eprintln!("security: first other answer: {text:?}");
    }
    assert!(held <= CAP, "{held} connections served at once, above the cap of {CAP}");
    assert_eq!(other, 0, "unexpected answers");
    // The vsock transport (guest kernel / vhost-device-vsock) resets new
    // connections past some number in flight that varies from run to run
    // (425 with the guest's old accept queue of 128; 970-1541 since it is
    // 1024): when it stops the flood below the cap, the cap is not
    // exercised, and the run says so.
    let reached_cap = conns.len() > CAP;
    if !reached_cap {
        eprintln!("security: SKIPPED the cap checks: the vsock transport refused new connections after {} (below the cap of {CAP})", conns.len());
        if opened_in < Duration::from_secs(8) {
            assert_eq!((held, busy), (conns.len(), 0), "below the cap every connection must be served");
        }
    } else {
        if opened_in < Duration::from_secs(8) {
            // Nothing reached its handshake deadline yet: exactly the cap is held.
            assert_eq!((held, busy), (CAP, conns.len() - CAP), "the cap is not exact");
        }
        assert!(busy >= conns.len().saturating_sub(CAP + closed), "not every connection beyond the cap was clearly refused");
        assert!(busy > 0, "the flood did not reach the cap");
    }
    // Past a few hundred connections in flight, the vsock transport itself
    // (guest kernel / vhost-device-vsock) closes or resets new ones before
    // the hybrid handshake completes: not served either, and PID 1 never
    // sees them. Any other failure (a timeout, a garbled reply) is a fault.
    let unexpected: Vec<&std::io::Error> = errors.iter().filter(|e| !transport_refusal(e)).collect();
    assert!(unexpected.is_empty(), "unexpected connect errors: {unexpected:?}");
    // The held ones are cut by the handshake deadline: the slots come back.
    thread::sleep(Duration::from_secs(11));
    let fates: Vec<(Fate, String)> = conns.iter_mut().map(fate).collect();
    assert_eq!(count(&fates, Fate::Held), 0, "connections outlived the 10 s handshake deadline");

    // Engine restart while they are held; PID 1 and its shell stay up.
    let threads = vm.shell_ok("grep Threads /proc/1/status");
    eprintln!("security: PID 1 while flooded: {}", threads.trim());
    vm.shell_ok("kill -9 $(pidof podman)");
    drop(conns);
    let end = Instant::now() + Duration::from_secs(180);
    while !vm.ping() {
        assert!(Instant::now() < end, "the engine did not answer within 180s after the flood and restart");
        thread::sleep(Duration::from_millis(500));
    }
    let version = vm.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(version.status.success(), "docker version after the flood: {}", String::from_utf8_lossy(&version.stderr));
    let threads = vm.shell_ok("grep Threads /proc/1/status");
    eprintln!("security: PID 1 after the flood: {}", threads.trim());

    // --- Another local user holds silent connections (no auth line, more
    // than the port's places): they wait apart and never keep the owner out.
    let silent: Vec<UnixStream> = (0..SILENT).filter_map(|_| vm.raw_vsock(ENGINE).ok()).collect();
    eprintln!("security: holding {} silent connections to the engine port", silent.len());
    assert!(silent.len() > CAP, "only {} silent connections opened: the check needs more than {CAP}", silent.len());
    // Held past the guest's grace: now they are what a flooder keeps open.
    thread::sleep(Duration::from_millis(1500));
    let owner = vm.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(owner.status.success(), "silent connections crowded the owner out: {}", String::from_utf8_lossy(&owner.stderr));
    drop(silent);

    // --- What the guest reported (its events), and what its console never says.
    let capped = vm.noted(Note::ConnectionsCapped);
    assert!(!reached_cap || capped.iter().any(|p| *p == ENGINE.to_string()), "the cap on the engine port is not reported: {capped:?}");
    // Refusals on both ports: the engine's (no secret, the guest's own tag)
    // and the control port's (requests without the secret, the slow auth line).
    let refused = vm.noted(Note::ConnectionRefused);
    for port in [ENGINE, CONTROL] {
        assert!(refused.iter().any(|p| *p == port.to_string()), "auth refusals on port {port} are not reported: {refused:?}");
    }
    assert!(
        vm.events().iter().any(|s| s.event == Event::EngineRestarting { reason: "signal-9".into() }),
        "the engine's kill -9 is not reported: {:?}", vm.events()
    );
    let console = vm.console();
    let logs = String::from_utf8_lossy(&vm.skiff(&["logs"], None).stdout).into_owned();
    assert!(!console.contains(&hex) && !logs.contains(&hex), "the secret was logged");
    assert!(!console.contains("panicked") && !console.contains("Kernel panic"), "a panic on the console");
    vm.shutdown();
}
