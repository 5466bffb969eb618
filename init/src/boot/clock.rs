//! Keeps the guest clock in step with the host's. The kernel sets the clock
//! from the RTC at boot (RTC_HCTOSYS); after that a paused or suspended VM
//! falls behind (the classic boot2docker / podman machine complaint after
//! the laptop sleeps). Where the hypervisor offers a host clock as a PTP
//! device (KVM's `ptp_kvm`, Hyper-V's `hyperv`), a thread compares it with
//! CLOCK_REALTIME and steps the clock after a big jump or slews it for a
//! small drift. Hyper-V's own time sync (hv_utils) also steps after resume.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use rustix::time::{clock_gettime, clock_gettime_dynamic, clock_settime, ClockId, DynamicClockId, Timespec};

/// How often the host clock is compared.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Offsets beyond this are stepped (a wake from sleep); below it, slewed.
pub const STEP_NS: i64 = 500_000_000;
/// Offsets below this are left alone (reading noise).
pub const IGNORE_NS: i64 = 2_000_000;

/// What to do about an offset (host minus guest, in nanoseconds).
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Adjust gradually by this many microseconds (adjtimex single shot).
    Slew(i64),
    /// Set the clock forward (or back) by this many nanoseconds at once.
    Step(i64),
}

/// The decision, kept pure for tests.
pub fn decide(offset_ns: i64) -> Action {
    match offset_ns.unsigned_abs() {
        n if n < IGNORE_NS as u64 => Action::Nothing,
        n if n < STEP_NS as u64 => Action::Slew(offset_ns / 1000),
        _ => Action::Step(offset_ns),
    }
}

fn ns(ts: Timespec) -> i128 {
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// The host-minus-guest offset: the guest clock is read on both sides of
/// the PTP read and the midpoint used.
pub fn offset_ns(before: i128, host: i128, after: i128) -> i64 {
    (host - (before + (after - before) / 2)).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// A PTP clock device offered by the hypervisor, if any.
fn find_host_clock() -> Option<(String, File)> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/ptp").ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let label = fs::read_to_string(format!("/sys/class/ptp/{n}/clock_name")).ok()?;
        let label = label.trim();
        if !(label.contains("KVM") || label.eq_ignore_ascii_case("hyperv")) {
            return None;
        }
        match File::open(format!("/dev/{n}")) {
            Ok(f) => Some((format!("/dev/{n} ({label})"), f)),
            Err(e) => {
                log::warn!("clock: cannot open /dev/{n} ({label}): {e}");
                None
            }
        }
    })
}

/// Starts the sync thread where a host clock exists; logs the boot time.
pub fn spawn_sync() {
    let now = clock_gettime(ClockId::Realtime);
    log::info!("clock: system time {} s since the epoch (from the RTC)", now.tv_sec);
    let Some((name, dev)) = find_host_clock() else {
        return log::info!("clock: no host PTP clock (ptp_kvm or hyperv); keeping the RTC time");
    };
    log::info!("clock: keeping time in step with {name}");
    let spawned = thread::Builder::new().name("clock".into()).spawn(move || loop {
        step_once(&dev);
        thread::sleep(INTERVAL);
    });
    if let Err(e) = spawned {
        log::error!("clock: cannot start the sync thread: {e}");
    }
}

fn step_once(dev: &File) {
    let before = clock_gettime(ClockId::Realtime);
    // The PTP character device is a dynamic POSIX clock (id from its fd).
    let host = match clock_gettime_dynamic(DynamicClockId::Dynamic(dev.as_fd())) {
        Ok(t) => t,
        Err(e) => return log::debug!("clock: reading the host clock failed: {e}"),
    };
    let after = clock_gettime(ClockId::Realtime);
    apply(offset_ns(ns(before), ns(host), ns(after)));
}

/// The host's time as `skiff run` sends it over the control port after a
/// pause or a host sleep (where no PTP clock tells it): applies it like a
/// PTP reading and returns the offset it found (host minus guest, ns).
pub fn set_from_host(host_ns: i128) -> i64 {
    let now = ns(clock_gettime(ClockId::Realtime));
    let offset = offset_ns(now, host_ns, now);
    apply(offset);
    offset
}

/// Steps or slews the clock by `offset` ns, as [`decide`] says.
fn apply(offset: i64) {
    match decide(offset) {
        Action::Nothing => {}
        Action::Slew(us) => {
            // SAFETY: adjtimex reads and writes the timex struct it is given, which lives across the call.
            let mut tx: libc::timex = unsafe { std::mem::zeroed() };
            tx.modes = libc::ADJ_OFFSET_SINGLESHOT;
            tx.offset = us as libc::c_long;
            // SAFETY: as above; `tx` is a valid, initialised timex.
            if unsafe { libc::adjtimex(&mut tx) } < 0 {
                log::debug!("clock: adjtimex failed: {}", std::io::Error::last_os_error());
            }
        }
        Action::Step(off) => {
            let now = ns(clock_gettime(ClockId::Realtime)) + off as i128;
            let ts = Timespec { tv_sec: (now.div_euclid(1_000_000_000)) as _, tv_nsec: (now.rem_euclid(1_000_000_000)) as _ };
            match clock_settime(ClockId::Realtime, ts) {
                Ok(()) => log::info!("clock: stepped by {}s to the host clock (host sleep or VM pause?)", crate::secs::SignedSecs(off)),
                Err(e) => log::warn!("clock: cannot step the clock: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_offsets_are_ignored_medium_slewed_large_stepped() {
        assert_eq!(decide(0), Action::Nothing);
        assert_eq!(decide(-1_999_999), Action::Nothing);
        assert_eq!(decide(3_000_000), Action::Slew(3_000));
        assert_eq!(decide(-250_000_000), Action::Slew(-250_000));
        assert_eq!(decide(STEP_NS), Action::Step(STEP_NS));
        assert_eq!(decide(-3_600_000_000_000), Action::Step(-3_600_000_000_000), "an hour behind after sleep");
        assert_eq!(decide(i64::MIN), Action::Step(i64::MIN));
    }

    #[test]
    fn offset_uses_the_midpoint_of_the_guest_readings() {
        assert_eq!(offset_ns(1_000, 1_500, 2_000), 0);
        assert_eq!(offset_ns(1_000, 11_500, 2_000), 10_000);
        assert_eq!(offset_ns(10_000, 1_500, 12_000), -9_500);
        assert_eq!(offset_ns(0, i128::MAX / 2, 0), i64::MAX, "clamped");
    }
}
