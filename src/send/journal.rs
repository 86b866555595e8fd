//! The append-only journal beside a batch (`BATCH.csv.journal`): one JSON object per line. The
//! first line names the batch (SHA-256 of the file's bytes) and the `--template-id`; then, per
//! row, `sending` before the request goes out and the outcome (`sent`, `failed`, `unknown`, or
//! `retry` when a refusal proves it was not delivered) after it. Each line is one `write` to the
//! kernel, so a SIGKILL loses nothing already written; `fsync` runs at least once a second and at
//! the end. Replaying: the last entry of a line number wins, and a `sending` with nothing after it
//! means the process died with the request in flight: `unknown`, never silently re-sent. A torn
//! last line (killed mid-write) is dropped: its request had not been sent yet.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};

pub const FORMAT: u32 = 1;

/// The first line: which batch and template this journal belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub alipaylife_send_journal: u32,
    pub batch_sha256: String,
    pub template_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Sending,
    Sent,
    Failed,
    Unknown,
    /// Certainly not delivered (connection refused, 40005): back to pending.
    Retry,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub line: u64,
    pub to: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_msg: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Hex SHA-256 of the batch file's bytes.
pub fn batch_hash(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A replayed journal.
#[derive(Debug, Default)]
pub struct Replay {
    pub header: Option<Header>,
    /// The final state of each line number that has one (`sending` already turned into `unknown`).
    pub rows: HashMap<u64, Entry>,
    /// Bytes up to the end of the last complete line: appending continues from here.
    pub valid_len: usize,
    pub torn: bool,
}

/// Replay journal bytes. Pure. A damaged line other than the last is an error (line number in it).
pub fn replay(bytes: &[u8]) -> std::result::Result<Replay, String> {
    let mut out = Replay::default();
    let mut offset = 0usize;
    for (i, chunk) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = chunk.ends_with(b"\n");
        let text = std::str::from_utf8(chunk).ok().map(str::trim);
        if !complete {
            out.torn = true; // killed mid-write: the request it announced never went out
            break;
        }
        offset += chunk.len();
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            if text.is_none() {
                return Err(format!("line {} is not UTF-8", i + 1));
            }
            out.valid_len = offset;
            continue;
        };
        if i == 0 {
            let header: Header = serde_json::from_str(text)
                .map_err(|_| "line 1 is not an alipaylife send journal header".to_string())?;
            if header.alipaylife_send_journal != FORMAT {
                return Err(format!(
                    "journal format {} is not supported (this version writes {FORMAT})",
                    header.alipaylife_send_journal
                ));
            }
            out.header = Some(header);
        } else {
            let mut entry: Entry = serde_json::from_str(text)
                .map_err(|e| format!("line {} is damaged: {e}", i + 1))?;
            match entry.state {
                State::Retry => {
                    out.rows.remove(&entry.line);
                }
                State::Sending => {
                    entry.state = State::Unknown;
                    entry.code = None;
                    entry.sub_code = None;
                    entry.sub_msg = Some(
                        "interrupted while the request was in flight; it may have been delivered"
                            .to_string(),
                    );
                    out.rows.insert(entry.line, entry);
                }
                _ => {
                    out.rows.insert(entry.line, entry);
                }
            }
        }
        out.valid_len = offset;
    }
    Ok(out)
}

/// Read and replay a journal file, if there is one, and check it belongs to this batch.
pub fn load(path: &Path, expected: &Header) -> Result<Option<Replay>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let replay = replay(&bytes).map_err(|e| {
        Error::Usage(format!(
            "journal {}: {e}; move it away to start over (rows it recorded as sent would then be \
             sent again)",
            path.display()
        ))
    })?;
    let Some(header) = &replay.header else {
        return Ok(None); // empty or torn before the header was complete: nothing was sent
    };
    if header.batch_sha256 != expected.batch_sha256 {
        return Err(Error::Usage(format!(
            "journal {} belongs to a different batch file (content sha256 {}…, this file {}…): \
             the batch was edited or another file has the same name. The journal records rows \
             by line, so it cannot be applied to other content: restore the original file to \
             resume it, or give --journal NEW_PATH (or move the journal away) to send this file \
             as a new batch",
            path.display(),
            &header.batch_sha256[..12.min(header.batch_sha256.len())],
            &expected.batch_sha256[..12],
        )));
    }
    let anything_sent = replay
        .rows
        .values()
        .any(|e| matches!(e.state, State::Sent | State::Unknown | State::Sending));
    if header.template_id != expected.template_id && !anything_sent {
        // Nothing went out under the old template (say it did not exist): start afresh.
        return Ok(None);
    }
    if header.template_id != expected.template_id {
        return Err(Error::Usage(format!(
            "journal {} was written for --template-id {:?}, not {:?}: resuming with another \
             template would mix two messages in one batch. Use the original template id to \
             resume, or give --journal NEW_PATH to send this batch again with the new template",
            path.display(),
            header.template_id,
            expected.template_id
        )));
    }
    Ok(Some(replay))
}

/// The open journal: unbuffered appends (one `write` per line), fsync at most once a second.
pub struct Writer {
    file: File,
    path: PathBuf,
    last_sync: Instant,
    dirty: bool,
}

impl Writer {
    /// Continue an existing journal (cut after its last complete line) or start a new one.
    pub fn open(path: &Path, header: &Header, existing: Option<&Replay>) -> Result<Writer> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        let file = match existing {
            Some(replay) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(ctx("opening"), e))?;
                file.set_len(replay.valid_len as u64)
                    .map_err(|e| Error::io(ctx("repairing the last line of"), e))?;
                drop(file);
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(ctx("opening"), e))?
            }
            None => {
                let mut options = OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .map_err(|e| Error::io(ctx("cannot create"), e))?;
                let mut line = serde_json::to_string(header).expect("serialise");
                line.push('\n');
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::io(ctx("writing"), e))?;
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(ctx("opening"), e))?
            }
        };
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            last_sync: Instant::now(),
            dirty: false,
        })
    }

    /// Append one entry, handed to the kernel before this returns.
    pub fn record(&mut self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_string(entry).expect("serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        self.dirty = true;
        self.sync_if_due(Duration::from_secs(1))
    }

    /// fsync when something was written and `every` has passed since the last one.
    pub fn sync_if_due(&mut self, every: Duration) -> Result<()> {
        if self.dirty && self.last_sync.elapsed() >= every {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        serde_json::to_string(&Header {
            alipaylife_send_journal: 1,
            batch_sha256: batch_hash(b"x"),
            template_id: "T".into(),
        })
        .unwrap()
    }

    fn entry(line: u64, state: State) -> String {
        serde_json::to_string(&Entry {
            line,
            to: format!("id{line}"),
            state,
            code: None,
            sub_code: None,
            sub_msg: None,
            attempts: 1,
            time: None,
        })
        .unwrap()
    }

    #[test]
    fn last_state_wins_and_sending_means_unknown() {
        let text = [
            header(),
            entry(2, State::Sending),
            entry(2, State::Sent),
            entry(3, State::Sending),
            entry(4, State::Sending),
            entry(4, State::Retry),
            entry(5, State::Sending),
            entry(5, State::Failed),
            String::new(),
        ]
        .join("\n");
        let r = replay(text.as_bytes()).unwrap();
        assert_eq!(r.header.unwrap().template_id, "T");
        assert_eq!(r.rows[&2].state, State::Sent);
        assert_eq!(r.rows[&3].state, State::Unknown, "in flight when killed");
        assert!(!r.rows.contains_key(&4), "a retry is pending again");
        assert_eq!(r.rows[&5].state, State::Failed);
        assert_eq!(r.valid_len, text.len());
        assert!(!r.torn);
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let good = format!("{}\n{}\n", header(), entry(2, State::Sent));
        let torn = format!("{good}{}", &entry(3, State::Sending)[..10]);
        let r = replay(torn.as_bytes()).unwrap();
        assert!(r.torn);
        assert_eq!(r.valid_len, good.len());
        assert!(!r.rows.contains_key(&3));
        // Even a complete object without its newline counts as torn (the write was cut).
        let r = replay(format!("{good}{}", entry(3, State::Sending)).as_bytes()).unwrap();
        assert!(!r.rows.contains_key(&3));
        // A torn header: nothing was sent yet.
        let r = replay(&header().as_bytes()[..5]).unwrap();
        assert!(r.header.is_none());
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let text = format!("{}\n{{\"line\":2,\n{}\n", header(), entry(3, State::Sent));
        let e = replay(text.as_bytes()).unwrap_err();
        assert!(e.starts_with("line 2 is damaged"), "{e}");
        assert!(replay(b"hello\n").unwrap_err().contains("header"));
    }
}
