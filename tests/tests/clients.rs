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
