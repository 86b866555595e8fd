//! The local Alipay gateway emulator that ships in the binary: key set-up in a keys directory, the
//! follower list, fault injection, and starting the HTTP server (in this thread or a background one).

pub mod faults;
pub mod followers;
pub mod gateway;
pub mod http;
pub mod messages;

use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::{PrivateKey, PublicKey};

use crate::error::{Error, Result};
use faults::Faults;
use followers::Followers;
use gateway::Gateway;

pub const DEFAULT_APP_ID: &str = "2021000000000001";

pub struct Config {
    pub app_id: String,
    pub keys_dir: PathBuf,
    pub app_public_key_file: Option<PathBuf>,
    pub followers: Followers,
    pub faults: Faults,
    pub latency: Duration,
    pub slow: Duration,
    pub no_life_account: bool,
    pub clock_offset_secs: i64,
    pub messages: messages::MessagesConfig,
    /// Certificate mode: the app certificate, the emulator's Alipay certificate, the root bundle.
    pub cert_files: Option<[PathBuf; 3]>,
}

/// Where the emulator's keys are.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub alipay_public: PathBuf,
    /// Set when the emulator generated (or reused) an app key pair in the keys directory.
    pub app_private: Option<PathBuf>,
    pub app_public: PathBuf,
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<()> {
    let mut f = if private {
        crate::output::create_private(path)
    } else {
        fs::File::create(path)
    }
    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn generate() -> PrivateKey {
    PrivateKey::new(&mut getrandom::SysRng, 2048).expect("generate RSA key")
}

/// The emulator's own key reading: PEM or bare base64 SubjectPublicKeyInfo.
fn read_public(path: &Path) -> Result<PublicKey> {
    if crate::keys::looks_like_key_text(&path.to_string_lossy()) {
        return Err(Error::Config(
            "cannot read --app-public-key-file: the name given is the key's text itself (not \
             shown): save the app public key in a file and give its path"
                .to_string(),
        ));
    }
    let text = fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let parsed = if text.contains("-----BEGIN") {
        PublicKey::from_public_key_pem(text.trim()).ok()
    } else {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()
            .and_then(|der| PublicKey::from_public_key_der(&der).ok())
    };
    parsed.ok_or_else(|| {
        Error::Config(format!(
            "{} is not an RSA public key (PEM \"BEGIN PUBLIC KEY\" or bare base64 SubjectPublicKeyInfo)",
            path.display()
        ))
    })
}

/// Load the keys from the keys directory, generating what is missing.
pub fn keys(
    keys_dir: &Path,
    app_public_key_file: Option<&Path>,
) -> Result<(PrivateKey, PublicKey, KeyFiles)> {
    fs::create_dir_all(keys_dir)
        .map_err(|e| Error::io(format!("cannot create {}", keys_dir.display()), e))?;
    let alipay_private_path = keys_dir.join("alipay_private_key.pem");
    let alipay_public_path = keys_dir.join("alipay_public_key.pem");
    let alipay_private = if alipay_private_path.exists() {
        let text = fs::read_to_string(&alipay_private_path).map_err(|e| {
            Error::Config(format!(
                "cannot read {}: {e}",
                alipay_private_path.display()
            ))
        })?;
        PrivateKey::from_pkcs8_pem(&text).map_err(|_| {
            Error::Config(format!(
                "{} is not a PKCS#8 PEM RSA key; delete it to make a new one",
                alipay_private_path.display()
            ))
        })?
    } else {
        let key = generate();
        write_file(
            &alipay_private_path,
            &key.to_pkcs8_pem(LineEnding::LF).expect("encode"),
            true,
        )?;
        key
    };
    let alipay_public_pem = alipay_private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("encode");
    write_file(&alipay_public_path, &alipay_public_pem, false)?;

    let (app_public, files) = if let Some(path) = app_public_key_file {
        let key = read_public(path)?;
        (
            key,
            KeyFiles {
                alipay_public: alipay_public_path,
                app_private: None,
                app_public: path.to_path_buf(),
            },
        )
    } else {
        let app_private_path = keys_dir.join("app_private_key.pem");
        let app_public_path = keys_dir.join("app_public_key.pem");
        if !app_public_path.exists() {
            let key = generate();
            write_file(
                &app_private_path,
                &key.to_pkcs8_pem(LineEnding::LF).expect("encode"),
                true,
            )?;
            write_file(
                &app_public_path,
                &key.to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .expect("encode"),
                false,
            )?;
        }
        let key = read_public(&app_public_path)?;
        let app_private = app_private_path.exists().then_some(app_private_path);
        (
            key,
            KeyFiles {
                alipay_public: alipay_public_path,
                app_private,
                app_public: app_public_path,
            },
        )
    };
    Ok((alipay_private, app_public, files))
}

/// Build the gateway from a config: keys ready, nothing listening yet.
pub fn prepare(config: Config) -> Result<(Arc<Gateway>, KeyFiles)> {
    let (alipay_private, mut app_public, files) =
        keys(&config.keys_dir, config.app_public_key_file.as_deref())?;
    let cert = match &config.cert_files {
        None => None,
        Some([app, alipay, root]) => {
            let read = |path: &PathBuf| -> Result<Vec<crate::cert::Cert>> {
                let bytes = fs::read(path)
                    .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
                crate::cert::parse_bundle(&bytes)
                    .map_err(|m| Error::Config(format!("{}: {m}", path.display())))
            };
            let app_cert = read(app)?.remove(0);
            let alipay_cert = read(alipay)?.remove(0);
            if alipay_cert.public_key.as_ref() != Some(&alipay_private.to_public_key()) {
                return Err(Error::Config(format!(
                    "{} does not certify the emulator's Alipay key {}: issue it for that key",
                    alipay.display(),
                    config.keys_dir.join("alipay_private_key.pem").display()
                )));
            }
            // In certificate mode the app's key is the one its certificate holds.
            app_public = app_cert.public_key.clone().ok_or_else(|| {
                Error::Config(format!("{} does not hold an RSA key", app.display()))
            })?;
            Some(gateway::CertSns {
                app_cert_sn: app_cert.sn,
                root_cert_sn: crate::cert::root_sn(&read(root)?),
                alipay_cert_sn: alipay_cert.sn,
            })
        }
    };
    let gateway = Gateway {
        app_id: config.app_id,
        app_public,
        alipay_signer: crate::keys::Signer::new(alipay_private),
        followers: config.followers,
        faults: config.faults,
        latency: config.latency,
        slow: config.slow,
        messages: messages::Messages::new(config.messages)?,
        no_life_account: config.no_life_account,
        clock_offset_secs: config.clock_offset_secs,
        cert,
    };
    Ok((Arc::new(gateway), files))
}

pub fn bind(listen: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen)
        .map_err(|e| Error::io(format!("cannot listen on {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listening address", e))?;
    Ok((listener, addr))
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/gateway.do")
}

/// Serve in a background thread (for `demo`); the thread lives as long as the process.
pub fn spawn(listener: TcpListener, gateway: Arc<Gateway>) {
    std::thread::spawn(move || http::serve(listener, gateway, http::READ_TIMEOUT));
}

/// Write every follower ID, one per line, in list order (for tests and users comparing exports).
pub fn write_followers(followers: &Followers, path: &Path) -> Result<()> {
    let file = fs::File::create(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    let mut w = std::io::BufWriter::new(file);
    for i in 0..followers.count {
        writeln!(w, "{}", followers.id(i))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    w.flush()
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
