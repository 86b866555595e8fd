//! `alipaylife send` against the emulator: every test counts what the emulator's delivery log says
//! was delivered, not what the client claims.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const TEMPLATE: &str = "DEMO_TEMPLATE_001";
const HEADER: &str = "alipaylife_userid,first,keyword1,keyword2,remark";

/// The emulator's follower `i` (user-ID app): `2088` + 12 digits, see src/emulator/followers.rs.
fn follower(i: u64) -> String {
    format!("2088{:012}", 102_146_785_722u64 + i * 11)
}

struct Env {
    dir: TestDir,
    em: Emulator,
    deliveries: PathBuf,
}

fn start(name: &str, emulator_args: &[&str]) -> Env {
    let dir = TestDir::new(name);
    let deliveries = dir.join("deliveries.jsonl");
    let d = deliveries.to_string_lossy().into_owned();
    let mut args = vec!["--deliveries", d.as_str()];
    args.extend_from_slice(emulator_args);
    let em = Emulator::start(&dir, &args);
    Env {
        dir,
        em,
        deliveries,
    }
}

impl Env {
    /// Replace the emulator (same keys dir and delivery log), e.g. with other templates or faults.
    fn restart(&mut self, emulator_args: &[&str]) {
        let d = self.deliveries.to_string_lossy().into_owned();
        let mut args = vec!["--deliveries", d.as_str()];
        args.extend_from_slice(emulator_args);
        self.em = Emulator::start(&self.dir, &args);
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.join(name), text).unwrap();
        self.dir.arg(name)
    }

    /// A batch to followers `range` (plus `extra` recipients), all fields filled.
    fn batch(&self, name: &str, range: std::ops::Range<u64>, extra: &[&str]) -> String {
        let mut text = format!("{HEADER}\n");
        let ids = range
            .map(follower)
            .chain(extra.iter().map(|s| s.to_string()));
        for (n, id) in ids.enumerate() {
            text.push_str(&format!("{id},您好 {n},订单{n},2026-01-02,感谢使用\n"));
        }
        self.write(name, &text)
    }

    fn args(&self, batch: &str, extra: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = vec!["send".into(), batch.into()];
        if !extra.contains(&"--template-id") {
            all.extend(["--template-id".into(), TEMPLATE.into()]);
        }
        all.extend(self.em.client_args());
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    }

    fn send(&self, batch: &str, extra: &[&str]) -> Run {
        let args = self.args(batch, extra);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn delivered(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.deliveries) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("delivery log line is JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Deliveries per recipient.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.delivered() {
            let to = d["to_user_id"]
                .as_str()
                .or(d["to_open_id"].as_str())
                .unwrap()
                .to_string();
            *counts.entry(to).or_insert(0) += 1;
        }
        counts
    }
}

/// The report as header-keyed rows.
fn report(path: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(
        header,
        [
            "line",
            "recipient",
            "status",
            "code",
            "sub_code",
            "sub_msg",
            "attempts",
            "time"
        ]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn statuses(rows: &[HashMap<String, String>]) -> HashMap<String, usize> {
    let mut t = HashMap::new();
    for r in rows {
        *t.entry(r["status"].clone()).or_insert(0) += 1;
    }
    t
}

#[test]
fn a_batch_is_delivered_once_per_row() {
    let env = start("send-happy", &[]);
    let batch = env.batch("batch.csv", 0..30, &[]);
    env.send(
        &batch,
        &[
            "--action-name",
            "查看详情",
            "--url",
            "https://example.com/o?id=1",
        ],
    )
    .code(0)
    .stderr_has("sent 30 of 30 messages (0 failed, 0 unknown, 0 not attempted)")
    .stderr_has("every answer's signature verified");
    let counts = env.counts();
    assert_eq!(counts.len(), 30);
    assert!((0..30).all(|i| counts.get(&follower(i)) == Some(&1)));
    let first = env
        .delivered()
        .into_iter()
        .find(|d| d["to_user_id"] == follower(3).as_str())
        .unwrap();
    assert_eq!(first["template_id"], TEMPLATE);
    assert_eq!(first["context"]["first"]["value"], "您好 3");
    assert_eq!(first["context"]["action_name"], "查看详情");
    assert_eq!(first["context"]["url"], "https://example.com/o?id=1");
    let report_path = env.dir.join("batch.report.csv");
    let rows = report(&report_path);
    assert_eq!(rows.len(), 30);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "sent" && r["code"] == "10000")
    );
    assert_eq!(rows[0]["line"], "2");
    assert_eq!(rows[0]["recipient"], follower(0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(env.dir.join("batch.csv.journal").exists());
}

#[test]
fn every_validation_problem_is_reported_and_nothing_is_sent() {
    let env = start("send-invalid", &[]);
    let batch = env.write(
        "bad.csv",
        &format!(
            "alipaylife_userid,first,action_name,head_color,url\n\
             {a},ok,,,\n\
             ,no recipient,,,\n\
             {a},duplicate,,,\n\
             {b},long,查看详情查看详情查看,,\n\
             {c},color,,#12345,\n\
             {d},url,,,ftp://example.com/x\n",
            a = follower(0),
            b = follower(1),
            c = follower(2),
            d = follower(3)
        ),
    );
    let r = env.send(&batch, &[]);
    r.code(2)
        .stderr_has("line 3, column alipaylife_userid: no recipient")
        .stderr_has("line 4, column alipaylife_userid: duplicate recipient")
        .stderr_has("first on line 2")
        .stderr_has("line 5, column action_name:")
        .stderr_has("line 6, column head_color:")
        .stderr_has("line 7, column url:")
        .stderr_has("5 problems found")
        .stderr_has("nothing was sent");
    assert!(env.delivered().is_empty());
    let header_only = env.write("empty.csv", "alipaylife_userid,first\n");
    env.send(&header_only, &[]).code(2).stderr_has("no rows");
    let no_column = env.write("nocol.csv", "id,first\n1,a\n");
    env.send(&no_column, &[])
        .code(2)
        .stderr_has("line 1: no recipient column");
    assert!(env.delivered().is_empty());
}

#[test]
fn a_gbk_batch_is_sent_as_utf8_and_garbage_is_refused() {
    let env = start("send-gbk", &[]);
    let text = format!(
        "{HEADER}\n{},您好，张三,订单一,二〇二六年,谢谢惠顾\n",
        follower(5)
    );
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    assert!(std::str::from_utf8(&bytes).is_err(), "really GBK bytes");
    std::fs::write(env.dir.join("gbk.csv"), &bytes).unwrap();
    env.send(&env.dir.arg("gbk.csv"), &[]).code(0);
    let d = env.delivered();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["context"]["first"]["value"], "您好，张三");
    assert_eq!(d[0]["context"]["remark"]["value"], "谢谢惠顾");

    let mut bad = format!("{HEADER}\n").into_bytes();
    bad.extend_from_slice(b"2088102146785722,ok,\xFF\xFF,x,y\n");
    std::fs::write(env.dir.join("bad.csv"), &bad).unwrap();
    env.send(&env.dir.arg("bad.csv"), &[])
        .code(2)
        .stderr_has("line 2, column 21")
        .stderr_has("0xFF")
        .stderr_has("nothing was sent");
    env.send(
        &env.dir.arg("gbk.csv"),
        &["--encoding", "utf-8", "--journal", &env.dir.arg("j2")],
    )
    .code(2)
    .stderr_has("not valid UTF-8");
    assert_eq!(env.delivered().len(), 1);
}

#[test]
fn duplicates_are_refused_unless_allowed() {
    let env = start("send-dup", &[]);
    let batch = env.batch("dup.csv", 0..3, &[&follower(1)]);
    env.send(&batch, &[])
        .code(2)
        .stderr_has("line 5, column alipaylife_userid: duplicate recipient")
        .stderr_has("--allow-duplicates");
    assert!(env.delivered().is_empty());
    env.send(&batch, &["--allow-duplicates"]).code(0);
    let counts = env.counts();
    assert_eq!(counts[&follower(1)], 2);
    assert_eq!(counts.values().sum::<usize>(), 4);
}

#[test]
fn a_template_library_id_gets_a_warning() {
    let mut env = start("send-tm", &[]);
    let templates = env.write(
        "templates.json",
        r#"{"TM000000223": ["first", "keyword1", "keyword2", "remark"]}"#,
    );
    env.restart(&["--templates", &templates]);
    let batch = env.batch("tm.csv", 0..2, &[]);
    env.send(&batch, &["--template-id", "TM000000223"])
        .code(0)
        .stderr_has("warning")
        .stderr_has("looks like a template-library ID")
        .stderr_has("merchant's own template ID");
    assert_eq!(env.delivered().len(), 2);
}

#[test]
fn dry_run_shows_the_first_request_and_sends_nothing() {
    let env = start("send-dry", &[]);
    let batch = env.batch("dry.csv", 0..5, &[]);
    let r = env.send(&batch, &["--dry-run", "--head-color", "#85be53"]);
    r.code(0)
        .stdout_has("5 rows, 5 to send")
        .stdout_has("biz_content:")
        .stdout_has(r##"{"template":{"context":{"first":{"color":"#000000","value":"您好 0"}"##)
        .stdout_has(&format!("\"to_user_id\":\"{}\"", follower(0)))
        .stdout_has("string-to-sign")
        .stdout_has("app_id=2021000000000001&biz_content={")
        .stdout_has("&method=alipay.open.public.message.single.send&sign_type=RSA2&timestamp=");
    assert!(!r.stdout.contains("&sign="), "{r:?}");
    assert!(env.delivered().is_empty());
    assert!(!env.dir.join("dry.csv.journal").exists());
}

#[test]
fn a_non_follower_fails_only_its_row() {
    let env = start("send-nofollow", &["--followers", "100"]);
    let batch = env.batch("nf.csv", 0..5, &["2088000000000000", &follower(100)]);
    env.send(&batch, &[])
        .code(3)
        .stderr_has("sent 5 of 7 messages (2 failed")
        .stderr_has("MSG_SD_NOFOLLOW");
    assert_eq!(env.delivered().len(), 5);
    let rows = report(&env.dir.join("nf.report.csv"));
    let failed: Vec<&HashMap<String, String>> =
        rows.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["line"], "7");
    assert_eq!(failed[0]["sub_code"], "MSG_SD_NOFOLLOW");
    assert_eq!(
        failed[1]["recipient"],
        follower(100),
        "past-the-end ID is no follower"
    );
}

#[test]
fn an_unknown_template_stops_the_batch_and_a_fixed_rerun_sends_the_rest() {
    let env = start("send-notpl", &[]);
    let batch = env.batch("t.csv", 0..40, &[]);
    let r = env.send(&batch, &["--template-id", "NO_SUCH", "--concurrency", "2"]);
    r.code(1)
        .stderr_has("MSG_TEMPLATE_NOT_EXIST")
        .stderr_has("template NO_SUCH does not exist")
        .stderr_has("left unsent");
    assert!(env.delivered().is_empty());
    let rows = report(&env.dir.join("t.report.csv"));
    let t = statuses(&rows);
    assert!(t["failed"] <= 2, "{t:?}");
    assert!(t["skipped"] >= 38, "{t:?}");
    // The fix: the right template. Nothing was sent under the old one, so the journal starts over.
    env.send(&batch, &[]).code(0);
    let counts = env.counts();
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|&n| n == 1));
}

#[test]
fn a_rerun_skips_rows_already_sent() {
    // Rows 1-5 use template A, rows 6-10 template B, which the first emulator lacks.
    let mut env = start("send-rerun", &[]);
    let only_a = env.write("a.json", r#"{"A": ["first"]}"#);
    let both = env.write("ab.json", r#"{"A": ["first"], "B": ["first"]}"#);
    env.restart(&["--templates", &only_a]);
    let mut text = "to_user_id,first,template_id\n".to_string();
    for i in 0..10 {
        text.push_str(&format!(
            "{},hi,{}\n",
            follower(i),
            if i < 5 { "A" } else { "B" }
        ));
    }
    let batch = env.write("r.csv", &text);
    env.send(&batch, &["--concurrency", "1"])
        .code(1)
        .stderr_has("batch stopped at line 7")
        .stderr_has("MSG_TEMPLATE_NOT_EXIST");
    assert_eq!(env.counts().len(), 5);
    env.restart(&["--templates", &both]);
    env.send(&batch, &[])
        .code(0)
        .stderr_has("sent 10 of 10 messages")
        .stderr_has("5 sent by an earlier run");
    let counts = env.counts();
    assert_eq!(counts.len(), 10);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // Nothing left: a third run sends nothing.
    env.send(&batch, &[])
        .code(0)
        .stderr_has("nothing left to send");
    assert_eq!(env.delivered().len(), 10);
}

#[test]
fn a_journal_from_another_batch_or_template_is_refused() {
    let mut env = start("send-journal", &[]);
    let a = env.batch("a.csv", 0..3, &[]);
    env.send(&a, &[]).code(0);
    let b = env.batch("b.csv", 3..6, &[]);
    let journal = env.dir.arg("a.csv.journal");
    env.send(&b, &["--journal", &journal])
        .code(2)
        .stderr_has("belongs to a different batch file");
    let templates = env.write("t.json", r#"{"OTHER": ["first"]}"#);
    env.restart(&["--templates", &templates]);
    env.send(&a, &["--template-id", "OTHER"])
        .code(2)
        .stderr_has("was written for --template-id \"DEMO_TEMPLATE_001\"");
    assert_eq!(env.delivered().len(), 3);
}

#[test]
fn lost_answers_are_unknown_and_retried_only_when_asked() {
    let mut env = start(
        "send-lost",
        &[
            "--fault-rate",
            "0.3",
            "--fault-kinds",
            "lost",
            "--seed",
            "7",
        ],
    );
    let batch = env.batch("l.csv", 0..20, &[]);
    env.send(&batch, &["--concurrency", "2"])
        .code(3)
        .stderr_has("unknown =");
    let rows = report(&env.dir.join("l.report.csv"));
    let unknown: Vec<String> = rows
        .iter()
        .filter(|r| r["status"] == "unknown")
        .map(|r| r["recipient"].clone())
        .collect();
    assert!(!unknown.is_empty(), "a 30% fault rate loses some answers");
    assert_eq!(unknown.len() + statuses(&rows)["sent"], 20);
    assert_eq!(
        env.delivered().len(),
        20,
        "lost answers were still delivered"
    );
    // Without --retry-unknown: nothing is sent again.
    env.restart(&[]);
    env.send(&batch, &[])
        .code(3)
        .stderr_has("nothing left to send");
    assert_eq!(env.delivered().len(), 20);
    // With it: the unknown rows go out again (and so reach those recipients twice).
    env.send(&batch, &["--retry-unknown"]).code(0);
    let counts = env.counts();
    for id in &unknown {
        assert_eq!(counts[id], 2, "{id}");
    }
    assert_eq!(env.delivered().len(), 20 + unknown.len());
}

#[test]
fn rate_limits_slow_the_pool_and_everything_is_delivered_once() {
    let env = start("send-40005", &["--qps-limit", "10"]);
    let batch = env.batch("q.csv", 0..40, &[]);
    env.send(&batch, &["--qps", "40", "--concurrency", "8"])
        .code(0)
        .stderr_has("40005-rate-limited")
        .stderr_has("slowed down");
    let counts = env.counts();
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn a_missing_life_account_capability_stops_the_batch() {
    let env = start("send-40006", &["--no-life-account"]);
    let batch = env.batch("c.csv", 0..10, &[]);
    env.send(&batch, &["--concurrency", "1"])
        .code(1)
        .stderr_has("40006")
        .stderr_has("Life Account");
    assert!(env.delivered().is_empty());
}

#[test]
fn openid_batches_use_to_open_id() {
    let dir_env = start("send-openid", &["--openid", "--followers", "5"]);
    let list = dir_env.dir.join("ids.txt");
    // The OpenIDs: ask a second emulator to write them (same deterministic list).
    let l = list.to_string_lossy().into_owned();
    let _writer = Emulator::start(
        &dir_env.dir,
        &["--openid", "--followers", "5", "--write-followers", &l],
    );
    let ids = lines(&list);
    let mut text = "alipaylife_userid,first,keyword1,keyword2,remark\n".to_string();
    for id in &ids {
        text.push_str(&format!("{id},a,b,c,d\n"));
    }
    let batch = dir_env.write("o.csv", &text);
    dir_env.send(&batch, &[]).code(0);
    let d = dir_env.delivered();
    assert_eq!(d.len(), 5);
    assert!(
        d.iter().all(|x| x["to_open_id"].is_string()),
        "auto: OpenIDs by shape"
    );
}

/// SIGKILL at random moments, re-run until done: every row delivered exactly once, except rows the
/// final report calls unknown (delivered at most once).
#[test]
fn a_killed_batch_resumes_and_delivers_exactly_once() {
    let env = start("send-kill", &["--latency-ms", "5", "--followers", "5000"]);
    let n = 1500u64;
    let batch = env.batch("k.csv", 0..n, &[]);
    let args = env.args(&batch, &["--qps", "2000", "--concurrency", "16", "-q"]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut kills = Vec::new();
    for round in 0..3u64 {
        let delay = Duration::from_millis(300 + (seed.wrapping_mul(round + 7) >> 3) % 700);
        let mut child = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        kills.push((delay, env.delivered().len()));
    }
    let r = env.send(&batch, &["--qps", "2000", "--concurrency", "16"]);
    assert!(r.code == 0 || r.code == 3, "{r:?}");
    let rows = report(&env.dir.join("k.report.csv"));
    assert_eq!(rows.len() as u64, n);
    let counts = env.counts();
    let mut unknown = 0;
    for row in &rows {
        let got = counts.get(&row["recipient"]).copied().unwrap_or(0);
        match row["status"].as_str() {
            "sent" => assert_eq!(got, 1, "{} (kills {kills:?})", row["recipient"]),
            "unknown" => {
                unknown += 1;
                assert!(got <= 1, "{} delivered {got} times", row["recipient"]);
            }
            other => panic!("line {}: status {other} (kills {kills:?})", row["line"]),
        }
    }
    assert!(
        unknown <= 16 * 3,
        "at most one in-flight request per worker per kill: {unknown}"
    );
    eprintln!("kills (delay, delivered so far): {kills:?}; unknown after resume: {unknown}");
}

/// Start a send of 40 rows whose answers each take 1.5 s, and interrupt it (SIGINT) once its
/// four workers all have a request in flight. Returns the child and the journal path.
fn send_then_interrupt(env: &Env, name: &str) -> (std::process::Child, PathBuf) {
    let batch = env.batch(name, 0..40, &[]);
    let args = env.args(&batch, &["--concurrency", "4", "--qps", "1000"]);
    let child = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = PathBuf::from(format!("{batch}.journal"));
    let sending = || {
        std::fs::read_to_string(&journal)
            .map(|t| t.matches(r#""state":"sending""#).count())
            .unwrap_or(0)
    };
    let t = Instant::now();
    while sending() < 4 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no requests in flight"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    interrupt(&child);
    (child, journal)
}

fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Ctrl-C lets the requests in flight finish and records them: nothing becomes `unknown`, the
/// rest is left unsent, and the same command sends exactly the rest.
#[test]
fn ctrl_c_finishes_the_requests_in_flight_then_exits_130() {
    let env = start("send-sigint", &["--latency-ms", "1500"]);
    let (child, _) = send_then_interrupt(&env, "i.csv");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: no new messages are sent; waiting for the requests in flight"),
        "{err}"
    );
    assert!(
        err.contains("were not attempted: run the same command again"),
        "{err}"
    );
    let rows = report(&env.dir.join("i.report.csv"));
    let t = statuses(&rows);
    let sent = t.get("sent").copied().unwrap_or(0);
    assert!(sent >= 4, "the four requests in flight finished: {t:?}");
    assert_eq!(t.get("unknown"), None, "{t:?}");
    assert_eq!(sent + t.get("skipped").copied().unwrap_or(0), 40, "{t:?}");
    let counts = env.counts();
    assert_eq!(counts.len(), sent);
    assert!(counts.values().all(|&n| n == 1));
    let batch = env.dir.arg("i.csv");
    env.send(&batch, &["--concurrency", "8", "--qps", "1000"])
        .code(0)
        .stderr_has(&format!("{sent} sent by an earlier run"));
    let counts = env.counts();
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// A second Ctrl-C quits at once: the rows in flight are `unknown` (as after a crash), never sent
/// again by a plain re-run, and delivered at most once.
#[test]
fn a_second_ctrl_c_quits_at_once() {
    let env = start("send-sigint2", &["--latency-ms", "1500"]);
    let (child, _) = send_then_interrupt(&env, "j.csv");
    std::thread::sleep(Duration::from_millis(200));
    interrupt(&child);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted again: quitting now"), "{err}");
    let batch = env.dir.arg("j.csv");
    let r = env.send(&batch, &["--concurrency", "8", "--qps", "1000"]);
    r.code(3);
    let rows = report(&env.dir.join("j.report.csv"));
    let t = statuses(&rows);
    let unknown = t.get("unknown").copied().unwrap_or(0);
    // Exactly the four in flight (one per worker): it did not wait for their 1.5 s answers.
    assert_eq!(unknown, 4, "the rows in flight: {t:?}");
    assert_eq!(t.get("sent").copied().unwrap_or(0) + unknown, 40, "{t:?}");
    let counts = env.counts();
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    for row in rows.iter().filter(|r| r["status"] == "sent") {
        assert_eq!(counts.get(&row["recipient"]), Some(&1));
    }
}

#[test]
fn no_key_material_in_send_output() {
    let env = start("send-secrets", &[]);
    let batch = env.batch("s.csv", 0..2, &[]);
    let key = std::fs::read_to_string(env.em.key("app_private_key.pem")).unwrap();
    let body: String = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let dry = env.send(&batch, &["--dry-run", "-v"]);
    let sent = env.send(&batch, &["-v"]);
    sent.code(0);
    let journal = std::fs::read_to_string(env.dir.join("s.csv.journal")).unwrap();
    let report = std::fs::read_to_string(env.dir.join("s.report.csv")).unwrap();
    for text in [
        &dry.stdout,
        &dry.stderr,
        &sent.stdout,
        &sent.stderr,
        &journal,
        &report,
    ] {
        for i in (0..body.len() - 16).step_by(8) {
            assert!(!text.contains(&body[i..i + 16]), "key material in output");
        }
        assert!(!text.contains("&sign="), "a signature in output");
    }
}

#[test]
fn a_second_send_of_the_same_batch_is_refused_while_the_first_runs() {
    let env = start("send-lock", &["--latency-ms", "20"]);
    let batch = env.batch("l.csv", 0..300, &[]);
    let args = env.args(&batch, &["--qps", "100", "-q"]);
    let mut first = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run has started sending (its journal exists).
    let journal = env.dir.join("l.csv.journal");
    let t = Instant::now();
    while !journal.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Even with another journal, the same batch cannot be sent twice at once.
    let other_journal = env.dir.arg("other.journal");
    env.send(&batch, &["--journal", &other_journal])
        .code(2)
        .stderr_has("another `alipaylife send` is sending")
        .stderr_has("could deliver a message twice");
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let counts = env.counts();
    assert_eq!(counts.len(), 300);
    assert!(
        counts.values().all(|&n| n == 1),
        "each row delivered exactly once"
    );
}

/// The batch is read again while sending (it is never held whole in memory), so an edit during
/// a send must stop it: the journal records rows by line number of the content it checked.
#[test]
fn a_batch_edited_during_a_send_stops_it_and_the_original_resumes() {
    let env = start("send-edited", &["--followers", "1500", "--latency-ms", "5"]);
    let batch = env.batch("e.csv", 0..1500, &[]);
    let original = std::fs::read(&batch).unwrap();
    let args = env.args(&batch, &["--qps", "200", "--concurrency", "4", "-q"]);
    let first = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = env.dir.join("e.csv.journal");
    let t = Instant::now();
    while !journal.exists() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut edited = original.clone();
    edited.extend_from_slice(format!("{},added,x,y,z\n", follower(1499)).as_bytes());
    std::fs::write(&batch, &edited).unwrap();
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Put the batch back as it was"), "{stderr}");
    assert!(
        stderr.contains("e.csv: the file changed while it was being read"),
        "{stderr}"
    );
    let sent_before = env.delivered().len();
    assert!(
        sent_before > 0 && sent_before < 1500,
        "stopped midway: {sent_before}"
    );
    // The edited file is not the batch the journal belongs to.
    env.send(&batch, &["-q"])
        .code(2)
        .stderr_has("belongs to a different batch file");
    // Put the original back: the re-run sends the rest, each row exactly once.
    std::fs::write(&batch, &original).unwrap();
    env.send(&batch, &["--qps", "1000", "--concurrency", "8", "-q"])
        .code(0);
    let counts = env.counts();
    assert_eq!(counts.len(), 1500);
    assert!(counts.values().all(|&n| n == 1), "each row delivered once");
    let rows = report(&env.dir.join("e.report.csv"));
    assert_eq!(statuses(&rows).get("sent"), Some(&1500));
}
