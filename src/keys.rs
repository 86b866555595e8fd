//! RSA keys in every form users paste: PKCS#8 or PKCS#1, PEM, bare base64 (Alipay's key tool) or DER.
//!
//! Parsing is pure (bytes in, key or message out). Messages say what was found and what to do, and
//! never contain key material: no slice of the input is ever copied into an error.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

/// Alipay's RSA2 apps use 2048-bit keys; anything smaller is refused.
pub const MIN_BITS: usize = 2048;

/// Standard alphabet, padding optional: users often lose a trailing `=` when copying.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a key was written down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Pem,
    Base64,
    Der,
}

/// Which ASN.1 structure held the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// PKCS#8 PrivateKeyInfo (private) or X.509 SubjectPublicKeyInfo (public).
    Pkcs8,
    /// PKCS#1 RSAPrivateKey / RSAPublicKey.
    Pkcs1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyForm {
    pub syntax: Syntax,
    pub encoding: Encoding,
}

impl fmt::Display for KeyForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let syntax = match self.syntax {
            Syntax::Pkcs8 => "PKCS#8",
            Syntax::Pkcs1 => "PKCS#1",
        };
        let encoding = match self.encoding {
            Encoding::Pem => "PEM",
            Encoding::Base64 => "bare base64",
            Encoding::Der => "DER",
        };
        write!(f, "{syntax}, {encoding}")
    }
}

/// RSA2 signing: SHA256withRSA, RSASSA-PKCS1-v1_5 (protocol section 3, step 6). ring signs about
/// five times faster than rsa 0.10; rsa signs the sizes ring does not take (it takes 2048 to 4096
/// bits). PKCS#1 v1.5 is deterministic, so both give the same bytes (tested). No `Debug`.
pub struct Signer {
    key: PrivateKey,
    ring: Option<ring::signature::RsaKeyPair>,
}

impl Signer {
    pub fn new(key: PrivateKey) -> Signer {
        let ring = key
            .to_pkcs8_der()
            .ok()
            .and_then(|der| ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).ok());
        Signer { key, ring }
    }

    pub fn sign_sha256(&self, content: &[u8]) -> Vec<u8> {
        if let Some(ring_key) = &self.ring {
            let mut signature = vec![0; ring_key.public().modulus_len()];
            let rng = ring::rand::SystemRandom::new();
            if ring_key
                .sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    content,
                    &mut signature,
                )
                .is_ok()
            {
                return signature;
            }
        }
        self.sign_with_rsa(content)
    }

    fn sign_with_rsa(&self, content: &[u8]) -> Vec<u8> {
        self.key
            .pkcs1v15_sign::<sha2::Sha256>(content)
            .expect("a 2048-bit or larger key signs a SHA-256 digest")
    }
}

/// The app private key. Its `Debug` is redacted so it can never reach a log or panic message.
pub struct AppKey {
    signer: Signer,
    pub form: KeyForm,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppKey({}, {} bits, (redacted))", self.form, self.bits())
    }
}

impl AppKey {
    pub fn bits(&self) -> usize {
        self.signer.key.size() * 8
    }

    fn new(key: PrivateKey, form: KeyForm) -> AppKey {
        AppKey {
            signer: Signer::new(key),
            form,
        }
    }

    /// RSA2 signature of `content` (see `Signer`).
    pub fn sign_sha256(&self, content: &[u8]) -> Vec<u8> {
        self.signer.sign_sha256(content)
    }

    pub fn public_key(&self) -> PublicKey {
        self.signer.key.to_public_key()
    }

    /// The public half as bare base64 SubjectPublicKeyInfo: the text Alipay's console asks for.
    pub fn public_key_base64(&self) -> String {
        public_key_base64(&self.public_key())
    }

    /// PKCS#8 PEM, for writing a generated key to disk.
    pub fn to_pkcs8_pem(&self) -> String {
        self.signer
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encode key")
            .to_string()
    }

    /// PKCS#1 PEM, for tools that only read `BEGIN RSA PRIVATE KEY`.
    pub fn to_pkcs1_pem(&self) -> String {
        self.signer
            .key
            .to_pkcs1_pem(LineEnding::LF)
            .expect("encode key")
            .to_string()
    }

    /// A new RSA key from the operating system's random source.
    pub fn generate(bits: usize) -> AppKey {
        let key = PrivateKey::new(&mut getrandom::SysRng, bits).expect("generate RSA key");
        AppKey::new(
            key,
            KeyForm {
                syntax: Syntax::Pkcs8,
                encoding: Encoding::Pem,
            },
        )
    }
}

/// Whether a command-line value (a file name, an unexpected argument) is key text: a PEM block, or
/// 64 or more characters of base64 alphabet only (paths have dots, dashes or underscores). Such a
/// value is never echoed in an error.
pub fn looks_like_key_text(s: &str) -> bool {
    s.contains("-----BEGIN")
        || s.contains("PRIVATE KEY")
        || (s.trim().len() >= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c) || c.is_whitespace()))
}

/// Replace every key-text value of `args` found in `text` (argh's usage errors quote the
/// argument they reject).
pub fn redact_key_text(text: &str, args: &[String]) -> String {
    let mut out = text.to_string();
    for arg in args.iter().filter(|a| looks_like_key_text(a)) {
        // As given, and trimmed: the message may have lost the key's final newline.
        for form in [arg.as_str(), arg.trim()] {
            if !form.is_empty() {
                out = out.replace(form, "<key text, not shown>");
            }
        }
    }
    out
}

/// Bare base64 SubjectPublicKeyInfo (`MIIBIjANBgkqhkiG9w0BAQEF…`).
pub fn public_key_base64(key: &PublicKey) -> String {
    general_purpose::STANDARD.encode(
        key.to_public_key_der()
            .expect("encode public key")
            .as_bytes(),
    )
}

/// An RSA public key as users have it, with the form it was found in.
#[derive(Clone, Debug)]
pub struct RsaPublic {
    pub key: PublicKey,
    pub form: KeyForm,
}

/// What the input looked like once armor and whitespace were dealt with.
struct Decoded {
    der: Vec<u8>,
    encoding: Encoding,
    /// The PEM label, when there was one.
    label: Option<String>,
}

/// Parse the app private key from any supported form.
pub fn parse_private_key(input: &[u8]) -> Result<AppKey, String> {
    let decoded = decode(input)?;
    if let Some(label) = &decoded.label {
        match label.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => return Err(encrypted_message()),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => return Err(public_given_message()),
            "EC PRIVATE KEY" => return Err(ec_message()),
            "CERTIFICATE" => return Err(certificate_given_message("private key")),
            other => {
                return Err(format!(
                    "the PEM label is \"BEGIN {other}\"; a private key is labelled \"BEGIN PRIVATE KEY\" \
                     (PKCS#8) or \"BEGIN RSA PRIVATE KEY\" (PKCS#1)"
                ));
            }
        }
    }
    let der = &decoded.der;
    check_der_length(der)?;
    let (key, syntax) = if let Ok(key) = PrivateKey::from_pkcs8_der(der) {
        (key, Syntax::Pkcs8)
    } else if let Ok(key) = PrivateKey::from_pkcs1_der(der) {
        (key, Syntax::Pkcs1)
    } else {
        return Err(explain_unparsed_private(der));
    };
    let form = KeyForm {
        syntax,
        encoding: decoded.encoding,
    };
    if let Some(label) = &decoded.label {
        let expected = if syntax == Syntax::Pkcs8 {
            "PRIVATE KEY"
        } else {
            "RSA PRIVATE KEY"
        };
        if label != expected {
            return Err(format!(
                "the PEM label says \"BEGIN {label}\" but the content is a {} key; \
                 change the label to \"BEGIN {expected}\" (and the END line to match)",
                if syntax == Syntax::Pkcs8 {
                    "PKCS#8"
                } else {
                    "PKCS#1"
                }
            ));
        }
    }
    let key = AppKey::new(key, form);
    if key.bits() < MIN_BITS {
        return Err(format!(
            "the key is {} bits; Alipay RSA2 needs at least {MIN_BITS} bits: generate a new key with \
             `alipaylife keygen` or Alipay's key tool and upload its public half",
            key.bits()
        ));
    }
    Ok(key)
}

/// Parse an RSA public key (Alipay's, or the app's): PEM or bare base64 SubjectPublicKeyInfo, or PKCS#1.
pub fn parse_public_key(input: &[u8]) -> Result<RsaPublic, String> {
    let decoded = decode(input)?;
    if let Some(label) = &decoded.label {
        match label.as_str() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" | "EC PRIVATE KEY" => {
                return Err(private_given_message());
            }
            "CERTIFICATE" => return Err(certificate_given_message("public key")),
            other => {
                return Err(format!(
                    "the PEM label is \"BEGIN {other}\"; a public key is labelled \"BEGIN PUBLIC KEY\""
                ));
            }
        }
    }
    let der = &decoded.der;
    check_der_length(der)?;
    let (key, syntax) = if let Ok(key) = PublicKey::from_public_key_der(der) {
        (key, Syntax::Pkcs8)
    } else if let Ok(key) = PublicKey::from_pkcs1_der(der) {
        (key, Syntax::Pkcs1)
    } else if PrivateKey::from_pkcs8_der(der).is_ok() || PrivateKey::from_pkcs1_der(der).is_ok() {
        return Err(private_given_message());
    } else if looks_like_certificate(der) {
        return Err(certificate_given_message("public key"));
    } else if contains(der, OID_EC_PUBLIC_KEY) {
        return Err("this is an EC public key; Alipay's RSA2 public key is an RSA key".to_string());
    } else {
        return Err(
            "this is not an RSA public key in any known form (PEM or base64 \
                    SubjectPublicKeyInfo, starting \"MIIBIjANBgkqhkiG9w0BAQEF\")"
                .to_string(),
        );
    };
    Ok(RsaPublic {
        key,
        form: KeyForm {
            syntax,
            encoding: decoded.encoding,
        },
    })
}

fn decode(input: &[u8]) -> Result<Decoded, String> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    if input.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("the key is empty".to_string());
    }
    // Binary DER: an ASN.1 SEQUENCE tag and bytes that are not text.
    if input.first() == Some(&0x30) && std::str::from_utf8(input).is_err() {
        return Ok(Decoded {
            der: input.to_vec(),
            encoding: Encoding::Der,
            label: None,
        });
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return Err("the key is neither text (PEM or base64) nor DER".to_string());
    };
    // Keys kept in JSON or .env files often carry literal `\n` sequences instead of line breaks.
    let text = text.replace("\\r\\n", "\n").replace("\\n", "\n");
    let text = text.trim();
    if let Some(start) = text.find("-----BEGIN") {
        return decode_pem(&text[start..]);
    }
    if text.contains("BEGIN") && text.contains("KEY") {
        return Err("the PEM header line is malformed; it must read exactly \"-----BEGIN PRIVATE KEY-----\" \
                    (five dashes on each side)"
            .to_string());
    }
    if text.contains("-----END") {
        return Err(
            "the key has an \"-----END\" line but no \"-----BEGIN\" line: it was cut at the \
                    start; copy the whole key"
                .to_string(),
        );
    }
    let der = decode_base64(text, 1)?;
    Ok(Decoded {
        der,
        encoding: Encoding::Base64,
        label: None,
    })
}

/// A PEM label we may quote back: a few uppercase words, never part of a key's body.
fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 40
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
}

/// PEM, also squeezed onto one line (spaces for line breaks, as keys kept in environment
/// variables often are). Messages quote the label only when it is a real label: with a damaged
/// header, what follows `BEGIN` may be the key itself (found by fuzzing).
fn decode_pem(text: &str) -> Result<Decoded, String> {
    let malformed = || {
        "the PEM header is malformed; it must read exactly \"-----BEGIN PRIVATE KEY-----\" (five \
         dashes on each side)"
            .to_string()
    };
    let after_begin = text.strip_prefix("-----BEGIN ").ok_or_else(malformed)?;
    let label_end = after_begin.find("-----").ok_or_else(malformed)?;
    let label = after_begin[..label_end].trim().to_string();
    if !is_label(&label) {
        return Err(malformed());
    }
    let rest = &after_begin[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let Some(end) = rest.find("-----END") else {
        return Err(format!(
            "the key is truncated: \"-----BEGIN {label}-----\" has no \"{end_marker}\" line; \
             copy the whole key, including its last line"
        ));
    };
    if !rest[end..].trim_end().starts_with(&end_marker) {
        return Err(format!(
            "the PEM END line does not match its BEGIN line; it should read \"{end_marker}\""
        ));
    }
    let body = &rest[..end];
    if body.lines().any(|line| line.contains(':')) {
        if body.contains("ENCRYPTED") {
            return Err(encrypted_message());
        }
        return Err("the PEM block has header lines (\"Name: value\"); remove them".to_string());
    }
    // The body starts on the line after BEGIN, or on the BEGIN line itself when squeezed.
    let body_line = 1
        + text[..text.len() - rest.len()].matches('\n').count()
        + usize::from(!body.starts_with('\n'));
    let der = decode_base64(body.strip_prefix('\n').unwrap_or(body), body_line.max(1))?;
    Ok(Decoded {
        der,
        encoding: Encoding::Pem,
        label: Some(label),
    })
}

/// `first_line` is the line of the key text `text` starts on (PEM bodies start after BEGIN).
fn decode_base64(text: &str, first_line: usize) -> Result<Vec<u8>, String> {
    for (n, line) in text.lines().enumerate() {
        if let Some(col) = line.chars().position(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') || c.is_whitespace())
        }) {
            // Where, never what: the character itself could be part of a key.
            return Err(format!(
                "the key has a character that is not base64 at line {}, column {}; expected PEM or \
                 the bare base64 text of the key",
                first_line + n,
                col + 1
            ));
        }
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("the key is empty".to_string());
    }
    LENIENT_B64
        .decode(compact.trim_end_matches('='))
        .map_err(|_| {
            format!(
                "the key's base64 text ends in the middle of a character group ({} characters): \
             it looks truncated; copy the whole key",
                compact.len()
            )
        })
}

/// Compare the DER outer length with what we have, to tell "truncated" from "garbage".
fn check_der_length(der: &[u8]) -> Result<(), String> {
    if der.len() < 2 || der[0] != 0x30 {
        return Err(
            "this is not a key: the decoded bytes are not an ASN.1 structure \
                    (expected PEM or the base64 text of a PKCS#8/PKCS#1 key)"
                .to_string(),
        );
    }
    let (header, len) = match der[1] {
        n if n < 0x80 => (2, n as usize),
        0x81 if der.len() >= 3 => (3, der[2] as usize),
        0x82 if der.len() >= 4 => (4, ((der[2] as usize) << 8) | der[3] as usize),
        0x83 if der.len() >= 5 => (
            5,
            ((der[2] as usize) << 16) | ((der[3] as usize) << 8) | der[4] as usize,
        ),
        _ => return Err("the key is truncated: its first bytes are incomplete".to_string()),
    };
    let expected = header + len;
    if der.len() < expected {
        return Err(format!(
            "the key is truncated: it declares {expected} bytes but only {} are present; \
             copy the whole key",
            der.len()
        ));
    }
    if der.len() > expected {
        return Err(format!(
            "the key has {} unexpected bytes after its end; remove anything pasted after the key",
            der.len() - expected
        ));
    }
    Ok(())
}

const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PBES2: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d,
];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn looks_like_certificate(der: &[u8]) -> bool {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] EXPLICIT version ... } ... }
    let inner = der.iter().skip(1).position(|&b| b == 0x30).map(|p| p + 1);
    match inner {
        Some(i) if i < 6 => der[i + 1..].iter().take(4).any(|&b| b == 0xa0),
        _ => false,
    }
}

fn explain_unparsed_private(der: &[u8]) -> String {
    if PublicKey::from_public_key_der(der).is_ok() || PublicKey::from_pkcs1_der(der).is_ok() {
        return public_given_message();
    }
    if contains(der, OID_PBES2) {
        return encrypted_message();
    }
    if contains(der, OID_EC_PUBLIC_KEY) || der.get(2..5) == Some(&[0x02, 0x01, 0x01]) {
        return ec_message();
    }
    if contains(der, OID_ED25519) {
        return "this is an Ed25519 key; Alipay RSA2 needs an RSA key".to_string();
    }
    if looks_like_certificate(der) {
        return certificate_given_message("private key");
    }
    if contains(der, OID_RSA) {
        return "the RSA key could not be decoded (damaged or edited); generate a new key or \
                copy it again"
            .to_string();
    }
    "this is not an RSA private key in any known form (PKCS#8 or PKCS#1, PEM or bare base64)"
        .to_string()
}

fn encrypted_message() -> String {
    "the private key is encrypted with a passphrase; decrypt it first with \
     `openssl pkcs8 -in key.pem -out app_private_key.pem` (keep the output private)"
        .to_string()
}

fn public_given_message() -> String {
    "this is a public key, not the app private key; give the private key you generated together \
     with the public key uploaded to Alipay"
        .to_string()
}

fn private_given_message() -> String {
    "this is a private key; here the public key belongs (for responses, the Alipay public key \
     shown in the Alipay console next to your app's key)"
        .to_string()
}

fn ec_message() -> String {
    "this is an EC (elliptic-curve) key; Alipay RSA2 needs an RSA 2048 key: generate one with \
     `alipaylife keygen`"
        .to_string()
}

fn certificate_given_message(what: &str) -> String {
    format!(
        "this is a certificate, not a {what}; for certificate mode use --app-cert-file, \
         --alipay-cert-file and --alipay-root-cert-file"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const TV5_PKCS8: &str = include_str!("../tests/fixtures/tv5_pkcs8.b64");
    const TV5_PKCS1: &str = include_str!("../tests/fixtures/tv5_pkcs1.b64");
    const TV5_PUBLIC: &str = include_str!("../tests/fixtures/tv5_public.b64");

    #[test]
    fn key_text_is_recognised_and_redacted() {
        let pem = pem("PRIVATE KEY", TV5_PKCS8);
        let b64: String = TV5_PKCS8.split_whitespace().collect();
        for key in [pem.as_str(), b64.as_str(), &b64[..80]] {
            assert!(looks_like_key_text(key));
        }
        for path in [
            "app_private_key.pem",
            "/home/me/keys/2021000000000001/app-private-key.txt",
            "-",
            "key",
            "/aaaa/bbbbbbbbbbbbb/cccccccc",
        ] {
            assert!(!looks_like_key_text(path), "{path}");
        }
        let argv = vec![
            "export".to_string(),
            format!("{pem}\n"),
            "x.pem".to_string(),
        ];
        let said = redact_key_text(&format!("Unrecognized argument: {}", pem.trim()), &argv);
        assert_eq!(said, "Unrecognized argument: <key text, not shown>");
    }

    /// PKCS#1 v1.5 signatures are deterministic: ring (used for speed) and rsa agree to the byte,
    /// for the TV-5 key in both syntaxes and for a fresh key.
    #[test]
    fn ring_and_rsa_sign_identically() {
        let message = "app_id=2021000000000000&biz_content={}&charset=utf-8".as_bytes();
        for key in [
            parse_private_key(TV5_PKCS8.as_bytes()).unwrap(),
            parse_private_key(TV5_PKCS1.as_bytes()).unwrap(),
            AppKey::generate(2048),
        ] {
            assert!(key.signer.ring.is_some(), "ring takes a 2048-bit key");
            assert_eq!(key.sign_sha256(message), key.signer.sign_with_rsa(message));
            let redacted = format!("{key:?}");
            assert!(!redacted.contains("RsaKeyPair"), "{redacted}");
        }
    }

    fn pem(label: &str, b64: &str) -> String {
        let b64: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[track_caller]
    fn accepts(input: &str, syntax: Syntax, encoding: Encoding) {
        let key = parse_private_key(input.as_bytes()).expect("key should parse");
        assert_eq!(key.form, KeyForm { syntax, encoding });
        assert_eq!(key.public_key_base64(), TV5_PUBLIC.trim());
    }

    #[track_caller]
    fn refuses(input: &[u8], needle: &str) {
        let err = parse_private_key(input).expect_err("key should be refused");
        assert!(
            err.contains(needle),
            "message {err:?} should contain {needle:?}"
        );
        // No 16-character slice of the key may appear in a message.
        let secret: String = TV5_PKCS8.chars().filter(|c| !c.is_whitespace()).collect();
        for i in 0..secret.len() - 16 {
            assert!(
                !err.contains(&secret[i..i + 16]),
                "message leaks key material"
            );
        }
    }

    #[test]
    fn accepts_every_form_of_the_same_key() {
        accepts(TV5_PKCS8, Syntax::Pkcs8, Encoding::Base64);
        accepts(TV5_PKCS1, Syntax::Pkcs1, Encoding::Base64);
        accepts(&pem("PRIVATE KEY", TV5_PKCS8), Syntax::Pkcs8, Encoding::Pem);
        accepts(
            &pem("RSA PRIVATE KEY", TV5_PKCS1),
            Syntax::Pkcs1,
            Encoding::Pem,
        );
        // CRLF line ends, stray indentation, a BOM, and literal "\n" escapes from a JSON/.env file.
        accepts(
            &pem("PRIVATE KEY", TV5_PKCS8).replace('\n', "\r\n"),
            Syntax::Pkcs8,
            Encoding::Pem,
        );
        accepts(
            &format!("\u{feff}  {}  \n", pem("PRIVATE KEY", TV5_PKCS8)),
            Syntax::Pkcs8,
            Encoding::Pem,
        );
        accepts(
            &pem("PRIVATE KEY", TV5_PKCS8).replace('\n', "\\n"),
            Syntax::Pkcs8,
            Encoding::Pem,
        );
        // Bare base64 broken over lines, and with its padding lost.
        let wrapped: String = TV5_PKCS8
            .trim()
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        accepts(&wrapped, Syntax::Pkcs8, Encoding::Base64);
        accepts(
            TV5_PKCS1.trim().trim_end_matches('='),
            Syntax::Pkcs1,
            Encoding::Base64,
        );
        let der = general_purpose::STANDARD.decode(TV5_PKCS8.trim()).unwrap();
        let key = parse_private_key(&der).unwrap();
        assert_eq!(key.form.encoding, Encoding::Der);
    }

    #[test]
    fn refuses_bad_keys_with_specific_messages() {
        let bare = TV5_PKCS8.trim();
        refuses(&bare.as_bytes()[..bare.len() - 40], "truncated");
        refuses(&bare.as_bytes()[..bare.len() - 41], "truncated");
        let p = pem("PRIVATE KEY", TV5_PKCS8);
        refuses(&p.as_bytes()[..p.len() - 30], "truncated");
        refuses(TV5_PUBLIC.as_bytes(), "this is a public key");
        refuses(
            pem("PUBLIC KEY", TV5_PUBLIC).as_bytes(),
            "this is a public key",
        );
        refuses(
            include_bytes!("../tests/fixtures/encrypted_pkcs8.pem"),
            "encrypted",
        );
        refuses(
            include_bytes!("../tests/fixtures/ec_private.pem"),
            "EC (elliptic-curve)",
        );
        refuses(
            include_bytes!("../tests/fixtures/ec_private_pkcs8.pem"),
            "EC (elliptic-curve)",
        );
        refuses(
            include_bytes!("../tests/fixtures/rsa1024_pkcs8.pem"),
            "1024 bits",
        );
        refuses(
            pem("RSA PRIVATE KEY", TV5_PKCS8).as_bytes(),
            "change the label to \"BEGIN PRIVATE KEY\"",
        );
        refuses(
            pem("OPENSSH PRIVATE KEY", TV5_PKCS8).as_bytes(),
            "the PEM label is",
        );
        refuses(
            p.replace("-----BEGIN PRIVATE KEY-----", "----BEGIN PRIVATE KEY-----")
                .as_bytes(),
            "malformed",
        );
        refuses(
            b"hello, this is not a key",
            "not base64 at line 1, column 6",
        );
        refuses(b"MIIE\nMII#E\n", "not base64 at line 2, column 4");
        refuses(b"aGVsbG8gd29ybGQ=", "not an ASN.1 structure");
        refuses(b"   \n", "empty");
        refuses(
            include_bytes!("../tests/fixtures/tv5_root_cert.pem"),
            "certificate",
        );
    }

    /// Found by fuzzing (fuzz/regressions/keys): a damaged or one-line PEM header must never make
    /// a message quote the key.
    #[test]
    fn one_line_pem_is_accepted_and_damaged_headers_are_not_echoed() {
        let one_line = pem("PRIVATE KEY", TV5_PKCS8).replace('\n', " ");
        accepts(&one_line, Syntax::Pkcs8, Encoding::Pem);
        refuses(
            include_bytes!("../fuzz/regressions/keys/pem-label-echo-min"),
            "the PEM header is malformed",
        );
        let no_end = one_line.replace("-----END PRIVATE KEY-----", "");
        refuses(no_end.as_bytes(), "truncated");
        let whole = include_bytes!("../fuzz/regressions/keys/pem-one-line-echoes-whole-key.pem");
        if let Err(msg) = parse_private_key(whole) {
            let text = String::from_utf8_lossy(whole);
            let body: String = text
                .split_whitespace()
                .filter(|w| !w.starts_with("-----") && w.len() > 16)
                .collect();
            for i in 0..body.len().saturating_sub(16) {
                assert!(
                    !msg.contains(&body[i..i + 16]),
                    "message echoes the key: {msg}"
                );
            }
        }
        let squeezed_label = format!("-----BEGIN PRIVATE KEY {}-----", TV5_PKCS8.trim());
        refuses(squeezed_label.as_bytes(), "the PEM header is malformed");
    }

    #[test]
    fn public_keys_parse_and_refuse_private_keys() {
        let k = parse_public_key(TV5_PUBLIC.as_bytes()).unwrap();
        assert_eq!(
            k.form,
            KeyForm {
                syntax: Syntax::Pkcs8,
                encoding: Encoding::Base64
            }
        );
        let k2 = parse_public_key(pem("PUBLIC KEY", TV5_PUBLIC).as_bytes()).unwrap();
        assert_eq!(k.key, k2.key);
        let err = parse_public_key(TV5_PKCS8.as_bytes()).unwrap_err();
        assert!(err.contains("this is a private key"), "{err}");
        let err = parse_public_key(pem("PRIVATE KEY", TV5_PKCS8).as_bytes()).unwrap_err();
        assert!(err.contains("this is a private key"), "{err}");
        let err =
            parse_public_key(include_bytes!("../tests/fixtures/tv5_root_cert.pem")).unwrap_err();
        assert!(err.contains("certificate"), "{err}");
    }

    #[test]
    fn debug_output_is_redacted() {
        let key = parse_private_key(TV5_PKCS8.as_bytes()).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "AppKey(PKCS#8, bare base64, 2048 bits, (redacted))");
    }
}
