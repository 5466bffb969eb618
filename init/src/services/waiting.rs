//! The connections of a port that hold a place but have not yet been
//! admitted (their handshake is under way). When every place is taken, a
//! newcomer gets the place of the longest-waiting connection that has no
//! unread bytes and is at least [`GRACE`] old: the host sends its challenge
//! with the connection and its proof within one round trip of the guest's
//! answer, so only a silent peer (a local user flooding the vsock) ever
//! gives way, and it can never keep the owner out. Younger
//! connections and those whose bytes have arrived keep their places, so an
//! honest burst is served or clearly turned away as before.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::net::{RecvFlags, Shutdown};

/// How long a connection may stay silent before it can be made to give way.
pub const GRACE: Duration = Duration::from_secs(1);
/// The most waiting connections looked at for one newcomer (the oldest):
/// the accept loop must not slow down under a flood.
const LOOK_AT: usize = 16;

/// One waiting connection: its ticket number, when it came, a second
/// descriptor of it (to look and to cut), and its place.
struct Entry<P> {
    number: u64,
    since: Instant,
    fd: OwnedFd,
    place: P,
}

/// The waiting connections of one port, each with the place `P` it holds.
pub struct Waiting<P> {
    /// Oldest first.
    room: Mutex<VecDeque<Entry<P>>>,
    next: std::sync::atomic::AtomicU64,
}

/// A connection's stay in the room; leaving (dropped) gives its place back.
pub struct Ticket<'a, P> {
    waiting: &'a Waiting<P>,
    number: u64,
}

impl<P> Default for Waiting<P> {
    fn default() -> Self {
        Waiting { room: Mutex::new(VecDeque::new()), next: Default::default() }
    }
}

impl<P> Waiting<P> {
    fn room(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry<P>>> {
        self.room.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `conn` waits for admission, holding `place`.
    pub fn enter(&self, conn: &impl AsFd, place: P) -> std::io::Result<Ticket<'_, P>> {
        let fd = conn.as_fd().try_clone_to_owned()?;
        let number = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.room().push_back(Entry { number, since: Instant::now(), fd, place });
        Ok(Ticket { waiting: self, number })
    }

    /// Cuts off the longest-waiting connection that has sent nothing (or
    /// has closed) for at least `grace`, and hands over its place; `None`
    /// if there is none. Looks only at the oldest few, older than `grace`.
    pub fn give_way(&self, grace: Duration) -> Option<P> {
        let mut room = self.room();
        let now = Instant::now();
        let silent = room.iter().take(LOOK_AT).take_while(|e| now.saturating_duration_since(e.since) >= grace).position(|e| {
            let mut byte = [0u8; 1];
            match rustix::net::recv(&e.fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
                Ok((n, _)) => n == 0,
                Err(e) => e == rustix::io::Errno::AGAIN,
            }
        })?;
        let entry = room.remove(silent)?;
        // Its admission wakes to a closed connection and ends, refused.
        let _ = rustix::net::shutdown(&entry.fd, Shutdown::Both);
        Some(entry.place)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.room().len()
    }
}

impl<P> Ticket<'_, P> {
    /// Admitted: leaves the room with its place, unless it gave way already.
    pub fn admitted(self) -> Option<P> {
        let mut room = self.waiting.room();
        let at = room.iter().position(|e| e.number == self.number)?;
        room.remove(at).map(|e| e.place)
    }
}

impl<P> Drop for Ticket<'_, P> {
    fn drop(&mut self) {
        self.waiting.room().retain(|e| e.number != self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn only_a_silent_connection_gives_way_and_an_admitted_one_keeps_its_place() {
        let waiting = Waiting::default();
        let (talker, mut talker_peer) = UnixStream::pair().unwrap();
        let (silent, silent_peer) = UnixStream::pair().unwrap();
        let (later, _later_peer) = UnixStream::pair().unwrap();
        talker_peer.write_all(b"SKIFF-AUTH/2 ...").unwrap();
        let t1 = waiting.enter(&talker, "talker's place").unwrap();
        let t2 = waiting.enter(&silent, "silent's place").unwrap();
        let t3 = waiting.enter(&later, "later's place").unwrap();
        assert_eq!(waiting.give_way(Duration::from_secs(60)), None, "nobody has been silent that long");
        assert_eq!(waiting.give_way(Duration::ZERO), Some("silent's place"), "the oldest silent one, not the talker");
        let mut buf = [0u8; 1];
        assert_eq!((&silent_peer).read(&mut buf).unwrap(), 0, "the silent one was cut off");
        assert_eq!(t2.admitted(), None, "its place went to the newcomer");
        assert_eq!(waiting.give_way(Duration::ZERO), Some("later's place"));
        assert_eq!(waiting.give_way(Duration::ZERO), None, "only the talker waits, and it has sent bytes");
        assert_eq!(t1.admitted(), Some("talker's place"));
        drop(t3);
        assert_eq!(waiting.len(), 0);
    }

    #[test]
    fn leaving_unadmitted_gives_the_place_back() {
        let waiting = Waiting::default();
        let (a, _peer) = UnixStream::pair().unwrap();
        let ticket = waiting.enter(&a, ()).unwrap();
        assert_eq!(waiting.len(), 1);
        drop(ticket);
        assert_eq!(waiting.len(), 0);
        assert_eq!(waiting.give_way(Duration::ZERO), None);
    }
}
