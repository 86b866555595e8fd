//! The report: one row per batch row with its final status, from the journal (every run's
//! outcomes, this one's included) or `skipped`, written atomically (temp + rename, mode 0600) as
//! CSV, streaming. Also the tally for the summary.

use std::path::Path;

use super::batch::Message;
use super::engine::{Outcome, Status};
use super::journal::{Entry, State};
use crate::error::{Error, Result};
use crate::output::AtomicFile;

pub const HEADER: [&str; 8] = [
    "line",
    "recipient",
    "status",
    "code",
    "sub_code",
    "sub_msg",
    "attempts",
    "time",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub recipient: String,
    pub outcome: Outcome,
    /// The status comes from an earlier run.
    pub earlier: bool,
}

/// A batch row's final state: its journal entry (settled), else `skipped` (never attempted).
pub fn row(m: &Message, entry: Option<Entry>, earlier: bool) -> Row {
    let outcome = match entry {
        Some(e) => Outcome {
            status: match e.state {
                State::Sent => Status::Sent,
                State::Failed => Status::Failed,
                _ => Status::Unknown,
            },
            code: e.code,
            sub_code: e.sub_code,
            sub_msg: e.sub_msg,
            attempts: e.attempts,
            time: e.time,
        },
        None => Outcome {
            status: Status::Skipped,
            code: None,
            sub_code: None,
            sub_msg: None,
            attempts: 0,
            time: None,
        },
    };
    Row {
        line: m.line,
        recipient: m.recipient.clone(),
        outcome,
        earlier,
    }
}

/// What the report holds, for the summary.
#[derive(Debug, Default)]
pub struct Tally {
    pub rows: usize,
    pub sent: usize,
    pub failed: usize,
    pub unknown: usize,
    pub skipped: usize,
    /// Rows sent by an earlier run.
    pub earlier_sent: usize,
    /// The first few failed or unknown rows, to show.
    pub first_problems: Vec<Row>,
}

impl Tally {
    fn add(&mut self, r: &Row) {
        self.rows += 1;
        match r.outcome.status {
            Status::Sent => {
                self.sent += 1;
                self.earlier_sent += usize::from(r.earlier);
            }
            Status::Failed => self.failed += 1,
            Status::Unknown => self.unknown += 1,
            Status::Skipped => self.skipped += 1,
        }
        if matches!(r.outcome.status, Status::Failed | Status::Unknown)
            && self.first_problems.len() < 5
        {
            self.first_problems.push(r.clone());
        }
    }
}

/// Count rows without writing them (when the report cannot be written).
pub fn tally(rows: impl Iterator<Item = Result<Row>>) -> Result<Tally> {
    let mut tally = Tally::default();
    for r in rows {
        tally.add(&r?);
    }
    Ok(tally)
}

/// Write the report from rows in batch order; replaces `path` only when complete.
pub fn write(path: &Path, rows: impl Iterator<Item = Result<Row>>) -> Result<Tally> {
    let mut tally = Tally::default();
    let file = AtomicFile::create(path)?;
    let mut w = csv::Writer::from_writer(file);
    let ctx = || format!("writing {}", path.display());
    let err = |e: csv::Error| Error::io(ctx(), e.into());
    w.write_record(HEADER).map_err(err)?;
    for r in rows {
        let r = r?;
        tally.add(&r);
        let o = &r.outcome;
        w.write_record([
            r.line.to_string().as_str(),
            &r.recipient,
            o.status.name(),
            o.code.as_deref().unwrap_or(""),
            o.sub_code.as_deref().unwrap_or(""),
            o.sub_msg.as_deref().unwrap_or(""),
            &o.attempts.to_string(),
            o.time.as_deref().unwrap_or(""),
        ])
        .map_err(err)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(ctx(), e.into_error()))?;
    file.commit()?;
    Ok(tally)
}
