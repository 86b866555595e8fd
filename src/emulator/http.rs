//! A small HTTP/1.1 server on `std::net` for the emulator: keep-alive, `Content-Length` bodies,
//! bounded connections, head and body sizes, idle read timeouts, and the transport-level faults
//! (dropped connection, truncated body) that a real network produces.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest request body accepted (a follower query is under 1 KiB, a template message a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest request line plus headers.
pub const MAX_HEAD: usize = 32 * 1024;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;
/// Default time a client has to send each whole request (from the end of the previous answer);
/// an idle keep-alive connection, or a client sending a byte at a time, is closed after it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

pub enum Reply {
    Send {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        delay: Duration,
    },
    /// Close the connection without an answer (a reset, or an answer lost after processing).
    Drop { delay: Duration },
    /// Announce the full length, send only `keep` bytes of the body, close.
    Truncate {
        status: u16,
        body: Vec<u8>,
        keep: usize,
    },
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request) -> Reply;
    /// The time to put in `Date` headers (an emulator may simulate a gateway whose clock is off).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Accept connections forever, one thread each, at most [`MAX_CONNECTIONS`] at once; each request
/// must arrive whole within `read_timeout`.
pub fn serve(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    read_timeout: Duration,
) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = write_response(
                &mut stream,
                handler.now(),
                503,
                "text/plain",
                b"too many connections\n",
                true,
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(Arc::clone(&active));
        let handler = Arc::clone(&handler);
        // If the thread cannot start, the closure (and the slot in it) is dropped: the count stays right.
        let _ = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _slot = slot; // released even if the handler panics
                connection(stream, handler.as_ref(), read_timeout);
            });
    }
    Ok(())
}

/// One of the [`MAX_CONNECTIONS`] places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The read half of a connection, with a deadline for the request being read.
struct DeadlineReader {
    stream: TcpStream,
    until: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

#[derive(Debug)]
struct HttpError {
    status: u16,
    message: &'static str,
}

fn connection(stream: TcpStream, handler: &dyn Handler, read_timeout: Duration) {
    let _ = stream.set_write_timeout(Some(read_timeout));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(
        16 * 1024,
        DeadlineReader {
            stream: read_half,
            until: Instant::now(),
        },
    );
    let mut writer = stream;
    loop {
        reader.get_mut().until = Instant::now() + read_timeout;
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(Ok(e)) => {
                let _ = write_response(
                    &mut writer,
                    handler.now(),
                    e.status,
                    "text/plain",
                    format!("{}\n", e.message).as_bytes(),
                    true,
                );
                return;
            }
            Err(Err(_io)) => return,
        };
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match handler.handle(&request) {
            Reply::Send {
                status,
                content_type,
                body,
                delay,
            } => {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                if write_response(
                    &mut writer,
                    handler.now(),
                    status,
                    content_type,
                    &body,
                    close,
                )
                .is_err()
                    || close
                {
                    return;
                }
            }
            Reply::Drop { delay } => {
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
            Reply::Truncate { status, body, keep } => {
                let head = head(
                    handler.now(),
                    status,
                    "application/json;charset=utf-8",
                    body.len(),
                    true,
                );
                let _ = writer.write_all(head.as_bytes());
                let _ = writer.write_all(&body[..keep.min(body.len())]);
                let _ = writer.flush();
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// Parse one request from bytes, as the server does (for tests and the fuzz target): the request,
/// or the HTTP status it would be refused with. `Ok(None)` for empty input.
pub fn parse_request(bytes: &[u8]) -> Result<Option<Request>, u16> {
    match read_request(&mut BufReader::new(bytes)) {
        Ok(r) => Ok(r),
        Err(Ok(e)) => Err(e.status),
        Err(Err(_)) => Err(0),
    }
}

/// `Ok(None)` on a clean end of stream between requests; `Err(Ok(_))` for a request to refuse with a
/// status; `Err(Err(_))` when the connection broke or idled out.
fn read_request(
    reader: &mut impl BufRead,
) -> Result<Option<Request>, Result<HttpError, io::Error>> {
    let mut head_len = 0usize;
    let mut line = Vec::new();
    // Request line (tolerate stray empty lines between requests, as RFC 9112 allows).
    loop {
        line.clear();
        let n = read_line_limited(reader, &mut line, MAX_HEAD - head_len)?;
        if n == 0 {
            return if head_len == 0 {
                Ok(None)
            } else {
                Err(Err(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        head_len += n;
        if !trim_eol(&line).is_empty() {
            break;
        }
    }
    let request_line = std::str::from_utf8(trim_eol(&line))
        .map_err(|_| {
            Ok(HttpError {
                status: 400,
                message: "request line is not UTF-8",
            })
        })?
        .to_string();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Ok(HttpError {
            status: 400,
            message: "malformed request line",
        }));
    };
    // Found by fuzzing (fuzz/regressions/http_request): "  HTTP/1.\n\n" split into an empty
    // method and target and was served.
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(Ok(HttpError {
            status: 400,
            message: "malformed request line",
        }));
    }
    if !version.starts_with("HTTP/1.") {
        return Err(Ok(HttpError {
            status: 505,
            message: "only HTTP/1.x is served",
        }));
    }
    let mut headers = Vec::new();
    loop {
        line.clear();
        let n = read_line_limited(reader, &mut line, MAX_HEAD - head_len)?;
        if n == 0 {
            return Err(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        head_len += n;
        let l = trim_eol(&line);
        if l.is_empty() {
            break;
        }
        let text = std::str::from_utf8(l).map_err(|_| {
            Ok(HttpError {
                status: 400,
                message: "header is not UTF-8",
            })
        })?;
        let Some((name, value)) = text.split_once(':') else {
            return Err(Ok(HttpError {
                status: 400,
                message: "malformed header line",
            }));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(Ok(HttpError {
            status: 501,
            message: "chunked request bodies are not supported; send Content-Length",
        }));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            Ok(HttpError {
                status: 400,
                message: "bad Content-Length",
            })
        })?,
    };
    if length > MAX_BODY {
        return Err(Ok(HttpError {
            status: 413,
            message: "request body over 1 MiB",
        }));
    }
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).map_err(Err)?;
    Ok(Some(request))
}

fn read_line_limited(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    room: usize,
) -> Result<usize, Result<HttpError, io::Error>> {
    let n = reader
        .take(room as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(Err)?;
    if n > room {
        return Err(Ok(HttpError {
            status: 431,
            message: "request head too large",
        }));
    }
    Ok(n)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn head(
    now: chrono::DateTime<chrono::Utc>,
    status: u16,
    content_type: &str,
    len: usize,
    close: bool,
) -> String {
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT");
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nDate: {date}\r\nConnection: {}\r\n\r\n",
        reason(status),
        if close { "close" } else { "keep-alive" }
    )
}

fn write_response(
    w: &mut TcpStream,
    now: chrono::DateTime<chrono::Utc>,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut out = head(now, status, content_type, body.len(), close).into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<Request>, Result<HttpError, io::Error>> {
        read_request(&mut BufReader::new(raw))
    }

    #[test]
    fn parses_a_post_with_a_body() {
        let r = parse(b"POST /gateway.do?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nb=2")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path(), r.query(), r.body.as_slice()),
            ("POST", "/gateway.do", "a=1", &b"b=2"[..])
        );
    }

    #[test]
    fn refuses_bad_requests_with_a_status() {
        let status = |raw: &[u8]| match parse(raw) {
            Err(Ok(e)) => e.status,
            other => panic!("expected an HTTP error, got {other:?}"),
        };
        assert_eq!(status(b"GARBAGE\r\n\r\n"), 400);
        assert_eq!(
            status(include_bytes!(
                "../../fuzz/regressions/http_request/empty-method-and-target"
            )),
            400
        );
        assert_eq!(status(b"post / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/2\r\n\r\n"), 505);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\n\xff\xfe: x\r\n\r\n"), 400);
        let mut huge = b"POST / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(status(&huge), 431);
        assert!(matches!(parse(b""), Ok(None)));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            Err(Err(_))
        ));
    }
}
