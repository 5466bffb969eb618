//! `make bench`: measures the appliance and prints a table; writes
//! `out/bench.json`. See README "Performance" for what each figure means.
//! Knobs (environment): SKIFF_BENCH_BOOTS (3), SKIFF_BENCH_IMAGE_MIB (256),
//! SKIFF_BENCH_PINGS (200), SKIFF_BENCH_SHARE_MIB (256), SKIFF_BENCH_PORT_MIB (128).

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use skiff_tests::bench::http::Endpoint;
use skiff_tests::bench::{boot, console, floor, memory, ports, report, shares, size, socket, Results};
use skiff_tests::{busybox_image, iso, root, skiff_bin, Scratch, Vm};

const VM_MEMORY_MIB: u32 = 2048;
/// `skiff run`'s default.
const VM_CPUS: u32 = 2;
const CONTAINERS: usize = 10;
const BUSYBOX: &str = "skiff-bench/busybox:latest";
const BIG: &str = "skiff-bench/big:latest";
const SOCAT: &str = "skiff-bench/socat:latest";
/// Not 2375-2377 (the init's engine, control and forward ports).
const GUEST_SOCAT_PORT: u32 = 2398;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Engine ready, no containers: load the probe's image, let the guest settle, read.
fn memory_figures(vm: &Vm, busybox: &std::path::Path) -> (memory::Memory, memory::Memory) {
    let pid = console::engine_pid(&vm.console()).expect("the console names the engine's pid");
    socket::docker_load(vm, busybox, BUSYBOX);
    thread::sleep(Duration::from_secs(5));
    eprintln!("bench: memory probe (idle)");
    let idle = memory::probe(vm, BUSYBOX, pid);
    for i in 0..CONTAINERS {
        let out = vm.docker_ok(&["run", "--rm", BUSYBOX, "echo", &format!("container {i}")]);
        assert_eq!(out.trim(), format!("container {i}"), "container {i} did not run");
    }
    thread::sleep(Duration::from_secs(5));
    eprintln!("bench: memory probe (after {CONTAINERS} containers)");
    let after = memory::probe(vm, BUSYBOX, pid);
    (idle, after)
}

fn main() {
    let began = Instant::now();
    let root = root();
    let iso = iso();
    skiff_bin(); // fails early, with what to build, when the CLI is missing
    let boots_n = knob("SKIFF_BENCH_BOOTS", 3).max(1) as usize;
    let image_mib = knob("SKIFF_BENCH_IMAGE_MIB", 256);
    let pings = knob("SKIFF_BENCH_PINGS", 200).max(1) as usize;
    let scratch = Scratch::new("bench");
    let dir = &scratch.0;

    eprintln!("bench: sizes");
    let sizes = size::measure(&root);

    eprintln!("bench: floor boots");
    let floor_cpio = floor::build(dir);
    let kernel = root.join("out/iso-root/boot/vmlinuz");
    let floors: Vec<_> = (0..boots_n).map(|_| floor::boot(dir, &kernel, &floor_cpio, &iso, VM_MEMORY_MIB, VM_CPUS)).collect();

    let busybox = busybox_image(dir, BUSYBOX);
    let big = socket::big_image(dir, BIG, image_mib);
    let socat_tar = socket::socat_image(dir, SOCAT);
    let mem = VM_MEMORY_MIB.to_string();
    let mut boots = Vec::new();
    let mut workload = None;
    for i in 0..boots_n {
        eprintln!("bench: boot {} of {boots_n}", i + 1);
        let vm_dir = dir.join(format!("vm{i}"));
        fs::create_dir_all(&vm_dir).expect("create VM folder");
        let (vm, mut b) = boot::boot(&vm_dir, &["--memory", &mem]);
        if i + 1 == boots_n {
            workload = Some(run_workload(&vm, &busybox, &big, &socat_tar, pings, dir));
        }
        b.shutdown = Some(vm.shutdown().as_secs_f64());
        let console = fs::read_to_string(vm_dir.join("console.log")).unwrap_or_default();
        assert!(console.contains("shutdown: powering off"), "boot {}: no clean shutdown in the console log", i + 1);
        boots.push(b);
    }
    let (memory_idle, memory_after, load, save, paths, not_compared, ports) = workload.expect("the last boot ran the workload");
    let shares = share_figures(dir, &mem, knob("SKIFF_BENCH_SHARE_MIB", 256));

    let results = Results {
        vm_memory_mib: VM_MEMORY_MIB,
        vm_cpus: VM_CPUS,
        sizes,
        boots,
        floors,
        memory_idle,
        memory_after,
        containers_run: CONTAINERS,
        load,
        save,
        image_bytes: fs::metadata(&big).expect("big image").len(),
        paths,
        not_compared,
        shares,
        ports,
    };
    let table = report::table(&results).render();
    println!("{table}");
    let out = root.join("out/bench.json");
    let text = serde_json::to_string_pretty(&report::json(&results)).expect("serialise");
    fs::write(&out, text + "\n").expect("write out/bench.json");
    println!("bench: wrote {} in {:.0} s", out.display(), began.elapsed().as_secs_f64());
}

/// One boot per transport, each sharing the same folder (a tree of small
/// files made once on the host).
fn share_figures(dir: &std::path::Path, mem: &str, big_mib: u64) -> Vec<shares::ShareFigures> {
    let shared = dir.join("shared");
    let tree = shared.join("tree");
    shares::make_tree(&tree);
    let mut figures = Vec::new();
    for via in ["virtiofs", "9p"] {
        eprintln!("bench: shares over {via}");
        let vm_dir = dir.join(format!("vm-{via}"));
        fs::create_dir_all(&vm_dir).expect("create VM folder");
        let vm = Vm::boot_with(&vm_dir, &["--memory", mem, "--share-via", via, "--share", shared.to_str().expect("UTF-8 path")]);
        figures.push(shares::measure(&vm, via, &tree, &shared, big_mib));
        vm.shutdown();
    }
    figures
}

type Workload = (memory::Memory, memory::Memory, socket::Transfer, socket::Transfer, Vec<socket::PathFigures>, Vec<String>, ports::PortFigures);

fn run_workload(vm: &Vm, busybox: &std::path::Path, big: &std::path::Path, socat_tar: &std::path::Path, pings: usize, dir: &std::path::Path) -> Workload {
    let (idle, after) = memory_figures(vm, busybox);

    eprintln!("bench: docker load / save");
    let load = socket::docker_load(vm, big, BIG);
    let save = socket::docker_save(vm, BIG, &dir.join("saved.tar"));
    let container = "skiff-bench-blob";
    vm.docker_ok(&["create", "--name", container, BIG]);

    let sock = vm.socket();
    let mut not_compared = vec![
        "socat in place of our host bridge on the hybrid-vsock path: not measured — socat cannot send the \
         `CONNECT <port>` line and strip the `OK <port>` reply before relaying, and without /dev/vhost-vsock \
         its VSOCK-CONNECT has nothing to connect to"
            .to_string(),
        "host relay rows: one more unix-socket hop in front of docker.sock, our copy loop (`skiff bridge --unix`) \
         vs socat with default options; everything behind it is the same"
            .to_string(),
    ];
    // Every endpoint is set up first, so pings can take turns between them.
    let mut eps: Vec<(&'static str, &'static str, Endpoint)> = vec![
        ("whole", "whole path (docker.sock → bridge → vsock → forwarder → engine)", Endpoint::Unix(sock.clone())),
        ("host_ours", "host relay: ours (skiff bridge --unix) + whole path", Endpoint::Unix(dir.join("relay-ours.sock"))),
        ("host_socat", "host relay: socat + whole path", Endpoint::Unix(dir.join("relay-socat.sock"))),
    ];
    let _relays = (socket::relay_ours(&dir.join("relay-ours.sock"), &sock), socket::relay_socat(&dir.join("relay-socat.sock"), &sock));
    let uds = vm.dir.join("vsock.sock");
    if uds.exists() {
        let theirs = Endpoint::Hybrid(uds.clone(), GUEST_SOCAT_PORT, None);
        socket::guest_socat(vm, socat_tar, SOCAT, "skiff-bench-socat", GUEST_SOCAT_PORT, &theirs);
        eps.push(("guest_ours", "guest forwarder: ours (vsock 2375), plain hybrid conn.", Endpoint::Hybrid(uds, skiff_proto::DEFAULT_ENGINE_PORT, vm.secret())));
        eps.push(("guest_socat", "guest forwarder: socat in a privileged container (vsock 2398)", theirs));
        not_compared.push(
            "guest forwarder rows: the image has no socat, so the host's socat and its libraries run in a privileged \
             guest container (VSOCK-LISTEN,fork → engine socket); both reached by the same client over plain hybrid \
             vsock connections, bypassing the host bridge"
                .to_string(),
        );
    } else {
        not_compared.push("guest forwarder vs socat: not measured — this host has kernel vhost-vsock, and the bench reaches guest ports only through a hybrid-vsock socket".to_string());
    }
    eprintln!("bench: {pings} pings of each kind on {} endpoints, taking turns", eps.len());
    let endpoints: Vec<Endpoint> = eps.iter().map(|e| e.2.clone()).collect();
    let timings = socket::pings(&endpoints, pings);
    let mut paths = Vec::new();
    for ((key, label, endpoint), pings) in eps.into_iter().zip(timings) {
        eprintln!("bench: transfers via {label}");
        let (download, upload) = socket::transfers(&endpoint, container, big);
        paths.push(socket::PathFigures { key, label, pings, download, upload });
    }
    eprintln!("bench: published ports");
    let port_figures = ports::run(vm, BUSYBOX, (socat_tar, SOCAT), knob("SKIFF_BENCH_PORT_MIB", 128), pings);
    (idle, after, load, save, paths, not_compared, port_figures)
}
