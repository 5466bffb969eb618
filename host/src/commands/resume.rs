//! After the VM was paused (QMP `STOP`, then `RESUME`) or the host slept
//! (CLOCK_BOOTTIME runs on through a suspend, CLOCK_MONOTONIC does not), the
//! guest's clock is behind by that long: TLS, `make` and caches then fail
//! for minutes. `skiff run` tells the guest the time over the control port
//! when it sees either. Under KVM the guest also follows its PTP clock.
//! While QEMU has the VM stopped, no connection to it is opened
//! (`Target::set_paused`).

use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId, Timespec};

use crate::guest::{control, Target};
use crate::threads;
use crate::vm::qmp::{self, Qmp};

/// How often the host's sleep is looked for while QEMU sends no event.
const TICK: Duration = Duration::from_secs(2);
/// A gap between the two clocks that grew by more than this was a sleep.
const SLEPT: Duration = Duration::from_secs(2);

/// Starts the watcher; it ends when QEMU closes its event socket.
pub fn spawn(events: PathBuf, target: Target) -> io::Result<()> {
    threads::spawn("clock after pause", move || watch(&events, &target)).map(drop)
}

fn nanos(t: Timespec) -> i128 {
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}

/// Time the host spent suspended since boot, as the kernel counts it.
fn suspended() -> i128 {
    nanos(clock_gettime(ClockId::Boottime)) - nanos(clock_gettime(ClockId::Monotonic))
}

/// True if the suspended time grew by more than [`SLEPT`] since `before`.
fn slept(before: i128, now: i128) -> bool {
    now - before > SLEPT.as_nanos() as i128
}

fn watch(events: &Path, target: &Target) {
    let mut qmp = match Qmp::connect(events) {
        Ok(q) => q,
        Err(e) => return eprintln!("skiff: cannot read QEMU's events ({e}); the guest clock is not set after a pause"),
    };
    let mut asleep = suspended();
    loop {
        match qmp.next_line(TICK) {
            Ok(line) => match qmp::event_name(&line) {
                Some("STOP") => target.set_paused(true),
                Some("RESUME") => {
                    target.set_paused(false);
                    tell(target, "the VM resumed");
                }
                _ => {}
            },
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            // QEMU has exited.
            Err(_) => return,
        }
        let now = suspended();
        if slept(asleep, now) {
            // The VM's vCPUs stood still with the host; give the devices a moment.
            thread::sleep(Duration::from_millis(500));
            tell(target, "the host slept");
        }
        asleep = now;
    }
}

fn tell(target: &Target, why: &str) {
    match control::tell_time(target) {
        Ok(off) if off.unsigned_abs() >= 500_000_000 => {
            eprintln!("skiff: {why}; the guest clock was {:.1} s behind, set to the host's", off as f64 / 1e9)
        }
        Ok(_) => {}
        Err(e) => eprintln!("skiff: {why}; cannot set the guest clock: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_grown_gap_is_a_sleep() {
        let s = 1_000_000_000i128;
        assert!(!slept(5 * s, 5 * s));
        assert!(!slept(5 * s, 6 * s), "one second of drift or rounding");
        assert!(slept(5 * s, 95 * s), "a 90 s suspend");
    }
}
