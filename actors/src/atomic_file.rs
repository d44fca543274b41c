//! Whole files or none: a file is written under a temporary name, synced,
//! then renamed into place, so a reader never sees a partial one;
//! [`sync_dir`] afterwards makes the rename itself survive a crash.

use std::fs::File;
use std::io;
use std::path::Path;

/// Write `path` through `write` into `path.tmp`, fsync it, rename it into
/// place. On failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory: the names created, renamed or removed in it persist.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
