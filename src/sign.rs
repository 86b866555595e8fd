//! The request side of the gateway protocol (sections 2-3), as pure functions: common parameters,
//! the string-to-sign, the RSA2 signature and the form encoding. No clock, no network.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, FixedOffset, Utc};

use crate::keys::AppKey;

/// Beijing time, as a fixed offset: never a tz database lookup (static binaries have none).
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// `timestamp` parameter: `yyyy-MM-dd HH:mm:ss` in UTC+8 (protocol section 2).
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.with_timezone(&beijing())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The parameters of one request, in the order they will be sent; `sign` is added by [`sign`].
#[derive(Clone, Debug)]
pub struct Request {
    pub params: Vec<(String, String)>,
    pub string_to_sign: String,
}

/// Everything that identifies the caller and the call, except the business content.
pub struct Common<'a> {
    pub app_id: &'a str,
    pub method: &'a str,
    pub timestamp: &'a str,
    /// Extra signed parameters (cert mode's `app_cert_sn`, `alipay_root_cert_sn`; `app_auth_token`).
    pub extra: &'a [(&'a str, &'a str)],
}

/// Build the parameter set. Empty or all-whitespace values are dropped here, once, so that the set
/// sent is exactly the set signed (protocol section 3, step 2).
pub fn params(common: &Common<'_>, biz_content: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("app_id", common.app_id),
        ("method", common.method),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", common.timestamp),
        ("version", "1.0"),
        ("biz_content", biz_content),
    ]
    .iter()
    .chain(common.extra.iter())
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    params
}

/// `k1=v1&k2=v2…`: every parameter except `sign`, sorted by key in byte order, raw values.
pub fn string_to_sign(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && !v.trim().is_empty())
        .collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// RSA2 signature of the UTF-8 bytes of `content`, standard base64 with padding, no line breaks.
pub fn signature(key: &AppKey, content: &str) -> String {
    STANDARD.encode(key.sign_sha256(content.as_bytes()))
}

/// Sign a parameter set: compute the string-to-sign, then append `sign`.
pub fn sign(key: &AppKey, mut params: Vec<(String, String)>) -> Request {
    let string_to_sign = string_to_sign(&params);
    let sig = signature(key, &string_to_sign);
    params.push(("sign".to_string(), sig));
    Request {
        params,
        string_to_sign,
    }
}

/// Which parameters go in the URL query (the Java SDK's layout); the rest go in the form body.
fn in_query(key: &str) -> bool {
    key != "biz_content"
}

/// The query string (common parameters and `sign`) and the form body (`biz_content`), each
/// `application/x-www-form-urlencoded` after signing (protocol section 1).
pub fn encode(request: &Request) -> (String, String) {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &request.params {
        if in_query(k) {
            query.append_pair(k, v);
        } else {
            body.append_pair(k, v);
        }
    }
    (query.finish(), body.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_private_key;

    fn tv5_key() -> AppKey {
        parse_private_key(include_bytes!("../tests/fixtures/tv5_pkcs8.b64")).unwrap()
    }

    const TV5A_BIZ: &str = r#"{"next_user_id":"2088102146785722"}"#;
    const TV5C_BIZ: &str = r##"{"to_user_id":"2088102146785722","template":{"template_id":"TM000000001","context":{"head_color":"#85be53","url":"https://example.com/detail?id=1","action_name":"查看详情","first":{"color":"#000000","value":"您好"},"keyword1":{"color":"#85be53","value":"HU7142"},"keyword2":{"color":"#85be53","value":"2024-05-13"},"remark":{"color":"#999999","value":"感谢使用"}}}}"##;

    fn common<'a>(method: &'a str, extra: &'a [(&'a str, &'a str)]) -> Common<'a> {
        Common {
            app_id: "2021000000000000",
            method,
            timestamp: "2024-05-13 17:49:20",
            extra,
        }
    }

    #[test]
    fn tv5a_string_and_signature() {
        let p = params(
            &common(
                "alipay.open.public.follow.batchquery",
                &[("app_auth_token", "")],
            ),
            TV5A_BIZ,
        );
        let req = sign(&tv5_key(), p);
        assert_eq!(
            req.string_to_sign,
            r#"app_id=2021000000000000&biz_content={"next_user_id":"2088102146785722"}&charset=utf-8&format=JSON&method=alipay.open.public.follow.batchquery&sign_type=RSA2&timestamp=2024-05-13 17:49:20&version=1.0"#
        );
        assert!(
            !req.params.iter().any(|(k, _)| k == "app_auth_token"),
            "empty params are not sent"
        );
        let sign = &req.params.iter().find(|(k, _)| k == "sign").unwrap().1;
        assert_eq!(
            sign,
            "e3LEiNmDOCG+TMbRu6P6X6QIWv3thU6+2rEQWF9+9sHpQVwtAe6Fk2K0ZYSC3eu9PPLRULxa6ZwACTlr0vtgXkVVVjQTVnwouUBNxem0EhWKlhD8encZHaky0iZ7jaaq1erxuBJcQppCW5EtZee5P1rHA9mKN1kfQzqSm2GFJnZd0scPcIxugpD+OhK1m1dvlpmywBXcJZSy4RzRUJmku5ZP7D9e8QYvgYv3/Jjh+3A0eb6P9pJXxNR2/W8tY8Q3P9z+BgRyGMB6OL0zUuqnXhLqRaZqsKxkf54ZSwNstZycc5t1M2j3Sw30R3DjF6WdggpCOGUdSiveNgB4z/zt6w=="
        );
    }

    #[test]
    fn tv5c_utf8_template_message() {
        let p = params(
            &common("alipay.open.public.message.single.send", &[]),
            TV5C_BIZ,
        );
        let req = sign(&tv5_key(), p);
        assert_eq!(
            req.string_to_sign,
            format!(
                "app_id=2021000000000000&biz_content={TV5C_BIZ}&charset=utf-8&format=JSON&method=alipay.open.public.message.single.send&sign_type=RSA2&timestamp=2024-05-13 17:49:20&version=1.0"
            )
        );
        assert_eq!(
            req.params.last().unwrap().1,
            "Mltfa5TPGahE2ZKZcRpCZPgYA5EdfNVTv1EdKVIFoU5Tu87HSO/wYBPChHcbQSa0h3wclj3B/bbZqgumEsHUfxitnxEGabeIii/9b/8O435dkPdgpKegke6HISvt/c6/6f/4jOFszD/ATe3sf9Iz0RAJ6Y1Dh56hYalmojToVUC5ECZqYUcW9YIH1HZfwAPrGupzmK/u+VvVZJ/L7IZMidrBqVeUpvSfjTWpqD5UEzQZIuMhKErtJkmKFwfSlo7mJAd5HGmF2jMHJMPjTr6/re0Sz2awEFCuUiHgZfenY9JniE8dnpLQChegDZntrNDYeRvE3J3BRhWzTBMztwzTVg=="
        );
    }

    #[test]
    fn matches_openssl_dgst_vector() {
        // tests/fixtures/README.md: `openssl dgst -sha256 -sign tv5_private.pem openssl_vector.txt | base64 -w0`
        let content = include_str!("../tests/fixtures/openssl_vector.txt");
        let expected = include_str!("../tests/fixtures/openssl_vector.sig");
        assert_eq!(signature(&tv5_key(), content), expected.trim());
    }

    #[test]
    fn canonical_rules() {
        #[track_caller]
        fn case(input: &[(&str, &str)], expected: &str) {
            let owned: Vec<(String, String)> = input
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(string_to_sign(&owned), expected);
        }
        case(&[("b", "2"), ("a", "1")], "a=1&b=2");
        case(&[("sign", "x"), ("sign_type", "RSA2")], "sign_type=RSA2");
        case(&[("a", ""), ("b", "  "), ("c", "3")], "c=3");
        // Byte order, not locale order: uppercase sorts before lowercase, `_` between them.
        case(&[("a_b", "1"), ("aB", "2"), ("ab", "3")], "aB=2&a_b=1&ab=3");
        // Values are raw: no URL encoding inside the string-to-sign.
        case(&[("k", "a b&c=d/中")], "k=a b&c=d/中");
    }

    #[test]
    fn timestamps_are_beijing_time_whatever_the_local_zone() {
        let t = DateTime::parse_from_rfc3339("2024-05-13T09:49:20Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2024-05-13 17:49:20");
        let t = DateTime::parse_from_rfc3339("2024-12-31T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2025-01-01 00:30:00");
    }

    #[test]
    fn form_encoding_puts_biz_content_in_the_body() {
        let p = params(&common("m.x", &[]), r#"{"a":"b c/中"}"#);
        let req = Request {
            params: p,
            string_to_sign: String::new(),
        };
        let (query, body) = encode(&req);
        assert_eq!(body, "biz_content=%7B%22a%22%3A%22b+c%2F%E4%B8%AD%22%7D");
        assert!(
            query.contains("timestamp=2024-05-13+17%3A49%3A20"),
            "{query}"
        );
        assert!(!query.contains("biz_content"));
    }
}
