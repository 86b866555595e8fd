//! A full disk: `export` and `send` fail with a clear message, the export's checkpoint and the
//! send's journal stay valid, and both resume correctly once there is space. Needs root to mount
//! a small tmpfs; skipped with a message where the machine does not allow it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::*;

/// A size-limited tmpfs, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk {
            path: path.to_path_buf(),
        })
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_keeps_a_valid_checkpoint_and_resumes() {
    let dir = TestDir::new("diskfull");
    let Some(disk) = SmallDisk::mount(&dir.join("small"), "400k") else {
        eprintln!(
            "SKIPPED a_full_disk_keeps_a_valid_checkpoint_and_resumes: cannot mount a tmpfs here (needs root)"
        );
        return;
    };
    let em = Emulator::start(
        &dir,
        &[
            "--followers",
            "100000",
            "--write-followers",
            &dir.arg("truth.txt"),
        ],
    );
    let out = disk.path.join("f.csv").to_string_lossy().into_owned();
    let mut a: Vec<String> = vec!["export".into(), "-o".into(), out.clone()];
    a.extend(em.client_args());
    let r = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    r.code(1)
        .stderr_has("the disk is full")
        .stderr_has("they are saved")
        .stderr_has("--resume to continue");
    assert!(
        !disk.path.join("f.csv").exists(),
        "no output that looks complete"
    );
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(disk.path.join(".f.csv.checkpoint")).unwrap())
            .expect("the checkpoint is valid JSON");
    let valid = cp["ids_bytes"].as_u64().unwrap();
    let on_disk = std::fs::metadata(disk.path.join(".f.csv.ids"))
        .unwrap()
        .len();
    assert!(
        valid > 0 && on_disk >= valid,
        "checkpoint {valid} bytes, list {on_disk} bytes"
    );

    disk.grow("64m");
    a.push("--resume".into());
    run(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .code(0)
        .stderr_has("resuming after");
    assert_eq!(
        lines(&disk.path.join("f.csv"))[1..],
        lines(&dir.join("truth.txt"))[..]
    );
    drop(em);
    drop(disk);
}

// ---------------------------------------------------------------------------------------------
// `send`: the journal on a full disk.
// ---------------------------------------------------------------------------------------------

/// The tmpfs size for the journal: 4 pages, about 90 rows of journal (a `sending` line and an
/// outcome line per row), so a 240-row batch stops about a third of the way through.
const JOURNAL_SPACE: u64 = 16 * 1024;
const ROWS: usize = 240;
const CONCURRENCY: usize = 8;

/// An emulator with a delivery log, and a batch to its first [`ROWS`] followers.
struct SendJob {
    dir: TestDir,
    em: Emulator,
    deliveries: PathBuf,
    ids: Vec<String>,
}

impl SendJob {
    fn start(name: &str, emulator_args: &[&str]) -> SendJob {
        let dir = TestDir::new(name);
        let deliveries = dir.join("deliveries.jsonl");
        let truth = dir.arg("followers.txt");
        let d = deliveries.to_string_lossy().into_owned();
        let mut args = vec![
            "--followers",
            "1000",
            "--write-followers",
            &truth,
            "--deliveries",
            &d,
        ];
        args.extend_from_slice(emulator_args);
        let em = Emulator::start(&dir, &args);
        let ids = lines(&dir.join("followers.txt"))[..ROWS].to_vec();
        SendJob {
            dir,
            em,
            deliveries,
            ids,
        }
    }

    fn batch_text(&self) -> String {
        let mut text = "alipaylife_userid,first,keyword1,keyword2,remark\n".to_string();
        for (n, id) in self.ids.iter().enumerate() {
            text.push_str(&format!("{id},您好 {n},订单{n},2026-01-02,感谢使用\n"));
        }
        text
    }

    /// The batch beside the test's files, its journal on a small tmpfs (`JOURNAL_SPACE`) and its
    /// report beside it: (disk, journal, report, send args). None (and a SKIPPED line) where a
    /// tmpfs cannot be mounted.
    fn journal_on_small_disk(
        &self,
        test: &str,
    ) -> Option<(SmallDisk, PathBuf, PathBuf, Vec<String>)> {
        let Some(disk) = SmallDisk::mount(&self.dir.join("small"), &JOURNAL_SPACE.to_string())
        else {
            eprintln!("SKIPPED {test}: cannot mount a tmpfs here (needs root)");
            return None;
        };
        let batch = self.dir.join("batch.csv");
        std::fs::write(&batch, self.batch_text()).unwrap();
        let journal = disk.path.join("batch.csv.journal");
        let report = self.dir.join("batch.report.csv");
        let args = self.args(
            &batch,
            &[
                "--journal".into(),
                journal.to_string_lossy().into_owned(),
                "--report".into(),
                report.to_string_lossy().into_owned(),
            ],
        );
        Some((disk, journal, report, args))
    }

    /// The send command line; `extra` places the journal and report.
    fn args(&self, batch: &Path, extra: &[String]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "send".into(),
            batch.to_string_lossy().into_owned(),
            "--template-id".into(),
            "DEMO_TEMPLATE_001".into(),
            "--qps".into(),
            "1000".into(),
            "--concurrency".into(),
            CONCURRENCY.to_string(),
        ];
        a.extend(self.em.client_args());
        a.extend(extra.iter().cloned());
        a
    }

    /// Deliveries per recipient, from the emulator's log.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        let Ok(text) = std::fs::read_to_string(&self.deliveries) else {
            return counts;
        };
        for line in text.lines() {
            let d: serde_json::Value = serde_json::from_str(line).expect("delivery log is JSON");
            *counts
                .entry(d["to_user_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        counts
    }

    /// The batch line of a recipient (the header is line 1).
    fn line_of(&self, id: &str) -> u64 {
        self.ids.iter().position(|x| x == id).unwrap() as u64 + 2
    }
}

/// What a journal on disk says, checked the way a resume reads it: a header first, then every
/// line valid JSON except possibly a torn last one (a write cut by the full disk).
#[derive(Debug)]
struct Journal {
    /// Batch lines with a complete `sending` entry: requests that may have gone out.
    announced: HashSet<u64>,
    /// The last complete state of each batch line.
    last: HashMap<u64, String>,
    torn: bool,
}

#[track_caller]
fn read_journal(path: &Path) -> Journal {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let mut journal = Journal {
        announced: HashSet::new(),
        last: HashMap::new(),
        torn: false,
    };
    let parts: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, part) in parts.iter().enumerate() {
        if !part.ends_with('\n') {
            assert_eq!(i, parts.len() - 1);
            journal.torn = true;
            break;
        }
        let v: serde_json::Value = serde_json::from_str(part).unwrap_or_else(|e| {
            panic!(
                "{}: line {} is not valid JSON ({e}): {part:?}\n(a resume refuses a journal \
                 damaged before its last line)",
                path.display(),
                i + 1
            )
        });
        if i == 0 {
            assert_eq!(v["alipaylife_send_journal"], 1, "header: {part}");
            assert_eq!(v["template_id"], "DEMO_TEMPLATE_001", "header: {part}");
            continue;
        }
        let line = v["line"].as_u64().unwrap();
        let state = v["state"].as_str().unwrap().to_string();
        if state == "sending" {
            journal.announced.insert(line);
        }
        journal.last.insert(line, state);
    }
    assert!(!parts.is_empty(), "{}: empty journal", path.display());
    journal
}

/// The report as (line, recipient, status) rows.
fn report(path: &Path) -> Vec<(u64, String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[0].parse().unwrap(),
                rec[1].to_string(),
                rec[2].to_string(),
            )
        })
        .collect()
}

/// After the disk filled: the run stopped mid-batch, said why and how to go on, and nothing was
/// delivered that the journal does not announce (a resume can never send it again).
#[track_caller]
fn check_stopped_run(job: &SendJob, r: &Run, journal: &Path) -> Journal {
    r.code(1)
        .stderr_has("the journal cannot be written")
        .stderr_has("the disk is full")
        .stderr_has("were not attempted and are left unsent")
        .stderr_has("run the same command again");
    let j = read_journal(journal);
    let delivered = job.delivered();
    assert!(
        !delivered.is_empty() && delivered.len() < ROWS,
        "stopped mid-batch: {} of {ROWS} delivered\n{r:?}",
        delivered.len()
    );
    for (id, n) in &delivered {
        assert_eq!(*n, 1, "{id} delivered {n} times");
        assert!(
            j.announced.contains(&job.line_of(id)),
            "{id} (line {}) was delivered without a complete `sending` entry in the journal",
            job.line_of(id)
        );
    }
    j
}

/// After the resume: every row is in the report as sent or unknown; a sent row was delivered
/// exactly once; an unknown one at most once, and only a row that was in flight when the journal
/// failed (announced, no outcome recorded) can be unknown. A third run finds nothing to send.
#[track_caller]
fn check_resumed(job: &SendJob, r: &Run, first: &Journal, report_path: &Path, again: &[String]) {
    let rows = report(report_path);
    assert_eq!(rows.len(), ROWS, "{r:?}");
    let delivered = job.delivered();
    let mut unknown = Vec::new();
    for (line, id, status) in &rows {
        let n = delivered.get(id).copied().unwrap_or(0);
        match status.as_str() {
            "sent" => assert_eq!(n, 1, "line {line} {id} sent, delivered {n} times"),
            "unknown" => {
                assert!(n <= 1, "line {line} {id} delivered {n} times");
                assert!(
                    first.announced.contains(line)
                        && first.last.get(line).map(String::as_str) == Some("sending"),
                    "line {line} is unknown but was not in flight when the disk filled \
                     (first journal: {:?})",
                    first.last.get(line)
                );
                unknown.push(*line);
            }
            other => panic!("line {line} {id}: status {other}\n{r:?}"),
        }
    }
    assert!(
        unknown.len() <= CONCURRENCY,
        "at most one row in flight per worker: {unknown:?}"
    );
    if unknown.is_empty() {
        r.code(0);
    } else {
        r.code(3).stderr_has("unknown");
    }
    r.stderr_has("sent by an earlier run");
    let total: usize = delivered.values().sum();
    let again_run = run(&again.iter().map(String::as_str).collect::<Vec<_>>());
    again_run.code(r.code).stderr_has("nothing left to send");
    assert_eq!(job.delivered().values().sum::<usize>(), total);
    eprintln!(
        "first run: {} rows announced in the journal (torn last line: {}); after the resume: {} \
         unknown ({unknown:?})",
        first.announced.len(),
        first.torn,
        unknown.len()
    );
}

/// The journal on a small tmpfs (`--journal`), the report beside the batch: the disk fills about
/// a third of the way through. The batch stops with exit 1, says the journal cannot be written
/// because the disk is full, that the rows not attempted are left unsent and to run the same
/// command again; the journal replays; once the tmpfs is grown the same command finishes, and
/// the emulator's delivery log shows every recipient delivered exactly once (rows in flight at
/// the failure may be `unknown`: delivered at most once).
#[test]
fn a_full_disk_stops_send_with_a_valid_journal_and_resumes() {
    let job = SendJob::start("diskfull-send", &[]);
    let Some((disk, journal, report_path, args)) =
        job.journal_on_small_disk("a_full_disk_stops_send_with_a_valid_journal_and_resumes")
    else {
        return;
    };
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let first = check_stopped_run(&job, &r, &journal);
    // This run's report (on the roomy disk) matches the delivery log.
    let delivered = job.delivered();
    let rows = report(&report_path);
    assert_eq!(rows.len(), ROWS);
    // The report is what the journal holds: a row whose answer came back after the journal
    // failed has no recorded outcome, so it is `unknown` (delivered at most once), as a resume
    // treats it.
    let mut unknown = 0;
    for (line, id, status) in &rows {
        match status.as_str() {
            "sent" => assert_eq!(delivered.get(id), Some(&1), "line {line}"),
            "skipped" => assert_eq!(delivered.get(id), None, "line {line}"),
            "unknown" => {
                unknown += 1;
                assert!(delivered.get(id).copied().unwrap_or(0) <= 1, "line {line}");
                assert_eq!(
                    first.last.get(line).map(String::as_str),
                    Some("sending"),
                    "line {line}"
                );
            }
            other => panic!("line {line}: {other}\n{r:?}"),
        }
    }
    assert!(unknown <= CONCURRENCY, "{unknown} unknown");

    disk.grow("4m");
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let after = read_journal(&journal);
    assert!(
        !after.torn,
        "the resume cut the torn line and ended cleanly"
    );
    check_resumed(&job, &r, &first, &report_path, &args);
    drop(disk);
}

/// The whole batch on the small disk (journal and report beside it, as by default): the journal
/// fills it, and the report cannot be written either. The run must still say that the journal
/// could not be written, that the rows not attempted are left unsent and to run the same command
/// again; and resume once there is space.
#[test]
fn a_full_disk_under_the_whole_batch_still_says_what_happened() {
    let job = SendJob::start("diskfull-send-all", &[]);
    let text = job.batch_text();
    // The batch's own pages plus the journal's room.
    let size = (text.len() as u64).div_ceil(4096) * 4096 + JOURNAL_SPACE;
    let Some(disk) = SmallDisk::mount(&job.dir.join("small"), &size.to_string()) else {
        eprintln!(
            "SKIPPED a_full_disk_under_the_whole_batch_still_says_what_happened: cannot mount a \
             tmpfs here (needs root)"
        );
        return;
    };
    let batch = disk.path.join("batch.csv");
    std::fs::write(&batch, &text).unwrap();
    let journal = disk.path.join("batch.csv.journal");
    let args = job.args(&batch, &[]);
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let first = check_stopped_run(&job, &r, &journal);

    disk.grow("4m");
    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    check_resumed(&job, &r, &first, &disk.path.join("batch.report.csv"), &args);
    drop(disk);
}

/// Space comes back while the batch is stopping (another program deletes a file): requests in
/// flight when the journal failed finish after that, and their outcomes are appended. They must
/// not land after the torn remains of the line that failed, or the journal is damaged in the
/// middle and the resume refuses it.
#[test]
fn space_returning_while_send_stops_leaves_a_valid_journal() {
    // 300 ms per answer: the other workers' requests are still in flight when the journal fails.
    let job = SendJob::start("diskfull-send-back", &["--latency-ms", "300"]);
    let Some((disk, journal, report_path, args)) =
        job.journal_on_small_disk("space_returning_while_send_stops_leaves_a_valid_journal")
    else {
        return;
    };
    let mut child = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run says at once that it is stopping (the journal failed), while the other workers'
    // requests are still in flight: grow the disk right then.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let mut grown = false;
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        if !grown && line.contains("stopping the batch") {
            disk.grow("4m");
            grown = true;
        }
        said.push_str(&line);
    }
    let o = child.wait_with_output().unwrap();
    assert!(grown, "the run never said it was stopping:\n{said}");
    let r = Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: said,
    };
    let first = check_stopped_run(&job, &r, &journal);

    let r = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    check_resumed(&job, &r, &first, &report_path, &args);
    drop(disk);
}
