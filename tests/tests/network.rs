//! Networking done by the init: DHCP from QEMU's user-mode network, DNS
//! through the server DHCP named, outbound traffic and `docker run -p` from
//! containers, SLAAC, and a static configuration on a wire with no DHCP
//! server at all. Everything the guest reaches runs in this test.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::events::{Event, Note};
use skiff_tests::{busybox_image, noted_in, Scratch, Vm};

const IMAGE: &str = "skiff-test/busybox:latest";

/// A one-page HTTP server on 127.0.0.1 (QEMU user-net's 10.0.2.2 reaches it).
fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test HTTP server");
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req);
            let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

/// A DNS server answering one name with an A record; it records every
/// question. Any other name gets NXDOMAIN.
fn dns_server(addr: &str, name: &'static str, answer: Ipv4Addr) -> Arc<Mutex<Vec<String>>> {
    let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind the test DNS server on {addr} (needs root): {e}"));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            let Some((qname, end)) = question(q) else { continue };
            let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
            log.lock().unwrap().push(format!("{qname} type {qtype}"));
            let known = qname.eq_ignore_ascii_case(name);
            let mut r = q[..end + 4].to_vec();
            r[2] = 0x81; // response, recursion desired
            r[3] = if known { 0x80 } else { 0x83 }; // recursion available; NXDOMAIN if unknown
            r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
            if known && qtype == 1 {
                r[7] = 1;
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&answer.octets());
            }
            let _ = sock.send_to(&r, from);
        }
    });
    asked
}

/// The name in a DNS query and the offset of its QTYPE.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).into_owned());
        pos += len;
    }
    (q.len() >= pos + 4).then(|| (labels.join("."), pos))
}

/// True if the guest reported `link` getting `addr`/`prefix` (a typed event).
fn has_address(vm: &Vm, link: &str, addr: Ipv4Addr, prefix: u8) -> bool {
    vm.wait_event(Duration::from_secs(60), |e| *e == Event::Network { link: link.into(), addr: addr.into(), prefix })
}

/// The guest's routing table, as a host-network container sees it (`ip route`).
fn guest_routes(vm: &Vm) -> String {
    vm.docker_ok(&["run", "--rm", "--network", "host", IMAGE, "ip", "route"])
}

/// True if `routes` (`ip route` output) has a default route via `gw` on `dev`.
fn default_route(routes: &str, gw: &str, dev: &str) -> bool {
    routes.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.starts_with(&["default", "via", gw]) && w.windows(2).any(|p| p == ["dev", dev])
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET / from a port on the host, retrying while the other end starts.
fn get_with_retry(port: u16, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        match attempt {
            Ok(text) if text.contains("200") => return text,
            _ if Instant::now() > end => panic!("no HTTP answer on 127.0.0.1:{port} within {limit:?}: {attempt:?}"),
            _ => thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// DHCP from QEMU user-net; containers reach a host server by IP and by a
/// name resolved through the DNS server DHCP handed out; `-p` publishes.
///
/// QEMU's DNS (10.0.2.3) forwards to the nameserver in the host's
/// /etc/resolv.conf, which this test cannot own. So `skiff run` starts in a
/// private mount namespace whose /etc/resolv.conf names a DNS server this
/// test runs on 127.0.0.77:53; that server maps a test name to 10.0.2.2.
/// The guest itself only ever talks to 10.0.2.3, as DHCP told it to.
#[test]
fn dhcp_dns_and_container_traffic() {
    let scratch = Scratch::new("net-dhcp");
    let image = busybox_image(&scratch.0, IMAGE);
    let body = "skiff-network-test-body";
    let port = http_server(body);
    let asked = dns_server("127.0.0.77:53", "webhost.skiff.test", Ipv4Addr::new(10, 0, 2, 2));
    let resolv = scratch.0.join("host-resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.77\n").unwrap();
    let published = free_port();
    let net = format!("user,model=virtio-net-pci,hostname=dhcpguest,domainname=skiff.test,hostfwd=tcp:127.0.0.1:{published}-:8080");
    let wrapper = ["unshare", "-m", "sh", "-c", r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#, resolv.to_str().unwrap()];
    let vm = Vm::boot_wrapped(&scratch.0, &wrapper, &["--net", &net]);
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);

    // The lease, from the guest's events and its routing table.
    assert!(has_address(&vm, "eth0", Ipv4Addr::new(10, 0, 2, 15), 24), "no DHCP address 10.0.2.15/24 on eth0: {:?}", vm.events());
    let routes = guest_routes(&vm);
    assert!(default_route(&routes, "10.0.2.2", "eth0"), "no default route via QEMU's gateway 10.0.2.2:\n{routes}");
    assert!(vm.wait_noted(Duration::from_secs(30), Note::HostName, "dhcpguest"), "host name from DHCP not set: {:?}", vm.noted(Note::HostName));

    // The guest's own resolv.conf, as a host-network container sees it.
    let resolv = vm.docker_ok(&["run", "--rm", "--network", "host", IMAGE, "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.0.2.3"), "guest resolv.conf: {resolv}");
    assert!(resolv.contains("search skiff.test"), "DHCP domain as search: {resolv}");

    let by_ip = vm.docker_ok(&["run", "--rm", IMAGE, "wget", "-qO-", &format!("http://10.0.2.2:{port}/")]);
    assert_eq!(by_ip.trim(), body, "container to host by IP");
    let by_name = vm.docker_ok(&["run", "--rm", IMAGE, "wget", "-qO-", &format!("http://webhost.skiff.test:{port}/")]);
    assert_eq!(by_name.trim(), body, "container to host by name");
    let questions = asked.lock().unwrap().clone();
    assert!(questions.iter().any(|q| q.starts_with("webhost.skiff.test")), "the name went through the test DNS: {questions:?}");

    // docker run -p: host 127.0.0.1:published -> QEMU -> guest :8080 -> container :80.
    vm.docker_ok(&["run", "-d", "--name", "web", "-p", "8080:80", IMAGE, "sh", "-c",
        "mkdir /www && echo published-ok > /www/index.html && exec httpd -f -p 80 -h /www"]);
    let page = get_with_retry(published, Duration::from_secs(60));
    assert!(page.contains("published-ok"), "published port answer: {page}");
    vm.docker_ok(&["rm", "-f", "web"]);

    // A user-defined network (netavark): containers on it find each other
    // by name and other names are forwarded (aardvark-dns).
    vm.docker_ok(&["network", "create", "skiffnet"]);
    vm.docker_ok(&["run", "-d", "--name", "named", "--network", "skiffnet", IMAGE, "sh", "-c",
        "mkdir /www && echo by-container-name > /www/index.html && exec httpd -f -p 80 -h /www"]);
    let retry = |url: &str| format!("for i in $(seq 20); do wget -qO- {url} && exit 0; sleep 1; done; exit 1");
    let by_container = vm.docker_ok(&["run", "--rm", "--network", "skiffnet", IMAGE, "sh", "-c", &retry("http://named/")]);
    assert_eq!(by_container.trim(), "by-container-name", "container to container by name on a user-defined network");
    let forwarded = vm.docker_ok(&["run", "--rm", "--network", "skiffnet", IMAGE, "wget", "-qO-", &format!("http://webhost.skiff.test:{port}/")]);
    assert_eq!(forwarded.trim(), body, "container to host by name from a user-defined network");
    vm.docker_ok(&["rm", "-f", "named"]);
    vm.docker_ok(&["network", "rm", "skiffnet"]);

    // SLAAC from QEMU's router advertisements (prefix fec0::/64): the
    // guest's eth0 gets a site-local address (waited for up to 60 s).
    let v6 = vm.docker_ok(&["run", "--rm", "--network", "host", IMAGE, "sh", "-c",
        "i=0; while [ $i -lt 60 ] && ! ip -6 addr show dev eth0 | grep -q 'inet6 fec0:'; do sleep 1; i=$((i+1)); done; ip -6 addr show dev eth0"]);
    let slaac = v6.lines().map(str::trim).find(|l| l.starts_with("inet6 fec0:")).unwrap_or_default().to_string();
    assert!(slaac.contains("/64") && slaac.contains("scope site"), "no SLAAC address from fec0::/64 on eth0:\n{v6}");

    let events = vm.events();
    let at = |matches: &dyn Fn(&Event) -> bool| events.iter().find(|s| matches(&s.event)).map(|s| s.at.as_secs_f64());
    let started = at(&|e| *e == Event::InitStarted).expect("an init-started event");
    let running = at(&|e| *e == Event::InitRunning).expect("an init-running event");
    let address = at(&|e| matches!(e, Event::Network { link, .. } if link == "eth0")).expect("a network event for eth0");
    eprintln!(
        "network: PID 1 start {started:.3}s, boot proper {running:.3}s, eth0 address {address:.3}s: {:.3}s from PID 1, {:.3}s from the boot proper",
        address - started, address - running
    );
    eprintln!("network: eth0 SLAAC {slaac}");

    vm.shutdown();
    let released = noted_in(&scratch.0, Note::LeaseReleased);
    assert!(released.iter().any(|l| l == "eth0"), "no DHCP release at shutdown: {released:?}");
}

// --- A wire with no DHCP server: QEMU's socket backend sends every Ethernet
// frame to this test as one UDP datagram. The test plays the rest of the
// network: it answers ARP for every other address on the subnet and records
// what the guest sends. ---

const FAKE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn arp_reply(req: &[u8]) -> Option<Vec<u8>> {
    if req.len() < 42 || req[12..14] != [8, 6] || req[20..22] != [0, 1] {
        return None;
    }
    let (sha, spa, tpa) = (&req[22..28], &req[28..32], &req[38..42]);
    if tpa == spa {
        return None; // gratuitous ARP / duplicate address probe: stay silent
    }
    let mut r = Vec::with_capacity(60);
    r.extend_from_slice(sha);
    r.extend_from_slice(&FAKE_MAC);
    r.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
    r.extend_from_slice(&FAKE_MAC);
    r.extend_from_slice(tpa);
    r.extend_from_slice(sha);
    r.extend_from_slice(spa);
    r.resize(60, 0);
    Some(r)
}

/// (dst MAC, src IP, dst IP, protocol, dst port) of an IPv4 frame.
fn ipv4_summary(f: &[u8]) -> Option<([u8; 6], Ipv4Addr, Ipv4Addr, u8, u16)> {
    if f.len() < 34 || f[12..14] != [8, 0] {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let port = f.get(l4 + 2..l4 + 4).map(|p| u16::from_be_bytes([p[0], p[1]])).unwrap_or(0);
    let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
    Some((f[..6].try_into().ok()?, ip(26), ip(30), f[23], port))
}

/// A wire for QEMU's socket backend: returns the `-nic` value and the frames
/// the guest sends on it. ARP requests get answers from FAKE_MAC.
fn wire() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let qemu_port = free_port();
    let frames: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen = frames.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let f = buf[..n].to_vec();
            if let Some(reply) = arp_reply(&f) {
                let _ = sock.send_to(&reply, from);
            }
            seen.lock().unwrap().push(f);
        }
    });
    (format!("socket,model=virtio-net-pci,udp=127.0.0.1:{port},localaddr=127.0.0.1:{qemu_port}"), frames)
}

/// A DHCPDISCOVER broadcast with the broadcast flag set.
fn is_discover(f: &[u8]) -> bool {
    let Some((dst_mac, _, dst, 17, 67)) = ipv4_summary(f) else { return false };
    let bootp = 14 + usize::from(f[14] & 0x0f) * 4 + 8;
    dst_mac == [0xff; 6]
        && dst == Ipv4Addr::BROADCAST
        && f.get(bootp) == Some(&1)
        && f.get(bootp + 10) == Some(&0x80)
        && f.get(bootp + 240..bootp + 243) == Some(&[53, 1, 1])
}

/// The static configuration on a wire where nothing answers DHCP.
#[test]
fn static_configuration_without_dhcp() {
    let scratch = Scratch::new("net-static");
    let image = busybox_image(&scratch.0, IMAGE);
    let (net, frames) = wire();
    // A second link on its own silent wire runs DHCP that never gets an answer.
    let (net2, frames2) = wire();
    let vm = Vm::boot_with(&scratch.0, &[
        "--net", &net, "--qemu-arg=-nic", &format!("--qemu-arg={net2}"),
        "--kernel-arg", "skiff.ip=192.168.77.10/24", "--kernel-arg", "skiff.gw=192.168.77.1",
        "--kernel-arg", "skiff.dns=192.168.77.53", "--kernel-arg", "skiff.hostname=statichost",
    ]);
    assert!(vm.wait_noted(Duration::from_secs(30), Note::HostName, "statichost"), "host name from skiff.hostname not set: {:?}", vm.noted(Note::HostName));
    // (DHCP only on the second link: the frames below show none on eth0 and DISCOVERs on eth1.)

    let t = Instant::now();
    vm.docker_ok(&["load", "-i", image.to_str().unwrap()]);
    let resolv = vm.docker_ok(&["run", "--rm", "--network", "host", IMAGE, "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 192.168.77.53"), "guest resolv.conf: {resolv}");
    eprintln!("network: load + resolv.conf {:.1}s", t.elapsed().as_secs_f64());
    // The static address and default route, in the guest's own tables.
    let addrs = vm.docker_ok(&["run", "--rm", "--network", "host", IMAGE, "ip", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.lines().any(|l| l.trim().starts_with("inet 192.168.77.10/24 ")), "no static address on eth0:\n{addrs}");
    let routes = guest_routes(&vm);
    assert!(default_route(&routes, "192.168.77.1", "eth0"), "no default route via skiff.gw:\n{routes}");
    // Traffic from a container to an outside address and a name lookup: nothing
    // answers them, but the frames show the route and the DNS server in use.
    // Background jobs of a shell: a container's PID 1 ignores SIGTERM, so
    // `timeout` could not stop a program running as PID 1.
    let wget = vm.docker(&["run", "--rm", IMAGE, "sh", "-c", "wget -qO- http://203.0.113.9/ & sleep 3; kill $!; true"]);
    let wget = format!("{} {}{}", wget.status, String::from_utf8_lossy(&wget.stdout), String::from_utf8_lossy(&wget.stderr));
    eprintln!("network: + wget {:.1}s", t.elapsed().as_secs_f64());
    let _ = vm.docker(&["run", "--rm", IMAGE, "sh", "-c", "nslookup anything.example & sleep 3; kill $!; true"]);
    eprintln!("network: + nslookup {:.1}s", t.elapsed().as_secs_f64());

    let frames = frames.lock().unwrap().clone();
    let me = Ipv4Addr::new(192, 168, 77, 10);
    let ipv4: Vec<_> = frames.iter().filter_map(|f| ipv4_summary(f)).collect();
    let arp: Vec<Ipv4Addr> = frames.iter().filter(|f| f.len() >= 42 && f[12..14] == [8, 6]).map(|f| Ipv4Addr::new(f[38], f[39], f[40], f[41])).collect();
    eprintln!("network: ARP requests for {arp:?}");
    assert!(!ipv4.iter().any(|&(_, _, _, proto, port)| proto == 17 && port == 67), "the guest sent DHCP");
    assert!(
        ipv4.contains(&(FAKE_MAC, me, Ipv4Addr::new(203, 0, 113, 9), 6, 80)),
        "no TCP to 203.0.113.9:80 via the gateway from the static address; guest routes:\n{routes}\nwget: {wget}\nIPv4 frames: {ipv4:?}"
    );
    assert!(
        ipv4.iter().any(|&(_, src, dst, proto, port)| src == me && dst == Ipv4Addr::new(192, 168, 77, 53) && proto == 17 && port == 53),
        "no DNS query to skiff.dns; IPv4 frames: {ipv4:?}"
    );
    eprintln!("network: static boot, {} frames on the wire, none of them DHCP", frames.len());

    // The engine came up although eth1's DHCP never got an answer; it keeps trying.
    let discovers = frames2.lock().unwrap().iter().filter(|f| is_discover(f)).count();
    assert!(discovers >= 3, "eth1 should keep sending DISCOVERs ({discovers})");
    assert!(vm.wait_noted(Duration::from_secs(30), Note::DhcpWaiting, "eth1"), "the guest should report eth1 still waiting for DHCP: {:?}", vm.noted(Note::DhcpWaiting));
    assert!(!vm.noted(Note::DhcpWaiting).iter().any(|l| l == "eth0"), "DHCP on the static link eth0");
    let took = vm.shutdown();
    eprintln!("network: shutdown {:.1}s; eth1 sent {discovers} DISCOVERs meanwhile", took.as_secs_f64());
}
