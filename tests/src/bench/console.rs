//! Reads boot milestones off a serial console log: every line the kernel
//! and Skiff's init print starts with `[ seconds.micros]` of guest uptime.

/// Guest uptime in seconds at the start of `line`, if it carries a stamp.
pub fn stamp(line: &str) -> Option<f64> {
    let rest = line.trim_start_matches(|c: char| c != '[').strip_prefix('[')?;
    let (num, _) = rest.split_once(']')?;
    num.trim().parse().ok()
}

/// The uptime of the first stamped line that satisfies `matches`.
pub fn first(console: &str, matches: impl Fn(&str) -> bool) -> Option<f64> {
    console.lines().filter(|l| matches(l)).find_map(stamp)
}

/// A named boot milestone and how to recognise its console line.
pub struct Milestone {
    pub key: &'static str,
    pub label: &'static str,
    pub matches: fn(&str) -> bool,
}

/// Skiff's boot milestones, in boot order.
pub const MILESTONES: &[Milestone] = &[
    Milestone { key: "kernel_run_init", label: "kernel runs /init", matches: |l| l.contains("Run /init as init process") },
    Milestone { key: "init_start", label: "PID 1 start", matches: |l| l.contains("skiff: init started") },
    Milestone { key: "tmpfs_root", label: "tmpfs root switch done", matches: |l| l.contains("skiff: init running on tmpfs root") },
    // Loose on purpose: the static configuration and DHCP word it differently.
    Milestone { key: "network_address", label: "network address", matches: |l| l.contains("skiff: network:") && l.contains("address") },
    Milestone { key: "engine_exec", label: "engine exec", matches: |l| l.contains("skiff: engine: started") },
    Milestone { key: "engine_ready", label: "engine ready (/_ping)", matches: |l| l.contains("skiff: engine: ready") },
];

/// The pid the init logged when it last started the engine.
pub fn engine_pid(console: &str) -> Option<u32> {
    console.lines().rev().filter(|l| l.contains("skiff: engine: started")).find_map(|l| {
        let (_, rest) = l.split_once("(pid ")?;
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
SeaBIOS (version 1.16)
[    0.000000] Linux version 6.12
[    0.912345] Run /init as init process
[    0.950000] skiff: init started (initramfs)
[    1.500000] skiff: init running on tmpfs root
[    1.600000] skiff: network: eth0 up, address 10.0.2.15/24, gateway 10.0.2.2
[    1.700000] skiff: engine: started podman system service (pid 123)
[   12.250001] skiff: engine: ready (answers /_ping after 10.55s)
";

    #[test]
    fn stamps_parse_with_padding() {
        assert_eq!(stamp("[    1.500000] skiff: x"), Some(1.5));
        assert_eq!(stamp("[12345.000001] x"), Some(12345.000001));
        assert_eq!(stamp("no stamp here"), None);
        assert_eq!(stamp("[ garbage] x"), None);
    }

    #[test]
    fn milestones_are_found_in_order() {
        let got: Vec<Option<f64>> = MILESTONES.iter().map(|m| first(LOG, m.matches)).collect();
        assert_eq!(got, vec![Some(0.912345), Some(0.95), Some(1.5), Some(1.6), Some(1.7), Some(12.250001)]);
    }

    #[test]
    fn missing_milestones_are_none() {
        let log = "[    0.9] skiff: init started\n[    1.0] skiff: network: no Ethernet link found\n";
        let net = MILESTONES.iter().find(|m| m.key == "network_address").unwrap();
        assert_eq!(first(log, net.matches), None);
    }

    #[test]
    fn engine_pid_is_read_from_the_start_line() {
        assert_eq!(engine_pid(LOG), Some(123));
        let restarted = format!("{LOG}[   20.0] skiff: engine: started podman system service (pid 456)\n");
        assert_eq!(engine_pid(&restarted), Some(456));
        assert_eq!(engine_pid("[ 1.0] skiff: engine: started podman (pid x)"), None);
    }
}
