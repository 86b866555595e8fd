//! Batch file bytes to text: UTF-8 with or without a BOM, or GBK/GB18030 (what Excel on Chinese
//! Windows saves as "CSV"), detected or forced with `--encoding`. Pure: bytes in, text or a message
//! naming the line and byte column of the first undecodable byte out.

use std::str::FromStr;

use encoding_rs::{DecoderResult, GB18030};

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

/// Decoded text and the name of the encoding found, for the summary.
#[derive(Debug)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static str,
}

/// 1-based line and byte column of byte `offset`.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => offset - nl,
        None => offset + 1,
    };
    (line, column)
}

/// The valid UTF-8 prefix length, or `None` when all of it is valid.
fn utf8_error(bytes: &[u8]) -> Option<usize> {
    std::str::from_utf8(bytes).err().map(|e| e.valid_up_to())
}

/// GB18030 decoding without replacement: the text, or the offset of the first malformed byte.
fn gb18030(bytes: &[u8]) -> Result<String, usize> {
    let mut decoder = GB18030.new_decoder_without_bom_handling();
    let cap = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .unwrap_or(bytes.len() * 4);
    let mut out = String::with_capacity(cap);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        DecoderResult::InputEmpty => Ok(out),
        DecoderResult::Malformed(bad, extra) => {
            Err(read.saturating_sub(bad as usize + extra as usize))
        }
        DecoderResult::OutputFull => Err(read),
    }
}

fn undecodable(bytes: &[u8], offset: usize, what: &str) -> String {
    let (line, column) = position(bytes, offset);
    let byte = bytes.get(offset).copied().unwrap_or(0);
    format!(
        "line {line}, column {column} (byte {}): byte 0x{byte:02X} is not valid {what}; save the \
         file as \"CSV UTF-8\" (or GBK), or name its encoding with --encoding",
        offset + 1
    )
}

/// Decode a batch file. Errors are phrased for the user without the file name (the caller adds it).
pub fn decode(bytes: &[u8], wanted: Encoding) -> Result<Decoded, String> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(
            "the file is UTF-16 (Excel's \"Unicode text\"); save it as \"CSV UTF-8\" instead"
                .to_string(),
        );
    }
    let (body, bom) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let utf8 = |body: &[u8]| -> Result<Decoded, usize> {
        match utf8_error(body) {
            None => Ok(Decoded {
                text: String::from_utf8(body.to_vec()).expect("checked"),
                encoding: if bom { "UTF-8 with BOM" } else { "UTF-8" },
            }),
            Some(at) => Err(at + if bom { 3 } else { 0 }),
        }
    };
    match wanted {
        Encoding::Utf8 => utf8(body).map_err(|at| undecodable(bytes, at, "UTF-8")),
        Encoding::Gb18030 => gb18030(bytes)
            .map(|text| Decoded {
                text,
                encoding: "GBK/GB18030",
            })
            .map_err(|at| undecodable(bytes, at, "GBK/GB18030")),
        Encoding::Auto => match utf8(body) {
            Ok(d) => Ok(d),
            Err(_) if bom => Err(undecodable(
                bytes,
                utf8_error(body).unwrap_or(0) + 3,
                "UTF-8 (the file starts with a UTF-8 byte order mark)",
            )),
            Err(utf8_at) => match gb18030(bytes) {
                Ok(text) => Ok(Decoded {
                    text,
                    encoding: "GBK/GB18030",
                }),
                // Report where the decoder that got further stopped: that is the likely encoding.
                Err(gb_at) => Err(undecodable(
                    bytes,
                    utf8_at.max(gb_at),
                    "UTF-8 or GBK/GB18030",
                )),
            },
        },
    }
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
    fn names_parse() {
        assert_eq!("GBK".parse::<Encoding>().unwrap(), Encoding::Gb18030);
        assert_eq!("utf8".parse::<Encoding>().unwrap(), Encoding::Utf8);
        assert!("latin1".parse::<Encoding>().is_err());
    }
}
