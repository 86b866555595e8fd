//! Where the app id and keys come from (flag, environment, file, terminal prompt), loaded the same
//! way by every command. Errors name the source, never the key.

use std::io::{self, BufRead, IsTerminal, Read, Write};

use crate::cert;
use crate::error::{Error, Result};
use crate::gateway::{CertTrust, Trust};
use crate::keys::{self, AppKey, RsaPublic};

/// The credential flags every command that calls the gateway shares.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub app_id: Option<String>,
    pub private_key_file: Option<String>,
    /// The key text itself, from the pushtools-style `-privatekey` (warned about: visible in `ps`).
    pub private_key_inline: Option<String>,
    pub alipay_public_key_file: Option<String>,
    pub app_cert_file: Option<String>,
    pub alipay_cert_file: Option<String>,
    pub alipay_root_cert_file: Option<String>,
}

pub struct Credentials {
    pub app_id: String,
    pub key: AppKey,
    /// Human description of where the key came from (a path or a variable name), never its content.
    pub key_source: String,
    /// How answers are verified: not at all, with the Alipay public key, or with certificates.
    pub trust: Trust,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("key_source", &self.key_source)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// App id: `--app-id`, else `ALIPAY_APP_ID`, else a prompt on a terminal, else an error.
pub fn app_id(flag: Option<&str>) -> Result<String> {
    let (value, source) = if let Some(v) = flag {
        (v.to_string(), "--app-id")
    } else if let Some(v) = env("ALIPAY_APP_ID") {
        (v, "ALIPAY_APP_ID")
    } else if io::stdin().is_terminal() && io::stderr().is_terminal() {
        eprint!("Alipay app id (APPID, 16 digits): ");
        io::stderr().flush().ok();
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("reading the app id", e))?;
        (line, "the prompt")
    } else {
        return Err(Error::Config(
            "no app id: pass --app-id or set ALIPAY_APP_ID (the APPID shown in the Alipay Open \
             Platform console)"
                .to_string(),
        ));
    };
    let value = value.trim().to_string();
    if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "the app id from {source} is not an Alipay app id: it must be digits only (like \
             2021000000000001), at most 32"
        )));
    }
    Ok(value)
}

/// The app private key, from the first source that is set.
pub fn private_key(flags: &Flags) -> Result<(AppKey, String)> {
    let (bytes, source) = if let Some(path) = &flags.private_key_file {
        let bytes = read_path(path, "private key")?;
        (
            bytes,
            if path == "-" {
                "standard input".to_string()
            } else {
                format!("--private-key-file {path}")
            },
        )
    } else if let Some(text) = &flags.private_key_inline {
        (text.clone().into_bytes(), "-privatekey".to_string())
    } else if let Some(text) = env("ALIPAY_PRIVATE_KEY") {
        (text.into_bytes(), "ALIPAY_PRIVATE_KEY".to_string())
    } else if let Some(path) = env("ALIPAY_PRIVATE_KEY_FILE") {
        (
            read_path(&path, "private key (ALIPAY_PRIVATE_KEY_FILE)")?,
            format!("ALIPAY_PRIVATE_KEY_FILE {path}"),
        )
    } else if io::stdin().is_terminal() && io::stderr().is_terminal() {
        (prompt_hidden_key()?, "the prompt".to_string())
    } else {
        return Err(Error::Config(
            "no app private key: pass --private-key-file PATH (or - for stdin), or set \
             ALIPAY_PRIVATE_KEY (the key text) or ALIPAY_PRIVATE_KEY_FILE"
                .to_string(),
        ));
    };
    let key = keys::parse_private_key(&bytes)
        .map_err(|msg| Error::Config(format!("the private key from {source}: {msg}")))?;
    Ok((key, source))
}

/// The optional Alipay public key (for verifying responses).
pub fn alipay_public_key(flags: &Flags) -> Result<Option<(RsaPublic, String)>> {
    let (bytes, source) = if let Some(path) = &flags.alipay_public_key_file {
        (
            read_path(path, "Alipay public key")?,
            format!("--alipay-public-key-file {path}"),
        )
    } else if let Some(text) = env("ALIPAY_PUBLIC_KEY") {
        (text.into_bytes(), "ALIPAY_PUBLIC_KEY".to_string())
    } else if let Some(path) = env("ALIPAY_PUBLIC_KEY_FILE") {
        (
            read_path(&path, "Alipay public key (ALIPAY_PUBLIC_KEY_FILE)")?,
            format!("ALIPAY_PUBLIC_KEY_FILE {path}"),
        )
    } else {
        return Ok(None);
    };
    let key = keys::parse_public_key(&bytes)
        .map_err(|msg| Error::Config(format!("the Alipay public key from {source}: {msg}")))?;
    Ok(Some((key, source)))
}

/// Load everything, and refuse the most common mix-up: the app's own public key given as Alipay's.
pub fn load(flags: &Flags, verbose: bool) -> Result<Credentials> {
    let app_id = app_id(flags.app_id.as_deref())?;
    let (key, key_source) = private_key(flags)?;
    let alipay = alipay_public_key(flags)?;
    if let Some((alipay_key, source)) = &alipay
        && alipay_key.key == key.public_key()
    {
        return Err(Error::Config(format!(
            "the Alipay public key from {source} is your app's own public key (the public half of \
             the private key from {key_source}); responses are signed by Alipay, so copy the \
             \"Alipay public key\" (支付宝公钥) shown in the console after uploading your app \
             public key"
        )));
    }
    let certs = certificates(flags, &key)?;
    if certs.is_some() && alipay.is_some() {
        return Err(Error::Config(
            "both an Alipay public key and certificates are given; an app uses one signing method: \
             drop --alipay-public-key-file (certificate mode) or the certificate flags (key mode)"
                .to_string(),
        ));
    }
    if verbose {
        eprintln!("alipaylife: app id {app_id}");
        eprintln!(
            "alipaylife: private key: {}, {} bits, from {key_source}",
            key.form,
            key.bits()
        );
        match (&alipay, &certs) {
            (Some((k, source)), _) => {
                eprintln!("alipaylife: Alipay public key: {}, from {source}", k.form)
            }
            (None, Some(c)) => eprintln!(
                "alipaylife: certificate mode: app_cert_sn {}, alipay_root_cert_sn {}",
                c.app_cert_sn, c.root_cert_sn
            ),
            (None, None) => {
                eprintln!("alipaylife: no Alipay public key: responses will not be verified")
            }
        }
    }
    let trust = match (certs, alipay) {
        (Some(c), _) => Trust::Certs(c),
        (None, Some((k, _))) => Trust::Key(k.key),
        (None, None) => Trust::Unverified,
    };
    Ok(Credentials {
        app_id,
        key,
        key_source,
        trust,
    })
}

/// Certificate mode: all three certificate files, or none.
pub fn certificates(flags: &Flags, key: &AppKey) -> Result<Option<CertTrust>> {
    let pick = |flag: &Option<String>, var: &str| flag.clone().or_else(|| env(var));
    let app = pick(&flags.app_cert_file, "ALIPAY_APP_CERT_FILE");
    let alipay = pick(&flags.alipay_cert_file, "ALIPAY_CERT_FILE");
    let root = pick(&flags.alipay_root_cert_file, "ALIPAY_ROOT_CERT_FILE");
    let (app, alipay, root) = match (app, alipay, root) {
        (None, None, None) => return Ok(None),
        (Some(a), Some(b), Some(c)) => (a, b, c),
        (a, b, c) => {
            let missing: Vec<&str> = [
                (a.is_none(), "--app-cert-file"),
                (b.is_none(), "--alipay-cert-file"),
                (c.is_none(), "--alipay-root-cert-file"),
            ]
            .iter()
            .filter(|(m, _)| *m)
            .map(|(_, f)| *f)
            .collect();
            return Err(Error::Config(format!(
                "certificate mode needs three files; missing {} (the app certificate, the Alipay \
                 certificate and the Alipay root certificate, all downloaded from the console)",
                missing.join(" and ")
            )));
        }
    };
    let load = |path: &str, what: &str| -> Result<Vec<cert::Cert>> {
        let bytes = read_path(path, what)?;
        cert::parse_bundle(&bytes).map_err(|m| Error::Config(format!("the {what} {path}: {m}")))
    };
    let app_certs = load(&app, "app certificate")?;
    let app_cert = &app_certs[0];
    if app_cert.public_key.as_ref() != Some(&key.public_key()) {
        return Err(Error::Config(format!(
            "the app certificate {app} does not belong to this private key: it certifies another key \
             (subject {}); use the certificate issued for the CSR made with this private key",
            app_cert.subject
        )));
    }
    let mut alipay_keys = Vec::new();
    for c in load(&alipay, "Alipay certificate")? {
        let Some(k) = c.public_key else {
            return Err(Error::Config(format!(
                "the Alipay certificate {alipay} does not hold an RSA key"
            )));
        };
        if k == key.public_key() {
            return Err(Error::Config(format!(
                "{alipay} is your app's own certificate, not Alipay's; --alipay-cert-file takes \
                 alipayCertPublicKey_RSA2.crt"
            )));
        }
        alipay_keys.push((c.sn, k));
    }
    let root_cert_sn = cert::root_sn(&load(&root, "Alipay root certificate")?);
    if root_cert_sn.is_empty() {
        return Err(Error::Config(format!(
            "the root bundle {root} has no RSA-signed certificate"
        )));
    }
    Ok(Some(CertTrust {
        app_cert_sn: app_cert.sn.clone(),
        root_cert_sn,
        alipay: alipay_keys,
    }))
}

fn read_path(path: &str, what: &str) -> Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("reading the {what} from standard input"), e))?;
        return Ok(buf);
    }
    if crate::keys::looks_like_key_text(path) {
        return Err(Error::Config(format!(
            "cannot read the {what} file: the name given is the key's text itself (not shown): give \
             the path of a file holding it, or `-` to read it from standard input, or put the \
             text in ALIPAY_PRIVATE_KEY / ALIPAY_PUBLIC_KEY"
        )));
    }
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "no such file; check the path".to_string(),
            io::ErrorKind::PermissionDenied => {
                "permission denied; check the file's owner and mode".to_string()
            }
            io::ErrorKind::IsADirectory => {
                "it is a directory; give the key file inside it".to_string()
            }
            _ => e.to_string(),
        };
        Error::Config(format!("cannot read the {what} file {path}: {why}"))
    })
}

/// Read a pasted key without echo: one line of bare base64, or a PEM block up to its END line.
fn prompt_hidden_key() -> Result<Vec<u8>> {
    let first = rpassword::prompt_password(
        "Paste the app private key (input hidden; bare base64 or PEM), then press Enter: ",
    )
    .map_err(|e| Error::io("reading the private key from the terminal", e))?;
    let mut text = first.trim().to_string();
    if text.starts_with("-----BEGIN") {
        while !text.contains("-----END") {
            let line = rpassword::read_password()
                .map_err(|e| Error::io("reading the private key from the terminal", e))?;
            if line.trim().is_empty() && text.lines().count() > 64 {
                break;
            }
            text.push('\n');
            text.push_str(line.trim());
        }
    }
    Ok(text.into_bytes())
}
