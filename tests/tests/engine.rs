//! Skiff's own engine build: Podman from its Go module with the patches in
//! engine/patches/, each checked here through a real client (the docker CLI,
//! and curl on the docker socket for the raw API) against the booted ISO,
//! x86_64 and aarch64.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use skiff_tests::{busybox_image, busybox_root_from, image_tar_for, root, run_with_input, Scratch, Vm};

/// The ISO (`env` if set, else `default` under the workspace), or None
/// after saying loudly why the test does not run.
fn iso_or_skip(test: &str, env: &str, default: &str) -> Option<PathBuf> {
    let iso = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| root().join(default));
    if iso.is_file() {
        return Some(iso);
    }
    eprintln!("\n*** SKIPPED {test}: no ISO at {} (run `make iso`); nothing was tested ***\n", iso.display());
    None
}

/// The docker CLI with its own time limit (a command that should return
/// must not take the default 180 s to fail).
fn docker_within(vm: &Vm, args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new(skiff_tests::docker_bin());
    cmd.args(args).env("DOCKER_HOST", &vm.docker_host);
    run_with_input(&mut cmd, None, limit, &format!("docker {}", args.join(" ")))
}

/// The body of `GET path` on the engine through the bridge's unix socket, with curl.
fn curl_get(vm: &Vm, path: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "60", "--unix-socket"])
        .arg(vm.socket())
        .arg(format!("http://skiff{path}"))
        .output()
        .expect("run curl (Debian's curl package)");
    assert!(out.status.success(), "curl {path} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `GET path` on the engine, a JSON answer.
fn api_get(vm: &Vm, path: &str) -> serde_json::Value {
    let body = curl_get(vm, path);
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

/// `GET path` on the engine, an answer of JSON objects one a line that
/// ends (an event stream with an end).
fn api_get_lines(vm: &Vm, path: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&curl_get(vm, path))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("GET {path}: a line not JSON ({e}): {l}")))
        .collect()
}

/// The container list item named `/name`.
fn listed<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let want = format!("/{name}");
    list.as_array()
        .expect("GET /containers/json: an array")
        .iter()
        .find(|c| c["Names"].as_array().is_some_and(|n| n.iter().any(|n| n == &serde_json::Value::from(want.as_str()))))
        .unwrap_or_else(|| panic!("{name} is not in GET /containers/json: {list}"))
}

#[test]
fn engine_fixes_through_real_clients() {
    let Some(iso) = iso_or_skip("engine_fixes_through_real_clients", "SKIFF_ISO", "out/skiff.iso") else { return };
    let scratch = Scratch::new("engine");
    let image = busybox_image(&scratch.0, "skiff-test/busybox:latest");
    engine_story(Vm::boot_iso(&scratch.0, &iso, &[], &[]), &image);
}

#[test]
fn engine_fixes_through_real_clients_aarch64() {
    let test = "engine_fixes_through_real_clients_aarch64";
    let Some(iso) = iso_or_skip(test, "SKIFF_ISO_AARCH64", "out/skiff-aarch64.iso") else { return };
    // Debian's arm64 busybox-static (`make out/aarch64/busybox-static`).
    let busybox = root().join("out/aarch64/busybox-static");
    assert!(busybox.is_file(), "no {}: run `make out/aarch64/busybox-static` (make test does)", busybox.display());
    let scratch = Scratch::new("engine-a64");
    let rootfs = scratch.0.join("layer-root");
    busybox_root_from(&rootfs, &busybox);
    let image = image_tar_for("arm64", &scratch.0, &rootfs, "skiff-test/busybox:latest", r#""Env":["PATH=/bin"],"Cmd":["sh"]"#);
    engine_story(Vm::boot_iso(&scratch.0, &iso, &[], &[]), &image);
}

/// The three fixes, on a booted VM, with `image` (a `docker load` archive
/// of skiff-test/busybox for the VM's architecture); then the power button.
fn engine_story(vm: Vm, image: &std::path::Path) {
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);

    // 0001: `docker stats` shows the whole name (the CLI strips the first
    // character of the API's "/NAME").
    vm.docker_ok(&["run", "-d", "--name", "hc", "skiff-test/busybox", "sleep", "600"]);
    let name = vm.docker_ok(&["stats", "--no-stream", "--format", "{{.Name}}", "hc"]);
    assert_eq!(name.trim(), "hc", "docker stats NAME column");
    let table = vm.docker_ok(&["stats", "--no-stream", "hc"]);
    eprintln!("engine: docker stats --no-stream hc:\n{table}");
    assert!(table.lines().nth(1).is_some_and(|l| l.split_whitespace().nth(1) == Some("hc")), "stats table: {table}");

    // 0003: the container list carries HostConfig.NetworkMode, as Docker
    // reports it: the mode, or a user-defined network's name.
    vm.docker_ok(&["run", "-d", "--name", "quiet", "--network", "none", "skiff-test/busybox", "sleep", "600"]);
    vm.docker_ok(&["network", "create", "skiffnet"]);
    vm.docker_ok(&["run", "-d", "--name", "onnet", "--network", "skiffnet", "skiff-test/busybox", "sleep", "600"]);
    let list = api_get(&vm, "/containers/json");
    for (name, mode) in [("hc", "bridge"), ("quiet", "none"), ("onnet", "skiffnet")] {
        let c = listed(&list, name);
        assert_eq!(c["HostConfig"]["NetworkMode"], mode, "{name}'s HostConfig in GET /containers/json: {c}");
    }
    // The docker CLI reads the same field (`docker ps --format {{.Networks}}` reads NetworkSettings).
    let ps = vm.docker_ok(&["ps", "--filter", "name=onnet", "--format", "{{.Names}} {{.Networks}}"]);
    eprintln!("engine: docker ps: {}", ps.trim());

    // 0002: events between a past `since` and a past `until` come back,
    // and the command returns (it streamed forever or printed nothing).
    vm.docker_ok(&["run", "--name", "ev", "skiff-test/busybox", "true"]);
    vm.docker_ok(&["rm", "ev"]);
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    let past_events = |until: &str| {
        let events = docker_within(&vm, &["events", "--since", "5m", "--until", until, "--format", format], Duration::from_secs(60));
        let text = String::from_utf8_lossy(&events.stdout).into_owned();
        eprintln!("engine: docker events --since 5m --until {until}:\n{text}");
        assert!(events.status.success(), "docker events --until {until} failed: {}", String::from_utf8_lossy(&events.stderr));
        for want in ["container start ev", "container die ev", "container start hc"] {
            assert!(text.lines().any(|l| l == want), "no {want:?} in the events before --until {until}:\n{text}");
        }
    };
    // An `until` a second ahead by this (the host's) clock, right after
    // the events: the guest's clock, set from the RTC at boot (whole
    // seconds) and slower under load, can be behind ours, so the engine
    // may see any `until` near now (`1s` below too) as still ahead and
    // follow the file; it stopped the follower then, losing the lines
    // read but not handed over (a CI run got the first three events).
    let ahead = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + Duration::from_secs(1);
    past_events(&format!("{}.{:09}", ahead.as_secs(), ahead.subsec_nanos()));
    // The same aimed by the engine's own clock, whatever the skew: the raw
    // API takes a duration for `until` (the engine's now plus it), so each
    // of these ends a few ms ahead of the engine, every event already in
    // the file, before the answer can be written out (with the follower
    // stopped at the end: 0 to 9 of 18 events at 1 to 40 ms).
    for ahead in ["1ms", "2ms", "5ms", "10ms", "15ms", "20ms", "30ms", "50ms", "100ms", "200ms"] {
        let got = api_get_lines(&vm, &format!("/events?since=5m&until={ahead}"));
        let names: Vec<String> = got.iter().map(|e| format!("{} {} {}", e["Type"], e["Action"], e["Actor"]["Attributes"]["name"])).collect();
        eprintln!("engine: GET /events?since=5m&until={ahead}: {} events", got.len());
        for (action, name) in [("start", "ev"), ("die", "ev"), ("start", "hc")] {
            let found = got.iter().any(|e| e["Type"] == "container" && e["Action"] == action && e["Actor"]["Attributes"]["name"] == name);
            assert!(found, "no container {action} {name} in GET /events?since=5m&until={ahead}:\n{}", names.join("\n"));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    past_events("1s");
    // An `until` in the future still follows and ends then.
    let until = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 5);
    let started = std::time::Instant::now();
    let future = docker_within(&vm, &["events", "--since", "5m", "--until", &until, "--format", "{{.Action}}"], Duration::from_secs(60));
    assert!(future.status.success(), "docker events --until +5s failed: {}", String::from_utf8_lossy(&future.stderr));
    assert!(String::from_utf8_lossy(&future.stdout).lines().any(|l| l == "start"), "past events missing before a future until");
    eprintln!("engine: events --until +5s returned after {:.1}s", started.elapsed().as_secs_f64());

    vm.docker_ok(&["rm", "-f", "hc", "quiet", "onnet"]);
    vm.docker_ok(&["network", "rm", "skiffnet"]);
    vm.shutdown();
}
