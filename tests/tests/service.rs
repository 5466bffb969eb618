//! PID 1 as a service manager, end to end: the engine is supervised and its
//! restart-policy containers come back, the debug shell and `skiff logs`
//! work over vsock, and a `cidata` config ISO configures the appliance.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::events::{Event, Note};
use skiff_tests::{busybox_image, names_all, Scratch, Vm};

/// Waits for the guest's engine-ready event: `skiff run` is ready once the
/// engine answers a ping and copies the events as they come, so the boot's
/// notes may still be on their way when it says so.
fn boot_events(vm: &Vm) {
    assert!(vm.wait_event(Duration::from_secs(60), |e| *e == Event::EngineReady), "no engine-ready event: {:?}", vm.events());
}

/// Waits up to `limit` for `f` to hold.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn engine_and_restart_always_containers_come_back_after_kill() {
    let scratch = Scratch::new("svc-kill");
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    vm.docker_ok(&["run", "-d", "--name", "keep", "--restart=always", "skiff-test/busybox", "sleep", "100000"]);
    let started = vm.docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", "keep"]);

    // The debug shell: exit status and stderr come back separately.
    let out = vm.skiff(&["shell", "-c", "echo out; echo err >&2; exit 3"], None);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let piped = vm.skiff(&["shell"], Some(b"id -u\nexit 4\n"));
    assert_eq!(piped.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), "0", "root shell");
    // PID 1 blocks the signals it takes with sigtimedwait; its children must
    // not inherit that mask (with it, `wait` never saw SIGCHLD and hung).
    let waited = vm.skiff(&["shell", "-c", "sleep 1 & wait; echo waited; grep SigBlk /proc/self/status"], None);
    let waited = String::from_utf8_lossy(&waited.stdout);
    assert!(waited.contains("waited") && waited.contains("SigBlk:\t0000000000000000"), "{waited}");

    // Kill the engine and the container's process while the engine is down:
    // the init restarts the engine, and the container is restarted by its
    // restart policy (conmon's exit command; the init's `podman start --all`
    // at engine readiness catches any it left stopped). The init must reap
    // the dead processes reparented to it for any of this to work.
    let killed = Instant::now();
    vm.shell_ok("kill -9 $(pidof podman) $(pidof sleep)");
    assert!(eventually(Duration::from_secs(120), || vm.ping()), "the API did not answer again");
    let back = killed.elapsed();
    eprintln!("service: engine killed -> API answering again: {:.2}s", back.as_secs_f64());
    let mut state = String::new();
    let restarted = eventually(Duration::from_secs(120), || {
        state = vm.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", "keep"]);
        state.starts_with("running ") && !state.contains(started.trim())
    });
    assert!(restarted, "the --restart=always container is not running again (state {state:?}, started before {started:?}); log:\n{}",
        String::from_utf8_lossy(&vm.skiff(&["logs"], None).stdout));
    eprintln!("service: engine killed -> container running again: {:.2}s", killed.elapsed().as_secs_f64());

    vm.wait_event(Duration::from_secs(30), |e| matches!(e, Event::EngineRestarting { .. }));
    let restarting = vm.events().into_iter().find_map(|s| match s.event {
        Event::EngineRestarting { reason } => Some((s.at, reason)),
        _ => None,
    });
    let (at, reason) = restarting.unwrap_or_default();
    assert_eq!(reason, "signal-9", "the host should hear why the engine restarts: {:?}", vm.events());
    // The init's own line about it: the one it logged just before the event
    // (same uptime clock) naming the signal. `skiff logs` and the log file
    // must carry that very line, uptime stamp and all.
    let console = vm.console();
    let said = logged_with(&console, at, "9");
    assert!(said.is_some(), "no console line of the init's names signal 9 at the engine's exit ({at:?}):\n{console}");
    let said = said.unwrap_or_default();
    eprintln!("service: the init said: {said}");
    // `skiff logs` has the init's lines and the engine's own output (docker load's progress).
    let logs = vm.skiff(&["logs"], None);
    assert!(logs.status.success());
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.lines().any(|l| l == said), "skiff logs lacks the init's line {said:?}:\n{logs}");
    assert!(logs.lines().any(|l| l.contains("] podman: ")), "no engine output in skiff logs:\n{logs}");
    // The log file on /var/lib/skiff (tmpfs here) has the same lines.
    let file = vm.shell_ok("cat /var/lib/skiff/log/skiff.log");
    assert!(file.lines().any(|l| l == said), "the log file lacks the init's line {said:?}");
    assert!(file.contains("] podman: "), "no engine output in the log file");
    vm.shutdown();
}

/// The console line the init logged (source `skiff`) at most a second
/// before guest uptime `at` that names the number `datum`, the last if
/// several: the init logs a fact, then emits its event, in one thread,
/// stamping both from the same clock. Found by time and data, not wording.
fn logged_with(console: &str, at: Duration, datum: &str) -> Option<String> {
    console
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            let Some((stamp, msg)) = l.strip_prefix('[').and_then(|l| l.split_once("] skiff: ")) else { return false };
            let Some((secs, micros)) = stamp.trim().split_once('.') else { return false };
            let (Ok(secs), Ok(micros)) = (secs.parse(), micros.parse()) else { return false };
            let t = Duration::from_secs(secs) + Duration::from_micros(micros);
            let named = msg.split(|c: char| !(c.is_ascii_digit() || c == '.')).any(|n| n == datum);
            t <= at && at - t <= Duration::from_secs(1) && named
        })
        .last()
        .map(str::to_string)
}

/// A self-signed CA certificate made with openssl, as PEM.
fn make_ca(dir: &Path) -> String {
    let (key, cert) = (dir.join("ca.key"), dir.join("ca.crt"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Skiff test CA"])
        .arg("-keyout").arg(&key).arg("-out").arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (install it: make deps)");
    assert!(status.success(), "openssl req failed");
    fs::read_to_string(cert).unwrap()
}

#[test]
fn cidata_iso_sets_hostname_and_config() {
    let scratch = Scratch::new("svc-cidata");
    let seed = scratch.0.join("seed");
    fs::create_dir_all(&seed).unwrap();
    let ca = make_ca(&scratch.0);
    fs::write(seed.join("meta-data"), "instance-id: skiff-test\nlocal-hostname: skiff-from-cidata\n").unwrap();
    fs::write(seed.join("user-data"), "#cloud-config\n").unwrap();
    fs::write(seed.join("skiff.toml"), format!(
        "registry_mirrors = [\"https://mirror.skiff.test\"]\n\
         insecure_registries = [\"registry.skiff.test:5000\"]\n\
         ca_certificates = ['''\n{ca}''']\n\
         engine_log_level = \"info\"\n\
         no_such_key = true\n\
         [sysctl]\n\"vm.swappiness\" = 7\n"
    )).unwrap();
    let iso = scratch.0.join("cidata.iso");
    let status = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-R", "-o"]).arg(&iso).arg(&seed)
        .status().expect("xorriso");
    assert!(status.success());
    let drive = format!("file={},media=cdrom,readonly=on", iso.display());
    let vm = Vm::boot_with(&scratch.0, &["--qemu-arg=-drive", &format!("--qemu-arg={drive}")]);

    assert_eq!(vm.docker_ok(&["info", "--format", "{{.Name}}"]).trim(), "skiff-from-cidata");
    assert_eq!(vm.shell_ok("hostname").trim(), "skiff-from-cidata");
    // Podman reports registries.conf in RegistryConfig.IndexConfigs (its
    // top-level Mirrors list stays empty).
    let reg = vm.docker_ok(&["info", "--format", "{{json .RegistryConfig.IndexConfigs}}"]);
    eprintln!("service: RegistryConfig.IndexConfigs = {}", reg.trim());
    assert!(reg.contains("\"Mirrors\":[\"mirror.skiff.test\"]"), "mirror missing: {reg}");
    assert!(reg.contains("\"registry.skiff.test:5000\":{\"Name\":\"registry.skiff.test:5000\",\"Mirrors\":[],\"Secure\":false"), "insecure registry missing: {reg}");
    let text = vm.docker_ok(&["info"]);
    assert!(text.contains("registry.skiff.test:5000"), "docker info lists insecure registries:\n{text}");
    // The CA is in the bundle the engine's TLS client reads.
    let body_line = ca.lines().nth(1).unwrap();
    assert!(vm.shell_ok("cat /etc/ssl/certs/ca-certificates.crt").contains(body_line), "CA not in the trust store");
    assert_eq!(vm.shell_ok("cat /proc/sys/vm/swappiness").trim(), "7");
    // Engine log level info: its lines show up in the log.
    let logs = String::from_utf8_lossy(&vm.skiff(&["logs"], None).stdout).into_owned();
    assert!(logs.contains("] podman: "), "no engine output at log level info:\n{logs}");
    boot_events(&vm);
    assert_eq!(vm.noted(Note::UnknownKey), ["no_such_key"], "the unknown key should be noted: {:?}", vm.events());
    assert!(names_all(&logs, &["no_such_key"]), "skiff logs should name the unknown key:\n{logs}");
    vm.shutdown();
}

/// The documented config file lives on the data disk: written once, it
/// applies at every later boot (registry mirror, CA certificate), and
/// `skiff.hostname` beats its `hostname`: that name is the only one ever set.
#[test]
fn config_file_on_the_data_disk_applies_at_next_boot() {
    let scratch = Scratch::new("svc-config-disk");
    let disk = scratch.0.join("data.img");
    skiff_tests::blank_disk(&disk, 1 << 30);
    let disk_arg = format!("--disk={}", disk.display());
    let ca = make_ca(&scratch.0);
    let config = format!(
        "hostname = \"skiff-from-disk\"\n\
         registry_mirrors = [\"https://mirror.disk.test\"]\n\
         ca_certificates = ['''\n{ca}''']\n"
    );

    let vm = Vm::boot_with(&scratch.0, &[&disk_arg]);
    boot_events(&vm);
    assert_eq!(vm.noted(Note::DiskMounted), ["/dev/vda1"], "the blank disk should be formatted and mounted: {:?}", vm.events());
    let out = vm.skiff(&["shell", "-c", "cat > /var/lib/skiff/config.toml"], Some(config.as_bytes()));
    assert!(out.status.success(), "writing the config failed: {}", String::from_utf8_lossy(&out.stderr));
    vm.shutdown();

    let vm = Vm::boot_with(&scratch.0, &[&disk_arg, "--kernel-arg", "skiff.hostname=skiff-from-cmdline"]);
    assert_eq!(vm.docker_ok(&["info", "--format", "{{.Name}}"]).trim(), "skiff-from-cmdline");
    let names = vm.shell_ok("hostname; cat /etc/hostname /etc/hosts");
    assert!(names.starts_with("skiff-from-cmdline\nskiff-from-cmdline\n"), "host name files: {names}");
    let hosts_line = names.lines().find(|l| l.starts_with("127.0.1.1 ")).unwrap_or_default();
    assert!(hosts_line.split(' ').any(|n| n == "skiff-from-cmdline"), "/etc/hosts: {names}");
    assert!(!names.contains("skiff-from-disk"), "the config's host name is in the files: {names}");
    boot_events(&vm);
    let set = vm.noted(Note::HostName);
    assert!(set.iter().any(|n| n == "skiff-from-cmdline"), "host name not reported: {set:?}");
    assert!(!set.iter().any(|n| n == "skiff-from-disk"), "the config's host name was set before the command line's: {set:?}");
    let reg = vm.docker_ok(&["info", "--format", "{{json .RegistryConfig.IndexConfigs}}"]);
    assert!(reg.contains("\"Mirrors\":[\"mirror.disk.test\"]"), "mirror missing: {reg}");
    let body_line = ca.lines().nth(1).unwrap();
    assert!(vm.shell_ok("cat /etc/ssl/certs/ca-certificates.crt").contains(body_line), "CA not in the trust store");
    vm.shutdown();
}
