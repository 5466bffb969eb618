//! The VM's secret on the host: 32 random bytes as 64 hex digits in a
//! private file (`DIR/secret`, or any file given with `--secret-file`).
//! Every connection to the guest presents it (`skiff_proto::auth`), so a
//! local user who can reach the guest's vsock (kernel vhost-vsock lets any
//! user connect to any CID) still gets nothing without this file. `skiff
//! run` makes a new one for each boot.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use skiff_proto::auth::{Secret, SECRET_LEN};

use crate::state::file;

/// Reads a secret file: 64 hex digits (a trailing newline is fine).
pub fn read(path: &Path) -> io::Result<Secret> {
    let text = file::read(path, 4096)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read the secret file {}: {e}", path.display())))?;
    Secret::from_hex(&text).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} does not hold 64 hex digits (make one with `openssl rand -hex 32`)", path.display()))
    })
}

/// A new secret for this boot, written to `path` 0600 (replacing the
/// last boot's, so a secret that leaked once is good for one boot at most).
pub fn renew(path: &Path) -> io::Result<Secret> {
    let secret = generate()?;
    write(path, &secret)?;
    Ok(secret)
}

/// Writes `secret` to `path`, 0600, renamed into place.
pub fn write(path: &Path, secret: &Secret) -> io::Result<()> {
    file::write(path, format!("{}\n", secret.to_hex()).as_bytes())
}

/// 32 bytes from the kernel's random source.
pub fn generate() -> io::Result<Secret> {
    let mut bytes = [0u8; SECRET_LEN];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(Secret::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-secret-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn each_boot_gets_a_new_private_secret() {
        let dir = scratch("renew");
        let path = dir.join("secret");
        fs::write(&path, "not hex\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let first = renew(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read(&path).unwrap(), first);
        let second = renew(&path).unwrap();
        assert_ne!(second, first, "a secret is not reused by the next boot");
        assert_eq!(read(&path).unwrap(), second);
        assert!(read(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
