//! UDP datagram frames (published UDP ports) from either side: a stream
//! reads as whole datagrams or an error, never more than it holds, and any
//! datagrams written come back with their boundaries.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use skiff_proto::datagram;

fuzz_target!(|data: &[u8]| {
    let mut r = Cursor::new(data);
    let mut buf = Vec::new();
    let mut read = Vec::new();
    while let Ok(true) = datagram::read(&mut r, &mut buf) {
        assert!(buf.len() <= datagram::MAX);
        read.push(buf.clone());
    }
    let framed: usize = read.iter().map(|d| d.len() + 2).sum();
    assert!(framed <= data.len());

    // Written back, the datagrams read are the stream's first bytes.
    let mut stream = Vec::new();
    for d in &read {
        datagram::write(&mut stream, d).unwrap();
    }
    assert_eq!(stream, data[..framed]);

    // And any cut of the input into datagrams survives the trip.
    let cuts: Vec<&[u8]> = data.split(|&b| b == b'|').collect();
    let mut stream = Vec::new();
    for d in &cuts {
        datagram::write(&mut stream, d).unwrap();
    }
    let mut r = Cursor::new(stream);
    for d in &cuts {
        assert!(datagram::read(&mut r, &mut buf).unwrap());
        assert_eq!(&buf[..], *d);
    }
    assert!(!datagram::read(&mut r, &mut buf).unwrap(), "a clean end");
});
