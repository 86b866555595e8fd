//! The sending loop: a pool of worker threads sharing one client by reference, one pacer and one
//! journal. Each row: wait for a slot, journal `sending`, call, classify, journal the outcome.
//! Retries only what was certainly not delivered (connection refused, 40005); ambiguous outcomes
//! are `unknown` (retried only with `--retry-unknown`); batch-fatal answers stop every worker, and
//! rows never attempted stay unsent. Rows come from an iterator read by a producer thread into a
//! small bounded queue, so memory does not grow with the batch. The call itself is a closure, so
//! this knows no HTTP.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use super::batch::Message;
use super::journal::{self, Entry, State};
use super::pace::Pacer;
use crate::error::Result;
use crate::gateway::{self, CallError};

pub const METHOD: &str = "alipay.open.public.message.single.send";
/// 40005 retries of one row before it is given up as failed (it was never delivered).
pub const MAX_RATE_LIMIT_RETRIES: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Sent,
    Failed,
    Unknown,
    Skipped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
            Status::Skipped => "skipped",
        }
    }
}

/// What became of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub code: Option<String>,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
    pub attempts: u32,
    pub time: Option<String>,
}

/// What to do with the result of one call. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Sent,
    /// 40005: refused before processing; slow the pool and retry.
    RateLimited,
    /// The request never left (connection refused, DNS): retry with backoff.
    NotDelivered,
    /// May or may not have been delivered: timeout or reset after sending, HTTP 5xx, 20000,
    /// 40004 SYSTEM_ERROR, an answer that cannot be read.
    Unknown,
    /// This recipient's problem (MSG_SD_NOFOLLOW, OPENID_INVALID, …): the batch goes on.
    Failed,
    /// The same answer would come for every row: stop the batch. `maybe_delivered` when the
    /// request may have been processed (an answer that fails verification).
    Fatal {
        maybe_delivered: bool,
    },
}

pub fn classify(result: &std::result::Result<(), CallError>) -> Class {
    let err = match result {
        Ok(()) => return Class::Sent,
        Err(e) => e,
    };
    match err {
        CallError::Connect { .. } => Class::NotDelivered,
        CallError::Transport { .. } | CallError::BadResponse { .. } => Class::Unknown,
        CallError::Http { status, .. } if *status >= 500 => Class::Unknown,
        CallError::Http { .. } => Class::Fatal {
            maybe_delivered: false,
        },
        CallError::Verification { .. } => Class::Fatal {
            maybe_delivered: true,
        },
        CallError::Gateway(g) => {
            let sub = g.sub_code();
            if sub.starts_with("MSG_TEMPLATE_") {
                return Class::Fatal {
                    maybe_delivered: false,
                };
            }
            match g.status.code.as_str() {
                "40005" => Class::RateLimited,
                "20001" | "40001" | "40002" | "40003" | "40006" => Class::Fatal {
                    maybe_delivered: false,
                },
                "40004" if sub == "SYSTEM_ERROR" => Class::Unknown,
                "40004" => Class::Failed,
                // 20000 and anything not documented: the message may have gone out.
                _ => Class::Unknown,
            }
        }
    }
}

/// code, sub_code, sub_msg for the journal and report.
fn codes(result: &std::result::Result<(), CallError>) -> [Option<String>; 3] {
    let short = |s: &str| s.chars().take(200).collect::<String>();
    match result {
        Ok(()) => [Some("10000".into()), None, None],
        Err(CallError::Gateway(g)) => [
            Some(g.status.code.clone()),
            g.status.sub_code.clone(),
            g.status.sub_msg.as_deref().map(short),
        ],
        Err(e) => {
            let kind = match e {
                CallError::Connect { .. } => "connect".to_string(),
                CallError::Transport { .. } => "transport".to_string(),
                CallError::Http { status, .. } => format!("http-{status}"),
                CallError::BadResponse { .. } => "bad-response".to_string(),
                CallError::Verification { .. } => "verification".to_string(),
                CallError::Gateway(_) => unreachable!(),
            };
            [Some(kind), None, Some(short(&e.to_string()))]
        }
    }
}

/// The cause and the fix of a template error, which stops the batch.
pub fn template_hint(sub_code: &str, template_id: &str) -> Option<String> {
    let sub = sub_code.strip_prefix("PUB.").unwrap_or(sub_code);
    Some(match sub {
        "MSG_TEMPLATE_NOT_EXIST" | "MSG_TEMPLATE_ID_INVALID" => format!(
            "template {template_id} does not exist for this app: it was deleted in the Life \
             Account console, belongs to another app, or is a template-library ID (TM…) rather \
             than the merchant's own template ID (listed under my templates, returned by \
             领取模板). Use the right ID (--template-id or the template_id column)"
        ),
        "MSG_TEMPLATE_CONTEXT_LACK_KEY" => format!(
            "template {template_id} needs a field this row does not fill: add the missing column \
             (first, keyword1 … keyword5, remark) and give it a value in every row"
        ),
        "MSG_TEMPLATE_NOT_STARTED" => {
            format!("template {template_id} is not in effect yet; wait until it is, then run again")
        }
        s if s.starts_with("MSG_TEMPLATE_") => format!(
            "template {template_id} is not usable or does not match the fields sent ({s}); \
             check it in the Life Account console"
        ),
        _ => return None,
    })
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub concurrency: usize,
    pub qps: f64,
    pub retry_unknown: bool,
    /// Retries of a row whose request never left, and (with retry_unknown) of an unknown outcome.
    pub retries: u32,
}

/// Live counters, for the progress line.
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub unknown: AtomicU64,
    pub calls: AtomicU64,
    /// Why the batch is stopping, as soon as it is (requests in flight still finish).
    pub stopping: Mutex<Option<String>>,
}

#[derive(Debug)]
pub struct Finished {
    pub fatal: Option<String>,
    /// Stopped by an interrupt: rows in flight finished and were recorded, the rest not attempted.
    pub interrupted: bool,
    pub retries: BTreeMap<&'static str, u64>,
    pub rate_cuts: u64,
    pub calls: u64,
    pub elapsed: Duration,
}

struct Shared<'a, F> {
    call: &'a F,
    /// Taken (dropped) by the last worker to stop, which ends a producer blocked on a full queue.
    queue: Mutex<Option<Receiver<Message>>>,
    opts: Options,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    pacer: Mutex<Pacer>,
    journal: &'a Mutex<journal::Writer>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    counts: &'a Counts,
}

impl<F> Shared<'_, F>
where
    F: Fn(&str) -> std::result::Result<(), CallError> + Sync,
{
    fn set_fatal(&self, message: String) {
        let mut fatal = self.fatal.lock().expect("fatal lock");
        if fatal.is_none() {
            *self.counts.stopping.lock().expect("stopping lock") = Some(message.clone());
            *fatal = Some(message);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Sleep for `d`, or less once the batch is stopping (an interrupt must not wait out a
    /// backoff or a slow pacer).
    fn pause(&self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    fn retried(&self, kind: &'static str) {
        *self
            .retries
            .lock()
            .expect("retries lock")
            .entry(kind)
            .or_insert(0) += 1;
    }

    fn record(&self, m: &Message, state: State, attempts: u32, codes: [Option<String>; 3]) -> bool {
        let [code, sub_code, sub_msg] = codes;
        let entry = Entry {
            line: m.line,
            to: m.recipient.clone(),
            state,
            code,
            sub_code,
            sub_msg,
            attempts,
            time: (state != State::Sending).then(now_text),
        };
        match self.journal.lock().expect("journal lock").record(&entry) {
            Ok(()) => true,
            Err(e) => {
                self.set_fatal(format!("the journal cannot be written: {e}"));
                false
            }
        }
    }

    fn worker(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let next = match self.queue.lock().expect("queue lock").as_ref() {
                Some(queue) => queue.recv(),
                None => break,
            };
            let Ok(message) = next else {
                break; // the producer is done
            };
            if let Some(outcome) = self.send_one(&message) {
                let counter = match outcome.status {
                    Status::Sent => &self.counts.sent,
                    Status::Failed => &self.counts.failed,
                    Status::Unknown => &self.counts.unknown,
                    Status::Skipped => continue,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One row to its end. None when it was never delivered and the batch stopped.
    fn send_one(&self, m: &Message) -> Option<Outcome> {
        let mut attempts = 0u32;
        let (mut refused, mut limited, mut unknowns) = (0u32, 0u32, 0u32);
        let mut last_unknown: Option<Outcome> = None;
        loop {
            let slot = self.pacer.lock().expect("pacer lock").slot(Instant::now());
            self.pause(slot.saturating_duration_since(Instant::now()));
            if self.stop.load(Ordering::SeqCst) {
                return last_unknown;
            }
            attempts += 1;
            if !self.record(m, State::Sending, attempts, [None, None, None]) {
                return last_unknown;
            }
            self.counts.calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = (self.call)(&m.biz_content);
            let class = classify(&result);
            let codes = codes(&result);
            let outcome = |status| {
                let [code, sub_code, sub_msg] = codes.clone();
                Outcome {
                    status,
                    code,
                    sub_code,
                    sub_msg,
                    attempts,
                    time: Some(now_text()),
                }
            };
            let now = Instant::now();
            match class {
                Class::Sent => {
                    self.pacer
                        .lock()
                        .expect("pacer lock")
                        .succeeded(now, started);
                    self.record(m, State::Sent, attempts, codes.clone());
                    return Some(outcome(Status::Sent));
                }
                Class::Failed => {
                    self.pacer
                        .lock()
                        .expect("pacer lock")
                        .succeeded(now, started);
                    self.record(m, State::Failed, attempts, codes.clone());
                    return Some(outcome(Status::Failed));
                }
                Class::RateLimited => {
                    self.pacer
                        .lock()
                        .expect("pacer lock")
                        .rate_limited(now, started);
                    limited += 1;
                    if limited > MAX_RATE_LIMIT_RETRIES {
                        self.record(m, State::Failed, attempts, codes.clone());
                        return Some(outcome(Status::Failed));
                    }
                    self.retried("40005-rate-limited");
                    if !self.record(m, State::Retry, attempts, codes.clone()) {
                        return last_unknown;
                    }
                }
                Class::NotDelivered => {
                    if !self.record(m, State::Retry, attempts, codes.clone()) {
                        return last_unknown;
                    }
                    if refused >= self.opts.retries {
                        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
                        self.set_fatal(format!(
                            "batch stopped at line {}: {err} (tried {} times)",
                            m.line,
                            refused + 1
                        ));
                        return last_unknown;
                    }
                    self.retried("connect");
                    self.pause(gateway::backoff(refused, false));
                    refused += 1;
                }
                Class::Unknown => {
                    self.pacer
                        .lock()
                        .expect("pacer lock")
                        .succeeded(now, started);
                    self.record(m, State::Unknown, attempts, codes.clone());
                    if !(self.opts.retry_unknown && unknowns < self.opts.retries) {
                        return Some(outcome(Status::Unknown));
                    }
                    let kind = match &result {
                        Err(e) => e.retry_kind().unwrap_or("unknown"),
                        Ok(()) => "unknown",
                    };
                    self.retried(kind);
                    last_unknown = Some(outcome(Status::Unknown));
                    self.pause(gateway::backoff(unknowns, false));
                    unknowns += 1;
                }
                Class::Fatal { maybe_delivered } => {
                    let (state, status) = if maybe_delivered {
                        (State::Unknown, Status::Unknown)
                    } else {
                        (State::Failed, Status::Failed)
                    };
                    self.record(m, state, attempts, codes.clone());
                    let err = result
                        .as_ref()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    let hint = codes[1]
                        .as_deref()
                        .and_then(|sub| template_hint(sub, &m.template_id))
                        .map(|h| format!("\n  what to do: {h}"))
                        .unwrap_or_default();
                    self.set_fatal(format!("batch stopped at line {}: {err}{hint}", m.line));
                    return Some(outcome(status));
                }
            }
        }
    }
}

/// Send every message `rows` yields (`total` of them, for sizing the pool); outcomes go to the
/// journal. `tick` runs about ten times a second on the calling thread (progress line); the
/// journal is fsynced there too. An error from `rows` stops the batch like a fatal answer. Once
/// `interrupt` is raised no new request starts; those in flight finish and are recorded.
#[allow(clippy::too_many_arguments)]
pub fn run<F, I>(
    call: &F,
    rows: I,
    total: u64,
    journal: &Mutex<journal::Writer>,
    opts: Options,
    counts: &Counts,
    interrupt: &AtomicBool,
    mut tick: impl FnMut(),
) -> Result<Finished>
where
    F: Fn(&str) -> std::result::Result<(), CallError> + Sync,
    I: Iterator<Item = Result<Message>> + Send,
{
    let started = Instant::now();
    let workers = opts
        .concurrency
        .clamp(1, usize::try_from(total).unwrap_or(usize::MAX).max(1));
    let (feed, queue) = sync_channel::<Message>(workers * 2);
    let shared = Shared {
        call,
        queue: Mutex::new(Some(queue)),
        opts,
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
        pacer: Mutex::new(Pacer::new(opts.qps)),
        journal,
        retries: Mutex::new(BTreeMap::new()),
        counts,
    };
    let running = AtomicUsize::new(workers);
    let mut interrupted = false;
    std::thread::scope(|s| {
        s.spawn(|| {
            for row in rows {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                match row {
                    // Fails only when every worker has stopped.
                    Ok(message) => {
                        if feed.send(message).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        shared.set_fatal(format!("the batch stopped: {e}"));
                        break;
                    }
                }
            }
            drop(feed);
        });
        for _ in 0..workers {
            s.spawn(|| {
                shared.worker();
                if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                    shared.queue.lock().expect("queue lock").take();
                }
            });
        }
        while running.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(100));
            if !interrupted && interrupt.load(Ordering::SeqCst) {
                interrupted = true;
                shared.stop.store(true, Ordering::SeqCst);
            }
            if let Err(e) = journal
                .lock()
                .expect("journal lock")
                .sync_if_due(Duration::from_secs(1))
            {
                shared.set_fatal(format!("the journal cannot be synced: {e}"));
            }
            tick();
        }
    });
    journal.lock().expect("journal lock").sync()?;
    let pacer = shared.pacer.into_inner().expect("pacer lock");
    Ok(Finished {
        fatal: shared.fatal.into_inner().expect("fatal lock"),
        interrupted,
        retries: shared.retries.into_inner().expect("retries lock"),
        rate_cuts: pacer.cuts,
        calls: counts.calls.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{GatewayError, Status as GwStatus};

    fn gw(code: &str, sub: &str) -> std::result::Result<(), CallError> {
        Err(CallError::Gateway(Box::new(GatewayError {
            method: METHOD.into(),
            status: GwStatus {
                code: code.into(),
                msg: String::new(),
                sub_code: Some(sub.into()),
                sub_msg: None,
            },
            trace_id: None,
            our_string: None,
        })))
    }

    #[test]
    fn classification() {
        let fatal = Class::Fatal {
            maybe_delivered: false,
        };
        assert_eq!(classify(&Ok(())), Class::Sent);
        assert_eq!(classify(&gw("40004", "MSG_TEMPLATE_NOT_EXIST")), fatal);
        assert_eq!(classify(&gw("40004", "PUB.MSG_TEMPLATE_INVALID")), fatal);
        assert_eq!(classify(&gw("40002", "isv.invalid-signature")), fatal);
        assert_eq!(classify(&gw("40002", "isv.invalid-app-id")), fatal);
        assert_eq!(
            classify(&gw("40006", "isv.insufficient-isv-permissions")),
            fatal
        );
        assert_eq!(classify(&gw("20001", "aop.invalid-auth-token")), fatal);
        assert_eq!(classify(&gw("40004", "MSG_SD_NOFOLLOW")), Class::Failed);
        assert_eq!(classify(&gw("40004", "PUB.OPENID_INVALID")), Class::Failed);
        assert_eq!(classify(&gw("40004", "SYSTEM_ERROR")), Class::Unknown);
        assert_eq!(
            classify(&gw("40005", "isv.app-call-limited")),
            Class::RateLimited
        );
        assert_eq!(classify(&gw("20000", "isp.unknow-error")), Class::Unknown);
        let e = |e: CallError| classify(&Err(e));
        assert_eq!(
            e(CallError::Connect {
                url: String::new(),
                detail: String::new()
            }),
            Class::NotDelivered
        );
        assert_eq!(
            e(CallError::Transport {
                detail: String::new()
            }),
            Class::Unknown
        );
        assert_eq!(
            e(CallError::Http {
                status: 502,
                body: String::new()
            }),
            Class::Unknown
        );
        assert_eq!(
            e(CallError::BadResponse {
                detail: String::new()
            }),
            Class::Unknown
        );
        assert_eq!(
            e(CallError::Verification {
                detail: String::new()
            }),
            Class::Fatal {
                maybe_delivered: true
            }
        );
    }
}
