//! The emulator is a server users run: malformed HTTP, oversized bodies, slow clients, non-UTF-8
//! bytes and connection floods get an error or a closed connection, never a crash, and threads
//! and memory stay bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

/// Send raw bytes, return what came back before the server closed (or 2 s passed).
fn raw(em: &Emulator, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(em.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A real export still works: the emulator survived whatever came before.
#[track_caller]
fn still_serves(dir: &TestDir, em: &Emulator) {
    let mut a: Vec<String> = vec!["export".into(), "-o".into(), "-".into(), "-q".into()];
    a.extend(em.client_args());
    let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    r.code(0);
    assert_eq!(r.stdout.lines().count(), 4);
    let _ = dir;
}

#[test]
fn malformed_requests_get_an_http_error() {
    let dir = TestDir::new("emu-bad");
    let em = Emulator::start(&dir, &["--followers", "3"]);
    let cases: &[(&[u8], &str)] = &[
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"\x00\x01\x02\xff\xfe\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"POST /gateway.do HTTP/2.0\r\n\r\n", "HTTP/1.1 505"),
        (
            b"POST /gateway.do HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",
            "HTTP/1.1 413 Payload Too Large",
        ),
        (
            b"POST /gateway.do HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 501",
        ),
        (
            b"POST /gateway.do HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            b"POST /gateway.do HTTP/1.1\r\nno colon here\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
        (b"DELETE /gateway.do HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
    ];
    for (bytes, expected) in cases {
        let reply = raw(&em, bytes);
        assert!(
            status_line(&reply).starts_with(expected),
            "{:?} -> {reply:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut huge = b"POST /gateway.do HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    assert!(status_line(&raw(&em, &huge)).starts_with("HTTP/1.1 431"));
    // Non-UTF-8 percent-escapes and a non-JSON biz_content: a gateway error, not a crash.
    let body = b"app_id=%FF%FE&method=%C0&biz_content=%FF";
    let req = format!(
        "POST /gateway.do?sign=x HTTP/1.1\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let reply = raw(&em, &bytes);
    assert!(
        status_line(&reply).starts_with("HTTP/1.1 200") && reply.contains("error_response"),
        "{reply}"
    );
    still_serves(&dir, &em);
}

#[test]
fn slow_and_idle_clients_are_disconnected() {
    let dir = TestDir::new("emu-slow");
    let em = Emulator::start(&dir, &["--followers", "3", "--read-timeout-ms", "600"]);
    // Idle: nothing sent.
    let mut s = TcpStream::connect(em.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without an answer");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "closed after the read timeout"
    );
    // Slowloris: one header byte every 100 ms never completes a request in time.
    let mut s = TcpStream::connect(em.addr()).unwrap();
    let t = Instant::now();
    let mut closed = false;
    for b in
        b"POST /gateway.do HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            .iter()
    {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if t.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        closed = s.read(&mut buf).map(|n| n == 0).unwrap_or(true);
    }
    assert!(
        closed,
        "a client that dribbles one byte at a time is cut off"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    still_serves(&dir, &em);
}

#[test]
fn a_connection_flood_is_bounded() {
    let dir = TestDir::new("emu-flood");
    let em = Emulator::start(&dir, &["--followers", "3"]);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..1500 {
        match TcpStream::connect(em.addr()) {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let threads = proc_status(em.pid(), "Threads:");
    let rss_kb = proc_status(em.pid(), "VmRSS:");
    assert!(threads <= 512 + 8, "{threads} threads for 1500 connections");
    assert!(rss_kb < 200 * 1024, "{rss_kb} kB resident");
    // The connections over the limit were answered 503 and closed.
    let mut answered_503 = 0;
    for s in held.iter_mut().rev().take(200) {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf) {
            answered_503 += String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") as u32;
        }
    }
    assert!(
        answered_503 > 100,
        "only {answered_503} of the last 200 got 503 (refused at connect: {refused})"
    );
    drop(held);
    // Once the flood is gone, the places are given back.
    std::thread::sleep(Duration::from_millis(500));
    still_serves(&dir, &em);
    assert!(proc_status(em.pid(), "Threads:") < 64);
}
