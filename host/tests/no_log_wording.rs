//! The host CLI and the bench decide from the guest's typed events, never
//! from the wording of the init's log: no `skiff: <component>:` prefix the
//! init logs under appears in their source, but in the host's own messages
//! (which share the `skiff: ` prefix).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The components the init logs under (`log::info!("engine: ready ...")`
/// gives `engine`), read from its source, and its two prefix-less lines.
fn init_wordings() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("init/src"), &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for level in ["info", "warn", "error"] {
            for (_, rest) in text.match_indices(&format!("log::{level}!(\"")).map(|(i, m)| ((), &text[i + m.len()..])) {
                let word: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
                if !word.is_empty() && rest[word.len()..].starts_with(':') {
                    found.insert(format!("skiff: {word}:"));
                }
            }
        }
    }
    found.insert("skiff: init started".into());
    found.insert("skiff: init running".into());
    found
}

#[test]
fn host_and_bench_decisions_read_no_init_log_wording() {
    let wordings = init_wordings();
    for component in ["engine", "shutdown", "disk", "network", "medium"] {
        assert!(wordings.contains(&format!("skiff: {component}:")), "the scan of init/src missed {component}: {wordings:?}");
    }
    let mut files = Vec::new();
    rust_files(&root().join("host/src"), &mut files);
    rust_files(&root().join("tests/src/bench"), &mut files);
    let mut hits = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for w in &wordings {
                // The host's own messages share the `skiff: ` prefix (`skiff: ports: ...`).
                let says = ["eprintln!(", "println!(", "eprint!("].iter().any(|m| line.contains(m));
                if line.contains(w.as_str()) && !says {
                    hits.push(format!("{}:{}: {w:?}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(hits.is_empty(), "decisions read the init's log wording:\n{}", hits.join("\n"));
}
