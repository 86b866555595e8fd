//! The emulator's HTTP/1.1 request parser: no panic, the refusal statuses it documents, and a
//! parsed request that does not depend on bytes after it (pipelining).
#![no_main]

use alipaylife::emulator::http::{MAX_BODY, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(None) => assert!(data.is_empty(), "Ok(None) only for empty input"),
        Ok(Some(r)) => {
            // A request line is `method SP target SP version`, method and target not empty.
            assert!(!r.method.is_empty() && !r.method.contains(' '), "method {:?}", r.method);
            assert!(!r.target.is_empty() && !r.target.contains(' '), "target {:?}", r.target);
            assert!(r.body.len() <= MAX_BODY);
            let declared = r.header("content-length").map(|v| v.parse::<usize>().unwrap());
            assert_eq!(r.body.len(), declared.unwrap_or(0));
            assert!(r.path().len() <= r.target.len() && r.query().len() <= r.target.len());
            for (name, value) in &r.headers {
                assert!(!name.contains(':'), "header name {name:?}");
                assert_eq!(value.trim(), value);
            }
            // The same request with another one pipelined behind it parses the same (when its head
            // ended with a line feed: a lone `\r` at the end of input also ends a head).
            let head = &data[..data.len() - r.body.len()];
            if !head.ends_with(b"\n") {
                return;
            }
            let mut more = data.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let again = parse_request(&more).expect("still parses").expect("a request");
            assert_eq!(
                (&again.method, &again.target, &again.headers, &again.body),
                (&r.method, &r.target, &r.headers, &r.body)
            );
        }
        Err(status) => assert!(
            matches!(status, 0 | 400 | 413 | 431 | 501 | 505),
            "unexpected status {status}"
        ),
    }
});
