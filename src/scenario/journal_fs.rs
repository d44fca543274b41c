//! A real full disk for the journal: the scenario runs in a user + mount
//! namespace (`unshare -rm`) where the journal directory is a tmpfs of
//! `journal_fs_kib`; `disk_full` fills it with a filler file until the
//! kernel says ENOSPC, `disk_free` deletes the filler.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set inside the namespace: the tmpfs mount point.
pub const FS_DIR_ENV: &str = "ENDOTOWER_SCENARIO_FS_DIR";

#[derive(Debug, thiserror::Error)]
pub enum JournalFsError {
    #[error("cannot create the mount point {path}: {source}")]
    MountPoint { path: String, source: std::io::Error },
    #[error("cannot run the scenario in a user+mount namespace (unshare -rm, for the journal tmpfs): {0}")]
    Unshare(String),
}

/// The tmpfs directory when already inside the namespace.
pub fn current() -> Option<PathBuf> {
    std::env::var_os(FS_DIR_ENV).map(PathBuf::from)
}

/// Re-run this very command inside a namespace with a `size_kib` tmpfs on a
/// fresh directory; returns the child's exit code.
pub fn reexec_in_namespace(size_kib: u32, out: &Path) -> Result<i32, JournalFsError> {
    let dir = out.join("journal-fs");
    std::fs::create_dir_all(&dir).map_err(|source| JournalFsError::MountPoint { path: dir.display().to_string(), source })?;
    let exe = std::env::current_exe().map_err(|e| JournalFsError::Unshare(e.to_string()))?;
    let script = format!("mount -t tmpfs -o size={size_kib}k endotower-journal \"$1\" || exit 97; shift; exec \"$@\"");
    let status = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script, "sh"])
        .arg(&dir)
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(FS_DIR_ENV, &dir)
        .status()
        .map_err(|e| JournalFsError::Unshare(e.to_string()))?;
    match status.code() {
        Some(97) => Err(JournalFsError::Unshare(format!("mounting a tmpfs on {} failed", dir.display()))),
        Some(c) => Ok(c),
        None => Err(JournalFsError::Unshare("the namespaced run was killed by a signal".into())),
    }
}

const FILLER: &str = "filler.bin";

/// Fill `dir`'s filesystem; returns the bytes written before ENOSPC.
pub fn fill(dir: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(FILLER))?;
    let chunk = vec![0xA5u8; 4096];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => return Ok(written),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
            Err(e) => return Err(e),
        }
    }
}

/// Remove the filler again.
pub fn free(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(FILLER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
