//! The `vsock-target` record in the state folder: how the running VM is
//! reached, written by `skiff run` once connections are let through, read
//! by `skiff logs`/`shell`/`status` in other terminals. Never a guess.

use std::io;
use std::path::PathBuf;

use crate::guest::{Addr, Target};
use crate::state::secret;
use crate::state::{file, StateDir};

/// Records how the running VM is reached (the secret stays in its own file).
pub fn record(state: &StateDir, target: &Target) -> io::Result<()> {
    file::write(&state.target_record(), encode_target(&target.addr).as_bytes())
}

/// How the VM started from this folder is reached, with its secret.
pub fn recorded(state: &StateDir) -> io::Result<Target> {
    let path = state.target_record();
    let text = file::read(&path, 4096).map_err(|e| {
        io::Error::other(format!(
            "no VM running from {}, or it is still starting ({e}); give --cid or --uds for a VM started elsewhere",
            state.path().display()
        ))
    })?;
    let addr = decode_target(&text).ok_or_else(|| io::Error::other(format!("{} is damaged: {text:?}", path.display())))?;
    let secret = match secret::read(&state.secret()) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(Target::with_secret(addr, secret))
}

/// One line: `cid N` or `hybrid PATH`.
pub fn encode_target(addr: &Addr) -> String {
    match addr {
        Addr::Cid(cid) => format!("cid {cid}\n"),
        Addr::Uds(path) => format!("hybrid {}\n", path.display()),
        Addr::Unix(path) => format!("unix {}\n", path.display()),
    }
}

pub fn decode_target(text: &str) -> Option<Addr> {
    let (kind, value) = text.trim_end_matches('\n').split_once(' ')?;
    match kind {
        "cid" => value.parse().ok().map(Addr::Cid),
        "hybrid" => Some(Addr::Uds(PathBuf::from(value))),
        "unix" => Some(Addr::Unix(PathBuf::from(value))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn target_record_round_trips_and_is_never_guessed() {
        for t in [Addr::Cid(7), Addr::Uds(PathBuf::from("/a b/vsock.sock")), Addr::Unix(PathBuf::from("/u"))] {
            let back = decode_target(&encode_target(&t)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{t:?}"));
        }
        assert!(decode_target("cid x").is_none());
        assert!(decode_target("").is_none());
        let dir = std::env::temp_dir().join(format!("skiff-record-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = StateDir::create(&dir).unwrap();
        assert!(recorded(&s).is_err(), "no record → no target, not CID 3");
        record(&s, &Target::new(Addr::Cid(9))).unwrap();
        assert!(matches!(recorded(&s).unwrap(), Target { addr: Addr::Cid(9), secret: None, .. }));
        let made = secret::renew(&s.secret()).unwrap();
        assert_eq!(recorded(&s).unwrap().secret, Some(made), "the secret comes with the address");
        s.clear_runtime();
        assert!(recorded(&s).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
