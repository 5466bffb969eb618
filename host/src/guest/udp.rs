//! Published UDP ports on the host. The datagrams of each client address
//! travel over a vsock connection of their own (a flow), framed by
//! `skiff_proto::datagram`; the guest sends them from a socket of that
//! flow, so the container's replies come back to the right client. A flow
//! idle for [`IDLE`] ends (Docker's userland proxy uses the same 90 s);
//! at most the port's limit run at once (`ports::Limits`, shared by the
//! port's host addresses), and beyond that a new client's datagrams are
//! dropped, as a congested UDP path would.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use skiff_proto::datagram;
use skiff_proto::ports::Proto;

use crate::guest::Target;
use crate::threads;
use crate::guest::forward::{open_forward, Dest, Place};

/// How long a flow lives without a datagram from its client.
const IDLE: Duration = Duration::from_secs(90);
/// Datagrams a flow holds while its connection opens or the guest is slow.
const QUEUE: usize = 64;
/// How often the receiving loop wakes to see whether its port was unpublished.
pub const POLL: Duration = Duration::from_millis(500);

/// A client's flow, as the receiving loop sees it.
struct Flow {
    to_guest: SyncSender<Vec<u8>>,
    /// Cleared when the flow has ended (idle, refused, or closed by the guest).
    alive: Arc<AtomicBool>,
}

/// Receives on a published UDP port until `closed` (the port was
/// unpublished), handing each datagram to its client's flow; a new flow
/// needs one of the port's `max_flows` places among `open`.
pub fn serve(sock: UdpSocket, dest: Arc<Mutex<Dest>>, guest: Target, closed: Arc<AtomicBool>, open: Arc<AtomicUsize>, max_flows: usize) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; datagram::MAX];
    let mut told_full = false;
    if let Err(e) = sock.set_read_timeout(Some(POLL)) {
        eprintln!("skiff: ports: udp: cannot set a receive timeout ({e}); the port stays bound until the VM stops");
    }
    loop {
        let got = sock.recv_from(&mut buf);
        if closed.load(Ordering::SeqCst) {
            return; // dropping the flows' senders ends them
        }
        let (n, client) = match got {
            Ok(g) => g,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                eprintln!("skiff: ports: udp {}: {e}", sock.local_addr().map(|a| a.to_string()).unwrap_or_default());
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        flows.retain(|_, f| f.alive.load(Ordering::SeqCst));
        let datagram = buf[..n].to_vec();
        if let Some(flow) = flows.get(&client) {
            let _ = flow.to_guest.try_send(datagram);
            continue;
        }
        let Some(place) = Place::take(&open, max_flows) else {
            if !told_full {
                eprintln!("skiff: ports: udp {client}: {max_flows} clients at once on this port; dropping new ones until some go idle (--port-connections)");
                told_full = true;
            }
            continue;
        };
        told_full = false;
        let Ok(replies) = sock.try_clone() else { continue };
        let (to_guest, from_client) = sync_channel(QUEUE);
        let _ = to_guest.try_send(datagram);
        let alive = Arc::new(AtomicBool::new(true));
        let (ended, guest, to) = (Arc::clone(&alive), guest.clone(), *dest.lock().unwrap_or_else(|e| e.into_inner()));
        let started = threads::spawn("udp flow", move || {
            let _place = place;
            if let Err(e) = flow(from_client, replies, client, &guest, to, &ended) {
                eprintln!("skiff: ports: udp {client} -> {}: {e}", SocketAddr::new(to.0, to.1));
            }
            ended.store(false, Ordering::SeqCst);
        });
        match started {
            Ok(_) => drop(flows.insert(client, Flow { to_guest, alive })),
            // The datagram is dropped, as a congested UDP path would.
            Err(e) => eprintln!("skiff: ports: udp {client}: {e}"),
        }
    }
}

/// One client's flow: opens the guest's forward, then relays both ways
/// until it is idle, unpublished or closed by the guest.
fn flow(from_client: Receiver<Vec<u8>>, replies: UdpSocket, client: SocketAddr, guest: &Target, (ip, port): Dest, alive: &Arc<AtomicBool>) -> io::Result<()> {
    let mut conn = open_forward(guest, Proto::Udp, ip, port)?;
    let mut from_guest = conn.try_clone()?;
    let guest_ended = Arc::clone(alive);
    let back = threads::spawn("udp replies", move || {
        let mut buf = Vec::new();
        while let Ok(true) = datagram::read(&mut from_guest, &mut buf) {
            if replies.send_to(&buf, client).is_err() {
                break;
            }
        }
        // The next datagram from this client opens a new flow.
        guest_ended.store(false, Ordering::SeqCst);
    })?;
    let result = loop {
        match from_client.recv_timeout(IDLE) {
            Ok(d) => {
                if let Err(e) = datagram::write(&mut conn, &d) {
                    break Err(e);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    let _ = conn.shutdown(Shutdown::Both);
    let _ = back.join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// A stand-in for the guest's forward port on a unix socket: answers
    /// `OK` to each UDP forward request, then echoes each datagram with
    /// "got " before it. Returns the number of flows it was asked for.
    fn fake_guest(path: &std::path::Path) -> Arc<AtomicUsize> {
        let listener = UnixListener::bind(path).unwrap();
        let flows = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&flows);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let line = skiff_proto::read_line(&mut conn, 200).unwrap();
                    assert!(String::from_utf8_lossy(&line).starts_with("SKIFF-FORWARD/1 udp 10.88.0.9 53"), "{line:?}");
                    assert!(!String::from_utf8_lossy(&line).contains("framed"));
                    conn.write_all(b"OK\n").unwrap();
                    let mut buf = Vec::new();
                    while let Ok(true) = datagram::read(&mut conn, &mut buf) {
                        datagram::write(&mut conn, &[&b"got "[..], &buf].concat()).unwrap();
                    }
                });
            }
        });
        flows
    }

    #[test]
    fn each_client_gets_its_own_flow_and_its_own_replies() {
        let path = crate::testutil::SocketPath::new("udp-flows", "forward.sock");
        let flows = fake_guest(&path);
        let port = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = port.local_addr().unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let dest = Arc::new(Mutex::new(("10.88.0.9".parse().unwrap(), 53)));
        let (theirs, done) = (port.try_clone().unwrap(), Arc::clone(&closed));
        let target = Target::new(crate::guest::Addr::Unix(path.to_path_buf()));
        let server = thread::spawn(move || serve(theirs, dest, target, done, Arc::default(), 2));
        let clients: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let mut buf = [0u8; 100];
        for round in 0..2 {
            for (i, c) in clients.iter().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let msg = format!("client {i} round {round}");
                c.send_to(msg.as_bytes(), addr).unwrap();
                let n = c.recv(&mut buf).unwrap();
                assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("got {msg}"));
            }
        }
        assert_eq!(flows.load(Ordering::SeqCst), 2, "one flow per client address");
        // The port's two places are taken: a third client's datagrams are dropped.
        let third = UdpSocket::bind("127.0.0.1:0").unwrap();
        third.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        third.send_to(b"me too", addr).unwrap();
        assert!(third.recv(&mut buf).is_err(), "a flow past the port's limit was opened");
        assert_eq!(flows.load(Ordering::SeqCst), 2);
        // Unpublished: the receiving loop ends.
        closed.store(true, Ordering::SeqCst);
        server.join().unwrap();
    }
}
