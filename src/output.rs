//! Where data goes and how people are told: files written under a temporary name and renamed only
//! when complete, stdout for `-o -`, a progress line on stderr only when it is a terminal.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A file that appears under its real name only once complete. Personal data: created 0600.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
}

/// `dir/.name.partial`: beside the target, so the final rename never crosses filesystems.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// The mode finished data files get (`--file-mode`); they are 0600 while written, whatever it is.
static FILE_MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Parse and set `--file-mode` (octal, e.g. `640`) once, for every file this run writes.
pub fn set_file_mode(mode: &str) -> Result<()> {
    let parsed = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--file-mode {mode:?} is not an octal mode like 600 or 640"
            ))
        })?;
    if parsed & 0o002 != 0 {
        return Err(Error::Usage(format!(
            "--file-mode {mode} would let every user of the machine change the file; use at most 664"
        )));
    }
    let _ = FILE_MODE.set(parsed);
    Ok(())
}

/// Create (truncating) a file readable and writable by its owner only: exports, reports and
/// journals hold personal data.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl AtomicFile {
    /// Create the temporary file now, so an unwritable directory fails before any network call.
    pub fn create(path: &Path) -> Result<AtomicFile> {
        if path.is_dir() {
            return Err(Error::Usage(format!(
                "{} is a directory; give a file name",
                path.display()
            )));
        }
        let temp = temp_path(path);
        let file = create_private(&temp).map_err(|e| {
            Error::io(
                format!("cannot create {} (for {})", temp.display(), path.display()),
                e,
            )
        })?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            temp,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush and fsync what was written so far.
    pub fn sync(&mut self) -> Result<()> {
        let w = self.file.as_mut().expect("file open until commit");
        w.flush()
            .map_err(|e| Error::io(format!("writing {}", self.temp.display()), e))?;
        w.get_ref()
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.temp.display()), e))
    }

    /// Make the file appear under its real name: flush, fsync, rename, fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        self.sync()?;
        drop(self.file.take());
        #[cfg(unix)]
        if let Some(mode) = FILE_MODE.get() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.temp, fs::Permissions::from_mode(*mode)).map_err(|e| {
                Error::io(format!("setting the mode of {}", self.temp.display()), e)
            })?;
        }
        fs::rename(&self.temp, &self.path).map_err(|e| {
            Error::io(
                format!(
                    "renaming {} to {}",
                    self.temp.display(),
                    self.path.display()
                ),
                e,
            )
        })?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .expect("file open until commit")
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("file open until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed: remove the incomplete file so it can never be mistaken for a full export.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The data destination: stdout (`-`) or an atomic file.
pub enum Sink {
    Stdout(BufWriter<io::Stdout>),
    File(AtomicFile),
}

impl Sink {
    pub fn open(path: &str) -> Result<Sink> {
        if path == "-" {
            Ok(Sink::Stdout(BufWriter::with_capacity(
                256 * 1024,
                io::stdout(),
            )))
        } else {
            Ok(Sink::File(AtomicFile::create(Path::new(path))?))
        }
    }

    /// Flush after a page, so a reader (or a crash) sees every complete page.
    pub fn page_done(&mut self) -> Result<()> {
        match self {
            Sink::Stdout(w) => w
                .flush()
                .map_err(|e| Error::io("writing to standard output", e)),
            Sink::File(f) => f
                .flush()
                .map_err(|e| Error::io(format!("writing {}", f.path().display()), e)),
        }
    }

    pub fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut w) => w
                .flush()
                .map_err(|e| Error::io("writing to standard output", e)),
            Sink::File(f) => f.commit(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

/// A single rewriting status line on stderr, only when stderr is a terminal and not `-q`.
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
            shown: false,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Redraw at most ten times a second; `line` is only built when drawn.
    pub fn update(&mut self, line: impl FnOnce(Duration) -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", line(self.started.elapsed()));
        let _ = err.flush();
    }

    pub fn clear(&mut self) {
        if self.shown {
            let _ = write!(io::stderr().lock(), "\r\x1b[2K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// 1234567 -> "1,234,567".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Items per second, rounded, for summaries.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        count(n)
    } else {
        count((n as f64 / secs).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(10_000_000), "10,000,000");
    }

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = std::env::temp_dir().join(format!("alipaylife-out-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.csv");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"x\n").unwrap();
        assert!(!path.exists());
        assert!(temp_path(&path).exists());
        drop(f);
        assert!(
            !temp_path(&path).exists(),
            "dropped without commit: temp removed"
        );
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"y\n").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"y\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
