//! `alipaylife demo`: the whole job against the built-in emulator, no account and no flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

use super::export::{Existing, Job};
use crate::emulator::faults::Faults;
use crate::emulator::followers::{EndStyle, Followers};
use crate::emulator::{self, Config};
use crate::error::{Error, Result};
use crate::formats::Options;
use crate::gateway::{Client, Settings};
use crate::keys;

/// run a complete export against a built-in emulator (no Alipay account needed)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo", example = "alipaylife demo")]
pub struct Args {
    /// working directory for keys and output (default ./alipaylife-demo)
    #[argh(option, default = "PathBuf::from(\"alipaylife-demo\")")]
    pub dir: PathBuf,
    /// followers the emulator serves (default 25000)
    #[argh(option, default = "25_000")]
    pub followers: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let keys_dir = args.dir.join("keys");
    let config = Config {
        app_id: emulator::DEFAULT_APP_ID.to_string(),
        keys_dir: keys_dir.clone(),
        app_public_key_file: None,
        followers: Followers {
            count: args.followers,
            openid: false,
            end: EndStyle::Empty,
        },
        faults: Faults::none(),
        latency: Duration::ZERO,
        slow: Duration::ZERO,
        no_life_account: false,
        clock_offset_secs: 0,
        messages: Default::default(),
        cert_files: None,
    };
    eprintln!(
        "demo: preparing keys in {} (generated once, reused after)",
        keys_dir.display()
    );
    let (gateway, files) = emulator::prepare(config)?;
    let (listener, addr) = emulator::bind("127.0.0.1:0")?;
    let url = emulator::url(addr);
    emulator::spawn(listener, gateway);
    eprintln!(
        "demo: emulator with {} followers listening on {url}",
        args.followers
    );

    let app_private = files
        .app_private
        .clone()
        .expect("the demo generates its app key");
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
    };
    let key = keys::parse_private_key(&read(&app_private)?).map_err(Error::Config)?;
    let alipay = keys::parse_public_key(&read(&files.alipay_public)?).map_err(Error::Config)?;
    let settings = Settings {
        url: url.clone(),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        retries: 3,
        verbose: false,
        quiet: false,
    };
    let client = Client::new(
        settings,
        emulator::DEFAULT_APP_ID.to_string(),
        key,
        Some(alipay.key),
    );
    let out = args.dir.join("followers.csv");
    let out_arg = out.to_string_lossy().into_owned();
    let job = Job {
        output: &out_arg,
        options: Options::csv(),
        limit: None,
        quiet: false,
        existing: Existing::Restart,
    };
    let exported = super::export::export(&client, job)?;
    // The export's "progress is saved, use --resume" no longer applies.
    crate::interrupt::reset();
    eprintln!("demo: {}", super::export::describe(&exported, &client));
    eprintln!(
        "demo: every request was signed with {} and every answer verified with {}",
        app_private.display(),
        files.alipay_public.display()
    );
    eprintln!();
    eprintln!("The same export against Alipay:");
    eprintln!("  alipaylife export --app-id YOUR_APPID --private-key-file app_private_key.pem \\");
    eprintln!("      --alipay-public-key-file alipay_public_key.pem -o followers.csv");
    eprintln!(
        "The same export against a standing emulator (`alipaylife emulate` in another terminal):"
    );
    eprintln!(
        "  alipaylife export --gateway http://127.0.0.1:8080/gateway.do --app-id {} \\",
        emulator::DEFAULT_APP_ID
    );
    eprintln!("      --private-key-file alipaylife-emulator/app_private_key.pem \\");
    eprintln!("      --alipay-public-key-file alipaylife-emulator/alipay_public_key.pem");
    send_demo(&client, &args.dir, args.followers)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The sending half of the demo: a small batch to the first followers plus one recipient who does
/// not follow (to show a failed row), sent through the real `send` pipeline; the report is shown.
fn send_demo(client: &Client, dir: &std::path::Path, followers: u64) -> Result<()> {
    use argh::FromArgs as _;
    let list = Followers {
        count: followers,
        openid: false,
        end: EndStyle::Empty,
    };
    let mut text = String::from("alipaylife_userid,first,keyword1,keyword2,remark\n");
    for i in 0..followers.min(20) {
        text.push_str(&format!(
            "{},您好，您的订单已发货,DEMO{:05},2026-01-02,感谢使用 alipaylife demo\n",
            list.id(i),
            i + 1
        ));
    }
    text.push_str("2088000000000000,您好,DEMO00000,2026-01-02,这位用户没有关注生活号\n");
    let batch = dir.join("batch.csv");
    std::fs::write(&batch, text)
        .map_err(|e| Error::io(format!("writing {}", batch.display()), e))?;
    let journal = super::send::default_journal(&batch);
    let report = super::send::default_report(&batch);
    // A fresh emulator has delivered nothing: start the batch afresh too.
    let _ = std::fs::remove_file(&journal);
    let batch_arg = batch.to_string_lossy().into_owned();
    let argv = [
        batch_arg.as_str(),
        "--template-id",
        crate::emulator::messages::DEFAULT_TEMPLATE,
        "--action-name",
        "查看详情",
        "--url",
        "https://example.com/orders",
        "--qps",
        "50",
    ];
    let send_args = super::send::Args::from_args(&["send"], &argv)
        .map_err(|e| Error::Failed(format!("demo send arguments: {}", e.output)))?;
    eprintln!();
    eprintln!(
        "demo: sending template {} to {} followers and one non-follower ({})",
        crate::emulator::messages::DEFAULT_TEMPLATE,
        followers.min(20),
        batch.display()
    );
    let plan = super::send::plan(&send_args, true)?;
    let code = super::send::execute(client, plan, &send_args)?;
    eprintln!(
        "demo: report {} (one failed row is expected: MSG_SD_NOFOLLOW); exit code would be {}",
        report.display(),
        if code == ExitCode::SUCCESS { 0 } else { 3 }
    );
    eprintln!("The same send against Alipay:");
    eprintln!("  alipaylife send batch.csv --template-id YOUR_TEMPLATE_ID --app-id YOUR_APPID \\");
    eprintln!(
        "      --private-key-file app_private_key.pem --alipay-public-key-file alipay_public_key.pem"
    );
    Ok(())
}
