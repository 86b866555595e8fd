//! The batch: CSV text to one single.send `biz_content` per row, with every problem of the whole
//! file collected (line, column, what is wrong) before anything is sent. Streaming: `Rows` turns
//! a text stream into messages one row at a time, and `validate` makes the checking pass over a
//! whole file in memory that does not grow with it, apart from 16 bytes a row for finding
//! duplicate recipients. `parse` does it all on text held in memory (tests, fuzzing).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};

use serde_json::{Map, Value, json};

/// The message fields a template context may hold, in template order.
pub const FIELDS: [&str; 7] = [
    "first", "keyword1", "keyword2", "keyword3", "keyword4", "keyword5", "remark",
];
/// Recipient columns, in the order they are looked for. `alipaylife_userid` is what `export` writes.
pub const RECIPIENT_COLUMNS: [&str; 3] = ["alipaylife_userid", "to_user_id", "to_open_id"];
/// `action_name`: ≤ 8 Chinese or 16 Latin characters (protocol section 9): CJK counts 2 units.
pub const ACTION_NAME_UNITS: usize = 16;
/// Used for a field when neither a `<field>_color` column nor `--color` gives one (the SDK docs
/// say value and color are both required).
pub const DEFAULT_COLOR: &str = "#000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    UserId,
    OpenId,
}

impl IdKind {
    /// The biz_content field that carries the recipient.
    pub fn field(self) -> &'static str {
        match self {
            IdKind::UserId => "to_user_id",
            IdKind::OpenId => "to_open_id",
        }
    }
}

/// `--id-kind user_id|open_id|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdChoice {
    UserId,
    OpenId,
    Auto,
}

impl std::str::FromStr for IdChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<IdChoice, String> {
        match s.trim() {
            "user_id" | "user-id" => Ok(IdChoice::UserId),
            "open_id" | "open-id" | "openid" => Ok(IdChoice::OpenId),
            "auto" => Ok(IdChoice::Auto),
            other => Err(format!(
                "unknown --id-kind {other:?}; use user_id, open_id or auto"
            )),
        }
    }
}

/// auto: the column name decides (`to_user_id`, `to_open_id`); for `alipaylife_userid` the ID's
/// shape does: `2088` followed only by digits (any length: Alipay says user IDs will lengthen) is a
/// user ID, anything else an OpenID.
pub fn id_kind(choice: IdChoice, column: &str, id: &str) -> IdKind {
    match (choice, column) {
        (IdChoice::UserId, _) => IdKind::UserId,
        (IdChoice::OpenId, _) => IdKind::OpenId,
        (IdChoice::Auto, "to_user_id") => IdKind::UserId,
        (IdChoice::Auto, "to_open_id") => IdKind::OpenId,
        (IdChoice::Auto, _) => {
            if id.starts_with("2088") && id.bytes().all(|b| b.is_ascii_digit()) {
                IdKind::UserId
            } else {
                IdKind::OpenId
            }
        }
    }
}

/// Batch-wide defaults from the flags.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub template_id: Option<String>,
    pub url: Option<String>,
    pub action_name: Option<String>,
    pub head_color: Option<String>,
    pub color: Option<String>,
    pub id_kind: IdChoice,
    pub allow_duplicates: bool,
}

/// One message to send.
#[derive(Clone, Debug)]
pub struct Message {
    /// Line of the row in the file (the header is line 1).
    pub line: u64,
    pub recipient: String,
    pub kind: IdKind,
    pub template_id: String,
    pub biz_content: String,
}

/// A problem that stops the batch before anything is sent. `line` is None for a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u64>,
    pub column: Option<String>,
    pub text: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, &self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.text),
            (Some(l), None) => write!(f, "line {l}: {}", self.text),
            (None, Some(c)) => write!(f, "{c}: {}", self.text),
            (None, None) => f.write_str(&self.text),
        }
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub messages: Vec<Message>,
    pub warnings: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Display width units of an `action_name`: ASCII counts 1, anything else (CJK, full-width) 2.
pub fn action_name_units(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// `#RGB` or `#RRGGBB`.
pub fn valid_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|hex| {
        (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// An absolute http(s) URL with a host.
pub fn valid_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !s.chars().any(char::is_whitespace)
    })
}

/// `TM` followed by digits: what the template library (模板库) shows, not the merchant's own ID.
pub fn looks_like_library_id(s: &str) -> bool {
    s.strip_prefix("TM")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn check_action_name(v: &str) -> Option<String> {
    let units = action_name_units(v);
    (units > ACTION_NAME_UNITS).then(|| {
        format!(
            "action_name {v:?} is {units} units long; the limit is 8 Chinese or 16 Latin \
             characters (a Chinese character counts 2)"
        )
    })
}

fn check_color(v: &str) -> Option<String> {
    (!valid_color(v)).then(|| format!("{v:?} is not a color; use #RGB or #RRGGBB, e.g. #85be53"))
}

fn check_url(v: &str) -> Option<String> {
    (!valid_url(v)).then(|| format!("{v:?} is not an http:// or https:// URL"))
}

/// Check the flag defaults (reported like rows, without a line).
fn check_flags(d: &Defaults, problems: &mut Vec<Problem>) {
    let mut flag = |name: &str, text: Option<String>| {
        if let Some(text) = text {
            problems.push(Problem {
                line: None,
                column: Some(name.to_string()),
                text,
            });
        }
    };
    if let Some(v) = &d.url {
        flag("--url", check_url(v));
    }
    if let Some(v) = &d.action_name {
        flag("--action-name", check_action_name(v));
    }
    if let Some(v) = &d.head_color {
        flag("--head-color", check_color(v));
    }
    if let Some(v) = &d.color {
        flag("--color", check_color(v));
    }
    if let Some(t) = &d.template_id
        && t.trim().is_empty()
    {
        flag("--template-id", Some("is empty".to_string()));
    }
}

/// `lines`: the first few lines using `id`; `count`: how many do.
fn library_warning(id: &str, lines: &[u64], count: usize) -> String {
    let shown: Vec<String> = lines.iter().take(5).map(u64::to_string).collect();
    let more = if count > 5 { ", …" } else { "" };
    format!(
        "template id {id} (line{} {}{more}) looks like a template-library ID (模板库, TM + digits). \
         single.send needs the merchant's own template ID: the one 领取模板 \
         (alipay.open.public.template.message.get) returns and the Life Account console lists \
         under my templates. If {id} is a library ID, every message fails with \
         MSG_TEMPLATE_NOT_EXIST and the batch stops at the first one",
        if count == 1 { "" } else { "s" },
        shown.join(", ")
    )
}

/// Longest value accepted in a text field, and in `url`. Alipay documents no limits for these
/// (UNCONFIRMED); these are generous for a template message and keep a mistake (a whole file
/// pasted into a cell) from reaching the gateway.
pub const MAX_FIELD_CHARS: usize = 1024;
pub const MAX_URL_CHARS: usize = 2048;

/// A text stream with `\r\n` and lone `\r` line ends made `\n`, remembering where each `\n` is
/// until asked. Rows are identified by line number (report, journal), and the csv crate's own
/// line count lags after CRLF records and blank lines (BurntSushi/rust-csv#395; found by
/// fuzzing): a CRLF file from Excel on Windows got shifted numbers, and a CR-only file (old Mac
/// Excel) numbered every row 1. So lines are counted here, from each record's byte offset. The
/// offsets kept are those of the reader's read-ahead only.
struct LineEnds<R> {
    inner: R,
    after_cr: bool,
    /// Bytes handed out so far.
    out: u64,
    /// Offsets of the `\n`s handed out and not yet counted.
    ends: VecDeque<u64>,
    counted: u64,
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.inner.read(dst)?;
            if n == 0 {
                return Ok(0);
            }
            let mut w = 0;
            for i in 0..n {
                let b = dst[i];
                if b == b'\n' && self.after_cr {
                    self.after_cr = false;
                    continue;
                }
                self.after_cr = b == b'\r';
                let b = if b == b'\r' { b'\n' } else { b };
                if b == b'\n' {
                    self.ends.push_back(self.out + w as u64);
                }
                dst[w] = b;
                w += 1;
            }
            self.out += w as u64;
            if w > 0 {
                return Ok(w);
            }
        }
    }
}

impl<R> LineEnds<R> {
    /// The line of the record starting at byte `at`; calls come with offsets that never go back.
    fn line_at(&mut self, at: u64) -> u64 {
        while self.ends.front().is_some_and(|&e| e < at) {
            self.ends.pop_front();
            self.counted += 1;
        }
        // The offset can point at blank lines the reader skipped before the record.
        let mut at = at;
        while self.ends.front() == Some(&at) {
            self.ends.pop_front();
            self.counted += 1;
            at += 1;
        }
        1 + self.counted
    }
}

/// Why a row cannot be sent (its problems), or reading failed.
pub type RowResult = Result<Message, Vec<Problem>>;

/// A batch's rows, one message at a time. The header is read and checked on creation.
pub struct Rows<R> {
    csv: csv::Reader<LineEnds<R>>,
    record: csv::StringRecord,
    d: Defaults,
    header: Vec<String>,
    recipient: Option<(&'static str, usize)>,
    /// The first problems of the header and the flags, handed out by `header_problems`.
    problems: Vec<Problem>,
    warnings: Vec<String>,
    /// Library-looking template ids: the first lines using each, and how many do.
    library: Vec<(String, Vec<u64>, usize)>,
    rows: u64,
    done: bool,
}

impl<R: Read> Rows<R> {
    /// Fails only when the text cannot be read; a header that is not usable is a problem.
    pub fn new(text: R, d: &Defaults) -> io::Result<Rows<R>> {
        let mut rows = Rows {
            csv: csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .from_reader(LineEnds {
                    inner: text,
                    after_cr: false,
                    out: 0,
                    ends: VecDeque::new(),
                    counted: 0,
                }),
            record: csv::StringRecord::new(),
            d: d.clone(),
            header: Vec::new(),
            recipient: None,
            problems: Vec::new(),
            warnings: Vec::new(),
            library: Vec::new(),
            rows: 0,
            done: false,
        };
        check_flags(d, &mut rows.problems);
        rows.read_header()?;
        Ok(rows)
    }

    fn read_header(&mut self) -> io::Result<()> {
        match self.csv.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                self.problems.push(Problem {
                    line: None,
                    column: None,
                    text: "the batch is empty: it needs a header line (alipaylife_userid, first, \
                           keyword1, …) and at least one row"
                        .to_string(),
                });
                return Ok(());
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                let csv::ErrorKind::Io(e) = e.into_kind() else {
                    unreachable!()
                };
                return Err(e);
            }
            Err(e) => {
                self.done = true;
                self.problems.push(Problem {
                    line: Some(1),
                    column: None,
                    text: format!("the header cannot be read: {e}"),
                });
                return Ok(());
            }
        }
        let header: Vec<String> = self
            .record
            .iter()
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        // A column named twice would silently lose one of its values.
        for (i, h) in header.iter().enumerate() {
            if let Some(j) = header[..i].iter().position(|x| x == h && !h.is_empty()) {
                self.problems.push(Problem {
                    line: Some(1),
                    column: None,
                    text: format!(
                        "column {h:?} appears twice (fields {} and {}); keep one",
                        j + 1,
                        i + 1
                    ),
                });
            }
        }
        let recipient_cols: Vec<(&'static str, usize)> = RECIPIENT_COLUMNS
            .iter()
            .filter_map(|n| header.iter().position(|h| h == n).map(|i| (*n, i)))
            .collect();
        self.recipient = match recipient_cols.as_slice() {
            [one] => Some(*one),
            [] => {
                self.problems.push(Problem {
                    line: Some(1),
                    column: None,
                    text: format!(
                        "no recipient column: the header needs one of {} (found: {})",
                        RECIPIENT_COLUMNS.join(", "),
                        header.join(", ")
                    ),
                });
                None
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(n, _)| *n).collect();
                self.problems.push(Problem {
                    line: Some(1),
                    column: None,
                    text: format!(
                        "more than one recipient column ({}); keep exactly one",
                        names.join(", ")
                    ),
                });
                None
            }
        };
        let known = |h: &str| {
            RECIPIENT_COLUMNS.contains(&h)
                || FIELDS.contains(&h)
                || h.strip_suffix("_color")
                    .is_some_and(|f| FIELDS.contains(&f))
                || [
                    "template_id",
                    "url",
                    "action_name",
                    "head_color",
                    "userid",
                    "",
                ]
                .contains(&h)
        };
        for h in &header {
            if !known(h) {
                self.warnings.push(format!(
                    "column {h:?} is not used (known columns: alipaylife_userid or to_user_id or \
                     to_open_id, first, keyword1 … keyword5, remark, template_id, url, \
                     action_name, head_color, <field>_color)"
                ));
            }
        }
        self.header = header;
        Ok(())
    }

    /// Problems of the flags and the header line, found on creation (taken once).
    pub fn header_problems(&mut self) -> Vec<Problem> {
        std::mem::take(&mut self.problems)
    }

    /// The recipient column, when the header has exactly one.
    pub fn recipient_column(&self) -> Option<&'static str> {
        self.recipient.map(|(name, _)| name)
    }

    /// After the last row: problems of the whole file, and warnings.
    pub fn finish(self) -> (Vec<Problem>, Vec<String>) {
        let mut problems = self.problems;
        let mut warnings = self.warnings;
        if self.rows == 0 && self.recipient.is_some() {
            problems.push(Problem {
                line: None,
                column: None,
                text: "the batch has no rows: nothing to send".to_string(),
            });
        }
        for (id, lines, count) in self.library {
            warnings.push(library_warning(&id, &lines, count));
        }
        (problems, warnings)
    }

    /// The current record (read into `self.record`) at `line`, checked and turned into a message.
    fn check(&mut self, line: u64) -> RowResult {
        let mut problems = Vec::new();
        let header = &self.header;
        let record = &self.record;
        let d = &self.d;
        if record.len() != header.len() {
            problems.push(Problem {
                line: Some(line),
                column: None,
                text: format!(
                    "{} fields, but the header has {}: a comma is missing or extra (a value \
                     containing a comma must be in double quotes)",
                    record.len(),
                    header.len()
                ),
            });
            return Err(problems);
        }
        for (i, value) in record.iter().enumerate() {
            let limit = if header[i] == "url" {
                MAX_URL_CHARS
            } else {
                MAX_FIELD_CHARS
            };
            let chars = value.chars().count();
            if chars > limit {
                problems.push(Problem {
                    line: Some(line),
                    column: Some(header[i].clone()),
                    text: format!(
                        "the value is {chars} characters long; at most {limit} are accepted (a \
                         template message holds short texts)"
                    ),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let col = |name: &str| header.iter().position(|h| h == name);
        let get = |name: &str| {
            col(name)
                .and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let mut problem = |column: &str, text: String| {
            problems.push(Problem {
                line: Some(line),
                column: Some(column.to_string()),
                text,
            });
        };
        // Recipient (the header problem is already reported).
        let Some((rcol, ri)) = self.recipient else {
            return Err(problems);
        };
        let to = record.get(ri).map(str::trim).unwrap_or("");
        if to.is_empty() {
            problem(rcol, "no recipient".to_string());
        }
        // Template.
        let template_id = get("template_id").or(d.template_id.as_deref().map(str::trim));
        let Some(template_id) = template_id else {
            problem(
                "template_id",
                "no template id: give --template-id or fill the template_id column".to_string(),
            );
            return Err(problems);
        };
        if looks_like_library_id(template_id) {
            match self.library.iter_mut().find(|(id, _, _)| id == template_id) {
                Some((_, lines, count)) => {
                    if lines.len() < 5 {
                        lines.push(line);
                    }
                    *count += 1;
                }
                None => self.library.push((template_id.to_string(), vec![line], 1)),
            }
        }
        // Context.
        let mut context = Map::new();
        if let Some(v) = get("url").or(d.url.as_deref()) {
            if let Some(t) = check_url(v) {
                problem("url", t);
            }
            context.insert("url".into(), json!(v));
        }
        if let Some(v) = get("action_name").or(d.action_name.as_deref()) {
            if let Some(t) = check_action_name(v) {
                problem("action_name", t);
            }
            context.insert("action_name".into(), json!(v));
        }
        if let Some(v) = get("head_color").or(d.head_color.as_deref()) {
            if let Some(t) = check_color(v) {
                problem("head_color", t);
            }
            context.insert("head_color".into(), json!(v));
        }
        let mut any_field = false;
        for field in FIELDS {
            let color_col = format!("{field}_color");
            let row_color = get(&color_col);
            if let Some(c) = row_color
                && let Some(t) = check_color(c)
            {
                problem(&color_col, t);
            }
            let Some(value) = get(field) else { continue };
            any_field = true;
            let color = row_color.or(d.color.as_deref()).unwrap_or(DEFAULT_COLOR);
            context.insert(field.into(), json!({"color": color, "value": value}));
        }
        if !any_field {
            problem(
                "first",
                "no message text: fill at least one of first, keyword1 … keyword5, remark"
                    .to_string(),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let kind = id_kind(d.id_kind, rcol, to);
        let mut biz = Map::new();
        biz.insert(kind.field().into(), json!(to));
        biz.insert(
            "template".into(),
            json!({"template_id": template_id, "context": Value::Object(context)}),
        );
        Ok(Message {
            line,
            recipient: to.to_string(),
            kind,
            template_id: template_id.to_string(),
            biz_content: Value::Object(biz).to_string(),
        })
    }
}

impl<R: Read> Iterator for Rows<R> {
    /// The next row that is not blank: its message or its problems. Reading errors end it.
    type Item = io::Result<RowResult>;

    fn next(&mut self) -> Option<io::Result<RowResult>> {
        while !self.done {
            match self.csv.read_record(&mut self.record) {
                Ok(false) => self.done = true,
                Ok(true) => {
                    let at = self.record.position().map(|p| p.byte()).unwrap_or(0);
                    let line = self.csv.get_mut().line_at(at);
                    if self.record.iter().all(|f| f.trim().is_empty()) {
                        continue; // blank rows Excel leaves at the end
                    }
                    self.rows += 1;
                    return Some(Ok(self.check(line)));
                }
                Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                    self.done = true;
                    let csv::ErrorKind::Io(e) = e.into_kind() else {
                        unreachable!()
                    };
                    return Some(Err(e));
                }
                Err(e) => {
                    let line = e.position().map(|p| self.csv.get_mut().line_at(p.byte()));
                    self.rows += 1;
                    return Some(Ok(Err(vec![Problem {
                        line,
                        column: None,
                        text: format!("not readable as CSV: {e}"),
                    }])));
                }
            }
        }
        None
    }
}

/// What the checking pass found.
#[derive(Debug, Default)]
pub struct Validated {
    /// The first `LISTED` problems, in line order (flag problems first).
    pub problems: Vec<Problem>,
    /// Problems found beyond those.
    pub unlisted: u64,
    pub warnings: Vec<String>,
    /// Rows that are not blank.
    pub rows: u64,
}

/// Problems listed at most: a batch of millions of bad rows (say, the wrong column names) is
/// counted in full but not printed in full.
pub const LISTED: usize = 1000;

/// A recipient's 64-bit SipHash (fixed keys, so the same in every run). Two different IDs with
/// the same hash (about one chance in 10^6 for 10 million rows) would be reported as duplicates:
/// a false refusal, never a missed duplicate, and `--allow-duplicates` gets past it.
fn recipient_hash(to: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    to.hash(&mut h);
    h.finish()
}

/// The checking pass over a whole batch: every row is checked and handed to `each` when it is
/// valid. `open` gives the text from the start; it is called again only when duplicates were
/// found, to name them. `lines` bounds the number of lines (sizes the duplicate table).
pub fn validate<R: Read>(
    mut open: impl FnMut() -> io::Result<R>,
    d: &Defaults,
    lines: u64,
    mut each: impl FnMut(&Message),
) -> io::Result<Validated> {
    let mut rows = Rows::new(open()?, d)?;
    // The first LISTED problems in line order are kept; the others only counted.
    let mut problems = rows.header_problems();
    let mut total = problems.len() as u64;
    // (hash, line) of every recipient; sorted afterwards to find duplicates.
    let mut seen: Vec<(u64, u64)> = Vec::new();
    if !d.allow_duplicates {
        seen.reserve_exact(usize::try_from(lines + 1).unwrap_or(usize::MAX));
    }
    for row in rows.by_ref() {
        match row? {
            Ok(m) => {
                if !d.allow_duplicates {
                    seen.push((recipient_hash(&m.recipient), m.line));
                }
                each(&m);
            }
            Err(p) => {
                total += p.len() as u64;
                let room = LISTED.saturating_sub(problems.len());
                problems.extend(p.into_iter().take(room));
            }
        }
    }
    let column = rows.recipient_column();
    let count = rows.rows;
    let (more, warnings) = rows.finish();
    total += more.len() as u64;
    problems.extend(more);
    // Rows whose recipient was on an earlier line: the first LISTED of them (line, first line).
    seen.sort_unstable();
    let mut duplicates = BTreeMap::new();
    for run in seen.chunk_by(|a, b| a.0 == b.0) {
        for (_, line) in &run[1..] {
            total += 1;
            duplicates.insert(*line, run[0].1);
            if duplicates.len() > LISTED {
                duplicates.pop_last();
            }
        }
    }
    drop(seen);
    if let (false, Some(column)) = (duplicates.is_empty(), column) {
        for row in Rows::new(open()?, d)? {
            if let Ok(m) = row?
                && let Some(first) = duplicates.get(&m.line)
            {
                problems.push(Problem {
                    line: Some(m.line),
                    column: Some(column.to_string()),
                    text: format!(
                        "duplicate recipient {} (first on line {first}); remove it, or pass \
                         --allow-duplicates to send it a message per row",
                        m.recipient
                    ),
                });
            }
        }
    }
    // Flag problems (no line) first, then by line; stable, so a line's problems keep their order.
    problems.sort_by_key(|p| p.line.map_or(0, |l| l + 1));
    problems.truncate(LISTED);
    Ok(Validated {
        unlisted: total - problems.len() as u64,
        problems,
        warnings,
        rows: count,
    })
}

/// Parse and validate a whole batch held in memory.
pub fn parse(text: &str, d: &Defaults) -> Parsed {
    let mut messages = Vec::new();
    let lines = text.bytes().filter(|&b| b == b'\n' || b == b'\r').count() as u64;
    let v = validate(
        || Ok(text.as_bytes()),
        d,
        lines,
        |m| messages.push(m.clone()),
    )
    .expect("reading from memory");
    Parsed {
        messages,
        warnings: v.warnings,
        problems: v.problems,
    }
}

#[cfg(test)]
mod tests {

    /// Found by fuzzing (fuzz/regressions/batch): CRLF and CR-only files must number their rows
    /// exactly as an editor does, one line each.
    #[test]
    fn crlf_and_cr_only_files_get_distinct_correct_line_numbers() {
        let d = Defaults {
            template_id: Some("T1".into()),
            url: None,
            action_name: None,
            head_color: None,
            color: None,
            id_kind: IdChoice::Auto,
            allow_duplicates: false,
        };
        for end in ["\r\n", "\r", "\n"] {
            let text = [
                "alipaylife_userid,first",
                "2088000000000001,a",
                "",
                "2088000000000002,b",
                "2088000000000003,c",
            ]
            .join(end);
            let parsed = parse(&text, &d);
            assert!(parsed.problems.is_empty(), "{end:?}: {:?}", parsed.problems);
            let lines: Vec<u64> = parsed.messages.iter().map(|m| m.line).collect();
            assert_eq!(lines, [2, 4, 5], "line ends {end:?}");
        }
    }

    use super::*;

    /// Hands out one byte per read: every line end split across reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.is_empty()) {
                (Some((b, rest)), false) => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn streaming_in_any_chunks_numbers_lines_like_an_editor() {
        for end in ["\r\n", "\r", "\n"] {
            let text = [
                "alipaylife_userid,first,remark",
                "",
                "2088000000000001,a,\"two",
                "lines\"",
                "2088000000000002,b,",
                "",
                "",
                "2088000000000003,c,\"\"",
                "",
            ]
            .join(end);
            let whole = parse(&text, &defaults());
            assert!(whole.problems.is_empty(), "{end:?}: {:?}", whole.problems);
            let lines: Vec<u64> = whole.messages.iter().map(|m| m.line).collect();
            assert_eq!(lines, [3, 5, 8], "line ends {end:?}");
            let trickled: Vec<(u64, String)> = Rows::new(Trickle(text.as_bytes()), &defaults())
                .unwrap()
                .map(|r| r.unwrap().unwrap())
                .map(|m| (m.line, m.biz_content))
                .collect();
            let expected: Vec<(u64, String)> = whole
                .messages
                .iter()
                .map(|m| (m.line, m.biz_content.clone()))
                .collect();
            assert_eq!(trickled, expected, "line ends {end:?}");
            // A quoted value keeps its line break, made \n whatever the file used.
            assert!(
                expected[0].1.contains(r#""value":"two\nlines""#),
                "{}",
                expected[0].1
            );
        }
    }

    #[test]
    fn the_file_is_read_again_only_to_name_duplicates() {
        // The checking pass over `text`, and how many times it opened it.
        let check = |text: &str| {
            let mut opened = 0;
            let lines = text.matches('\n').count() as u64;
            let open = || {
                opened += 1;
                Ok(text.as_bytes())
            };
            let v = validate(open, &defaults(), lines, |_| {}).unwrap();
            (v, opened)
        };
        let (v, opened) =
            check("alipaylife_userid,first\n2088000000000001,a\n2088000000000002,b\n");
        assert!(v.problems.is_empty());
        assert_eq!((v.rows, opened), (2, 1));
        let (v, opened) = check(
            "alipaylife_userid,first\n2088000000000001,a\n\n2088000000000001,b\n2088000000000001,c\n",
        );
        assert_eq!(opened, 2);
        let shown: Vec<String> = v.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "line 4, column alipaylife_userid: duplicate recipient 2088000000000001 (first \
                 on line 2); remove it, or pass --allow-duplicates to send it a message per row",
                "line 5, column alipaylife_userid: duplicate recipient 2088000000000001 (first \
                 on line 2); remove it, or pass --allow-duplicates to send it a message per row",
            ]
        );
    }

    #[test]
    fn the_first_problems_in_line_order_are_listed_and_the_rest_counted() {
        // Even lines: duplicates of line 2; odd lines: no message text.
        let mut text = String::from("alipaylife_userid,first\n2088000000000001,a\n");
        for i in 3..=3002u64 {
            if i % 2 == 0 {
                text.push_str("2088000000000001,b\n");
            } else {
                text.push_str(&format!("2088{i:012},\n"));
            }
        }
        let v = validate(|| Ok(text.as_bytes()), &defaults(), 3003, |_| {}).unwrap();
        assert_eq!(v.problems.len(), LISTED);
        assert_eq!(v.unlisted, 3000 - LISTED as u64);
        let lines: Vec<u64> = v.problems.iter().map(|p| p.line.unwrap()).collect();
        assert_eq!(lines, (3..3 + LISTED as u64).collect::<Vec<_>>());
        assert!(v.problems[0].text.starts_with("no message text"));
        assert!(v.problems[1].text.starts_with("duplicate recipient"));
    }

    fn defaults() -> Defaults {
        Defaults {
            template_id: Some("TPL1".into()),
            url: None,
            action_name: None,
            head_color: None,
            color: None,
            id_kind: IdChoice::Auto,
            allow_duplicates: false,
        }
    }

    #[test]
    fn action_name_counts_cjk_twice() {
        assert_eq!(action_name_units("查看详情"), 8);
        assert_eq!(action_name_units("View details"), 12);
        assert_eq!(action_name_units("查看详情查看详情"), 16);
        assert!(check_action_name("查看详情查看详情").is_none());
        assert!(check_action_name("查看详情查看详情x").is_some());
        assert!(check_action_name("abcdefghijklmnop").is_none());
        assert!(check_action_name("abcdefghijklmnopq").is_some());
    }

    #[test]
    fn colors_urls_and_library_ids() {
        for ok in ["#fff", "#85be53", "#85BE53"] {
            assert!(valid_color(ok), "{ok}");
        }
        for bad in ["fff", "#ffff", "#gggggg", "", "#85be5"] {
            assert!(!valid_color(bad), "{bad}");
        }
        assert!(valid_url("https://example.com/a?b=1"));
        assert!(valid_url("HTTP://example.com"));
        for bad in [
            "ftp://x",
            "javascript:alert(1)",
            "https://",
            "example.com",
            "https://a b",
        ] {
            assert!(!valid_url(bad), "{bad}");
        }
        assert!(looks_like_library_id("TM000000223"));
        assert!(!looks_like_library_id("TMX1"));
        assert!(!looks_like_library_id("a3f0c2"));
    }

    #[test]
    fn id_kind_rules() {
        use IdChoice::*;
        assert_eq!(id_kind(Auto, "to_open_id", "2088123"), IdKind::OpenId);
        assert_eq!(id_kind(Auto, "to_user_id", "abc"), IdKind::UserId);
        assert_eq!(
            id_kind(Auto, "alipaylife_userid", "2088102146785722"),
            IdKind::UserId
        );
        assert_eq!(
            id_kind(Auto, "alipaylife_userid", "20881021467857229999"),
            IdKind::UserId,
            "longer user IDs stay user IDs"
        );
        assert_eq!(
            id_kind(Auto, "alipaylife_userid", "074a1KtUw1B9Z5y"),
            IdKind::OpenId
        );
        assert_eq!(id_kind(UserId, "to_open_id", "x"), IdKind::UserId);
    }

    #[test]
    fn a_good_batch_builds_biz_content() {
        let text = "first,alipaylife_userid,keyword1,remark,url,first_color\n\
                    您好,2088102146785722,HU7142,感谢,https://e.com/a,#f00\n";
        let d = Defaults {
            action_name: Some("查看详情".into()),
            ..defaults()
        };
        let p = parse(text, &d);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.messages.len(), 1);
        let m = &p.messages[0];
        assert_eq!(m.line, 2);
        let v: Value = serde_json::from_str(&m.biz_content).unwrap();
        assert_eq!(v["to_user_id"], "2088102146785722");
        assert_eq!(v["template"]["template_id"], "TPL1");
        let c = &v["template"]["context"];
        assert_eq!(c["first"], json!({"color": "#f00", "value": "您好"}));
        assert_eq!(c["keyword1"]["color"], DEFAULT_COLOR);
        assert_eq!(c["action_name"], "查看详情");
        assert_eq!(c["url"], "https://e.com/a");
        assert!(c.get("keyword2").is_none(), "empty fields are left out");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "to_user_id,first,action_name,head_color,url\n\
                    2088000000000001,a,,,\n\
                    ,b,,,\n\
                    2088000000000001,c,,,\n\
                    2088000000000002,d,查看详情查看详情查看,,\n\
                    2088000000000003,e,,#12345,\n\
                    2088000000000004,f,,,ftp://x\n";
        let p = parse(text, &defaults());
        let shown: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(shown[0].starts_with("line 3, column to_user_id: no recipient"));
        assert!(shown[1].starts_with("line 4, column to_user_id: duplicate recipient"));
        assert!(shown[1].contains("first on line 2"));
        assert!(shown[2].starts_with("line 5, column action_name:"));
        assert!(shown[3].starts_with("line 6, column head_color:"));
        assert!(shown[4].starts_with("line 7, column url:"));
        let allowed = parse(
            "to_user_id,first\n2088000000000001,a\n2088000000000001,b\n",
            &Defaults {
                allow_duplicates: true,
                ..defaults()
            },
        );
        assert!(allowed.problems.is_empty());
        assert_eq!(allowed.messages.len(), 2);
    }

    #[test]
    fn header_problems_and_empty_batches() {
        let p = parse("id,first\n1,a\n", &defaults());
        assert!(
            p.problems[0].text.contains("no recipient column"),
            "{:?}",
            p.problems
        );
        let p = parse("alipaylife_userid,first\n\n", &defaults());
        assert!(p.problems[0].text.contains("no rows"), "{:?}", p.problems);
        let p = parse("", &defaults());
        assert!(p.problems[0].text.contains("empty"), "{:?}", p.problems);
        let p = parse(
            "alipaylife_userid,first\n2088000000000001,a\n",
            &Defaults {
                template_id: None,
                ..defaults()
            },
        );
        assert!(p.problems[0].text.contains("no template id"));
        let p = parse(
            "alipaylife_userid,first,template_id\n2088000000000001,a,TM000000223\n",
            &defaults(),
        );
        assert!(p.problems.is_empty());
        assert!(
            p.warnings[0].contains("template-library ID"),
            "{:?}",
            p.warnings
        );
        let p = parse(
            "alipaylife_userid,first\n2088000000000001,a\n",
            &Defaults {
                color: Some("red".into()),
                ..defaults()
            },
        );
        assert_eq!(p.problems[0].to_string().split(':').next(), Some("--color"));
    }
}
