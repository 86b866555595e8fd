//! Exports that survive crashes: SIGKILL at random moments then `--resume` gives output
//! byte-identical to an uninterrupted export, in every format; Ctrl-C exits 130 with progress kept.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

fn args(em: &Emulator, out: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["export".into(), "-o".into(), out.into(), "-q".into()];
    a.extend(em.client_args());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A cheap random delay (no rand crate in the tests): the clock's nanoseconds.
fn random_ms(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    lo + (nanos / 7919) % (hi - lo)
}

/// Run the export with `--resume`, SIGKILLing it at random moments, until a run finishes.
/// Each run is killed a random 0-300 ms after it saved a new page (the checkpoint changed), so
/// every run makes progress however slow the machine is, and kills land anywhere in a page,
/// including while the output is being rendered. Returns how many runs were killed.
fn export_with_kills(em: &Emulator, out: &str, extra: &[&str]) -> u32 {
    let mut a = args(em, out, extra);
    a.push("--resume".into());
    let out_path = std::path::Path::new(out);
    let name = out_path.file_name().unwrap().to_string_lossy().into_owned();
    let checkpoint = out_path.with_file_name(format!(".{name}.checkpoint"));
    let mut kills = 0;
    for _ in 0..80 {
        let before = std::fs::read(&checkpoint).ok();
        let mut child = cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut kill_at: Option<Instant> = None;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert_eq!(status.code(), Some(0), "{err}");
                return kills;
            }
            if kill_at.is_none() && std::fs::read(&checkpoint).ok() != before {
                kill_at = Some(Instant::now() + Duration::from_millis(random_ms(0, 300)));
            }
            if kill_at.is_some_and(|t| Instant::now() >= t) {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "a run made no progress in 120 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    panic!("the export never finished in 80 runs");
}

/// The entries of an .xlsx that hold cell data (not the creation time in docProps).
fn xlsx_cells(path: &std::path::Path) -> Vec<(String, String)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        if name.starts_with("xl/") {
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            out.push((name, text));
        }
    }
    out
}

#[test]
fn sigkill_then_resume_is_byte_identical_in_every_format() {
    let dir = TestDir::new("resume");
    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "40001",
            "--latency-ms",
            "20",
            "--end-style",
            "repeat",
        ],
    );
    let cases: &[(&str, &[&str])] = &[
        ("f.csv", &[]),
        (
            "bom.csv",
            &["--bom", "--channel-code", "c1", "--userid-prefix", "u"],
        ),
        ("f.txt", &[]),
        ("f.jsonl", &[]),
        ("f.xlsx", &[]),
        (
            "users.json",
            &["--channel-code", "c1", "--batch-size", "15000"],
        ),
    ];
    let mut total_kills = 0;
    for (name, extra) in cases {
        let reference = dir.arg(&format!("ref-{name}"));
        let a = args(&em, &reference, extra);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>()).code(0);
        let out = dir.arg(name);
        total_kills += export_with_kills(&em, &out, extra);
        let (r, o) = (dir.join(&format!("ref-{name}")), dir.join(name));
        match *name {
            "f.xlsx" => assert_eq!(xlsx_cells(&r), xlsx_cells(&o), "{name}"),
            "users.json" => {
                for n in 1..=3 {
                    let f = |p: &str| {
                        std::fs::read(dir.join(&format!("{p}users-{n:04}.json"))).unwrap()
                    };
                    assert!(f("ref-") == f(""), "users-{n:04}.json differs");
                }
            }
            _ => assert!(
                std::fs::read(&r).unwrap() == std::fs::read(&o).unwrap(),
                "{name} differs after resumes"
            ),
        }
        assert!(
            !dir.join(&format!(".{name}.checkpoint")).exists(),
            "checkpoint removed when done"
        );
        assert!(
            !dir.join(&format!(".{name}.ids")).exists(),
            "ID list removed when done"
        );
    }
    assert!(
        total_kills >= 6,
        "the test must really interrupt exports (killed {total_kills} times)"
    );
}

#[test]
fn a_saved_export_is_never_mixed_with_a_new_one_silently() {
    let dir = TestDir::new("refuse");
    let em = Emulator::start(&dir, &["--followers", "30001", "--latency-ms", "300"]);
    let out = dir.arg("f.csv");
    let a = args(&em, &out, &[]);
    let mut child = cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then kill.
    let cp = dir.join(".f.csv.checkpoint");
    let t = Instant::now();
    while !cp.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(cp.exists());
    run(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .code(2)
        .stderr_has("run the same command with --resume to continue it, or with --restart");
    let mut again = a.clone();
    again.push("--restart".into());
    run(&again.iter().map(String::as_str).collect::<Vec<_>>()).code(0);
    assert_eq!(lines(&dir.join("f.csv")).len(), 30_002);
    let mut both = a.clone();
    both.extend(["--resume".into(), "--restart".into()]);
    run(&both.iter().map(String::as_str).collect::<Vec<_>>())
        .code(2)
        .stderr_has("exclude each other");
}

#[test]
fn exhausted_retries_keep_progress_for_resume() {
    let dir = TestDir::new("exhausted");
    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "80001",
            "--write-followers",
            &dir.arg("truth.txt"),
            "--fault-rate",
            "0.3",
            "--fault-kinds",
            "http-502",
            "--seed",
            "11",
            "--fault-log",
            &dir.arg("faults.jsonl"),
        ],
    );
    let out = dir.arg("f.csv");
    // No retries: every 502 stops the run; each re-run with --resume goes on from its checkpoint.
    let mut a = args(&em, &out, &["--retries", "0", "--resume"]);
    a.retain(|x| x != "-q");
    let (mut stopped, mut resumed) = (0, 0);
    for _ in 0..30 {
        let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        resumed += r.stderr.contains("resuming after") as u32;
        if r.code == 0 {
            break;
        }
        r.code(1)
            .stderr_has("HTTP 502")
            .stderr_has("they are saved")
            .stderr_has("--resume to continue");
        stopped += 1;
    }
    assert!(
        stopped >= 2 && resumed >= 1,
        "stopped {stopped} times, resumed {resumed} times"
    );
    assert_eq!(
        lines(&dir.join("f.csv"))[1..],
        lines(&dir.join("truth.txt"))[..]
    );
    // The emulator's fault log has one line per injected fault: here, one per stopped run.
    let faults = lines(&dir.join("faults.jsonl"));
    assert_eq!(faults.len(), stopped as usize, "{faults:?}");
    for f in &faults {
        let v: serde_json::Value = serde_json::from_str(f).unwrap();
        assert_eq!(v["kind"], "http-502");
        assert_eq!(v["method"], "alipay.open.public.follow.batchquery");
        assert!(v["request"].is_u64() && v["time"].is_string());
    }
}

#[test]
fn ctrl_c_exits_130_and_keeps_progress() {
    let dir = TestDir::new("sigint");
    let em = Emulator::start(&dir, &["--followers", "50001", "--latency-ms", "300"]);
    let out = dir.arg("f.csv");
    let mut a = args(&em, &out, &[]);
    a.retain(|x| x != "-q");
    let child = cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cp = dir.join(".f.csv.checkpoint");
    let t = Instant::now();
    while !cp.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: every complete page is saved") && err.contains("--resume"),
        "{err}"
    );
    assert!(cp.exists() && !dir.join("f.csv").exists());
    let mut resume = args(&em, &out, &["--resume"]);
    resume.retain(|x| x != "-q");
    run(&resume.iter().map(String::as_str).collect::<Vec<_>>()).code(0);
    assert_eq!(lines(&dir.join("f.csv")).len(), 50_002);
}
