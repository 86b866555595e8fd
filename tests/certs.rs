//! Certificate mode (公钥证书): the client sends app_cert_sn and alipay_root_cert_sn, the emulator
//! checks them and signs under its certificate's SN, the client verifies by that SN.

use crate::util::*;

const APP_CERT_SN: &str = "50e035230a1594df3801898869e8f639";
const ROOT_SN: &str = "e80bd8599d49f8fdcb0a0191715f61b1";
const ALIPAY_CERT_SN: &str = "8bbfa3382ed02b899cd8abf1612e90dd";

fn f(name: &str) -> String {
    fixture(name).to_string_lossy().into_owned()
}

fn cert_emulator(dir: &TestDir) -> Emulator {
    let (app, alipay, root) = (
        f("app_cert_tv5.pem"),
        f("alipay_cert.pem"),
        f("tv5_root_bundle.pem"),
    );
    Emulator::start(
        dir,
        &[
            "--followers",
            "10001",
            "--write-followers",
            &dir.arg("truth.txt"),
            "--app-cert-file",
            &app,
            "--alipay-cert-file",
            &alipay,
            "--alipay-root-cert-file",
            &root,
        ],
    )
}

/// Client arguments in certificate mode (no --alipay-public-key-file).
fn cert_client(
    em: &Emulator,
    sub: &str,
    app_cert: &str,
    alipay_cert: &str,
    root: &str,
) -> Vec<String> {
    let key = em.key("app_private_key.pem");
    [
        sub,
        "--gateway",
        &em.url,
        "--app-id",
        APP_ID,
        "--private-key-file",
        &key,
        "--app-cert-file",
        app_cert,
        "--alipay-cert-file",
        alipay_cert,
        "--alipay-root-cert-file",
        root,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_vec(args: &[String]) -> Run {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn export_and_check_in_certificate_mode() {
    let dir = TestDir::new("certs");
    let em = cert_emulator(&dir);
    let (app, alipay, root) = (
        f("app_cert_tv5.pem"),
        f("alipay_cert.pem"),
        f("tv5_root_bundle.pem"),
    );
    let mut args = cert_client(&em, "export", &app, &alipay, &root);
    args.extend(["-o".to_string(), dir.arg("f.csv"), "-v".to_string()]);
    let r = run_vec(&args);
    r.code(0)
        .stderr_has(&format!(
            "certificate mode: app_cert_sn {APP_CERT_SN}, alipay_root_cert_sn {ROOT_SN}"
        ))
        .stderr_has("every answer's signature verified");
    assert_eq!(
        lines(&dir.join("f.csv"))[1..],
        lines(&dir.join("truth.txt"))[..]
    );

    let r = run_vec(&cert_client(&em, "check", &app, &alipay, &root));
    r.code(0)
        .stdout_has(&format!("ok    certificates    app_cert_sn {APP_CERT_SN}, alipay_root_cert_sn {ROOT_SN}, Alipay certificate SN {ALIPAY_CERT_SN}"))
        .stdout_has("ok    answers         signature verified")
        .stdout_has("all checks passed");
}

#[test]
fn certificate_mistakes_are_named() {
    let dir = TestDir::new("certs-bad");
    let em = cert_emulator(&dir);
    let (app, alipay, root) = (
        f("app_cert_tv5.pem"),
        f("alipay_cert.pem"),
        f("tv5_root_bundle.pem"),
    );

    // Key mode against a certificate-mode app: the gateway asks for the SNs.
    let mut args: Vec<String> = vec!["export".into(), "-o".into(), dir.arg("x.csv")];
    args.extend(em.client_args());
    run_vec(&args)
        .code(1)
        .stderr_has("sub_code isv.missing-app-cert-sn");

    // An app certificate for another key.
    run_vec(&cert_client(
        &em,
        "export",
        &f("tv5_app_cert.pem"),
        &alipay,
        &root,
    ))
    .code(2)
    .stderr_has("does not belong to this private key");

    // The wrong root bundle.
    run_vec(&cert_client(
        &em,
        "export",
        &app,
        &alipay,
        &f("alipay_cert.pem"),
    ))
    .code(1)
    .stderr_has("sub_code isv.invalid-alipay-root-cert-sn");

    // An Alipay certificate other than the one Alipay signs with (a rotation).
    run_vec(&cert_client(
        &em,
        "export",
        &app,
        &f("tv5_app_cert.pem"),
        &root,
    ))
    .code(1)
    .stderr_has(&format!(
        "signed by the Alipay certificate with SN {ALIPAY_CERT_SN}"
    ))
    .stderr_has("rotated");

    // The app's own certificate given as Alipay's.
    run_vec(&cert_client(&em, "export", &app, &app, &root))
        .code(2)
        .stderr_has("is your app's own certificate");

    // Two of three files.
    let key = em.key("app_private_key.pem");
    run(&[
        "export",
        "--gateway",
        &em.url,
        "--app-id",
        APP_ID,
        "--private-key-file",
        &key,
        "--app-cert-file",
        &app,
        "--alipay-cert-file",
        &alipay,
    ])
    .code(2)
    .stderr_has("missing --alipay-root-cert-file");
}

#[test]
fn a_certificate_mode_client_refuses_answers_without_a_cert_sn() {
    let dir = TestDir::new("certs-keymode");
    let em = Emulator::start(&dir, &["--followers", "3"]);
    let (app, alipay, root) = (
        f("app_cert_tv5.pem"),
        f("alipay_cert.pem"),
        f("tv5_root_bundle.pem"),
    );
    let mut args = cert_client(&em, "export", &app, &alipay, &root);
    args.extend(["-o".to_string(), dir.arg("f.csv")]);
    run_vec(&args).code(1).stderr_has("has no alipay_cert_sn");
    assert!(!dir.join("f.csv").exists());
}
