//! The `run-state` record in the state folder: what the running `skiff run`
//! booted (ISO, build, memory, CPUs, accelerator) and how far it is,
//! written by it (new file, renamed into place) at each change, and how it
//! ended (kept after it exits). `skiff start` follows it and decides from
//! the [`Failure`] whether to boot the previous ISO; `skiff status` shows
//! it: neither reads another process's log text or argv.

use std::io;
use std::path::PathBuf;

use crate::state::{file, StateDir};

const HEADER: &str = "skiff-run/1";
/// Longest record read.
const MAX_RECORD: u64 = 16 * 1024;

/// How far the boot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// QEMU runs; the engine does not answer yet.
    Booting,
    /// The engine answers through `docker.sock`.
    Ready,
    /// `skiff run` has exited after a clean shutdown.
    Stopped,
    /// `skiff run` has exited with this failure.
    Failed(Failure),
}

/// Why a `skiff run` failed, as far as `skiff start` has to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// QEMU exited before the engine answered.
    QemuExited,
    /// The guest found no /usr on its boot medium.
    NoUsr,
    /// The engine did not answer within the time limit.
    EngineTimeout,
    /// The engine could not be reached (a transport fault), twice.
    EngineUnreachable,
    /// Told to stop before the engine answered.
    Interrupted,
    /// Before the guest ran, or not about the ISO: the state folder, the
    /// data disk, QEMU's binary, the firmware, the ISO file itself.
    Setup,
}

const FAILURES: [(Failure, &str); 6] = [
    (Failure::QemuExited, "qemu-exited"),
    (Failure::NoUsr, "no-usr"),
    (Failure::EngineTimeout, "engine-timeout"),
    (Failure::EngineUnreachable, "engine-unreachable"),
    (Failure::Interrupted, "interrupted"),
    (Failure::Setup, "setup"),
];

impl Failure {
    /// True when the failure says the booted ISO does not work (the only
    /// case where `skiff start` boots the previous one instead).
    pub fn iso_does_not_boot(self) -> bool {
        matches!(self, Failure::QemuExited | Failure::NoUsr | Failure::EngineTimeout | Failure::EngineUnreachable)
    }

    fn name(self) -> &'static str {
        FAILURES.iter().find(|(f, _)| *f == self).map_or("setup", |(_, n)| n)
    }

    fn parse(name: &str) -> Option<Failure> {
        FAILURES.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// What the running `skiff run` booted, and its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    pub phase: Phase,
    /// 1 for the first boot; 2 once a transport fault made it boot once more.
    pub attempt: u32,
    /// Why the previous attempt was given up (one line), from attempt 2 on.
    pub retry_reason: Option<String>,
    pub iso: PathBuf,
    pub build: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: String,
}

impl RunState {
    pub fn encode(&self) -> String {
        let phase = match self.phase {
            Phase::Booting => "booting",
            Phase::Ready => "ready",
            Phase::Stopped => "stopped",
            Phase::Failed(_) => "failed",
        };
        let mut text = format!(
            "{HEADER}\nphase {phase}\nattempt {}\niso {}\nbuild {}\nmemory {}\ncpus {}\naccel {}\n",
            self.attempt,
            one_line(&self.iso.to_string_lossy()),
            one_line(&self.build),
            self.memory_mib,
            self.cpus,
            one_line(&self.accel)
        );
        if let Phase::Failed(f) = self.phase {
            text.push_str(&format!("failure {}\n", f.name()));
        }
        if let Some(why) = &self.retry_reason {
            text.push_str(&format!("retry-reason {}\n", one_line(why)));
        }
        text
    }

    /// Parses a record; `None` if it is not one (another version, damaged).
    pub fn parse(text: &str) -> Option<RunState> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut s = RunState::unknown(Phase::Booting);
        s.attempt = 0;
        let (mut phase, mut failure) = (None, None);
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            match key {
                "phase" => phase = Some(value),
                // A newer writer's failure is one this reader cannot decide on.
                "failure" => failure = Some(Failure::parse(value).unwrap_or(Failure::Setup)),
                "attempt" => s.attempt = value.parse().ok()?,
                "iso" => s.iso = PathBuf::from(value),
                "build" => s.build = value.to_string(),
                "memory" => s.memory_mib = value.parse().ok()?,
                "cpus" => s.cpus = value.parse().ok()?,
                "accel" => s.accel = value.to_string(),
                "retry-reason" => s.retry_reason = Some(value.to_string()),
                _ => {} // a newer writer's field
            }
        }
        s.phase = match phase? {
            "booting" => Phase::Booting,
            "ready" => Phase::Ready,
            "stopped" => Phase::Stopped,
            "failed" => Phase::Failed(failure?),
            _ => return None,
        };
        Some(s)
    }

    /// A record of a run that failed or ended before it knew what it booted.
    pub fn unknown(phase: Phase) -> RunState {
        RunState { phase, attempt: 1, retry_reason: None, iso: PathBuf::new(), build: String::new(), memory_mib: 0, cpus: 0, accel: String::new() }
    }
}

/// `text` on one line (a path or message cannot add a field).
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Writes the record of the VM running from `state`.
pub fn write(state: &StateDir, s: &RunState) -> io::Result<()> {
    file::write(&state.run_state(), s.encode().as_bytes())
}

/// The record of the VM running from `state`, if there is a readable one.
pub fn read(state: &StateDir) -> Option<RunState> {
    RunState::parse(&file::read(&state.run_state(), MAX_RECORD).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunState {
        RunState {
            phase: Phase::Ready,
            attempt: 2,
            retry_reason: Some("the host cannot reach the guest's engine\n(…)".into()),
            iso: "/home/a b/.skiff/images/abc.iso".into(),
            build: "abc".into(),
            memory_mib: 2048,
            cpus: 4,
            accel: "kvm".into(),
        }
    }

    #[test]
    fn round_trips_on_one_line_per_field() {
        let s = sample();
        let back = RunState::parse(&s.encode()).unwrap();
        assert_eq!(back.retry_reason.as_deref(), Some("the host cannot reach the guest's engine (…)"));
        assert_eq!(RunState { retry_reason: s.retry_reason.clone(), ..back.clone() }, s);
        let first = RunState { phase: Phase::Booting, attempt: 1, retry_reason: None, ..s };
        assert_eq!(RunState::parse(&first.encode()), Some(first));
    }

    #[test]
    fn other_versions_and_damage_are_no_record_and_new_fields_are_skipped() {
        let text = sample().encode();
        assert_eq!(RunState::parse(&text.replace("skiff-run/1", "skiff-run/2")), None);
        assert_eq!(RunState::parse(&text.replace("phase ready", "phase dancing")), None);
        assert_eq!(RunState::parse(&text.replace("memory 2048", "memory lots")), None);
        assert_eq!(RunState::parse(&text.replace("phase ready\n", "")), None);
        assert_eq!(RunState::parse(""), None);
        assert!(RunState::parse(&format!("{text}disk-bus virtio\n")).is_some());
    }

    #[test]
    fn how_a_run_ended_round_trips_and_only_iso_failures_mean_the_iso() {
        for (f, _) in FAILURES {
            let s = RunState { phase: Phase::Failed(f), ..sample() };
            assert_eq!(RunState::parse(&s.encode()).map(|r| r.phase), Some(Phase::Failed(f)));
        }
        let stopped = RunState { phase: Phase::Stopped, ..sample() };
        assert_eq!(RunState::parse(&stopped.encode()).map(|r| r.phase), Some(Phase::Stopped));
        let failed = RunState { phase: Phase::Failed(Failure::NoUsr), ..sample() }.encode();
        assert_eq!(RunState::parse(&failed.replace("failure no-usr", "failure dragons")).map(|r| r.phase), Some(Phase::Failed(Failure::Setup)));
        assert_eq!(RunState::parse(&failed.replace("failure no-usr\n", "")), None, "failed, but not how");
        let iso: Vec<Failure> = FAILURES.iter().map(|(f, _)| *f).filter(|f| f.iso_does_not_boot()).collect();
        assert_eq!(iso, [Failure::QemuExited, Failure::NoUsr, Failure::EngineTimeout, Failure::EngineUnreachable]);
    }
}
