//! Entry point: normalise argv, parse it, run the command, turn the result into an exit code.
#![forbid(unsafe_code)]

mod cert;
mod checkpoint;
mod cli;
mod cmd;
mod credentials;
mod emulator;
mod error;
mod export;
mod formats;
mod gateway;
mod keys;
mod output;
mod response;
mod send;
mod sign;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cli = match cli::parse(&argv) {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    match cli.run() {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alipaylife: error: {err}");
            err.exit_code()
        }
    }
}
