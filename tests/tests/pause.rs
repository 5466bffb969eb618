//! A paused VM: while QEMU has the guest stopped, a docker call fails at
//! once saying so (no connection is opened: it would break the vsock
//! device); after 90 s and a resume, the guest's clock is the host's again
//! within 5 s (`skiff run` tells it the time when QEMU reports RESUME; TCG
//! has no PTP clock to follow), and `skiff shell` and the engine answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use skiff_tests::{Scratch, Vm};

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

/// The guest's clock, whole seconds, and the host's before and after reading it.
fn guest_secs(vm: &Vm) -> (u64, u64, u64) {
    let before = host_secs();
    let guest = vm.shell_ok("date +%s").trim().parse().expect("date +%s in the guest");
    (before, guest, host_secs())
}

#[test]
fn the_guest_clock_is_right_within_5_s_of_a_90_s_pause() {
    let scratch = Scratch::new("pause-clock");
    let vm = Vm::boot(&scratch.0);
    let (before, guest, after) = guest_secs(&vm);
    assert!(guest + 1 >= before && guest <= after + 1, "the guest clock is off before any pause: host {before}..{after}, guest {guest}");

    qmp(&vm.dir, &["stop"]);
    // SKIFF_TEST_PAUSE_SECS: another length, to look into a failure.
    let secs = std::env::var("SKIFF_TEST_PAUSE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(90);
    let paused = Instant::now();
    // A call made during the pause ends, with a message, and does not hang.
    let call = vm.docker(&["version", "--format", "{{.Server.Version}}"]);
    let said = format!("{}{}", String::from_utf8_lossy(&call.stdout), String::from_utf8_lossy(&call.stderr));
    eprintln!("pause: `docker version` during the pause: {} after {:.1} s: {}", call.status, paused.elapsed().as_secs_f64(), said.trim());
    assert!(!call.status.success() && said.contains("paused"), "a call during the pause should fail saying the VM is paused: {said}");
    thread::sleep(Duration::from_secs(secs).saturating_sub(paused.elapsed()));
    qmp(&vm.dir, &["cont"]);
    let resumed = Instant::now();
    loop {
        let (before, guest, after) = guest_secs(&vm);
        let right = guest + 1 >= before && guest <= after + 1;
        if right {
            eprintln!("pause: the guest clock was right {:.1} s after resuming", resumed.elapsed().as_secs_f64());
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(5), "5 s after a 90 s pause the guest clock is off: host {before}..{after}, guest {guest}");
        thread::sleep(Duration::from_millis(500));
    }
    assert!(!vm.docker_ok(&["version", "--format", "{{.Server.Version}}"]).trim().is_empty(), "the engine after the pause");
    vm.shutdown();
}
