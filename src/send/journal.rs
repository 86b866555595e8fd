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
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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

/// Where each line's final entry is in the journal, and its state: 8 bytes a line, so a journal
/// of millions of rows is replayed without holding its entries.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// `offset << 3 | state code` (1 sent, 2 failed, 3 unknown, 4 sending); 0: no entry.
    slots: Vec<u64>,
}

impl Index {
    fn code(state: State) -> u64 {
        match state {
            State::Sent => 1,
            State::Failed => 2,
            State::Unknown => 3,
            State::Sending => 4,
            State::Retry => 0,
        }
    }

    fn slot(&self, line: u64) -> u64 {
        usize::try_from(line)
            .ok()
            .and_then(|i| self.slots.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn set_slot(&mut self, line: u64, slot: u64) {
        let i = usize::try_from(line).expect("line number fits in memory");
        if i >= self.slots.len() {
            self.slots.resize(i + 1, 0);
        }
        self.slots[i] = slot;
    }

    fn set(&mut self, line: u64, state: State, offset: u64) {
        self.set_slot(line, offset << 3 | Index::code(state));
    }

    /// The final state of a line: `Sending` means the process died with it in flight.
    pub fn state(&self, line: u64) -> Option<State> {
        match self.slot(line) & 7 {
            1 => Some(State::Sent),
            2 => Some(State::Failed),
            3 => Some(State::Unknown),
            4 => Some(State::Sending),
            _ => None,
        }
    }

    /// The byte offset of a line's final entry.
    pub fn offset(&self, line: u64) -> Option<u64> {
        let slot = self.slot(line);
        (slot != 0).then_some(slot >> 3)
    }

    /// Whether any row may have been delivered.
    pub fn anything_sent(&self) -> bool {
        self.slots.iter().any(|&s| matches!(s & 7, 1 | 3 | 4))
    }
}

/// A replayed journal.
#[derive(Debug, Default)]
pub struct Replay {
    pub header: Option<Header>,
    /// The final state of each line number that has one.
    pub index: Index,
    /// Bytes up to the end of the last complete line: appending continues from here.
    pub valid_len: u64,
    pub torn: bool,
}

/// A `sending` entry with nothing after it: the process died with the request in flight, or could
/// not record the outcome.
pub fn settle(mut entry: Entry) -> Entry {
    if entry.state == State::Sending {
        entry.state = State::Unknown;
        entry.code = None;
        entry.sub_code = None;
        entry.sub_msg = Some(
            "sent, but no outcome was recorded (the run was interrupted, or its journal could not \
             be written); it may have been delivered"
                .to_string(),
        );
    }
    entry
}

/// Replay a journal, streaming. `lines` sizes the index (the batch's line count). A damaged
/// line other than the last is an error (line number in it).
pub fn replay(mut r: impl BufRead, lines: u64) -> std::result::Result<Replay, String> {
    let mut out = Replay {
        index: Index {
            slots: vec![0; usize::try_from(lines + 2).unwrap_or(0)],
        },
        ..Replay::default()
    };
    // The state a line had before its `sending`, restored by a `retry` (a row unknown from an
    // earlier run stays unknown when its new attempt was refused).
    let mut before: HashMap<u64, u64> = HashMap::new();
    let mut chunk = Vec::new();
    let mut offset = 0u64;
    for i in 0.. {
        chunk.clear();
        let n = r
            .read_until(b'\n', &mut chunk)
            .map_err(|e| format!("cannot be read: {e}"))?;
        if n == 0 {
            break;
        }
        if !chunk.ends_with(b"\n") {
            out.torn = true; // killed mid-write: the request it announced never went out
            break;
        }
        let at = offset;
        offset += n as u64;
        let Some(text) = std::str::from_utf8(&chunk).ok().map(str::trim) else {
            return Err(format!("line {} is not UTF-8", i + 1));
        };
        if text.is_empty() {
            out.valid_len = offset;
            continue;
        }
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
            let entry: Entry = serde_json::from_str(text)
                .map_err(|e| format!("line {} is damaged: {e}", i + 1))?;
            let line = entry.line;
            match entry.state {
                State::Retry => match before.remove(&line) {
                    Some(slot) => out.index.set_slot(line, slot),
                    None => out.index.set_slot(line, 0),
                },
                State::Sending => {
                    before.insert(line, out.index.slot(line));
                    out.index.set(line, State::Sending, at);
                }
                state => {
                    before.remove(&line);
                    out.index.set(line, state, at);
                }
            }
        }
        out.valid_len = offset;
    }
    Ok(out)
}

/// Reads entries at offsets an `Index` gave, mostly in increasing order.
pub struct Entries {
    reader: BufReader<File>,
    pos: u64,
    path: PathBuf,
}

impl Entries {
    pub fn open(path: &Path) -> Result<Entries> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Ok(Entries {
            reader: BufReader::with_capacity(64 * 1024, file),
            pos: 0,
            path: path.to_path_buf(),
        })
    }

    /// The entry at `offset`, settled (`sending` read as unknown).
    pub fn at(&mut self, offset: u64) -> Result<Entry> {
        let ctx = || format!("reading {}", self.path.display());
        let moved = if offset >= self.pos {
            self.reader.seek_relative((offset - self.pos) as i64)
        } else {
            self.reader.seek(SeekFrom::Start(offset)).map(|_| ())
        };
        moved.map_err(|e| Error::io(ctx(), e))?;
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(ctx(), e))?;
        self.pos = offset + n as u64;
        let entry: Entry = serde_json::from_slice(&line).map_err(|e| {
            Error::io(
                ctx(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        Ok(settle(entry))
    }
}

/// Read and replay a journal file, if there is one, and check it belongs to this batch. `lines`
/// is the batch's line count.
pub fn load(path: &Path, expected: &Header, lines: u64) -> Result<Option<Replay>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let replay = replay(BufReader::with_capacity(64 * 1024, file), lines).map_err(|e| {
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
    let anything_sent = replay.index.anything_sent();
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
    /// Bytes of complete lines.
    len: u64,
    /// A write failed: nothing more is appended (see `record`).
    broken: bool,
}

impl Writer {
    /// Continue an existing journal (cut after its last complete line) or start a new one.
    pub fn open(path: &Path, header: &Header, existing: Option<&Replay>) -> Result<Writer> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        let (file, len) = match existing {
            Some(replay) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(ctx("opening"), e))?;
                file.set_len(replay.valid_len)
                    .map_err(|e| Error::io(ctx("repairing the last line of"), e))?;
                drop(file);
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(ctx("opening"), e))?;
                (file, replay.valid_len)
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
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(ctx("opening"), e))?;
                (file, line.len() as u64)
            }
        };
        Ok(Writer {
            file,
            path: path.to_path_buf(),
            last_sync: Instant::now(),
            dirty: false,
            len,
            broken: false,
        })
    }

    /// Append one entry, handed to the kernel before this returns. After a failed write (a full
    /// disk) the part of the line that was written is cut off and nothing more is appended: if
    /// space came back, a later entry would otherwise land after the fragment, in the middle of
    /// the file, and the journal could not be replayed.
    pub fn record(&mut self, entry: &Entry) -> Result<()> {
        let ctx = || format!("writing {}", self.path.display());
        if self.broken {
            return Err(Error::Failed(format!(
                "{}: an earlier write failed, so nothing more is recorded",
                ctx()
            )));
        }
        let mut line = serde_json::to_string(entry).expect("serialise");
        line.push('\n');
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            self.broken = true;
            // If this fails too, the fragment is the last line, which replaying drops.
            let _ = self.file.set_len(self.len);
            return Err(Error::io(ctx(), e));
        }
        self.len += line.len() as u64;
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
            batch_sha256: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881".into(),
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
        let r = replay(text.as_bytes(), 5).unwrap();
        assert_eq!(r.header.unwrap().template_id, "T");
        assert_eq!(r.index.state(2), Some(State::Sent));
        assert_eq!(
            r.index.state(3),
            Some(State::Sending),
            "in flight when killed"
        );
        assert_eq!(r.index.state(4), None, "a retry is pending again");
        assert_eq!(r.index.state(5), Some(State::Failed));
        assert_eq!(r.valid_len, text.len() as u64);
        assert!(!r.torn);
        // The index points at each line's final entry; a `sending` reads back as unknown.
        let at = |line| r.index.offset(line).unwrap() as usize;
        let tail = |line| text[at(line)..].lines().next().unwrap();
        assert_eq!(tail(2), entry(2, State::Sent));
        let settled = settle(serde_json::from_str(tail(3)).unwrap());
        assert_eq!(settled.state, State::Unknown);
        assert!(settled.sub_msg.unwrap().contains("no outcome was recorded"));
        assert!(r.index.anything_sent());
    }

    #[test]
    fn a_refused_new_attempt_keeps_an_earlier_unknown() {
        let text = [
            header(),
            entry(2, State::Sending),
            entry(2, State::Unknown),
            // A later run with --retry-unknown: refused, so certainly not delivered this time,
            // but the first attempt may still have been.
            entry(2, State::Sending),
            entry(2, State::Retry),
            entry(3, State::Sending),
            entry(3, State::Retry),
            String::new(),
        ]
        .join("\n");
        let r = replay(text.as_bytes(), 3).unwrap();
        assert_eq!(r.index.state(2), Some(State::Unknown));
        assert_eq!(r.index.state(3), None);
        assert!(r.index.anything_sent());
        let none = replay(
            format!("{}\n{}\n", header(), entry(3, State::Failed)).as_bytes(),
            3,
        );
        assert!(!none.unwrap().index.anything_sent());
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let good = format!("{}\n{}\n", header(), entry(2, State::Sent));
        let torn = format!("{good}{}", &entry(3, State::Sending)[..10]);
        let r = replay(torn.as_bytes(), 3).unwrap();
        assert!(r.torn);
        assert_eq!(r.valid_len, good.len() as u64);
        assert_eq!(r.index.state(3), None);
        // Even a complete object without its newline counts as torn (the write was cut).
        let r = replay(format!("{good}{}", entry(3, State::Sending)).as_bytes(), 3).unwrap();
        assert_eq!(r.index.state(3), None);
        // A torn header: nothing was sent yet.
        let r = replay(&header().as_bytes()[..5], 3).unwrap();
        assert!(r.header.is_none());
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let text = format!("{}\n{{\"line\":2,\n{}\n", header(), entry(3, State::Sent));
        let e = replay(text.as_bytes(), 3).unwrap_err();
        assert!(e.starts_with("line 2 is damaged"), "{e}");
        assert!(replay(&b"hello\n"[..], 3).unwrap_err().contains("header"));
    }
}
