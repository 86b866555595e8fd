//! The report: one row per batch row with its final status, merged from this run's outcomes and
//! the journal of earlier runs, written atomically (temp + rename, mode 0600) as CSV.

use std::path::Path;

use super::batch::Message;
use super::engine::{Outcome, Status};
use super::journal::{Replay, State};
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
    /// The status comes from an earlier run's journal.
    pub earlier: bool,
}

/// The final state of every row: this run's outcome, else the journal's, else `skipped`.
pub fn rows(
    messages: &[Message],
    this_run: &[Option<Outcome>],
    prior: Option<&Replay>,
) -> Vec<Row> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if let Some(o) = this_run.get(i).cloned().flatten() {
                return Row {
                    line: m.line,
                    recipient: m.recipient.clone(),
                    outcome: o,
                    earlier: false,
                };
            }
            let from_journal = prior.and_then(|r| r.rows.get(&m.line)).map(|e| Outcome {
                status: match e.state {
                    State::Sent => Status::Sent,
                    State::Failed => Status::Failed,
                    _ => Status::Unknown,
                },
                code: e.code.clone(),
                sub_code: e.sub_code.clone(),
                sub_msg: e.sub_msg.clone(),
                attempts: e.attempts,
                time: e.time.clone(),
            });
            Row {
                line: m.line,
                recipient: m.recipient.clone(),
                earlier: from_journal.is_some(),
                outcome: from_journal.unwrap_or(Outcome {
                    status: Status::Skipped,
                    code: None,
                    sub_code: None,
                    sub_msg: None,
                    attempts: 0,
                    time: None,
                }),
            }
        })
        .collect()
}

/// Count of rows per status: sent, failed, unknown, skipped.
pub fn tally(rows: &[Row]) -> [usize; 4] {
    let mut t = [0; 4];
    for r in rows {
        t[match r.outcome.status {
            Status::Sent => 0,
            Status::Failed => 1,
            Status::Unknown => 2,
            Status::Skipped => 3,
        }] += 1;
    }
    t
}

pub fn write(path: &Path, rows: &[Row]) -> Result<()> {
    let file = AtomicFile::create(path)?;
    let mut w = csv::Writer::from_writer(file);
    let ctx = || format!("writing {}", path.display());
    let err = |e: csv::Error| Error::io(ctx(), e.into());
    w.write_record(HEADER).map_err(err)?;
    for r in rows {
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
    file.commit()
}
