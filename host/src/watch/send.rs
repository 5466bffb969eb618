//! Names host edits to the guest (`SKIFF-CONTROL/1 touch`, one connection
//! kept open): what `watch` collected, a short window at a time, one batch
//! in flight (a guest that is slow to go through one lets the next grow
//! and coalesce). A batch the guest did not confirm is put back, so the
//! last change is never lost to a reconnection. Idle, nothing is sent and
//! this thread waits on a condition variable, with no timer.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use skiff_proto::control::{self, Request, DEFAULT_CONTROL_PORT};
use skiff_proto::touch::{self, DONE};

use crate::guest::backoff::Backoff;
use crate::guest::{Conn, Target};
use crate::threads;
use super::coalesce::stamp;
use super::Changes;

/// How long changes gather before they are sent.
const WINDOW: Duration = Duration::from_millis(50);
/// The same after a batch that had to be widened (a burst goes on).
const BUSY_WINDOW: Duration = Duration::from_millis(250);
/// How long the guest may take to go through a batch.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub fn spawn(changes: Arc<Changes>, target: Target) -> io::Result<()> {
    threads::spawn("touch", move || send_all(&changes, &target))?;
    Ok(())
}

fn send_all(changes: &Changes, target: &Target) {
    let (mut conn, mut window, mut backoff, mut told) = (None, WINDOW, Backoff::new(BACKOFF_MIN, BACKOFF_MAX), false);
    loop {
        {
            let mut st = changes.lock();
            while st.0.is_empty() {
                st = changes.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        thread::sleep(window);
        let (batch, widened) = changes.lock().0.take();
        window = if widened { BUSY_WINDOW } else { WINDOW };
        let batch = settle(changes, batch);
        let paths: Vec<String> = batch.iter().map(|(g, _)| g.clone()).collect();
        match send(&mut conn, target, &paths) {
            Ok(()) => {
                backoff.reset();
                told = false;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return eprintln!("skiff: watch: the guest does not take host edits ({e}; an older ISO?): file watchers in containers do not see them");
            }
            Err(e) => {
                conn = None;
                if !told && !target.link.paused_within(ANSWER_LIMIT) {
                    eprintln!("skiff: watch: cannot name host edits to the guest ({e}); retrying");
                    told = true;
                }
                let mut st = changes.lock();
                for (g, h) in batch {
                    st.0.add(g, h);
                }
                drop(st);
                backoff.wait();
            }
        }
    }
}

/// Names a path that is gone by its folder (the share itself at most), and
/// records the stamp of each file named, for echo detection.
fn settle(changes: &Changes, batch: Vec<(String, PathBuf)>) -> Vec<(String, PathBuf)> {
    let mut out = std::collections::BTreeMap::new();
    for (mut g, mut h) in batch {
        let mut st = changes.lock();
        loop {
            match std::fs::symlink_metadata(&h) {
                Ok(m) if m.is_file() => st.1.record(h.clone(), stamp(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (pg, ph) = st.0.parent(g.clone(), h.clone());
                    if pg != g {
                        (g, h) = (pg, ph);
                        continue;
                    }
                }
                _ => {}
            }
            break;
        }
        out.insert(g, h);
    }
    out.into_iter().collect()
}

/// Sends one batch and waits for the guest to have gone through it.
fn send(conn: &mut Option<Conn>, target: &Target, paths: &[String]) -> io::Result<()> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(open(target)?),
    };
    c.write_all(touch::encode(paths).as_bytes())?;
    loop {
        match skiff_proto::read_line(c, 1024) {
            Ok(line) if line == DONE[..DONE.len() - 1] => return Ok(()),
            Ok(line) => {
                let text = String::from_utf8_lossy(&line);
                let reason = skiff_proto::auth::parse_refusal(format!("{text}\n").as_bytes()).unwrap_or_else(|| text.into_owned());
                return Err(io::Error::new(io::ErrorKind::InvalidData, reason));
            }
            // A stopped VM goes through nothing (see `Target::set_paused`).
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) && target.link.paused_within(ANSWER_LIMIT) => {}
            Err(e) => return Err(e),
        }
    }
}

fn open(target: &Target) -> io::Result<Conn> {
    let mut c = target.connect(DEFAULT_CONTROL_PORT)?;
    c.set_read_timeout(Some(ANSWER_LIMIT))?;
    c.write_all(control::encode(&Request::Touch).as_bytes())?;
    Ok(c)
}
