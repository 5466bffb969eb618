//! Container healthchecks, run as Docker runs them. Podman runs each
//! container's checks from a systemd timer and the appliance has no
//! systemd, so without this a health stays `starting` forever (and
//! compose's `condition: service_healthy` waits forever).
//!
//! The engine runs one check and records it when asked
//! (`GET /v5.0.0/libpod/containers/ID/healthcheck`): the timeout, the start period,
//! the retries, the status and its log in `docker inspect` are its own. This
//! is only the clock. One thread follows the engine (the running containers
//! when it becomes ready, then its events: `start`, `die`, `remove`...) and
//! inspects each started container for a healthcheck; the clock keeps one
//! timer per such container and asks for a check `interval` after the
//! container started and `interval` after each check ended, as Docker does,
//! each check in a short-lived thread of its own. With no container to
//! check, both threads only wait (on the event stream, on their mailbox).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use skiff_proto::events::Note;

use crate::services::http;
use crate::services::json::{self, Json};
use crate::supervise::{backoff, engine};

/// Container events only (URL-encoded `{"type":["container"]}`).
const EVENTS_PATH: &str = "/v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
/// The running containers.
const CONTAINERS_PATH: &str = "/v1.41/containers/json";
/// Largest container list read (about 2,000 containers' worth).
const MAX_LIST: usize = 8 << 20;
/// Largest container inspect, event line or check answer read.
const MAX_ANSWER: usize = 1 << 20;
/// Docker's interval and timeout for a healthcheck that leaves them out.
const DEFAULT_EVERY: Duration = Duration::from_secs(30);
/// How much longer than its timeout a check may take before the init
/// stops waiting for the engine's answer (an exec is slow under emulation).
const SLACK: Duration = Duration::from_secs(30);
/// How long the event stream may stay silent before the follower makes
/// sure the engine it follows is still the ready one.
const QUIET: Duration = Duration::from_secs(60);

/// A container's healthcheck timing, as far as the clock needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub interval: Duration,
    pub timeout: Duration,
}

/// What an engine event means for the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The container (re)started: read its healthcheck.
    Look,
    /// The container stopped, paused or went away: stop checking it.
    Forget,
}

/// An id fit for a request path and the console: hex, as the engine makes them.
fn container_id(text: Option<String>) -> Option<String> {
    text.filter(|id| (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The ids in a container list (`GET /containers/json`: running ones only).
pub fn parse_list(text: &[u8]) -> Result<Vec<String>, json::Error> {
    let listed = json::parse(text)?;
    if !listed.is_array() {
        return Err(json::Error::NotAList);
    }
    Ok(listed.items().filter_map(|c| container_id(c.get("Id")?.as_str())).collect())
}

/// The healthcheck of a running container's inspect (`GET /containers/ID/json`);
/// `None` if it is not running or has none (`Test` empty or `["NONE"]`).
/// Durations are nanoseconds; 0 (left out) means Docker's 30 s.
pub fn parse_inspect(text: &[u8]) -> Result<Option<Check>, json::Error> {
    let c = json::parse(text)?;
    let running = c.get("State").and_then(|s| s.get("Status")).and_then(Json::as_str).as_deref() == Some("running");
    let Some(hc) = c.get("Config").and_then(|c| c.get("Healthcheck")) else { return Ok(None) };
    let test = hc.get("Test").and_then(|t| t.items().next()).and_then(Json::as_str).unwrap_or_default();
    if !running || test.is_empty() || test == "NONE" {
        return Ok(None);
    }
    let every = |key| match hc.get(key).and_then(Json::as_u64) {
        Some(ns) if ns > 0 => Duration::from_nanos(ns),
        _ => DEFAULT_EVERY,
    };
    Ok(Some(Check { interval: every("Interval"), timeout: every("Timeout") }))
}

/// What an event line (`GET /events`) asks of the clock, and for which container.
pub fn parse_event(line: &[u8]) -> Option<(Change, String)> {
    let e = json::parse(line).ok()?;
    let change = match e.get("Action")?.as_str()?.as_str() {
        "start" | "restart" | "unpause" => Change::Look,
        "die" | "died" | "stop" | "pause" | "remove" => Change::Forget,
        _ => return None,
    };
    Some((change, container_id(e.get("id").or_else(|| e.get("Actor")?.get("ID")).and_then(Json::as_str))?))
}

/// One watched container.
#[derive(Debug)]
struct Timer {
    id: String,
    check: Check,
    next: Instant,
    /// A check is running (one at a time per container).
    running: bool,
    /// The last failure logged, so a lasting one is said once.
    said: Option<String>,
}

/// The timers: when each watched container's next check is due.
#[derive(Debug, Default)]
pub struct Schedule {
    timers: Vec<Timer>,
}

impl Schedule {
    fn find(&mut self, id: &str) -> Option<&mut Timer> {
        self.timers.iter_mut().find(|t| t.id == id)
    }

    /// Starts (or restarts) the timer of `id`: its next check is one
    /// interval from `now`. Returns true if `id` was not watched.
    pub fn watch(&mut self, id: String, check: Check, now: Instant) -> bool {
        let next = now + check.interval;
        if let Some(t) = self.find(&id) {
            (t.check, t.next) = (check, next);
            return false;
        }
        self.timers.push(Timer { id, check, next, running: false, said: None });
        true
    }

    /// Stops the timer of `id`; returns true if it was watched.
    pub fn forget(&mut self, id: &str) -> bool {
        let before = self.timers.len();
        self.timers.retain(|t| t.id != id);
        self.timers.len() != before
    }

    /// Stops every timer (the engine went away).
    pub fn forget_all(&mut self) {
        self.timers.clear();
    }

    /// The checks due at `now` (container id and the check's timeout),
    /// marked running.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Duration)> {
        let due = self.timers.iter_mut().filter(|t| !t.running && t.next <= now);
        due.map(|t| {
            t.running = true;
            (t.id.clone(), t.check.timeout)
        })
        .collect()
    }

    /// The check of `id` ended at `now`: the next one is an interval
    /// later. Returns true if `failure` is news (not the last one said).
    pub fn done(&mut self, id: &str, now: Instant, failure: Option<String>) -> bool {
        let Some(t) = self.find(id) else { return false };
        t.running = false;
        t.next = now + t.check.interval;
        let news = failure.is_some() && failure != t.said;
        t.said = failure;
        news
    }

    /// How long until the next check is due; `None` if none is waiting.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.timers.iter().filter(|t| !t.running).map(|t| t.next.saturating_duration_since(now)).min()
    }
}

/// What the follower and the check threads tell the clock.
enum Msg {
    Watch(String, Check),
    Forget(String),
    ForgetAll,
    /// A check ended: `Err` holds why it could not run (the container is
    /// gone: `None`).
    Done(String, Result<(), Option<String>>),
}

/// The clock's mailbox.
static MAILBOX: Mutex<VecDeque<Msg>> = Mutex::new(VecDeque::new());
static MAIL: Condvar = Condvar::new();

fn mailbox() -> MutexGuard<'static, VecDeque<Msg>> {
    // A panicking holder cannot leave a queue half-updated.
    MAILBOX.lock().unwrap_or_else(|e| e.into_inner())
}

fn tell(msg: Msg) {
    mailbox().push_back(msg);
    MAIL.notify_one();
}

/// The next message, waiting for one at most `wait` (`None`: as long as it takes).
fn next_msg(wait: Option<Duration>) -> Option<Msg> {
    let queue = mailbox();
    let mut queue = match wait {
        None => MAIL.wait_while(queue, |q| q.is_empty()).unwrap_or_else(|e| e.into_inner()),
        Some(wait) => MAIL.wait_timeout_while(queue, wait, |q| q.is_empty()).unwrap_or_else(|e| e.into_inner()).0,
    };
    queue.pop_front()
}

/// Starts the clock and the engine follower, for as long as the init runs.
pub fn spawn() {
    if let Err(e) = thread::Builder::new().name("health".into()).spawn(clock) {
        log::error!("health: cannot start the healthcheck clock: {e}; container healthchecks will not run");
        return;
    }
    if let Err(e) = thread::Builder::new().name("health-events".into()).spawn(follow) {
        log::error!("health: cannot start the engine watcher: {e}; container healthchecks will not run");
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Runs the timers: starts the checks that are due, then sleeps until the
/// next one or a message.
fn clock() {
    let mut schedule = Schedule::default();
    loop {
        for (id, timeout) in schedule.take_due(Instant::now()) {
            let check = id.clone();
            let spawned = thread::Builder::new()
                .name("health-check".into())
                .stack_size(256 << 10)
                .spawn(move || tell(Msg::Done(check.clone(), run_check(&check, timeout))));
            if let Err(e) = spawned {
                log::warn!("health: cannot start a check of container {}: {e}", short(&id));
                schedule.done(&id, Instant::now(), None);
            }
        }
        match next_msg(schedule.wait(Instant::now())) {
            Some(Msg::Watch(id, check)) => {
                let new = schedule.watch(id.clone(), check, Instant::now());
                if new {
                    log::info!("health: checking container {} every {:?}", short(&id), check.interval);
                    crate::boot::events::note(Note::HealthWatching, short(&id));
                }
            }
            // Stopped, paused or removed (the engine's answer to a check
            // says so too): its events say when to look again.
            Some(Msg::Forget(id) | Msg::Done(id, Err(None))) => {
                let watched = schedule.forget(&id);
                if watched {
                    log::info!("health: stopped checking container {}", short(&id));
                    crate::boot::events::note(Note::HealthStopped, short(&id));
                }
            }
            Some(Msg::ForgetAll) => schedule.forget_all(),
            Some(Msg::Done(id, result)) => {
                let failure = result.err().flatten();
                if schedule.done(&id, Instant::now(), failure.clone()) {
                    log::warn!("health: check of container {}: {}", short(&id), failure.unwrap_or_default());
                }
            }
            None => {}
        }
    }
}

/// Asks the engine to run one check of `id` and record it.
fn run_check(id: &str, timeout: Duration) -> Result<(), Option<String>> {
    // The libpod API is served under a version only.
    let path = format!("/v5.0.0/libpod/containers/{id}/healthcheck");
    match http::get(engine::SOCKET, &path, MAX_ANSWER, timeout.saturating_add(SLACK)) {
        Ok(_) => Ok(()),
        // Not found, or not running: the engine's word for a container gone.
        Err(http::Error::Status(404 | 409)) => Err(None),
        // Podman 5.4 lets a check run past its timeout, then records it as
        // failed and answers 500.
        Err(http::Error::Status(500)) => Err(Some("status 500 (a check past its timeout, or an engine error)".into())),
        Err(e) => Err(Some(e.to_string())),
    }
}

/// Follows the engine for as long as the init runs, restarting with
/// backoff when the event stream fails.
fn follow() {
    let mut last_error = String::new();
    let mut failures = 0;
    loop {
        while !engine::is_ready() {
            thread::sleep(Duration::from_millis(200));
        }
        let started = Instant::now();
        let result = follow_once();
        // The engine that ran them is gone or not followed: the list read
        // when it (or the next one) is ready starts the timers again.
        tell(Msg::ForgetAll);
        failures = backoff::next_failures(failures, started.elapsed());
        thread::sleep(backoff::delay(failures));
        if let Err(e) = result {
            // Said once per distinct problem. The engine ending is normal:
            // by now (after the backoff) the init has seen it exit.
            if e != last_error && engine::is_ready() {
                log::warn!("health: {e}; retrying");
            }
            last_error = e;
        }
    }
}

/// `what: e`, for the follower's errors (one formatting for all).
fn fail(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Reads the running containers, then follows events until the stream ends.
fn follow_once() -> Result<(), String> {
    // Events first, then the list: a container started between the two is
    // in both, and watching it twice is harmless.
    let mut events = http::Stream::open(engine::SOCKET, EVENTS_PATH, QUIET).map_err(|e| fail("cannot follow engine events", &e))?;
    let body = http::get(engine::SOCKET, CONTAINERS_PATH, MAX_LIST, Duration::from_secs(10)).map_err(|e| fail("cannot list containers", &e))?;
    for id in parse_list(&body).map_err(|e| fail("cannot read the container list", &e))? {
        look(id);
    }
    let mut lines = http::Lines::new(MAX_ANSWER);
    loop {
        match events.next() {
            Ok(Some(bytes)) => {
                for line in lines.push(&bytes).map_err(|e| fail("engine event", &e))? {
                    match parse_event(&line) {
                        Some((Change::Look, id)) => look(id),
                        Some((Change::Forget, id)) => tell(Msg::Forget(id)),
                        None => {}
                    }
                }
            }
            Ok(None) => return Err("the engine ended its event stream".into()),
            Err(e) if http::is_timeout(&e) && engine::is_ready() => {}
            Err(e) if http::is_timeout(&e) => return Ok(()),
            Err(e) => return Err(fail("engine event stream", &e)),
        }
    }
}

/// Reads the healthcheck of container `id` and tells the clock. A container
/// that cannot be read is skipped (said), not a reason to stop following.
fn look(id: String) {
    let msg = match http::get(engine::SOCKET, &format!("/v1.41/containers/{id}/json"), MAX_ANSWER, Duration::from_secs(10)) {
        Ok(body) => match parse_inspect(&body) {
            Ok(Some(check)) => Msg::Watch(id, check),
            Ok(None) => Msg::Forget(id),
            Err(e) => return log::warn!("health: cannot read the inspect of container {}: {e}", short(&id)),
        },
        // Removed since: its events say so too.
        Err(http::Error::Status(404)) => return,
        Err(e) => return log::warn!("health: cannot inspect container {}: {e}", short(&id)),
    };
    tell(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn lists_running_container_ids() {
        let list = format!(r#"[{{"Id":"{ID}","State":"running"}},{{"Id":"../x"}},{{"Id":""}},{{"Names":["/n"]}}]"#);
        assert_eq!(parse_list(list.as_bytes()).unwrap(), vec![ID.to_string()]);
        assert!(parse_list(b"[]").unwrap().is_empty());
        assert!(parse_list(b"{}").is_err());
        assert!(parse_list(b"[").is_err());
    }

    /// Trimmed from Podman 5.4's compat inspect of `docker run -d
    /// --health-cmd 'echo hi' --health-interval 1s --health-timeout 2s ...`.
    const INSPECT: &str = r#"{"Id":"a1","State":{"Status":"running","Running":true,"Health":{"Status":"starting","FailingStreak":0,"Log":null}},
      "Config":{"Healthcheck":{"Test":["CMD-SHELL","echo hi"],"Interval":1000000000,"Timeout":2000000000,"Retries":3}}}"#;

    #[test]
    fn reads_a_running_containers_healthcheck() {
        assert_eq!(parse_inspect(INSPECT.as_bytes()).unwrap(), Some(Check { interval: secs(1), timeout: secs(2) }));
        // Left out (or 0): Docker's 30 s.
        let defaults = r#"{"State":{"Status":"running"},"Config":{"Healthcheck":{"Test":["CMD","true"],"Interval":0}}}"#;
        assert_eq!(parse_inspect(defaults.as_bytes()).unwrap(), Some(Check { interval: secs(30), timeout: secs(30) }));
        // Not running, no healthcheck, or one that is switched off: nothing to run.
        let stopped = INSPECT.replace(r#""Status":"running""#, r#""Status":"exited""#);
        assert_eq!(parse_inspect(stopped.as_bytes()).unwrap(), None);
        assert_eq!(parse_inspect(br#"{"State":{"Status":"running"},"Config":{"Cmd":["sh"]}}"#).unwrap(), None);
        assert_eq!(parse_inspect(br#"{"State":{"Status":"running"},"Config":{"Healthcheck":{"Test":["NONE"]}}}"#).unwrap(), None);
        assert_eq!(parse_inspect(br#"{"State":{"Status":"running"},"Config":{"Healthcheck":{"Test":[]}}}"#).unwrap(), None);
        assert_eq!(parse_inspect(b"42").unwrap(), None);
        assert!(parse_inspect(b"{").is_err());
    }

    #[test]
    fn events_start_and_stop_timers() {
        let line = |action: &str, id: &str| format!(r#"{{"status":"{action}","id":"{id}","Type":"container","Action":"{action}","Actor":{{"ID":"{id}"}}}}"#);
        assert_eq!(parse_event(line("start", ID).as_bytes()), Some((Change::Look, ID.to_string())));
        assert_eq!(parse_event(line("unpause", ID).as_bytes()), Some((Change::Look, ID.to_string())));
        for action in ["die", "died", "stop", "pause", "remove"] {
            assert_eq!(parse_event(line(action, ID).as_bytes()), Some((Change::Forget, ID.to_string())), "{action}");
        }
        // A check's own exec and its result change nothing.
        assert_eq!(parse_event(line("health_status", ID).as_bytes()), None);
        assert_eq!(parse_event(line("exec_died", ID).as_bytes()), None);
        // The id from Actor when there is no top-level one; never a path.
        assert_eq!(parse_event(br#"{"Action":"start","Actor":{"ID":"abc"}}"#), Some((Change::Look, "abc".into())));
        assert_eq!(parse_event(line("start", "../../x").as_bytes()), None);
        assert_eq!(parse_event(b"not json"), None);
    }

    #[test]
    fn first_check_after_an_interval_then_one_after_each() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        assert_eq!(s.wait(t0), None, "nothing to check: wait for a message");
        assert!(s.watch("a".into(), Check { interval: secs(5), timeout: secs(2) }, t0));
        assert_eq!(s.wait(t0), Some(secs(5)));
        assert!(s.take_due(t0 + secs(4)).is_empty());
        assert_eq!(s.take_due(t0 + secs(5)), vec![("a".to_string(), secs(2))]);
        // While it runs, not due again and nothing to wait for.
        assert!(s.take_due(t0 + secs(60)).is_empty());
        assert_eq!(s.wait(t0 + secs(6)), None);
        // The next one an interval after this one ended.
        s.done("a", t0 + secs(8), None);
        assert_eq!(s.wait(t0 + secs(8)), Some(secs(5)));
        assert!(s.take_due(t0 + secs(12)).is_empty());
        assert_eq!(s.take_due(t0 + secs(13)).len(), 1);
        // Late wake-ups: due at once.
        s.done("a", t0 + secs(13), None);
        assert_eq!(s.wait(t0 + secs(100)), Some(Duration::ZERO));
    }

    #[test]
    fn restarts_and_stops() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let check = Check { interval: secs(10), timeout: secs(1) };
        s.watch("a".into(), check, t0);
        s.watch("b".into(), Check { interval: secs(3), timeout: secs(1) }, t0);
        assert_eq!(s.wait(t0), Some(secs(3)));
        // Seen starting again: the first check is an interval from now.
        assert!(!s.watch("a".into(), check, t0 + secs(9)));
        assert_eq!(s.take_due(t0 + secs(10)), vec![("b".to_string(), secs(1))]);
        assert!(s.take_due(t0 + secs(18)).is_empty());
        assert_eq!(s.take_due(t0 + secs(19)).len(), 1);
        // A restart while a check runs does not start a second one.
        s.watch("a".into(), check, t0 + secs(19));
        assert!(s.take_due(t0 + secs(40)).is_empty());
        // Stopped: no timer; a late result changes nothing.
        assert!(s.forget("a") && !s.forget("a"));
        s.done("a", t0 + secs(41), None);
        assert!(s.take_due(t0 + secs(100)).is_empty());
        s.done("b", t0 + secs(41), None);
        s.forget_all();
        assert_eq!(s.wait(t0 + secs(41)), None);
        // A lasting failure is news once; after a success, again.
        s.watch("c".into(), check, t0);
        let mut end = |failure: Option<&str>| {
            assert_eq!(s.take_due(t0 + secs(1000)).len(), 1);
            s.done("c", t0, failure.map(String::from))
        };
        assert!(end(Some("status 500")));
        assert!(!end(Some("status 500")));
        assert!(end(Some("response truncated")));
        assert!(!end(None));
        assert!(end(Some("status 500")));
        s.forget_all();
        assert_eq!(s.wait(t0 + secs(41)), None);
    }
}
