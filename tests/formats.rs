//! `export --format`: every format end to end against the emulator, and flag checks that fail
//! before any network call.

use std::io::Read;

use crate::util::*;

fn export_to(dir: &TestDir, em: &Emulator, out: &str, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec!["export".into(), "-o".into(), dir.arg(out)];
    args.extend(em.client_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn text_formats_and_ums_layouts() {
    let dir = TestDir::new("formats");
    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "10001",
            "--write-followers",
            &dir.arg("truth.txt"),
        ],
    );
    let truth = lines(&dir.join("truth.txt"));

    export_to(
        &dir,
        &em,
        "a.txt",
        &["--summary-json", &dir.arg("summary.json")],
    )
    .code(0);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["followers"], 10001);
    assert_eq!(summary["pages"], 2);
    assert_eq!(summary["id_kind"], "user_id");
    assert_eq!(summary["format"], "txt");
    assert_eq!(summary["verified"], true);
    assert_eq!(
        (
            summary["output_files"].as_u64(),
            summary["first_file"].as_str()
        ),
        (Some(1), Some(dir.arg("a.txt").as_str()))
    );
    assert_eq!(
        lines(&dir.join("a.txt")),
        truth,
        "txt: one ID per line, no header"
    );

    export_to(&dir, &em, "a.jsonl", &["--file-mode", "640"]).code(0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a.txt"), 0o600, "personal data: owner only by default");
        assert_eq!(mode("a.jsonl"), 0o640, "--file-mode asked for group read");
    }
    let first = lines(&dir.join("a.jsonl")).remove(0);
    assert_eq!(
        first,
        format!(r#"{{"id":"{}","kind":"user_id"}}"#, truth[0])
    );

    export_to(&dir, &em, "bom.csv", &["--bom"]).code(0);
    let bytes = std::fs::read(dir.join("bom.csv")).unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBFalipaylife_userid\r\n"),
        "BOM and CRLF for Excel"
    );

    export_to(
        &dir,
        &em,
        "ums.csv",
        &["--channel-code", "alipaylife123", "--userid-prefix", "u_"],
    )
    .code(0)
    .stderr_has("choose channel code alipaylife123 as bind_id");
    let rows = lines(&dir.join("ums.csv"));
    assert_eq!(rows[0], "userid,alipaylife_userid");
    assert_eq!(rows[1], format!("u_{0},{0}", truth[0]));

    export_to(
        &dir,
        &em,
        "users.json",
        &["--channel-code", "alipaylife123", "--batch-size", "4000"],
    )
    .code(0)
    .stderr_has("3 files");
    let batch: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("users-0003.json")).unwrap()).unwrap();
    assert_eq!(batch.as_array().unwrap().len(), 2001);
    assert_eq!(
        batch[0],
        serde_json::json!({"userid": truth[8000], "set": {"alipaylife": {"alipaylife123": truth[8000]}}})
    );
}

#[test]
fn xlsx_keeps_ids_as_text() {
    let dir = TestDir::new("xlsx");
    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "12000",
            "--write-followers",
            &dir.arg("truth.txt"),
        ],
    );
    let truth = lines(&dir.join("truth.txt"));
    export_to(&dir, &em, "f.xlsx", &[]).code(0);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(dir.join("f.xlsx")).unwrap()).unwrap();
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut sheet)
        .unwrap();
    for id in [&truth[0], &truth[11_999]] {
        assert!(
            sheet.contains(&format!("<t>{id}</t>")),
            "{id} stored as a string"
        );
    }
    assert!(
        sheet.contains(r#"numberStoredAsText="1""#),
        "green triangles suppressed"
    );
}

#[test]
fn bad_format_flags_fail_before_any_call() {
    // The gateway is not running: an exit 2 with these messages proves nothing was sent.
    let dir = TestDir::new("badflags");
    let keys = dir.keys();
    let key = keys.join("app_private_key.pem");
    let base = [
        "export",
        "--gateway",
        "http://127.0.0.1:1/gateway.do",
        "--app-id",
        APP_ID,
        "--private-key-file",
        key.to_str().unwrap(),
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run(&a)
    };
    with(&["--format", "xls"])
        .code(2)
        .stderr_has("unknown --format \"xls\"");
    with(&["--file-mode", "666"])
        .code(2)
        .stderr_has("every user of the machine");
    with(&["--file-mode", "rw"])
        .code(2)
        .stderr_has("not an octal mode");
    with(&["-o", &dir.arg("u.json")])
        .code(2)
        .stderr_has("--channel-code");
    with(&["-o", "-", "--format", "xlsx"])
        .code(2)
        .stderr_has("xlsx");
    with(&["-o", &dir.arg("f.txt"), "--bom"])
        .code(2)
        .stderr_has("--bom");
    with(&["-o", &dir.arg("no/such/dir/f.csv")])
        .code(2)
        .stderr_has("-o");
}
