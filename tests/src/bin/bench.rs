//! `make bench`: measures the appliance and prints a table; writes
//! `out/bench.json`. See docs/performance.md for what each figure means.
//! Knobs (environment): SKIFF_BENCH_BOOTS (3), SKIFF_BENCH_IMAGE_MIB (256; 64 quick),
//! SKIFF_BENCH_PINGS (200; 100 quick), SKIFF_BENCH_SHARE_MIB (256), SKIFF_BENCH_PORT_MIB (128),
//! SKIFF_BENCH_QUICK=1 (only the headline figures: no relay, port or share comparisons),
//! SKIFF_BENCH_SAVE_BASELINE=1 (write this run's headline figures to tests/bench-baseline.json),
//! SKIFF_BENCH_AARCH64=1 (also the aarch64 ISO: sizes and one boot; the Makefile builds it),
//! SKIFF_BENCH_GIVEBACK=0 (skip the two boots measuring memory and disk given back),
//! SKIFF_BENCH_TOUCH_MIB (768) and SKIFF_BENCH_DISK_MIB (2048; 512 quick) for them,
//! SKIFF_BENCH_DEBIAN_ENGINE=1 (also the appliance with Debian's podman package: sizes, one
//! boot, idle memory; the Makefile builds out/debian-engine/skiff.iso).

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use skiff_tests::bench::http::Endpoint;
use skiff_tests::bench::{baseline, boot, console, floor, giveback, memory, ports, report, shares, size, socket, watch, Aarch64, DebianEngine, Results};
use skiff_tests::{busybox_image, busybox_root, iso, iso_aarch64, root, skiff_bin, Scratch, Vm};

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

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The committed figures of the last accepted run.
const BASELINE: &str = "tests/bench-baseline.json";

/// Engine ready, no containers: load the probe's image, let the guest settle, read.
fn idle_memory(vm: &Vm, busybox: &std::path::Path) -> (memory::Memory, u32) {
    let pid = console::engine_pid(&vm.events()).expect("the guest reports the engine's pid");
    socket::docker_load(vm, busybox, BUSYBOX);
    thread::sleep(Duration::from_secs(5));
    eprintln!("bench: memory probe (idle)");
    (memory::probe(vm, BUSYBOX, pid), pid)
}

/// Idle, then after [`CONTAINERS`] containers have run.
fn memory_figures(vm: &Vm, busybox: &std::path::Path) -> (memory::Memory, memory::Memory) {
    let (idle, pid) = idle_memory(vm, busybox);
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
    let quick = flag("SKIFF_BENCH_QUICK");
    let boots_n = knob("SKIFF_BENCH_BOOTS", 3).max(1) as usize;
    let image_mib = knob("SKIFF_BENCH_IMAGE_MIB", if quick { 64 } else { 256 });
    let pings = knob("SKIFF_BENCH_PINGS", if quick { 100 } else { 200 }).max(1) as usize;
    let scratch = Scratch::new("bench");
    let dir = &scratch.0;

    eprintln!("bench: sizes (read from {})", iso.display());
    let sizes = size::measure(&iso, dir);

    eprintln!("bench: floor boots");
    let floor_cpio = floor::build(dir);
    let kernel = floor::kernel_as_booted(dir, &size::kernel_in(dir));
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
            workload = Some(run_workload(&vm, &busybox, &big, &socat_tar, pings, dir, quick));
        }
        b.shutdown = Some(vm.shutdown().as_secs_f64());
        assert!(skiff_tests::powered_off_cleanly(&vm_dir), "boot {}: no powering-off event (clean shutdown)", i + 1);
        boots.push(b);
    }
    let (memory_idle, memory_after, load, save, paths, not_compared, ports) = workload.expect("the last boot ran the workload");
    let shares = if quick { Vec::new() } else { share_figures(dir, &mem, knob("SKIFF_BENCH_SHARE_MIB", 256)) };
    let aarch64 = flag("SKIFF_BENCH_AARCH64").then(|| aarch64_figures(dir, &mem));
    let debian_engine = flag("SKIFF_BENCH_DEBIAN_ENGINE").then(|| debian_engine_figures(dir, &mem, &busybox));
    let giveback = (knob("SKIFF_BENCH_GIVEBACK", 1) != 0).then(|| {
        let disk_mib = knob("SKIFF_BENCH_DISK_MIB", if quick { 512 } else { 2048 });
        giveback::measure(dir, &mem, &busybox, BUSYBOX, knob("SKIFF_BENCH_TOUCH_MIB", 768), disk_mib)
    });
    let watch = (knob("SKIFF_BENCH_WATCH", 1) != 0).then(|| watch::measure(dir, &mem, busybox_root, knob("SKIFF_BENCH_WATCH_WRITES", 50) as usize));

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
        aarch64,
        giveback,
        debian_engine,
        watch,
    };
    let table = report::table(&results).render();
    println!("{table}");
    compare_with_baseline(&root.join(BASELINE), &report::headline(&results), quick);
    let out = root.join("out/bench.json");
    let text = serde_json::to_string_pretty(&report::json(&results)).expect("serialise");
    fs::write(&out, text + "\n").expect("write out/bench.json");
    println!("bench: wrote {} in {:.0} s", out.display(), began.elapsed().as_secs_f64());
}

/// The aarch64 ISO: its sizes and one boot (TCG emulates a foreign
/// architecture more slowly, so one boot, not the x86_64 count).
fn aarch64_figures(dir: &std::path::Path, mem: &str) -> Aarch64 {
    let iso = iso_aarch64();
    eprintln!("bench: aarch64 sizes (read from {})", iso.display());
    let a64 = dir.join("aarch64");
    fs::create_dir_all(a64.join("vm")).expect("create aarch64 folder");
    let sizes = size::measure(&iso, &a64);
    eprintln!("bench: aarch64 boot");
    let (vm, mut b) = boot::boot_iso(&a64.join("vm"), &iso, &["--memory", mem]);
    b.shutdown = Some(vm.shutdown().as_secs_f64());
    Aarch64 { sizes, boot: b }
}

/// The appliance with Debian's podman package (`make bench` builds it when
/// asked): sizes, one boot, idle memory.
fn debian_engine_figures(dir: &std::path::Path, mem: &str, busybox: &std::path::Path) -> DebianEngine {
    let iso = root().join("out/debian-engine/skiff.iso");
    assert!(iso.is_file(), "no {}: SKIFF_BENCH_DEBIAN_ENGINE=1 make bench builds it", iso.display());
    eprintln!("bench: Debian's podman: sizes (read from {})", iso.display());
    let deb = dir.join("debian-engine");
    fs::create_dir_all(deb.join("vm")).expect("create debian-engine folder");
    let sizes = size::measure(&iso, &deb);
    eprintln!("bench: Debian's podman: boot");
    let (vm, mut boot) = boot::boot_iso(&deb.join("vm"), &iso, &["--memory", mem]);
    let (memory_idle, _) = idle_memory(&vm, busybox);
    boot.shutdown = Some(vm.shutdown().as_secs_f64());
    DebianEngine { sizes, boot, memory_idle }
}

/// Prints the headline figures against the committed baseline; writes them
/// as the new baseline when asked to.
fn compare_with_baseline(path: &std::path::Path, figures: &[baseline::Figure], quick: bool) {
    let base: serde_json::Value = fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let note = base.get("note").and_then(|n| n.as_str()).unwrap_or("none yet");
    println!("\nAgainst the baseline ({}: {note})", path.display());
    let rows = baseline::compare(figures, &base);
    let width = rows.iter().map(|c| c.label.chars().count()).max().unwrap_or(0);
    for c in &rows {
        println!("  {:<width$}  {}", c.label, baseline::describe(c));
    }
    if flag("SKIFF_BENCH_SAVE_BASELINE") {
        let mode = if quick { "SKIFF_BENCH_QUICK=1" } else { "full run" };
        let note = format!("make bench ({mode}), QEMU TCG, {} vCPU, {} MiB", VM_CPUS, VM_MEMORY_MIB);
        let text = serde_json::to_string_pretty(&baseline::document(figures, &note)).expect("serialise");
        fs::write(path, text + "\n").expect("write the baseline");
        println!("bench: wrote the new baseline {}", path.display());
    }
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

fn run_workload(vm: &Vm, busybox: &std::path::Path, big: &std::path::Path, socat_tar: &std::path::Path, pings: usize, dir: &std::path::Path, quick: bool) -> Workload {
    let (idle, after) = memory_figures(vm, busybox);

    eprintln!("bench: docker load / save");
    let load = socket::docker_load(vm, big, BIG);
    let save = socket::docker_save(vm, BIG, &dir.join("saved.tar"));
    let container = "skiff-bench-blob";
    vm.docker_ok(&["create", "--name", container, BIG]);

    let sock = vm.socket();
    let whole = ("whole", "whole path (docker.sock → bridge → vsock → forwarder → engine)", Endpoint::Unix(sock.clone()));
    if quick {
        let timings = socket::pings(std::slice::from_ref(&whole.2), pings);
        let (download, upload) = socket::transfers(&whole.2, container, big);
        let pings = timings.into_iter().next().expect("one endpoint's pings");
        let paths = vec![socket::PathFigures { key: whole.0, label: whole.1, pings, download, upload }];
        let notes = vec!["SKIFF_BENCH_QUICK=1: no relay or guest forwarder comparison".to_string()];
        let ports = ports::PortFigures { publish_to_answer: Vec::new(), routes: Vec::new(), notes: vec!["SKIFF_BENCH_QUICK=1: not measured".to_string()] };
        return (idle, after, load, save, paths, notes, ports);
    }
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
        whole,
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
