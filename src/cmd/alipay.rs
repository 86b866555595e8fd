//! `alipaylife alipay -appid X -privatekey Y`: the command line of the pushtools utility in Jiguang's
//! UMS guide. Exports the followers to a CSV in the current directory and prints where.

use std::process::ExitCode;

use argh::FromArgs;

use super::export::{Existing, Job};
use crate::cli::gateway_command;
use crate::error::Result;
use crate::formats::Options;

gateway_command! {
    /// pushtools-compatible export: alipaylife alipay -appid APPID -privatekey KEY (writes a UMS-ready CSV here)
    #[derive(FromArgs, Debug)]
    #[argh(
        subcommand,
        name = "alipay",
        example = "alipaylife alipay -appid 2021000000000001 -privatekey \"$(cat app_private_key.txt)\"",
        example = "alipaylife alipay -appid 2021000000000001 --private-key-file app_private_key.pem"
    )]
    pub struct Args {
        /// the private key text itself (visible to other users in `ps`: prefer --private-key-file or ALIPAY_PRIVATE_KEY_FILE)
        #[argh(option)]
        pub private_key: Option<String>,
        /// permissions of the CSV written, in octal (default 600: owner only)
        #[argh(option)]
        pub file_mode: Option<String>,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut opts = args.gateway_opts();
    if let Some(mode) = &args.file_mode {
        crate::output::set_file_mode(mode)?;
    }
    if let Some(text) = &args.private_key {
        eprintln!(
            "alipaylife: warning: a private key given on the command line is visible to other users of \
             this machine (ps) and stays in your shell history; prefer --private-key-file PATH, \
             ALIPAY_PRIVATE_KEY_FILE, or run without it to be asked (input hidden)"
        );
        opts.credentials.private_key_inline = Some(text.clone());
    }
    let client = opts.client()?;
    let app_id = client.app_id().to_string();
    let file = format!("alipaylife_userid_{app_id}.csv");
    // Like the pushtools utility, a re-run simply continues an interrupted export of the same app.
    let job = Job {
        output: &file,
        options: Options::csv(),
        limit: None,
        quiet: opts.quiet,
        existing: Existing::Resume,
    };
    let exported = super::export::export(&client, job)?;
    if !opts.quiet {
        eprintln!(
            "alipaylife: {}",
            super::export::describe(&exported, &client)
        );
        eprintln!(
            "alipaylife: upload it in the UMS console; the column alipaylife_userid holds the IDs"
        );
    }
    let path = std::env::current_dir()
        .map(|d| d.join(&file))
        .unwrap_or_else(|_| file.clone().into());
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
