//! PID 1's signals, taken synchronously: they are blocked in every thread
//! and collected with sigtimedwait(2) in the main loop, so no handler runs
//! at an awkward moment. Children get a clean mask (std resets it at spawn).

use std::mem::MaybeUninit;
use std::time::Duration;

/// The signals init acts on.
pub const HANDLED: [i32; 6] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGPWR, libc::SIGHUP, libc::SIGUSR1];

fn handled_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only
    // writes into that initialised set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for sig in HANDLED {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

/// Blocks the handled signals in the calling thread and every thread it
/// spawns afterwards. Call before starting any thread.
pub fn block() -> std::io::Result<()> {
    let set = handled_set();
    // SAFETY: `set` is a valid, initialised sigset; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc)) }
}

/// Waits up to `timeout` for one handled signal; `None` on timeout.
pub fn wait(timeout: Duration) -> Option<i32> {
    let set = handled_set();
    let ts = libc::timespec { tv_sec: timeout.as_secs().min(i32::MAX as u64) as _, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: `set` and `ts` are valid for the call; a null siginfo is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Ctrl-Alt-Del becomes SIGINT to PID 1 instead of an instant reboot.
pub fn catch_ctrl_alt_del() {
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::CadOff) {
        log::warn!("cannot route Ctrl-Alt-Del to init: {e}");
    }
}
