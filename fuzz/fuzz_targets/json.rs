//! The engine's JSON as the init reads it: the container list and inspect
//! (published ports, healthchecks) and event lines. The init's own reader
//! is checked against serde_json: the same texts are JSON, and the values
//! it finds (members, items, strings, integers) are serde_json's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use skiff_init::services::json::{self, Json};
use skiff_init::services::{healthchecks, ports::discover};
use skiff_proto::ports::{self, Update};

/// Checks that `ours` holds the value serde_json read.
fn same(ours: Json<'_>, theirs: &Value) {
    match theirs {
        Value::Object(map) => {
            assert!(!ours.is_array());
            for (key, value) in map {
                let found = ours.get(key).unwrap_or_else(|| panic!("member {key:?} not found"));
                same(found, value);
            }
            // Duplicate keys appear once in serde_json's map.
            let mut keys: Vec<String> = ours.members().map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), map.len(), "members");
        }
        Value::Array(items) => {
            assert!(ours.is_array());
            assert_eq!(ours.items().count(), items.len(), "items");
            for (o, t) in ours.items().zip(items) {
                same(o, t);
            }
        }
        Value::String(s) => assert_eq!(ours.as_str().as_deref(), Some(s.as_str())),
        Value::Number(n) => {
            assert_eq!(ours.as_str(), None);
            if let Some(mine) = ours.as_u64() {
                assert_eq!(n.as_u64(), Some(mine), "integer");
            }
        }
        Value::Bool(_) | Value::Null => {
            assert_eq!((ours.as_str(), ours.as_u64(), ours.is_array()), (None, None, false));
            assert_eq!(ours.members().count() + ours.items().count(), 0);
        }
    }
}

/// Whether the text has a `\uD800`-`\uDFFF` escape (serde_json refuses one
/// left unpaired, with one of several messages).
fn has_surrogate_escape(data: &[u8]) -> bool {
    data.windows(4).any(|w| w[..2] == *b"\\u" && w[2].eq_ignore_ascii_case(&b'd') && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse(data);
    let theirs = serde_json::from_slice::<Value>(data);
    match (&ours, &theirs) {
        (Ok(o), Ok(t)) => same(*o, t),
        (Err(_), Err(_)) => {}
        // Nesting limits differ by a level; serde_json refuses lone
        // surrogate escapes and numbers beyond f64, which the init's
        // grammar check lets pass (its `as_str` refuses the former, and
        // it reads integers only).
        (Err(json::Error::TooDeep(_)), Ok(_)) => {}
        (Ok(_), Err(e)) if has_surrogate_escape(data) || ["recursion limit", "out of range"].iter().any(|w| e.to_string().contains(w)) => {}
        (o, t) => panic!("the init says {o:?}, serde_json says {t:?}"),
    }

    if let Ok(ids) = discover::parse_list(data) {
        assert!(ids.iter().all(|id| ours.unwrap().items().any(|c| c.get("Id").and_then(Json::as_str).as_ref() == Some(id))));
    }
    if let Ok(table) = discover::parse_inspect(data) {
        for p in table {
            assert_ne!(p.host_port, 0);
            let line = ports::encode(&Update::Add(p.clone()));
            assert_eq!(ports::parse(line.trim_end().as_bytes()), Ok(Update::Add(p)), "{line:?}");
        }
    }
    let _ = discover::may_change_ports(discover::event_action(data).as_deref());
    let hex_id = |id: &str| (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    if let Ok(ids) = healthchecks::parse_list(data) {
        assert!(ids.iter().all(|id| hex_id(id)), "{ids:?}");
    }
    if let Ok(Some(check)) = healthchecks::parse_inspect(data) {
        assert!(!check.interval.is_zero() && !check.timeout.is_zero());
    }
    if let Some((_, id)) = healthchecks::parse_event(data) {
        assert!(hex_id(&id), "{id:?}");
    }
});
