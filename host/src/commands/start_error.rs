//! What can go wrong starting or reaching the VM (`skiff run`, `start`,
//! `rollback`), for callers to decide on: `skiff run` boots once more on
//! [`StartError::EngineUnreachable`], and `skiff start` boots the previous
//! ISO only when the failure says the new one does not boot
//! ([`StartError::rolls_back`]). Each variant's message says what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::state::run_state::Failure;
use crate::state::StateError;
use crate::vm::{datadisk, images};

/// How an engine the host cannot reach shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The guest reports its engine ready, yet it does not answer the host.
    ReadyButUnreachable,
    /// The guest's vsock device stopped answering.
    DeviceSilent,
}

#[derive(Debug)]
pub enum StartError {
    /// The ISO file is not there.
    NoIso(PathBuf),
    /// The state folder: not ours, not makeable, or held by another VM.
    State(StateError),
    /// The data disk cannot be made, read or is another VM's.
    DataDisk(datadisk::Error),
    /// The ISO cannot be installed into the state folder.
    Image(images::Error),
    /// QEMU's binary could not be started.
    QemuMissing { binary: String, error: io::Error },
    /// The UEFI firmware image is not there.
    NoFirmware(PathBuf),
    /// QEMU exited before the engine answered.
    QemuExited { status: String, console: PathBuf },
    /// The guest found no /usr on its boot medium.
    NoUsr { console: PathBuf },
    /// The engine did not answer in time.
    EngineTimeout { secs: u64, last: String, console: PathBuf },
    /// The engine cannot be reached through a transport fault.
    EngineUnreachable { fault: Fault, limit_secs: u64, last: String, console: PathBuf },
    /// Told to stop (a signal, `skiff stop`) before the engine answered.
    Interrupted,
    /// `skiff start`: the detached `skiff run` ended before the engine
    /// answered; `failure` is what its `run-state` record says, if any.
    DidNotStart { status: String, failure: Option<Failure>, tail: String, log: PathBuf },
    /// `skiff start`: the new ISO failed (`why`) and the previous one runs again.
    RolledBack { new: String, old: String, why: Box<StartError> },
    /// Anything else (a file in the state folder, a socket).
    Io(io::Error),
}

impl StartError {
    /// What the `run-state` record says about this failure.
    pub fn failure(&self) -> Failure {
        match self {
            StartError::QemuExited { .. } => Failure::QemuExited,
            StartError::NoUsr { .. } => Failure::NoUsr,
            StartError::EngineTimeout { .. } => Failure::EngineTimeout,
            StartError::EngineUnreachable { .. } => Failure::EngineUnreachable,
            StartError::Interrupted => Failure::Interrupted,
            StartError::DidNotStart { failure: Some(f), .. } => *f,
            _ => Failure::Setup,
        }
    }

    /// True when `skiff start` should boot the previous ISO: only for a
    /// failure that says the new ISO does not boot, never for a locked
    /// state folder, a missing QEMU, a disk in use or an interruption.
    pub fn rolls_back(&self) -> bool {
        match self {
            StartError::DidNotStart { failure: Some(f), .. } => f.iso_does_not_boot(),
            _ => false,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoIso(p) => write!(f, "no ISO at {} (build it with `make iso`, or give --iso)", p.display()),
            StartError::State(e) => e.fmt(f),
            StartError::DataDisk(e) => e.fmt(f),
            StartError::Image(e) => e.fmt(f),
            StartError::QemuMissing { binary, error } => {
                write!(f, "cannot start {binary}: {error} (install QEMU: Debian's qemu-system-x86 or qemu-system-arm)")
            }
            StartError::NoFirmware(p) => write!(f, "no UEFI firmware at {} (Debian: ovmf, qemu-efi-aarch64)", p.display()),
            StartError::QemuExited { status, console } => {
                write!(f, "QEMU exited before the engine answered ({status}); see the console log {}", console.display())
            }
            StartError::NoUsr { console } => write!(
                f,
                "the guest found no /usr on its boot medium, so its engine cannot start; rebuild the ISO (`make iso`); see the console log {}",
                console.display()
            ),
            StartError::EngineTimeout { secs, last, console } => write!(
                f,
                "the engine did not answer within {secs}s (last attempt: {last}); see the console log {}, or give more --timeout",
                console.display()
            ),
            StartError::EngineUnreachable { fault, limit_secs, last, console } => {
                let why = match fault {
                    Fault::ReadyButUnreachable => "the guest reports it ready",
                    Fault::DeviceSilent => "the guest's vsock device stopped answering",
                };
                write!(
                    f,
                    "the host cannot reach the guest's engine ({why} for {limit_secs}s; last attempt: {last}); see the console log {}",
                    console.display()
                )
            }
            StartError::Interrupted => write!(f, "interrupted before the engine answered"),
            StartError::DidNotStart { status, tail, log, .. } => {
                write!(f, "the VM did not start ({status}):\n  {}\n(the whole log: {})", tail.lines().collect::<Vec<_>>().join("\n  "), log.display())
            }
            StartError::RolledBack { new, old, .. } => {
                write!(f, "ISO {new} failed; running the previous ISO {old} again (fix that build, then `skiff start --iso` it once more)")
            }
            StartError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::State(e) => Some(e),
            StartError::DataDisk(e) => Some(e),
            StartError::Image(e) => Some(e),
            StartError::QemuMissing { error, .. } | StartError::Io(error) => Some(error),
            StartError::RolledBack { why, .. } => Some(why.as_ref()),
            _ => None,
        }
    }
}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> StartError {
        StartError::Io(e)
    }
}

impl From<StateError> for StartError {
    fn from(e: StateError) -> StartError {
        StartError::State(e)
    }
}

impl From<datadisk::Error> for StartError {
    fn from(e: datadisk::Error) -> StartError {
        StartError::DataDisk(e)
    }
}

impl From<images::Error> for StartError {
    fn from(e: images::Error) -> StartError {
        StartError::Image(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn did_not_start(failure: Option<Failure>) -> StartError {
        StartError::DidNotStart { status: "exit status: 1".into(), failure, tail: String::new(), log: "skiff.log".into() }
    }

    #[test]
    fn only_a_new_iso_that_does_not_boot_rolls_back() {
        for f in [Failure::QemuExited, Failure::NoUsr, Failure::EngineTimeout, Failure::EngineUnreachable] {
            assert!(did_not_start(Some(f)).rolls_back(), "{f:?}");
        }
        for f in [Failure::Interrupted, Failure::Setup] {
            assert!(!did_not_start(Some(f)).rolls_back(), "{f:?}");
        }
        assert!(!did_not_start(None).rolls_back(), "a run that left no record (crashed, or lost the folder to another) says nothing about the ISO");
        let locked = StartError::State(StateError::Locked { path: "/x".into(), pid: 7 });
        assert!(!locked.rolls_back());
        assert_eq!(locked.failure(), Failure::Setup, "a locked folder is not the ISO's fault");
        let no_qemu = StartError::QemuMissing { binary: "qemu-system-x86_64".into(), error: io::ErrorKind::NotFound.into() };
        assert_eq!(no_qemu.failure(), Failure::Setup);
    }

    #[test]
    fn each_failure_is_recorded_as_its_kind() {
        let console = PathBuf::from("console.log");
        assert_eq!(StartError::QemuExited { status: "signal 9".into(), console: console.clone() }.failure(), Failure::QemuExited);
        assert_eq!(StartError::NoUsr { console: console.clone() }.failure(), Failure::NoUsr);
        assert_eq!(StartError::EngineTimeout { secs: 1, last: String::new(), console: console.clone() }.failure(), Failure::EngineTimeout);
        let unreachable = StartError::EngineUnreachable { fault: Fault::DeviceSilent, limit_secs: 30, last: String::new(), console };
        assert_eq!(unreachable.failure(), Failure::EngineUnreachable);
        assert_eq!(StartError::Interrupted.failure(), Failure::Interrupted);
    }
}
