//! `alipaylife check`: load the credentials exactly as other commands do, report them line by line,
//! then make one harmless signed call (the first follower page; nothing written) and say what it
//! proves. On failure, name the most likely cause and the fix.

use std::process::ExitCode;

use argh::FromArgs;

use crate::cli::gateway_command;
use crate::credentials;
use crate::error::{Error, Result};
use crate::export;
use crate::gateway::{CallError, Client, Trust};

gateway_command! {
    /// check the app id, keys, clock and gateway with one harmless signed call (the first follower page)
    #[derive(FromArgs, Debug)]
    #[argh(
        subcommand,
        name = "check",
        example = "alipaylife check --app-id 2021000000000001 --private-key-file app_private_key.pem --alipay-public-key-file alipay_public_key.txt"
    )]
    pub struct Args {}
}

/// The report, one line per item, on stdout.
struct Report {
    failed: Option<(String, u8)>,
}

impl Report {
    fn line(&self, status: &str, item: &str, text: &str) {
        let mut lines = text.lines();
        println!("{status:<5} {item:<15} {}", lines.next().unwrap_or(""));
        for more in lines {
            println!("{:<21} {}", "", more.trim_start());
        }
    }
    fn ok(&self, item: &str, text: &str) {
        self.line("ok", item, text);
    }
    fn info(&self, item: &str, text: &str) {
        self.line("info", item, text);
    }
    fn warn(&self, item: &str, text: &str) {
        self.line("warn", item, text);
    }
    fn fail(&mut self, item: &str, text: &str, cause: &str, code: u8) {
        self.line("FAIL", item, text);
        self.line("", "", &format!("most likely cause: {cause}"));
        self.failed.get_or_insert((cause.to_string(), code));
    }
    fn finish(self) -> Result<ExitCode> {
        match self.failed {
            None => {
                println!("all checks passed");
                Ok(ExitCode::SUCCESS)
            }
            Some((cause, code)) => {
                println!("check failed");
                let msg = format!("check failed: {cause}");
                Err(if code == 2 {
                    Error::Config(msg)
                } else {
                    Error::Failed(msg)
                })
            }
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let opts = args.gateway_opts();
    let settings = opts.settings()?;
    let flags = &opts.credentials;
    let mut report = Report { failed: None };

    let app_id = match credentials::app_id(flags.app_id.as_deref()) {
        Ok(id) => {
            report.ok("app id", &id);
            id
        }
        Err(e) => {
            report.fail(
                "app id",
                &e.to_string(),
                "the app id is missing or malformed",
                2,
            );
            return report.finish();
        }
    };
    let key = match credentials::private_key(flags) {
        Ok((key, source)) => {
            report.ok(
                "private key",
                &format!("{}, {} bits, from {source}", key.form, key.bits()),
            );
            report.info(
                "app public key",
                &format!(
                    "{}\n(must equal the 应用公钥 uploaded in the Alipay console)",
                    key.public_key_base64()
                ),
            );
            key
        }
        Err(e) => {
            report.fail(
                "private key",
                &e.to_string(),
                "the private key cannot be used as given",
                2,
            );
            return report.finish();
        }
    };
    let alipay_key = match credentials::alipay_public_key(flags) {
        Ok(Some((k, _))) if k.key == key.public_key() => {
            report.fail(
                "Alipay key",
                "this is your app's own public key, not Alipay's",
                "the app public key was given where the Alipay public key (支付宝公钥) belongs",
                2,
            );
            return report.finish();
        }
        Ok(Some((k, source))) => {
            report.ok(
                "Alipay key",
                &format!("{}, from {source}; not the app's own key", k.form),
            );
            Some(k.key)
        }
        Ok(None) if credentials::certificates(flags, &key).is_ok_and(|c| c.is_some()) => None,
        Ok(None) => {
            report.warn(
                "Alipay key",
                "not configured: answers will not be verified (--alipay-public-key-file)",
            );
            None
        }
        Err(e) => {
            report.fail(
                "Alipay key",
                &e.to_string(),
                "the Alipay public key cannot be used as given",
                2,
            );
            return report.finish();
        }
    };
    let trust = match credentials::certificates(flags, &key) {
        Ok(Some(_)) if alipay_key.is_some() => {
            report.fail(
                "certificates",
                "both an Alipay public key and certificates are given",
                "an app uses one signing method: drop --alipay-public-key-file or the certificate flags",
                2,
            );
            return report.finish();
        }
        Ok(Some(certs)) => {
            let alipay_sns: Vec<&str> = certs.alipay.iter().map(|(sn, _)| sn.as_str()).collect();
            report.ok(
                "certificates",
                &format!(
                    "app_cert_sn {}, alipay_root_cert_sn {}, Alipay certificate SN {}\n(the app certificate \
                     belongs to this private key)",
                    certs.app_cert_sn,
                    certs.root_cert_sn,
                    alipay_sns.join(", ")
                ),
            );
            Trust::Certs(certs)
        }
        Ok(None) => alipay_key.into(),
        Err(e) => {
            report.fail(
                "certificates",
                &e.to_string(),
                "the certificate files cannot be used as given",
                2,
            );
            return report.finish();
        }
    };
    report.info("gateway", &settings.url);
    // The report says whether answers are verified; the client's own warning would repeat it.
    let settings = crate::gateway::Settings {
        quiet: true,
        ..settings
    };
    let client = Client::new(settings, app_id, key, trust);
    let sent = chrono::Utc::now();
    let result = client.call_once(export::METHOD, &export::biz_content(None));
    // The gateway stamped its Date somewhere between sending and receiving: take the middle.
    let local = sent + (chrono::Utc::now() - sent) / 2;
    match result {
        Ok(reply) => {
            clock(&mut report, local, reply.date.as_deref());
            report.ok(
                "signed call",
                &format!(
                    "{} accepted: the uploaded app public key matches this private key",
                    export::METHOD
                ),
            );
            if reply.verified {
                report.ok("answers", "signature verified with the Alipay public key");
            }
            report.ok(
                "Life Account",
                "capability present: the follower list is readable",
            );
            match export::parse_page(&reply.content) {
                Ok(page) if page.ids.is_empty() => report.ok(
                    "ID kind",
                    "unknown: the first page is empty (no followers yet)",
                ),
                Ok(page) => report.ok("ID kind", &format!("{} app", page.kind)),
                Err(e) => report.fail(
                    "ID kind",
                    &e,
                    "the follower page is not in the documented shape",
                    1,
                ),
            }
        }
        Err(e) => {
            let cause = cause(&e);
            report.fail("signed call", &e.to_string(), cause, 1);
        }
    }
    report.finish()
}

/// Seconds this computer's clock (`local`, when the gateway answered) is ahead of the gateway's
/// `Date` header. The header is truncated to the second, so the gateway's clock read anywhere in
/// `[date, date + 1 s)`: compare with the middle of that second, then round. (Comparing whole
/// seconds would be off by one whenever a second boundary fell between the two readings.)
fn clock_offset(local: chrono::DateTime<chrono::Utc>, date: &str) -> Option<i64> {
    let gateway = chrono::DateTime::parse_from_rfc2822(date).ok()?;
    let millis = (local - gateway.to_utc()).num_milliseconds() - 500;
    Some((millis as f64 / 1000.0).round() as i64)
}

/// Compare the gateway's `Date` header with this computer's clock.
fn clock(report: &mut Report, local: chrono::DateTime<chrono::Utc>, date: Option<&str>) {
    let Some(offset) = date.and_then(|d| clock_offset(local, d)) else {
        report.warn(
            "clock",
            "the gateway sent no Date header; clock not checked",
        );
        return;
    };
    let text = format!("this computer is {offset:+} s from the gateway's clock (Date header)");
    match offset.abs() {
        0..=60 => report.ok("clock", &text),
        61..=600 => report.warn(
            "clock",
            &format!("{text}: correct it before it drifts past the gateway's tolerance"),
        ),
        _ => report.fail(
            "clock",
            &text,
            "this computer's clock is wrong; requests will be refused as stale",
            1,
        ),
    }
}

/// The single most likely cause of a failed call.
fn cause(err: &CallError) -> &'static str {
    match err {
        CallError::Connect { .. } => {
            "the gateway cannot be reached (address, network, proxy or firewall)"
        }
        CallError::Transport { .. } | CallError::Http { .. } => {
            "the connection to the gateway is unreliable or goes through a proxy that interferes"
        }
        CallError::BadResponse { .. } => "--gateway does not point at an Alipay gateway",
        CallError::Verification { .. } => {
            "the Alipay public key is not the one Alipay signs with for this app (copy 支付宝公钥 again, \
             from the same environment: production or sandbox)"
        }
        CallError::Gateway(g) => match (g.status.code.as_str(), g.sub_code()) {
            (_, "isv.invalid-signature") => {
                match g.our_string.as_deref().zip(g.status.sub_msg.as_deref()) {
                    Some((ours, sub)) if sub.replace("&amp;", "&").ends_with(ours) => {
                        "the app public key uploaded to Alipay does not belong to this private key"
                    }
                    _ => {
                        "the request was altered on its way, or the uploaded public key does not match"
                    }
                }
            }
            (_, "isv.invalid-app-id") => {
                "the app id is wrong, or belongs to the other environment (sandbox/production)"
            }
            (_, "isv.invalid-timestamp") => "this computer's clock is wrong",
            ("40006", _) => {
                "the app lacks the Life Account (生活号) capability: add it in the console"
            }
            ("20001", _) => "the authorization token is invalid",
            ("40005", _) => "the app is calling too often right now",
            ("20000", _) => "Alipay's service is temporarily unavailable",
            _ => "the gateway refused the call (see the message above)",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::clock_offset;
    use chrono::{TimeZone, Utc};

    #[test]
    fn clock_offset_compares_with_the_middle_of_the_dated_second() {
        let date = "Thu, 03 Dec 2026 12:00:00 GMT";
        let at = |ms: i64| Utc.timestamp_millis_opt(1_796_299_200_000 + ms).unwrap();
        // A gateway 300 s ahead stamps 12:00:00 while this clock reads 11:55:00.001 to .999:
        // -300 whichever millisecond it was (comparing whole seconds gave -300 or -299).
        for ms in [-299_999, -299_500, -299_001] {
            assert_eq!(clock_offset(at(ms), date), Some(-300), "{ms}");
        }
        assert_eq!(clock_offset(at(1_400), date), Some(1));
        assert_eq!(clock_offset(at(400), date), Some(0));
        assert_eq!(clock_offset(at(0), "not a date"), None);
    }
}
