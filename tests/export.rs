//! `alipaylife export` against the emulator over loopback.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::util::*;

/// Export from an emulator started with `emulator_args`; return the run, the exported IDs and the
/// emulator's own list of IDs.
fn export_with(
    emulator_args: &[&str],
    client_extra: &[&str],
) -> (Run, Option<Vec<String>>, Vec<String>) {
    let dir = TestDir::new("export");
    let truth = dir.arg("truth.txt");
    let mut args = vec!["--write-followers", truth.as_str()];
    args.extend_from_slice(emulator_args);
    let em = Emulator::start(&dir, &args);
    let out = dir.arg("followers.csv");
    let mut client: Vec<String> = vec!["export".into(), "-o".into(), out.clone()];
    client.extend(em.client_args());
    client.extend(client_extra.iter().map(|s| s.to_string()));
    let r = run(&client.iter().map(String::as_str).collect::<Vec<_>>());
    let exported = std::path::Path::new(&out)
        .exists()
        .then(|| lines(std::path::Path::new(&out)));
    let truth = lines(std::path::Path::new(&truth));
    (r, exported, truth)
}

#[track_caller]
fn assert_exact(exported: Option<Vec<String>>, truth: &[String]) {
    let exported = exported.expect("the output file exists");
    assert_eq!(exported[0], "alipaylife_userid", "header");
    assert_eq!(exported.len() - 1, truth.len(), "row count");
    assert!(
        exported[1..] == *truth,
        "exported IDs differ from the emulator's list"
    );
}

fn exact_count(n: u64) {
    let (r, exported, truth) = export_with(&["--followers", &n.to_string()], &[]);
    r.code(0)
        .stderr_has(&format!("exported {} followers (user_id)", with_commas(n)));
    r.stderr_has("every answer's signature verified");
    assert_eq!(truth.len() as u64, n);
    assert_exact(exported, &truth);
}

fn with_commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn exports_zero_followers() {
    exact_count(0);
}
#[test]
fn exports_one_follower() {
    exact_count(1);
}
#[test]
fn exports_9999_followers() {
    exact_count(9_999);
}
#[test]
fn exports_exactly_one_full_page() {
    exact_count(10_000);
}
#[test]
fn exports_one_past_a_page() {
    exact_count(10_001);
}
#[test]
fn exports_25001_followers() {
    exact_count(25_001);
}

#[test]
fn exports_openid_apps_and_says_so() {
    let (r, exported, truth) = export_with(&["--followers", "10001", "--openid"], &[]);
    r.code(0).stderr_has("(open_id: this app uses OpenIDs)");
    assert!(truth[0].len() > 30 && !truth[0].starts_with("2088"));
    assert_exact(exported, &truth);
}

#[test]
fn every_end_style_gives_the_exact_set() {
    for style in ["empty", "missing", "repeat", "trailing-empty"] {
        for n in ["10000", "20001"] {
            let (r, exported, truth) = export_with(&["--followers", n, "--end-style", style], &[]);
            r.code(0);
            assert_exact(exported, &truth);
            if style == "repeat" && n == "10000" {
                // The last page points at its own last ID, which then comes back once more.
                r.stderr_has("; 1 repeated IDs dropped");
            }
        }
    }
}

#[test]
fn openid_end_styles() {
    for style in ["missing", "repeat", "trailing-empty"] {
        let (r, exported, truth) = export_with(
            &["--followers", "10001", "--openid", "--end-style", style],
            &[],
        );
        r.code(0);
        assert_exact(exported, &truth);
    }
}

#[test]
fn survives_injected_faults_with_retries() {
    let (r, exported, truth) = export_with(
        &[
            "--followers",
            "100001",
            "--fault-rate",
            "0.5",
            "--slow-ms",
            "2500",
            "--seed",
            "3",
        ],
        &["--timeout", "1", "--retries", "8"],
    );
    r.code(0).stderr_has("retries (");
    assert_exact(exported, &truth);
}

#[test]
fn a_quarter_million_followers_through_ten_percent_faults_of_every_kind() {
    let (r, exported, truth) = export_with(
        // Seed 22 puts six faults of five kinds into the first 28 calls (reset, slow, repeat-id,
        // unknown-error, rate-limit), so the run is the same every time.
        &[
            "--followers",
            "250000",
            "--fault-rate",
            "0.1",
            "--slow-ms",
            "1500",
            "--seed",
            "22",
        ],
        &["--timeout", "1", "--retries", "8"],
    );
    r.code(0).stderr_has("retries (");
    assert_exact(exported, &truth);
}

#[test]
fn uploaded_public_key_does_not_match_the_private_key() {
    let dir = TestDir::new("mismatch");
    let em = Emulator::start(&dir, &["--followers", "5"]);
    let out = dir.arg("f.csv");
    let other = fixture("other_private.pem");
    let r = run(&[
        "export",
        "-o",
        &out,
        "--gateway",
        &em.url,
        "--app-id",
        APP_ID,
        "--private-key-file",
        other.to_str().unwrap(),
        "--alipay-public-key-file",
        &em.key("alipay_public_key.pem"),
    ]);
    r.code(1)
        .stderr_has("sub_code isv.invalid-signature")
        .stderr_has("our string-to-sign:     app_id=2021000000000001&biz_content={}&charset=utf-8&format=JSON&method=alipay.open.public.follow.batchquery&sign_type=RSA2&timestamp=")
        .stderr_has("the strings match, so the key is the problem");
    assert!(
        !dir.join("f.csv").exists(),
        "no output file after a failed export"
    );
    assert!(
        !dir.join(".f.csv.partial").exists(),
        "no partial file left behind"
    );
}

#[test]
fn a_public_key_given_as_the_private_key_is_refused_before_any_call() {
    let r = run(&[
        "export",
        "--gateway",
        "http://127.0.0.1:1/gateway.do",
        "--app-id",
        APP_ID,
        "--private-key-file",
        fixture("tv5_public.pem").to_str().unwrap(),
    ]);
    r.code(2)
        .stderr_has("the private key from --private-key-file")
        .stderr_has("this is a public key, not the app private key");
}

#[test]
fn the_apps_own_public_key_as_alipays_is_refused() {
    let r = run(&[
        "export",
        "--gateway",
        "http://127.0.0.1:1/gateway.do",
        "--app-id",
        APP_ID,
        "--private-key-file",
        fixture("tv5_private.pem").to_str().unwrap(),
        "--alipay-public-key-file",
        fixture("tv5_public.pem").to_str().unwrap(),
    ]);
    r.code(2).stderr_has("is your app's own public key");
}

#[test]
fn unknown_app_id() {
    let dir = TestDir::new("appid");
    let em = Emulator::start(&dir, &["--followers", "5"]);
    let mut args = vec!["export".to_string(), "-o".into(), dir.arg("f.csv")];
    args.extend(em.client_args());
    let i = args.iter().position(|a| a == APP_ID).unwrap();
    args[i] = "2021999999999999".into();
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    r.code(1)
        .stderr_has("code 40002 Invalid Arguments, sub_code isv.invalid-app-id")
        .stderr_has("check the app id");
}

#[test]
fn emulator_not_running() {
    let dir = TestDir::new("down");
    let keys = dir.keys();
    let r = run(&[
        "export",
        "-o",
        &dir.arg("f.csv"),
        "--gateway",
        "http://127.0.0.1:1/gateway.do",
        "--app-id",
        APP_ID,
        "--private-key-file",
        keys.join("app_private_key.pem").to_str().unwrap(),
        "--retries",
        "1",
    ]);
    r.code(1)
        .stderr_has("cannot connect to the gateway http://127.0.0.1:1/gateway.do");
    assert!(
        !r.stderr.contains("saved"),
        "nothing was saved, so nothing is claimed: {r:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["keys"],
        "no output, ID list or checkpoint left behind"
    );
}

#[test]
fn tampered_answers_are_refused_when_verifying() {
    let (r, exported, _) = export_with(
        &[
            "--followers",
            "20",
            "--fault-rate",
            "1",
            "--fault-kinds",
            "tamper",
        ],
        &[],
    );
    r.code(1)
        .stderr_has("does not verify with the configured Alipay public key");
    assert!(exported.is_none(), "nothing written from a tampered answer");
}

#[test]
fn tampered_answers_pass_unnoticed_without_a_key_and_we_warn() {
    let dir = TestDir::new("unverified");
    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "3",
            "--fault-rate",
            "1",
            "--fault-kinds",
            "tamper",
        ],
    );
    let r = run(&[
        "export",
        "-o",
        &dir.arg("f.csv"),
        "--gateway",
        &em.url,
        "--app-id",
        APP_ID,
        "--private-key-file",
        &em.key("app_private_key.pem"),
    ]);
    r.code(0);
    assert_eq!(
        r.stderr.matches("responses are not verified").count(),
        1,
        "{r:?}"
    );
    let rows = lines(&dir.join("f.csv"));
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[3], "2088102146785745",
        "the altered last ID went through unnoticed"
    );
}

#[test]
fn a_slow_gateway_times_out() {
    let dir = TestDir::new("slow");
    let em = Emulator::start(&dir, &["--followers", "3", "--latency-ms", "3000"]);
    let mut args = vec![
        "export".to_string(),
        "-o".into(),
        dir.arg("f.csv"),
        "--timeout".into(),
        "1".into(),
        "--retries".into(),
        "0".into(),
    ];
    args.extend(em.client_args());
    let started = std::time::Instant::now();
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    r.code(1).stderr_has("no complete answer within 1 s");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "gave up at the timeout, not after the answer"
    );
}

#[test]
fn stdout_output_and_limit() {
    let dir = TestDir::new("stdout");
    let em = Emulator::start(&dir, &["--followers", "25000"]);
    let mut args = vec![
        "export".to_string(),
        "-o".into(),
        "-".into(),
        "--limit".into(),
        "12345".into(),
    ];
    args.extend(em.client_args());
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    r.code(0).stderr_has("stopped at --limit");
    let rows: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(rows.len(), 12_346);
    assert_eq!(rows[0], "alipaylife_userid");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let dir = TestDir::new("pipe");
    let em = Emulator::start(&dir, &["--followers", "50000"]);
    let mut args = vec!["export".to_string(), "-o".into(), "-".into(), "-q".into()];
    args.extend(em.client_args());
    let mut child = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "alipaylife_userid");
    // The reader is gone (like `| head -1`): the export must end quietly with 0.
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
