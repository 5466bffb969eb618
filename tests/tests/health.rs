//! Container healthchecks, end to end, as Docker runs them: `docker run
//! --health-cmd` in the guest, `docker inspect` on the host. A check that
//! succeeds makes the container `healthy`, one that fails makes it
//! `unhealthy` after its retries, one slower than its timeout counts as
//! failed, failures within the start period do not count; every check is
//! in `State.Health.Log`. A stopped container is
//! checked no more, and checks resume after the engine crashes and comes
//! back. (Podman runs checks from systemd timers; the appliance's init is
//! their clock.)

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_proto::events::Note;
use skiff_tests::{busybox_image, root, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";

/// Why this suite cannot run here, if it cannot: then it says so, loudly.
fn missing() -> Option<String> {
    let iso = std::env::var_os("SKIFF_ISO").map(Into::into).unwrap_or_else(|| root().join("out/skiff.iso"));
    if !Path::new(&iso).is_file() {
        return Some(format!("no ISO at {} (run `make iso`)", Path::new(&iso).display()));
    }
    if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
        return Some("no qemu-system-x86_64 (run `make deps`)".into());
    }
    None
}

/// Waits up to `limit` for `f` to hold.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(500));
    }
    false
}

/// `State.Health` of container `name`, as `docker inspect` shows it.
fn health(vm: &Vm, name: &str) -> Value {
    let json = vm.docker_ok(&["inspect", "-f", "{{json .State.Health}}", name]);
    serde_json::from_str(json.trim()).unwrap_or(Value::Null)
}

fn status(h: &Value) -> &str {
    h["Status"].as_str().unwrap_or("")
}

fn log(h: &Value) -> Vec<Value> {
    h["Log"].as_array().cloned().unwrap_or_default()
}

/// Waits for container `name`'s health to reach `want`; panics with the
/// health and the guest's log if it does not.
fn wait_status(vm: &Vm, name: &str, want: &str, limit: Duration) -> Value {
    let started = Instant::now();
    let mut h = Value::Null;
    if eventually(limit, || {
        h = health(vm, name);
        status(&h) == want
    }) {
        eprintln!("health: {name} {want} after {:.1}s", started.elapsed().as_secs_f64());
        return h;
    }
    panic!("{name} not {want} after {limit:?}: {h}\nguest log:\n{}", String::from_utf8_lossy(&vm.skiff(&["logs"], None).stdout));
}

/// When the last check of container `name` started (the log keeps the
/// last few checks only, so its length stops growing).
fn last_check(vm: &Vm, name: &str) -> String {
    log(&health(vm, name)).last().map(|e| e["Start"].to_string()).unwrap_or_default()
}

/// Container `name`'s short id (12 hex digits), as the guest's notes name it.
fn short_id(vm: &Vm, name: &str) -> String {
    let id = vm.docker_ok(&["inspect", "-f", "{{.Id}}", name]);
    let id = id.trim();
    assert!(id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()), "docker inspect {name}: id {id:?}");
    id[..12].to_string()
}

#[test]
fn healthchecks_run_as_docker_runs_them() {
    if let Some(why) = missing() {
        eprintln!("\n*** SKIPPED healthchecks_run_as_docker_runs_them: {why} ***\n");
        return;
    }
    let scratch = Scratch::new("health");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let run = |name: &str, health: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--network", "none", "--health-interval", "1s"];
        args.extend_from_slice(health);
        args.extend_from_slice(&[IMAGE, "sleep", "100000"]);
        vm.docker_ok(&args);
    };
    run("fine", &["--health-cmd", "echo all fine"]);
    run("sick", &["--health-cmd", "echo not well; exit 1", "--health-retries", "2"]);
    run("slow", &["--health-cmd", "sleep 20", "--health-timeout", "2s", "--health-retries", "1"]);
    run("early", &["--health-cmd", "exit 1", "--health-retries", "1", "--health-start-period", "10m"]);
    vm.docker_ok(&["run", "-d", "--name", "plain", "--network", "none", IMAGE, "sleep", "100000"]);
    let (fine_id, sick_id, plain_id) = (short_id(&vm, "fine"), short_id(&vm, "sick"), short_id(&vm, "plain"));

    // A check that succeeds: healthy, its output and exit code in the log.
    let h = wait_status(&vm, "fine", "healthy", Duration::from_secs(120));
    let entry = log(&h).last().cloned().unwrap_or_default();
    assert_eq!(entry["ExitCode"], 0, "{h}");
    assert!(entry["Output"].as_str().unwrap_or("").contains("all fine"), "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");

    // A check that fails: unhealthy once it failed `retries` times in a row.
    let h = wait_status(&vm, "sick", "unhealthy", Duration::from_secs(120));
    assert!(h["FailingStreak"].as_u64().unwrap_or(0) >= 2, "unhealthy before 2 failures: {h}");
    assert!(log(&h).iter().all(|e| e["ExitCode"] == 1 && e["Output"].as_str().unwrap_or("").contains("not well")), "{h}");
    // (`slow` may be unhealthy by now too: its probe is killed at 2 s.)
    let unhealthy = vm.docker_ok(&["ps", "--filter", "health=unhealthy", "--format", "{{.Names}}"]);
    assert!(unhealthy.lines().any(|n| n == "sick") && !unhealthy.lines().any(|n| n == "fine"), "docker ps --filter health=unhealthy: {unhealthy}");

    // A check slower than its timeout counts as failed.
    let h = wait_status(&vm, "slow", "unhealthy", Duration::from_secs(120));
    let entry = log(&h).last().cloned().unwrap_or_default();
    assert_ne!(entry["ExitCode"], 0, "{h}");
    eprintln!("health: a check over its timeout is logged as {entry}");
    vm.docker_ok(&["rm", "-f", "slow"]);

    // Failures within the start period do not count: still starting.
    let mut h = Value::Null;
    assert!(eventually(Duration::from_secs(60), || {
        h = health(&vm, "early");
        log(&h).len() >= 2
    }), "early was not checked: {h}");
    assert_eq!((status(&h), &h["FailingStreak"]), ("starting", &Value::from(0)), "{h}");
    vm.docker_ok(&["rm", "-f", "early"]);

    // No healthcheck, no health.
    assert_eq!(vm.docker_ok(&["inspect", "-f", "{{json .State.Health}}", "plain"]).trim(), "null");

    // Stopped: no more checks (the last one stays the last).
    vm.docker_ok(&["stop", "-t", "1", "fine"]);
    let last = last_check(&vm, "fine");
    thread::sleep(Duration::from_secs(6));
    assert_eq!(last_check(&vm, "fine"), last, "a stopped container was checked");

    // The engine crashes and comes back: the running containers' checks resume.
    vm.shell_ok("kill -9 $(pidof podman)");
    assert!(eventually(Duration::from_secs(120), || vm.ping()), "the API did not answer again");
    let back = Instant::now();
    let before = last_check(&vm, "sick");
    assert!(eventually(Duration::from_secs(60), || last_check(&vm, "sick") != before), "no check after the engine came back");
    eprintln!("health: first check {:.1}s after the engine answered again", back.elapsed().as_secs_f64());
    assert_eq!(status(&health(&vm, "sick")), "unhealthy");
    assert_eq!(last_check(&vm, "fine"), last, "a stopped container was checked after the engine restart");

    // The guest's own account: which containers its clock watched, and
    // that it stopped watching the stopped one.
    let console = vm.console();
    eprintln!("health: the guest said:\n{}", console.lines().filter(|l| l.contains("health:")).collect::<Vec<_>>().join("\n"));
    assert!(vm.wait_noted(Duration::from_secs(30), Note::HealthStopped, &fine_id), "no health-stopped note for fine ({fine_id}): {:?}", vm.noted(Note::HealthStopped));
    // Watched at the start, and sick watched again once the engine came
    // back (the timers went with the engine).
    let mut watched = Vec::new();
    eventually(Duration::from_secs(30), || {
        watched = vm.noted(Note::HealthWatching);
        watched.iter().filter(|w| **w == sick_id).count() >= 2
    });
    assert!(watched.contains(&fine_id), "no health-watching note for fine ({fine_id}): {watched:?}");
    assert!(watched.iter().filter(|w| **w == sick_id).count() >= 2, "sick ({sick_id}) not watched again after the restart: {watched:?}");
    assert!(!watched.contains(&plain_id), "plain ({plain_id}) has no healthcheck but was watched: {watched:?}");
    vm.shutdown();
}

/// A probe still running at `--health-timeout` is killed then, and the
/// check is logged as Docker logs it: ExitCode -1, "Health check exceeded
/// timeout (2s)". (Podman 5.4 waited for the probe to end: `sleep 777`
/// kept its check open for 777 s; engine/patches/0005.)
#[test]
fn a_probe_past_its_timeout_is_killed() {
    if let Some(why) = missing() {
        eprintln!("\n*** SKIPPED a_probe_past_its_timeout_is_killed: {why} ***\n");
        return;
    }
    let scratch = Scratch::new("health-timeout");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    vm.docker_ok(&[
        "run", "-d", "--name", "stuck", "--network", "none", "--health-cmd", "sleep 777", "--health-timeout", "2s",
        "--health-interval", "5s", "--health-retries", "1", IMAGE, "sleep", "100000",
    ]);
    let started = Instant::now();
    let mut h = Value::Null;
    let checked = eventually(Duration::from_secs(90), || {
        h = health(&vm, "stuck");
        !log(&h).is_empty()
    });
    // The probe's processes, seen from the guest right after the check was logged
    // (the next probe starts 5 s after it).
    let probes = vm.shell_ok("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 777 $' || true");
    assert!(checked, "no check logged {:?} after the container started (the probe runs 777 s): {h}", started.elapsed());
    eprintln!("health: a check past its timeout logged after {:.1}s: {h}", started.elapsed().as_secs_f64());
    let entry = log(&h)[0].clone();
    assert_eq!(entry["ExitCode"], -1, "{h}");
    assert_eq!(entry["Output"], "Health check exceeded timeout (2s)", "{h}");
    assert_eq!(status(&h), "unhealthy", "{h}");
    assert_eq!(probes.trim(), "0", "the probe still runs after its check was logged");
    // `docker ps` shows the health as Docker does (engine/patches/0006).
    let ps = vm.docker_ok(&["ps", "--filter", "name=stuck", "--format", "{{.Status}}"]);
    assert!(ps.trim().starts_with("Up ") && ps.trim().ends_with(" (unhealthy)"), "docker ps status: {ps}");
    vm.shutdown();
}
