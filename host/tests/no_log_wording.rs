//! The host CLI, the bench and the QEMU suites decide from the guest's
//! typed events, never from the wording of the init's log: no `skiff:
//! <component>:` prefix the init logs under appears in the host's or the
//! bench's source, but in the host's own messages (which share the `skiff: `
//! prefix); and no phrase of the init's messages is what a suite looks for
//! in text (`contains("...")`), so the init's words can change freely.

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

/// The Rust files under the workspace's folders `dirs`, with their text.
fn sources(dirs: &[&str]) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root().join(dir), &mut files);
    }
    files.into_iter().map(|f| {
        let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        (f, text)
    }).collect()
}

/// The components the init logs under (`log::info!("engine: ready ...")`
/// gives `engine`), read from its source, and its two prefix-less lines.
fn init_wordings() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (_, text) in sources(&["init/src"]) {
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
    // The scan found the init's components (named by no word here, so they may be renamed too).
    assert!(wordings.len() >= 10, "the scan of init/src found too few log components: {wordings:?}");
    let mut hits = Vec::new();
    for (file, text) in sources(&["host/src", "tests/src/bench"]) {
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

/// The string literals of `text` (plain `"..."` ones, escapes kept as written).
fn literals(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('"') {
        let body = &rest[start + 1..];
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                '\n' => break,
                _ => escaped = false,
            }
        }
        match end {
            Some(i) => {
                out.push(&body[..i]);
                rest = &body[i + 1..];
            }
            None => rest = body,
        }
    }
    out
}

/// The phrases of the init's messages: each literal of its source (but its
/// unit tests) cut at `{...}` placeholders, where a piece has words (a space)
/// and 12 characters or more, so data (`/dev/vda`, `skiff-data`) is no phrase.
fn init_phrases() -> BTreeSet<String> {
    let mut phrases = BTreeSet::new();
    for (_, text) in sources(&["init/src"]) {
        phrases_of(text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default(), &mut phrases);
    }
    phrases
}

/// Adds the phrases of the literals of `code` to `phrases`.
fn phrases_of(code: &str, phrases: &mut BTreeSet<String>) {
    for lit in literals(code) {
        let mut piece = String::new();
        let mut depth = 0;
        for c in lit.chars().chain(['{']) {
            match c {
                '{' => {
                    let p = piece.trim_matches(|c: char| " ;:,.()".contains(c));
                    if depth == 0 && p.len() >= 12 && p.contains(' ') {
                        phrases.insert(p.to_string());
                    }
                    piece.clear();
                    depth += 1;
                }
                '}' => depth = 0,
                c if depth == 0 => piece.push(c),
                _ => {}
            }
        }
    }
}

#[test]
fn phrases_are_the_words_between_placeholders() {
    let mut found = BTreeSet::new();
    phrases_of(r#"log::info!("net: {} gave {} back to the server {server:?}; {n} tries", a, b); f("short one", "/dev/vda1")"#, &mut found);
    // Short pieces ("net", "gave", "tries", "short one") and data ("/dev/vda1") are no phrases.
    assert_eq!(found, BTreeSet::from(["back to the server".to_string()]));
}

/// Words the guest sends to a client as its answer (a protocol reply, read
/// by the client that asked), not console wording.
const ANSWERS: &[&str] = &["too many connections", "403 Forbidden", "wrong secret", "not a published port"];

#[test]
fn qemu_suites_look_for_no_init_log_wording() {
    let phrases = init_phrases();
    // And its lines as `skiff logs` shows them (`skiff: disk: `).
    let components: Vec<String> = init_wordings().iter().filter_map(|w| w.strip_prefix("skiff: ")).map(|c| format!("{c} ")).collect();
    // The scan read the init's messages (the words are named nowhere here, so they may change).
    assert!(phrases.len() >= 100, "the scan of init/src found too few phrases: {phrases:?}");
    let mut hits = Vec::new();
    for (file, text) in sources(&["tests/tests", "tests/src"]) {
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("contains(") {
                let Some(sought) = literals(&line[i..]).into_iter().next() else { continue };
                if let Some(p) = phrases.iter().find(|p| sought.contains(p.as_str()) && !ANSWERS.iter().any(|a| p.contains(a))) {
                    hits.push(format!("{}:{}: {p:?}: {}", file.display(), n + 1, line.trim()));
                } else if let Some(c) = components.iter().find(|c| sought.contains(&format!("skiff: {c}"))) {
                    hits.push(format!("{}:{}: {c:?}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(hits.is_empty(), "suites look for the init's log wording (check its events instead):\n{}", hits.join("\n"));
}
