//! Private and public key parsing, every form (PEM, bare base64, DER; PKCS#8, PKCS#1, SPKI):
//! no panic, and an error message never echoes key material.
#![no_main]

use alipaylife::keys::{parse_private_key, parse_public_key};
use libfuzzer_sys::fuzz_target;

/// Constant text of the key messages that itself looks like base64 (the SPKI prefix they quote).
const MESSAGE_TEXT: &[&str] = &["MIIBIjANBgkqhkiG9w0BAQEF"];

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// A 16-byte window that looks like key material: base64 only, with an upper-case letter, a
/// lower-case letter and a digit (PEM labels, words and numbers in messages never are).
fn key_like(w: &[u8]) -> bool {
    w.iter().all(|&b| is_b64(b))
        && w.iter().any(u8::is_ascii_uppercase)
        && w.iter().any(u8::is_ascii_lowercase)
        && w.iter().any(u8::is_ascii_digit)
}

fn check_no_echo(input: &[u8], what: &str, err: &str) {
    // Only for inputs longer than 40 bytes that are mostly (3/4) base64 text.
    if input.len() <= 40 || input.iter().filter(|&&b| is_b64(b)).count() * 4 < input.len() * 3 {
        return;
    }
    for w in input.windows(16) {
        if !key_like(w) {
            continue;
        }
        let w = std::str::from_utf8(w).expect("ASCII");
        if err.contains(w) && !MESSAGE_TEXT.iter().any(|t| t.contains(w)) {
            panic!("{what} error echoes input {w:?}: {err:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_private_key(data) {
        Ok(key) => {
            assert!(key.bits() >= alipaylife::keys::MIN_BITS);
            // The redacted Debug must not show key material either.
            check_no_echo(data, "private key Debug", &format!("{key:?}"));
        }
        Err(e) => {
            assert!(!e.is_empty());
            check_no_echo(data, "private key", &e);
        }
    }
    match parse_public_key(data) {
        Ok(_) => {}
        Err(e) => {
            assert!(!e.is_empty());
            check_no_echo(data, "public key", &e);
        }
    }
});
