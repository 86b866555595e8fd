//! `alipaylife send BATCH.csv --template-id ID`: being written.

use std::process::ExitCode;

use argh::FromArgs;

use crate::cli::gateway_command;
use crate::error::{Error, Result};

gateway_command! {
    /// send a template message to every recipient of a CSV batch (paced, concurrent, resumable)
    #[derive(FromArgs, Debug)]
    #[argh(subcommand, name = "send")]
    pub struct Args {
        /// the batch CSV
        #[argh(positional)]
        pub batch: String,
        /// the merchant's template id (from "my templates" in the Life Account console)
        #[argh(option)]
        pub template_id: Option<String>,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let _ = args.gateway_opts();
    Err(Error::Failed(format!(
        "send is not implemented yet ({})",
        args.batch
    )))
}
