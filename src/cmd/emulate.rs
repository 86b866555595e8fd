//! `alipaylife emulate`: run the local Alipay gateway emulator until stopped.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use crate::emulator::faults::{self, Fault, Faults};
use crate::emulator::followers::{EndStyle, Followers};
use crate::emulator::messages::MessagesConfig;
use crate::emulator::{self, Config};
use crate::error::{Error, Result};
use crate::gateway::is_loopback;

/// run a local Alipay gateway emulator (signatures, error codes, paging, faults) for offline tests
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "emulate",
    example = "alipaylife emulate --followers 25000",
    example = "alipaylife emulate --listen 127.0.0.1:0 --fault-rate 0.1 --followers 250000"
)]
pub struct Args {
    /// address to listen on (default 127.0.0.1:8080; port 0 picks a free port); the first stdout line says where
    #[argh(option, default = "String::from(\"127.0.0.1:8080\")")]
    pub listen: String,
    /// directory for the emulator's keys (default ./alipaylife-emulator): alipay_public_key.pem, and a generated app key pair unless --app-public-key-file is given
    #[argh(option, default = "PathBuf::from(\"alipaylife-emulator\")")]
    pub keys_dir: PathBuf,
    /// the app public key to check request signatures with (PEM or bare base64), as uploaded to Alipay
    #[argh(option)]
    pub app_public_key_file: Option<PathBuf>,
    /// the one app id served (default 2021000000000001); others get isv.invalid-app-id
    #[argh(option, default = "String::from(emulator::DEFAULT_APP_ID)")]
    pub app_id: String,
    /// number of followers (default 25000)
    #[argh(option, default = "25_000")]
    pub followers: u64,
    /// serve an OpenID app (open_id_list and the open_id cursor)
    #[argh(switch)]
    pub openid: bool,
    /// how the last page ends: empty (default), missing, repeat, trailing-empty
    #[argh(option, default = "String::from(\"empty\")")]
    pub end_style: String,
    /// write every follower ID, one per line, to this file and continue
    #[argh(option)]
    pub write_followers: Option<PathBuf>,
    /// fraction of calls that get a fault, 0 to 1 (default 0)
    #[argh(option, default = "0.0")]
    pub fault_rate: f64,
    /// comma-separated fault kinds: reset, http-502, slow, truncated, unknown-error, rate-limit, repeat-id, tamper, lost, or all (default: all but tamper and lost)
    #[argh(option)]
    pub fault_kinds: Option<String>,
    /// seed for choosing faults, to repeat a run exactly (default 1)
    #[argh(option, default = "1")]
    pub seed: u64,
    /// milliseconds a client has to send each whole request; idle or slow connections are closed after it (default 30000)
    #[argh(option, default = "30_000")]
    pub read_timeout_ms: u64,
    /// milliseconds added to every answer (default 0)
    #[argh(option, default = "0")]
    pub latency_ms: u64,
    /// milliseconds a "slow" fault waits before answering (default 35000, beyond the client's 30 s)
    #[argh(option, default = "35_000")]
    pub slow_ms: u64,
    /// answer 40006 isv.insufficient-isv-permissions, as for an app without the Life Account capability
    #[argh(switch)]
    pub no_life_account: bool,
    /// seconds to add to the emulator's clock (simulates a skewed client clock)
    #[argh(option, default = "0")]
    pub clock_offset_secs: i64,
    /// template registry for message.single.send (a built-in default template when absent)
    #[argh(option)]
    pub templates: Option<PathBuf>,
    /// message.single.send calls per second above which the answer is 40005 (default: no cap)
    #[argh(option)]
    pub qps_limit: Option<u32>,
    /// certificate mode: the app certificate whose SN requests must carry (its key checks signatures)
    #[argh(option)]
    pub app_cert_file: Option<PathBuf>,
    /// certificate mode: the emulator's Alipay certificate (for KEYS_DIR/alipay_private_key.pem)
    #[argh(option)]
    pub alipay_cert_file: Option<PathBuf>,
    /// certificate mode: the root bundle whose RSA roots make alipay_root_cert_sn
    #[argh(option)]
    pub alipay_root_cert_file: Option<PathBuf>,
    /// write each delivered message as a JSON line to this file
    #[argh(option)]
    pub deliveries: Option<PathBuf>,
    /// write each injected fault (time, request number, method, kind) as a JSON line to this file
    #[argh(option)]
    pub fault_log: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let end: EndStyle = args.end_style.parse().map_err(Error::Usage)?;
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(Error::Usage(format!(
            "--fault-rate must be between 0 and 1, not {}",
            args.fault_rate
        )));
    }
    let kinds = match &args.fault_kinds {
        Some(list) => faults::parse_kinds(list).map_err(Error::Usage)?,
        None => Fault::DEFAULT.to_vec(),
    };
    let cert_files = match (
        &args.app_cert_file,
        &args.alipay_cert_file,
        &args.alipay_root_cert_file,
    ) {
        (None, None, None) => None,
        (Some(a), Some(b), Some(c)) => Some([a.clone(), b.clone(), c.clone()]),
        _ => {
            return Err(Error::Usage(
                "certificate mode needs --app-cert-file, --alipay-cert-file and --alipay-root-cert-file together"
                    .to_string(),
            ));
        }
    };
    let followers = Followers {
        count: args.followers,
        openid: args.openid,
        end,
    };
    if let Some(path) = &args.write_followers {
        emulator::write_followers(&followers, path)?;
    }
    let mut faults = Faults::new(args.fault_rate, kinds.clone(), args.seed);
    if let Some(path) = &args.fault_log {
        faults = faults
            .with_log(path)
            .map_err(|e| Error::io(format!("cannot open --fault-log {}", path.display()), e))?;
    }
    let config = Config {
        app_id: args.app_id.clone(),
        keys_dir: args.keys_dir.clone(),
        app_public_key_file: args.app_public_key_file.clone(),
        followers,
        faults,
        latency: Duration::from_millis(args.latency_ms),
        slow: Duration::from_millis(args.slow_ms),
        no_life_account: args.no_life_account,
        clock_offset_secs: args.clock_offset_secs,
        messages: MessagesConfig {
            templates: args.templates.clone(),
            qps_limit: args.qps_limit,
            deliveries: args.deliveries.clone(),
        },
        cert_files,
    };
    let (gateway, files) = emulator::prepare(config)?;
    let (listener, addr) = emulator::bind(&args.listen)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", emulator::url(addr))
            .map_err(|e| Error::io("writing to standard output", e))?;
        out.flush()
            .map_err(|e| Error::io("writing to standard output", e))?;
    }
    if !is_loopback(&addr.ip().to_string()) {
        eprintln!("emulator: warning: listening on {addr}, reachable from other machines");
    }
    eprintln!(
        "emulator: app id {}, {} followers ({}), last page ends {:?}",
        args.app_id,
        args.followers,
        if args.openid { "open_id" } else { "user_id" },
        end
    );
    eprintln!(
        "emulator: Alipay public key (for --alipay-public-key-file): {}",
        files.alipay_public.display()
    );
    match &files.app_private {
        Some(p) => eprintln!(
            "emulator: app private key (for --private-key-file): {}",
            p.display()
        ),
        None => eprintln!("emulator: app public key: {}", files.app_public.display()),
    }
    if args.fault_rate > 0.0 {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        eprintln!(
            "emulator: injecting faults in {:.1}% of calls: {}",
            args.fault_rate * 100.0,
            names.join(", ")
        );
    }
    let read_timeout = Duration::from_millis(args.read_timeout_ms);
    emulator::http::serve(listener, gateway, read_timeout).map_err(|e| Error::io("serving", e))?;
    Ok(ExitCode::SUCCESS)
}
