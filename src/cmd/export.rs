//! `alipaylife export`: page through the follower list and write every ID as it arrives.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::cli::gateway_command;
use crate::error::{Error, Result};
use crate::export::{self, IdKind, Summary};
use crate::formats::{self, Format, IdWriter, Options};
use crate::gateway::Client;
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
    let writer = formats::open(&args.output, &options)?;
    let mut exported = export(&client, writer, &args.output, args.limit, opts.quiet)?;
    exported.options = Some(options);
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
    /// The files written (empty for stdout).
    pub files: Vec<std::path::PathBuf>,
    pub elapsed: Duration,
    pub options: Option<Options>,
}

/// Run the export into `writer`, writing each page as it arrives.
pub fn export(
    client: &Client,
    mut writer: Box<dyn IdWriter>,
    output: &str,
    limit: Option<u64>,
    quiet: bool,
) -> Result<Exported> {
    let target = if output == "-" {
        "standard output".to_string()
    } else {
        output.to_string()
    };
    let mut progress = Progress::new(quiet);
    let summary = export::run(
        |cursor| {
            let reply = client.call_read(export::METHOD, &export::biz_content(cursor))?;
            export::parse_page(&reply.content).map_err(Error::Failed)
        },
        |kind: IdKind, ids: &[&str]| {
            writer.write_ids(kind, ids)?;
            writer.page_done()
        },
        |s| {
            progress.update(|elapsed| {
                format!(
                    "{} followers · {} pages · {}/s · {:.1}s",
                    output::count(s.written),
                    s.pages,
                    output::rate(s.written, elapsed),
                    elapsed.as_secs_f64()
                )
            })
        },
        limit,
    )?;
    let elapsed = progress.elapsed();
    progress.clear();
    let files = writer.finish()?;
    Ok(Exported {
        summary,
        target,
        files,
        elapsed,
        options: None,
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
        "output_files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
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
    let target = match files.as_slice() {
        [] if target != "standard output" => "no file (no followers)".to_string(),
        [] | [_] => target.clone(),
        [first, .., last] => format!(
            "{} files, {} … {}",
            files.len(),
            first.display(),
            last.display()
        ),
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
