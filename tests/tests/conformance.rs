//! The Docker API as Docker answers it (issue 27): behaviours a Docker
//! client relies on, each checked through docker-py
//! (`tests/clients/conformance.py`) or the docker CLI against the booted
//! ISO, as Docker's Engine API reference describes them. Prints
//! `N of M Docker behaviours match` and fails when any differs.
//! The engine's side of each is a patch in `engine/patches/` (0007-0013,
//! 0015-0026, common/0025; the classic build's rows 0030-0038).
//!
//! Needs `make clients` (docker-py in a venv); offline: the image is a
//! loaded busybox.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use skiff_tests::{busybox_image, run_with_input, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";
/// The behaviours checked: `docker ps`, `--network bridge` and `--ip`
/// here, the rest in conformance.py (9 of them the classic build's).
const ROWS: usize = 39;

/// The venv's python from `make clients`, or a panic saying how to get it.
fn python() -> PathBuf {
    let cache = std::env::var_os("SKIFF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/skiff"));
    let py = cache.join("clients/python/bin/python");
    assert!(py.is_file(), "NO PYTHON CLIENTS at {}: run `make clients`", py.display());
    py
}

/// `docker ps` prints each published port as Docker does,
/// `0.0.0.0:HOST->8080/tcp` (and the given address for one bound to it):
/// the CLI prints only `8080/tcp` when the list gives no IP.
fn docker_ps_shows_mappings(vm: &Vm) -> Result<(), String> {
    vm.docker_ok(&["run", "-d", "--name", "conf-ps", "-p", "8080", "-p", "127.0.0.1::8081", IMAGE, "sleep", "300"]);
    let host_port = |port: &str| {
        let f = format!("{{{{(index (index .NetworkSettings.Ports \"{port}/tcp\") 0).HostPort}}}}");
        vm.docker_ok(&["inspect", "-f", &f, "conf-ps"]).trim().to_owned()
    };
    let want = [format!("0.0.0.0:{}->8080/tcp", host_port("8080")), format!("127.0.0.1:{}->8081/tcp", host_port("8081"))];
    let shown = vm.docker_ok(&["ps", "--filter", "name=conf-ps", "--format", "{{.Ports}}"]);
    vm.docker_ok(&["rm", "-f", "conf-ps"]);
    let mut got: Vec<&str> = shown.trim().split(", ").collect();
    got.sort_unstable();
    if got == want { Ok(()) } else { Err(format!("docker ps showed {:?}, Docker shows {want:?}", shown.trim())) }
}

/// `docker run --network bridge` puts the container on the default
/// network, which inspect names `bridge`: the line scripts use for a
/// container's address works.
fn docker_network_bridge(vm: &Vm) -> Result<(), String> {
    let run = vm.docker(&["run", "-d", "--name", "conf-net", "--network", "bridge", IMAGE, "sleep", "300"]);
    if !run.status.success() {
        return Err(format!("docker run --network bridge: {}", String::from_utf8_lossy(&run.stderr).trim()));
    }
    let ip = vm.docker_ok(&["inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "conf-net"]);
    vm.docker_ok(&["rm", "-f", "conf-net"]);
    let ip = ip.trim();
    if ip.parse::<std::net::Ipv4Addr>().is_ok() { Ok(()) } else { Err(format!("Networks.bridge.IPAddress is {ip:?}")) }
}

/// `docker run --ip` on a user network: inspect shows the address asked
/// for in the network's `IPAMConfig`, and the container has it.
fn docker_ip_in_ipam_config(vm: &Vm) -> Result<(), String> {
    vm.docker_ok(&["network", "create", "--subnet", "172.30.9.0/24", "conf-ipam"]);
    let run = vm.docker(&["run", "-d", "--name", "conf-ip", "--network", "conf-ipam", "--ip", "172.30.9.9", IMAGE, "sleep", "300"]);
    let shown = run.status.success().then(|| {
        let f = "{{with .NetworkSettings.Networks}}{{(index . \"conf-ipam\").IPAMConfig.IPv4Address}} {{(index . \"conf-ipam\").IPAddress}}{{end}}";
        vm.docker(&["inspect", "-f", f, "conf-ip"])
    });
    vm.docker(&["rm", "-f", "conf-ip"]);
    vm.docker_ok(&["network", "rm", "conf-ipam"]);
    match shown {
        None => Err(format!("docker run --ip: {}", String::from_utf8_lossy(&run.stderr).trim())),
        Some(out) if String::from_utf8_lossy(&out.stdout).trim() == "172.30.9.9 172.30.9.9" => Ok(()),
        Some(out) => Err(format!(
            "IPAMConfig.IPv4Address and IPAddress: {:?} {:?}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

#[test]
fn docker_api_as_docker_answers_it() {
    let py = python();
    let scratch = Scratch::new("conformance");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);

    let mut rows: Vec<(String, Result<(), String>)> = vec![
        ("docker ps: published ports as IP:HOST->PORT/tcp".into(), docker_ps_shows_mappings(&vm)),
        ("docker run --network bridge: inspect's Networks.bridge has the address".into(), docker_network_bridge(&vm)),
        ("docker run --ip: IPAMConfig shows the address asked for".into(), docker_ip_in_ipam_config(&vm)),
    ];
    let script = skiff_tests::root().join("tests/clients/conformance.py");
    let mut cmd = Command::new(&py);
    cmd.arg(&script)
        .env("DOCKER_HOST", &vm.docker_host)
        .env("SKIFF_IMAGE", IMAGE)
        .env("HOME", &scratch.0)
        .current_dir(&scratch.0)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_CONFIG");
    let out = run_with_input(&mut cmd, None, Duration::from_secs(600), "conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("conformance.py: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("PASS ") {
            rows.push((name.to_owned(), Ok(())));
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            rows.push((name.to_owned(), Err(why.to_owned())));
        }
    }
    let left = vm.docker_ok(&["ps", "-aq"]);
    vm.shutdown();

    for (name, r) in &rows {
        match r {
            Ok(()) => eprintln!("conformance: match    {name}"),
            Err(why) => eprintln!("conformance: DIFFERS  {name}: {why}"),
        }
    }
    let matching = rows.iter().filter(|(_, r)| r.is_ok()).count();
    println!("{matching} of {} Docker behaviours match", rows.len());
    assert!(out.status.success(), "conformance.py could not run ({}): see above", out.status);
    // Every row the script checks reported (a row missing would hide a failure).
    assert_eq!(rows.len(), ROWS, "expected {ROWS} behaviours, got {}: {rows:?}", rows.len());
    assert_eq!(matching, rows.len(), "{} Docker behaviour(s) differ", rows.len() - matching);
    assert!(left.trim().is_empty(), "containers left behind: {left}");
}
