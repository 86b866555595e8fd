//! The response side of the gateway protocol (section 4): find the raw text of the response node
//! exactly as received, refuse forged duplicates, and verify Alipay's RSA2 signature over it.
//! Pure functions over the body text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::PublicKey;
use serde::Deserialize;

/// `alipay.open.public.follow.batchquery` -> `alipay_open_public_follow_batchquery_response`.
pub fn node_name(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// The `<method>_response` node.
    Method,
    /// `error_response`: a gateway-level failure, usually unsigned.
    Error,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Extracted<'a> {
    pub root: Root,
    /// The node's value, byte for byte as received: what Alipay signed.
    pub content: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ExtractError {
    /// Neither `<method>_response` nor `error_response` is in the body.
    NoNode,
    /// The node's value does not start with `{` or `"`, or never ends.
    Malformed,
    /// The node name appears again after the node: a forgery attempt (Java SDK's check).
    Duplicate,
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExtractError::NoNode => {
                "the response has neither the method's response node nor error_response"
            }
            ExtractError::Malformed => "the response node is malformed or cut short",
            ExtractError::Duplicate => {
                "the response contains the response node twice (refused as a possible forgery)"
            }
        })
    }
}

/// Find the signed content, following the Java SDK's `extractSignContent` (protocol section 4,
/// steps 1-6) exactly.
pub fn extract<'a>(body: &'a str, method: &str) -> Result<Extracted<'a>, ExtractError> {
    let method_root = node_name(method);
    let (root_name, root, start) = match body.find(&method_root) {
        Some(i) if i > 0 => (method_root.as_str(), Root::Method, i),
        _ => match body.find("error_response") {
            Some(i) if i > 0 => ("error_response", Root::Error, i),
            _ => return Err(ExtractError::NoNode),
        },
    };
    let bytes = body.as_bytes();
    // Just past `":`, then skip whitespace up to the value.
    let mut p = start + root_name.len() + 2;
    while p < bytes.len() && bytes[p] != b'{' && bytes[p] != b'"' {
        p += 1;
    }
    if p >= bytes.len() {
        return Err(ExtractError::Malformed);
    }
    let end = if bytes[p] == b'"' {
        // Encrypted content: a JSON string, up to and including the next quote.
        match body[p + 1..].find('"') {
            Some(q) => p + 1 + q + 1,
            None => return Err(ExtractError::Malformed),
        }
    } else {
        scan_object_end(bytes, p).ok_or(ExtractError::Malformed)?
    };
    // A same-named key nested inside the node is fine; one after it is not.
    if let Some(last) = body.rfind(root_name)
        && last > end
    {
        return Err(ExtractError::Duplicate);
    }
    Ok(Extracted {
        root,
        content: &body[p..end],
    })
}

/// Index just past the `}` that closes the object opening at `start`, honouring strings and escapes.
fn scan_object_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_quotes = false;
    let mut esc_run = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        match b {
            b'\\' => {
                esc_run += 1;
                continue;
            }
            b'"' if esc_run.is_multiple_of(2) => in_quotes = !in_quotes,
            b'{' if !in_quotes => depth += 1,
            b'}' if !in_quotes => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        esc_run = 0;
    }
    None
}

/// The top-level fields that sit beside the node.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    pub sign: Option<String>,
    /// Certificate mode: the SN of the Alipay certificate that signed.
    pub alipay_cert_sn: Option<String>,
}

pub fn envelope(body: &str) -> Result<Envelope, serde_json::Error> {
    serde_json::from_str(body)
}

/// Verify `sign` (base64) over `content` with RSA2; on failure retry once with `\/` unescaped, as the
/// Java and PHP SDKs do (protocol section 4, step 9).
pub fn verify(content: &str, sign_b64: &str, key: &PublicKey) -> bool {
    let Ok(sig) = STANDARD.decode(sign_b64.trim()) else {
        return false;
    };
    let ok = |text: &str| {
        key.pkcs1v15_verify::<sha2::Sha256>(text.as_bytes(), &sig)
            .is_ok()
    };
    ok(content) || (content.contains("\\/") && ok(&content.replace("\\/", "/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_public_key;

    const METHOD: &str = "alipay.open.public.follow.batchquery";
    const TV5D: &str = r#"{"alipay_open_public_follow_batchquery_response":{"code":"10000","msg":"Success","count":"2","next_user_id":"2088102146785750","user_id_list":["2088102146785722","2088102146785733"],"note":"a\/b {x} \"q\" 中文"},"sign":"FkwM5bnaVGZpD+mIct30mnrSCJ4VcZI8if0W+6vLF+WkAAfSfk9Gt6POXgNnjkAAGPedqE9pxKE726Yq1UH9my9mGp9BnIiM9aLxTM+1vOXrCMZh3qncBIM0lNKN84hHcLWrUCIlDpK1bodbQ+gq0bO+yyVQ/F2ibTe5+Hhr8qr6lPd2NUD/4rIvzF4QG/GGk8e10fBDhXVcH6rL/yTtZ9YmeApZ+ZcLRWPoHHV7AYgZx/Nn6gPB59p3i6pa9OngFr/YzvfFU4Gq6RDSxIb8QCHeEAYAnoF55NNdwrW1/1plZFPtVwiCmMW3NTleVoHvp1e7bq7tedJsXs/KXaANzQ=="}"#;
    const TV5D_CONTENT: &str = r#"{"code":"10000","msg":"Success","count":"2","next_user_id":"2088102146785750","user_id_list":["2088102146785722","2088102146785733"],"note":"a\/b {x} \"q\" 中文"}"#;

    fn key() -> PublicKey {
        parse_public_key(include_bytes!("../tests/fixtures/tv5_public.b64"))
            .unwrap()
            .key
    }

    fn check(body: &str) -> Result<bool, ExtractError> {
        let ex = extract(body, METHOD)?;
        let env = envelope(body).expect("json");
        Ok(verify(
            ex.content,
            env.sign.as_deref().unwrap_or(""),
            &key(),
        ))
    }

    #[test]
    fn tv5d_extracts_exact_content_and_verifies() {
        let ex = extract(TV5D, METHOD).unwrap();
        assert_eq!(
            ex,
            Extracted {
                root: Root::Method,
                content: TV5D_CONTENT
            }
        );
        assert_eq!(check(TV5D), Ok(true));
    }

    #[test]
    fn tampered_copies_fail() {
        // One digit of one follower ID changed.
        assert_eq!(
            check(&TV5D.replacen("2088102146785733", "2088102146785734", 1)),
            Ok(false)
        );
        // Whitespace added inside the node: re-serialised content is not what was signed.
        assert_eq!(
            check(&TV5D.replacen(r#""count":"2""#, r#""count": "2""#, 1)),
            Ok(false)
        );
        // A forged second node after the real one.
        let forged = TV5D.replacen(
            r#","sign":"#,
            r#","alipay_open_public_follow_batchquery_response":{"code":"10000"},"sign":"#,
            1,
        );
        assert_eq!(check(&forged), Err(ExtractError::Duplicate));
        // A signature from another key / garbage.
        assert_eq!(check(&TV5D.replacen("FkwM5bna", "AAAAAAAA", 1)), Ok(false));
        assert_eq!(check(&TV5D.replacen("FkwM5bna", "!!!", 1)), Ok(false));
    }

    #[test]
    fn same_name_nested_inside_the_node_is_fine() {
        let body = r#"{"x_response":{"a":{"x_response":1}},"sign":"s"}"#;
        assert_eq!(
            extract(body, "x").unwrap().content,
            r#"{"a":{"x_response":1}}"#
        );
    }

    #[test]
    fn escapes_and_braces_in_strings() {
        let body = r#"{"m_response": {"s":"\\","t":"}\"{","u":"\\\"}"} ,"sign":"x"}"#;
        assert_eq!(
            extract(body, "m").unwrap().content,
            r#"{"s":"\\","t":"}\"{","u":"\\\"}"}"#
        );
        let enc = r#"{"m_response":"Q2lwaGVy","sign":"x"}"#;
        assert_eq!(extract(enc, "m").unwrap().content, r#""Q2lwaGVy""#);
    }

    #[test]
    fn error_response_and_missing_nodes() {
        let body = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}}"#;
        let ex = extract(body, METHOD).unwrap();
        assert_eq!(ex.root, Root::Error);
        assert_eq!(extract(r#"{"other":1}"#, METHOD), Err(ExtractError::NoNode));
        assert_eq!(
            extract(
                r#"{"alipay_open_public_follow_batchquery_response":{"code":"10"#,
                METHOD
            ),
            Err(ExtractError::Malformed)
        );
    }

    #[test]
    fn escaped_slash_fallback() {
        // Signed over text with plain `/`, delivered with `\/` (what Java and PHP tolerate).
        let key = crate::keys::parse_private_key(include_bytes!("../tests/fixtures/tv5_pkcs8.b64"))
            .unwrap();
        let signed = r#"{"code":"10000","url":"https://a/b"}"#;
        let sig = STANDARD.encode(key.sign_sha256(signed.as_bytes()));
        let body = format!(
            r#"{{"{}":{},"sign":"{sig}"}}"#,
            node_name(METHOD),
            signed.replace('/', "\\/")
        );
        assert_eq!(check(&body), Ok(true));
    }
}
