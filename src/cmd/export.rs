//! `alipaylife export`: page through the follower list and write every ID as it arrives.

use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::cli::gateway_command;
use crate::error::{Error, Result};
use crate::export::{self, IdKind, Summary};
use crate::gateway::Client;
use crate::output::{self, Progress, Sink};

gateway_command! {
    /// export every follower ID to CSV (column alipaylife_userid, ready for UMS upload)
    #[derive(FromArgs, Debug)]
    #[argh(
        subcommand,
        name = "export",
        example = "alipaylife export --app-id 2021000000000001 --private-key-file app_private_key.pem -o followers.csv",
        example = "ALIPAY_GATEWAY=http://127.0.0.1:8080/gateway.do alipaylife export -o - | wc -l"
    )]
    pub struct Args {
        /// output file, or - for stdout (default followers.csv); written under a temporary name and renamed when complete
        #[argh(option, short = 'o', default = "String::from(\"followers.csv\")")]
        pub output: String,
        /// stop after this many followers (to try a command on a large account)
        #[argh(option)]
        pub limit: Option<u64>,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let opts = args.gateway_opts();
    // Everything that can be checked is checked before the first request.
    let client = opts.client()?;
    let sink = Sink::open(&args.output)?;
    let exported = export(&client, sink, args.limit, opts.quiet)?;
    if !opts.quiet {
        eprintln!("alipaylife: {}", describe(&exported, &client));
    }
    Ok(ExitCode::SUCCESS)
}

/// What an export did, for the summary line.
pub struct Exported {
    pub summary: Summary,
    pub target: String,
    pub elapsed: Duration,
}

/// Run the export into `sink`, writing each page as it arrives.
pub fn export(client: &Client, sink: Sink, limit: Option<u64>, quiet: bool) -> Result<Exported> {
    let target = sink.describe();
    let mut sink = sink;
    write_rows(&mut sink, &target, &["alipaylife_userid"])?;
    let mut progress = Progress::new(quiet);
    let summary = export::run(
        |cursor| {
            let reply = client.call_read(export::METHOD, &export::biz_content(cursor))?;
            export::parse_page(&reply.content).map_err(Error::Failed)
        },
        |_kind: IdKind, ids: &[&str]| {
            write_rows(&mut sink, &target, ids)?;
            sink.page_done()
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
    sink.finish()?;
    Ok(Exported {
        summary,
        target,
        elapsed,
    })
}

/// One CSV record (one column) per item, RFC 4180 quoting where needed.
fn write_rows(sink: &mut Sink, target: &str, rows: &[&str]) -> Result<()> {
    let mut wtr = csv::WriterBuilder::new()
        .buffer_capacity(64 * 1024)
        .from_writer(sink);
    for row in rows {
        wtr.write_record([row]).map_err(|e| csv_error(target, e))?;
    }
    wtr.flush()
        .map_err(|e| Error::io(format!("writing {target}"), e))
}

fn csv_error(target: &str, err: csv::Error) -> Error {
    match err.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(format!("writing {target}"), io),
        other => Error::Failed(format!("writing {target}: {other:?}")),
    }
}

/// The one-line summary.
pub fn describe(exported: &Exported, client: &Client) -> String {
    let Exported {
        summary,
        target,
        elapsed,
    } = exported;
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
    if summary.end == export::EndReason::Limit {
        line.push_str("; stopped at --limit");
    }
    line
}
