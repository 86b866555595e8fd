//! No private key material in any output, at any verbosity, on success and failure, with the key
//! from a file, the environment, stdin and the command line.

use std::io::Write;
use std::process::Stdio;

use crate::util::*;

/// Every 16-character slice of the private key's base64 body, except those that also occur in
/// public material (the ASN.1 header, the modulus): `check` prints the public key on purpose.
fn slices(pem_or_b64: &str) -> Vec<String> {
    let public: String = [
        include_str!("fixtures/tv5_public.b64"),
        &std::fs::read_to_string(fixture("other_public.pem")).unwrap(),
    ]
    .concat()
    .split_whitespace()
    .filter(|l| !l.starts_with("-----"))
    .collect();
    let body: String = pem_or_b64
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .split_whitespace()
        .collect();
    (0..body.len() - 16)
        .map(|i| body[i..i + 16].to_string())
        .filter(|s| !public.contains(s.as_str()))
        .collect()
}

#[track_caller]
fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} contains key material ({s})\n{text}"
        );
    }
}

#[test]
fn no_key_material_anywhere() {
    let dir = TestDir::new("secrets");
    let em = Emulator::start(&dir, &["--followers", "3"]);
    let key_path = em.key("app_private_key.pem");
    let key = std::fs::read_to_string(&key_path).unwrap();
    let mut secrets = slices(&key);
    secrets.extend(slices(include_str!("fixtures/tv5_pkcs1.b64")));
    let other = fixture("other_private.pem");
    secrets.extend(slices(&std::fs::read_to_string(&other).unwrap()));
    let out = dir.arg("out.csv");

    let mut runs: Vec<(String, Run)> = Vec::new();
    let base = |sub: &str| {
        vec![
            sub.to_string(),
            "-v".into(),
            "--gateway".into(),
            em.url.clone(),
            "--app-id".into(),
            APP_ID.into(),
        ]
    };
    for sub in ["export", "check"] {
        // Key from a file: success, then a key that does not match (signature failure), then a
        // truncated key and a public key (key errors).
        for key_arg in [key_path.clone(), other.to_string_lossy().into_owned()] {
            let mut a = base(sub);
            a.extend([
                "--private-key-file".into(),
                key_arg,
                "-o".into(),
                out.clone(),
            ]);
            if sub == "check" {
                a.truncate(a.len() - 2);
            }
            runs.push((
                format!("{sub} file"),
                run(&a.iter().map(String::as_str).collect::<Vec<_>>()),
            ));
        }
        // From the environment: whole key, truncated key.
        for text in [key.clone(), key[..key.len() / 2].to_string()] {
            let mut c = cmd(&base(sub).iter().map(String::as_str).collect::<Vec<_>>());
            c.env("ALIPAY_PRIVATE_KEY", &text).current_dir(&dir.path);
            runs.push((format!("{sub} env"), output(c)));
        }
        // From stdin, with the key given where the Alipay key belongs too.
        let mut a = base(sub);
        a.extend([
            "--private-key-file".into(),
            "-".into(),
            "--alipay-public-key-file".into(),
            key_path.clone(),
        ]);
        let mut child = cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .current_dir(&dir.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(key.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        runs.push((
            format!("{sub} stdin"),
            Run {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            },
        ));
    }
    // The pushtools command line takes the key as an argument: still never echoed.
    let mut c = cmd(&[
        "alipay",
        "-v",
        "-appid",
        APP_ID,
        "-privatekey",
        &key,
        "-gateway",
        &em.url,
    ]);
    c.current_dir(&dir.path);
    runs.push(("alipay inline".into(), output(c)));
    let mut c = cmd(&[
        "alipay",
        "-v",
        "-appid",
        APP_ID,
        "-privatekey",
        &key[..key.len() - 100],
        "-gateway",
        &em.url,
    ]);
    c.current_dir(&dir.path);
    runs.push(("alipay truncated".into(), output(c)));

    assert!(
        runs.iter().any(|(_, r)| r.code == 0)
            && runs.iter().any(|(_, r)| r.code == 1)
            && runs.iter().any(|(_, r)| r.code == 2)
    );
    for (what, r) in &runs {
        assert_clean(&format!("{what} stdout"), &r.stdout, &secrets);
        assert_clean(&format!("{what} stderr"), &r.stderr, &secrets);
    }
    // Files written by the runs (exports), apart from the emulator's key directory.
    for entry in std::fs::read_dir(&dir.path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_clean(
                &path.display().to_string(),
                &std::fs::read_to_string(&path).unwrap_or_default(),
                &secrets,
            );
        }
    }
}

/// The hidden prompts on a terminal (a pseudo-terminal from util-linux `script`): the app id and
/// then the key, pasted as one base64 line or as a PEM block. Nothing of the key comes back.
#[test]
fn the_terminal_prompt_never_echoes_the_key() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED the_terminal_prompt_never_echoes_the_key: util-linux `script` is not installed"
        );
        return;
    }
    let dir = TestDir::new("prompt");
    let em = Emulator::start(&dir, &["--followers", "3"]);
    let b64: String = include_str!("fixtures/tv5_pkcs8.b64")
        .split_whitespace()
        .collect();
    let pem = std::fs::read_to_string(fixture("tv5_private.pem")).unwrap();
    let secrets = slices(&b64);
    for (what, typed) in [("base64", format!("{b64}\n")), ("pem", pem.clone())] {
        let out = dir.arg(&format!("{what}.csv"));
        let inner = format!("{} export -v --gateway {} -o {out}", bin(), em.url);
        let mut child = std::process::Command::new("script")
            .args(["-qec", &inner, "/dev/null"])
            .env_remove("ALIPAY_APP_ID")
            .env_remove("ALIPAY_PRIVATE_KEY")
            .env_remove("ALIPAY_PRIVATE_KEY_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Answer each prompt after it has been shown.
        std::thread::sleep(std::time::Duration::from_millis(800));
        stdin.write_all(format!("{APP_ID}\n").as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        stdin.write_all(typed.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        let screen = String::from_utf8_lossy(&o.stdout).replace('\r', "");
        assert!(
            screen.contains("Alipay app id (APPID, 16 digits):"),
            "{what}: {screen}"
        );
        assert!(
            screen.contains("Paste the app private key (input hidden"),
            "{what}: {screen}"
        );
        assert!(
            screen.contains("from the prompt") && screen.contains("exported 3 followers"),
            "{what}: {screen}"
        );
        assert_clean(&format!("{what} terminal"), &screen, &secrets);
        assert_clean(
            &format!("{what} stderr"),
            &String::from_utf8_lossy(&o.stderr),
            &secrets,
        );
        assert_clean(
            &format!("{what} output"),
            &std::fs::read_to_string(&out).unwrap(),
            &secrets,
        );
    }
}
