//! A full disk: the export fails with a clear message, its checkpoint stays valid, and it resumes
//! correctly once there is space. Needs root to mount a small tmpfs; skipped with a message
//! where the machine does not allow it.

use std::path::{Path, PathBuf};
use std::process::Command;

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
