//! A real full disk: a small tmpfs mounted on a test's `data_dir`, filled by a file of the
//! test's own (as a log rotated by someone else, or a core dump, fills an edge device's
//! flash). Mounting needs root; CI runs as root.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process runs as root (`mount` needs it).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0")
}

/// A tmpfs of `size` mounted on a directory, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it; panics (loudly) when not root.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            is_root(),
            "this test mounts a tmpfs to fill a real disk: run it as root"
        );
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system under `dir` with a file written in `block`-byte writes until the
/// disk refuses one; returns the file (remove it to give the room back).
pub fn fill(dir: &Path, block: usize) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let block = vec![0u8; block];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}
