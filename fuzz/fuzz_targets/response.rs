//! Response-node extraction and RSA2 verification (protocol section 4) with the TV-5 Alipay key.
//! Input: a response body; a first line `@<method>` picks another method than the follower query.
#![no_main]

use std::sync::LazyLock;

use alipaylife::keys::{RsaPublic, parse_public_key};
use alipaylife::response::{Root, envelope, extract, node_name, verify};
use libfuzzer_sys::fuzz_target;

const METHOD: &str = "alipay.open.public.follow.batchquery";
/// All the content the TV-5 key signed in the seeds: TV-5d, and `corpus/response/escaped_slash.json`
/// (signed with `/`, delivered with `\/`).
const SIGNED: [&str; 2] = [
    r#"{"code":"10000","msg":"Success","count":"2","next_user_id":"2088102146785750","user_id_list":["2088102146785722","2088102146785733"],"note":"a\/b {x} \"q\" 中文"}"#,
    r#"{"code":"10000","url":"https://a/b"}"#,
];

static KEY: LazyLock<RsaPublic> = LazyLock::new(|| {
    parse_public_key(include_bytes!("../../tests/fixtures/tv5_public.b64")).expect("TV-5 key")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, body) = match text.strip_prefix('@').and_then(|t| t.split_once('\n')) {
        Some((m, b)) => (m, b),
        None => (METHOD, text),
    };
    let env = envelope(body);
    let Ok(ex) = extract(body, method) else {
        return;
    };
    // The content is a slice of the body, exactly as received.
    let start = ex.content.as_ptr() as usize - body.as_ptr() as usize;
    assert!(start + ex.content.len() <= body.len());
    assert_eq!(&body[start..start + ex.content.len()], ex.content);
    let c = ex.content.as_bytes();
    match c.first() {
        Some(b'{') => assert_eq!(c.last(), Some(&b'}')),
        Some(b'"') => assert!(c.len() >= 2 && c.last() == Some(&b'"')),
        other => panic!("content starts with {other:?}"),
    }
    let root_name = match ex.root {
        Root::Method => node_name(method),
        Root::Error => "error_response".to_string(),
    };
    let first = body.find(&root_name).expect("root node in body");
    assert!(first > 0 && first < start, "node name before its value");
    // No second node after the content (the forgery check).
    assert!(body.rfind(&root_name).unwrap() <= start + ex.content.len());
    // Signatures: the envelope's, and (for bodies that are not JSON) the text after `"sign":"`.
    let mut signs: Vec<&str> = Vec::new();
    if let Ok(e) = &env
        && let Some(s) = e.sign.as_deref()
    {
        signs.push(s);
    }
    if let Some((_, rest)) = body.rsplit_once(r#""sign":""#) {
        signs.push(rest.split('"').next().unwrap_or(""));
    }
    for sign in signs {
        if verify(ex.content, sign, &KEY.key) {
            let unescaped = ex.content.replace("\\/", "/");
            assert!(
                SIGNED.iter().any(|s| s.replace("\\/", "/") == unescaped),
                "verified content that TV-5 never signed: {:?}",
                ex.content
            );
        }
    }
});
