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
    Milestone { key: "usr_mounted", label: "/usr squashfs mounted", matches: |l| l.contains("skiff: medium: /usr mounted") },
    // The first settings line comes right after the data disk step.
    Milestone { key: "settings", label: "data disk step done, settings read", matches: |l| l.contains("skiff: config:") },
    // Loose on purpose: the static configuration and DHCP word it differently.
    Milestone { key: "network_address", label: "network address", matches: |l| l.contains("skiff: network:") && l.contains("address") },
    Milestone { key: "engine_binary_read", label: "engine binary read from /usr (background)", matches: |l| l.contains("skiff: medium: read /usr/bin/podman") },
    Milestone { key: "engine_exec", label: "engine exec", matches: |l| l.contains("skiff: engine: started") },
    Milestone { key: "engine_ready", label: "engine ready (/_ping)", matches: |l| l.contains("skiff: engine: ready") },
];

/// A stage of the boot: from one milestone to another (`None`: guest uptime 0).
pub struct Stage {
    pub label: &'static str,
    pub from: Option<&'static str>,
    pub to: &'static str,
}

/// The boot's stages, in order; those marked "background" overlap the others.
pub const STAGES: &[Stage] = &[
    Stage { label: "kernel: start → runs /init (incl. initramfs unpack)", from: None, to: "kernel_run_init" },
    Stage { label: "init: /init → PID 1 start", from: Some("kernel_run_init"), to: "init_start" },
    Stage { label: "init: tmpfs root switch", from: Some("init_start"), to: "tmpfs_root" },
    Stage { label: "init: /usr squashfs mount", from: Some("tmpfs_root"), to: "usr_mounted" },
    Stage { label: "init: data disk step", from: Some("usr_mounted"), to: "settings" },
    Stage { label: "init: settings, shares, network start → engine exec", from: Some("settings"), to: "engine_exec" },
    Stage { label: "engine: exec → ready (/_ping)", from: Some("engine_exec"), to: "engine_ready" },
    Stage { label: "network (background): settings → address", from: Some("settings"), to: "network_address" },
    Stage { label: "engine binary read (background): /usr mount → done", from: Some("usr_mounted"), to: "engine_binary_read" },
];

/// The stage's length in one boot, from its milestones (key → uptime).
pub fn stage_length(stage: &Stage, milestone: impl Fn(&str) -> Option<f64>) -> Option<f64> {
    let from = match stage.from {
        Some(k) => milestone(k)?,
        None => 0.0,
    };
    Some(milestone(stage.to)? - from)
}

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
[    1.520000] skiff: medium: /usr mounted from skiff/usr.squashfs on /dev/sr0 (/dev/loop0)
[    1.550000] skiff: config: no /var/lib/skiff/config.toml (defaults)
[    1.600000] skiff: network: eth0 up, address 10.0.2.15/24, gateway 10.0.2.2
[    1.650000] skiff: medium: read /usr/bin/podman (45 MiB) in 3.00s with 2 thread(s)
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
        assert_eq!(got, vec![Some(0.912345), Some(0.95), Some(1.5), Some(1.52), Some(1.55), Some(1.6), Some(1.65), Some(1.7), Some(12.250001)]);
    }

    #[test]
    fn stages_are_differences_of_milestones() {
        let at = |k: &str| MILESTONES.iter().find(|m| m.key == k).and_then(|m| first(LOG, m.matches));
        let len = |label: &str| stage_length(STAGES.iter().find(|s| s.label.starts_with(label)).unwrap(), at);
        assert_eq!(len("kernel:"), Some(0.912345));
        assert!((len("engine: exec").unwrap() - 10.550001).abs() < 1e-9);
        assert!((len("init: data disk").unwrap() - 0.03).abs() < 1e-9);
        assert_eq!(stage_length(&STAGES[0], |_| None), None);
        for s in STAGES {
            assert!(MILESTONES.iter().any(|m| m.key == s.to), "{} ends at an unknown milestone", s.label);
        }
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
