//! The emulated Alipay gateway: it parses requests and rebuilds the string-to-sign with its own
//! code (never the client's `sign` module, so a signing bug cannot hide behind a mirrored check),
//! checks what the real gateway checks with the real codes, and answers like Alipay: the
//! `<method>_response` node with `/` escaped as `\/`, signed with the emulator's own "Alipay" key;
//! gateway-level errors unsigned under `error_response`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{NaiveDateTime, TimeZone};
use rsa::PublicKey;
use serde::Serialize;

use super::faults::{Fault, Faults};
use super::followers::{Followers, Next};
use super::http::{Handler, Reply, Request};
use super::messages::{Messages, SendOutcome};

pub const FOLLOW_BATCHQUERY: &str = "alipay.open.public.follow.batchquery";
pub const MESSAGE_SINGLE_SEND: &str = "alipay.open.public.message.single.send";
const METHODS: &[&str] = &[FOLLOW_BATCHQUERY, MESSAGE_SINGLE_SEND];

/// How far the request timestamp may be from the emulator's clock. The real tolerance is
/// UNCONFIRMED; 15 minutes is the value the issue tracker settled on.
const MAX_SKEW_SECS: i64 = 15 * 60;

const JSON: &str = "application/json;charset=utf-8";

pub struct Gateway {
    pub app_id: String,
    pub app_public: PublicKey,
    /// Alipay's private key, which signs every answer.
    pub alipay_signer: crate::keys::Signer,
    pub followers: Followers,
    pub messages: Messages,
    pub faults: Faults,
    pub latency: Duration,
    pub slow: Duration,
    /// Answer 40006 to the Life Account APIs, as for an app without the capability.
    pub no_life_account: bool,
    /// Seconds added to the emulator's clock (Date header and timestamp check).
    pub clock_offset_secs: i64,
    /// Certificate mode: the SNs requests must carry, and the SN answers are signed under.
    pub cert: Option<CertSns>,
}

#[derive(Clone, Debug)]
pub struct CertSns {
    pub app_cert_sn: String,
    pub root_cert_sn: String,
    pub alipay_cert_sn: String,
}

/// An answer before faults are applied.
struct Answer {
    body: String,
}

impl Handler for Gateway {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::seconds(self.clock_offset_secs)
    }

    fn handle(&self, request: &Request) -> Reply {
        if request.path() != "/gateway.do" {
            return plain(404, "not found: the gateway is at /gateway.do\n");
        }
        if request.method != "POST" && request.method != "GET" {
            return plain(405, "use POST\n");
        }
        let params = parse_params(request);
        let method = params.get("method").cloned().unwrap_or_default();
        let fault = self.faults.pick(&method, |f| match f {
            Fault::RepeatId => method == FOLLOW_BATCHQUERY,
            _ => true,
        });
        // Network faults happen whatever the request says.
        match fault {
            Some(Fault::Reset) => {
                return Reply::Drop {
                    delay: self.latency,
                };
            }
            Some(Fault::Http502) => {
                return Reply::Send {
                    status: 502,
                    content_type: "text/html",
                    body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
                    delay: self.latency,
                };
            }
            _ => {}
        }
        let answer = match self.check(&params) {
            Err(answer) => answer,
            Ok(()) => match fault {
                Some(Fault::UnknownError) => self.node(
                    &method,
                    &Status::error(
                        "20000",
                        "Service Currently Unavailable",
                        "isp.unknow-error",
                        "服务暂不可用（业务系统不可用）",
                    ),
                ),
                Some(Fault::RateLimited) => error_response(
                    "40005",
                    "Call Limited",
                    "isv.app-call-limited",
                    "调用频次超限",
                ),
                _ => self.dispatch(&method, &params, fault == Some(Fault::RepeatId)),
            },
        };
        let delay = if fault == Some(Fault::Slow) {
            self.slow
        } else {
            self.latency
        };
        let mut body = answer.body.into_bytes();
        match fault {
            Some(Fault::Truncated) => Reply::Truncate {
                status: 200,
                keep: body.len() / 2,
                body,
            },
            Some(Fault::Lost) => Reply::Drop { delay },
            Some(Fault::Tamper) => {
                // Change the last digit of the signed node (in a follower page, the last ID).
                let node_end = [&b",\"alipay_cert_sn\":"[..], b",\"sign\":"]
                    .iter()
                    .find_map(|marker| body.windows(marker.len()).rposition(|w| w == *marker))
                    .unwrap_or(body.len());
                if let Some(i) = body[..node_end].iter().rposition(|b| b.is_ascii_digit()) {
                    body[i] = if body[i] == b'9' { b'8' } else { body[i] + 1 };
                }
                Reply::Send {
                    status: 200,
                    content_type: JSON,
                    body,
                    delay,
                }
            }
            _ => Reply::Send {
                status: 200,
                content_type: JSON,
                body,
                delay,
            },
        }
    }
}

/// Query string first, then the form body; the first occurrence of a name wins.
fn parse_params(request: &Request) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let body_is_form = request.header("content-type").is_none_or(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let sources: [&[u8]; 2] = [
        request.query().as_bytes(),
        if body_is_form { &request.body } else { b"" },
    ];
    for source in sources {
        for (k, v) in form_urlencoded::parse(source) {
            params
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
    }
    params
}

/// The emulator's own canonicalisation: sorted (BTreeMap, byte order), `sign` left out, empty values
/// left out, raw values joined with `&`.
fn string_to_sign(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Serialize)]
struct Status<'a> {
    code: &'a str,
    msg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_msg: Option<&'a str>,
}

impl<'a> Status<'a> {
    fn error(code: &'a str, msg: &'a str, sub_code: &'a str, sub_msg: &'a str) -> Status<'a> {
        Status {
            code,
            msg,
            sub_code: Some(sub_code),
            sub_msg: Some(sub_msg),
        }
    }
}

#[derive(Serialize)]
struct FollowPage {
    code: &'static str,
    msg: &'static str,
    count: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open_id_list: Option<Vec<String>>,
}

/// Alipay's JSON escapes `/` inside strings; `/` cannot occur outside strings in JSON.
fn alipay_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .expect("serialise")
        .replace('/', "\\/")
}

fn error_response(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> Answer {
    let node = alipay_json(&Status::error(code, msg, sub_code, sub_msg));
    Answer {
        body: format!("{{\"error_response\":{node}}}"),
    }
}

fn missing(sub_code: &str, sub_msg: &str) -> Answer {
    error_response("40001", "Missing Required Arguments", sub_code, sub_msg)
}

fn invalid(sub_code: &str, sub_msg: &str) -> Answer {
    error_response("40002", "Invalid Arguments", sub_code, sub_msg)
}

fn plain(status: u16, text: &str) -> Reply {
    Reply::Send {
        status,
        content_type: "text/plain",
        body: text.as_bytes().to_vec(),
        delay: Duration::ZERO,
    }
}

impl Gateway {
    /// A signed `<method>_response` answer.
    fn node<T: Serialize>(&self, method: &str, value: &T) -> Answer {
        let text = alipay_json(value);
        let sig = self.alipay_signer.sign_sha256(text.as_bytes());
        let name = format!("{}_response", method.replace('.', "_"));
        // Certificate mode puts the signing certificate's SN beside `sign`, before it.
        let cert_sn = match &self.cert {
            Some(c) => format!(",\"alipay_cert_sn\":\"{}\"", c.alipay_cert_sn),
            None => String::new(),
        };
        Answer {
            body: format!(
                "{{\"{name}\":{text}{cert_sn},\"sign\":\"{}\"}}",
                STANDARD.encode(sig)
            ),
        }
    }

    /// The gateway-level checks, in the order a request is looked at.
    fn check(&self, p: &BTreeMap<String, String>) -> Result<(), Answer> {
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let Some(app_id) = get("app_id") else {
            return Err(missing("isv.missing-app-id", "缺少AppID参数"));
        };
        let Some(method) = get("method") else {
            return Err(missing("isv.missing-method", "缺少方法名参数"));
        };
        let Some(sign) = get("sign") else {
            return Err(missing("isv.missing-signature", "缺少签名参数"));
        };
        let Some(sign_type) = get("sign_type") else {
            return Err(missing("isv.missing-signature-type", "缺少签名类型参数"));
        };
        let Some(timestamp) = get("timestamp") else {
            return Err(missing("isv.missing-timestamp", "缺少时间戳参数"));
        };
        let Some(version) = get("version") else {
            return Err(missing("isv.missing-version", "缺少版本参数"));
        };
        if app_id != self.app_id {
            return Err(invalid("isv.invalid-app-id", "无效的AppID参数"));
        }
        if !METHODS.contains(&method) {
            return Err(invalid("isv.invalid-method", "不存在的方法名"));
        }
        if version != "1.0" {
            return Err(invalid("isv.invalid-parameter", "参数无效: version"));
        }
        if get("format").is_some_and(|f| !f.eq_ignore_ascii_case("json")) {
            return Err(invalid("isv.invalid-format", "无效的数据格式"));
        }
        if get("charset").is_some_and(|c| !c.eq_ignore_ascii_case("utf-8")) {
            return Err(invalid("isv.invalid-charset", "字符集错误"));
        }
        if let Some(cert) = &self.cert {
            let Some(app_sn) = get("app_cert_sn") else {
                return Err(missing("isv.missing-app-cert-sn", "缺少应用公钥证书序列号"));
            };
            let Some(root_sn) = get("alipay_root_cert_sn") else {
                return Err(missing(
                    "isv.missing-alipay-root-cert-sn",
                    "缺少支付宝根证书序列号",
                ));
            };
            if app_sn != cert.app_cert_sn {
                return Err(invalid("isv.app-cert-not-exist", "应用公钥证书不存在"));
            }
            if root_sn != cert.root_cert_sn {
                return Err(invalid(
                    "isv.invalid-alipay-root-cert-sn",
                    "无效的支付宝根证书序列号",
                ));
            }
        }
        if sign_type != "RSA2" {
            return Err(invalid("isv.invalid-signature-type", "无效的签名类型"));
        }
        let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("offset");
        let parsed = NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%S")
            .ok()
            .filter(|_| timestamp.len() == 19)
            .and_then(|t| beijing.from_local_datetime(&t).single());
        let Some(sent_at) = parsed else {
            return Err(invalid(
                "isv.invalid-timestamp",
                "非法的时间戳参数: 格式需要为yyyy-MM-dd HH:mm:ss",
            ));
        };
        if (self.now().timestamp() - sent_at.timestamp()).abs() > MAX_SKEW_SECS {
            return Err(invalid(
                "isv.invalid-timestamp",
                "非法的时间戳参数: 与网关时间相差超过15分钟",
            ));
        }
        let content = string_to_sign(p);
        let verified = STANDARD.decode(sign).ok().is_some_and(|sig| {
            self.app_public
                .pkcs1v15_verify::<sha2::Sha256>(content.as_bytes(), &sig)
                .is_ok()
        });
        if !verified {
            // As the real gateway does: under the method node, signed, quoting its own string with
            // `&` HTML-escaped.
            let sub_msg = format!(
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{}",
                content.replace('&', "&amp;")
            );
            return Err(self.node(
                method,
                &Status::error(
                    "40002",
                    "Invalid Arguments",
                    "isv.invalid-signature",
                    &sub_msg,
                ),
            ));
        }
        if let Some(biz) = get("biz_content")
            && !serde_json::from_str::<serde_json::Value>(biz).is_ok_and(|v| v.is_object())
        {
            return Err(invalid(
                "isv.invalid-parameter",
                "参数无效: biz_content不是合法的JSON对象",
            ));
        }
        Ok(())
    }

    fn dispatch(&self, method: &str, p: &BTreeMap<String, String>, repeat_id: bool) -> Answer {
        let biz: serde_json::Value = p
            .get("biz_content")
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::json!({}));
        match method {
            FOLLOW_BATCHQUERY => self.follow_batchquery(&biz, repeat_id),
            MESSAGE_SINGLE_SEND if self.no_life_account => self.node(
                method,
                &Status::error(
                    "40006",
                    "Insufficient Permissions",
                    "isv.insufficient-isv-permissions",
                    "ISV权限不足，建议在开发者中心检查对应功能是否已经添加",
                ),
            ),
            MESSAGE_SINGLE_SEND => match self.messages.single_send(&biz, &self.followers) {
                SendOutcome::Node(status) => self.node(method, &status),
                SendOutcome::RateLimited => error_response(
                    "40005",
                    "Call Limited",
                    "isv.app-call-limited",
                    "调用频次超限",
                ),
            },
            _ => invalid("isv.invalid-method", "不存在的方法名"),
        }
    }

    fn follow_batchquery(&self, biz: &serde_json::Value, repeat_id: bool) -> Answer {
        if self.no_life_account {
            let status = Status::error(
                "40006",
                "Insufficient Permissions",
                "isv.insufficient-isv-permissions",
                "ISV权限不足，建议在开发者中心检查对应功能是否已经添加",
            );
            return self.node(FOLLOW_BATCHQUERY, &status);
        }
        let field = if self.followers.openid {
            "open_id"
        } else {
            "next_user_id"
        };
        let cursor = biz
            .get(field)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty());
        let Some(page) = self.followers.page(cursor, repeat_id) else {
            let status = Status::error(
                "40004",
                "Business Failed",
                "INVALID_PARAMETER",
                "参数有误: 无效的用户ID",
            );
            return self.node(FOLLOW_BATCHQUERY, &status);
        };
        let next = match page.next {
            Next::Id(id) => Some(id),
            Next::Empty => Some(String::new()),
            Next::Missing => None,
        };
        let count = page.ids.len().to_string();
        let value = if self.followers.openid {
            FollowPage {
                code: "10000",
                msg: "Success",
                count,
                next_user_id: None,
                user_id_list: None,
                open_id: next,
                open_id_list: Some(page.ids),
            }
        } else {
            FollowPage {
                code: "10000",
                msg: "Success",
                count,
                next_user_id: next,
                user_id_list: Some(page.ids),
                open_id: None,
                open_id_list: None,
            }
        };
        self.node(FOLLOW_BATCHQUERY, &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_canonicalisation_matches_the_protocol_vector() {
        let mut p = BTreeMap::new();
        for (k, v) in [
            ("sign", "x"),
            ("version", "1.0"),
            ("timestamp", "2024-05-13 17:49:20"),
            ("sign_type", "RSA2"),
            ("method", "alipay.open.public.follow.batchquery"),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("biz_content", r#"{"next_user_id":"2088102146785722"}"#),
            ("app_id", "2021000000000000"),
            ("app_auth_token", ""),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        assert_eq!(
            string_to_sign(&p),
            r#"app_id=2021000000000000&biz_content={"next_user_id":"2088102146785722"}&charset=utf-8&format=JSON&method=alipay.open.public.follow.batchquery&sign_type=RSA2&timestamp=2024-05-13 17:49:20&version=1.0"#
        );
    }

    #[test]
    fn params_come_from_query_and_body() {
        let r = Request {
            method: "POST".into(),
            target: "/gateway.do?app_id=1&sign=a%2Bb%3D".into(),
            headers: vec![(
                "Content-Type".into(),
                "application/x-www-form-urlencoded;charset=utf-8".into(),
            )],
            body: b"biz_content=%7B%22a%22%3A%22b+c%22%7D&app_id=2".to_vec(),
        };
        let p = parse_params(&r);
        assert_eq!(p["sign"], "a+b=");
        assert_eq!(p["biz_content"], r#"{"a":"b c"}"#);
        assert_eq!(p["app_id"], "1", "first occurrence wins");
    }

    #[test]
    fn slashes_are_escaped_like_alipay() {
        assert_eq!(
            alipay_json(&serde_json::json!({"u": "https://a/b"})),
            r#"{"u":"https:\/\/a\/b"}"#
        );
    }
}
