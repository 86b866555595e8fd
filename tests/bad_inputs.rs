//! The bad-input corpus: `tests/bad_inputs/cases.json` lists each bad key, certificate, batch,
//! flag and environment variable with the exact message and exit code it must produce, and this
//! one table-driven test runs them all. No case may leave any file behind (no partial output,
//! report or journal that could look complete).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::util::*;

#[derive(Deserialize)]
struct Case {
    name: String,
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    exit: i32,
    stderr: String,
}

const GATEWAY: &str = "http://127.0.0.1:1/gateway.do";

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_bad_input_gets_its_exact_message_and_leaves_nothing_behind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs");
    let inputs = root.join("inputs").to_string_lossy().into_owned();
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let print = std::env::var_os("BAD_INPUTS_PRINT").is_some();
    let mut failures = Vec::new();
    let inputs_before = files_in(&root.join("inputs"));
    for case in &cases {
        let dir = TestDir::new("bad");
        let here = dir.path.to_string_lossy().into_owned();
        let fill = |s: &str| {
            s.replace("{in}", &inputs)
                .replace("{dir}", &here)
                .replace("{gateway}", GATEWAY)
        };
        let args: Vec<String> = case.args.iter().map(|a| fill(a)).collect();
        let mut c = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        c.current_dir(&dir.path);
        for (k, v) in &case.env {
            let v = fill(v);
            // `@FILE` puts a file's content in the variable (keys kept in the environment).
            let v = match v.strip_prefix('@') {
                Some(path) => String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned(),
                None => v,
            };
            c.env(k, v);
        }
        let r = output(c);
        let stderr = r.stderr.replace(&inputs, "{in}").replace(&here, "{dir}");
        if print {
            println!(
                "{}\n  exit {}\n  {}",
                case.name,
                r.code,
                serde_json::to_string(&stderr).unwrap()
            );
            continue;
        }
        if r.code != case.exit || stderr != case.stderr {
            failures.push(format!(
                "{}: expected exit {} and\n{}\ngot exit {} and\n{}",
                case.name, case.exit, case.stderr, r.code, stderr
            ));
        }
        let left = files_in(&dir.path);
        if !left.is_empty() {
            failures.push(format!("{}: left files behind: {left:?}", case.name));
        }
        // Reports and journals go beside a batch: nothing may appear there either.
        let beside = files_in(&root.join("inputs"));
        if beside != inputs_before {
            let new: Vec<&String> = beside
                .iter()
                .filter(|f| !inputs_before.contains(f))
                .collect();
            failures.push(format!("{}: wrote beside its inputs: {new:?}", case.name));
            for f in new {
                let _ = std::fs::remove_file(root.join("inputs").join(f));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
