//! A strict, small JSON reader for the engine's answers (the container
//! list, a container's inspect, event lines). [`parse`] checks the whole
//! text against JSON's grammar (RFC 8259: UTF-8, no trailing data, nesting
//! at most [`MAX_DEPTH`] deep); the [`Json`] it returns finds members and
//! items in the checked text without building a tree. It replaces
//! serde_json, which made up 33 KB of the init.

use std::fmt;

/// Deepest nesting of arrays and objects accepted (serde_json's limit too),
/// so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Why a text is not JSON; offsets are in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The text is not UTF-8.
    NotUtf8,
    /// The text ends inside a value.
    Truncated,
    /// A byte that cannot come here.
    Unexpected(usize),
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep(usize),
    /// More than whitespace after the value.
    Trailing(usize),
    /// JSON, but not the list that was asked for.
    NotAList,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotUtf8 => write!(f, "not UTF-8"),
            Error::Truncated => write!(f, "JSON ends early"),
            Error::Unexpected(at) => write!(f, "not JSON at byte {at}"),
            Error::TooDeep(at) => write!(f, "JSON nested deeper than {MAX_DEPTH} at byte {at}"),
            Error::Trailing(at) => write!(f, "data after the JSON value at byte {at}"),
            Error::NotAList => write!(f, "not a JSON list"),
        }
    }
}

impl std::error::Error for Error {}

/// One JSON value, as the slice of checked text it spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json<'a>(&'a [u8]);

/// Checks that `text` is exactly one JSON value (surrounding whitespace
/// allowed) and returns it.
pub fn parse(text: &[u8]) -> Result<Json<'_>, Error> {
    std::str::from_utf8(text).map_err(|_| Error::NotUtf8)?;
    let start = skip_ws(text, 0);
    let end = value_end(text, start, 0)?;
    match skip_ws(text, end) {
        rest if rest == text.len() => Ok(Json(&text[start..end])),
        rest => Err(Error::Trailing(rest)),
    }
}

impl<'a> Json<'a> {
    /// The value of member `key` of an object (the last one if the key
    /// repeats, as serde_json kept it); `None` for other values.
    pub fn get(self, key: &str) -> Option<Json<'a>> {
        self.members().filter(|(k, _)| k == key).last().map(|(_, v)| v)
    }

    /// An object's members in text order (none for other values).
    pub fn members(self) -> impl Iterator<Item = (String, Json<'a>)> {
        let text = if self.0.first() == Some(&b'{') { self.0 } else { b"}" };
        Entries { text, pos: 1, object: true }.filter_map(|(key, value)| Some((key?.as_str()?, value)))
    }

    /// Whether this is an array.
    pub fn is_array(self) -> bool {
        self.0.first() == Some(&b'[')
    }

    /// An array's items (none for other values).
    pub fn items(self) -> impl Iterator<Item = Json<'a>> {
        let text = if self.is_array() { self.0 } else { b"]" };
        Entries { text, pos: 1, object: false }.map(|(_, value)| value)
    }

    /// A string's text, escapes decoded (`None` for other values, and for a
    /// string with an unpaired surrogate escape).
    pub fn as_str(self) -> Option<String> {
        let inner = self.0.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        let mut out = Vec::with_capacity(inner.len());
        let mut i = 0;
        while let Some(&c) = inner.get(i) {
            if c != b'\\' {
                out.push(c);
                i += 1;
                continue;
            }
            let ch = match *inner.get(i + 1)? {
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let high = hex4(inner.get(i + 2..i + 6)?)?;
                    if (0xd800..0xdc00).contains(&high) {
                        if inner.get(i + 6..i + 8)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(inner.get(i + 8..i + 12)?)?;
                        if !(0xdc00..0xe000).contains(&low) {
                            return None;
                        }
                        i += 6;
                        char::from_u32(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00))?
                    } else {
                        char::from_u32(high)?
                    }
                }
                other => char::from(other),
            };
            i += if inner[i + 1] == b'u' { 6 } else { 2 };
            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        }
        String::from_utf8(out).ok()
    }

    /// A number written as a non-negative integer that fits a `u64` (not
    /// `8080.0` or `1e3`, as with serde_json).
    pub fn as_u64(self) -> Option<u64> {
        if !self.0.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(self.0).ok()?.parse().ok()
    }
}

/// Walks the members or items of a checked object or array: `text` starts
/// with its opening bracket, `pos` is where the next entry (or a comma
/// before it) is.
struct Entries<'a> {
    text: &'a [u8],
    pos: usize,
    object: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (Option<Json<'a>>, Json<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.text;
        let mut i = skip_ws(t, self.pos);
        match t.get(i)? {
            b',' => i = skip_ws(t, i + 1),
            b'}' | b']' => return None,
            _ => {}
        }
        let mut key = None;
        if self.object {
            let end = string_end(t, i).ok()?;
            key = Some(Json(&t[i..end]));
            i = skip_ws(t, end);
            if t.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(t, i + 1);
        }
        let end = value_end(t, i, 0).ok()?;
        self.pos = end;
        Some((key, Json(&t[i..end])))
    }
}

fn skip_ws(t: &[u8], mut i: usize) -> usize {
    while matches!(t.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The error for what is at `i`: the end of the text, or a wrong byte.
fn at(t: &[u8], i: usize) -> Error {
    if i >= t.len() { Error::Truncated } else { Error::Unexpected(i) }
}

/// Where the value starting at `i` ends, checking it on the way.
fn value_end(t: &[u8], i: usize, depth: usize) -> Result<usize, Error> {
    match t.get(i) {
        Some(b'{') => container_end(t, i, depth, true),
        Some(b'[') => container_end(t, i, depth, false),
        Some(b'"') => string_end(t, i),
        Some(b't') => literal_end(t, i, b"true"),
        Some(b'f') => literal_end(t, i, b"false"),
        Some(b'n') => literal_end(t, i, b"null"),
        Some(b'-' | b'0'..=b'9') => number_end(t, i),
        _ => Err(at(t, i)),
    }
}

fn container_end(t: &[u8], open: usize, depth: usize, object: bool) -> Result<usize, Error> {
    if depth >= MAX_DEPTH {
        return Err(Error::TooDeep(open));
    }
    let close = if object { b'}' } else { b']' };
    let mut i = skip_ws(t, open + 1);
    if t.get(i) == Some(&close) {
        return Ok(i + 1);
    }
    loop {
        if object {
            if t.get(i) != Some(&b'"') {
                return Err(at(t, i));
            }
            i = skip_ws(t, string_end(t, i)?);
            if t.get(i) != Some(&b':') {
                return Err(at(t, i));
            }
            i = skip_ws(t, i + 1);
        }
        i = skip_ws(t, value_end(t, i, depth + 1)?);
        match t.get(i) {
            Some(b',') => i = skip_ws(t, i + 1),
            Some(&c) if c == close => return Ok(i + 1),
            _ => return Err(at(t, i)),
        }
    }
}

fn string_end(t: &[u8], quote: usize) -> Result<usize, Error> {
    let mut i = quote + 1;
    loop {
        match t.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match t.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    for k in i + 2..i + 6 {
                        if !t.get(k).is_some_and(u8::is_ascii_hexdigit) {
                            return Err(at(t, k));
                        }
                    }
                    i += 6;
                }
                _ => return Err(at(t, i + 1)),
            },
            Some(&c) if c < 0x20 => return Err(Error::Unexpected(i)),
            Some(_) => i += 1,
            None => return Err(Error::Truncated),
        }
    }
}

fn literal_end(t: &[u8], i: usize, word: &[u8]) -> Result<usize, Error> {
    for (k, &b) in word.iter().enumerate() {
        if t.get(i + k) != Some(&b) {
            return Err(at(t, i + k));
        }
    }
    Ok(i + word.len())
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number_end(t: &[u8], mut i: usize) -> Result<usize, Error> {
    if t.get(i) == Some(&b'-') {
        i += 1;
    }
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits_end(t, i),
        _ => return Err(at(t, i)),
    }
    if t.get(i) == Some(&b'.') {
        i = some_digits_end(t, i + 1)?;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = some_digits_end(t, i)?;
    }
    Ok(i)
}

fn digits_end(t: &[u8], mut i: usize) -> usize {
    while t.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

fn some_digits_end(t: &[u8], i: usize) -> Result<usize, Error> {
    match digits_end(t, i) {
        end if end > i => Ok(end),
        _ => Err(at(t, i)),
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_json_and_finds_values() {
        let doc = parse(br#" {"a": [1, -2.5e+3, true, false, null, "x"], "b": {"c": "d"}, "b": {"c": "e"}, "n": 18080} "#).unwrap();
        let items: Vec<_> = doc.get("a").unwrap().items().collect();
        assert_eq!(items.len(), 6);
        assert_eq!(items[0].as_u64(), Some(1));
        assert_eq!(items[1].as_u64(), None);
        assert_eq!(items[5].as_str().as_deref(), Some("x"));
        // A repeated key: the last one counts.
        assert_eq!(doc.get("b").and_then(|b| b.get("c")).and_then(Json::as_str).as_deref(), Some("e"));
        assert_eq!(doc.get("n").and_then(Json::as_u64), Some(18080));
        assert_eq!(doc.get("missing"), None);
        let keys: Vec<_> = doc.members().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "b", "n"]);
        // Members of a non-object and items of a non-array: none.
        assert_eq!(doc.items().count(), 0);
        assert_eq!(items[0].members().count(), 0);
        assert_eq!(items[0].get("a"), None);
        assert_eq!(parse(b"[]").unwrap().items().count(), 0);
        assert!(parse(b" [1]").unwrap().is_array() && !doc.is_array());
        assert_eq!(parse(b"{ }").unwrap().members().count(), 0);
        assert_eq!(parse(b"\"s\"").unwrap().as_u64(), None);
        assert_eq!(parse(b"8080.0").unwrap().as_u64(), None);
        assert_eq!(parse(b"18446744073709551616").unwrap().as_u64(), None);
        assert_eq!(parse(b"0").unwrap().as_u64(), Some(0));
    }

    #[test]
    fn decodes_string_escapes() {
        let s = parse(br#""a\"b\\c\/d\b\f\n\r\t \u00e9 \ud83d\ude00 \u2603""#).unwrap();
        assert_eq!(s.as_str().as_deref(), Some("a\"b\\c/d\u{8}\u{c}\n\r\t \u{e9} \u{1f600} \u{2603}"));
        assert_eq!(parse("\"h\u{e9}\"".as_bytes()).unwrap().as_str().as_deref(), Some("h\u{e9}"));
        // Valid JSON, but no text: unpaired surrogates.
        assert_eq!(parse(br#""\ud83d""#).unwrap().as_str(), None);
        assert_eq!(parse(br#""\ud83dx""#).unwrap().as_str(), None);
        assert_eq!(parse(br#""\ude00""#).unwrap().as_str(), None);
        assert_eq!(parse(br#""\ud83d\u0041""#).unwrap().as_str(), None);
        assert_eq!(parse(b"1").unwrap().as_str(), None);
    }

    #[test]
    fn rejects_what_is_not_json() {
        let cases: &[(&[u8], Error)] = &[
            (b"", Error::Truncated),
            (b"  ", Error::Truncated),
            (b"{", Error::Truncated),
            (b"[1,", Error::Truncated),
            (b"\"abc", Error::Truncated),
            (b"tru", Error::Truncated),
            (b"-", Error::Truncated),
            (b"1.", Error::Truncated),
            (b"1e", Error::Truncated),
            (b"\"\\u12", Error::Truncated),
            (b"[1,]", Error::Unexpected(3)),
            (b"[1 2]", Error::Unexpected(3)),
            (b"{\"a\" 1}", Error::Unexpected(5)),
            (b"{\"a\":1,}", Error::Unexpected(7)),
            (b"{1:2}", Error::Unexpected(1)),
            (b"01", Error::Trailing(1)),
            (b"+1", Error::Unexpected(0)),
            (b"1.e3", Error::Unexpected(2)),
            (b".5", Error::Unexpected(0)),
            (b"nul", Error::Truncated),
            (b"nulx", Error::Unexpected(3)),
            (b"True", Error::Unexpected(0)),
            (b"\"a\tb\"", Error::Unexpected(2)),
            (b"\"\\x\"", Error::Unexpected(2)),
            (b"\"\\u12g4\"", Error::Unexpected(5)),
            (b"[] []", Error::Trailing(3)),
            (b"{} x", Error::Trailing(3)),
            (b"\"\xff\"", Error::NotUtf8),
        ];
        for &(text, want) in cases {
            assert_eq!(parse(text), Err(want), "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(deep.as_bytes()), Err(Error::TooDeep(MAX_DEPTH)));
        // A million open brackets: an error, not a stack overflow.
        assert_eq!(parse("[".repeat(1_000_000).as_bytes()), Err(Error::TooDeep(MAX_DEPTH)));
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(objects.as_bytes()), Err(Error::TooDeep(MAX_DEPTH * 5)));
    }

    /// Fuzz-style: deterministic pseudo-random, truncated and mutated
    /// documents must never panic the reader, and whatever it accepts can be
    /// walked to the end.
    #[test]
    fn survives_random_and_mutated_input() {
        fn walk(v: Json<'_>, depth: usize) -> usize {
            assert!(depth <= MAX_DEPTH);
            let _ = (v.as_str(), v.as_u64());
            1 + v.items().map(|i| walk(i, depth + 1)).sum::<usize>() + v.members().map(|(_, m)| walk(m, depth + 1)).sum::<usize>()
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || crate::net::xorshift64(&mut seed);
        let base = br#"{"Id":"a1","Ports":[{"IP":"0.0.0.0","PrivatePort":8080,"PublicPort":18080,"Type":"tcp"}],"N":{"x":[true,false,null,-1.5e-3,"\u00e9\ud83d\ude00\n"]}}"#;
        assert!(walk(parse(base).unwrap(), 0) > 10);
        let alphabet = b"{}[]\":,\\ -+.0123456789eEtrufalsn\n";
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut b = base.to_vec();
            match round % 4 {
                0 => b.truncate(next() as usize % (b.len() + 1)),
                1 => {
                    for _ in 0..1 + next() % 4 {
                        let i = next() as usize % b.len();
                        b[i] = alphabet[next() as usize % alphabet.len()];
                    }
                }
                2 => b = (0..next() % 64).map(|_| alphabet[next() as usize % alphabet.len()]).collect(),
                _ => {
                    let i = next() as usize % b.len();
                    b[i] = next() as u8;
                }
            }
            if let Ok(v) = parse(&b) {
                accepted += 1;
                walk(v, 0);
            }
        }
        assert!(accepted > 1000, "many mutations should stay JSON ({accepted})");
    }
}
