//! The reconnection delay of the long-lived control streams (the port
//! table, the guest's events, host edits): doubling from a floor to a
//! ceiling, back to the floor once a connection worked.

use std::thread;
use std::time::Duration;

pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, next: min }
    }

    /// Sleeps the current delay, then doubles it (up to the ceiling).
    pub fn wait(&mut self) {
        thread::sleep(self.next);
        self.next = (self.next * 2).min(self.max);
    }

    /// A connection worked: the next wait is the floor again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// True once retries have slowed down to the ceiling.
    pub fn at_max(&self) -> bool {
        self.next == self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(1), ms(4));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(b.next);
            b.wait();
        }
        assert_eq!(seen, [ms(1), ms(2), ms(4), ms(4)]);
        assert!(b.at_max());
        b.reset();
        assert_eq!(b.next, ms(1));
        assert!(!b.at_max());
    }
}
