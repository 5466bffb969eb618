//! The host's records in the state folder (hostile: see `state::file`)
//! and the /proc entries it checks them against: the `vsock-target` line,
//! the pid files, a process's stat (its name, set by the process, may
//! hold anything) and command line. A record read back is written the
//! same way; a pid is positive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff::guest::record;
use skiff::state::pidfile::{self, ProcId};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some(addr) = record::decode_target(&text) {
        let line = record::encode_target(&addr);
        assert!(line.ends_with('\n'));
        let back = record::decode_target(&line).unwrap_or_else(|| panic!("{line:?} does not read back"));
        assert_eq!(format!("{back:?}"), format!("{addr:?}"));
    }

    if let Some(id) = ProcId::decode(&text) {
        assert!(id.pid > 0);
        assert_eq!(ProcId::decode(&id.encode()), Some(id));
    }

    let exited = pidfile::has_exited(&text);
    let start = pidfile::stat_start_time(&text);
    // Whatever the name holds, the fields after it decide.
    let stat = format!("42 ({text}) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10");
    assert!(!pidfile::has_exited(&stat) && pidfile::stat_start_time(&stat) == Some(98765), "{stat:?}");
    let _ = (exited, start, pidfile::is_skiff_run(data));
});
