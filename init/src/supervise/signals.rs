//! PID 1's signals, taken synchronously: they are blocked in every thread
//! and collected with sigtimedwait(2) in the main loop, so no handler runs
//! at an awkward moment. A mask survives fork and exec; in the guest the
//! debug shell and the engine started with this one although std means to
//! clear it, so every child is given a clean mask explicitly: [`clean_mask`].

use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::process::Command;
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
    change_mask(libc::SIG_BLOCK, &handled_set())
}

/// pthread_sigmask(2) for the calling thread; async-signal-safe, so a
/// forked child may call it before exec.
fn change_mask(how: libc::c_int, set: &libc::sigset_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid, initialised sigset; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc)) }
}

/// Makes `cmd`'s process start with no signal blocked. Without it, a
/// shell's `wait` never saw SIGCHLD and hung, and SIGTERM could not stop
/// a helper.
pub fn clean_mask(cmd: &mut Command) -> &mut Command {
    // SAFETY: runs in the forked child before exec; sigemptyset and
    // pthread_sigmask are async-signal-safe and touch only a set on this
    // stack frame, which sigemptyset initialises.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            change_mask(libc::SIG_SETMASK, &set.assume_init())
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_starts_with_no_signal_blocked() {
        // In a thread of its own: the mask is per thread, and a child starts with its spawning thread's.
        let blocked = std::thread::Builder::new()
            .spawn(|| {
                block().unwrap();
                let mut cmd = Command::new("/bin/sh");
                // The debug shell's shape: a pre_exec of its own as well.
                // SAFETY: the closure does nothing.
                unsafe { cmd.args(["-c", "grep SigBlk /proc/self/status"]).pre_exec(|| Ok(())) };
                let out = clean_mask(&mut cmd).output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("SigBlk:").trim().to_string()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(u64::from_str_radix(&blocked, 16), Ok(0), "{blocked}");
    }
}
