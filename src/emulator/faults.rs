//! Injected faults: which kinds, how often, chosen by a seeded generator so a run can be repeated,
//! and counted so tests and users can see what was injected.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Close the connection without answering.
    Reset,
    /// HTTP 502 with an HTML body, as a load balancer gives.
    Http502,
    /// Answer only after `--slow-ms` (beyond a client's timeout).
    Slow,
    /// Announce the full body, send half, close.
    Truncated,
    /// 20000 `isp.unknow-error` (signed, as from the business system).
    UnknownError,
    /// 40005 `isv.app-call-limited`.
    RateLimited,
    /// A follower page that starts with the last ID of the previous page.
    RepeatId,
    /// A correctly signed answer whose content was then altered (signature no longer verifies).
    Tamper,
    /// The request is processed, then the answer is lost (the connection closes).
    Lost,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Reset,
        Fault::Http502,
        Fault::Slow,
        Fault::Truncated,
        Fault::UnknownError,
        Fault::RateLimited,
        Fault::RepeatId,
        Fault::Tamper,
        Fault::Lost,
    ];

    /// What `--fault-rate` injects when `--fault-kinds` is not given: every network and gateway
    /// fault a client must survive. (`tamper` makes a verifying client stop, `lost` matters for sends.)
    pub const DEFAULT: [Fault; 7] = [
        Fault::Reset,
        Fault::Http502,
        Fault::Slow,
        Fault::Truncated,
        Fault::UnknownError,
        Fault::RateLimited,
        Fault::RepeatId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Reset => "reset",
            Fault::Http502 => "http-502",
            Fault::Slow => "slow",
            Fault::Truncated => "truncated",
            Fault::UnknownError => "unknown-error",
            Fault::RateLimited => "rate-limit",
            Fault::RepeatId => "repeat-id",
            Fault::Tamper => "tamper",
            Fault::Lost => "lost",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown fault kind {s:?}; known kinds: {}",
                    names.join(", ")
                )
            })
    }
}

/// Parse `--fault-kinds reset,http-502,…` (`all` = every kind).
pub fn parse_kinds(list: &str) -> Result<Vec<Fault>, String> {
    if list.trim() == "all" {
        return Ok(Fault::ALL.to_vec());
    }
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[derive(Debug)]
pub struct Faults {
    rate: f64,
    kinds: Vec<Fault>,
    seed: u64,
    counter: AtomicU64,
    injected: Mutex<BTreeMap<Fault, u64>>,
    /// `--fault-log PATH`: one JSON line per injected fault (time, request number, method, kind).
    log: Option<Mutex<std::fs::File>>,
}

/// SplitMix64: a tiny, well-known mixing function; good enough to pick faults reproducibly.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Faults {
    pub fn new(rate: f64, kinds: Vec<Fault>, seed: u64) -> Faults {
        Faults {
            rate,
            kinds,
            seed,
            counter: AtomicU64::new(0),
            injected: Mutex::new(BTreeMap::new()),
            log: None,
        }
    }

    /// Append a JSON line per injected fault to `path`, so soaks and users can count them.
    pub fn with_log(mut self, path: &std::path::Path) -> std::io::Result<Faults> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.log = Some(Mutex::new(file));
        Ok(self)
    }

    pub fn none() -> Faults {
        Faults::new(0.0, Vec::new(), 0)
    }

    /// Decide for one request to `method`; `applicable` filters kinds that make no sense for it.
    pub fn pick(&self, method: &str, applicable: impl Fn(Fault) -> bool) -> Option<Fault> {
        if self.rate <= 0.0 || self.kinds.is_empty() {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let r = splitmix(self.seed ^ splitmix(n));
        let roll = (r >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.rate {
            return None;
        }
        let usable: Vec<Fault> = self
            .kinds
            .iter()
            .copied()
            .filter(|&k| applicable(k))
            .collect();
        if usable.is_empty() {
            return None;
        }
        let kind = usable[(splitmix(r) % usable.len() as u64) as usize];
        *self
            .injected
            .lock()
            .expect("fault counts")
            .entry(kind)
            .or_insert(0) += 1;
        if let Some(log) = &self.log {
            let mut line = serde_json::json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "request": n,
                "method": method,
                "kind": kind.name(),
            })
            .to_string();
            line.push('\n');
            let mut file = log.lock().expect("fault log");
            if let Err(e) = std::io::Write::write_all(&mut *file, line.as_bytes()) {
                eprintln!("emulator: error: writing the fault log: {e}");
            }
        }
        Some(kind)
    }

    #[cfg(test)]
    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        self.injected.lock().expect("fault counts").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_respected_and_reproducible() {
        let f = Faults::new(0.1, Fault::DEFAULT.to_vec(), 7);
        let picks: Vec<Option<Fault>> = (0..20_000).map(|_| f.pick("m", |_| true)).collect();
        let hits = picks.iter().filter(|p| p.is_some()).count();
        assert!(
            (1_700..2_300).contains(&hits),
            "{hits} faults in 20000 at 10%"
        );
        let g = Faults::new(0.1, Fault::DEFAULT.to_vec(), 7);
        let again: Vec<Option<Fault>> = (0..20_000).map(|_| g.pick("m", |_| true)).collect();
        assert_eq!(picks, again);
        assert_eq!(
            f.injected().len(),
            Fault::DEFAULT.len(),
            "every kind is used"
        );
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(
            parse_kinds("reset, http-502").unwrap(),
            [Fault::Reset, Fault::Http502]
        );
        assert_eq!(parse_kinds("all").unwrap().len(), Fault::ALL.len());
        assert!(
            parse_kinds("reset,bogus")
                .unwrap_err()
                .contains("unknown fault kind \"bogus\"")
        );
    }
}
