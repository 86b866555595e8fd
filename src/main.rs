//! Entry point: normalise argv, parse it, run the command, turn the result into an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use alipaylife::cli;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cli = match cli::parse(&argv) {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    match cli.run() {
        Ok(code) => code,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err @ alipaylife::error::Error::Interrupted(_)) => {
            eprintln!("alipaylife: {err}");
            err.exit_code()
        }
        Err(err) => {
            eprintln!("alipaylife: error: {err}");
            err.exit_code()
        }
    }
}
