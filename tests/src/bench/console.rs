//! Boot milestones: the guest's events (`skiff_proto::events`, stamped
//! with guest uptime) and, for the kernel's own, the serial console, where
//! every line starts with `[ seconds.micros]` of guest uptime.

use skiff_proto::events::{Event, Stamped};

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

/// How a boot milestone is recognised: the kernel's console line (the
/// kernel's wording, not ours), or the first guest event that matches.
pub enum Source {
    Kernel(&'static str),
    Event(fn(&Event) -> bool),
}

/// A named boot milestone and where it is read.
pub struct Milestone {
    pub key: &'static str,
    pub label: &'static str,
    pub source: Source,
}

/// Skiff's boot milestones, in boot order.
pub const MILESTONES: &[Milestone] = &[
    Milestone { key: "kernel_run_init", label: "kernel runs /init", source: Source::Kernel("Run /init as init process") },
    Milestone { key: "init_start", label: "PID 1 start", source: Source::Event(|e| *e == Event::InitStarted) },
    Milestone { key: "tmpfs_root", label: "tmpfs root switch done", source: Source::Event(|e| *e == Event::InitRunning) },
    Milestone { key: "usr_mounted", label: "/usr squashfs mounted", source: Source::Event(|e| *e == Event::UsrMounted) },
    Milestone { key: "settings", label: "data disk step done", source: Source::Event(|e| matches!(e, Event::Disk(_))) },
    Milestone { key: "network_address", label: "network address", source: Source::Event(|e| matches!(e, Event::Network { .. })) },
    Milestone { key: "engine_binary_read", label: "engine binary read from /usr (background)", source: Source::Event(|e| *e == Event::EngineRead) },
    Milestone { key: "engine_exec", label: "engine exec", source: Source::Event(|e| matches!(e, Event::EngineStarted { .. })) },
    Milestone { key: "engine_ready", label: "engine ready (/_ping)", source: Source::Event(|e| *e == Event::EngineReady) },
];

/// The guest uptime of milestone `m` in one boot's console and events.
pub fn at(m: &Milestone, console: &str, events: &[Stamped]) -> Option<f64> {
    match m.source {
        Source::Kernel(text) => first(console, |l| l.contains(text)),
        Source::Event(matches) => events.iter().find(|s| matches(&s.event)).map(|s| s.at.as_secs_f64()),
    }
}

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

/// The pid the guest reported when it last started the engine.
pub fn engine_pid(events: &[Stamped]) -> Option<u32> {
    events.iter().rev().find_map(|s| match s.event {
        Event::EngineStarted { pid } => Some(pid),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::events::Disk;
    use std::time::Duration;

    const LOG: &str = "\
SeaBIOS (version 1.16)
[    0.000000] Linux version 6.12
[    0.912345] Run /init as init process
";

    fn events() -> Vec<Stamped> {
        let at = |s: f64| Duration::from_secs_f64(s);
        let net = Event::Network { link: "eth0".into(), addr: "10.0.2.15".parse().unwrap(), prefix: 24 };
        [(0.95, Event::InitStarted), (1.5, Event::InitRunning), (1.52, Event::UsrMounted), (1.55, Event::Disk(Disk::None)), (1.6, net), (1.65, Event::EngineRead), (1.7, Event::EngineStarted { pid: 123 }), (12.250001, Event::EngineReady)]
            .into_iter()
            .enumerate()
            .map(|(seq, (t, event))| Stamped { seq: seq as u64, at: at(t), event })
            .collect()
    }

    #[test]
    fn stamps_parse_with_padding() {
        assert_eq!(stamp("[    1.500000] skiff: x"), Some(1.5));
        assert_eq!(stamp("[12345.000001] x"), Some(12345.000001));
        assert_eq!(stamp("no stamp here"), None);
        assert_eq!(stamp("[ garbage] x"), None);
    }

    #[test]
    fn milestones_are_found_in_order() {
        let got: Vec<Option<f64>> = MILESTONES.iter().map(|m| at(m, LOG, &events())).collect();
        let want = [0.912345, 0.95, 1.5, 1.52, 1.55, 1.6, 1.65, 1.7, 12.250001];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g.unwrap() - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn stages_are_differences_of_milestones() {
        let ev = events();
        let at = |k: &str| MILESTONES.iter().find(|m| m.key == k).and_then(|m| at(m, LOG, &ev));
        let len = |label: &str| stage_length(STAGES.iter().find(|s| s.label.starts_with(label)).unwrap(), at);
        assert_eq!(len("kernel:"), Some(0.912345));
        assert!((len("engine: exec").unwrap() - 10.550001).abs() < 1e-6);
        assert!((len("init: data disk").unwrap() - 0.03).abs() < 1e-6);
        assert_eq!(stage_length(&STAGES[0], |_| None), None);
        for s in STAGES {
            assert!(MILESTONES.iter().any(|m| m.key == s.to), "{} ends at an unknown milestone", s.label);
        }
    }

    #[test]
    fn missing_milestones_are_none() {
        let net = MILESTONES.iter().find(|m| m.key == "network_address").unwrap();
        assert_eq!(at(net, LOG, &events()[..4]), None);
        let kernel = &MILESTONES[0];
        assert_eq!(at(kernel, "[ 0.9] floor: init started\n", &[]), None);
    }

    #[test]
    fn engine_pid_is_the_last_start() {
        let mut ev = events();
        assert_eq!(engine_pid(&ev), Some(123));
        ev.push(Stamped { seq: 99, at: Duration::from_secs(20), event: Event::EngineStarted { pid: 456 } });
        assert_eq!(engine_pid(&ev), Some(456));
        assert_eq!(engine_pid(&[]), None);
    }
}
