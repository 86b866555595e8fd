//! Crash-safe progress of an export to a file: the ID list written beside the output as pages
//! arrive (`.NAME.ids`, fsynced after each page), and the checkpoint that says how far it is valid
//! and where the follower list goes on (`.NAME.checkpoint`, replaced atomically after each page).
//! A crash at any moment leaves a checkpoint that matches a prefix of the ID list.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::export::{Cursor, Summary};
use crate::output::create_private;

const VERSION: u32 = 1;

/// The two files that hold an export's progress, beside its output.
#[derive(Clone, Debug)]
pub struct Paths {
    pub ids: PathBuf,
    pub checkpoint: PathBuf,
}

pub fn paths(output: &Path) -> Paths {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Paths {
        ids: output.with_file_name(format!(".{name}.ids")),
        checkpoint: output.with_file_name(format!(".{name}.checkpoint")),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// The app and gateway the list came from: resuming against another one is refused.
    pub app_id: String,
    pub gateway: String,
    /// The cursor the last written page was requested with (re-read on resume to rebuild the
    /// duplicate window), and the one to request next (`None`: the list has ended).
    pub cursor: Option<Cursor>,
    pub next: Option<Cursor>,
    pub used: Vec<Cursor>,
    pub summary: Summary,
    /// How many bytes of the ID list are valid.
    pub ids_bytes: u64,
    /// The whole list is in the ID list; only rendering the output remains.
    pub complete: bool,
}

impl Checkpoint {
    pub fn new(app_id: &str, gateway: &str) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            app_id: app_id.to_string(),
            gateway: gateway.to_string(),
            cursor: None,
            next: None,
            used: Vec::new(),
            summary: Summary::default(),
            ids_bytes: 0,
            complete: false,
        }
    }
}

pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let cp: Checkpoint = serde_json::from_str(&text).map_err(|e| {
        Error::Failed(format!(
            "the checkpoint {} is damaged ({e}); start over with --restart",
            path.display()
        ))
    })?;
    if cp.version != VERSION {
        return Err(Error::Failed(format!(
            "the checkpoint {} was written by another version of alipaylife; start over with --restart",
            path.display()
        )));
    }
    Ok(Some(cp))
}

/// Replace the checkpoint atomically: write a temporary file, fsync it, rename it over.
pub fn save(path: &Path, cp: &Checkpoint) -> Result<()> {
    let temp = path.with_extension("checkpoint.tmp");
    let mut f =
        create_private(&temp).map_err(|e| Error::io(format!("writing {}", temp.display()), e))?;
    let text = serde_json::to_vec(cp).expect("checkpoint serialises");
    f.write_all(&text)
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io(format!("writing {}", temp.display()), e))?;
    fs::rename(&temp, path).map_err(|e| Error::io(format!("renaming {}", temp.display()), e))
}

/// Checkpoint first: a crash between the two removals leaves an ID list without a checkpoint
/// (ignored, then overwritten), never a checkpoint pointing at a missing list.
pub fn remove(paths: &Paths) {
    let _ = fs::remove_file(&paths.checkpoint);
    let _ = fs::remove_file(&paths.ids);
}

/// The append-only ID list, one ID a line.
pub struct IdList {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
}

impl IdList {
    pub fn create(path: &Path) -> Result<IdList> {
        let file = create_private(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        Ok(IdList {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(256 * 1024, file),
            bytes: 0,
        })
    }

    /// Reopen after a crash, cutting off anything written after the checkpoint (a torn page).
    pub fn reopen(path: &Path, bytes: u64) -> Result<IdList> {
        let mut file = OpenOptions::new().write(true).open(path).map_err(|e| {
            Error::io(
                format!(
                    "cannot reopen {} to resume (start over with --restart)",
                    path.display()
                ),
                e,
            )
        })?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        if len < bytes {
            return Err(Error::Failed(format!(
                "{} is shorter ({len} bytes) than its checkpoint says ({bytes}); it was changed or \
                 cut: start over with --restart",
                path.display()
            )));
        }
        file.set_len(bytes)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
        Ok(IdList {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(256 * 1024, file),
            bytes,
        })
    }

    /// Append a page and make it durable before the checkpoint can point past it.
    pub fn append(&mut self, ids: &[&str]) -> Result<()> {
        let err = |e| Error::io(format!("writing {}", self.path.display()), e);
        for id in ids {
            if id.contains(['\n', '\r']) {
                return Err(Error::Failed(format!(
                    "the gateway returned an ID with a line break ({id:?})"
                )));
            }
            self.file.write_all(id.as_bytes()).map_err(err)?;
            self.file.write_all(b"\n").map_err(err)?;
            self.bytes += id.len() as u64 + 1;
        }
        self.file.flush().map_err(err)?;
        self.file.get_ref().sync_data().map_err(err)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Stream the ID list back in chunks, for rendering the output.
pub fn read_ids(
    path: &Path,
    chunk: usize,
    mut each: impl FnMut(&[&str]) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut lines = BufReader::with_capacity(256 * 1024, file).lines();
    let mut buf: Vec<String> = Vec::with_capacity(chunk);
    loop {
        buf.clear();
        for line in lines.by_ref().take(chunk) {
            buf.push(line.map_err(|e| Error::io(format!("reading {}", path.display()), e))?);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = buf.iter().map(String::as_str).collect();
        each(&ids)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_list_survives_a_torn_page() {
        let dir = std::env::temp_dir().join(format!("alipaylife-cp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = paths(&dir.join("f.csv"));
        assert!(p.ids.ends_with(".f.csv.ids") && p.checkpoint.ends_with(".f.csv.checkpoint"));
        let mut list = IdList::create(&p.ids).unwrap();
        list.append(&["a", "bb"]).unwrap();
        let good = list.bytes();
        assert_eq!(good, 5);
        list.append(&["ccc"]).unwrap(); // written, but no checkpoint points past it
        drop(list);
        let mut list = IdList::reopen(&p.ids, good).unwrap();
        list.append(&["d"]).unwrap();
        let mut all = Vec::new();
        read_ids(&p.ids, 2, |ids| {
            all.extend(ids.iter().map(|s| s.to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(all, ["a", "bb", "d"]);
        assert!(
            IdList::reopen(&p.ids, 1000).is_err(),
            "a list shorter than its checkpoint is refused"
        );

        let mut cp = Checkpoint::new("1", "http://g");
        cp.next = Some(Cursor::UserId("x".into()));
        save(&p.checkpoint, &cp).unwrap();
        assert_eq!(load(&p.checkpoint).unwrap().unwrap().next, cp.next);
        fs::write(&p.checkpoint, "{").unwrap();
        assert!(
            load(&p.checkpoint)
                .unwrap_err()
                .to_string()
                .contains("damaged")
        );
        remove(&p);
        assert!(load(&p.checkpoint).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
