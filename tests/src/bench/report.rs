//! Turns [`Results`] into the printed table and the JSON of `out/bench.json`.

use serde_json::{json, Value};

use super::baseline::{Better, Figure};
use super::console::{stage_length, MILESTONES, STAGES};
use super::socket::PathFigures;
use super::stats::{median, p99};
use super::table::{kib_mib, mib, ms, secs, Table};
use super::Results;

fn spread(samples: &[f64]) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if samples.len() < 2 { String::new() } else { format!("  [{min:.2}–{max:.2}]") }
}

fn med_row(t: &mut Table, label: &str, samples: &[f64]) {
    t.row(label, format!("{}{}", secs(median(samples)), spread(samples)));
}

fn ratio(ours: f64, socat: f64) -> String {
    format!("{:.2}", ours / socat)
}

fn milestone_samples(r: &Results, key: &str) -> Vec<f64> {
    r.boots.iter().filter_map(|b| b.milestone(key)).collect()
}

/// The table.
pub fn table(r: &Results) -> Table {
    let mut t = Table::default();
    let s = &r.sizes;
    t.section("Size");
    t.row("ISO (BIOS+UEFI hybrid)", mib(s.iso));
    if let Some(a) = &r.aarch64 {
        t.row("aarch64 ISO (UEFI)", mib(a.sizes.iso));
    }
    t.row("kernel (bzImage)", mib(s.kernel));
    t.row("initramfs, compressed (as on the ISO)", mib(s.initramfs_compressed));
    t.row("initramfs, uncompressed cpio", mib(s.initramfs_uncompressed));
    t.row("/usr squashfs (xz) on the ISO", mib(s.usr_squashfs));
    t.row("/usr files, uncompressed", mib(s.usr_uncompressed));
    t.row("init binary (skiff-init, static)", mib(s.init_binary));
    for (i, (path, size)) in s.top_files.iter().enumerate() {
        t.row(format!("root fs #{:<2} {path}", i + 1), mib(*size));
    }

    t.section(format!(
        "Boot: QEMU -accel tcg, {} vCPU, {} MiB; guest uptime, median of {} boots [min–max]",
        r.vm_cpus, r.vm_memory_mib, r.boots.len()
    ));
    for m in MILESTONES {
        med_row(&mut t, m.label, &milestone_samples(r, m.key));
    }
    let ping: Vec<f64> = r.boots.iter().filter_map(|b| b.qemu_to_ping).collect();
    med_row(&mut t, "host: QEMU start → first /_ping via bridge", &ping);
    let spawn: Vec<f64> = r.boots.iter().map(|b| b.spawn_to_docker_host).collect();
    med_row(&mut t, "host: `skiff run` → DOCKER_HOST printed", &spawn);

    t.section(format!("Boot stages: length per boot (guest uptime), median of {} [min–max]", r.boots.len()));
    for stage in STAGES {
        let lengths: Vec<f64> = r.boots.iter().filter_map(|b| stage_length(stage, |k| b.milestone(k))).collect();
        med_row(&mut t, stage.label, &lengths);
    }
    let floor_run: Vec<f64> = r.floors.iter().filter_map(|f| f.kernel_run_init).collect();
    if let (Some(run), Some(floor)) = (median(&milestone_samples(r, "kernel_run_init")), median(&floor_run)) {
        t.row("  kernel of which: the floor's kernel alone", format!("{floor:.2} s"));
        t.row("  kernel of which: our initramfs (unpack, ours − floor)", format!("{:.2} s", run - floor));
    }
    let before: Vec<f64> = r.boots.iter().filter_map(|b| Some(b.qemu_to_ping? - b.milestone("engine_ready")?)).collect();
    med_row(&mut t, "host: QEMU start → ping, minus guest uptime at ready (firmware, loader, ping)", &before);

    t.section(format!("Floor: same kernel, trivial init that powers off, direct kernel boot; median of {}", r.floors.len()));
    med_row(&mut t, "kernel runs /init", &floor_run);
    let floor_init: Vec<f64> = r.floors.iter().map(|f| f.init_start).collect();
    med_row(&mut t, "trivial init start", &floor_init);
    let floor_wall: Vec<f64> = r.floors.iter().map(|f| f.wall_to_exit).collect();
    med_row(&mut t, "host: QEMU start → QEMU exit", &floor_wall);
    let ready = median(&milestone_samples(r, "engine_ready"));
    if let (Some(ready), Some(floor)) = (ready, median(&floor_init)) {
        t.row("ours: engine ready − floor init start", format!("{:.2} s ({:.0}% of engine ready)", ready - floor, 100.0 * (ready - floor) / ready));
    }

    let after = format!("Memory: after running and removing {} containers", r.containers_run);
    for (title, m) in [("Memory: engine ready, no containers".to_string(), &r.memory_idle), (after, &r.memory_after)] {
        t.section(title);
        t.row("guest MemTotal − MemAvailable", format!("{} of {}", kib_mib(m.used), kib_mib(m.mem_total)));
        t.row("tmpfs root used (df)", kib_mib(m.root_tmpfs_used));
        t.row("all tmpfs and shm (Shmem)", kib_mib(m.shmem));
        t.row("engine RSS (podman system service)", kib_mib(m.engine_rss));
        t.row("  of which anonymous (heap, stacks: GOGC acts here)", kib_mib(m.engine_anon));
        t.row("kernel: anonymous pages of all processes", kib_mib(m.anon_pages));
        t.row("kernel: unreclaimable slab, kernel stacks, page tables", format!("{}, {}, {}", kib_mib(m.slab_unreclaimable), kib_mib(m.kernel_stack), kib_mib(m.page_tables)));
        t.row("init RSS (PID 1)", kib_mib(m.init_rss));
        t.row("probe container RSS (conmon + sh), counted in used", kib_mib(m.probe_rss));
    }

    t.section(format!("Socket path: {} image, host wall time", mib(r.image_bytes)));
    t.row("docker load (host → engine)", format!("{:.1} MiB/s ({:.1} s)", r.load.mib_per_s(), r.load.secs));
    t.row("docker save (engine → host)", format!("{:.1} MiB/s ({:.1} s)", r.save.mib_per_s(), r.save.secs));
    for p in &r.paths {
        t.row(p.label, "");
        path_rows(&mut t, p);
    }
    for (ours, socat, what) in [("host_ours", "host_socat", "host relay"), ("guest_ours", "guest_socat", "guest forwarder")] {
        let (Some(o), Some(s)) = (find(r, ours), find(r, socat)) else { continue };
        t.row(format!("ratio ours/socat, {what}"), "");
        t.row("    download, upload MiB/s (>1: ours faster)", format!("{}, {}", ratio(o.download.mib_per_s(), s.download.mib_per_s()), ratio(o.upload.mib_per_s(), s.upload.mib_per_s())));
        let m = |v: &[f64]| median(v).unwrap_or(f64::NAN);
        t.row("    ping median new, kept (<1: ours faster)", format!("{}, {}", ratio(m(&o.pings.new), m(&s.pings.new)), ratio(m(&o.pings.kept), m(&s.pings.kept))));
        if let (Some(w), "host relay") = (find(r, "whole"), what) {
            let added = |p: &PathFigures| format!("{:+.2} ms, {:+.2} ms", 1e3 * (m(&p.pings.new) - m(&w.pings.new)), 1e3 * (m(&p.pings.kept) - m(&w.pings.kept)));
            t.row("    relay's added ping median new, kept: ours", added(o));
            t.row("    relay's added ping median new, kept: socat", added(s));
        }
    }
    for n in &r.not_compared {
        t.note(n.clone());
    }

    if !r.shares.is_empty() {
        let f = &r.shares[0];
        t.section(format!("Host folder shares: guest `find` over {} host files, {} MiB dd write (fsync) and read back (caches dropped)", super::shares::TREE_FILES, f.big_mib));
        for f in &r.shares {
            t.row(format!("{}: find, cold / warm median", f.via), format!("{} / {}", secs(Some(f.find_cold)), secs(median(&f.find_warm))));
            t.row(format!("{}: write, read", f.via), format!("{:.1} MiB/s, {:.1} MiB/s", f.write_mib_s(), f.read_mib_s()));
        }
        if let [v, p] = &r.shares[..] {
            t.row("9p / virtiofs time: find cold, write, read", format!("{}, {}, {}", ratio(p.find_cold, v.find_cold), ratio(p.write, v.write), ratio(p.read, v.read)));
        }
    }

    let p = &r.ports;
    t.section("Published ports: host → container httpd (busybox), new connection per request");
    med_row(&mut t, "docker run -d -p returned → first answer on 127.0.0.1", &p.publish_to_answer);
    for route in &p.routes {
        t.row(route.label, String::new());
        t.row("    download", format!("{:.1} MiB/s ({})", route.download.mib_per_s(), mib(route.download.bytes)));
        let failed = if route.failures == 0 { String::new() } else { format!("  ({} failed)", route.failures) };
        t.row(format!("    GET / median / p99 of {}", route.requests.len()), format!("{} / {}{failed}", ms(median(&route.requests)), ms(p99(&route.requests))));
    }
    let route = |k: &str| p.routes.iter().find(|r| r.key == k);
    if let (Some(o), Some(s)) = (route("guest_init"), route("guest_socat")) {
        t.row("guest hop ours/socat: download, GET / median (<1 latency: ours faster)", format!(
            "{}, {}", ratio(o.download.mib_per_s(), s.download.mib_per_s()), ratio(median(&o.requests).unwrap_or(f64::NAN), median(&s.requests).unwrap_or(f64::NAN))));
    }
    for n in &p.notes {
        t.note(n.clone());
    }

    match &r.aarch64 {
        Some(a) => aarch64_rows(&mut t, r, a),
        None => t.note("aarch64: not measured (SKIFF_BENCH_AARCH64=1 make bench builds the aarch64 ISO and boots it once)".to_string()),
    }

    match &r.debian_engine {
        Some(d) => debian_engine_rows(&mut t, r, d),
        None => t.note("Debian's podman: not compared (SKIFF_BENCH_DEBIAN_ENGINE=1 make bench builds that ISO and boots it once)".to_string()),
    }

    match &r.giveback {
        Some(g) => giveback_rows(&mut t, g),
        None => t.note("give-back: not measured (SKIFF_BENCH_GIVEBACK=0)".to_string()),
    }

    match &r.watch {
        Some(w) => watch_rows(&mut t, w),
        None => t.note("host edits to file watchers: not measured (SKIFF_BENCH_WATCH=0)".to_string()),
    }

    t.section(format!("Shutdown: power button (skiff stop) → QEMU exit, median of {}", r.boots.len()));
    let down: Vec<f64> = r.boots.iter().filter_map(|b| b.shutdown).collect();
    med_row(&mut t, "host wall time (last boot ran the workload)", &down);
    t
}

/// Memory and disk given back: "on | off", one boot each.
fn giveback_rows(t: &mut Table, g: &super::giveback::GiveBack) {
    t.section(format!(
        "Given back to the host: balloon and discard on | off (one boot each; a container holds {} MiB of tmpfs, a {} MiB volume is written then removed)",
        g.touch_mib, g.disk_mib
    ));
    let (a, b) = (&g.on, &g.off);
    t.row("engine ready (uptime)", format!("{} | {}", secs(a.engine_ready), secs(b.engine_ready)));
    t.row("QEMU RSS idle", format!("{} | {}", mib(a.rss_idle), mib(b.rss_idle)));
    t.row("QEMU RSS while the container holds it", format!("{} | {}", mib(a.rss_peak), mib(b.rss_peak)));
    t.row(format!("QEMU RSS {} s after it is removed", super::giveback::SETTLE.as_secs()), format!("{} | {}", mib(a.rss_after), mib(b.rss_after)));
    let speed = |v: Option<f64>| v.map(|v| format!("{v:.0} MiB/s")).unwrap_or_else(|| "-".into());
    t.row(format!("then a container writes {} MiB to tmpfs", g.touch_mib), format!("{} | {}", speed(a.write_mib_s), speed(b.write_mib_s)));
    t.row("data disk image with the volume", format!("{} | {}", mib(a.image_full), mib(b.image_full)));
    t.row(format!("data disk image after removing it (≤ {} s)", super::giveback::DISK_LIMIT.as_secs()), format!("{} | {}", mib(a.image_after), mib(b.image_after)));
    t.row("removal → image shrunk by half the volume", format!("{} | {}", secs(a.image_shrunk_after), secs(b.image_shrunk_after)));
}

/// Our engine build beside Debian's podman package: "ours | Debian's".
fn debian_engine_rows(t: &mut Table, r: &Results, d: &super::DebianEngine) {
    t.section("Our podman build | Debian 13's podman package (ours: median of the boots above; Debian's: one boot)");
    let podman = |s: &super::size::Sizes| s.top_files.iter().find(|(p, _)| p.ends_with("usr/bin/podman")).map(|(_, n)| *n);
    let (x, y) = (&r.sizes, &d.sizes);
    let opt = |v: Option<u64>| v.map(mib).unwrap_or_else(|| "-".into());
    t.row("ISO", format!("{} | {}", mib(x.iso), mib(y.iso)));
    t.row("/usr squashfs", format!("{} | {}", mib(x.usr_squashfs), mib(y.usr_squashfs)));
    t.row("/usr files, uncompressed", format!("{} | {}", mib(x.usr_uncompressed), mib(y.usr_uncompressed)));
    t.row("/usr/bin/podman", format!("{} | {}", opt(podman(x)), opt(podman(y))));
    for m in MILESTONES {
        t.row(m.label, format!("{} | {}", secs(median(&milestone_samples(r, m.key))), secs(d.boot.milestone(m.key))));
    }
    let ping: Vec<f64> = r.boots.iter().filter_map(|b| b.qemu_to_ping).collect();
    t.row("host: QEMU start → first /_ping via bridge", format!("{} | {}", secs(median(&ping)), secs(d.boot.qemu_to_ping)));
    let (a, b) = (&r.memory_idle, &d.memory_idle);
    t.row("idle guest memory (MemTotal − MemAvailable)", format!("{} | {}", kib_mib(a.used), kib_mib(b.used)));
    t.row("engine RSS, idle", format!("{} | {}", kib_mib(a.engine_rss), kib_mib(b.engine_rss)));
    t.row("engine anonymous memory, idle", format!("{} | {}", kib_mib(a.engine_anon), kib_mib(b.engine_anon)));
    t.row("shutdown: power button → QEMU exit", format!("{} | {}", secs(median(&r.boots.iter().filter_map(|b| b.shutdown).collect::<Vec<_>>())), secs(d.boot.shutdown)));
}

/// Host edits to file watchers: "on | off", one boot each.
fn watch_rows(t: &mut Table, w: &super::watch::Watch) {
    t.section("Host edits → a container's inotify watcher (through `docker logs -f`): --watch on | off (one boot each)");
    let (a, b) = (&w.on, &w.off);
    let seen = |s: &super::watch::Side| format!("{} seen, {} missed", s.seen.len(), s.missed);
    t.row("host writes", format!("{} | {}", seen(a), seen(b)));
    t.row("write → event, median", format!("{} | {}", ms(median(&a.seen)), ms(median(&b.seen))));
    t.row("write → event, p99", format!("{} | {}", ms(p99(&a.seen)), ms(p99(&b.seen))));
    let last = |s: &super::watch::Side| match s.burst_last_seen {
        Some(t) => format!("{} ({} events)", secs(Some(t)), s.burst_events),
        None => format!("not seen ({} events)", s.burst_events),
    };
    t.row(format!("burst of {} host writes + 1: the last one seen after", super::watch::BURST), format!("{} | {}", last(a), last(b)));
    let idle = super::watch::IDLE.as_secs();
    t.row(format!("CPU of skiff run over {idle} s idle"), format!("{} | {}", secs(Some(a.idle_cpu_skiff)), secs(Some(b.idle_cpu_skiff))));
    t.row(format!("CPU of QEMU over {idle} s idle"), format!("{} | {}", secs(Some(a.idle_cpu_qemu)), secs(Some(b.idle_cpu_qemu))));
}

/// The aarch64 ISO beside x86_64's figures: "x86_64 | aarch64".
fn aarch64_rows(t: &mut Table, r: &Results, a: &super::Aarch64) {
    t.section("aarch64 beside x86_64: sizes, and guest uptime (x86_64: median of the boots above; aarch64: one boot, qemu-system-aarch64 TCG, UEFI)");
    let (x, y) = (&r.sizes, &a.sizes);
    for (label, x, y) in [
        ("ISO", x.iso, y.iso),
        ("kernel (bzImage | Image.gz)", x.kernel, y.kernel),
        ("initramfs, compressed", x.initramfs_compressed, y.initramfs_compressed),
        ("/usr squashfs", x.usr_squashfs, y.usr_squashfs),
        ("/usr files, uncompressed", x.usr_uncompressed, y.usr_uncompressed),
        ("init binary", x.init_binary, y.init_binary),
    ] {
        t.row(label, format!("{} | {}", mib(x), mib(y)));
    }
    for m in MILESTONES {
        t.row(m.label, format!("{} | {}", secs(median(&milestone_samples(r, m.key))), secs(a.boot.milestone(m.key))));
    }
    let ping: Vec<f64> = r.boots.iter().filter_map(|b| b.qemu_to_ping).collect();
    t.row("host: QEMU start → first /_ping via bridge", format!("{} | {}", secs(median(&ping)), secs(a.boot.qemu_to_ping)));
    t.row("host: `skiff run` → DOCKER_HOST printed", format!("{} | {}", secs(median(&r.boots.iter().map(|b| b.spawn_to_docker_host).collect::<Vec<_>>())), secs(Some(a.boot.spawn_to_docker_host))));
    t.row("shutdown: power button → QEMU exit", format!("{} | {}", secs(median(&r.boots.iter().filter_map(|b| b.shutdown).collect::<Vec<_>>())), secs(a.boot.shutdown)));
}

/// The figures of issue 12's table (and a few more worth watching), as
/// compared with tests/bench-baseline.json. Missing measurements are left out.
pub fn headline(r: &Results) -> Vec<Figure> {
    let s = &r.sizes;
    let mb = |b: u64| b as f64 / 1e6;
    let mut out = vec![
        Figure { key: "iso_mb", label: "ISO", unit: "MB", better: Better::Lower, value: mb(s.iso) },
        Figure { key: "kernel_mb", label: "kernel", unit: "MB", better: Better::Lower, value: mb(s.kernel) },
        Figure { key: "initramfs_mb", label: "initramfs", unit: "MB", better: Better::Lower, value: mb(s.initramfs_compressed) },
        Figure { key: "usr_squashfs_mb", label: "/usr squashfs", unit: "MB", better: Better::Lower, value: mb(s.usr_squashfs) },
        Figure { key: "init_binary_mib", label: "init binary", unit: "MiB", better: Better::Lower, value: s.init_binary as f64 / 1048576.0 },
    ];
    let mut push = |key, label, unit, better, value: Option<f64>| {
        if let Some(value) = value {
            out.push(Figure { key, label, unit, better, value });
        }
    };
    let floor = median(&r.floors.iter().map(|f| f.init_start).collect::<Vec<_>>());
    let ready = median(&milestone_samples(r, "engine_ready"));
    push("floor_init_s", "floor: trivial init start", "s", Better::Lower, floor);
    push("engine_exec_s", "engine exec (uptime)", "s", Better::Lower, median(&milestone_samples(r, "engine_exec")));
    push("engine_ready_s", "engine ready (uptime)", "s", Better::Lower, ready);
    push("engine_ready_past_floor_s", "engine ready past the floor", "s", Better::Lower, ready.zip(floor).map(|(a, b)| a - b));
    push("qemu_to_ping_s", "QEMU start → first /_ping via skiff run", "s", Better::Lower, median(&r.boots.iter().filter_map(|b| b.qemu_to_ping).collect::<Vec<_>>()));
    push("idle_used_mib", "idle guest memory (MemTotal − MemAvailable)", "MiB", Better::Lower, Some(r.memory_idle.used as f64 / 1024.0));
    push("engine_rss_mib", "engine RSS, idle", "MiB", Better::Lower, Some(r.memory_idle.engine_rss as f64 / 1024.0));
    push("engine_anon_mib", "engine anonymous memory, idle", "MiB", Better::Lower, Some(r.memory_idle.engine_anon as f64 / 1024.0));
    push("docker_load_mib_s", "docker load", "MiB/s", Better::Higher, Some(r.load.mib_per_s()));
    push("ping_new_conn_ms", "GET /_ping, new connection, whole path (median)", "ms", Better::Lower, find(r, "whole").and_then(|p| median(&p.pings.new)).map(|v| v * 1e3));
    push("shutdown_s", "shutdown (power button → QEMU exit)", "s", Better::Lower, median(&r.boots.iter().filter_map(|b| b.shutdown).collect::<Vec<_>>()));
    out
}

fn find<'a>(r: &'a Results, key: &str) -> Option<&'a PathFigures> {
    r.paths.iter().find(|p| p.key == key)
}

fn path_rows(t: &mut Table, p: &PathFigures) {
    t.row("    download, upload", format!("{:.1} MiB/s, {:.1} MiB/s", p.download.mib_per_s(), p.upload.mib_per_s()));
    let failed = |n: usize| if n == 0 { String::new() } else { format!("  ({n} failed)") };
    t.row(
        format!("    GET /_ping new conn., median / p99 of {}", p.pings.new.len()),
        format!("{} / {}{}", ms(median(&p.pings.new)), ms(p99(&p.pings.new)), failed(p.pings.new_failures)),
    );
    t.row(
        format!("    GET /_ping kept-alive, median / p99 of {}", p.pings.kept.len()),
        format!("{} / {}{}", ms(median(&p.pings.kept)), ms(p99(&p.pings.kept)), failed(p.pings.kept_failures)),
    );
}

fn stat(samples: &[f64]) -> Value {
    json!({ "median": median(samples), "samples": samples })
}

/// The JSON document.
pub fn json(r: &Results) -> Value {
    let s = &r.sizes;
    let boots: Vec<Value> = r.boots.iter().map(|b| {
        let m: serde_json::Map<String, Value> = b.milestones.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({ "guest_uptime_s": m, "host_qemu_to_ping_s": b.qemu_to_ping, "host_spawn_to_docker_host_s": b.spawn_to_docker_host, "shutdown_s": b.shutdown })
    }).collect();
    let medians: serde_json::Map<String, Value> = MILESTONES.iter().map(|m| (m.key.to_string(), json!(median(&milestone_samples(r, m.key))))).collect();
    let floor_init: Vec<f64> = r.floors.iter().map(|f| f.init_start).collect();
    let ready = median(&milestone_samples(r, "engine_ready"));
    let mem = |m: &super::memory::Memory| json!({
        "mem_total_kib": m.mem_total, "used_kib": m.used, "root_tmpfs_used_kib": m.root_tmpfs_used, "shmem_kib": m.shmem,
        "engine_rss_kib": m.engine_rss, "engine_anon_kib": m.engine_anon, "init_rss_kib": m.init_rss, "probe_rss_kib": m.probe_rss,
        "anon_pages_kib": m.anon_pages, "slab_unreclaimable_kib": m.slab_unreclaimable, "kernel_stack_kib": m.kernel_stack, "page_tables_kib": m.page_tables,
    });
    let transfer = |t: &super::socket::Transfer| json!({ "bytes": t.bytes, "seconds": t.secs, "mib_per_s": t.mib_per_s() });
    let paths: Vec<Value> = r.paths.iter().map(|p| json!({
        "key": p.key, "label": p.label,
        "download": transfer(&p.download), "upload": transfer(&p.upload),
        "ping_new_conn_s": { "median": median(&p.pings.new), "p99": p99(&p.pings.new), "samples": p.pings.new, "failures": p.pings.new_failures },
        "ping_kept_alive_s": { "median": median(&p.pings.kept), "p99": p99(&p.pings.kept), "samples": p.pings.kept, "failures": p.pings.kept_failures },
    })).collect();
    let shutdown: Vec<f64> = r.boots.iter().filter_map(|b| b.shutdown).collect();
    json!({
        "vm": { "accel": "tcg", "cpus": r.vm_cpus, "memory_mib": r.vm_memory_mib },
        "size_bytes": {
            "iso": s.iso, "iso_aarch64": r.aarch64.as_ref().map(|a| a.sizes.iso), "kernel": s.kernel, "initramfs_xz": s.initramfs_compressed,
            "initramfs_cpio": s.initramfs_uncompressed, "init_binary": s.init_binary,
            "usr_squashfs": s.usr_squashfs, "usr_files": s.usr_uncompressed,
            "top_files": s.top_files.iter().map(|(p, n)| json!({ "path": p, "bytes": n })).collect::<Vec<_>>(),
        },
        "boot": {
            "median_guest_uptime_s": medians,
            "median_host_qemu_to_ping_s": median(&r.boots.iter().filter_map(|b| b.qemu_to_ping).collect::<Vec<_>>()),
            "boots": boots,
        },
        "floor": {
            "kernel_run_init_s": stat(&r.floors.iter().filter_map(|f| f.kernel_run_init).collect::<Vec<_>>()),
            "init_start_s": stat(&floor_init),
            "host_qemu_to_exit_s": stat(&r.floors.iter().map(|f| f.wall_to_exit).collect::<Vec<_>>()),
            "ours_s": ready.zip(median(&floor_init)).map(|(a, b)| a - b),
        },
        "memory": { "idle": mem(&r.memory_idle), "after_containers": mem(&r.memory_after), "containers_run": r.containers_run },
        "socket": {
            "image_bytes": r.image_bytes,
            "docker_load": transfer(&r.load), "docker_save": transfer(&r.save),
            "paths": paths, "not_compared": r.not_compared,
        },
        "ports": {
            "publish_to_first_answer_s": stat(&r.ports.publish_to_answer),
            "routes": r.ports.routes.iter().map(|p| json!({
                "key": p.key, "label": p.label, "download": transfer(&p.download),
                "get_new_conn_s": { "median": median(&p.requests), "p99": p99(&p.requests), "samples": p.requests, "failures": p.failures },
            })).collect::<Vec<_>>(),
            "notes": r.ports.notes,
        },
        "shutdown_s": stat(&shutdown),
        "giveback": r.giveback.as_ref().map(|g| {
            let side = |s: &super::giveback::Side| json!({
                "engine_ready_s": s.engine_ready, "qemu_rss_idle_bytes": s.rss_idle, "qemu_rss_peak_bytes": s.rss_peak,
                "qemu_rss_after_bytes": s.rss_after, "write_mib_per_s": s.write_mib_s, "image_full_bytes": s.image_full, "image_after_bytes": s.image_after,
                "image_shrunk_after_s": s.image_shrunk_after,
            });
            json!({ "touch_mib": g.touch_mib, "disk_mib": g.disk_mib, "settle_s": super::giveback::SETTLE.as_secs(), "on": side(&g.on), "off": side(&g.off) })
        }),
        "watch": r.watch.as_ref().map(|w| {
            let side = |s: &super::watch::Side| json!({
                "write_to_event_s": { "median": median(&s.seen), "p99": p99(&s.seen), "samples": s.seen }, "missed": s.missed,
                "idle_cpu_skiff_s": s.idle_cpu_skiff, "idle_cpu_qemu_s": s.idle_cpu_qemu,
                "burst_files": super::watch::BURST, "burst_last_seen_s": s.burst_last_seen, "burst_events": s.burst_events,
            });
            json!({ "idle_s": super::watch::IDLE.as_secs(), "on": side(&w.on), "off": side(&w.off) })
        }),
        "aarch64": r.aarch64.as_ref().map(|a| {
            let m: serde_json::Map<String, Value> = a.boot.milestones.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({
                "size_bytes": { "iso": a.sizes.iso, "kernel": a.sizes.kernel, "initramfs_xz": a.sizes.initramfs_compressed,
                    "init_binary": a.sizes.init_binary, "usr_squashfs": a.sizes.usr_squashfs, "usr_files": a.sizes.usr_uncompressed },
                "boot": { "guest_uptime_s": m, "host_qemu_to_ping_s": a.boot.qemu_to_ping,
                    "host_spawn_to_docker_host_s": a.boot.spawn_to_docker_host, "shutdown_s": a.boot.shutdown },
            })
        }),
        "debian_engine": r.debian_engine.as_ref().map(|d| {
            let m: serde_json::Map<String, Value> = d.boot.milestones.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            json!({
                "size_bytes": { "iso": d.sizes.iso, "usr_squashfs": d.sizes.usr_squashfs, "usr_files": d.sizes.usr_uncompressed },
                "boot": { "guest_uptime_s": m, "host_qemu_to_ping_s": d.boot.qemu_to_ping, "shutdown_s": d.boot.shutdown },
                "memory_idle": mem(&d.memory_idle),
            })
        }),
        "shares": r.shares.iter().map(|f| json!({
            "via": f.via, "tree_files": super::shares::TREE_FILES, "find_cold_s": f.find_cold, "find_warm_s": stat(&f.find_warm),
            "big_mib": f.big_mib, "write_s": f.write, "read_s": f.read, "write_mib_per_s": f.write_mib_s(), "read_mib_per_s": f.read_mib_s(),
        })).collect::<Vec<_>>(),
    })
}
