//! The engine's HTTP answers as the init reads them: the response head,
//! the body decoders (chunked, Content-Length, until close) and the event
//! stream's line splitter. Decoding must not depend on how the bytes were
//! split into reads, and a chunked encoding of any payload decodes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_init::services::http::{self, Decoder, Framing, Lines};

/// Feeds `wire` in pieces of `piece` bytes; the payload, the decoder, and
/// the first error if any.
fn decode(framing: Framing, wire: &[u8], piece: usize) -> (Vec<u8>, Decoder, Option<http::Error>) {
    let mut d = Decoder::new(framing);
    let mut out = Vec::new();
    for part in wire.chunks(piece.max(1)) {
        if let Err(e) = d.feed(part, &mut out) {
            return (out, d, Some(e));
        }
    }
    (out, d, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else { return };
    let piece = usize::from(control & 0x3f) + 1;

    if let Some(end) = http::head_end(data) {
        assert!(end <= data.len() && data[..end].ends_with(b"\r\n\r\n"));
        if let Ok(head) = http::parse_head(&data[..end]) {
            let (out, d, _) = decode(head.framing, &data[end..], piece);
            if let Framing::Length(n) = head.framing {
                assert!(out.len() <= n);
                assert_eq!(d.done(), out.len() == n);
            }
        }
    }

    // Whatever the split, the same payload, completion and verdict.
    for framing in [Framing::Chunked, Framing::Length(usize::from(control) * 3), Framing::UntilClose] {
        let (whole, dw, ew) = decode(framing, data, data.len());
        let (split, ds, es) = decode(framing, data, piece);
        assert_eq!(ew.is_some(), es.is_some(), "{framing:?}: an error in one split only");
        if ew.is_none() {
            assert_eq!(whole, split, "{framing:?}");
            assert_eq!(dw.done(), ds.done());
            assert_eq!(dw.finish().is_ok(), ds.finish().is_ok());
        }
        if framing == Framing::UntilClose {
            assert_eq!(whole, data);
        }
    }

    // Any payload, cut into chunks of `piece` bytes, comes back whole.
    let mut wire = Vec::new();
    for chunk in data.chunks(piece) {
        wire.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\nTrailer: x\r\n\r\nafter the body");
    let (out, d, err) = decode(Framing::Chunked, &wire, piece);
    assert!(err.is_none(), "{err:?}");
    assert!(d.done() && d.finish().is_ok());
    assert_eq!(out, data);

    // Event lines: the same lines whatever the split, none over the limit.
    let max = usize::from(control) + 1;
    let lines = |piece: usize| {
        let mut l = Lines::new(max);
        let mut got = Vec::new();
        for part in data.chunks(piece) {
            match l.push(part) {
                Ok(lines) => got.extend(lines),
                Err(_) => return None,
            }
        }
        Some(got)
    };
    let (whole, split) = (lines(data.len().max(1)), lines(piece));
    assert_eq!(whole, split);
    for line in whole.into_iter().flatten() {
        assert!(line.len() <= max && !line.contains(&b'\n') && !line.iter().all(u8::is_ascii_whitespace));
    }
});
