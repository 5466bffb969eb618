//! A paused VM (QMP `stop`, as a hypervisor or a debugger pauses it; the
//! same as a laptop's sleep for the guest): pauses of 1 s, 45 s and 5 min.
//! During each, a docker call fails at once saying the VM is paused (no
//! connection is opened: one would break the vsock device); within 5 s of
//! the resume the guest's clock is the host's again (`skiff run` tells it
//! the time when QEMU reports RESUME; TCG has no PTP clock to follow), and
//! the engine, `skiff shell` and a published port answer.
//! SKIFF_TEST_PAUSES (e.g. `5,90`): other lengths in seconds, to look into a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skiff_tests::{busybox_image, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";
/// How soon after the resume everything must be right.
const RIGHT_WITHIN: Duration = Duration::from_secs(5);

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
