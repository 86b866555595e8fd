//! The test harness: unique temp dirs, running the binary, starting an emulator on a free port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const APP_ID: &str = "2021000000000001";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_alipaylife")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh directory under the target dir, removed when the test passes.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    pub fn arg(&self, p: &str) -> String {
        self.join(p).to_string_lossy().into_owned()
    }

    /// Keys for the emulator from the fixtures (no generation): the TV-5 key is the app key.
    pub fn keys(&self) -> PathBuf {
        let keys = self.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        for (from, to) in [
            ("alipay_private.pem", "alipay_private_key.pem"),
            ("tv5_private.pem", "app_private_key.pem"),
            ("tv5_public.pem", "app_public_key.pem"),
        ] {
            std::fs::copy(fixture(from), keys.join(to)).unwrap();
        }
        keys
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A command for the binary with a clean environment (no ALIPAY_* or proxy variables leak in).
pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("ALIPAY") || k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, expected, "{self:?}");
        self
    }
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self:?}"
        );
        self
    }
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self:?}"
        );
        self
    }
}

pub fn output(mut c: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run alipaylife");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn run(args: &[&str]) -> Run {
    output(cmd(args))
}

/// `alipaylife emulate` on a free loopback port, killed on drop.
pub struct Emulator {
    child: Child,
    pub url: String,
    pub keys: PathBuf,
}

impl Emulator {
    pub fn start(dir: &TestDir, args: &[&str]) -> Emulator {
        let keys = dir.keys();
        let keys_arg = keys.to_string_lossy().into_owned();
        let mut all = vec![
            "emulate",
            "--listen",
            "127.0.0.1:0",
            "--keys-dir",
            &keys_arg,
        ];
        all.extend_from_slice(args);
        let mut child = cmd(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start emulator");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("emulator said {first:?}"))
            .to_string();
        Emulator { child, url, keys }
    }

    /// `127.0.0.1:PORT`, for raw TCP.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/gateway.do")
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn key(&self, name: &str) -> String {
        self.keys.join(name).to_string_lossy().into_owned()
    }

    /// The arguments that point an export at this emulator with its app key and Alipay key.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "--gateway".into(),
            self.url.clone(),
            "--app-id".into(),
            APP_ID.into(),
            "--private-key-file".into(),
            self.key("app_private_key.pem"),
            "--alipay-public-key-file".into(),
            self.key("alipay_public_key.pem"),
        ]
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a file, without the trailing newline.
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}
