//! What every connection to one VM shares while this process serves it:
//! the secret that replaced the boot secret, whether QEMU has the VM
//! stopped, and whether it is still starting. One [`Link`] per VM, held by
//! its [`Target`](super::Target) and so by every clone of it (bridge,
//! ports, control, events): two VMs in one process never see each
//! other's state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use skiff_proto::auth::Secret;

/// A shared handle; clones see the same state.
#[derive(Clone, Debug, Default)]
pub struct Link(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// The boot secret and the one that replaced it in the guest
    /// (`control::rekey`): a target holding the first proves the second.
    rekeyed: Mutex<Option<(Secret, Secret)>>,
    /// True while QEMU has the VM stopped; when it last resumed otherwise.
    paused: Mutex<(bool, Option<Instant>)>,
    /// `skiff run` polls the engine through the bridge while the guest
    /// boots: failed connections are expected then, and kept back.
    starting: AtomicBool,
    /// The last connection error kept back while starting.
    held_back: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Link {
    /// From now on, connections of a target holding `boot` prove `new`.
    pub fn rekeyed(&self, boot: Secret, new: Secret) {
        *lock(&self.0.rekeyed) = Some((boot, new));
    }

    /// The secret to prove for a target holding `secret`.
    pub fn current(&self, secret: &Secret) -> Secret {
        match &*lock(&self.0.rekeyed) {
            Some((boot, new)) if boot.matches(secret) => new.clone(),
            _ => secret.clone(),
        }
    }

    /// The VM stopped or resumed (QEMU's STOP and RESUME events).
    pub fn set_paused(&self, paused: bool) {
        let mut p = lock(&self.0.paused);
        if p.0 && !paused {
            p.1 = Some(Instant::now());
        }
        p.0 = paused;
    }

    /// True while QEMU has the VM stopped.
    pub fn paused(&self) -> bool {
        lock(&self.0.paused).0
    }

    /// True if the VM is stopped, or resumed less than `within` ago: silence
    /// from the guest over that time says nothing about the guest.
    pub fn paused_within(&self, within: Duration) -> bool {
        let p = lock(&self.0.paused);
        p.0 || p.1.is_some_and(|at| at.elapsed() < within)
    }

    /// Whether the VM is still starting (see [`Shared::starting`]).
    pub fn set_starting(&self, starting: bool) {
        self.0.starting.store(starting, Ordering::Relaxed);
    }

    pub fn starting(&self) -> bool {
        self.0.starting.load(Ordering::Relaxed)
    }

    /// Keeps `error` back for [`take_held_back`](Self::take_held_back).
    pub fn hold_back(&self, error: String) {
        *lock(&self.0.held_back) = Some(error);
    }

    /// Takes the last error kept back while starting, so a start that
    /// times out can say why the engine could not be reached.
    pub fn take_held_back(&self) -> Option<String> {
        lock(&self.0.held_back).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::auth::SECRET_LEN;

    #[test]
    fn two_vms_links_do_not_share_state_and_clones_do() {
        let (a, b) = (Link::default(), Link::default());
        let a2 = a.clone();
        let boot = Secret::from_bytes([1; SECRET_LEN]);
        a.rekeyed(boot.clone(), Secret::from_bytes([2; SECRET_LEN]));
        a.set_paused(true);
        a.set_starting(true);
        assert!(a2.current(&boot).matches(&Secret::from_bytes([2; SECRET_LEN])) && a2.paused() && a2.starting());
        assert!(b.current(&boot).matches(&boot), "another VM's rekey leaked");
        assert!(!b.paused() && !b.paused_within(Duration::from_secs(60)) && !b.starting());
        a.set_paused(false);
        assert!(!a.paused() && a.paused_within(Duration::from_secs(60)), "just resumed");
        assert!(!a.paused_within(Duration::ZERO));
    }
}
