//! Certificate mode (公钥证书, protocol section 6): read PEM certificates, compute the cert SN
//! (lowercase hex MD5 of the issuer DN in RFC 2253 order + the decimal serial), the root SN
//! (RSA-signed roots only, `_`-joined), and take RSA public keys out of certificates.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use rsa::PublicKey;
use rsa::pkcs8::DecodePublicKey;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

/// One parsed certificate with what this tool needs from it.
#[derive(Clone, Debug)]
pub struct Cert {
    pub sn: String,
    pub subject: String,
    /// Signed with an RSA algorithm (OID 1.2.840.113549.1.1.*): the only roots counted in the root SN.
    pub rsa_signed: bool,
    /// The subject's key, when it is RSA.
    pub public_key: Option<PublicKey>,
}

/// Every `CERTIFICATE` block of a PEM file, in file order.
pub fn parse_bundle(input: &[u8]) -> Result<Vec<Cert>, String> {
    let text = std::str::from_utf8(input).map_err(|_| "the file is not PEM text".to_string())?;
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body_start = start + "-----BEGIN CERTIFICATE-----".len();
        let Some(end) = rest[body_start..].find("-----END CERTIFICATE-----") else {
            return Err(format!(
                "certificate {} has no END line: the file is truncated",
                certs.len() + 1
            ));
        };
        let b64: String = rest[body_start..body_start + end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .map_err(|_| format!("certificate {} is not valid base64", certs.len() + 1))?;
        certs.push(parse_der(&der).map_err(|e| format!("certificate {}: {e}", certs.len() + 1))?);
        rest = &rest[body_start + end..];
    }
    if certs.is_empty() {
        return Err(
            "no \"-----BEGIN CERTIFICATE-----\" block found (a .crt file in PEM form is expected)"
                .to_string(),
        );
    }
    Ok(certs)
}

fn parse_der(der: &[u8]) -> Result<Cert, String> {
    let cert = Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let tbs = cert.tbs_certificate();
    let issuer = tbs.issuer().to_string();
    let serial = decimal(tbs.serial_number().as_bytes());
    let sn = hex(&Md5::digest(format!("{issuer}{serial}").as_bytes()));
    let rsa_signed = cert
        .signature_algorithm()
        .oid
        .to_string()
        .starts_with("1.2.840.113549.1.1.");
    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("cannot read its public key ({e})"))?;
    let public_key = PublicKey::from_public_key_der(&spki).ok();
    Ok(Cert {
        sn,
        subject: tbs.subject().to_string(),
        rsa_signed,
        public_key,
    })
}

/// `alipay_root_cert_sn`: the SNs of the RSA-signed certificates of the root bundle, `_`-joined.
pub fn root_sn(bundle: &[Cert]) -> String {
    bundle
        .iter()
        .filter(|c| c.rsa_signed)
        .map(|c| c.sn.as_str())
        .collect::<Vec<_>>()
        .join("_")
}

/// A big-endian unsigned integer as decimal digits (the serial as Java's BigInteger prints it).
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0]; // little-endian base 10
    for &byte in bytes {
        let mut carry = byte as u32;
        for d in digits.iter_mut() {
            let v = *d as u32 * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| (b'0' + d) as char).collect()
}

/// Lowercase hex, always two digits a byte (32 characters for MD5, as the Java SDK pads).
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tv5e_app_cert_sn() {
        let app = parse_bundle(include_bytes!("../tests/fixtures/tv5_app_cert.pem")).unwrap();
        assert_eq!(app.len(), 1);
        assert_eq!(app[0].sn, "360b0c2084b0f0e21615260a664a0ef5");
        assert!(app[0].public_key.is_some());
    }

    #[test]
    fn tv5e_root_sn_skips_the_ec_root() {
        let bundle = parse_bundle(include_bytes!("../tests/fixtures/tv5_root_bundle.pem")).unwrap();
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[0].sn, "e80bd8599d49f8fdcb0a0191715f61b1");
        assert_eq!(bundle[1].sn, "f2d66b96af90361c8fa0cf58767fa10e");
        assert!(bundle[0].rsa_signed && !bundle[1].rsa_signed);
        assert_eq!(root_sn(&bundle), "e80bd8599d49f8fdcb0a0191715f61b1");
    }

    #[test]
    fn serials_print_in_decimal() {
        assert_eq!(decimal(&[0x00]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            decimal(&[0x20, 0x21, 0, 0, 0, 0, 0, 0, 0xAB, 0xCD, 0xEF]),
            "38841464321602831893908975"
        );
        assert_eq!(
            decimal(&[0x12, 0x34, 0x56, 0x78, 0x90, 0xAB, 0xCD, 0xEF]),
            "1311768467294899695"
        );
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(
            parse_bundle(b"hello")
                .unwrap_err()
                .contains("no \"-----BEGIN CERTIFICATE-----\"")
        );
        let pem =
            std::str::from_utf8(include_bytes!("../tests/fixtures/tv5_app_cert.pem")).unwrap();
        assert!(
            parse_bundle(&pem.as_bytes()[..pem.len() - 40])
                .unwrap_err()
                .contains("truncated")
        );
    }
}
