//! Output formats of the follower export: the format names and their inference from `-o`, the
//! checks made before any network call, and one streaming writer per format (csv, xlsx, txt,
//! jsonl, ums-json). Every file is written under a temporary name and appears only when complete;
//! memory holds at most one page of IDs (xlsx rows go to the workbook's temporary files).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_xlsxwriter as xlsx;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::error::{Error, Result};
use crate::export::IdKind;
use crate::output::{self, AtomicFile, Sink};

/// The column UMS's follower import reads the Alipay ID from.
pub const ID_HEADER: &str = "alipaylife_userid";
/// The UMS user key column of the channel-code layout.
pub const USERID_HEADER: &str = "userid";
/// Excel's row limit per worksheet, header row included.
pub const XLSX_MAX_ROWS: u32 = 1_048_576;

/// An output format of `alipaylife export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with the header `alipaylife_userid` (or `userid,alipaylife_userid`).
    Csv,
    /// An Excel workbook; ID cells are text so no digit is lost.
    Xlsx,
    /// One ID per line, no header.
    Txt,
    /// One JSON object per line: `{"id":"…","kind":"user_id"}`.
    Jsonl,
    /// Numbered JSON array files, bodies for the UMS REST user upload.
    UmsJson,
}

impl Format {
    /// Every format, in the order help texts list them.
    pub const ALL: [Format; 5] = [
        Format::Csv,
        Format::Xlsx,
        Format::Txt,
        Format::Jsonl,
        Format::UmsJson,
    ];

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Txt => "txt",
            Format::Jsonl => "jsonl",
            Format::UmsJson => "ums-json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    /// Parse a `--format` value; the error lists the known names.
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown --format {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// The format a `-o` path implies by its extension: `-` (stdout) is csv, `.json` is ums-json;
/// `None` when the extension says nothing.
pub fn infer(path: &str) -> Option<Format> {
    if path == "-" {
        return Some(Format::Csv);
    }
    let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(Format::Csv),
        "xlsx" => Some(Format::Xlsx),
        "txt" => Some(Format::Txt),
        "jsonl" => Some(Format::Jsonl),
        "json" => Some(Format::UmsJson),
        _ => None,
    }
}

/// How the export is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    /// csv only: a UTF-8 byte order mark and CRLF line ends, for Excel on Windows.
    pub bom: bool,
    /// The UMS channel code: csv and xlsx switch to the `userid,alipaylife_userid` upload layout;
    /// required by ums-json.
    pub channel_code: Option<String>,
    /// Put before each ID to make the UMS `userid` (the ID itself when `None`).
    pub userid_prefix: Option<String>,
    /// ums-json only: at most this many users per file.
    pub batch_size: usize,
}

impl Options {
    /// Plain CSV, the default.
    pub fn csv() -> Options {
        Options {
            format: Format::Csv,
            bom: false,
            channel_code: None,
            userid_prefix: None,
            batch_size: 1000,
        }
    }

    /// The header row of csv and xlsx.
    fn columns(&self) -> &'static [&'static str] {
        if self.channel_code.is_some() {
            &[USERID_HEADER, ID_HEADER]
        } else {
            &[ID_HEADER]
        }
    }

    /// The UMS user key for an ID.
    fn userid(&self, id: &str) -> String {
        match &self.userid_prefix {
            Some(prefix) => format!("{prefix}{id}"),
            None => id.to_string(),
        }
    }
}

/// Check the format, its flags and the output directory; run before any network call, so a
/// mistake costs nothing. Every error is `Error::Usage`.
pub fn validate(path: &str, options: &Options) -> Result<()> {
    let usage = |msg: String| Err(Error::Usage(msg));
    let format = options.format;
    if path.is_empty() {
        return usage("-o is empty; give a file name, or - for standard output".into());
    }
    if options.batch_size == 0 {
        return usage("--batch-size must be at least 1".into());
    }
    if options.bom && format != Format::Csv {
        return usage(format!(
            "--bom only applies to --format csv; drop --bom or use --format csv (not {format})"
        ));
    }
    match &options.channel_code {
        Some(code) if code.trim().is_empty() => {
            return usage("--channel-code is empty; give the UMS channel code".into());
        }
        Some(_) if matches!(format, Format::Txt | Format::Jsonl) => {
            return usage(format!(
                "--channel-code only applies to --format csv, xlsx or ums-json (not {format})"
            ));
        }
        None if format == Format::UmsJson => {
            return usage(
                "--format ums-json needs --channel-code: the UMS channel code the IDs are stored under"
                    .into(),
            );
        }
        None if options.userid_prefix.is_some() => {
            return usage(
                "--userid-prefix only applies with --channel-code (the UMS upload layout)".into(),
            );
        }
        _ => {}
    }
    if path == "-" {
        return match format {
            Format::Xlsx => usage(
                "--format xlsx cannot be written to standard output; give a file name with -o, \
                 such as -o followers.xlsx"
                    .into(),
            ),
            Format::UmsJson => usage(
                "--format ums-json writes numbered files and cannot go to standard output; give a \
                 file name with -o, such as -o users.json"
                    .into(),
            ),
            _ => Ok(()),
        };
    }
    check_directory(Path::new(path))
}

/// The target must not be a directory, and its directory must exist and take a new file.
fn check_directory(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "-o {} is a directory; give a file name",
            path.display()
        )));
    }
    let dir = parent_dir(path);
    match fs::metadata(dir) {
        Err(_) => {
            return Err(Error::Usage(format!(
                "the directory {} of -o {} does not exist; create it or choose another path",
                dir.display(),
                path.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::Usage(format!(
                "{} is not a directory (in -o {}); choose another path",
                dir.display(),
                path.display()
            )));
        }
        Ok(_) => {}
    }
    let probe = dir.join(format!(".alipaylife-probe-{}", std::process::id()));
    match output::create_private(&probe) {
        Ok(file) => {
            drop(file);
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Usage(format!(
            "cannot write in {} (for -o {}): {e}; choose a writable directory",
            dir.display(),
            path.display()
        ))),
    }
}

/// The directory a file lands in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A streaming writer of follower IDs in one format.
/// The files an export wrote. Numbered ums-json files are kept as a base and a count, not as a
/// list, so memory does not grow with the number of followers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Written {
    /// Standard output, or nothing to write.
    #[default]
    None,
    One(PathBuf),
    /// `base-0001.ext` … `base-{count:04}.ext`.
    Numbered {
        base: PathBuf,
        count: u32,
    },
}

impl Written {
    pub fn count(&self) -> u32 {
        match self {
            Written::None => 0,
            Written::One(_) => 1,
            Written::Numbered { count, .. } => *count,
        }
    }

    pub fn first(&self) -> Option<PathBuf> {
        match self {
            Written::None => None,
            Written::One(p) => Some(p.clone()),
            Written::Numbered { count: 0, .. } => None,
            Written::Numbered { base, .. } => Some(numbered_path(base, 1)),
        }
    }

    pub fn last(&self) -> Option<PathBuf> {
        match self {
            Written::Numbered { base, count } if *count > 0 => Some(numbered_path(base, *count)),
            other => other.first(),
        }
    }

    /// Every path, generated one at a time.
    pub fn paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let (one, numbered) = match self {
            Written::None => (None, None),
            Written::One(p) => (Some(p.clone()), None),
            Written::Numbered { base, count } => (None, Some((base, *count))),
        };
        one.into_iter().chain(
            numbered
                .into_iter()
                .flat_map(|(base, count)| (1..=count).map(move |n| numbered_path(base, n))),
        )
    }
}

pub trait IdWriter {
    /// Write one page's IDs (already deduplicated by the paging loop).
    fn write_ids(&mut self, kind: IdKind, ids: &[&str]) -> Result<()>;
    /// A page is complete: flush it out of memory.
    fn page_done(&mut self) -> Result<()>;
    /// Commit every file under its real name; return the paths written (none for stdout).
    /// Dropping a writer without calling this leaves no file that looks complete.
    fn finish(self: Box<Self>) -> Result<Written>;
}

/// Open the writer for `options.format` at `path` (`-` is stdout). Call [`validate`] first.
pub fn open(path: &str, options: &Options) -> Result<Box<dyn IdWriter>> {
    Ok(match options.format {
        Format::Csv => Box::new(CsvWriter::open(path, options)?),
        Format::Txt => Box::new(LineWriter::open(path, LineKind::Txt)?),
        Format::Jsonl => Box::new(LineWriter::open(path, LineKind::Jsonl)?),
        Format::Xlsx => Box::new(XlsxWriter::open(Path::new(path), options, XLSX_MAX_ROWS)?),
        Format::UmsJson => Box::new(UmsJsonWriter::open(Path::new(path), options)?),
    })
}

/// How many worksheets an xlsx export of `rows` IDs has (each sheet repeats the header row).
pub fn xlsx_sheet_count(rows: u64) -> u32 {
    sheet_count(rows, XLSX_MAX_ROWS)
}

fn sheet_count(rows: u64, rows_per_sheet: u32) -> u32 {
    let per_sheet = u64::from(rows_per_sheet - 1);
    rows.div_ceil(per_sheet).max(1) as u32
}

/// The path of ums-json file number `n`: `users.json` → `users-0001.json`.
pub fn numbered_path(path: &Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "json".to_string());
    path.with_file_name(format!("{stem}-{n:04}.{ext}"))
}

fn target_name(path: &str) -> String {
    if path == "-" {
        "standard output".to_string()
    } else {
        path.to_string()
    }
}

fn file_paths(path: &str) -> Written {
    if path == "-" {
        Written::None
    } else {
        Written::One(PathBuf::from(path))
    }
}

fn write_error(target: &str, err: io::Error) -> Error {
    Error::io(format!("writing {target}"), err)
}

fn csv_error(target: &str, err: csv::Error) -> Error {
    match err.into_kind() {
        csv::ErrorKind::Io(io) => write_error(target, io),
        other => Error::Failed(format!("writing {target}: {other:?}")),
    }
}

/// RFC 4180 via the csv crate; the cells are the IDs as they are, with no spreadsheet tricks.
struct CsvWriter {
    path: String,
    writer: csv::Writer<Sink>,
    ums: bool,
    options: Options,
}

impl CsvWriter {
    fn open(path: &str, options: &Options) -> Result<CsvWriter> {
        let target = target_name(path);
        let mut sink = Sink::open(path)?;
        if options.bom {
            sink.write_all("\u{feff}".as_bytes())
                .map_err(|e| write_error(&target, e))?;
        }
        let terminator = if options.bom {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        };
        let mut writer = csv::WriterBuilder::new()
            .buffer_capacity(64 * 1024)
            .terminator(terminator)
            .from_writer(sink);
        writer
            .write_record(options.columns())
            .map_err(|e| csv_error(&target, e))?;
        Ok(CsvWriter {
            path: path.to_string(),
            writer,
            ums: options.channel_code.is_some(),
            options: options.clone(),
        })
    }
}

impl IdWriter for CsvWriter {
    fn write_ids(&mut self, _kind: IdKind, ids: &[&str]) -> Result<()> {
        for id in ids {
            let result = if self.ums {
                let userid = self.options.userid(id);
                self.writer.write_record([userid.as_str(), id])
            } else {
                self.writer.write_record([id])
            };
            result.map_err(|e| csv_error(&target_name(&self.path), e))?;
        }
        Ok(())
    }

    fn page_done(&mut self) -> Result<()> {
        // Flushes the csv buffer and then the sink, as `Sink::page_done` does.
        self.writer
            .flush()
            .map_err(|e| write_error(&target_name(&self.path), e))
    }

    fn finish(self: Box<Self>) -> Result<Written> {
        let target = target_name(&self.path);
        let sink = self
            .writer
            .into_inner()
            .map_err(|e| write_error(&target, e.into_error()))?;
        sink.finish()?;
        Ok(file_paths(&self.path))
    }
}

#[derive(Clone, Copy)]
enum LineKind {
    Txt,
    Jsonl,
}

/// One line per ID: txt (the bare ID) or jsonl (`{"id":…,"kind":…}`).
struct LineWriter {
    path: String,
    sink: Sink,
    kind: LineKind,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    id: &'a str,
    kind: &'static str,
}

fn kind_name(kind: IdKind) -> &'static str {
    match kind {
        IdKind::UserId => "user_id",
        IdKind::OpenId => "open_id",
    }
}

impl LineWriter {
    fn open(path: &str, kind: LineKind) -> Result<LineWriter> {
        Ok(LineWriter {
            path: path.to_string(),
            sink: Sink::open(path)?,
            kind,
        })
    }
}

impl IdWriter for LineWriter {
    fn write_ids(&mut self, kind: IdKind, ids: &[&str]) -> Result<()> {
        let target = target_name(&self.path);
        for id in ids {
            match self.kind {
                LineKind::Txt => {
                    if id.contains(['\n', '\r']) {
                        return Err(Error::Failed(format!(
                            "an ID contains a line break and cannot be written as txt; use \
                             --format csv or jsonl: {id:?}"
                        )));
                    }
                    self.sink.write_all(id.as_bytes())
                }
                LineKind::Jsonl => {
                    let line = JsonLine {
                        id,
                        kind: kind_name(kind),
                    };
                    serde_json::to_writer(&mut self.sink, &line).map_err(io::Error::from)
                }
            }
            .and_then(|()| self.sink.write_all(b"\n"))
            .map_err(|e| write_error(&target, e))?;
        }
        Ok(())
    }

    fn page_done(&mut self) -> Result<()> {
        self.sink.page_done()
    }

    fn finish(self: Box<Self>) -> Result<Written> {
        self.sink.finish()?;
        Ok(file_paths(&self.path))
    }
}

/// `{"<key>": <value>}` without building a map.
struct OneEntry<'a>(&'a str, &'a str);

impl Serialize for OneEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

#[derive(Serialize)]
struct UmsSet<'a> {
    alipaylife: OneEntry<'a>,
}

#[derive(Serialize)]
struct UmsUser<'a> {
    userid: &'a str,
    set: UmsSet<'a>,
}

/// UMS REST upload bodies: JSON arrays of at most `batch_size` users in numbered files, each
/// committed as soon as it is full. Streams: no batch is held in memory.
struct UmsJsonWriter {
    base: PathBuf,
    options: Options,
    channel_code: String,
    current: Option<AtomicFile>,
    in_current: usize,
    files: u32,
    /// Files committed so far (numbered from 1).
    committed: u32,
}

impl UmsJsonWriter {
    fn open(path: &Path, options: &Options) -> Result<UmsJsonWriter> {
        let channel_code = options
            .channel_code
            .clone()
            .ok_or_else(|| Error::Usage("--format ums-json needs --channel-code".to_string()))?;
        if options.batch_size == 0 {
            return Err(Error::Usage("--batch-size must be at least 1".to_string()));
        }
        Ok(UmsJsonWriter {
            base: path.to_path_buf(),
            options: options.clone(),
            channel_code,
            current: None,
            in_current: 0,
            files: 0,
            committed: 0,
        })
    }

    /// Close the array of the current file and make it appear under its real name.
    fn commit_current(&mut self) -> Result<()> {
        if let Some(mut file) = self.current.take() {
            let path = file.path().to_path_buf();
            file.write_all(b"\n]\n")
                .map_err(|e| write_error(&path.display().to_string(), e))?;
            file.commit()?;
            self.committed += 1;
            self.in_current = 0;
        }
        Ok(())
    }
}

impl IdWriter for UmsJsonWriter {
    fn write_ids(&mut self, _kind: IdKind, ids: &[&str]) -> Result<()> {
        for id in ids {
            let file = match &mut self.current {
                Some(file) => {
                    file.write_all(b",\n")
                        .map_err(|e| write_error(&file.path().display().to_string(), e))?;
                    file
                }
                None => {
                    self.files += 1;
                    let mut file = AtomicFile::create(&numbered_path(&self.base, self.files))?;
                    file.write_all(b"[\n")
                        .map_err(|e| write_error(&file.path().display().to_string(), e))?;
                    self.current.insert(file)
                }
            };
            let userid = self.options.userid(id);
            let user = UmsUser {
                userid: &userid,
                set: UmsSet {
                    alipaylife: OneEntry(&self.channel_code, id),
                },
            };
            serde_json::to_writer(&mut *file, &user)
                .map_err(|e| write_error(&file.path().display().to_string(), io::Error::from(e)))?;
            self.in_current += 1;
            if self.in_current >= self.options.batch_size {
                self.commit_current()?;
            }
        }
        Ok(())
    }

    fn page_done(&mut self) -> Result<()> {
        if let Some(file) = &mut self.current {
            file.flush()
                .map_err(|e| write_error(&file.path().display().to_string(), e))?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Written> {
        self.commit_current()?;
        Ok(if self.committed == 0 {
            Written::None
        } else {
            Written::Numbered {
                base: self.base.clone(),
                count: self.committed,
            }
        })
    }
}

/// A workbook in constant-memory mode: rows stream to temporary files in the target's directory
/// (removed by the OS when closed), the zip is written to `.NAME.partial` on finish and renamed.
struct XlsxWriter {
    file: AtomicFile,
    workbook: xlsx::Workbook,
    options: Options,
    rows_per_sheet: u32,
    /// Index of the sheet being written.
    sheet: usize,
    /// Next row to write in that sheet.
    row: u32,
    header_format: xlsx::Format,
    id_format: xlsx::Format,
}

/// Column width (in characters) for 16-digit IDs and the header.
const XLSX_ID_WIDTH: f64 = 20.0;

impl XlsxWriter {
    fn open(path: &Path, options: &Options, rows_per_sheet: u32) -> Result<XlsxWriter> {
        assert!(
            (2..=XLSX_MAX_ROWS).contains(&rows_per_sheet),
            "a sheet holds the header and at least one ID"
        );
        let file = AtomicFile::create(path)?;
        let mut workbook = xlsx::Workbook::new();
        workbook
            .set_tempdir(parent_dir(path))
            .map_err(|e| xlsx_error(path, e))?;
        let mut writer = XlsxWriter {
            file,
            workbook,
            options: options.clone(),
            rows_per_sheet,
            sheet: 0,
            row: 0,
            header_format: xlsx::Format::new().set_bold(),
            // Excel's built-in Text format (`@`, numFmtId 49), rather than a custom copy of it.
            id_format: xlsx::Format::new().set_num_format_index(49),
        };
        writer.begin_sheet(true)?;
        Ok(writer)
    }

    fn target(&self) -> &Path {
        self.file.path()
    }

    /// Add a sheet with text ID columns, a frozen bold header row.
    fn begin_sheet(&mut self, first: bool) -> Result<()> {
        let path = self.file.path().to_path_buf();
        let err = |e| xlsx_error(&path, e);
        let sheet = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(err)?;
        let columns = self.options.columns();
        let prefix_len = self
            .options
            .userid_prefix
            .as_ref()
            .map_or(0, |p| p.chars().count());
        for (col, header) in columns.iter().enumerate() {
            let col = col as u16;
            let width = if *header == USERID_HEADER {
                (XLSX_ID_WIDTH + prefix_len as f64).min(60.0)
            } else {
                XLSX_ID_WIDTH
            };
            sheet.set_column_width(col, width).map_err(err)?;
            sheet.set_column_format(col, &self.id_format).map_err(err)?;
            sheet
                .write_string_with_format(0, col, *header, &self.header_format)
                .map_err(err)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(err)?;
        if !first {
            self.sheet += 1;
        }
        self.row = 1;
        Ok(())
    }

    /// Suppress Excel's "number stored as text" warning over the sheet's used range.
    fn end_sheet(&mut self) -> Result<()> {
        let path = self.file.path().to_path_buf();
        let last_col = (self.options.columns().len() - 1) as u16;
        self.workbook
            .worksheet_from_index(self.sheet)
            .and_then(|s| {
                s.ignore_error_range(
                    0,
                    0,
                    self.row - 1,
                    last_col,
                    xlsx::IgnoreError::NumberStoredAsText,
                )
            })
            .map_err(|e| xlsx_error(&path, e))?;
        Ok(())
    }
}

impl IdWriter for XlsxWriter {
    fn write_ids(&mut self, _kind: IdKind, ids: &[&str]) -> Result<()> {
        let ums = self.options.channel_code.is_some();
        for id in ids {
            if self.row >= self.rows_per_sheet {
                self.end_sheet()?;
                self.begin_sheet(false)?;
            }
            let path = self.target().to_path_buf();
            let sheet = self
                .workbook
                .worksheet_from_index(self.sheet)
                .map_err(|e| xlsx_error(&path, e))?;
            let result = if ums {
                let userid = self.options.userid(id);
                sheet
                    .write_string_with_format(self.row, 0, userid, &self.id_format)
                    .and_then(|s| s.write_string_with_format(self.row, 1, *id, &self.id_format))
            } else {
                sheet.write_string_with_format(self.row, 0, *id, &self.id_format)
            };
            result.map_err(|e| xlsx_error(&path, e))?;
            self.row += 1;
        }
        Ok(())
    }

    fn page_done(&mut self) -> Result<()> {
        // Constant-memory rows are already in the workbook's temporary files.
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Written> {
        self.end_sheet()?;
        let path = self.target().to_path_buf();
        self.workbook
            .save_to_writer(&mut self.file)
            .map_err(|e| xlsx_error(&path, e))?;
        let XlsxWriter { file, .. } = *self;
        file.commit()?;
        Ok(Written::One(path))
    }
}

fn xlsx_error(path: &Path, err: xlsx::XlsxError) -> Error {
    match err {
        xlsx::XlsxError::IoError(e) => write_error(&path.display().to_string(), e),
        xlsx::XlsxError::TempFileError(dir, e) => Error::io(
            format!(
                "cannot create a temporary file in {} (for {})",
                dir.display(),
                path.display()
            ),
            e,
        ),
        other => Error::Failed(format!("writing {}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A fresh, empty directory for one test.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("alipaylife-formats-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn options(format: Format) -> Options {
        Options {
            format,
            bom: false,
            channel_code: None,
            userid_prefix: None,
            batch_size: 1000,
        }
    }

    /// Validate, open, write `ids` in pages of two, finish; return the paths written.
    fn write(path: &Path, options: &Options, ids: &[&str]) -> Vec<PathBuf> {
        let path = path.to_str().unwrap();
        validate(path, options).unwrap();
        let mut writer = open(path, options).unwrap();
        for page in ids.chunks(2) {
            writer.write_ids(IdKind::UserId, page).unwrap();
            writer.page_done().unwrap();
        }
        writer.finish().unwrap().paths().collect()
    }

    fn text(path: &Path) -> String {
        String::from_utf8(fs::read(path).unwrap()).unwrap()
    }

    fn zip_entry(path: &Path, name: &str) -> Option<String> {
        let mut archive = zip::ZipArchive::new(fs::File::open(path).unwrap()).unwrap();
        let mut entry = archive.by_name(name).ok()?;
        let mut s = String::new();
        entry.read_to_string(&mut s).unwrap();
        Some(s)
    }

    /// The position in `<cellXfs>` of the first xf whose attributes contain `attr`.
    fn xf_index(styles: &str, attr: &str) -> usize {
        let xfs = styles.split("<cellXfs").nth(1).unwrap();
        let xfs = xfs.split("</cellXfs>").next().unwrap();
        xfs.split("<xf ")
            .skip(1)
            .position(|xf| xf.contains(attr))
            .unwrap_or_else(|| panic!("no xf with {attr}: {styles}"))
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    const IDS: [&str; 3] = ["2088000000000001", "2088000000000002", "2088000000000003"];

    #[test]
    fn names_parse_and_extensions_infer() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert_eq!("UMS-JSON".parse::<Format>(), Ok(Format::UmsJson));
        let err = "xls".parse::<Format>().unwrap_err();
        assert!(err.contains("csv, xlsx, txt, jsonl, ums-json"), "{err}");
        assert_eq!(infer("-"), Some(Format::Csv));
        assert_eq!(infer("a/b.CSV"), Some(Format::Csv));
        assert_eq!(infer("f.xlsx"), Some(Format::Xlsx));
        assert_eq!(infer("f.txt"), Some(Format::Txt));
        assert_eq!(infer("f.jsonl"), Some(Format::Jsonl));
        assert_eq!(infer("users.json"), Some(Format::UmsJson));
        assert_eq!(infer("followers"), None);
        assert_eq!(infer("f.xls"), None);
    }

    #[test]
    fn csv_is_lf_without_bom_and_crlf_with_bom() {
        let dir = temp_dir("csv");
        let path = dir.join("f.csv");
        assert_eq!(
            write(&path, &options(Format::Csv), &IDS),
            vec![path.clone()]
        );
        assert_eq!(
            text(&path),
            "alipaylife_userid\n2088000000000001\n2088000000000002\n2088000000000003\n"
        );
        let bom = Options {
            bom: true,
            ..options(Format::Csv)
        };
        write(&path, &bom, &IDS[..2]);
        assert_eq!(
            fs::read(&path).unwrap(),
            b"\xef\xbb\xbfalipaylife_userid\r\n2088000000000001\r\n2088000000000002\r\n"
        );
        // RFC 4180 quoting, no spreadsheet tricks.
        write(&path, &options(Format::Csv), &["a,b", "0012"]);
        assert_eq!(text(&path), "alipaylife_userid\n\"a,b\"\n0012\n");
        assert_eq!(leftovers(&dir), ["f.csv"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn csv_channel_code_layout_with_and_without_prefix() {
        let dir = temp_dir("csv-ums");
        let path = dir.join("u.csv");
        let ums = Options {
            channel_code: Some("ch1".into()),
            ..options(Format::Csv)
        };
        write(&path, &ums, &IDS[..2]);
        assert_eq!(
            text(&path),
            "userid,alipaylife_userid\n2088000000000001,2088000000000001\n\
             2088000000000002,2088000000000002\n"
        );
        let prefixed = Options {
            userid_prefix: Some("ali_".into()),
            ..ums
        };
        write(&path, &prefixed, &IDS[..2]);
        assert_eq!(
            text(&path),
            "userid,alipaylife_userid\nali_2088000000000001,2088000000000001\n\
             ali_2088000000000002,2088000000000002\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn txt_and_jsonl_write_one_id_per_line() {
        let dir = temp_dir("lines");
        let txt = dir.join("f.txt");
        write(&txt, &options(Format::Txt), &IDS);
        assert_eq!(
            text(&txt),
            "2088000000000001\n2088000000000002\n2088000000000003\n"
        );
        let jsonl = dir.join("f.jsonl");
        let opts = options(Format::Jsonl);
        let mut w = open(jsonl.to_str().unwrap(), &opts).unwrap();
        w.write_ids(IdKind::UserId, &IDS[..1]).unwrap();
        w.write_ids(IdKind::OpenId, &["o\"1"]).unwrap();
        assert_eq!(w.finish().unwrap(), Written::One(jsonl.clone()));
        assert_eq!(
            text(&jsonl),
            "{\"id\":\"2088000000000001\",\"kind\":\"user_id\"}\n\
             {\"id\":\"o\\\"1\",\"kind\":\"open_id\"}\n"
        );
        let mut w = open(txt.to_str().unwrap(), &options(Format::Txt)).unwrap();
        assert!(w.write_ids(IdKind::UserId, &["a\nb"]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ums_json_splits_into_numbered_files() {
        let dir = temp_dir("ums");
        let path = dir.join("users.json");
        let opts = Options {
            channel_code: Some("CH".into()),
            userid_prefix: Some("p-".into()),
            batch_size: 2,
            ..options(Format::UmsJson)
        };
        let ids = ["1", "2", "3", "4", "5"];
        let files = write(&path, &opts, &ids);
        let names: Vec<PathBuf> = (1..=3)
            .map(|n| dir.join(format!("users-000{n}.json")))
            .collect();
        assert_eq!(files, names);
        let user =
            |id: &str| format!(r#"{{"userid":"p-{id}","set":{{"alipaylife":{{"CH":"{id}"}}}}}}"#);
        assert_eq!(
            text(&names[0]),
            format!("[\n{},\n{}\n]\n", user("1"), user("2"))
        );
        assert_eq!(
            text(&names[1]),
            format!("[\n{},\n{}\n]\n", user("3"), user("4"))
        );
        assert_eq!(text(&names[2]), format!("[\n{}\n]\n", user("5")));
        for f in &names {
            let v: serde_json::Value = serde_json::from_str(&text(f)).unwrap();
            assert!(v.is_array());
        }
        assert_eq!(
            leftovers(&dir),
            ["users-0001.json", "users-0002.json", "users-0003.json"]
        );
        // Without a prefix the userid is the ID; with no IDs there are no files.
        let plain = Options {
            userid_prefix: None,
            ..opts.clone()
        };
        let other = dir.join("plain.json");
        write(&other, &plain, &["7"]);
        assert_eq!(
            text(&dir.join("plain-0001.json")),
            "[\n{\"userid\":\"7\",\"set\":{\"alipaylife\":{\"CH\":\"7\"}}}\n]\n"
        );
        assert!(write(&dir.join("none.json"), &opts, &[]).is_empty());
        assert!(!dir.join("none-0001.json").exists());
        assert_eq!(
            numbered_path(Path::new("d/users"), 12),
            Path::new("d/users-0012.json")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ums_json_commits_a_batch_as_soon_as_it_is_full() {
        let dir = temp_dir("ums-full");
        let path = dir.join("u.json");
        let opts = Options {
            channel_code: Some("CH".into()),
            batch_size: 2,
            ..options(Format::UmsJson)
        };
        let mut w = open(path.to_str().unwrap(), &opts).unwrap();
        w.write_ids(IdKind::UserId, &["1", "2", "3"]).unwrap();
        assert!(dir.join("u-0001.json").exists());
        assert!(!dir.join("u-0002.json").exists());
        drop(w);
        assert_eq!(
            leftovers(&dir),
            ["u-0001.json"],
            "the unfinished batch is removed"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xlsx_has_text_ids_a_frozen_bold_header_and_no_warnings() {
        let dir = temp_dir("xlsx");
        let path = dir.join("f.xlsx");
        assert_eq!(
            write(&path, &options(Format::Xlsx), &IDS),
            vec![path.clone()]
        );
        assert_eq!(
            leftovers(&dir),
            ["f.xlsx"],
            "no partial or temporary file left"
        );
        let sheet = zip_entry(&path, "xl/worksheets/sheet1.xml").unwrap();
        for id in IDS {
            assert!(
                sheet.contains(&format!("<is><t>{id}</t></is>")),
                "{id} as an inline string: {sheet}"
            );
        }
        assert!(sheet.contains(r#"t="inlineStr""#));
        assert!(sheet.contains("<is><t>alipaylife_userid</t></is>"));
        assert!(
            sheet.contains("<pane ") && sheet.contains(r#"state="frozen""#),
            "{sheet}"
        );
        assert!(
            sheet.contains(r#"<ignoredError sqref="A1:A4" numberStoredAsText="1"/>"#),
            "{sheet}"
        );
        assert!(sheet.contains("<ignoredErrors>"));
        assert!(sheet.contains(r#"<col min="1" max="1" width="#), "{sheet}");
        let styles = zip_entry(&path, "xl/styles.xml").unwrap();
        // The ID column and every ID cell use the xf with the built-in Text format (49, `@`).
        let text_xf = xf_index(&styles, r#"numFmtId="49""#);
        assert!(sheet.contains(&format!(r#"style="{text_xf}""#)), "{sheet}");
        for row in 2..=4 {
            let cell = format!(r#"<c r="A{row}" s="{text_xf}" t="inlineStr">"#);
            assert!(sheet.contains(&cell), "{cell} in {sheet}");
        }
        // The header cell uses a bold font.
        assert!(styles.contains(r#"<font><b/>"#), "{styles}");
        let bold_xf = xf_index(&styles, r#"fontId="1""#);
        assert!(
            sheet.contains(&format!(r#"<c r="A1" s="{bold_xf}""#)),
            "{sheet}"
        );
        assert!(zip_entry(&path, "xl/worksheets/sheet2.xml").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xlsx_channel_code_layout_has_two_text_columns() {
        let dir = temp_dir("xlsx-ums");
        let path = dir.join("u.xlsx");
        let opts = Options {
            channel_code: Some("CH".into()),
            userid_prefix: Some("p".into()),
            ..options(Format::Xlsx)
        };
        write(&path, &opts, &IDS[..1]);
        let sheet = zip_entry(&path, "xl/worksheets/sheet1.xml").unwrap();
        assert!(sheet.contains("<is><t>userid</t></is>"));
        assert!(sheet.contains("<is><t>p2088000000000001</t></is>"));
        assert!(sheet.contains("<is><t>2088000000000001</t></is>"));
        assert!(sheet.contains(r#"sqref="A1:B2""#), "{sheet}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xlsx_rolls_over_to_a_new_sheet_with_the_header() {
        let dir = temp_dir("xlsx-roll");
        let path = dir.join("r.xlsx");
        let mut w: Box<dyn IdWriter> =
            Box::new(XlsxWriter::open(&path, &options(Format::Xlsx), 3).unwrap());
        let ids = ["1", "2", "3", "4", "5"];
        w.write_ids(IdKind::UserId, &ids).unwrap();
        w.finish().unwrap();
        assert_eq!(sheet_count(5, 3), 3);
        for (n, expected) in [(1, ["1", "2"].as_slice()), (2, &["3", "4"]), (3, &["5"])] {
            let sheet = zip_entry(&path, &format!("xl/worksheets/sheet{n}.xml")).unwrap();
            assert!(
                sheet.contains("<is><t>alipaylife_userid</t></is>"),
                "{sheet}"
            );
            assert!(sheet.contains("<pane "), "{sheet}");
            assert!(sheet.contains("numberStoredAsText=\"1\""), "{sheet}");
            for id in expected {
                assert!(sheet.contains(&format!("<is><t>{id}</t></is>")), "{sheet}");
            }
        }
        assert!(zip_entry(&path, "xl/worksheets/sheet4.xml").is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xlsx_sheet_count_counts_the_header_of_every_sheet() {
        assert_eq!(xlsx_sheet_count(0), 1);
        assert_eq!(xlsx_sheet_count(1_048_575), 1);
        assert_eq!(xlsx_sheet_count(1_048_576), 2);
        assert_eq!(xlsx_sheet_count(2 * 1_048_575), 2);
        assert_eq!(xlsx_sheet_count(2 * 1_048_575 + 1), 3);
        assert_eq!(sheet_count(4, 3), 2);
    }

    fn usage_message(path: &str, options: &Options) -> String {
        match validate(path, options) {
            Err(Error::Usage(msg)) => msg,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn validate_rejects_bad_combinations() {
        let dir = temp_dir("validate");
        let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let ums = options(Format::UmsJson);
        assert!(usage_message(&file("u.json"), &ums).contains("--channel-code"));
        let ums = Options {
            channel_code: Some("CH".into()),
            ..ums
        };
        validate(&file("u.json"), &ums).unwrap();
        assert!(usage_message("-", &ums).contains("-o"));
        assert!(usage_message("-", &options(Format::Xlsx)).contains("standard output"));
        validate("-", &options(Format::Csv)).unwrap();
        let bom = |format| Options {
            bom: true,
            ..options(format)
        };
        validate("-", &bom(Format::Csv)).unwrap();
        assert!(usage_message(&file("f.txt"), &bom(Format::Txt)).contains("--bom"));
        assert!(usage_message(&file("f.xlsx"), &bom(Format::Xlsx)).contains("--bom"));
        let zero = Options {
            batch_size: 0,
            ..ums.clone()
        };
        assert!(usage_message(&file("u.json"), &zero).contains("--batch-size"));
        let empty = Options {
            channel_code: Some(" ".into()),
            ..ums.clone()
        };
        assert!(usage_message(&file("u.json"), &empty).contains("--channel-code"));
        let txt_code = Options {
            channel_code: Some("CH".into()),
            ..options(Format::Txt)
        };
        assert!(usage_message(&file("f.txt"), &txt_code).contains("--channel-code"));
        let prefix = Options {
            userid_prefix: Some("p".into()),
            ..options(Format::Csv)
        };
        assert!(usage_message(&file("f.csv"), &prefix).contains("--userid-prefix"));
        for msg in [
            usage_message("-", &ums),
            usage_message(&file("f.txt"), &bom(Format::Txt)),
        ] {
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(msg.starts_with(|c: char| !c.is_uppercase()), "{msg}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validate_checks_the_output_directory() {
        let dir = temp_dir("validate-dir");
        let csv = options(Format::Csv);
        let missing = dir.join("no/such/f.csv");
        let msg = usage_message(missing.to_str().unwrap(), &csv);
        assert!(
            msg.contains("does not exist") && msg.contains("-o"),
            "{msg}"
        );
        let plain = dir.join("plain");
        fs::write(&plain, "").unwrap();
        let msg = usage_message(plain.join("f.csv").to_str().unwrap(), &csv);
        assert!(msg.contains("not a directory"), "{msg}");
        let msg = usage_message(dir.to_str().unwrap(), &csv);
        assert!(msg.contains("is a directory"), "{msg}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let locked = dir.join("locked");
            fs::create_dir(&locked).unwrap();
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
            // root writes anywhere: only check when the directory really refuses files.
            if fs::write(locked.join("x"), "").is_err() {
                let msg = usage_message(locked.join("f.csv").to_str().unwrap(), &csv);
                assert!(msg.contains("cannot write in"), "{msg}");
            }
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
        }
        validate(dir.join("f.csv").to_str().unwrap(), &csv).unwrap();
        assert!(!leftovers(&dir).iter().any(|n| n.contains("probe")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropping_without_finish_leaves_no_file() {
        let dir = temp_dir("drop");
        let ums = Options {
            channel_code: Some("CH".into()),
            ..options(Format::UmsJson)
        };
        for (name, opts) in [
            ("f.csv", options(Format::Csv)),
            ("f.txt", options(Format::Txt)),
            ("f.jsonl", options(Format::Jsonl)),
            ("f.xlsx", options(Format::Xlsx)),
            ("u.json", ums),
        ] {
            let path = dir.join(name);
            let mut w = open(path.to_str().unwrap(), &opts).unwrap();
            w.write_ids(IdKind::UserId, &IDS).unwrap();
            w.page_done().unwrap();
            drop(w);
            assert!(leftovers(&dir).is_empty(), "{name}: {:?}", leftovers(&dir));
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
