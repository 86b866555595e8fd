//! The command line: help, version, usage errors and the documented exit codes.

use crate::util::*;

#[test]
fn help_and_version_exit_0() {
    run(&["--help"])
        .code(0)
        .stdout_has("export")
        .stdout_has("emulate")
        .stdout_has("demo");
    run(&["export", "--help"])
        .code(0)
        .stdout_has("--private-key-file")
        .stdout_has("--alipay-public-key-file");
    let v = run(&["--version"]);
    v.code(0).stdout_has(concat!(
        "alipaylife ",
        env!("CARGO_PKG_VERSION"),
        " (commit "
    ));
}

#[test]
fn usage_errors_exit_2() {
    run(&["export", "--no-such-flag"])
        .code(2)
        .stderr_has("Unrecognized argument: --no-such-flag");
    run(&[]).code(2).stderr_has("no command given");
    run(&["export", "--timeout", "0", "--app-id", "1"])
        .code(2)
        .stderr_has("--timeout must be");
    run(&["emulate", "--end-style", "sideways"])
        .code(2)
        .stderr_has("unknown end style");
    run(&["emulate", "--fault-kinds", "gremlins"])
        .code(2)
        .stderr_has("unknown fault kind");
}

#[test]
fn flag_equals_value_is_accepted() {
    run(&["export", "--gateway=http://example.com/gateway.do"])
        .code(2)
        .stderr_has("plain http to a non-loopback host");
}

#[test]
fn missing_credentials_without_a_terminal_fail_fast() {
    run(&["export"])
        .code(2)
        .stderr_has("no app id: pass --app-id or set ALIPAY_APP_ID");
    run(&["export", "--app-id", APP_ID])
        .code(2)
        .stderr_has("no app private key: pass --private-key-file");
    run(&["export", "--app-id", "my-app"])
        .code(2)
        .stderr_has("is not an Alipay app id");
}

#[test]
fn credentials_from_the_environment() {
    let dir = TestDir::new("env");
    let em = Emulator::start(&dir, &["--followers", "3"]);
    let key = std::fs::read_to_string(em.keys.join("app_private_key.pem")).unwrap();
    let alipay = std::fs::read_to_string(em.keys.join("alipay_public_key.pem")).unwrap();
    let mut c = cmd(&["export", "-o", &dir.arg("f.csv"), "-v"]);
    c.env("ALIPAY_APP_ID", APP_ID)
        .env("ALIPAY_PRIVATE_KEY", &key)
        .env("ALIPAY_PUBLIC_KEY", &alipay)
        .env("ALIPAY_GATEWAY", &em.url);
    let r = output(c);
    r.code(0)
        .stderr_has("private key: PKCS#8, PEM, 2048 bits, from ALIPAY_PRIVATE_KEY")
        .stderr_has("exported 3 followers");
    // The key file path from the environment, and stdin as `-`.
    let mut c = cmd(&[
        "export",
        "-o",
        &dir.arg("g.csv"),
        "--private-key-file",
        "-",
        "-v",
    ]);
    c.env("ALIPAY_APP_ID", APP_ID)
        .env("ALIPAY_GATEWAY", &em.url)
        .stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(include_str!("fixtures/tv5_pkcs1.b64").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("private key: PKCS#1, bare base64, 2048 bits, from standard input"),
        "{stderr}"
    );
    // Never the key itself, at any verbosity.
    let secret: String = include_str!("fixtures/tv5_pkcs8.b64")
        .split_whitespace()
        .collect();
    for i in 0..secret.len() - 16 {
        assert!(!r.stderr.contains(&secret[i..i + 16]) && !stderr.contains(&secret[i..i + 16]));
    }
}

#[test]
fn demo_exports_and_sends_with_no_account() {
    let dir = TestDir::new("demo");
    let out = dir.arg("d");
    let r = run(&["demo", "--dir", &out, "--followers", "1500"]);
    r.code(0)
        .stderr_has("exported 1,500 followers (user_id)")
        .stderr_has("every answer's signature verified")
        .stderr_has("sent 20 of 21 messages (1 failed");
    assert_eq!(lines(&dir.join("d/followers.csv")).len(), 1_501);
    let report = std::fs::read_to_string(dir.join("d/batch.report.csv")).unwrap();
    assert_eq!(report.matches(",sent,").count(), 20);
    assert!(report.contains("MSG_SD_NOFOLLOW"));
}
