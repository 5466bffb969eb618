//! Power: the ACPI power button, signals to PID 1, and the shutdown sequence.
//! Every shutdown step has a time limit, and the limits add up to one
//! figure, [`WORST_CASE`]: the longest the guest takes from a trigger to
//! power-off, whatever its containers or disks do. The host waits longer.

use std::fs::{self, File};
use std::io::Read;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{getpid, kill_process, Pid, Signal};
use rustix::system::{reboot, RebootCommand};

use crate::boot::events;
use skiff_proto::events::{Event, Note};
use crate::supervise::sys::{Kernel, Sys};
use crate::supervise::{engine, reaper};

/// How long containers get between SIGTERM and SIGKILL (Docker's default).
const CONTAINER_GRACE: Duration = Duration::from_secs(10);
/// `podman stop --all`: the grace period, then SIGKILL and its bookkeeping.
const CONTAINERS_LIMIT: Duration = CONTAINER_GRACE.saturating_add(Duration::from_secs(15));
/// The engine, after SIGTERM, before SIGKILL.
const ENGINE_LIMIT: Duration = Duration::from_secs(10);
/// Every other process: SIGTERM, this long, then SIGKILL and a short wait.
const TERM_LIMIT: Duration = Duration::from_secs(5);
const KILL_LIMIT: Duration = Duration::from_secs(2);
/// Unmounting the host folders (busy ones are retried 3 s, then detached).
const SHARES_LIMIT: Duration = Duration::from_secs(5);
/// Writing dirty data back; a stuck disk is given up on (the unmount and
/// the journal replay at next boot cover what is left).
const SYNC_LIMIT: Duration = Duration::from_secs(10);
/// The log file writer's last lines and close.
const LOG_CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// Unmounting the data disk (its own retries take 5 s, then read-only and detach).
const UNMOUNT_LIMIT: Duration = Duration::from_secs(10);
/// The sync just before power-off (nothing is left to write by then).
const FINAL_SYNC_LIMIT: Duration = Duration::from_secs(2);
/// The untimed steps (vsock, DHCP release: non-blocking) and the logging.
const SLACK: Duration = Duration::from_secs(1);

/// The guest's longest shutdown: trigger to `reboot(POWER_OFF)`. The host
/// must wait longer than this before it kills the VM.
pub const WORST_CASE: Duration = Duration::from_secs(
    CONTAINERS_LIMIT.as_secs()
        + ENGINE_LIMIT.as_secs()
        + TERM_LIMIT.as_secs()
        + KILL_LIMIT.as_secs()
        + SHARES_LIMIT.as_secs()
        + SYNC_LIMIT.as_secs()
        + LOG_CLOSE_LIMIT.as_secs()
        + UNMOUNT_LIMIT.as_secs()
        + FINAL_SYNC_LIMIT.as_secs()
        + SLACK.as_secs(),
);

/// `struct input_event` on 64-bit: timeval (16) + type (2) + code (2) + value (4).
const INPUT_EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// True if a raw input event is a press of the power key.
pub fn is_power_press(ev: &[u8]) -> bool {
    ev.len() == INPUT_EVENT_SIZE
        && u16::from_ne_bytes([ev[16], ev[17]]) == EV_KEY
        && u16::from_ne_bytes([ev[18], ev[19]]) == KEY_POWER
        && i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]) == 1
}

/// Watches every input device named like a power button; a press sends
/// SIGPWR to PID 1, so all shutdown triggers share one path.
pub fn watch_power_button() {
    let Ok(entries) = fs::read_dir("/sys/class/input") else {
        return log::warn!("power: no /sys/class/input; the power button will not work");
    };
    let mut found = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let label = fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if !label.contains("Power Button") {
            continue;
        }
        found += 1;
        let dev = format!("/dev/input/{name}");
        let spawned = thread::Builder::new().name("power-button".into()).spawn(move || read_events(&dev));
        if let Err(e) = spawned {
            log::error!("power: cannot watch {name}: {e}");
        }
    }
    if found == 0 {
        log::warn!("power: no power button found; use the hypervisor's shutdown signal or SIGTERM");
    }
}

fn read_events(dev: &str) {
    let mut file = match File::open(dev) {
        Ok(f) => f,
        Err(e) => return log::error!("power: cannot open {dev}: {e}"),
    };
    log::debug!("power: watching {dev}");
    let mut ev = [0u8; INPUT_EVENT_SIZE];
    loop {
        if let Err(e) = file.read_exact(&mut ev) {
            return log::error!("power: reading {dev} failed: {e}");
        }
        if is_power_press(&ev) {
            log::info!("power: power button pressed");
            if let Err(e) = kill_process(getpid(), Signal::POWER) {
                log::error!("power: cannot signal init: {e}");
            }
        }
    }
}

/// Runs one shutdown step and logs its duration.
fn step(name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    step_done(name, t);
}

/// The log line of [`step`], kept out of its copies (one per step) to keep PID 1 small.
#[inline(never)]
fn step_done(name: &str, began: Instant) {
    log::info!("shutdown: {name} done in {}s", crate::secs::Secs(began.elapsed(), 2));
}

/// The time left of the whole shutdown: each step gets its own limit, or
/// less when earlier steps overran theirs, so the total holds.
struct Budget<'a, S: Sys> {
    sys: &'a S,
    end: Instant,
}

impl<'a, S: Sys> Budget<'a, S> {
    fn new(sys: &'a S, total: Duration) -> Self {
        Self { sys, end: sys.now() + total }
    }

    /// `limit`, or what is left of the budget if that is less.
    fn take(&self, limit: Duration) -> Duration {
        limit.min(self.end.saturating_duration_since(self.sys.now()))
    }
}

/// Runs `f` in a thread and waits at most `limit` for it, so a step stuck
/// in the kernel (a hung disk) cannot keep the machine from powering off.
fn bounded(what: &str, limit: Duration, f: Arc<dyn Fn() + Send + Sync>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let run = Arc::clone(&f);
    let spawned = thread::Builder::new().name(what.into()).spawn(move || {
        run();
        let _ = tx.send(());
    });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(limit).is_err() {
                log::error!("shutdown: {what} still not done after {}s; going on", limit.as_secs());
                events::note(Note::ShutdownOverran, what);
            }
        }
        Err(e) => {
            log::warn!("shutdown: cannot start a thread for {what} ({e}); running it here");
            f();
        }
    }
}

/// Waits until `pid` is reaped (or, with `None`, until no children are left),
/// at most `limit`. Returns true if that happened in time.
fn wait_gone(sys: &impl Sys, pid: Option<Pid>, limit: Duration) -> bool {
    let end = sys.now() + limit;
    loop {
        match sys.wait_any() {
            Ok(Some((reaped, status))) => {
                log::debug!("shutdown: reaped pid {} ({})", reaped.as_raw_nonzero(), reaper::describe(&status));
                if Some(reaped) == pid {
                    return true;
                }
                continue;
            }
            Ok(None) => {}
            Err(rustix::io::Errno::CHILD) => return true, // nothing left at all
            Err(e) => log::warn!("shutdown: waitpid: {e}"),
        }
        if sys.now() >= end {
            return false;
        }
        sys.sleep(Duration::from_millis(20));
    }
}

/// Signals every process but PID 1.
fn signal_all(sys: &impl Sys, sig: Signal) {
    match sys.kill(None, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => log::warn!("shutdown: kill(-1, {}): {e}", sig.as_raw()),
    }
}

/// The shutdown's steps that belong to the parts above supervision
/// (vsock, the init's engine streams, host folders, DHCP, the data disk):
/// `main.rs` hands in the real ones, the tests a recording fake, so the
/// whole order is tested.
pub trait Services: Clone + Send + Sync + 'static {
    /// Closes the vsock listeners (connections being served go on).
    fn stop_accepting(&self);
    /// Ends the init's own requests to the engine (its event followers),
    /// which the engine would otherwise wait for when told to stop.
    fn close_engine_streams(&self);
    /// Unmounts the host folders (may block on a stuck transport).
    fn unmount_shares(&self);
    /// Releases every DHCP lease (non-blocking).
    fn release_leases(&self);
    /// Unmounts the data disk, if one is mounted (may block on a stuck disk).
    fn unmount_data_disk(&self);
}

/// The one shutdown sequence for every trigger. Never returns, and takes
/// at most [`WORST_CASE`] (each step's limit is logged if it is hit).
pub fn shutdown(engine: &mut engine::Engine<Kernel>, services: &impl Services, why: &str) -> ! {
    stop_everything(&Kernel, services, engine, why);
    // The host learns of the power-off from its event; a moment for it to leave.
    events::wait_sent(Duration::from_millis(500));
    power_off()
}

/// Every step of the shutdown but the power-off, in order.
fn stop_everything<S: Sys>(sys: &S, services: &impl Services, engine: &mut engine::Engine<S>, why: &str) {
    let began = sys.now();
    // The final sync has its own limit, inside `power_off`.
    let budget = Budget::new(sys, WORST_CASE.saturating_sub(FINAL_SYNC_LIMIT));
    log::info!("shutdown: {why}; stopping (at most {}s)", WORST_CASE.as_secs());
    step("stop accepting vsock connections", || services.stop_accepting());
    step("stop containers", || engine::stop_containers(sys, CONTAINER_GRACE, budget.take(CONTAINERS_LIMIT)));
    step("stop engine", || {
        if let Some(pid) = engine.take_for_shutdown() {
            // Not ready any more, so the followers do not come back.
            services.close_engine_streams();
            engine.terminate(pid);
            let limit = budget.take(ENGINE_LIMIT);
            if !wait_gone(sys, Some(pid), limit) {
                log::warn!("shutdown: engine did not stop within {}s; killing it", limit.as_secs());
                events::note(Note::ShutdownOverran, "stop engine");
                let _ = sys.kill(Some(pid), Signal::KILL);
            }
        }
    });
    step("stop remaining processes", || {
        signal_all(sys, Signal::TERM);
        let limit = budget.take(TERM_LIMIT);
        if !wait_gone(sys, None, limit) {
            log::warn!("shutdown: processes still running after {}s; sending SIGKILL", limit.as_secs());
            events::note(Note::ShutdownOverran, "stop remaining processes");
            signal_all(sys, Signal::KILL);
            wait_gone(sys, None, budget.take(KILL_LIMIT));
        }
    });
    let sv = services.clone();
    step("unmount host folders", || bounded("unmount shares", budget.take(SHARES_LIMIT), Arc::new(move || sv.unmount_shares())));
    step("release DHCP leases", || services.release_leases());
    let s = sys.clone();
    step("sync", || bounded("sync", budget.take(SYNC_LIMIT), Arc::new(move || s.sync())));
    step("close log file", || {
        let limit = budget.take(LOG_CLOSE_LIMIT);
        if !sys.close_log(limit) {
            log::error!("shutdown: the log file writer is still not done after {}s (disk stuck?); going on", limit.as_secs());
            events::note(Note::ShutdownOverran, "close log file");
        }
    });
    let sv = services.clone();
    step("unmount data disk", || bounded("unmount", budget.take(UNMOUNT_LIMIT), Arc::new(move || sv.unmount_data_disk())));
    log::info!("shutdown: powering off after {}s (limit {}s)", crate::secs::Secs(sys.now().saturating_duration_since(began), 2), WORST_CASE.as_secs());
    events::emit(Event::PoweringOff);
}

/// Last resort for fatal errors as well: sync (for at most a moment: a
/// stuck disk must not keep the machine on) and power off, never return.
pub fn power_off() -> ! {
    bounded("final sync", FINAL_SYNC_LIMIT, Arc::new(|| Kernel.sync()));
    loop {
        if let Err(e) = reboot(RebootCommand::PowerOff) {
            log::error!("power: reboot(POWER_OFF) failed: {e}");
        }
        thread::sleep(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::fake::{Call, Fake};

    #[test]
    fn worst_case_is_what_the_host_is_told() {
        assert_eq!(WORST_CASE.as_secs(), skiff_proto::GUEST_SHUTDOWN_WORST_CASE_SECS);
    }

    fn event(kind: u16, code: u16, value: i32) -> [u8; 24] {
        let mut ev = [0u8; 24];
        ev[16..18].copy_from_slice(&kind.to_ne_bytes());
        ev[18..20].copy_from_slice(&code.to_ne_bytes());
        ev[20..24].copy_from_slice(&value.to_ne_bytes());
        ev
    }

    #[test]
    fn the_worst_case_covers_every_step_and_the_budget_holds_it() {
        let steps = [CONTAINERS_LIMIT, ENGINE_LIMIT, TERM_LIMIT, KILL_LIMIT, SHARES_LIMIT, SYNC_LIMIT, LOG_CLOSE_LIMIT, UNMOUNT_LIMIT, FINAL_SYNC_LIMIT, SLACK];
        assert_eq!(WORST_CASE, steps.iter().sum::<Duration>());
        assert!(CONTAINERS_LIMIT > CONTAINER_GRACE, "podman stop needs time beyond the grace period");
        let fake = Fake::new(&[]);
        let budget = Budget::new(&fake, Duration::from_millis(300));
        assert_eq!(budget.take(Duration::from_millis(10)), Duration::from_millis(10));
        assert_eq!(budget.take(Duration::from_secs(60)), Duration::from_millis(300), "never more than what is left");
        fake.sleep(Duration::from_millis(320));
        assert_eq!(budget.take(Duration::from_secs(10)), Duration::ZERO, "an overrun leaves nothing for later steps");
    }

    /// Starts an engine on `fake` (nothing answers its socket), then runs
    /// the shutdown.
    fn shut_down(fake: &Fake) -> i32 {
        let socket = std::env::temp_dir().join(format!("skiff-power-{}-{}.sock", std::process::id(), fake.elapsed().as_nanos()));
        let socket: &'static str = Box::leak(socket.to_string_lossy().into_owned().into_boxed_str());
        let mut engine = engine::Engine::for_tests(fake.clone(), socket, Box::leak(Box::new(engine::Readiness::new())));
        engine.start();
        let pid = match fake.calls().first() {
            Some((_, Call::Spawn(pid, _))) => *pid,
            other => panic!("the engine did not start: {other:?}"),
        };
        stop_everything(fake, fake, &mut engine, "test");
        pid
    }

    #[test]
    fn the_log_file_is_closed_after_the_sync_and_before_the_data_disk_unmount() {
        let fake = Fake::new(&[Signal::TERM]);
        shut_down(&fake);
        let last_kill = fake.calls().iter().rposition(|(_, c)| matches!(c, Call::Kill(..))).unwrap();
        let share = fake.find(|c| *c == Call::UnmountShares).expect("the host folders were never unmounted");
        let sync = fake.find(|c| *c == Call::Sync).expect("no sync");
        let close = fake.find(|c| *c == Call::CloseLog).expect("the log file was never closed");
        let unmount = fake.find(|c| *c == Call::UnmountDataDisk).expect("the data disk was never unmounted");
        let order = [last_kill, share.0, sync.0, close.0, unmount.0];
        assert!(order.is_sorted(), "order: last signal, host folder, sync, close log, data disk: {order:?} in {:#?}", fake.calls());
    }

    #[test]
    fn vsock_closes_first_the_engine_streams_end_before_its_sigterm_and_leases_go_before_the_sync() {
        let fake = Fake::new(&[Signal::TERM]);
        let engine = shut_down(&fake);
        let at = |want: Call| fake.find(|c| *c == want).unwrap_or_else(|| panic!("no {want:?} in {:#?}", fake.calls())).0;
        let order = [
            at(Call::StopAccepting),
            at(Call::CloseEngineStreams),
            at(Call::Kill(Some(engine), libc::SIGTERM)),
            at(Call::Kill(None, libc::SIGTERM)),
            at(Call::ReleaseLeases),
            at(Call::Sync),
        ];
        assert!(order.is_sorted(), "order: vsock, engine streams, engine, the rest, leases, sync: {order:?} in {:#?}", fake.calls());
    }

    #[test]
    fn sigkill_follows_sigterm_after_the_bound() {
        // The engine and one other process ignore SIGTERM.
        let fake = Fake::new(&[]);
        fake.adopt(4000, &[]);
        let engine = shut_down(&fake);
        let term = fake.find(|c| *c == Call::Kill(Some(engine), libc::SIGTERM)).expect("the engine got no SIGTERM");
        let kill = fake.find(|c| *c == Call::Kill(Some(engine), libc::SIGKILL)).expect("the engine got no SIGKILL");
        assert!(term.0 < kill.0);
        let waited = kill.1 - term.1;
        assert!(waited >= ENGINE_LIMIT && waited < ENGINE_LIMIT + Duration::from_millis(100), "engine SIGKILL after {waited:?}");

        let term_all = fake.find(|c| *c == Call::Kill(None, libc::SIGTERM)).expect("no SIGTERM to everyone");
        let kill_all = fake.find(|c| *c == Call::Kill(None, libc::SIGKILL)).expect("no SIGKILL to everyone");
        assert!(kill.0 < term_all.0 && term_all.0 < kill_all.0, "{:#?}", fake.calls());
        let waited = kill_all.1 - term_all.1;
        assert!(waited >= TERM_LIMIT && waited < TERM_LIMIT + Duration::from_millis(100), "SIGKILL to everyone after {waited:?}");
        assert!(fake.elapsed() <= WORST_CASE);
    }

    #[test]
    fn processes_that_obey_sigterm_get_no_sigkill() {
        let fake = Fake::new(&[Signal::TERM]);
        fake.adopt(4000, &[Signal::TERM]);
        shut_down(&fake);
        assert!(fake.find(|c| matches!(c, Call::Kill(_, libc::SIGKILL))).is_none(), "{:#?}", fake.calls());
        assert!(fake.elapsed() < Duration::from_secs(1), "waited {:?} for processes that were gone", fake.elapsed());
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)), "release");
        assert!(!is_power_press(&event(EV_KEY, 30, 1)), "another key");
        assert!(!is_power_press(&event(0, 0, 0)), "sync event");
        assert!(!is_power_press(&[0u8; 10]));
    }
}
