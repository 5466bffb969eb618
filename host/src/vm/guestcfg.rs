//! Settings the host CLI hands to the guest out of band: a config.toml
//! fragment written into the private state folder and given to QEMU as the
//! fw_cfg item `opt/skiff/config` (the guest reads it as a config source
//! after cidata and before the kernel command line). Out of band because
//! containers can read the kernel command line. Another hypervisor's user
//! puts the same keys in config.toml or a cidata volume instead.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::state::{file, StateDir};

/// The fw_cfg item's name (the guest's `fwcfg::CONFIG` path ends with it).
pub const FW_CFG_NAME: &str = "opt/skiff/config";

/// A TOML fragment, built key by key.
#[derive(Debug, Default, Clone)]
pub struct GuestConfig {
    keys: Vec<String>,
    tables: Vec<String>,
}

impl GuestConfig {
    /// `key = "value"`.
    pub fn set(&mut self, key: &str, value: &str) {
        self.keys.push(format!("{key} = {}\n", toml_string(value)));
    }

    /// One `[[name]]` entry of an array of tables, with string values.
    pub fn push_table(&mut self, name: &str, pairs: &[(&str, &str)]) {
        let mut t = format!("[[{name}]]\n");
        for (k, v) in pairs {
            t += &format!("{k} = {}\n", toml_string(v));
        }
        self.tables.push(t);
    }

    /// The document: plain keys first (TOML puts them before any table).
    pub fn render(&self) -> String {
        let mut s = String::from("# Written by `skiff run` for the guest (QEMU fw_cfg opt/skiff/config).\n");
        s.extend(self.keys.iter().cloned());
        s.extend(self.tables.iter().cloned());
        s
    }

    /// Writes the fragment into the state folder (private by umask) and
    /// returns QEMU's `-fw_cfg` value.
    pub fn write(&self, state: &StateDir) -> io::Result<String> {
        let path: PathBuf = state.path().join("guest-config.toml");
        // Made anew, so it gets this process's private mode (it holds the secret).
        let _ = fs::remove_file(&path);
        file::write(&path, self.render().as_bytes())?;
        Ok(format!("name={FW_CFG_NAME},file={}", path.display().to_string().replace(',', ",,")))
    }
}

/// A TOML basic string.
fn toml_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => s.push_str(&format!("\\u{:04X}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_before_tables_and_strings_are_escaped() {
        let mut c = GuestConfig::default();
        c.push_table("shares", &[("path", "/home/a \"b\"\\c")]);
        c.set("hostname", "x\ny");
        let text = c.render();
        let key = text.find("hostname").unwrap();
        let table = text.find("[[shares]]").unwrap();
        assert!(key < table, "{text}");
        assert!(text.contains(r#"hostname = "x\u000Ay""#), "{text}");
        assert!(text.contains(r#"path = "/home/a \"b\"\\c""#), "{text}");
    }
}
