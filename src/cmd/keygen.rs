//! `alipaylife keygen`: make an RSA 2048 app key pair the way Alipay's key tool does.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use crate::error::{Error, Result};
use crate::keys::AppKey;
use crate::output::create_private;

/// generate an RSA 2048 app key pair: the private key to keep, the public key text to paste into Alipay
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "keygen", example = "alipaylife keygen -o keys")]
pub struct Args {
    /// directory to write into (default alipaylife-keys); existing key files are never overwritten
    #[argh(option, short = 'o', default = "PathBuf::from(\"alipaylife-keys\")")]
    pub dir: PathBuf,
    /// write the private key as PKCS#1 ("BEGIN RSA PRIVATE KEY") instead of PKCS#8
    #[argh(switch)]
    pub pkcs1: bool,
}

pub const PRIVATE_FILE: &str = "app_private_key.pem";
pub const PUBLIC_FILE: &str = "app_public_key.txt";

pub fn run(args: Args) -> Result<ExitCode> {
    let private = args.dir.join(PRIVATE_FILE);
    let public = args.dir.join(PUBLIC_FILE);
    for path in [&private, &public] {
        if path.exists() {
            return Err(Error::Usage(format!(
                "{} already exists; keygen never overwrites a key (a replaced key locks you out until \
                 the new public key is uploaded): choose another -o directory",
                path.display()
            )));
        }
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| Error::io(format!("cannot create {}", args.dir.display()), e))?;
    let key = AppKey::generate(2048);
    let pem = if args.pkcs1 {
        key.to_pkcs1_pem()
    } else {
        key.to_pkcs8_pem()
    };
    let public_text = key.public_key_base64();
    write_new(&private, &pem, true)?;
    write_new(&public, &format!("{public_text}\n"), false)?;
    println!("{public_text}");
    eprintln!(
        "alipaylife: wrote {} ({}, mode 0600: keep it secret) and {}",
        private.display(),
        if args.pkcs1 {
            "PKCS#1 PEM"
        } else {
            "PKCS#8 PEM"
        },
        public.display()
    );
    eprintln!("Next steps:");
    eprintln!(
        "  1. In the Alipay Open Platform console, open your app > 开发设置 > 接口加签方式 (interface signing"
    );
    eprintln!(
        "     method), choose 公钥 (public key) and paste the text printed above (also in {}).",
        public.display()
    );
    eprintln!(
        "  2. Copy the 支付宝公钥 (Alipay public key) the console then shows into alipay_public_key.txt."
    );
    eprintln!(
        "  3. Run: alipaylife check --app-id YOUR_APPID --private-key-file {} --alipay-public-key-file alipay_public_key.txt",
        private.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &std::path::Path, text: &str, private: bool) -> Result<()> {
    let file = if private {
        create_private(path)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    let mut file = file.map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
