//! Batch files: encoding detection (UTF-8, UTF-8 with BOM, GBK/GB18030, UTF-16 refused) and CSV
//! parsing and validation, for two sets of flag defaults.
#![no_main]

use std::collections::HashSet;

use alipaylife::send::batch::{Defaults, IdChoice, parse};
use alipaylife::send::encoding::{Encoding, decode};
use libfuzzer_sys::fuzz_target;

fn check_error(bytes: &[u8], e: &str) {
    if e.contains("UTF-16") {
        assert!(bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF"));
        return;
    }
    // "line L, column C (byte B): byte 0xXX is not valid …": B names a byte that exists.
    let byte: usize = e
        .split_once("(byte ")
        .and_then(|(_, r)| r.split_once(')'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte position in {e:?}"));
    assert!(e.starts_with("line "), "{e:?}");
    assert!(byte >= 1 && byte <= bytes.len(), "byte {byte} of {}: {e:?}", bytes.len());
    let named = format!("byte 0x{:02X} ", bytes[byte - 1]);
    assert!(e.contains(&named), "{e:?} should name {named:?}");
}

fn defaults() -> [Defaults; 2] {
    [
        Defaults {
            template_id: Some("TPL1".into()),
            url: None,
            action_name: None,
            head_color: None,
            color: None,
            id_kind: IdChoice::Auto,
            allow_duplicates: false,
        },
        Defaults {
            template_id: None,
            url: Some("https://example.com/a?b=c".into()),
            action_name: Some("查看详情".into()),
            head_color: Some("#85be53".into()),
            color: Some("#000".into()),
            id_kind: IdChoice::UserId,
            allow_duplicates: true,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let utf16 = data.starts_with(b"\xFF\xFE") || data.starts_with(b"\xFE\xFF");
    let (body, bom) = match data.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, true),
        None => (data, false),
    };
    let utf8 = std::str::from_utf8(body).ok().filter(|_| !utf16);

    // Forced UTF-8: exactly the valid UTF-8 files, BOM stripped.
    match decode(data, Encoding::Utf8) {
        Ok(d) => assert_eq!(Some(d.text.as_str()), utf8),
        Err(e) => {
            assert!(utf8.is_none(), "valid UTF-8 refused: {e}");
            check_error(data, &e);
        }
    }
    // Forced GBK: anything it accepts is returned in full.
    match decode(data, Encoding::Gb18030) {
        Ok(d) => assert!(!utf16 && (data.is_empty() || !d.text.is_empty())),
        Err(e) => check_error(data, &e),
    }
    // Detection: valid UTF-8 is always read as UTF-8; a BOM never falls back to GBK.
    let text = match decode(data, Encoding::Auto) {
        Ok(d) => {
            match utf8 {
                Some(t) => {
                    assert_eq!(d.text, t);
                    assert!(d.encoding.starts_with("UTF-8"));
                }
                None => assert!(!bom && d.encoding == "GBK/GB18030"),
            }
            d.text
        }
        Err(e) => {
            assert!(utf8.is_none(), "valid UTF-8 refused: {e}");
            check_error(data, &e);
            return;
        }
    };

    for d in defaults() {
        let parsed = parse(&text, &d);
        let mut last = 1;
        let mut recipients = HashSet::new();
        for m in &parsed.messages {
            assert!(m.line > last, "lines increase: {} after {last}", m.line);
            last = m.line;
            assert!(!m.recipient.is_empty() && m.recipient.trim() == m.recipient);
            let v: serde_json::Value = serde_json::from_str(&m.biz_content).expect("biz_content JSON");
            assert_eq!(v[m.kind.field()].as_str(), Some(m.recipient.as_str()));
            assert_eq!(v["template"]["template_id"].as_str(), Some(m.template_id.as_str()));
            assert!(v["template"]["context"].is_object());
            let dup = !recipients.insert(m.recipient.clone());
            assert!(!dup || d.allow_duplicates || !parsed.problems.is_empty());
        }
        for p in &parsed.problems {
            assert!(p.line.is_none_or(|l| l >= 1));
            assert!(!p.to_string().is_empty());
        }
        if parsed.problems.is_empty() {
            assert!(!parsed.messages.is_empty(), "no problems but nothing to send");
        }
    }
});
