//! Boot figures from one `skiff run`: guest uptime at each milestone (from
//! the guest's events, the kernel's from the console) and host wall times.

use std::path::Path;
use std::time::Duration;

use super::console::{self, MILESTONES};
use crate::Vm;

/// One boot's figures, in seconds.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Guest uptime per milestone key (see `console::MILESTONES`).
    pub milestones: Vec<(&'static str, Option<f64>)>,
    /// Host: QEMU start to the first answered ping through the bridge (skiff run's figure).
    pub qemu_to_ping: Option<f64>,
    /// Host: spawning `skiff run` to its DOCKER_HOST line.
    pub spawn_to_docker_host: f64,
    /// Host: power button to QEMU exit, once the VM is stopped.
    pub shutdown: Option<f64>,
}

impl Boot {
    pub fn milestone(&self, key: &str) -> Option<f64> {
        self.milestones.iter().find(|(k, _)| *k == key).and_then(|(_, v)| *v)
    }
}

/// Boots the ISO in `dir` and reads the boot figures; the VM stays up.
pub fn boot(dir: &Path, extra: &[&str]) -> (Vm, Boot) {
    figures(Vm::boot_with(dir, extra))
}

/// Like [`boot`], for another ISO (the aarch64 one: `skiff run` picks the
/// architecture from its volume id).
pub fn boot_iso(dir: &Path, iso: &Path, extra: &[&str]) -> (Vm, Boot) {
    figures(Vm::boot_iso(dir, iso, &[], extra))
}

fn figures(vm: Vm) -> (Vm, Boot) {
    // The engine answered through the bridge; check it really is the engine.
    let version = vm.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!version.trim().is_empty(), "the engine did not report a version");
    // The guest reports readiness just before the host's ping succeeds;
    // give the event a moment to reach the file.
    vm.wait_event(Duration::from_secs(10), |e| *e == skiff_proto::events::Event::EngineReady);
    let (text, events) = (vm.console(), vm.events());
    let milestones = MILESTONES.iter().map(|m| (m.key, console::at(m, &text, &events))).collect();
    let b = Boot {
        milestones,
        qemu_to_ping: vm.qemu_to_ping().map(|d| d.as_secs_f64()),
        spawn_to_docker_host: vm.ready_after.as_secs_f64(),
        shutdown: None,
    };
    (vm, b)
}
