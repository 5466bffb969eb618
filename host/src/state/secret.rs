//! The VM's secret on the host: 32 random bytes as 64 hex digits in a
//! private file (`DIR/secret`, or any file given with `--secret-file`).
//! Every connection to the guest presents it (`skiff_proto::auth`), so a
//! local user who can reach the guest's vsock (kernel vhost-vsock lets any
//! user connect to any CID) still gets nothing without this file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use skiff_proto::auth::{Secret, SECRET_LEN};

use rustix::process::geteuid;

/// Reads a secret file: 64 hex digits (a trailing newline is fine).
pub fn read(path: &Path) -> io::Result<Secret> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read the secret file {}: {e}", path.display())))?;
    Secret::from_hex(&text).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} does not hold 64 hex digits (make one with `openssl rand -hex 32`)", path.display()))
    })
}

/// The secret in `path` if it is valid, ours and private; else a new one,
/// written there 0600 (a file others could read may have leaked).
pub fn ensure(path: &Path) -> io::Result<Secret> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        let private = meta.is_file() && meta.mode() & 0o077 == 0 && meta.uid() == geteuid().as_raw();
        if private {
            if let Ok(secret) = read(path) {
                return Ok(secret);
            }
        }
        fs::remove_file(path)?;
    }
    let secret = generate()?;
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(format!("{}\n", secret.to_hex()).as_bytes())?;
    Ok(secret)
}

/// 32 bytes from the kernel's random source.
fn generate() -> io::Result<Secret> {
    let mut bytes = [0u8; SECRET_LEN];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(Secret::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-secret-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn made_private_then_reused() {
        let dir = scratch("reuse");
        let path = dir.join("secret");
        let first = ensure(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read(&path).unwrap(), first);
        assert_eq!(ensure(&path).unwrap(), first, "a valid private secret is kept");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_or_readable_secrets_are_replaced() {
        let dir = scratch("replace");
        let path = dir.join("secret");
        fs::write(&path, "not hex\n").unwrap();
        let new = ensure(&path).unwrap();
        assert_eq!(read(&path).unwrap(), new);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let newer = ensure(&path).unwrap();
        assert_ne!(newer, new, "a secret others could read is not reused");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(read(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
