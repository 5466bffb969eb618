//! The settings `skiff run` hands the guest out of band, as the QEMU fw_cfg
//! item [`FW_CFG_NAME`] (containers can read the kernel command line, not
//! this item). One struct, written by [`render`] on the host and read by
//! [`parse`] in the guest: the only code that writes or reads the item.
//! The text is a TOML fragment with config.toml's own keys (`secret`,
//! `[[shares]]`), so the init reads those keys in config.toml and cidata
//! with the same [`read_key`].

use std::fmt::Write as _;

use toml::de::{DeTable, DeValue};

use crate::auth::Secret;
use crate::shares::{Invalid, Share};

/// Written once: the name and the guest's path are built from it.
macro_rules! item_name {
    () => {
        "opt/skiff/config"
    };
}

/// The fw_cfg item's name (QEMU's `-fw_cfg name=`).
pub const FW_CFG_NAME: &str = item_name!();
/// Where the guest kernel's fw_cfg driver shows the item.
pub const FW_CFG_SYSFS: &str = concat!("/sys/firmware/qemu_fw_cfg/by_name/", item_name!(), "/raw");

/// Every setting the host gives the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestSettings {
    /// The VM's boot secret (`secret`); `Debug` does not show it.
    pub secret: Option<Secret>,
    /// Host folders to mount at the same path (`[[shares]]`); `None` leaves
    /// the guest's own config to decide.
    pub shares: Option<Vec<Share>>,
}

/// What in a well-formed document is not a setting; the rest still applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `secret` is not 64 hex digits in a string (never repeated).
    Secret,
    /// `shares` is not an array (holds the TOML type found).
    SharesType(&'static str),
    /// One share entry (from 1) is refused; the others apply.
    Share(usize, Invalid),
    /// A key the host never writes.
    UnknownKey(String),
}

/// The document as text: plain keys first, as TOML requires.
pub fn render(s: &GuestSettings) -> String {
    // Destructured, so a new field does not compile until it is written.
    let GuestSettings { secret, shares } = s;
    let mut out = format!("# Written by `skiff run` for the guest (QEMU fw_cfg {FW_CFG_NAME}).\n");
    if let Some(secret) = secret {
        let _ = writeln!(out, "secret = {}", quoted(&secret.to_hex()));
    }
    match shares.as_deref() {
        Some([]) => out.push_str("shares = []\n"),
        Some(list) => {
            for Share { tag, path, fs } in list {
                let _ = write!(out, "[[shares]]\ntag = {}\npath = {}\n", quoted(tag), quoted(path));
                if let Some(fs) = fs {
                    let _ = writeln!(out, "fs = {}", quoted(fs.name()));
                }
            }
        }
        None => {}
    }
    out
}

/// Reads the item; `problem` hears of each value that does not apply.
/// `Err`: not TOML (why, without quoting the text: it holds the secret);
/// nothing in it applies.
pub fn parse(bytes: &[u8], problem: &mut dyn FnMut(Problem)) -> Result<GuestSettings, String> {
    let table = read_toml(bytes)?;
    let mut settings = GuestSettings::default();
    for (key, value) in table {
        let key = key.into_inner();
        if !read_key(&mut settings, &key, value.into_inner(), problem) {
            problem(Problem::UnknownKey(key.into_owned()));
        }
    }
    Ok(settings)
}

/// Reads one key of a document into `s`; false when it is not one of the
/// host's settings. A bad `secret` leaves it `None` and says so.
pub fn read_key(s: &mut GuestSettings, key: &str, value: DeValue<'_>, problem: &mut dyn FnMut(Problem)) -> bool {
    match key {
        "secret" => {
            s.secret = match value {
                DeValue::String(v) => Secret::from_hex(&v).ok(),
                _ => None,
            };
            if s.secret.is_none() {
                problem(Problem::Secret);
            }
        }
        "shares" => match value {
            DeValue::Array(items) => {
                let mut good = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match share(item.into_inner()) {
                        Ok(share) => good.push(share),
                        Err(why) => problem(Problem::Share(i + 1, why)),
                    }
                }
                s.shares = Some(good);
            }
            other => problem(Problem::SharesType(other.type_str())),
        },
        _ => return false,
    }
    true
}

/// A TOML document's tree. `Err`: where and why it is not TOML (`line N:
/// ...` or `byte N: not UTF-8 text`), never the text itself.
pub fn read_toml(bytes: &[u8]) -> Result<DeTable<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("byte {}: not UTF-8 text", e.valid_up_to()))?;
    DeTable::parse(text).map(|t| t.into_inner()).map_err(|e| not_toml(text, e.span().map(|r| r.start), e.message()))
}

/// "line N: message" for a TOML error at byte `at` of `text` (line 0: unknown).
pub fn not_toml(text: &str, at: Option<usize>, message: &str) -> String {
    let line = at.map_or(0, |at| text.as_bytes()[..at.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1);
    format!("line {line}: {}", message.replace('\n', " "))
}

/// One share entry: a table of `tag`, `path` and optional `fs` strings.
pub fn share(v: DeValue<'_>) -> Result<Share, Invalid> {
    let DeValue::Table(t) = v else {
        return Err(Invalid::NotTable(v.type_str()));
    };
    let (mut tag, mut path, mut fs) = (None, None, None);
    for (key, value) in t {
        let (key, value) = (key.into_inner(), value.into_inner());
        let (name, slot) = match &*key {
            "tag" => ("tag", &mut tag),
            "path" => ("path", &mut path),
            "fs" => ("fs", &mut fs),
            _ => return Err(Invalid::UnknownKey(key.into_owned())),
        };
        match value {
            DeValue::String(s) => *slot = Some(s.into_owned()),
            other => return Err(Invalid::NotString(name, other.type_str())),
        }
    }
    Share::new(tag.ok_or(Invalid::Missing("tag"))?, path.ok_or(Invalid::Missing("path"))?, fs.as_deref())
}

/// A TOML basic string: `"` and `\` escaped, control characters as `\uXXXX`.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(s, "\\u{:04X}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shares::{PathError, Transport};

    fn share_of(tag: &str, path: &str, fs: Option<Transport>) -> Share {
        Share { tag: tag.into(), path: path.into(), fs }
    }

    /// `parse` with the problems collected.
    fn parse_all(bytes: &[u8]) -> Result<(GuestSettings, Vec<Problem>), String> {
        let mut problems = Vec::new();
        parse(bytes, &mut |p| problems.push(p)).map(|s| (s, problems))
    }

    #[test]
    fn the_guest_path_ends_with_the_name() {
        assert_eq!(FW_CFG_SYSFS, format!("/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_NAME}/raw"));
    }

    fn secret() -> Secret {
        Secret::from_hex(&"0123456789abcdef".repeat(4)).unwrap()
    }

    #[test]
    fn every_field_round_trips_with_awkward_paths() {
        let shares = vec![
            share_of("skiff0", r#"/home/a "b"\c"#, Some(Transport::Virtiofs)),
            share_of("skiff1", "/home/ü/日本語/\u{FFFD}/\u{1F600}", Some(Transport::NineP)),
            share_of("skiff2", "/srv/a,b#c = d [x] 'q' \"\"\"", None),
            share_of("a.b-c_d", r"/home/\\server\share\u0041\n", None),
            share_of(&"t".repeat(36), "/opt/x", None),
        ];
        for settings in [
            GuestSettings { secret: Some(secret()), shares: Some(shares.clone()) },
            GuestSettings { secret: None, shares: Some(shares) },
            GuestSettings { secret: Some(secret()), shares: Some(vec![]) },
            GuestSettings { secret: Some(secret()), shares: None },
            GuestSettings::default(),
        ] {
            let text = render(&settings);
            assert_eq!(parse_all(text.as_bytes()), Ok((settings.clone(), vec![])), "{text}");
        }
    }

    #[test]
    fn newlines_and_quotes_cannot_inject_keys() {
        // A path the host would refuse: it must stay one (refused) value.
        let evil = "/home/x\"\nsecret = \"00\"\n[[shares]]\ntag = \"y\"\npath = \"/home/y";
        let settings = GuestSettings { secret: Some(secret()), shares: Some(vec![share_of("skiff0", evil, None)]) };
        let text = render(&settings);
        assert_eq!(text.lines().count(), 5, "{text}");
        let (back, problems) = parse_all(text.as_bytes()).unwrap();
        assert_eq!(back.secret, Some(secret()));
        assert_eq!(back.shares, Some(vec![]));
        assert_eq!(problems, [Problem::Share(1, Invalid::Path(evil.into(), PathError::NotNormal))]);
        assert_eq!(quoted("a\tb\u{7f}\r"), r#""a\u0009b\u007F\u000D""#);
    }

    #[test]
    fn bad_values_are_named_and_the_rest_applies() {
        let text = "secret = \"abc\"\nhostname = \"h\"\n[[shares]]\ntag = \"a\"\npath = \"/etc\"\n[[shares]]\ntag = \"b\"\npath = \"/home/b\"\n";
        let (s, p) = parse_all(text.as_bytes()).unwrap();
        assert_eq!(s, GuestSettings { secret: None, shares: Some(vec![share_of("b", "/home/b", None)]) });
        assert_eq!(p, [
            Problem::UnknownKey("hostname".into()),
            Problem::Secret,
            Problem::Share(1, Invalid::Path("/etc".into(), PathError::System("/etc"))),
        ]);
        let (s, p) = parse_all(b"secret = 7\nshares = \"x\"\n").unwrap();
        assert_eq!(s, GuestSettings::default());
        assert_eq!(p, [Problem::Secret, Problem::SharesType("string")]);
    }

    #[test]
    fn not_toml_says_where_without_the_text() {
        let hex = "0123456789abcdef".repeat(4);
        let why = parse_all(format!("secret = \"{hex}\nx = 1\n").as_bytes()).unwrap_err();
        assert!(why.starts_with("line 1: ") && !why.contains(&hex), "{why}");
        assert_eq!(parse_all(b"a = 1\n\xff").unwrap_err(), "byte 6: not UTF-8 text");
    }

    fn entry(text: &str) -> DeValue<'_> {
        let t = DeTable::parse(text).unwrap().into_inner();
        t["shares"].get_ref().as_array().unwrap()[0].get_ref().clone()
    }

    #[test]
    fn good_share_entries() {
        let s = share(entry("[[shares]]\ntag = \"skiff0\"\npath = \"/home/u\"\nfs = \"virtiofs\"")).unwrap();
        assert_eq!(s, share_of("skiff0", "/home/u", Some(Transport::Virtiofs)));
        assert_eq!(share(entry("[[shares]]\ntag = \"home\"\npath = \"/Users/me\"")).unwrap().fs, None);
    }

    #[test]
    fn bad_share_entries_say_why() {
        let path = |p: &str, e| Invalid::Path(p.into(), e);
        for (text, why) in [
            ("tag = \"a\"\npath = \"/etc\"", path("/etc", PathError::System("/etc"))),
            ("tag = \"a\"\npath = \"/\"", path("/", PathError::System("/"))),
            ("tag = \"a\"\npath = \"/usr/local/x\"", path("/usr/local/x", PathError::System("/usr"))),
            ("tag = \"a\"\npath = \"home/u\"", path("home/u", PathError::Relative)),
            ("tag = \"a\"\npath = \"/home/../etc\"", path("/home/../etc", PathError::NotNormal)),
            ("tag = \"a b\"\npath = \"/home/u\"", Invalid::Tag("a b".into())),
            ("path = \"/home/u\"", Invalid::Missing("tag")),
            ("tag = \"a\"", Invalid::Missing("path")),
            ("tag = 1\npath = \"/home/u\"", Invalid::NotString("tag", "integer")),
            ("tag = \"a\"\npath = \"/home/u\"\nfs = \"nfs\"", Invalid::Fs("nfs".into())),
            ("tag = \"a\"\npath = \"/home/u\"\nmode = \"ro\"", Invalid::UnknownKey("mode".into())),
        ] {
            assert_eq!(share(entry(&format!("[[shares]]\n{text}"))), Err(why), "{text}");
        }
        assert_eq!(share(DeValue::String("x".into())), Err(Invalid::NotTable("string")));
    }
}
