//! Restart delays for supervised services: exponential with a cap, reset
//! after a service has stayed up for a while.

use std::time::Duration;

/// First restart delay.
pub const BASE: Duration = Duration::from_millis(500);
/// Longest delay between restarts.
pub const CAP: Duration = Duration::from_secs(30);
/// A run this long counts as healthy and resets the failure count.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Delay before restart number `failures` (1 = first failure).
pub fn delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1u32 << exp).min(CAP)
}

/// The failure count after a run of `ran` ended, given the count before it.
pub fn next_failures(previous: u32, ran: Duration) -> u32 {
    if ran >= HEALTHY_RUN { 1 } else { previous.saturating_add(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        assert_eq!(delay(1), Duration::from_millis(500));
        assert_eq!(delay(2), Duration::from_secs(1));
        assert_eq!(delay(4), Duration::from_secs(4));
        assert_eq!(delay(7), CAP);
        assert_eq!(delay(u32::MAX), CAP);
    }

    #[test]
    fn a_healthy_run_resets_the_count() {
        assert_eq!(next_failures(5, Duration::from_secs(1)), 6);
        assert_eq!(next_failures(5, HEALTHY_RUN), 1);
        assert_eq!(next_failures(u32::MAX, Duration::ZERO), u32::MAX);
    }
}
