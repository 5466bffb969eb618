//! The docker context `skiff`: the same files `docker context create`
//! writes (`$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json`),
//! created or updated at start, never made the current context.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::state::file;

pub const NAME: &str = "skiff";

/// `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> PathBuf {
    env::var_os("DOCKER_CONFIG").map(PathBuf::from).unwrap_or_else(|| {
        env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".docker")
    })
}

/// The folder docker keeps a context's metadata in.
pub fn meta_dir(config: &Path, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    config.join("contexts").join("meta").join(hex)
}

/// docker's meta.json for a context whose engine is at `host`.
pub fn meta_json(name: &str, host: &str) -> String {
    format!(
        "{{\"Name\":{},\"Metadata\":{{\"Description\":\"Skiff VM\"}},\"Endpoints\":{{\"docker\":{{\"Host\":{},\"SkipTLSVerify\":false}}}}}}",
        json_string(name),
        json_string(host)
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Creates or updates the context for the engine socket `sock`.
pub fn ensure(config: &Path, sock: &Path) -> io::Result<PathBuf> {
    let dir = meta_dir(config, NAME);
    fs::create_dir_all(&dir)?;
    let meta = dir.join("meta.json");
    // The docker config lies in the shared home: written as in the state folder.
    file::write(&meta, meta_json(NAME, &format!("unix://{}", sock.display())).as_bytes())?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_folder_is_the_sha256_of_the_name() {
        // `docker context create skiff` writes to this folder.
        let d = meta_dir(Path::new("/c"), "skiff");
        assert!(d.starts_with("/c/contexts/meta"));
        let hex = d.file_name().unwrap().to_str().unwrap();
        assert_eq!(hex.len(), 64);
        assert_eq!(meta_dir(Path::new("/c"), "abc").file_name().unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn meta_json_escapes() {
        let j = meta_json("skiff", "unix:///a\"b/docker.sock");
        assert!(j.contains("\"Host\":\"unix:///a\\\"b/docker.sock\""), "{j}");
        assert!(j.starts_with("{\"Name\":\"skiff\""));
    }
}
