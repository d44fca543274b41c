//! The durable store-and-forward queue: one Part 10 file per still in a
//! directory, written before the still counts as archived and removed only
//! after the PACS has confirmed it (C-STORE success).
//!
//! - Writes go to a temporary name, are synced, renamed and the directory
//!   synced, so a crash leaves either the whole file or none; temporary
//!   leftovers are removed at open.
//! - Names sort in press order (`<unix ms>-<frame>.dcm`), so stills reach
//!   the PACS in the order they were taken.
//! - A still the PACS refuses for good (its status says the data set is
//!   wrong) moves to `refused/` beside the queue, so it neither blocks the
//!   queue nor is lost.
//! - A crash between the PACS's confirmation and the removal sends that
//!   still again after restart, with the same SOP Instance UID: the PACS
//!   stores it once.

use crate::atomic_file::{sync_dir, write_atomic};
use dicom_object::{FileDicomObject, InMemDicomObject};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("PACS outbox {path}: {source}")]
pub struct OutboxError {
    pub path: String,
    pub source: std::io::Error,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError { path: path.display().to_string(), source }
}

impl Outbox {
    /// Open (create) the queue directory and drop half-written leftovers.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Outbox { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of the still of `frame_seq` pressed at `unix_ms`.
    pub fn name(unix_ms: u64, frame_seq: u64) -> String {
        format!("{unix_ms:013}-{frame_seq:010}.dcm")
    }

    /// Queue one still durably (idempotent: the same name is replaced).
    pub fn put(&self, name: &str, obj: &FileDicomObject<InMemDicomObject>) -> Result<PathBuf, OutboxError> {
        let path = self.dir.join(name);
        write_atomic(&path, |f| obj.write_all(f).map_err(std::io::Error::other))
            .and_then(|()| sync_dir(&self.dir))
            .map_err(io_err(&path))?;
        Ok(path)
    }

    /// The queued stills, oldest first.
    pub fn pending(&self) -> Result<Vec<PathBuf>, OutboxError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "dcm"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The PACS confirmed `path`: remove it for good.
    pub fn sent(&self, path: &Path) -> Result<(), OutboxError> {
        std::fs::remove_file(path).map_err(io_err(path))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// The PACS refused `path` for good: keep it aside, out of the queue.
    pub fn refuse(&self, path: &Path) -> Result<PathBuf, OutboxError> {
        let dir = self.dir.join("refused");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let to = dir.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &to).map_err(io_err(path))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::FileMetaTableBuilder;

    fn obj(uid: &str) -> FileDicomObject<InMemDicomObject> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(crate::pacs::still::VL_ENDOSCOPIC_IMAGE)
            .media_storage_sop_instance_uid(uid)
            .transfer_syntax(crate::pacs::still::EXPLICIT_VR_LE);
        InMemDicomObject::new_empty().with_meta(meta).unwrap()
    }

    #[test]
    fn stills_queue_in_press_order_survive_reopening_and_leave_once_sent() {
        let dir = std::env::temp_dir().join(format!("endotower-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let q = Outbox::open(&dir).unwrap();
        q.put(&Outbox::name(2000, 11), &obj("2.25.2")).unwrap();
        q.put(&Outbox::name(1000, 12), &obj("2.25.1")).unwrap();
        q.put(&Outbox::name(1000, 12), &obj("2.25.1")).unwrap(); // again: replaced, not doubled
        std::fs::write(dir.join("half.tmp"), b"partial").unwrap();
        let q = Outbox::open(&dir).unwrap();
        let names: Vec<String> = q.pending().unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["0000000001000-0000000012.dcm", "0000000002000-0000000011.dcm"]);
        assert!(!dir.join("half.tmp").exists(), "a half-written file is dropped at open");
        let first = q.pending().unwrap()[0].clone();
        q.sent(&first).unwrap();
        let second = q.pending().unwrap()[0].clone();
        let kept = q.refuse(&second).unwrap();
        assert!(kept.exists() && q.pending().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
