//! Powering the VM off, the one way every command does it: press the
//! power button, wait for the VM to exit, kill it once overdue. `skiff run`
//! drives its QEMU child, `skiff stop` the `skiff run` process from
//! another terminal; tests drive a fake with its own clock.

use std::time::{Duration, Instant};

use crate::vm::qmp::QmpError;

/// How long the guest may take to shut down after the power button before
/// the VM is killed: its own worst case plus a margin for a slow host.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(skiff_proto::GUEST_SHUTDOWN_WORST_CASE_SECS + 23);

/// How long QEMU may take to exit once the guest said it powers off (its
/// disks are unmounted by then; a QEMU still waiting on a stuck device
/// backend has nothing left to save).
pub const POWERED_OFF_GRACE: Duration = Duration::from_secs(5);

/// Time between looks at the VM.
const POLL: Duration = Duration::from_millis(100);

/// What [`power_off`] needs of a VM.
pub trait PowerSwitch {
    /// Presses the ACPI power button (QMP `system_powerdown`).
    fn press_power_button(&mut self) -> Result<(), QmpError>;
    /// True once the VM has exited.
    fn exited(&mut self) -> bool;
    /// True once the guest said it powers off (its `PoweringOff` event).
    fn guest_powering_off(&mut self) -> bool;
    /// Kills the VM (and reaps it, where it is a child).
    fn kill(&mut self);
    /// The clock the waits are measured on (a fake has its own).
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// How a power-off ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The VM exited after the power button.
    Exited,
    /// The VM was still there when overdue ([`SHUTDOWN_LIMIT`] after the
    /// press, or [`POWERED_OFF_GRACE`] after the guest said it powers off).
    Killed,
}

/// Presses the power button and waits until the VM exits or is overdue,
/// then kills it (and says so on stderr). A QEMU that no longer answers
/// its socket is on its way out and is waited for the same way; any other
/// failure to press is the caller's to decide on, the VM untouched.
pub fn power_off(vm: &mut impl PowerSwitch) -> Result<Ended, QmpError> {
    match vm.press_power_button() {
        Ok(()) => {}
        Err(QmpError::Unreachable { .. }) => eprintln!("skiff: QEMU has already exited; waiting for the VM to be gone"),
        Err(e) => return Err(e),
    }
    let pressed = vm.now();
    let mut said_off: Option<Instant> = None;
    loop {
        if vm.exited() {
            return Ok(Ended::Exited);
        }
        if said_off.is_none() && vm.guest_powering_off() {
            said_off = Some(vm.now());
        }
        let now = vm.now();
        if overdue(now - pressed, said_off.map(|t| now - t)) {
            eprintln!("skiff: the VM did not exit after its shutdown; killing it");
            vm.kill();
            return Ok(Ended::Killed);
        }
        vm.sleep(POLL);
    }
}

/// Whether the VM is overdue `since_pressed` after the power button, the
/// guest having said it powers off `since_off` ago (if it did).
fn overdue(since_pressed: Duration, since_off: Option<Duration>) -> bool {
    since_pressed > SHUTDOWN_LIMIT || since_off.is_some_and(|t| t > POWERED_OFF_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A VM that exits `exits_after` the press (never: `None`), says it
    /// powers off `says_off_after` the press, and records what was done.
    struct Fake {
        start: Instant,
        now: Duration,
        pressed: Option<Duration>,
        press_fails: Option<fn() -> QmpError>,
        exits_after: Option<Duration>,
        says_off_after: Option<Duration>,
        killed_at: Option<Duration>,
    }

    impl Fake {
        fn new(exits_after: Option<u64>, says_off_after: Option<u64>) -> Self {
            Fake {
                start: Instant::now(),
                now: Duration::ZERO,
                pressed: None,
                press_fails: None,
                exits_after: exits_after.map(Duration::from_secs),
                says_off_after: says_off_after.map(Duration::from_secs),
                killed_at: None,
            }
        }

        fn since_press(&self, after: Option<Duration>) -> bool {
            matches!((self.pressed, after), (Some(p), Some(a)) if self.now >= p + a)
        }
    }

    impl PowerSwitch for Fake {
        fn press_power_button(&mut self) -> Result<(), QmpError> {
            self.pressed = Some(self.now);
            self.press_fails.map_or(Ok(()), |e| Err(e()))
        }

        fn exited(&mut self) -> bool {
            self.killed_at.is_some() || self.since_press(self.exits_after)
        }

        fn guest_powering_off(&mut self) -> bool {
            self.since_press(self.says_off_after)
        }

        fn kill(&mut self) {
            self.killed_at = Some(self.now);
        }

        fn now(&self) -> Instant {
            self.start + self.now
        }

        fn sleep(&mut self, d: Duration) {
            self.now += d;
        }
    }

    #[test]
    fn a_vm_that_exits_is_never_killed() {
        let mut vm = Fake::new(Some(2), Some(1));
        assert_eq!(power_off(&mut vm).unwrap(), Ended::Exited);
        assert_eq!(vm.killed_at, None);
        assert!(vm.now >= Duration::from_secs(2) && vm.now < Duration::from_secs(3));
    }

    #[test]
    fn a_vm_that_said_it_powers_off_gets_the_grace_then_is_killed() {
        let mut vm = Fake::new(None, Some(3));
        assert_eq!(power_off(&mut vm).unwrap(), Ended::Killed);
        let at = vm.killed_at.unwrap();
        assert!(at > Duration::from_secs(3) + POWERED_OFF_GRACE && at < Duration::from_secs(4) + POWERED_OFF_GRACE, "killed at {at:?}");
    }

    #[test]
    fn a_silent_vm_is_killed_at_the_limit() {
        let mut vm = Fake::new(None, None);
        assert_eq!(power_off(&mut vm).unwrap(), Ended::Killed);
        let at = vm.killed_at.unwrap();
        assert!(at > SHUTDOWN_LIMIT && at < SHUTDOWN_LIMIT + Duration::from_secs(1), "killed at {at:?}");
    }

    #[test]
    fn a_gone_qemu_is_waited_for_and_a_refusal_left_to_the_caller() {
        let mut vm = Fake::new(Some(1), None);
        vm.press_fails = Some(|| QmpError::Unreachable { path: "qmp.sock".into(), error: io::ErrorKind::NotFound.into() });
        assert_eq!(power_off(&mut vm).unwrap(), Ended::Exited);
        assert_eq!(vm.killed_at, None);
        let mut vm = Fake::new(Some(1), None);
        vm.press_fails = Some(|| QmpError::Refused { command: "system_powerdown".into(), reply: "no".into() });
        assert!(matches!(power_off(&mut vm), Err(QmpError::Refused { .. })));
        assert_eq!((vm.killed_at, vm.now), (None, Duration::ZERO), "the VM is the caller's to decide on");
    }

    #[test]
    fn overdue_by_the_limit_or_the_grace() {
        let secs = Duration::from_secs;
        assert!(!overdue(secs(10), None));
        assert!(!overdue(secs(10), Some(secs(1))));
        assert!(overdue(secs(10), Some(POWERED_OFF_GRACE + secs(1))));
        assert!(overdue(SHUTDOWN_LIMIT + secs(1), None), "a guest that never says so is killed at the limit");
    }
}
