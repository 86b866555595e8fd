//! The command line: the top-level struct and subcommand enum, the flags every gateway command
//! shares (generated into each command by `gateway_command!`), and the argv pre-pass that accepts
//! `--flag=value` (argh alone refuses it).

use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::cmd;
use crate::credentials::{self, Credentials};
use crate::error::{Error, Result};
use crate::gateway::{self, Client, Settings};

/// Export Alipay Life Account (生活号) followers to CSV for Jiguang UMS, and emulate the Alipay gateway offline.
///
/// Start with `alipaylife demo` (no account needed).
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// print version, git commit and target, then exit
    #[argh(switch, short = 'V')]
    version: bool,

    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Export(cmd::export::Args),
    Send(cmd::send::Args),
    Check(cmd::check::Args),
    Keygen(cmd::keygen::Args),
    Emulate(cmd::emulate::Args),
    Demo(cmd::demo::Args),
    Alipay(cmd::alipay::Args),
}

impl Cli {
    pub fn run(self) -> Result<ExitCode> {
        if self.version {
            println!("{}", version());
            return Ok(ExitCode::SUCCESS);
        }
        match self.command {
            Some(Command::Export(args)) => cmd::export::run(args),
            Some(Command::Emulate(args)) => cmd::emulate::run(args),
            Some(Command::Demo(args)) => cmd::demo::run(args),
            Some(Command::Check(args)) => cmd::check::run(args),
            Some(Command::Send(args)) => cmd::send::run(args),
            Some(Command::Keygen(args)) => cmd::keygen::run(args),
            Some(Command::Alipay(args)) => cmd::alipay::run(args),
            None => Err(Error::Usage(
                "no command given; try `alipaylife demo`, or `alipaylife --help` for the list"
                    .to_string(),
            )),
        }
    }
}

pub fn version() -> String {
    format!(
        "alipaylife {} (commit {}, {})",
        env!("CARGO_PKG_VERSION"),
        env!("ALIPAYLIFE_COMMIT"),
        env!("ALIPAYLIFE_TARGET")
    )
}

/// Parse argv (without the program name). On `--help` or a usage error, returns the exit code after
/// printing: help to stdout (exit 0), errors to stderr (exit 2).
pub fn parse(argv: &[String]) -> std::result::Result<Cli, ExitCode> {
    let args = normalize(argv);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match Cli::from_args(&["alipaylife"], &strs) {
        Ok(cli) => Ok(cli),
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                Err(ExitCode::SUCCESS)
            }
            Err(()) => {
                // argh quotes the argument it rejects, which may be a pasted key.
                let said = crate::keys::redact_key_text(early.output.trim_end(), &args);
                eprintln!(
                    "alipaylife: error: {said}\nRun `alipaylife --help` (or `alipaylife COMMAND --help`) for usage."
                );
                Err(ExitCode::from(2))
            }
        },
    }
}

/// `--flag=value` becomes `--flag value` (up to a lone `--`). After the pushtools-style `alipay`
/// command, single-dash long flags become double-dash ones (`-appid X` → `--app-id X`,
/// `-privatekey=Y` → `--private-key Y`), as in Jiguang's UMS guide.
pub fn normalize(argv: &[String]) -> Vec<String> {
    let pushtools = argv.first().is_some_and(|a| a == "alipay");
    let mut out = Vec::with_capacity(argv.len() + 4);
    let mut passthrough = false;
    for arg in argv {
        if passthrough {
            out.push(arg.clone());
            continue;
        }
        let long = if pushtools && is_single_dash_word(arg) {
            format!("-{arg}")
        } else {
            arg.clone()
        };
        if long == "--" {
            passthrough = true;
            out.push(long);
            continue;
        }
        let (flag, value) = match long.split_once('=') {
            Some((flag, value)) if is_flag_name(flag) => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (long, None),
        };
        let flag = match flag.as_str() {
            "--appid" if pushtools => "--app-id".to_string(),
            "--privatekey" if pushtools => "--private-key".to_string(),
            _ => flag,
        };
        out.push(flag);
        out.extend(value);
    }
    out
}

/// `--name` with a lowercase name: not a value that happens to start with dashes (a PEM key).
fn is_flag_name(s: &str) -> bool {
    s.strip_prefix("--").is_some_and(|n| {
        n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}

/// `-appid`, `-privatekey=…`: one dash and a word of two or more letters (not `-o`, `-v`, `-5`).
fn is_single_dash_word(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('-') else {
        return false;
    };
    let name = rest.split('=').next().unwrap_or("");
    !rest.starts_with('-')
        && name.len() >= 2
        && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

/// What `gateway_command!` adds to a command, gathered.
#[derive(Clone, Debug)]
pub struct GatewayOpts {
    pub credentials: credentials::Flags,
    pub gateway: Option<String>,
    pub timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub retries: Option<u32>,
    pub verbose: bool,
    pub quiet: bool,
}

fn seconds(flag: &str, value: Option<f64>, default: f64) -> Result<Duration> {
    let v = value.unwrap_or(default);
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        return Err(Error::Usage(format!(
            "{flag} must be a number of seconds between 0 and 3600, not {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

impl GatewayOpts {
    /// Network settings, validated (no network yet).
    pub fn settings(&self) -> Result<Settings> {
        let (gateway, from_env) = match &self.gateway {
            Some(g) => (g.clone(), false),
            None => (std::env::var("ALIPAY_GATEWAY").unwrap_or_default(), true),
        };
        let url = gateway::resolve_url(&gateway).map_err(|m| {
            Error::Usage(if from_env {
                m.replacen("--gateway", "ALIPAY_GATEWAY", 1)
            } else {
                m
            })
        })?;
        Ok(Settings {
            url,
            connect_timeout: seconds("--connect-timeout", self.connect_timeout, 10.0)?,
            timeout: seconds("--timeout", self.timeout, 30.0)?,
            retries: self.retries.unwrap_or(5),
            verbose: self.verbose,
            quiet: self.quiet,
        })
    }

    /// Validate settings, load credentials, build the client. Nothing is sent.
    pub fn client(&self) -> Result<Client> {
        self.client_with(self.settings()?)
    }

    /// Load credentials and build the client with settings already validated.
    pub fn client_with(&self, settings: Settings) -> Result<Client> {
        let Credentials {
            app_id, key, trust, ..
        } = credentials::load(&self.credentials, self.verbose)?;
        Ok(Client::new(settings, app_id, key, trust))
    }
}

/// Define a command's argh struct with the shared gateway flags appended, and `gateway_opts()`.
macro_rules! gateway_command {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($body:tt)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            /// the Alipay app id (else ALIPAY_APP_ID, else asked on a terminal)
            #[argh(option)]
            pub app_id: Option<String>,
            /// app private key file, PKCS#8 or PKCS#1, PEM or bare base64; - reads stdin (else ALIPAY_PRIVATE_KEY, ALIPAY_PRIVATE_KEY_FILE, or a hidden prompt)
            #[argh(option)]
            pub private_key_file: Option<String>,
            /// the Alipay public key file, to verify every response (else ALIPAY_PUBLIC_KEY, ALIPAY_PUBLIC_KEY_FILE)
            #[argh(option)]
            pub alipay_public_key_file: Option<String>,
            /// certificate mode: the app public key certificate, appCertPublicKey_<APPID>.crt (else ALIPAY_APP_CERT_FILE)
            #[argh(option)]
            pub app_cert_file: Option<String>,
            /// certificate mode: the Alipay public key certificate, alipayCertPublicKey_RSA2.crt (else ALIPAY_CERT_FILE)
            #[argh(option)]
            pub alipay_cert_file: Option<String>,
            /// certificate mode: the Alipay root certificate bundle, alipayRootCert.crt (else ALIPAY_ROOT_CERT_FILE)
            #[argh(option)]
            pub alipay_root_cert_file: Option<String>,
            /// gateway: prod (default), sandbox, or a URL such as http://127.0.0.1:8080/gateway.do (else ALIPAY_GATEWAY)
            #[argh(option)]
            pub gateway: Option<String>,
            /// seconds allowed for each call (default 30)
            #[argh(option)]
            pub timeout: Option<f64>,
            /// seconds allowed to connect (default 10)
            #[argh(option)]
            pub connect_timeout: Option<f64>,
            /// retries of a failed read-only call, with backoff (default 5)
            #[argh(option)]
            pub retries: Option<u32>,
            /// more detail on stderr: key form, each call (never key material)
            #[argh(switch, short = 'v')]
            pub verbose: bool,
            /// no progress or summary on stderr (errors still print)
            #[argh(switch, short = 'q')]
            pub quiet: bool,
        }

        impl $name {
            pub fn gateway_opts(&self) -> $crate::cli::GatewayOpts {
                $crate::cli::GatewayOpts {
                    credentials: $crate::credentials::Flags {
                        app_id: self.app_id.clone(),
                        private_key_file: self.private_key_file.clone(),
                        private_key_inline: None,
                        alipay_public_key_file: self.alipay_public_key_file.clone(),
                        app_cert_file: self.app_cert_file.clone(),
                        alipay_cert_file: self.alipay_cert_file.clone(),
                        alipay_root_cert_file: self.alipay_root_cert_file.clone(),
                    },
                    gateway: self.gateway.clone(),
                    timeout: self.timeout,
                    connect_timeout: self.connect_timeout,
                    retries: self.retries,
                    verbose: self.verbose,
                    quiet: self.quiet,
                }
            }
        }
    };
}
pub(crate) use gateway_command;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn equals_form_is_split() {
        assert_eq!(
            normalize(&v(&["export", "--app-id=123", "-o", "a=b.csv"])),
            v(&["export", "--app-id", "123", "-o", "a=b.csv"])
        );
        assert_eq!(
            normalize(&v(&["x", "--", "--a=b"])),
            v(&["x", "--", "--a=b"])
        );
        assert_eq!(
            normalize(&v(&["x", "--gateway=http://h/g?x=y"])),
            v(&["x", "--gateway", "http://h/g?x=y"])
        );
    }
}
