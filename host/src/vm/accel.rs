//! Which QEMU accelerator to use. `auto` picks KVM where `/dev/kvm` can run
//! the ISO's stock kernel and TCG elsewhere. A PVM host (`kvm_pvm` loaded,
//! as on some cloud build machines) offers `/dev/kvm` but runs only
//! PVM-enabled guest kernels, so it counts as no KVM.

use std::fs::OpenOptions;
use std::path::Path;

/// What the host offers, as plain facts (so the choice is testable).
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// `/dev/kvm` opens read-write for us.
    pub kvm_usable: bool,
    /// `/sys/module/kvm_pvm` exists.
    pub pvm: bool,
}

impl Host {
    pub fn probe() -> Host {
        Host {
            kvm_usable: OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok(),
            pvm: Path::new("/sys/module/kvm_pvm").exists(),
        }
    }
}

/// The accelerator for `requested` (`auto`, `kvm`, `tcg` or any QEMU
/// `-accel` value) and why, for the user. `native`: the guest has the
/// host's architecture (KVM cannot run another one).
pub fn choose(requested: &str, host: Host, native: bool) -> (String, &'static str) {
    if requested != "auto" {
        return (requested.to_string(), "as asked");
    }
    if !native {
        return ("tcg".into(), "the guest's architecture is not the host's");
    }
    match (host.kvm_usable, host.pvm) {
        (true, false) => ("kvm".into(), "/dev/kvm is usable"),
        (true, true) => ("tcg".into(), "/dev/kvm is a PVM host, which cannot run a stock kernel"),
        (false, _) => ("tcg".into(), "no usable /dev/kvm"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_kvm_only_where_a_stock_kernel_runs() {
        let h = |kvm_usable, pvm| Host { kvm_usable, pvm };
        assert_eq!(choose("auto", h(true, false), true).0, "kvm");
        assert_eq!(choose("auto", h(true, true), true).0, "tcg");
        assert_eq!(choose("auto", h(false, false), true).0, "tcg");
        assert_eq!(choose("kvm", h(false, true), true).0, "kvm", "an explicit choice is kept");
        assert_eq!(choose("tcg", h(true, false), true).0, "tcg");
        assert_eq!(choose("auto", h(true, false), false).0, "tcg", "KVM runs only the host's architecture");
    }
}
