//! Batch file bytes to text: UTF-8 with or without a BOM, or GBK/GB18030 (what Excel on Chinese
//! Windows saves as "CSV"), detected or forced with `--encoding`. `sniff` reads the file once,
//! streaming (encoding, SHA-256, size, line count, or a message naming the line and byte column
//! of the first undecodable byte); `reader` then yields its UTF-8 text as a stream, so a batch of
//! millions of rows is never held in memory. `decode` does both on bytes (tests, fuzzing).

use std::io::{self, Read, Seek, SeekFrom};
use std::str::FromStr;

use encoding_rs::{Decoder, DecoderResult, GB18030, UTF_8};
use sha2::Digest;

/// What `--encoding` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 when the bytes are valid UTF-8 (BOM or not), else GB18030 (a superset of GBK).
    Auto,
    Utf8,
    Gb18030,
}

impl FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Encoding, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Encoding::Auto),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "gbk" | "gb18030" | "gb2312" | "cp936" => Ok(Encoding::Gb18030),
            other => Err(format!(
                "unknown encoding {other:?}; use auto, utf-8 or gbk (gb18030)"
            )),
        }
    }
}

/// What one streaming read of a batch file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    /// `Utf8` or `Gb18030`, never `Auto`.
    pub encoding: Encoding,
    /// A UTF-8 byte order mark to skip (UTF-8 only).
    pub bom: bool,
    /// For the summary: "UTF-8", "UTF-8 with BOM" or "GBK/GB18030".
    pub name: &'static str,
    /// Hex SHA-256 of the bytes: the journal's fingerprint of the batch.
    pub sha256: String,
    pub len: u64,
    /// `\n` and `\r` bytes: a bound on the number of lines, to size per-line tables exactly.
    pub line_ends: u64,
}

/// Why a batch could not be read as text.
#[derive(Debug)]
pub enum SniffError {
    Io(io::Error),
    /// Phrased for the user, without the file name (the caller adds it).
    Undecodable(String),
}

impl From<io::Error> for SniffError {
    fn from(e: io::Error) -> SniffError {
        SniffError::Io(e)
    }
}

/// Reads `buf` full unless the stream ends first.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A decoder fed chunk by chunk, remembering the offset of the first malformed byte.
struct Check {
    decoder: Decoder,
    /// Offset in the file of the first byte this decoder is fed.
    base: u64,
    fed: u64,
    bad: Option<u64>,
}

impl Check {
    fn new(encoding: &'static encoding_rs::Encoding, base: u64) -> Check {
        Check {
            decoder: encoding.new_decoder_without_bom_handling(),
            base,
            fed: 0,
            bad: None,
        }
    }

    fn feed(&mut self, mut src: &[u8], last: bool, scratch: &mut [u8]) {
        if self.bad.is_some() {
            return;
        }
        loop {
            let (result, read, _) = self
                .decoder
                .decode_to_utf8_without_replacement(src, scratch, last);
            match result {
                DecoderResult::InputEmpty => {
                    self.fed += read as u64;
                    return;
                }
                DecoderResult::OutputFull => {
                    self.fed += read as u64;
                    src = &src[read..];
                }
                DecoderResult::Malformed(bad, extra) => {
                    let at = (self.fed + read as u64).saturating_sub(bad as u64 + extra as u64);
                    self.bad = Some(self.base + at);
                    return;
                }
            }
        }
    }
}

/// 1-based line and byte column of byte `offset`, and the byte there (a second read, only for
/// an error message).
fn position(r: &mut (impl Read + Seek), offset: u64) -> io::Result<(u64, u64, u8)> {
    r.seek(SeekFrom::Start(0))?;
    let (mut line, mut line_start, mut at) = (1u64, 0u64, 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = fill(r, &mut buf)?;
        if n == 0 {
            return Ok((line, offset - line_start + 1, 0));
        }
        for &b in &buf[..n] {
            if at == offset {
                return Ok((line, offset - line_start + 1, b));
            }
            if b == b'\n' {
                line += 1;
                line_start = at + 1;
            }
            at += 1;
        }
    }
}

fn undecodable(r: &mut (impl Read + Seek), offset: u64, what: &str) -> SniffError {
    match position(r, offset) {
        Ok((line, column, byte)) => SniffError::Undecodable(format!(
            "line {line}, column {column} (byte {}): byte 0x{byte:02X} is not valid {what}; save \
             the file as \"CSV UTF-8\" (or GBK), or name its encoding with --encoding",
            offset + 1
        )),
        Err(e) => SniffError::Io(e),
    }
}

/// Read the whole batch once: its encoding (checked to the last byte), fingerprint and size.
pub fn sniff(r: &mut (impl Read + Seek), wanted: Encoding) -> Result<Sniffed, SniffError> {
    r.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut scratch = vec![0u8; 256 * 1024];
    let mut n = fill(r, &mut buf)?;
    let head = &buf[..n];
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(SniffError::Undecodable(
            "the file is UTF-16 (Excel's \"Unicode text\"); save it as \"CSV UTF-8\" instead"
                .to_string(),
        ));
    }
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    let skip = if bom { 3 } else { 0 };
    // Valid UTF-8 is always read as UTF-8; a file with a UTF-8 BOM never falls back to GBK.
    let mut utf8 = (wanted != Encoding::Gb18030).then(|| Check::new(UTF_8, skip as u64));
    let mut gbk = (wanted == Encoding::Gb18030 || (wanted == Encoding::Auto && !bom))
        .then(|| Check::new(GB18030, 0));
    let mut hash = sha2::Sha256::new();
    let (mut len, mut line_ends) = (0u64, 0u64);
    let mut first = true;
    loop {
        let chunk = &buf[..n];
        let last = n < buf.len();
        hash.update(chunk);
        len += n as u64;
        line_ends += chunk.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64;
        if let Some(c) = utf8.as_mut() {
            c.feed(
                if first { &chunk[skip.min(n)..] } else { chunk },
                last,
                &mut scratch,
            );
        }
        if let Some(c) = gbk.as_mut() {
            c.feed(chunk, last, &mut scratch);
        }
        first = false;
        let all_failed = [&utf8, &gbk]
            .iter()
            .all(|c| c.as_ref().is_none_or(|c| c.bad.is_some()));
        if last || all_failed {
            break;
        }
        n = fill(r, &mut buf)?;
    }
    let bad = |c: &Option<Check>| c.as_ref().and_then(|c| c.bad);
    let (encoding, name) = match (wanted, &utf8, &gbk) {
        (Encoding::Gb18030, _, _) => match bad(&gbk) {
            None => (Encoding::Gb18030, "GBK/GB18030"),
            Some(at) => return Err(undecodable(r, at, "GBK/GB18030")),
        },
        (Encoding::Utf8, _, _) => match bad(&utf8) {
            None => (Encoding::Utf8, if bom { "UTF-8 with BOM" } else { "UTF-8" }),
            Some(at) => return Err(undecodable(r, at, "UTF-8")),
        },
        (Encoding::Auto, _, _) => match (bad(&utf8), bad(&gbk)) {
            (None, _) => (Encoding::Utf8, if bom { "UTF-8 with BOM" } else { "UTF-8" }),
            (Some(at), _) if bom => {
                return Err(undecodable(
                    r,
                    at,
                    "UTF-8 (the file starts with a UTF-8 byte order mark)",
                ));
            }
            (Some(_), None) => (Encoding::Gb18030, "GBK/GB18030"),
            // Report where the decoder that got further stopped: that is the likely encoding.
            (Some(u), Some(g)) => return Err(undecodable(r, u.max(g), "UTF-8 or GBK/GB18030")),
        },
    };
    Ok(Sniffed {
        encoding,
        bom: bom && encoding == Encoding::Utf8,
        name,
        sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        len,
        line_ends,
    })
}

/// The batch's text as a UTF-8 stream, from the start of `r` (already sniffed).
pub fn reader<'a, R: Read + Seek + Send + 'a>(
    mut r: R,
    sniffed: &Sniffed,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    match sniffed.encoding {
        Encoding::Gb18030 => {
            r.seek(SeekFrom::Start(0))?;
            Ok(Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(GB18030))
                    .build(r),
            ))
        }
        // Checked by `sniff`: the bytes pass through as they are.
        _ => {
            r.seek(SeekFrom::Start(if sniffed.bom { 3 } else { 0 }))?;
            Ok(Box::new(r))
        }
    }
}

/// Decoded text and the name of the encoding found.
#[derive(Debug)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static str,
}

/// Decode a whole batch held in memory. Errors are phrased for the user without the file name.
pub fn decode(bytes: &[u8], wanted: Encoding) -> Result<Decoded, String> {
    let mut cursor = io::Cursor::new(bytes);
    let sniffed = sniff(&mut cursor, wanted).map_err(|e| match e {
        SniffError::Undecodable(m) => m,
        SniffError::Io(e) => e.to_string(),
    })?;
    let mut text = String::new();
    reader(cursor, &sniffed)
        .and_then(|mut r| r.read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    Ok(Decoded {
        text,
        encoding: sniffed.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        let d = decode("a,b\n您好,1\n".as_bytes(), Encoding::Auto).unwrap();
        assert_eq!(d.text, "a,b\n您好,1\n");
        assert_eq!(d.encoding, "UTF-8");
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice("x\n您好\n".as_bytes());
        let d = decode(&bom, Encoding::Auto).unwrap();
        assert_eq!(d.text, "x\n您好\n", "BOM stripped");
        assert_eq!(d.encoding, "UTF-8 with BOM");
    }

    #[test]
    fn gbk_is_detected() {
        let (bytes, _, bad) = GB18030.encode("alipaylife_userid,first\n2088,您好，欢迎\n");
        assert!(!bad);
        assert!(std::str::from_utf8(&bytes).is_err());
        let d = decode(&bytes, Encoding::Auto).unwrap();
        assert_eq!(d.text, "alipaylife_userid,first\n2088,您好，欢迎\n");
        assert_eq!(d.encoding, "GBK/GB18030");
        assert_eq!(
            decode(&bytes, Encoding::Gb18030).unwrap().text,
            "alipaylife_userid,first\n2088,您好，欢迎\n"
        );
        let e = decode(&bytes, Encoding::Utf8).unwrap_err();
        assert!(e.starts_with("line 2, column 6"), "{e}");
    }

    #[test]
    fn garbage_is_refused_with_a_position() {
        let e = decode(b"id\n2088\nab\xFF\n", Encoding::Auto).unwrap_err();
        assert!(e.starts_with("line 3, column 3 (byte 11)"), "{e}");
        assert!(e.contains("0xFF"), "{e}");
        let e = decode(b"\xFF\xFEi\x00d\x00", Encoding::Auto).unwrap_err();
        assert!(e.contains("UTF-16"), "{e}");
        let e = decode(b"\xEF\xBB\xBFid\n\xB4\xF3\n", Encoding::Auto).unwrap_err();
        assert!(e.contains("byte order mark"), "{e}");
    }

    #[test]
    fn large_files_are_checked_across_chunk_boundaries() {
        // 3-byte and 2-byte characters straddle every 64 KiB chunk boundary somewhere.
        let mut text = String::from("alipaylife_userid,first\n");
        let mut row = 0;
        while text.len() < 300 * 1024 {
            row += 1;
            text.push_str(&format!("2088{row:012},您好，欢迎光临{row}\n"));
        }
        let (gbk, _, _) = GB18030.encode(&text);
        let d = decode(&gbk, Encoding::Auto).unwrap();
        assert_eq!(d.encoding, "GBK/GB18030");
        assert!(d.text == text, "GBK text decoded intact");
        let d = decode(text.as_bytes(), Encoding::Auto).unwrap();
        assert_eq!((d.encoding, d.text == text), ("UTF-8", true));
        let sniffed = sniff(&mut io::Cursor::new(text.as_bytes()), Encoding::Auto).unwrap();
        assert_eq!(sniffed.line_ends, row + 1);
        assert_eq!(sniffed.len, text.len() as u64);
        assert_eq!(sniffed.sha256.len(), 64);
        // A bad byte far in: its line and column are still exact.
        let mut bad = text.as_bytes().to_vec();
        let at = bad.len() - 3;
        bad[at] = 0xFF;
        let e = decode(&bad, Encoding::Utf8).unwrap_err();
        let line = 1 + bad[..at].iter().filter(|&&b| b == b'\n').count();
        let column = at - bad[..at].iter().rposition(|&b| b == b'\n').unwrap();
        assert!(
            e.starts_with(&format!("line {line}, column {column} (byte {})", at + 1)),
            "{e}"
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!("GBK".parse::<Encoding>().unwrap(), Encoding::Gb18030);
        assert_eq!("utf8".parse::<Encoding>().unwrap(), Encoding::Utf8);
        assert!("latin1".parse::<Encoding>().is_err());
    }
}
