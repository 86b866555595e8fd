//! Set-up without guesswork: `keygen`, `check`, and the pushtools command line.

use crate::util::*;

/// keygen → an emulator that knows only the pasted public key text → check passes, export works.
#[test]
fn keygen_output_works_end_to_end() {
    let dir = TestDir::new("keygen");
    let r = run(&["keygen", "-o", &dir.arg("k")]);
    r.code(0).stderr_has("mode 0600").stderr_has("Next steps:");
    let public_text = std::fs::read_to_string(dir.join("k/app_public_key.txt")).unwrap();
    assert_eq!(
        r.stdout.trim(),
        public_text.trim(),
        "stdout is exactly the text to paste"
    );
    assert!(public_text.starts_with("MIIBIjANBgkqhkiG9w0BAQEF"));
    let private = std::fs::read_to_string(dir.join("k/app_private_key.pem")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("k/app_private_key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites.
    run(&["keygen", "-o", &dir.arg("k")])
        .code(2)
        .stderr_has("already exists");
    // PKCS#1 on request.
    run(&["keygen", "-o", &dir.arg("k1"), "--pkcs1"]).code(0);
    assert!(
        std::fs::read_to_string(dir.join("k1/app_private_key.pem"))
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );

    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "7",
            "--app-public-key-file",
            &dir.arg("k/app_public_key.txt"),
        ],
    );
    let key = dir.arg("k/app_private_key.pem");
    let alipay = em.key("alipay_public_key.pem");
    let r = run(&[
        "check",
        "--gateway",
        &em.url,
        "--app-id",
        APP_ID,
        "--private-key-file",
        &key,
        "--alipay-public-key-file",
        &alipay,
    ]);
    r.code(0)
        .stdout_has(&format!("info  app public key  {}", public_text.trim()))
        .stdout_has("ok    signed call     alipay.open.public.follow.batchquery accepted")
        .stdout_has("ok    answers         signature verified with the Alipay public key")
        .stdout_has("ok    Life Account    capability present")
        .stdout_has("ok    ID kind         user_id app")
        .stdout_has("ok    clock           this computer is +0 s")
        .stdout_has("all checks passed");
}

fn check_against(emulator_args: &[&str], client: &[&str]) -> Run {
    let dir = TestDir::new("check");
    let em = Emulator::start(&dir, emulator_args);
    let mut args: Vec<String> = vec!["check".into()];
    args.extend(em.client_args());
    // An override replaces the default flag (argh refuses a repeated option).
    for pair in client.chunks(2) {
        if let Some(i) = args.iter().position(|a| a == pair[0]) {
            args.drain(i..i + 2);
        }
        args.extend(pair.iter().map(|s| s.to_string()));
    }
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn check_names_the_cause_of_each_failure() {
    let other = fixture("other_private.pem");
    let r = check_against(&[], &["--private-key-file", other.to_str().unwrap()]);
    r.code(1).stdout_has("FAIL  signed call").stdout_has("most likely cause: the app public key uploaded to Alipay does not belong to this private key");

    check_against(&["--app-id", "2021000000000999"], &[])
        .code(1)
        .stdout_has("most likely cause: the app id is wrong, or belongs to the other environment");

    check_against(&["--no-life-account"], &[])
        .code(1)
        .stdout_has("code 40006 Insufficient Permissions")
        .stdout_has("most likely cause: the app lacks the Life Account (生活号) capability");

    check_against(&["--clock-offset-secs", "1800"], &[])
        .code(1)
        .stdout_has("sub_code isv.invalid-timestamp")
        .stdout_has("most likely cause: this computer's clock is wrong");

    check_against(&["--clock-offset-secs", "300"], &[])
        .code(0)
        .stdout_has("warn  clock           this computer is -300 s");

    let wrong_alipay = fixture("other_public.pem");
    check_against(
        &[],
        &["--alipay-public-key-file", wrong_alipay.to_str().unwrap()],
    )
    .code(1)
    .stdout_has("does not verify")
    .stdout_has("most likely cause: the Alipay public key is not the one Alipay signs with");

    let own = fixture("tv5_public.pem");
    check_against(&[], &["--alipay-public-key-file", own.to_str().unwrap()])
        .code(2)
        .stdout_has("FAIL  Alipay key      this is your app's own public key");

    check_against(&["--openid", "--followers", "3"], &[])
        .code(0)
        .stdout_has("ok    ID kind         open_id app");

    let keys = TestDir::new("down");
    let k = keys.keys();
    run(&[
        "check",
        "--gateway",
        "http://127.0.0.1:1/gateway.do",
        "--app-id",
        APP_ID,
        "--private-key-file",
        k.join("app_private_key.pem").to_str().unwrap(),
    ])
    .code(1)
    .stdout_has("most likely cause: the gateway cannot be reached");
}

#[test]
fn pushtools_command_line() {
    let dir = TestDir::new("pushtools");
    let em = Emulator::start(&dir, &["--followers", "10002"]);
    let key = std::fs::read_to_string(em.keys.join("app_private_key.pem")).unwrap();
    let mut c = cmd(&[
        "alipay",
        "-appid",
        APP_ID,
        "-privatekey",
        &key,
        "-gateway",
        &em.url,
    ]);
    c.current_dir(&dir.path);
    let r = output(c);
    r.code(0)
        .stderr_has("visible to other users of this machine")
        .stdout_has("alipaylife_userid_2021000000000001.csv");
    let rows = lines(&dir.join("alipaylife_userid_2021000000000001.csv"));
    assert_eq!(
        (rows.len(), rows[0].as_str()),
        (10_003, "alipaylife_userid")
    );
    // `-flag=value`, `--flag=value` and a key file: no warning.
    let mut c = cmd(&[
        "alipay",
        &format!("-appid={APP_ID}"),
        &format!("--private-key-file={}", em.key("app_private_key.pem")),
        &format!("--gateway={}", em.url),
        "-q",
    ]);
    c.current_dir(&dir.path);
    let r = output(c);
    r.code(0);
    assert!(r.stderr.is_empty(), "{r:?}");
}
