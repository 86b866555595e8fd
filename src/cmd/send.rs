//! `alipaylife send BATCH.csv --template-id ID`: read and validate the whole batch before any
//! request, resume from the journal, send with a paced worker pool, write the report, summarise.
//! Exit 0 when every row is sent, 3 when some failed or are unknown, 1 on a batch-fatal error,
//! 2 when the batch or the flags are invalid (nothing sent).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use argh::FromArgs;

use crate::cli::gateway_command;
use crate::error::{Error, Result};
use crate::gateway::Client;
use crate::interrupt;
use crate::output::{self, Progress};
use crate::send::batch::{self, Defaults, IdChoice, Message, Rows};
use crate::send::encoding::{self, Encoding, SniffError, Sniffed};
use crate::send::engine::{self, Counts};
use crate::send::journal::{self, Header, Replay, State};
use crate::send::report;
use crate::sign;

gateway_command! {
    /// send a template message to every recipient of a CSV batch (paced, concurrent, resumable)
    #[derive(FromArgs, Debug)]
    #[argh(
        subcommand,
        name = "send",
        example = "alipaylife send followers.csv --template-id 8a3f… --dry-run",
        example = "alipaylife send batch.csv --template-id 8a3f… --qps 20 --concurrency 8",
        note = "Columns: alipaylife_userid (or to_user_id / to_open_id), first, keyword1 … keyword5, remark; optional template_id, url, action_name, head_color, <field>_color. UTF-8 (BOM or not) or GBK/GB18030. Outcomes go to BATCH.journal (append-only; a re-run skips rows already sent) and BATCH.report.csv. Exit 0 all sent, 3 some failed or unknown, 1 batch stopped, 2 invalid batch or flags (nothing sent)."
    )]
    pub struct Args {
        /// the batch CSV
        #[argh(positional)]
        pub batch: String,
        /// the merchant's template id (from "my templates" in the Life Account console); a template_id column overrides it per row
        #[argh(option)]
        pub template_id: Option<String>,
        /// recipient field: user_id (to_user_id), open_id (to_open_id) or auto (default: from the column name, else from the ID's shape)
        #[argh(option, default = "IdChoice::Auto")]
        pub id_kind: IdChoice,
        /// batch encoding: auto (default: UTF-8 if valid, else GBK/GB18030), utf-8 or gbk
        #[argh(option, default = "Encoding::Auto")]
        pub encoding: Encoding,
        /// link opened when the message is tapped (rows' url column overrides it)
        #[argh(option)]
        pub url: Option<String>,
        /// link text at the bottom: at most 8 Chinese or 16 Latin characters
        #[argh(option)]
        pub action_name: Option<String>,
        /// color of the top bar, #RGB or #RRGGBB
        #[argh(option)]
        pub head_color: Option<String>,
        /// color of every field's value (default #000000; <field>_color columns override it)
        #[argh(option)]
        pub color: Option<String>,
        /// send once per row even when a recipient appears on several rows
        #[argh(switch)]
        pub allow_duplicates: bool,
        /// validate, then print the first request's biz_content and string-to-sign; send nothing
        #[argh(switch)]
        pub dry_run: bool,
        /// requests in flight at once (default 8)
        #[argh(option, default = "8")]
        pub concurrency: usize,
        /// messages per second, long-run (default 20); slowed down automatically on 40005
        #[argh(option, default = "20.0")]
        pub qps: f64,
        /// also send again rows whose outcome is unknown (may deliver twice; single.send has no idempotency key)
        #[argh(switch)]
        pub retry_unknown: bool,
        /// the journal (default BATCH.journal beside the batch, e.g. batch.csv.journal)
        #[argh(option)]
        pub journal: Option<String>,
        /// the report CSV (default BATCH.report.csv beside the batch, e.g. batch.report.csv)
        #[argh(option)]
        pub report: Option<String>,
    }
}

/// Everything known before the first request.
pub struct Plan {
    pub batch: PathBuf,
    /// The batch, open (and locked, for a real send) from the first read to the report.
    file: File,
    /// Its size and modification time when first read: every later read checks them.
    stamp: (u64, Option<SystemTime>),
    pub sniffed: Sniffed,
    defaults: Defaults,
    pub header: Header,
    pub prior: Option<Replay>,
    pub journal: PathBuf,
    pub report: PathBuf,
    /// Rows that are not blank, and those to send in this run.
    pub rows: u64,
    pub pending: u64,
    pub first_pending: Option<Message>,
    retry_unknown: bool,
}

const CHANGED: &str = "the file changed while it was being read; a batch must not be edited \
                       during a send (rows already sent are in the journal, which belongs to the \
                       old content)";

/// The batch file read again: fails if it changed since it was validated, since the journal
/// records rows by line number.
struct Unchanged<'a> {
    file: &'a File,
    stamp: (u64, Option<SystemTime>),
}

impl Read for Unchanged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        let meta = self.file.metadata()?;
        if (meta.len(), meta.modified().ok()) != self.stamp {
            return Err(io::Error::other(CHANGED));
        }
        Ok(n)
    }
}

impl Seek for Unchanged<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}

impl Plan {
    fn unchanged(&self) -> Unchanged<'_> {
        Unchanged {
            file: &self.file,
            stamp: self.stamp,
        }
    }

    fn read_error(&self, e: io::Error) -> Error {
        Error::io(format!("reading {}", self.batch.display()), e)
    }

    /// The batch's valid rows from the start, streaming.
    fn rows(&self) -> Result<impl Iterator<Item = Result<Message>> + Send + '_> {
        let text =
            encoding::reader(self.unchanged(), &self.sniffed).map_err(|e| self.read_error(e))?;
        let rows = Rows::new(text, &self.defaults).map_err(|e| self.read_error(e))?;
        Ok(rows.map(|row| match row {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(problems)) => Err(Error::Failed(format!(
                "{}: {} (it was valid when checked)",
                self.batch.display(),
                problems.first().map(|p| p.to_string()).unwrap_or_default()
            ))),
            Err(e) => Err(self.read_error(e)),
        }))
    }

    /// Whether a row is sent in this run, from the journal of earlier runs.
    fn is_pending(&self, line: u64) -> bool {
        is_pending(self.prior.as_ref(), line, self.retry_unknown)
    }
}

fn is_pending(prior: Option<&Replay>, line: u64, retry_unknown: bool) -> bool {
    match prior.and_then(|r| r.index.state(line)) {
        Some(State::Sent) => false,
        Some(State::Unknown) | Some(State::Sending) => retry_unknown,
        _ => true,
    }
}

/// `dir/name.report.csv` for `dir/name.csv`, `dir/name.report.csv` for `dir/name`.
pub fn default_report(batch: &Path) -> PathBuf {
    let stem = batch
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".into());
    batch.with_file_name(format!("{stem}.report.csv"))
}

pub fn default_journal(batch: &Path) -> PathBuf {
    let name = batch
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".into());
    batch.with_file_name(format!("{name}.journal"))
}

/// Read, decode, validate the batch and replay the journal, streaming. Nothing is sent, no key
/// is read. With `lock`, the batch is locked first (see `lock_batch`).
pub fn plan(args: &Args, lock: bool) -> Result<Plan> {
    if !(1..=512).contains(&args.concurrency) {
        return Err(Error::Usage(format!(
            "--concurrency must be between 1 and 512, not {}",
            args.concurrency
        )));
    }
    if !(args.qps.is_finite() && args.qps >= 0.1 && args.qps <= 10_000.0) {
        return Err(Error::Usage(format!(
            "--qps must be between 0.1 and 10000, not {}",
            args.qps
        )));
    }
    let path = PathBuf::from(&args.batch);
    let mut file = File::open(&path)
        .map_err(|e| Error::Usage(format!("cannot read the batch {}: {e}", path.display())))?;
    if lock {
        lock_batch(&file, &args.batch)?;
    }
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.is_dir() {
        return Err(Error::Usage(format!(
            "cannot read the batch {}: it is a directory",
            path.display()
        )));
    }
    let stamp = (meta.len(), meta.modified().ok());
    let sniffed = {
        let mut guard = Unchanged { file: &file, stamp };
        encoding::sniff(&mut guard, args.encoding).map_err(|e| match e {
            SniffError::Undecodable(m) => {
                Error::Usage(format!("{}: {m}; nothing was sent", path.display()))
            }
            SniffError::Io(e) => Error::io(format!("reading {}", path.display()), e),
        })?
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let defaults = Defaults {
        template_id: args.template_id.clone(),
        url: args.url.clone(),
        action_name: args.action_name.clone(),
        head_color: args.head_color.clone(),
        color: args.color.clone(),
        id_kind: args.id_kind,
        allow_duplicates: args.allow_duplicates,
    };
    let header = Header {
        alipaylife_send_journal: journal::FORMAT,
        batch_sha256: sniffed.sha256.clone(),
        template_id: args.template_id.clone().unwrap_or_default(),
    };
    let journal_path = args
        .journal
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| default_journal(&path));
    let report_path = args
        .report
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| default_report(&path));
    let mut plan = Plan {
        batch: path,
        file,
        stamp,
        sniffed,
        defaults,
        header,
        prior: None,
        journal: journal_path,
        report: report_path,
        rows: 0,
        pending: 0,
        first_pending: None,
        retry_unknown: args.retry_unknown,
    };
    plan.prior = journal::load(&plan.journal, &plan.header, plan.sniffed.line_ends)?;
    // The checking pass, counting the rows this run sends.
    let (mut pending, mut first) = (0u64, None);
    let checked = {
        let plan = &plan;
        batch::validate(
            || encoding::reader(plan.unchanged(), &plan.sniffed),
            &plan.defaults,
            plan.sniffed.line_ends,
            |m| {
                if plan.is_pending(m.line) {
                    pending += 1;
                    if first.is_none() {
                        first = Some(m.clone());
                    }
                }
            },
        )
        .map_err(|e| plan.read_error(e))?
    };
    for w in &checked.warnings {
        eprintln!("alipaylife: warning: {}: {w}", plan.batch.display());
    }
    if !checked.problems.is_empty() {
        for p in &checked.problems {
            eprintln!("alipaylife: error: {}: {p}", plan.batch.display());
        }
        let listed = checked.problems.len() as u64;
        let n = listed + checked.unlisted;
        let shown = if checked.unlisted > 0 {
            format!("the first {} listed above", output::count(listed))
        } else {
            "listed above".to_string()
        };
        return Err(Error::Usage(format!(
            "{}: {} problem{} found ({shown}); nothing was sent",
            plan.batch.display(),
            output::count(n),
            if n == 1 { "" } else { "s" }
        )));
    }
    plan.rows = checked.rows;
    plan.pending = pending;
    plan.first_pending = first;
    Ok(plan)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let opts = args.gateway_opts();
    let settings = opts.settings()?;
    if args.dry_run {
        return dry_run(&args, &plan(&args, false)?);
    }
    // Locked (until the plan is dropped) before the journal is read.
    let plan = plan(&args, true)?;
    let client = opts.client_with(settings)?;
    execute(&client, plan, &args)
}

/// One send of a batch at a time: an OS lock on the batch file (not a lock file), released when
/// the process ends, even by SIGKILL. Two runs of one batch, even with different --journal
/// paths, could otherwise both send its rows.
fn lock_batch(file: &File, path: &str) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "another `alipaylife send` is sending {path} right now; wait for it to finish (two runs \
             of one batch could deliver a message twice)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {path}"), e)),
    }
}

fn dry_run(args: &Args, plan: &Plan) -> Result<ExitCode> {
    println!(
        "dry run: {} ({}) is valid: {} rows, {} to send{}; nothing was sent",
        plan.batch.display(),
        plan.sniffed.name,
        plan.rows,
        plan.pending,
        if plan.prior.is_some() {
            format!(" (journal {} records the others)", plan.journal.display())
        } else {
            String::new()
        }
    );
    let Some(m) = &plan.first_pending else {
        return Ok(ExitCode::SUCCESS);
    };
    let app_id = args
        .app_id
        .clone()
        .or_else(|| std::env::var("ALIPAY_APP_ID").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "YOUR_APP_ID".to_string());
    let timestamp = sign::timestamp(chrono::Utc::now());
    let common = sign::Common {
        app_id: &app_id,
        method: engine::METHOD,
        timestamp: &timestamp,
        extra: &[],
    };
    let params = sign::params(&common, &m.biz_content);
    println!(
        "first request: line {}, {} {}",
        m.line,
        m.kind.field(),
        m.recipient
    );
    println!("biz_content:\n{}", m.biz_content);
    println!(
        "string-to-sign (RSA2 signs it with the app private key when sent; the signature is not \
         shown):\n{}",
        sign::string_to_sign(&params)
    );
    Ok(ExitCode::SUCCESS)
}

/// Every batch row with its final state from the journal (`skipped` when it has none), in batch
/// order, streaming. Entries at offsets below `earlier_len` were written by earlier runs.
fn final_rows<'a>(
    plan: &'a Plan,
    replay: Option<&'a Replay>,
    earlier_len: u64,
) -> Result<impl Iterator<Item = Result<report::Row>> + 'a> {
    let mut entries = match replay {
        Some(_) => Some(journal::Entries::open(&plan.journal)?),
        None => None,
    };
    Ok(plan.rows()?.map(move |m| {
        let m = m?;
        let at = replay.and_then(|r| r.index.offset(m.line));
        let entry = match (at, entries.as_mut()) {
            (Some(at), Some(entries)) => Some(entries.at(at)?),
            _ => None,
        };
        Ok(report::row(
            &m,
            entry,
            at.is_some_and(|at| at < earlier_len),
        ))
    }))
}

/// Send a planned batch with a ready client; write the report; summarise.
pub fn execute(client: &Client, mut plan: Plan, args: &Args) -> Result<ExitCode> {
    let quiet = args.quiet;
    let retries = args.retries.unwrap_or(5);
    // Created (and so checked) before the first request: an unwritable report path fails now.
    drop(output::AtomicFile::create(&plan.report)?);
    let mut progress = Progress::new(quiet);
    // Journal bytes written by earlier runs: entries past this are this run's.
    let earlier_len = plan.prior.as_ref().map_or(0, |r| r.valid_len);
    let finished = if plan.pending == 0 {
        None
    } else {
        let writer = journal::Writer::open(&plan.journal, &plan.header, plan.prior.as_ref())?;
        let journal = Mutex::new(writer);
        let counts = Counts::default();
        let total = plan.pending;
        let call = |biz: &str| client.call_once(engine::METHOD, biz).map(|_| ());
        let options = engine::Options {
            concurrency: args.concurrency,
            qps: args.qps,
            retry_unknown: args.retry_unknown,
            retries,
        };
        let rows = plan
            .rows()?
            .filter(|m| m.as_ref().map_or(true, |m| plan.is_pending(m.line)));
        let mut announced = false;
        let interrupt = interrupt::drain(
            "interrupted: no new messages are sent; waiting for the requests in flight to finish \
             and be recorded (Ctrl-C again to quit at once: those rows would be `unknown`)"
                .to_string(),
            "interrupted again: quitting now; the rows in flight are `unknown` in the journal"
                .to_string(),
        );
        let finished = engine::run(
            &call,
            rows,
            total,
            &journal,
            options,
            &counts,
            interrupt,
            || {
                // Say at once why the batch stops: requests in flight can take a while to end.
                if !announced && let Some(why) = counts.stopping.lock().expect("lock").clone() {
                    announced = true;
                    progress.clear();
                    if !quiet {
                        let first = why.lines().next().unwrap_or_default();
                        eprintln!(
                            "alipaylife: stopping the batch ({first}); waiting for the requests in \
                         flight"
                        );
                    }
                }
                progress.update(|elapsed| {
                    let sent = counts.sent.load(Ordering::Relaxed);
                    let failed = counts.failed.load(Ordering::Relaxed);
                    let unknown = counts.unknown.load(Ordering::Relaxed);
                    format!(
                        "{} / {} sent · {failed} failed · {unknown} unknown · {}/s · {:.1}s",
                        output::count(sent),
                        output::count(total),
                        output::rate(sent + failed + unknown, elapsed),
                        elapsed.as_secs_f64()
                    )
                })
            },
        );
        interrupt::reset();
        let finished = finished?;
        progress.clear();
        Some(finished)
    };
    // The report, from the journal as it now is (every run's outcomes) and the batch.
    plan.prior = None;
    let replay = journal::load(&plan.journal, &plan.header, plan.sniffed.line_ends)?;
    let fatal = finished.as_ref().and_then(|f| f.fatal.clone());
    let rows = || final_rows(&plan, replay.as_ref(), earlier_len);
    let (tally, report_error) = match rows().and_then(|r| report::write(&plan.report, r)) {
        Ok(tally) => (tally, None),
        // Still count, for the summary and for what the error says (a full disk, say).
        Err(e) => match rows().and_then(report::tally) {
            Ok(tally) => (tally, Some(e)),
            Err(_) => {
                let Some(fatal) = fatal else { return Err(e) };
                let journal = plan.journal.display();
                return Err(Error::Failed(if fatal.contains(CHANGED) {
                    format!(
                        "{fatal}\n  the report could not be written for the same reason; the \
                         journal {journal} has every outcome. Put the batch back as it was and \
                         run the same command again to send the rest, or send the edited file as \
                         a new batch with --journal NEW_PATH"
                    )
                } else {
                    format!(
                        "{fatal}\n  the report could not be written ({e}); the journal {journal} \
                         has every outcome: fix the cause and run the same command again (rows \
                         already sent are skipped)"
                    )
                }));
            }
        },
    };
    let (sent, failed, unknown, skipped) = (tally.sent, tally.failed, tally.unknown, tally.skipped);
    let earlier = tally.earlier_sent;
    if !quiet {
        if !tally.first_problems.is_empty() {
            for r in &tally.first_problems {
                let o = &r.outcome;
                eprintln!(
                    "alipaylife: line {}: {} {}: {} {}{}",
                    r.line,
                    r.recipient,
                    o.status.name(),
                    o.code.as_deref().unwrap_or(""),
                    o.sub_code.as_deref().unwrap_or(""),
                    o.sub_msg
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
            }
            let more = failed + unknown - tally.first_problems.len();
            if more > 0 {
                eprintln!("alipaylife: … and {more} more in the report");
            }
        }
        let mut line = format!(
            "sent {} of {} messages ({} failed, {} unknown, {} not attempted",
            output::count(sent as u64),
            output::count(tally.rows as u64),
            failed,
            unknown,
            skipped
        );
        if earlier > 0 {
            line.push_str(&format!(
                "; {} sent by an earlier run",
                output::count(earlier as u64)
            ));
        }
        line.push(')');
        if let Some(f) = &finished {
            line.push_str(&format!(
                " in {:.1} s ({}/s, {} calls)",
                f.elapsed.as_secs_f64(),
                output::rate(f.calls, f.elapsed),
                output::count(f.calls)
            ));
            if !f.retries.is_empty() {
                let kinds: Vec<String> =
                    f.retries.iter().map(|(k, n)| format!("{k} {n}")).collect();
                line.push_str(&format!("; retries: {}", kinds.join(", ")));
            }
            if f.rate_cuts > 0 {
                line.push_str(&format!("; slowed down {} times on 40005", f.rate_cuts));
            }
        } else {
            line.push_str("; nothing left to send");
        }
        if client.verifies() {
            line.push_str("; every answer's signature verified");
        }
        eprintln!("alipaylife: {line}");
        match &report_error {
            None => eprintln!(
                "alipaylife: report {}; journal {}",
                plan.report.display(),
                plan.journal.display()
            ),
            Some(_) => eprintln!(
                "alipaylife: report {} NOT written (see below); journal {} (every outcome)",
                plan.report.display(),
                plan.journal.display()
            ),
        }
        if unknown > 0 && !args.retry_unknown {
            eprintln!(
                "alipaylife: unknown = the request reached the gateway but no clear answer came \
                 back, so the message may have been delivered; re-running skips these rows unless \
                 --retry-unknown is given (which may deliver them twice)"
            );
        }
    }
    let report_note = report_error
        .as_ref()
        .map(|e| {
            format!(
                "\n  the report could not be written either ({e}); the journal {} has every \
                 outcome, and the next run writes the report",
                plan.journal.display()
            )
        })
        .unwrap_or_default();
    if let Some(fatal) = fatal {
        return Err(Error::Failed(format!(
            "{fatal}\n  {skipped} rows were not attempted and are left unsent: fix the cause and \
             run the same command again (rows already sent are skipped){report_note}"
        )));
    }
    if let Some(e) = report_error {
        return Err(e);
    }
    if finished.as_ref().is_some_and(|f| f.interrupted) {
        return Err(Error::Interrupted(format!(
            "interrupted: every request that was sent has its outcome recorded; {skipped} rows \
             were not attempted: run the same command again to send them (rows already sent are \
             skipped)"
        )));
    }
    Ok(if failed + unknown > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
