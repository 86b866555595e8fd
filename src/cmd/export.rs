//! `alipaylife export`: page through the follower list and write every ID as it arrives.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::checkpoint::{self, Checkpoint, IdList};
use crate::cli::gateway_command;
use crate::error::{Error, Result};
use crate::export::{self, IdKind, Summary};
use crate::formats::{self, Format, Options};
use crate::gateway::Client;
use crate::interrupt;
use crate::output::{self, AtomicFile, Progress};

gateway_command! {
    /// export every follower ID: CSV (column alipaylife_userid, ready for UMS upload), xlsx, txt, jsonl or UMS JSON
    #[derive(FromArgs, Debug)]
    #[argh(
        subcommand,
        name = "export",
        example = "alipaylife export --app-id 2021000000000001 --private-key-file app_private_key.pem -o followers.csv",
        example = "ALIPAY_GATEWAY=http://127.0.0.1:8080/gateway.do alipaylife export -o - | wc -l",
        example = "alipaylife export -o followers.xlsx --channel-code alipaylife123"
    )]
    pub struct Args {
        /// output file, or - for stdout (default followers.csv); written under a temporary name and renamed when complete
        #[argh(option, short = 'o', default = "String::from(\"followers.csv\")")]
        pub output: String,
        /// output format: csv, xlsx, txt, jsonl or ums-json (default: from the -o extension, else csv)
        #[argh(option)]
        pub format: Option<Format>,
        /// csv: start with a UTF-8 byte order mark and use CRLF line ends (for Excel on Chinese Windows)
        #[argh(switch)]
        pub bom: bool,
        /// the UMS channel code: csv and xlsx get the columns userid,alipaylife_userid; required for ums-json
        #[argh(option)]
        pub channel_code: Option<String>,
        /// with --channel-code: put this before each ID to make the UMS userid (default: the ID itself)
        #[argh(option)]
        pub userid_prefix: Option<String>,
        /// ums-json: users per file (default 1000; the UMS limit is unconfirmed)
        #[argh(option, default = "1000")]
        pub batch_size: usize,
        /// stop after this many followers (to try a command on a large account)
        #[argh(option)]
        pub limit: Option<u64>,
        /// permissions of the files written, in octal (default 600: owner only, as they hold personal data)
        #[argh(option)]
        pub file_mode: Option<String>,
        /// continue an interrupted export of the same -o file from its checkpoint
        #[argh(switch)]
        pub resume: bool,
        /// discard an interrupted export's checkpoint and start over
        #[argh(switch)]
        pub restart: bool,
        /// also write a machine-readable summary (counts, ID kind, retries, duration, files) to this JSON file
        #[argh(option)]
        pub summary_json: Option<String>,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let opts = args.gateway_opts();
    // Everything that can be checked is checked before the first request: flags, then credentials.
    let format = args
        .format
        .or_else(|| formats::infer(&args.output))
        .unwrap_or(Format::Csv);
    let options = Options {
        format,
        bom: args.bom,
        channel_code: args.channel_code.clone(),
        userid_prefix: args.userid_prefix.clone(),
        batch_size: args.batch_size,
    };
    formats::validate(&args.output, &options)?;
    if let Some(mode) = &args.file_mode {
        output::set_file_mode(mode)?;
    }
    let settings = opts.settings()?;
    let client = opts.client_with(settings)?;
    // Created now, so an unwritable path fails before the export, not after it.
    let summary_file = args
        .summary_json
        .as_deref()
        .map(|p| AtomicFile::create(Path::new(p)))
        .transpose()?;
    let existing = match (args.resume, args.restart) {
        (true, true) => {
            return Err(Error::Usage(
                "--resume and --restart exclude each other".to_string(),
            ));
        }
        (true, false) => Existing::Resume,
        (false, true) => Existing::Restart,
        (false, false) => Existing::Refuse,
    };
    if args.output == "-" && args.resume {
        return Err(Error::Usage(
            "--resume needs an output file; an export to stdout cannot be resumed".to_string(),
        ));
    }
    let job = Job {
        output: &args.output,
        options,
        limit: args.limit,
        quiet: opts.quiet,
        existing,
    };
    let exported = export(&client, job)?;
    if let Some(mut file) = summary_file {
        let json = summary_json(&exported, &client);
        let path = file.path().display().to_string();
        serde_json::to_writer_pretty(&mut file, &json)
            .map_err(|e| Error::io(format!("writing {path}"), e.into()))?;
        file.write_all(b"\n")
            .map_err(|e| Error::io(format!("writing {path}"), e))?;
        file.commit()?;
    }
    if !opts.quiet {
        eprintln!("alipaylife: {}", describe(&exported, &client));
    }
    Ok(ExitCode::SUCCESS)
}

/// What an export did, for the summary line.
pub struct Exported {
    pub summary: Summary,
    pub target: String,
    /// The files written (none for stdout).
    pub files: formats::Written,
    pub elapsed: Duration,
    pub options: Option<Options>,
}

/// What to do with the progress of an earlier, interrupted export of the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Stop and explain the two choices (the default: never mix two runs silently).
    Refuse,
    /// Continue from the checkpoint.
    Resume,
    /// Discard it and start over.
    Restart,
}

/// One export: where, in which format, and what to do with earlier progress.
pub struct Job<'a> {
    pub output: &'a str,
    pub options: Options,
    pub limit: Option<u64>,
    pub quiet: bool,
    pub existing: Existing,
}

/// Run an export. To a file, every page goes to a crash-safe ID list and checkpoint first; the
/// output is rendered from the list once it is complete, so a resumed export is byte-identical
/// to an uninterrupted one in every format. To stdout, pages are written as they arrive.
pub fn export(client: &Client, job: Job<'_>) -> Result<Exported> {
    if job.output == "-" {
        return export_to_stdout(client, job);
    }
    let paths = checkpoint::paths(Path::new(job.output));
    let (mut cp, mut ids, start) = match (checkpoint::load(&paths.checkpoint)?, job.existing) {
        (Some(cp), Existing::Refuse) => {
            return Err(Error::Usage(format!(
                "an interrupted export of {} is saved in {} ({} followers so far): run the same \
                 command with --resume to continue it, or with --restart to discard it and start over",
                job.output,
                paths.checkpoint.display(),
                output::count(cp.summary.written)
            )));
        }
        (Some(cp), Existing::Resume) => resume(client, &paths, cp, job.quiet)?,
        (_, _) => {
            checkpoint::remove(&paths);
            let ids = IdList::create(&paths.ids)?;
            (
                Checkpoint::new(client.app_id(), client.url()),
                ids,
                export::Start::default(),
            )
        }
    };
    let hint = paths.checkpoint.display().to_string();
    // Ctrl-C (and SIGTERM) may exit at any moment: the checkpoint only ever points at durable
    // pages, and an output file only appears complete.
    interrupt::exit_with(format!(
        "interrupted: every complete page is saved ({hint}); run the same command with --resume to continue"
    ));
    let mut progress = Progress::new(job.quiet);
    if !cp.complete {
        let result = export::run(
            start,
            |cursor| fetch(client, cursor),
            |step| {
                ids.append(step.ids)?;
                cp.cursor = step.cursor.cloned();
                cp.next = step.next.cloned();
                cp.used = step.used.iter().cloned().collect();
                cp.summary = step.summary.clone();
                cp.ids_bytes = ids.bytes();
                checkpoint::save(&paths.checkpoint, &cp)?;
                show(&mut progress, step.summary);
                Ok(())
            },
            job.limit,
        );
        let summary = match result {
            Ok(summary) => summary,
            // Nothing was saved yet (the first page failed): leave nothing behind.
            Err(e) if !paths.checkpoint.exists() => {
                drop(ids);
                checkpoint::remove(&paths);
                return Err(e);
            }
            Err(e) => return Err(saved(e, cp.summary.written, &hint)),
        };
        cp.summary = summary;
        cp.next = None;
        cp.complete = true;
        checkpoint::save(&paths.checkpoint, &cp)?;
    }
    drop(ids);
    progress.clear();
    let mut writer = formats::open(job.output, &job.options)?;
    let kind = cp.summary.kind.unwrap_or(IdKind::UserId);
    checkpoint::read_ids(&paths.ids, 10_000, |chunk| {
        writer.write_ids(kind, chunk)?;
        writer.page_done()
    })?;
    let files = writer.finish()?;
    checkpoint::remove(&paths);
    // The whole run, rendering included.
    let elapsed = progress.elapsed();
    Ok(Exported {
        summary: cp.summary,
        target: job.output.to_string(),
        files,
        elapsed,
        options: Some(job.options),
    })
}

/// Continue from a checkpoint: same app and gateway, the ID list cut back to its valid length,
/// and the duplicate window rebuilt by reading the last written page again (a harmless read).
fn resume(
    client: &Client,
    paths: &checkpoint::Paths,
    mut cp: Checkpoint,
    quiet: bool,
) -> Result<(Checkpoint, IdList, export::Start)> {
    if cp.app_id != client.app_id() || cp.gateway != client.url() {
        return Err(Error::Usage(format!(
            "{} is an export of app {} from {}, not of app {} from {}: resume it with the same \
             --app-id and --gateway, or start over with --restart",
            paths.checkpoint.display(),
            cp.app_id,
            cp.gateway,
            client.app_id(),
            client.url()
        )));
    }
    let ids = IdList::reopen(&paths.ids, cp.ids_bytes)?;
    if cp.next.is_none() && cp.summary.pages > 0 {
        cp.complete = true;
    }
    let previous = if cp.complete || cp.summary.pages == 0 {
        Default::default()
    } else {
        let page = fetch(client, cp.cursor.as_ref()).map_err(|e| {
            saved(
                e,
                cp.summary.written,
                &paths.checkpoint.display().to_string(),
            )
        })?;
        page.ids.into_iter().collect()
    };
    if !quiet {
        eprintln!(
            "alipaylife: resuming after {} followers ({} pages)",
            output::count(cp.summary.written),
            cp.summary.pages
        );
    }
    let start = export::Start {
        cursor: cp.next.clone(),
        used: cp.used.iter().cloned().collect(),
        previous,
        summary: cp.summary.clone(),
    };
    Ok((cp, ids, start))
}

/// A failure after some pages: say that they are kept and how to go on.
fn saved(err: Error, written: u64, checkpoint: &str) -> Error {
    Error::Failed(format!(
        "{err}\n  the export stopped after {} followers; they are saved ({checkpoint}): run the same \
         command with --resume to continue",
        output::count(written)
    ))
}

fn export_to_stdout(client: &Client, job: Job<'_>) -> Result<Exported> {
    interrupt::exit_with("interrupted".to_string());
    let mut writer = formats::open(job.output, &job.options)?;
    let mut progress = Progress::new(job.quiet);
    let summary = export::run(
        export::Start::default(),
        |cursor| fetch(client, cursor),
        |step| {
            writer.write_ids(step.kind, step.ids)?;
            writer.page_done()?;
            show(&mut progress, step.summary);
            Ok(())
        },
        job.limit,
    )?;
    let elapsed = progress.elapsed();
    progress.clear();
    let files = writer.finish()?;
    Ok(Exported {
        summary,
        target: "standard output".to_string(),
        files,
        elapsed,
        options: Some(job.options),
    })
}

fn fetch(client: &Client, cursor: Option<&export::Cursor>) -> Result<export::Page> {
    let reply = client.call_read(export::METHOD, &export::biz_content(cursor))?;
    export::parse_page(&reply.content).map_err(Error::Failed)
}

fn show(progress: &mut Progress, s: &Summary) {
    progress.update(|elapsed| {
        format!(
            "{} followers · {} pages · {}/s · {:.1}s",
            output::count(s.written),
            s.pages,
            output::rate(s.written, elapsed),
            elapsed.as_secs_f64()
        )
    })
}

/// The `--summary-json` document.
fn summary_json(exported: &Exported, client: &Client) -> serde_json::Value {
    let Exported {
        summary,
        files,
        elapsed,
        options,
        ..
    } = exported;
    serde_json::json!({
        "followers": summary.written,
        "pages": summary.pages,
        "duplicates_dropped": summary.duplicates,
        "id_kind": summary.kind.map(|k| k.to_string()),
        "end": format!("{:?}", summary.end),
        "retries": client.retries.snapshot(),
        "retries_total": client.retries.total(),
        "verified": client.verifies(),
        "duration_secs": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "format": options.as_ref().map(|o| o.format.name()),
        "output_files": files.count(),
        "first_file": files.first().map(|f| f.display().to_string()),
        "last_file": files.last().map(|f| f.display().to_string()),
    })
}

/// The one-line summary.
pub fn describe(exported: &Exported, client: &Client) -> String {
    let Exported {
        summary,
        target,
        files,
        elapsed,
        options,
    } = exported;
    let target = match (files.count(), files.first(), files.last()) {
        (0, _, _) if target != "standard output" => "no file (no followers)".to_string(),
        (0 | 1, _, _) => target.clone(),
        (n, Some(first), Some(last)) => {
            format!("{n} files, {} … {}", first.display(), last.display())
        }
        _ => target.clone(),
    };
    let kind = match summary.kind {
        Some(IdKind::OpenId) => "open_id: this app uses OpenIDs",
        Some(IdKind::UserId) | None => "user_id",
    };
    let mut line = format!(
        "exported {} followers ({kind}) in {} page{} to {target} in {:.1} s ({}/s)",
        output::count(summary.written),
        summary.pages,
        if summary.pages == 1 { "" } else { "s" },
        elapsed.as_secs_f64(),
        output::rate(summary.written, *elapsed),
    );
    if summary.duplicates > 0 {
        line.push_str(&format!(
            "; {} repeated IDs dropped",
            output::count(summary.duplicates)
        ));
    }
    let retries = client.retries.snapshot();
    if !retries.is_empty() {
        let kinds: Vec<String> = retries.iter().map(|(k, n)| format!("{k} {n}")).collect();
        line.push_str(&format!(
            "; {} retries ({})",
            client.retries.total(),
            kinds.join(", ")
        ));
    }
    if client.verifies() {
        line.push_str("; every answer's signature verified");
    }
    if let Some(options) = options {
        if options.format == Format::Xlsx && formats::xlsx_sheet_count(summary.written) > 1 {
            line.push_str(&format!(
                "; {} sheets (a sheet holds 1,048,576 rows; the list continues on the next)",
                formats::xlsx_sheet_count(summary.written)
            ));
        }
        if let Some(code) = &options.channel_code {
            line.push_str(&format!(
                "; UMS layout: choose channel code {code} as bind_id when uploading"
            ));
        }
    }
    if summary.end == export::EndReason::Limit {
        line.push_str("; stopped at --limit");
    }
    line
}
