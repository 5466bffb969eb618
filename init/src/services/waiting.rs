//! The connections of a port that have not yet shown the secret. They
//! never take the places of admitted connections, and at most
//! [`MAX_WAITING`] wait at once: past that, the one that has waited
//! longest is cut off. The host sends its auth line with the connection,
//! so it waits milliseconds; a local user who floods the vsock with
//! silent connections only pushes out its own.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::Mutex;

use crate::services::vsock::Conn;

/// Connections of one port waiting for their auth line.
pub const MAX_WAITING: usize = 64;

/// A port's waiting room.
pub struct Waiting<C: Conn> {
    room: Mutex<Room<C>>,
    max: usize,
}

struct Room<C> {
    /// Oldest first: (ticket number, a second handle to cut it off).
    queue: VecDeque<(u64, C)>,
    next: u64,
}

/// A connection's place in the room; leaving on drop.
pub struct Ticket<'a, C: Conn> {
    waiting: &'a Waiting<C>,
    number: u64,
}

impl<C: Conn> Waiting<C> {
    pub fn new(max: usize) -> Self {
        Waiting { room: Mutex::new(Room { queue: VecDeque::new(), next: 0 }), max }
    }

    /// Lets `conn` wait; a full room first cuts off its oldest connection
    /// (shut down both ways: its admission ends at once, refused).
    pub fn enter(&self, conn: &C) -> std::io::Result<Ticket<'_, C>> {
        let handle = conn.try_clone()?;
        let mut room = self.room.lock().unwrap_or_else(|e| e.into_inner());
        while room.queue.len() >= self.max {
            if let Some((_, oldest)) = room.queue.pop_front() {
                let _ = oldest.shutdown(Shutdown::Both);
            }
        }
        let number = room.next;
        room.next += 1;
        room.queue.push_back((number, handle));
        Ok(Ticket { waiting: self, number })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.room.lock().unwrap_or_else(|e| e.into_inner()).queue.len()
    }
}

impl<C: Conn> Drop for Ticket<'_, C> {
    fn drop(&mut self) {
        let mut room = self.waiting.room.lock().unwrap_or_else(|e| e.into_inner());
        room.queue.retain(|(n, _)| *n != self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_full_room_cuts_off_the_longest_waiting_and_leaving_frees_a_place() {
        let waiting = Waiting::new(2);
        let pairs: Vec<(UnixStream, UnixStream)> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let first = waiting.enter(&pairs[0].0).unwrap();
        let second = waiting.enter(&pairs[1].0).unwrap();
        assert_eq!(waiting.len(), 2);
        let third = waiting.enter(&pairs[2].0).unwrap();
        assert_eq!(waiting.len(), 2);
        let mut buf = [0u8; 1];
        let mut cut = pairs[0].1.try_clone().unwrap();
        assert_eq!(cut.read(&mut buf).unwrap(), 0, "the oldest was cut off");
        pairs[1].1.set_nonblocking(true).unwrap();
        let mut kept = pairs[1].1.try_clone().unwrap();
        assert_eq!(kept.read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "the others still wait");
        drop(first); // already gone: nothing else leaves
        assert_eq!(waiting.len(), 2);
        drop(second);
        assert_eq!(waiting.len(), 1);
        drop(third);
        assert_eq!(waiting.len(), 0);
    }
}
