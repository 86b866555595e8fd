//! The gateway client: one keep-alive `ureq::Agent`, signed calls, response verification, error
//! mapping and the retry policy for read-only calls. Knows nothing about CSV or the terminal
//! (apart from one warning line); only this module touches the network and the clock.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rsa::PublicKey;
use serde::Deserialize;
use ureq::Agent;

use crate::keys::AppKey;
use crate::response::{self, Root};
use crate::sign;

pub const PROD_URL: &str = "https://openapi.alipay.com/gateway.do";
pub const SANDBOX_URL: &str = "https://openapi-sandbox.dl.alipaydev.com/gateway.do";

/// Resolve `prod`, `sandbox` or a URL; plain `http://` only for loopback addresses. Messages
/// name `--gateway`; the caller renames it when the value came from `ALIPAY_GATEWAY`.
pub fn resolve_url(gateway: &str) -> Result<String, String> {
    let url = match gateway.trim() {
        "" | "prod" | "production" => return Ok(PROD_URL.to_string()),
        "sandbox" => return Ok(SANDBOX_URL.to_string()),
        other => other,
    };
    let uri: ureq::http::Uri = url.parse().map_err(|_| {
        format!("--gateway {url:?} is not a URL; use prod, sandbox or https://host/gateway.do")
    })?;
    let host = uri
        .host()
        .ok_or_else(|| format!("--gateway {url:?} has no host"))?;
    if uri.query().is_some() {
        return Err(format!(
            "--gateway {url:?} has a query string; give the gateway URL without one (every parameter \
             must be signed, so the tool adds them itself)"
        ));
    }
    match uri.scheme_str() {
        Some("https") => Ok(url.to_string()),
        Some("http") if is_loopback(host) => Ok(url.to_string()),
        Some("http") => Err(format!(
            "--gateway {url:?} uses plain http to a non-loopback host; requests carry your app's \
             signature and follower data, so only https is allowed (http only for 127.0.0.1/localhost)"
        )),
        _ => Err(format!("--gateway {url:?} must start with https://")),
    }
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Network settings shared by every command.
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub verbose: bool,
    pub quiet: bool,
}

/// `code`/`msg`/`sub_code`/`sub_msg` of a response node.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
}

/// A gateway answer that was not `10000`.
#[derive(Clone, Debug)]
pub struct GatewayError {
    pub method: String,
    pub status: Status,
    pub trace_id: Option<String>,
    /// For `isv.invalid-signature`: our string-to-sign, to compare with the gateway's.
    pub our_string: Option<String>,
}

impl GatewayError {
    /// The sub_code without the optional `PUB.` prefix some life-account codes carry.
    pub fn sub_code(&self) -> &str {
        let sub = self.status.sub_code.as_deref().unwrap_or("");
        sub.strip_prefix("PUB.").unwrap_or(sub)
    }
}

#[derive(Clone, Debug)]
pub enum CallError {
    /// The connection could not be made: the request was certainly not delivered.
    Connect { url: String, detail: String },
    /// The exchange broke after the request may have reached the gateway (timeout, reset, truncation).
    Transport { detail: String },
    /// An HTTP status other than 200 (body kept for the message).
    Http { status: u16, body: String },
    /// The gateway answered with a code other than 10000.
    Gateway(Box<GatewayError>),
    /// The body could not be understood (not JSON, no response node).
    BadResponse { detail: String },
    /// The response signature did not verify with the configured Alipay public key.
    Verification { detail: String },
}

impl CallError {
    /// Which retry bucket this failure falls in, if a read-only call may retry it.
    pub fn retry_kind(&self) -> Option<&'static str> {
        match self {
            CallError::Connect { .. } => Some("connect"),
            CallError::Transport { .. } => Some("transport"),
            CallError::Http { status, .. } if *status >= 500 => Some("http-5xx"),
            CallError::BadResponse { .. } => Some("bad-response"),
            CallError::Gateway(g) => match (g.status.code.as_str(), g.sub_code()) {
                ("20000", _) => Some("20000-unknown-error"),
                ("40005", _) => Some("40005-rate-limited"),
                ("40004", "SYSTEM_ERROR") => Some("40004-system-error"),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect { url, detail } => write!(
                f,
                "cannot connect to the gateway {url}: {detail} (check the address, your network or \
                 HTTPS_PROXY; for the local emulator, start `alipaylife emulate` first)"
            ),
            CallError::Transport { detail } => {
                write!(f, "the gateway call failed in transit: {detail}")
            }
            CallError::Http { status, body } => {
                write!(f, "the gateway answered HTTP {status}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            CallError::BadResponse { detail } => {
                write!(f, "the gateway's answer is not understood: {detail}")
            }
            CallError::Verification { detail } => write!(f, "{detail}"),
            CallError::Gateway(g) => fmt_gateway_error(g, f),
        }
    }
}

fn fmt_gateway_error(g: &GatewayError, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let s = &g.status;
    write!(f, "{} failed: code {} {}", g.method, s.code, s.msg)?;
    if let Some(sub) = &s.sub_code {
        write!(f, ", sub_code {sub}")?;
    }
    if let Some(sub_msg) = &s.sub_msg {
        write!(f, " ({})", sub_msg.replace("&amp;", "&"))?;
    }
    if let Some(trace) = &g.trace_id {
        write!(
            f,
            "\n  trace id: {trace} (diagnose at https://open.alipay.com/api/errCheck?traceId={trace})"
        )?;
    }
    if g.sub_code() == "isv.invalid-signature" {
        write!(
            f,
            "\n{}",
            signature_diagnosis(g.our_string.as_deref(), s.sub_msg.as_deref())
        )?;
    } else if let Some(hint) = hint(&s.code, g.sub_code()) {
        write!(f, "\n  what to do: {hint}")?;
    }
    Ok(())
}

/// The gateway quotes its own string-to-sign in `sub_msg` (with `&` HTML-escaped); compare it with ours.
pub fn signature_diagnosis(ours: Option<&str>, sub_msg: Option<&str>) -> String {
    let theirs = sub_msg.and_then(|m| {
        let i = m.find("验签字符串为")?;
        let rest = &m[i + "验签字符串为".len()..];
        let rest = rest.trim_start_matches(['：', ':', ' ']);
        Some(rest.replace("&amp;", "&"))
    });
    let mut out = String::new();
    if let Some(ours) = ours {
        out.push_str(&format!("  our string-to-sign:     {ours}\n"));
    }
    match (ours, theirs.as_deref()) {
        (Some(ours), Some(theirs)) if ours == theirs => {
            out.push_str(&format!("  the gateway's string:   {theirs}\n"));
            out.push_str(
                "  the strings match, so the key is the problem: the app public key uploaded to Alipay \
                 does not belong to this private key.\n  what to do: run `alipaylife check` to print the \
                 public half of this key and compare it with the one in the Alipay console \
                 (interface signing method), or use the private key that belongs to the uploaded one",
            );
        }
        (Some(ours), Some(theirs)) => {
            out.push_str(&format!("  the gateway's string:   {theirs}\n"));
            let at = ours.chars().zip(theirs.chars()).take_while(|(a, b)| a == b).count();
            out.push_str(&format!(
                "  the strings differ from character {}: the request was changed on its way or \
                 encoded differently (a proxy rewriting the body, a non-UTF-8 value); the key itself \
                 may be fine",
                at + 1
            ));
        }
        _ => out.push_str(
            "  the gateway did not quote its string-to-sign; check that the app public key uploaded \
             to Alipay belongs to this private key (`alipaylife check` prints it)",
        ),
    }
    out
}

fn hint(code: &str, sub_code: &str) -> Option<&'static str> {
    Some(match (code, sub_code) {
        (_, "isv.invalid-app-id") => {
            "check the app id (--app-id / ALIPAY_APP_ID) and that the gateway is the right one \
             (an app made in the sandbox only exists there)"
        }
        (_, "isv.invalid-timestamp") => {
            "the computer's clock is off; correct it (the tool sends Beijing time computed from UTC)"
        }
        ("40006", _) => {
            "the app lacks the permission for this API: add the Life Account (生活号) capability \
             to the app in the Alipay Open Platform console and wait for it to take effect"
        }
        ("20001", _) => {
            "the authorization token is invalid or expired; obtain a new app_auth_token"
        }
        ("40005", _) => "the app is calling too fast; wait and try again, or lower the rate",
        ("20000", _) => "Alipay's service is unavailable right now; try again later",
        _ => return None,
    })
}

/// A successful reply: the raw node text, exactly what Alipay signed.
#[derive(Debug)]
pub struct Reply {
    pub content: String,
    /// The HTTP `Date` header, for the clock check.
    pub date: Option<String>,
    /// Whether the signature was verified with an Alipay public key.
    pub verified: bool,
}

/// Retries made, by kind, for the summary.
#[derive(Debug, Default)]
pub struct RetryStats {
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl RetryStats {
    pub fn add(&self, kind: &'static str) {
        *self
            .by_kind
            .lock()
            .expect("stats lock")
            .entry(kind)
            .or_insert(0) += 1;
    }
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.by_kind.lock().expect("stats lock").clone()
    }
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// Certificate mode (protocol section 6): the SNs sent with every call, and the Alipay
/// certificates' keys by SN for verifying answers.
#[derive(Clone, Debug)]
pub struct CertTrust {
    pub app_cert_sn: String,
    pub root_cert_sn: String,
    pub alipay: Vec<(String, PublicKey)>,
}

/// How answers are verified.
#[derive(Clone, Debug)]
pub enum Trust {
    /// No Alipay key: answers are used unverified (and the user is told once).
    Unverified,
    /// Key mode: the Alipay public key.
    Key(PublicKey),
    /// Certificate mode.
    Certs(CertTrust),
}

impl From<Option<PublicKey>> for Trust {
    fn from(key: Option<PublicKey>) -> Trust {
        key.map_or(Trust::Unverified, Trust::Key)
    }
}

pub struct Client {
    agent: Agent,
    settings: Settings,
    app_id: String,
    key: AppKey,
    trust: Trust,
    warned_unverified: AtomicBool,
    pub retries: RetryStats,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.settings.url)
            .field("app_id", &self.app_id)
            .finish()
    }
}

impl Client {
    pub fn new(settings: Settings, app_id: String, key: AppKey, trust: impl Into<Trust>) -> Client {
        let trust = trust.into();
        let loopback = settings
            .url
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|u| u.host().map(is_loopback))
            .unwrap_or(false);
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_global(Some(settings.timeout))
            .user_agent(concat!("alipaylife/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(64);
        if loopback {
            // The local emulator is never reached through a proxy, whatever HTTPS_PROXY says.
            config = config.proxy(None);
        }
        let agent: Agent = config.build().into();
        Client {
            agent,
            settings,
            app_id,
            key,
            trust,
            warned_unverified: AtomicBool::new(false),
            retries: RetryStats::default(),
        }
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    pub fn verifies(&self) -> bool {
        !matches!(self.trust, Trust::Unverified)
    }

    /// A read-only call, retried with exponential backoff and jitter on transport errors, HTTP 5xx,
    /// 20000 and 40005 (never on 20001/40001/40002/40003/40006), at most `retries` times.
    pub fn call_read(&self, method: &str, biz_content: &str) -> Result<Reply, CallError> {
        let mut attempt = 0u32;
        loop {
            match self.call_once(method, biz_content) {
                Ok(reply) => return Ok(reply),
                Err(err) => {
                    let Some(kind) = err.retry_kind() else {
                        return Err(err);
                    };
                    if attempt >= self.settings.retries {
                        return Err(err);
                    }
                    self.retries.add(kind);
                    let delay = backoff(attempt, kind == "40005-rate-limited");
                    if self.settings.verbose {
                        eprintln!(
                            "alipaylife: {kind}; retry {} in {} ms: {err}",
                            attempt + 1,
                            delay.as_millis()
                        );
                    }
                    std::thread::sleep(delay);
                    attempt += 1;
                }
            }
        }
    }

    /// One signed POST and the checks on its answer. No retries.
    pub fn call_once(&self, method: &str, biz_content: &str) -> Result<Reply, CallError> {
        let timestamp = sign::timestamp(chrono::Utc::now());
        let cert_params;
        let extra: &[(&str, &str)] = match &self.trust {
            Trust::Certs(c) => {
                cert_params = [
                    ("app_cert_sn", c.app_cert_sn.as_str()),
                    ("alipay_root_cert_sn", c.root_cert_sn.as_str()),
                ];
                &cert_params
            }
            _ => &[],
        };
        let common = sign::Common {
            app_id: &self.app_id,
            method,
            timestamp: &timestamp,
            extra,
        };
        let request = sign::sign(&self.key, sign::params(&common, biz_content));
        let (query, body) = sign::encode(&request);
        let started = Instant::now();
        if self.settings.verbose {
            eprintln!("alipaylife: -> {method} {biz_content}");
        }
        let url = format!("{}?{query}", self.settings.url);
        let result = self
            .agent
            .post(&url)
            .content_type("application/x-www-form-urlencoded;charset=utf-8")
            .send(body.as_bytes());
        let mut response = result.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let trace_header = ["alipay-trace-id", "trace_id", "trace-id"]
            .iter()
            .find_map(|h| {
                response
                    .headers()
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| CallError::Transport {
                detail: format!("reading the answer: {e}"),
            })?;
        if status != 200 {
            return Err(CallError::Http {
                status,
                body: snippet(&text),
            });
        }
        let reply = self
            .check_reply(method, &text, trace_header, &request.string_to_sign)
            .map(|r| Reply { date, ..r });
        if self.settings.verbose {
            let outcome = match &reply {
                Ok(_) => "10000".to_string(),
                Err(CallError::Gateway(g)) => format!(
                    "{} {}",
                    g.status.code,
                    g.status.sub_code.as_deref().unwrap_or("")
                ),
                Err(e) => e.to_string(),
            };
            eprintln!(
                "alipaylife: <- {method} {outcome} ({} bytes, {} ms)",
                text.len(),
                started.elapsed().as_millis()
            );
        }
        reply
    }

    fn transport_error(&self, err: ureq::Error) -> CallError {
        use ureq::Error as E;
        let url = self.settings.url.clone();
        match err {
            E::ConnectionFailed | E::HostNotFound => CallError::Connect {
                url,
                detail: err.to_string(),
            },
            E::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                CallError::Connect {
                    url,
                    detail: "connection refused".to_string(),
                }
            }
            E::Timeout(kind)
                if kind.to_string().contains("connect") || kind.to_string().contains("resolve") =>
            {
                CallError::Connect {
                    url,
                    detail: format!("timed out ({kind})"),
                }
            }
            E::Timeout(kind) => CallError::Transport {
                detail: format!(
                    "no complete answer within {} s ({kind}); raise --timeout if the network is slow",
                    self.settings.timeout.as_secs_f64()
                ),
            },
            other => CallError::Transport {
                detail: other.to_string(),
            },
        }
    }

    fn check_reply(
        &self,
        method: &str,
        body: &str,
        trace_header: Option<String>,
        our_string: &str,
    ) -> Result<Reply, CallError> {
        let extracted = response::extract(body, method).map_err(|e| CallError::BadResponse {
            detail: format!("{e}: {}", snippet(body)),
        })?;
        let status: Status =
            serde_json::from_str(extracted.content).map_err(|e| CallError::BadResponse {
                detail: format!("{e}: {}", snippet(body)),
            })?;
        let envelope = response::envelope(body).map_err(|e| CallError::BadResponse {
            detail: format!("{e}: {}", snippet(body)),
        })?;
        let success = status.code == "10000" && extracted.root == Root::Method;
        let verified = self.verify(method, extracted.content, &envelope, success)?;
        if !success {
            let trace_id = trace_header.or_else(|| trace_from_sub_msg(status.sub_msg.as_deref()));
            let our_string = Some(our_string.to_string());
            return Err(CallError::Gateway(Box::new(GatewayError {
                method: method.to_string(),
                status,
                trace_id,
                our_string,
            })));
        }
        Ok(Reply {
            content: extracted.content.to_string(),
            date: None,
            verified,
        })
    }
}

impl Client {
    /// Apply the verification policy (protocol section 4, step 10): a success must verify; a failure
    /// must verify when it is signed; an unsigned failure is accepted as an unverified error.
    fn verify(
        &self,
        method: &str,
        content: &str,
        envelope: &response::Envelope,
        success: bool,
    ) -> Result<bool, CallError> {
        let refuse = |detail: String| Err(CallError::Verification { detail });
        let key = match &self.trust {
            Trust::Unverified => {
                if !self.settings.quiet && !self.warned_unverified.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "alipaylife: warning: responses are not verified (no Alipay public key: set \
                         --alipay-public-key-file or ALIPAY_PUBLIC_KEY)"
                    );
                }
                return Ok(false);
            }
            Trust::Key(key) => key,
            Trust::Certs(certs) => match envelope.alipay_cert_sn.as_deref() {
                Some(sn) => match certs.alipay.iter().find(|(s, _)| s == sn) {
                    Some((_, key)) => key,
                    None => {
                        let ours: Vec<&str> =
                            certs.alipay.iter().map(|(s, _)| s.as_str()).collect();
                        return refuse(format!(
                            "the {method} answer is signed by the Alipay certificate with SN {sn}, but \
                             the configured Alipay certificate has SN {}: Alipay has probably rotated \
                             its certificate; download the current alipayCertPublicKey_RSA2.crt from \
                             the console",
                            ours.join(", ")
                        ));
                    }
                },
                None if success => {
                    return refuse(format!(
                        "the {method} answer has no alipay_cert_sn, but certificate mode is configured; \
                         a successful certificate-mode answer without one is refused (is the app really \
                         in certificate mode?)"
                    ));
                }
                None => match certs.alipay.first() {
                    Some((_, key)) => key,
                    None => return Ok(false),
                },
            },
        };
        match envelope.sign.as_deref() {
            Some(sig) if response::verify(content, sig, key) => Ok(true),
            Some(_) => refuse(format!(
                "the signature of the {method} answer does not verify with the configured Alipay \
                 {}: the answer was altered on its way, or the key is not Alipay's (it must be the \
                 \"Alipay public key\" from the console, not your app's public key); nothing from \
                 this answer was used",
                if matches!(self.trust, Trust::Certs(_)) {
                    "certificate"
                } else {
                    "public key"
                }
            )),
            None if success => refuse(format!(
                "the {method} answer is not signed, but an Alipay public key is configured; an \
                 unsigned success is refused (check --gateway points at Alipay)"
            )),
            None => Ok(false),
        }
    }
}

fn trace_from_sub_msg(sub_msg: Option<&str>) -> Option<String> {
    let m = sub_msg?;
    let i = m.find("traceId=")?;
    let id: String = m[i + 8..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!id.is_empty()).then_some(id)
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Exponential backoff with jitter: 250 ms, 500 ms, 1 s … capped at 15 s; rate limits start at 1 s.
pub fn backoff(attempt: u32, rate_limited: bool) -> Duration {
    let base_ms: u64 = if rate_limited { 1000 } else { 250 };
    let cap = base_ms.saturating_mul(1 << attempt.min(10)).min(15_000);
    // Jitter from std's randomly keyed hasher: half the delay fixed, half random.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(cap / 2 + random % (cap / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        assert_eq!(resolve_url("prod").unwrap(), PROD_URL);
        assert_eq!(resolve_url("sandbox").unwrap(), SANDBOX_URL);
        assert!(resolve_url("http://127.0.0.1:8080/gateway.do").is_ok());
        assert!(resolve_url("http://localhost:8080/gateway.do").is_ok());
        assert!(resolve_url("http://[::1]:8080/gateway.do").is_ok());
        assert!(resolve_url("https://example.com/gateway.do").is_ok());
        assert!(
            resolve_url("http://example.com/gateway.do")
                .unwrap_err()
                .contains("plain http")
        );
        assert!(
            resolve_url("http://10.0.0.1/gateway.do")
                .unwrap_err()
                .contains("plain http")
        );
        assert!(
            resolve_url("https://openapi.alipay.com/gateway.do?charset=utf-8")
                .unwrap_err()
                .contains("query")
        );
        assert!(resolve_url("ftp://x/y").is_err());
    }

    #[test]
    fn retry_policy() {
        let g = |code: &str, sub: &str| {
            CallError::Gateway(Box::new(GatewayError {
                method: "m".into(),
                status: Status {
                    code: code.into(),
                    msg: String::new(),
                    sub_code: Some(sub.into()),
                    sub_msg: None,
                },
                trace_id: None,
                our_string: None,
            }))
        };
        assert!(g("20000", "isp.unknow-error").retry_kind().is_some());
        assert!(g("40005", "isv.app-call-limited").retry_kind().is_some());
        for code in ["20001", "40001", "40002", "40003", "40006"] {
            assert_eq!(
                g(code, "x").retry_kind(),
                None,
                "{code} must not be retried"
            );
        }
        assert!(
            CallError::Http {
                status: 502,
                body: String::new()
            }
            .retry_kind()
            .is_some()
        );
        assert!(
            CallError::Http {
                status: 404,
                body: String::new()
            }
            .retry_kind()
            .is_none()
        );
        assert!(
            CallError::Verification {
                detail: String::new()
            }
            .retry_kind()
            .is_none()
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let d = backoff(attempt, false).as_millis() as u64;
            let cap = (250u64 << attempt.min(10)).min(15_000);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d} ms");
        }
    }

    #[test]
    fn diagnosis_tells_key_problem_from_string_problem() {
        let ours = "app_id=1&charset=utf-8&method=m&sign_type=RSA2&timestamp=2024-05-13 17:49:20&version=1.0";
        let sub = format!(
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{}",
            ours.replace('&', "&amp;")
        );
        let same = signature_diagnosis(Some(ours), Some(&sub));
        assert!(
            same.contains("the strings match, so the key is the problem"),
            "{same}"
        );
        let other = signature_diagnosis(
            Some(&ours.replace("charset=utf-8", "charset=GBK")),
            Some(&sub),
        );
        assert!(
            other.contains("the strings differ from character 18"),
            "{other}"
        );
    }

    #[test]
    fn trace_id_from_sub_msg() {
        assert_eq!(
            trace_from_sub_msg(Some(
                "出错。解决方案：https://open.alipay.com/api/errCheck?traceId=0b5fabc1&x=1"
            )),
            Some("0b5fabc1".to_string())
        );
        assert_eq!(trace_from_sub_msg(Some("nothing")), None);
    }
}
