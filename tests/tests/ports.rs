//! Published ports on the host's localhost, end to end: `docker run -p`
//! in the guest, plain TCP clients (and curl, nc) on the host. The port
//! table follows the engine across container restarts, an engine crash
//! and a reboot with a data disk; a host port that cannot be bound is
//! listed by `skiff ports` while the others work; the guest refuses to
//! forward to anything that is not published. UDP published ports answer
//! each host client with its own replies.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use skiff_tests::{blank_disk, busybox_image, busybox_root, image_tar, static_test_bin, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";

/// Waits up to `limit` for `f` to hold; returns how long it took.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `GET path` over HTTP/1.0 to `addr`; the whole answer, if any.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes()).ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// True if `addr` answers `/` with 200 and `want` in the body.
fn answers(addr: SocketAddr, want: &str) -> bool {
    http_get(addr, "/").is_some_and(|a| a.starts_with("HTTP/1.") && a.contains(" 200 ") && a.contains(want))
}

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, port))
}

/// True if nothing accepts on `addr`.
fn closed(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

/// `n` consecutive ports free on both 127.0.0.1 and ::1.
fn free_ports(n: u16, from: u16) -> u16 {
    let mut base = from;
    loop {
        let free = (base..base + n).all(|p| TcpListener::bind(v4(p)).is_ok() && TcpListener::bind(v6(p)).is_ok());
        if free {
            return base;
        }
        base += n;
    }
}

/// The container command: busybox httpd serving `/www/index.html` (its
/// text is `hello from NAME`) on each of `ports` (the last in the foreground).
fn httpd(name: &str, ports: &[u16]) -> String {
    let mut cmd = format!("mkdir -p /www && echo 'hello from {name}' > /www/index.html");
    for p in &ports[..ports.len() - 1] {
        cmd.push_str(&format!(" && httpd -p {p} -h /www"));
    }
    cmd + &format!(" && exec httpd -f -p {} -h /www", ports[ports.len() - 1])
}

/// `docker run -d --name NAME ARGS IMAGE sh -c HTTPD`; returns when docker does.
fn run_web(vm: &Vm, name: &str, args: &[&str], ports: &[u16]) {
    let mut all = vec!["run", "-d", "--name", name];
    all.extend_from_slice(args);
    let cmd = httpd(name, ports);
    all.extend_from_slice(&[IMAGE, "sh", "-c", &cmd]);
    vm.docker_ok(&all);
}

/// Speaks the forward protocol directly to the guest's port 2377 over the
/// hybrid-vsock socket; returns the guest's answer line.
fn forward_request(vm: &Vm, line: &str) -> String {
    // Authenticated as the host CLI is: what is refused here is the target.
    let mut s = vm.authed_vsock(skiff_proto::ports::DEFAULT_FORWARD_PORT).expect("CONNECT 2377");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let reply = skiff_proto::read_line(&mut s, 200).unwrap_or_default();
    String::from_utf8_lossy(&reply).into_owned()
}

/// Open descriptors of the guest's PID 1.
fn init_fds(vm: &Vm) -> usize {
    vm.shell_ok("ls /proc/1/fd | wc -l").trim().parse().expect("a count")
}

fn curl(url: &str) -> String {
    let out = Command::new("curl").args(["-sS", "--max-time", "10", url]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_ports_reach_the_host_and_follow_the_engine() {
    let scratch = Scratch::new("ports");
    let image = busybox_image(&scratch.0, IMAGE);
    let disk = scratch.0.join("data.img");
    blank_disk(&disk, 2 << 30);
    let boot = |dir: &Path| Vm::boot_with(dir, &["--disk", disk.to_str().unwrap(), "--memory", "1536"]);
    let vm = boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let base = free_ports(12, 24000 + (std::process::id() % 1000) as u16 * 8);
    let (p_web, p_local, p_range, p_other, p_always) = (base, base + 1, base + 2, base + 5, base + 6);
    // A host port someone else holds (on 127.0.0.1).
    let held = TcpListener::bind(v4(base + 7)).expect("hold a port");
    let p_busy = base + 7;

    // -p HOSTPORT:8080: 127.0.0.1, ::1 and localhost answer within 2 s.
    run_web(&vm, "web", &["-p", &format!("{p_web}:8080")], &[8080]);
    let took = eventually(Duration::from_secs(30), || answers(v4(p_web), "hello from web"));
    let took = took.expect("the published port never answered on 127.0.0.1");
    eprintln!("ports: docker run -d returned -> first answer on 127.0.0.1:{p_web}: {:.2}s", took.as_secs_f64());
    assert!(took < Duration::from_secs(2), "first answer took {took:?}");
    assert!(answers(v6(p_web), "hello from web"), "no answer on [::1]");
    assert!(curl(&format!("http://localhost:{p_web}/")).contains("hello from web"), "no answer on localhost");

    // The guest forwards only what is published.
    let ip = vm.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]).trim().to_string();
    assert_eq!(forward_request(&vm, &format!("SKIFF-FORWARD/1 tcp {ip} 8080\n")), "OK", "a published target");
    for target in [format!("{ip} 22"), "127.0.0.1 2375".into(), "10.88.0.250 8080".into(), "1.1.1.1 80".into()] {
        let reply = forward_request(&vm, &format!("SKIFF-FORWARD/1 tcp {target}\n"));
        assert!(reply.starts_with("ERR ") && reply.contains("not a published port"), "{target}: {reply:?}");
    }
    assert!(forward_request(&vm, "GET / HTTP/1.1\n").starts_with("ERR "));

    // An explicit loopback address is kept: nothing on ::1.
    run_web(&vm, "local", &["-p", &format!("127.0.0.1:{p_local}:8080")], &[8080]);
    assert!(eventually(Duration::from_secs(10), || answers(v4(p_local), "hello from local")).is_some());
    assert!(closed(v6(p_local)), "-p 127.0.0.1:X:Y must not listen on ::1");

    // -p 8080: the host port the engine picked.
    run_web(&vm, "auto", &["-p", "8080"], &[8080]);
    let mapped = vm.docker_ok(&["port", "auto", "8080"]);
    let auto_port: u16 = mapped.lines().next().and_then(|l| l.rsplit(':').next()).and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("docker port printed {mapped:?}"));
    assert!(eventually(Duration::from_secs(10), || answers(v4(auto_port), "hello from auto")).is_some(), "docker port said {mapped}");

    // A range of three: one listener per port.
    let range = format!("{p_range}-{}:8080-8082", p_range + 2);
    run_web(&vm, "range", &["-p", &range], &[8080, 8081, 8082]);
    for p in p_range..p_range + 3 {
        assert!(eventually(Duration::from_secs(10), || answers(v4(p), "hello from range")).is_some(), "range port {p}");
    }

    // A host port in use: listed as such; the container's other port works.
    run_web(&vm, "clash", &["-p", &format!("{p_busy}:8080"), "-p", &format!("{p_other}:8081")], &[8080, 8081]);
    assert!(eventually(Duration::from_secs(10), || answers(v4(p_other), "hello from clash")).is_some());
    let listing = || String::from_utf8_lossy(&vm.skiff(&["ports"], None).stdout).into_owned();
    let busy_line = format!("tcp 127.0.0.1:{p_busy} -> ");
    let text = listing();
    eprintln!("ports: skiff ports:\n{text}");
    let line = text.lines().find(|l| l.starts_with(&busy_line)).unwrap_or_else(|| panic!("{p_busy} not listed:\n{text}"));
    assert!(line.contains("failed: ") && line.to_lowercase().contains("in use"), "{line}");
    assert!(text.contains(&format!("tcp 127.0.0.1:{p_web} -> {ip}:8080 listening")), "{text}");
    assert!(answers(v4(p_web), "hello from web"), "other ports must keep working");
    // Once the port is free the retry binds it.
    drop(held);
    assert!(eventually(Duration::from_secs(15), || answers(v4(p_busy), "hello from clash")).is_some(), "not retried");

    // The client's half-close (nc -N) still gets the whole answer.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -N 127.0.0.1 {p_web}"))
        .output()
        .expect("nc");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.") && text.contains("hello from web"), "nc -N got {text:?}");

    // 100 parallel requests; PID 1 closes every descriptor afterwards.
    let fds_before = init_fds(&vm);
    let started = Instant::now();
    let workers: Vec<_> = (0..100).map(|_| thread::spawn(move || answers(v4(p_web), "hello from web"))).collect();
    let ok = workers.into_iter().map(|w| w.join().unwrap()).filter(|ok| *ok).count();
    eprintln!("ports: 100 parallel requests: {ok} answered in {:.2}s", started.elapsed().as_secs_f64());
    assert_eq!(ok, 100, "parallel requests failed");
    let mut fds_after = 0;
    let settled = eventually(Duration::from_secs(15), || {
        fds_after = init_fds(&vm);
        fds_after <= fds_before
    });
    assert!(settled.is_some(), "PID 1 holds {fds_after} descriptors, {fds_before} before the requests");

    // 256 MiB through the published port, byte for byte.
    let sum = vm.docker_ok(&["exec", "web", "sh", "-c", "dd if=/dev/urandom of=/www/big bs=1048576 count=256 2>/dev/null && sha256sum /www/big"]);
    let want = sum.split_whitespace().next().expect("sha256sum output").to_string();
    let got_file = scratch.0.join("big.download");
    let started = Instant::now();
    let out = Command::new("curl").args(["-sS", "--max-time", "240", "-o"]).arg(&got_file).arg(format!("http://127.0.0.1:{p_web}/big"))
        .status().expect("curl");
    let secs = started.elapsed().as_secs_f64();
    assert!(out.success(), "download failed");
    assert_eq!(std::fs::metadata(&got_file).unwrap().len(), 256 << 20);
    eprintln!("ports: 256 MiB download in {secs:.1}s ({:.0} MiB/s)", 256.0 / secs);
    assert_eq!(skiff_tests::sha256(&got_file), want, "the download differs from the file in the container");
    std::fs::remove_file(&got_file).unwrap();

    // docker restart: the port answers again (maybe at a new container address).
    vm.docker_ok(&["restart", "-t", "1", "web"]);
    let back = eventually(Duration::from_secs(30), || answers(v4(p_web), "hello from web"));
    eprintln!("ports: docker restart -> answering again after {back:?}");
    assert!(back.is_some(), "no answer after docker restart");

    // The engine killed: containers keep serving, and once the engine is
    // back the table follows it again (a new container is published).
    vm.shell_ok("kill -9 $(pidof podman)");
    assert!(eventually(Duration::from_secs(120), || vm.ping()).is_some(), "the engine did not come back");
    assert!(answers(v4(p_web), "hello from web"), "no answer after the engine was killed");
    run_web(&vm, "always", &["--restart=always", "-p", &format!("{p_always}:8080")], &[8080]);
    let after_kill = eventually(Duration::from_secs(30), || answers(v4(p_always), "hello from always"));
    eprintln!("ports: after the engine kill, docker run -d -> answer: {after_kill:?}");
    assert!(after_kill.is_some(), "a container started after the engine restart is not published");

    // docker rm -f: the host port closes within 2 s (both addresses).
    vm.docker_ok(&["rm", "-f", "web"]);
    let gone = eventually(Duration::from_secs(30), || closed(v4(p_web)) && closed(v6(p_web)));
    eprintln!("ports: docker rm -f returned -> host port closed after {gone:?}");
    assert!(gone.is_some_and(|t| t < Duration::from_secs(2)), "host port still open: {gone:?}");
    assert!(answers(v4(p_range), "hello from range"), "removing one container must not disturb the others");

    // Reboot with the data disk: the --restart=always container's port answers again.
    vm.shutdown();
    assert!(eventually(Duration::from_secs(5), || closed(v4(p_always))).is_some(), "port left open after the VM stopped");
    let vm = boot(&scratch.0);
    let back = eventually(Duration::from_secs(180), || answers(v4(p_always), "hello from always"));
    eprintln!("ports: after reboot, engine ready -> port answering: {back:?}");
    assert!(back.is_some(), "the --restart=always container's port does not answer after a reboot");
    assert!(closed(v4(p_range)), "a container without a restart policy came back after the reboot");
    vm.shutdown();
}

/// Sends `msg` from `client` to `to` and returns the first reply, if one
/// comes within its read timeout.
fn udp_ask(client: &UdpSocket, to: SocketAddr, msg: &str) -> Option<String> {
    client.send_to(msg.as_bytes(), to).ok()?;
    let mut buf = [0u8; 2048];
    let n = client.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `docker run -p HOST:5353/udp` with a UDP echo server in the container:
/// host clients on 127.0.0.1 get their own answers, `skiff ports` lists
/// the port, and removing the container frees it.
#[test]
fn udp_published_ports_answer_each_client() {
    let scratch = Scratch::new("ports-udp");
    let root = scratch.0.join("udp-root");
    busybox_root(&root);
    std::fs::copy(static_test_bin("udp_echo"), root.join("bin/udp_echo")).unwrap();
    let image = image_tar(&scratch.0, &root, "skiff-test/udp:latest", r#""Env":["PATH=/bin"],"Cmd":["sh"]"#);
    let vm = Vm::boot(&scratch.0);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let to = v4(port);
    vm.docker_ok(&["run", "-d", "--name", "udp", "-p", &format!("127.0.0.1:{port}:5353/udp"), "skiff-test/udp", "udp_echo", "5353"]);

    let clients: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for c in &clients {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let first = eventually(Duration::from_secs(90), || udp_ask(&clients[0], to, "hello").as_deref() == Some("echo hello"));
    let first = first.unwrap_or_else(|| panic!("no UDP answer on {to}; ports:\n{}", String::from_utf8_lossy(&vm.skiff(&["ports"], None).stdout)));
    eprintln!("ports: udp answered after {:.1}s", first.as_secs_f64());
    // Two clients, interleaved: each gets its own replies (a lost datagram is asked again: it is UDP).
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            let msg = format!("client {i} round {round}");
            let want = format!("echo {msg}");
            let got = (0..5).find_map(|_| udp_ask(c, to, &msg).filter(|r| *r == want));
            assert_eq!(got, Some(want), "client {i} round {round}");
        }
    }
    let listing = String::from_utf8_lossy(&vm.skiff(&["ports"], None).stdout).into_owned();
    assert!(listing.contains(&format!("udp 127.0.0.1:{port} -> ")) && listing.contains("listening"), "{listing}");

    vm.docker_ok(&["rm", "-f", "udp"]);
    let freed = eventually(Duration::from_secs(60), || UdpSocket::bind(to).is_ok());
    assert!(freed.is_some(), "the host's UDP port stays bound after the container is gone");
    vm.shutdown();
}

/// A guest forward connection to `target` (`IP PORT`), kept open; its
/// answer line (`OK`, or `ERR ...`).
fn hold_forward(vm: &Vm, target: &str) -> (std::os::unix::net::UnixStream, String) {
    let mut s = vm.authed_vsock(skiff_proto::ports::DEFAULT_FORWARD_PORT).expect("CONNECT 2377 and the handshake");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("SKIFF-FORWARD/1 tcp {target}\n").as_bytes()).unwrap();
    let reply = skiff_proto::read_line(&mut s, 200).unwrap_or_default();
    (s, String::from_utf8_lossy(&reply).into_owned())
}

/// Some(true) if the peer has closed `s`, Some(false) if it is open and
/// silent, None if bytes came.
fn peer_closed(s: &TcpStream) -> Option<bool> {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let r = match (&*s).read(&mut byte) {
        Ok(0) => Some(true),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(false),
        Err(_) => Some(true), // reset: closed too
    };
    s.set_nonblocking(false).unwrap();
    r
}

/// Another local user crowds one published port with idle connections:
/// more than the guest's 512 forward places for every port together. The
/// port keeps 128 of them (`--port-connections`' default) and closes the
/// rest at once; another published port still answers; the guest holds
/// one target to 256 of its places; and a connection with no traffic
/// either way goes after the idle limit (20 s here, `--port-idle-timeout`)
/// while a slow request longer than that does not.
#[test]
fn one_ports_crowd_does_not_stop_the_others() {
    skiff_tests::raise_open_files();
    let scratch = Scratch::new("ports-crowd");
    let image = busybox_image(&scratch.0, IMAGE);
    let vm = Vm::boot_with(&scratch.0, &["--port-idle-timeout", "20"]);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let base = free_ports(2, 26000 + (std::process::id() % 1000) as u16 * 2);
    let (p_crowded, p_other) = (base, base + 1);
    run_web(&vm, "crowded", &["-p", &format!("{p_crowded}:8080")], &[8080]);
    run_web(&vm, "other", &["-p", &format!("{p_other}:8080")], &[8080]);
    for (p, name) in [(p_crowded, "hello from crowded"), (p_other, "hello from other")] {
        assert!(eventually(Duration::from_secs(30), || answers(v4(p), name)).is_some(), "{p} never answered");
    }

    // 600 idle connections to one port.
    let crowd: Vec<TcpStream> = (0..600).map(|i| TcpStream::connect(v4(p_crowded)).unwrap_or_else(|e| panic!("connection {i}: {e}"))).collect();
    let (mut open, mut closed) = (0, 0);
    let settled = eventually(Duration::from_secs(60), || {
        let states: Vec<_> = crowd.iter().map(peer_closed).collect();
        open = states.iter().filter(|s| **s == Some(false)).count();
        closed = states.iter().filter(|s| **s == Some(true)).count();
        open + closed == crowd.len() && open <= 128
    });
    eprintln!("ports: 600 idle connections to one port: {open} kept, {closed} closed");
    assert!(settled.is_some(), "{open} of 600 idle connections still open, {closed} closed (the port's limit is 128)");
    assert_eq!(open, 128, "the port keeps its 128 places ({closed} closed)");

    // Another published port still answers; the crowded one closes a newcomer at once.
    assert!(answers(v4(p_other), "hello from other"), "another port is crowded out");
    let late = TcpStream::connect(v4(p_crowded)).expect("the listener still accepts");
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!((&late).read(&mut buf), Ok(0)), "a connection past the limit is closed at once, with nothing sent");

    // The guest holds one target to 256 of its forward places: 128 more are
    // served beside the host's 128, the next is refused, another target is not.
    let ip = vm.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "crowded"]).trim().to_string();
    let other_ip = vm.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "other"]).trim().to_string();
    // (First the host's 128 forwards have all reached the container.)
    let count = "awk '$3 ~ /:1F90$/ && $4 == \"01\"' /proc/net/tcp | wc -l";
    let mut forwarded = 0;
    let ready = eventually(Duration::from_secs(60), || {
        forwarded = vm.shell_ok(count).trim().parse().unwrap_or(0);
        forwarded >= 128
    });
    assert!(ready.is_some(), "the guest holds {forwarded} connections to port 8080, not the host's 128");
    let mut held = Vec::new();
    for i in 0..128 {
        let (s, reply) = hold_forward(&vm, &format!("{ip} 8080"));
        assert_eq!(reply, "OK", "forward {i} to the crowded target");
        held.push(s);
    }
    let (_s, reply) = hold_forward(&vm, &format!("{ip} 8080"));
    assert!(reply.starts_with("ERR ") && reply.contains("too many connections"), "257th to one target: {reply:?}");
    assert_eq!(hold_forward(&vm, &format!("{other_ip} 8080")).1, "OK", "another target is still served");
    drop(held);

    // The crowd leaves: the port answers again.
    drop(crowd);
    assert!(eventually(Duration::from_secs(30), || answers(v4(p_crowded), "hello from crowded")).is_some(), "the crowded port does not recover");

    // Idle either way for 20 s: closed (busybox httpd itself would wait 60 s for a request).
    let idle = TcpStream::connect(v4(p_other)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let began = Instant::now();
    let ended = (&idle).read(&mut buf);
    let after = began.elapsed();
    eprintln!("ports: an idle connection was closed after {:.1}s ({ended:?})", after.as_secs_f64());
    assert!(matches!(ended, Ok(0)), "{ended:?}");
    assert!(after >= Duration::from_secs(18) && after < Duration::from_secs(45), "closed after {after:?}, the idle limit is 20 s");

    // Traffic keeps a connection: a request sent a header line every 2 s
    // for 30 s, longer than the idle limit, is answered whole.
    let mut slow = TcpStream::connect(v4(p_other)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.0\r\n").unwrap();
    for i in 0..15 {
        thread::sleep(Duration::from_secs(2));
        slow.write_all(format!("X-Slow-{i}: yes\r\n").as_bytes()).expect("cut while sending");
    }
    slow.write_all(b"\r\n").unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    eprintln!("ports: a request sent over {:.1}s got {} bytes back", started.elapsed().as_secs_f64(), answer.len());
    assert!(answer.contains(" 200 ") && answer.contains("hello from other"), "{answer:?}");
    vm.shutdown();
}
