use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::*;

/// True when the broker closed the connection (read returns EOF or reset).
fn closed_by_broker(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn garbage_and_oversized_frames_close_only_that_connection() {
    let t = TestBroker::start();
    let mut healthy = t.client();
    assert_eq!(create_topic(&mut healthy, "alive", 1, &[]), 0);

    // An unknown API key in a well-sized frame.
    let mut s = TcpStream::connect(&t.addr).unwrap();
    let mut frame = vec![0, 0, 0, 12];
    frame.extend_from_slice(&[0x7f, 0x7f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    s.write_all(&frame).unwrap();
    assert!(closed_by_broker(s));

    // A size prefix over socket.request.max.bytes: closed before any body is sent.
    let mut s = TcpStream::connect(&t.addr).unwrap();
    s.write_all(&(200 * 1024 * 1024i32).to_be_bytes()).unwrap();
    assert!(closed_by_broker(s));

    // Random bytes.
    let mut s = TcpStream::connect(&t.addr).unwrap();
    s.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).unwrap();
    let _ = closed_by_broker(s);

    // A truncated frame, then hang up.
    let mut s = TcpStream::connect(&t.addr).unwrap();
    s.write_all(&[0, 0, 1, 0, 0, 3]).unwrap();
    drop(s);

    // A known API with a body that does not decode.
    let mut s = TcpStream::connect(&t.addr).unwrap();
    let mut frame = vec![0, 0, 0, 10];
    frame.extend_from_slice(&[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff]); // Metadata v9, broken
    s.write_all(&frame).unwrap();
    assert!(closed_by_broker(s));

    // The earlier connection and new ones still work.
    let mut records = vec![record("k", "v", 1)];
    let r = produce(&mut healthy, "alive", 0, batch(&mut records, Compression::None));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let mut fresh = t.client();
    assert_eq!(fetch(&mut fresh, "alive", 0, 0, 0).1, 1);
}
