//! Real client libraries against Skiff, end to end: docker-py, Testcontainers
//! for Python and Testcontainers for Node each start a busybox httpd
//! container with port 8080 exposed (published on a host port the engine
//! picks), read the host port back the way that library does, and fetch a
//! page from the host over HTTP. The scripts are in `tests/clients/`.
//!
//! The clients come from `make clients` (scripts/fetch-py-node-clients.sh):
//! a venv in `SKIFF_CACHE/clients/python` and an npm prefix in
//! `SKIFF_CACHE/clients/node`. Without them the test fails saying so.
//!
//! Offline: the image is the loaded `skiff-test/busybox`; nothing is pulled.
//! Testcontainers' reaper (Ryuk) is an image from Docker Hub, so it is
//! disabled here (`TESTCONTAINERS_RYUK_DISABLED=true`). These machines are
//! containers themselves (`/.dockerenv`), which makes both Testcontainers
//! look for published ports at the engine's bridge gateway (unreachable from
//! the host): `TESTCONTAINERS_HOST_OVERRIDE=localhost` (Node) and
//! `TESTCONTAINERS_CONNECTION_MODE=docker_host` (Python) say "the host's
//! localhost", which is what a desktop without `/.dockerenv` gets anyway.
//! Without them (tried 2026-12-06): Node waits 60 s for the gateway and
//! fails ("Port N not bound after 60000ms"); Python fails with
//! `KeyError('HostConfig')`, since its gateway mode reads
//! `HostConfig.NetworkMode` from `/containers/json`, which Podman 5.4 leaves
//! out (issue 18, item 3).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_tests::{busybox_image, run_with_input, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";

fn clients_dir() -> PathBuf {
    let cache = std::env::var_os("SKIFF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/skiff"));
    cache.join("clients")
}

/// The venv's python, or a panic saying how to get it.
fn python() -> PathBuf {
    let py = clients_dir().join("python/bin/python");
    assert!(
        py.is_file(),
        "NO PYTHON CLIENTS at {}: run `make clients` (scripts/fetch-py-node-clients.sh) to install docker-py and testcontainers",
        py.display()
    );
    py
}

/// The npm prefix holding testcontainers, or a panic saying how to get it.
fn node_prefix() -> PathBuf {
    let prefix = clients_dir().join("node");
    let pkg = prefix.join("node_modules/testcontainers/package.json");
    assert!(
        pkg.is_file(),
        "NO NODE CLIENTS at {}: run `make clients` (scripts/fetch-py-node-clients.sh) to install testcontainers from npm",
        prefix.display()
    );
    prefix
}

/// Runs one client script; returns its stdout on success, or what went wrong.
fn run_client(vm: &Vm, cwd: &Path, name: &str, program: &Path, script: &str, want: &str) -> Result<(), String> {
    let script = skiff_tests::root().join("tests/clients").join(script);
    let mut cmd = Command::new(program);
    cmd.arg(&script)
        .current_dir(cwd)
        .env("DOCKER_HOST", &vm.docker_host)
        .env("SKIFF_IMAGE", IMAGE)
        .env("SKIFF_NODE_CLIENTS", clients_dir().join("node"))
        .env("TESTCONTAINERS_RYUK_DISABLED", "true")
        .env("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
        .env("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        // A user's own settings must not leak in (the test's home may have some).
        .env("HOME", cwd)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_CONFIG")
        .env_remove("TESTCONTAINERS_DOCKER_SOCKET_OVERRIDE");
    let t = Instant::now();
    let out = run_with_input(&mut cmd, None, Duration::from_secs(300), name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("clients: {name}: {} in {:.1}s\n{stderr}{stdout}", out.status, t.elapsed().as_secs_f64());
    if !out.status.success() {
        return Err(format!("{name} exited with {}:\n{stderr}{stdout}", out.status));
    }
    if stdout.trim() != want {
        return Err(format!("{name} fetched {:?}, expected {want:?}", stdout.trim()));
    }
    Ok(())
}

#[test]
fn real_clients_publish_ports_reachable_from_the_host() {
    // Fail before booting when a client is missing.
    let py = python();
    let _ = node_prefix();
    let node = PathBuf::from("node");
    let scratch = Scratch::new("clients");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let work = scratch.0.join("work");
    std::fs::create_dir_all(&work).unwrap();

    let results = [
        ("docker-py", run_client(&vm, &work, "docker-py", &py, "docker_py.py", "hello from docker-py")),
        ("testcontainers-python", run_client(&vm, &work, "testcontainers-python", &py, "testcontainers_py.py", "hello from testcontainers-python")),
        ("testcontainers-node", run_client(&vm, &work, "testcontainers-node", &node, "testcontainers.mjs", "hello from testcontainers-node")),
    ];
    // Nothing left: each client stopped and removed its container.
    let left = vm.docker_ok(&["ps", "-aq"]);
    vm.shutdown();
    let failed: Vec<String> = results.iter().filter_map(|(_, r)| r.clone().err()).collect();
    for (name, r) in &results {
        eprintln!("clients: {name}: {}", if r.is_ok() { "ok" } else { "FAILED" });
    }
    assert!(failed.is_empty(), "{} client(s) failed:\n{}", failed.len(), failed.join("\n"));
    assert!(left.trim().is_empty(), "containers left after the clients removed theirs: {left}");
}

/// Image names as Docker shows them, through Debian's docker CLI 20.10,
/// trixie's docker CLI 26 and docker-py: a `docker load`ed busybox:1.36
/// (Podman stores it as localhost/busybox:1.36; without patch 0004 both
/// CLIs listed it so, seen 2026-12-06) and `docker build -t app` /
/// `docker tag` names (stored under docker.io/library/, which the CLIs
/// shorten themselves) read `busybox:1.36` and `app` in `docker images`,
/// `docker images NAME` (only that name's tags), `docker ps`, `docker
/// inspect` and docker-py; short names keep working for run, tag and rmi.
/// (engine/patches/0004; skiff-buildkit's builds, stored as localhost/NAME,
/// are in tests/tests/build.rs.)
#[test]
fn image_names_as_docker_shows_them() {
    let py = python();
    let docker26 = clients_dir().join("trixie/docker");
    assert!(docker26.is_file(), "NO TRIXIE DOCKER CLI at {}: run `make clients`", docker26.display());
    let scratch = Scratch::new("names");
    let hub = busybox_image(&scratch.0, "busybox:1.36");
    let vm = Vm::boot(&scratch.0);
    let loaded = vm.docker_ok(&["load", "-i", hub.to_str().unwrap()]);
    assert_eq!(loaded.trim(), "Loaded image: busybox:1.36");
    let ctx = scratch.0.join("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:1.36\nRUN echo built > /built\n").unwrap();
    // Debian's CLI 20.10 builds through the engine's own /build.
    vm.docker_ok(&["build", "-t", "app", ctx.to_str().unwrap()]);
    vm.docker_ok(&["tag", "app", "app:v2"]);
    vm.docker_ok(&["tag", "app", "other:1"]);
    vm.docker_ok(&["run", "--name", "from-app", "app", "cat", "/built"]);
    vm.docker_ok(&["run", "--name", "from-hub", "busybox:1.36", "true"]);

    let table = |out: String| -> Vec<String> {
        let mut rows: Vec<String> = out.lines().map(str::to_owned).collect();
        rows.sort();
        rows
    };
    let with_26 = |args: &[&str]| -> String {
        let out = Command::new(&docker26).args(args).env("DOCKER_HOST", &vm.docker_host).env_remove("DOCKER_CONTEXT").output().unwrap();
        assert!(out.status.success(), "docker 26 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let all = ["app:latest", "app:v2", "busybox:1.36", "other:1"];
    let format = ["--format", "{{.Repository}}:{{.Tag}}"];
    for (cli, images, only_app, ps) in [
        ("20.10", vm.docker_ok(&[&["images"][..], &format].concat()), vm.docker_ok(&[&["images", "app"][..], &format].concat()),
            vm.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Image}}"])),
        ("26", with_26(&[&["images"][..], &format].concat()), with_26(&[&["images", "app"][..], &format].concat()),
            with_26(&["ps", "-a", "--format", "{{.Names}} {{.Image}}"])),
    ] {
        assert_eq!(table(images), all, "docker {cli} images");
        assert_eq!(table(only_app), ["app:latest", "app:v2"], "docker {cli} images app");
        assert_eq!(table(ps), ["from-app app", "from-hub busybox:1.36"], "docker {cli} ps");
    }
    assert_eq!(vm.docker_ok(&["inspect", "-f", "{{.Config.Image}}", "from-app"]).trim(), "app");
    // `--until 1s` ends a second ago: the start event must be older than that
    // (the calls above can take less than a second).
    std::thread::sleep(std::time::Duration::from_secs(2));
    let events = vm.docker_ok(&[
        "events", "--since", "10m", "--until", "1s", "--filter", "container=from-hub", "--filter", "event=start",
        "--format", "{{.From}} {{index .Actor.Attributes \"image\"}}",
    ]);
    assert_eq!(events.trim(), "busybox:1.36 busybox:1.36", "docker events");
    assert_eq!(vm.docker_ok(&["image", "inspect", "-f", "{{json .RepoTags}}", "busybox:1.36"]).trim(), r#"["busybox:1.36"]"#);

    // docker-py reads the same names.
    let script = r#"
import docker
c = docker.from_env()
print(sorted(c.images.get("app").tags))
print(sorted(t for i in c.images.list(name="busybox") for t in i.tags))
print(c.containers.get("from-app").attrs["Config"]["Image"])
"#;
    let out = Command::new(&py).args(["-c", script]).env("DOCKER_HOST", &vm.docker_host).env("HOME", &scratch.0).output().unwrap();
    assert!(out.status.success(), "docker-py: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "['app:latest', 'app:v2', 'other:1']\n['busybox:1.36']\napp\n");

    // Short names still reach the images.
    vm.docker_ok(&["rmi", "other:1"]);
    assert_eq!(vm.docker_ok(&["run", "--rm", "app:v2", "cat", "/built"]).trim(), "built");
    vm.docker_ok(&["rm", "from-app", "from-hub"]);
    vm.docker_ok(&["rmi", "app:v2"]);
    assert_eq!(table(vm.docker_ok(&[&["images"][..], &format].concat())), ["app:latest", "busybox:1.36"]);
    vm.shutdown();
}
