//! The birth/death sequence number (Sparkplug B `bdSeq`), persisted beside
//! the journal so it keeps growing across restarts of the process.
//!
//! One number per MQTT session: the will registered with a CONNECT and the
//! birth published after its ConnAck carry the same number; the next session
//! gets the next one. A connection attempt that never got a ConnAck opened no
//! session, and the next attempt of the same process reuses its number. The
//! file holds the highest number ever put in a CONNECT, written before the
//! CONNECT goes out: a process that dies after the broker registered its
//! will (even before the tower saw the ConnAck) can never hand the same
//! number to the next process's birth. A subscriber that sees a death whose
//! `bd_seq` equals the last birth's knows the tower is gone; a retained death
//! from an earlier process carries a smaller number than the birth of the
//! running one.

use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "bd_seq";

/// The number of the current (or next) session.
#[derive(Debug)]
pub struct BdSeq {
    path: PathBuf,
    /// Number for the next CONNECT.
    next: u64,
    /// The highest number written to the file.
    reserved: u64,
    /// The number of the last session that reached ConnAck.
    last_session: u64,
}

impl BdSeq {
    /// Load from `dir` (0 if absent or unreadable: the first session is 1).
    pub fn load(dir: &Path) -> BdSeq {
        let path = dir.join(FILE);
        let last = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        BdSeq { path, next: last + 1, reserved: last, last_session: last }
    }

    /// The number for the next CONNECT (its will) and, if it gets a ConnAck,
    /// its birth; kept on disk before it is used, the first time.
    pub fn for_connect(&mut self) -> std::io::Result<u64> {
        if self.reserved < self.next {
            self.persist(self.next)?;
            self.reserved = self.next;
        }
        Ok(self.next)
    }

    /// The CONNECT with [`BdSeq::for_connect`] got its ConnAck: that session
    /// exists, and the next one gets the next number.
    pub fn session_started(&mut self) -> u64 {
        let n = self.next;
        self.last_session = n;
        self.next = n + 1;
        n
    }

    /// Write `n` (a temporary file, fsync, rename, fsync the directory).
    fn persist(&self, n: u64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{n}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// The number of the session in progress (or the last one).
    pub fn current(&self) -> u64 {
        self.last_session
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_grows_per_session_across_restarts_and_a_failed_attempt_reuses_it() {
        let dir = std::env::temp_dir().join(format!("endotower-bdseq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = BdSeq::load(&dir);
        assert_eq!(b.for_connect().unwrap(), 1);
        // A failed attempt: still 1.
        assert_eq!(b.for_connect().unwrap(), 1);
        assert_eq!(b.session_started(), 1);
        assert_eq!(b.for_connect().unwrap(), 2);
        assert_eq!(b.session_started(), 2);
        // A new process continues after the last session.
        let mut b2 = BdSeq::load(&dir);
        assert_eq!((b2.current(), b2.for_connect().unwrap()), (2, 3));
        // It dies after its CONNECT went out (no ConnAck seen): the broker
        // may hold a will with 3, so the next process never uses 3 again.
        drop(b2);
        let mut b3 = BdSeq::load(&dir);
        assert_eq!(b3.for_connect().unwrap(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
