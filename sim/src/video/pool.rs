//! Frame buffers handed out as `Arc<Vec<u8>>` and taken back for reuse once
//! every consumer has dropped them, so a live source does not allocate (and
//! page-fault) a fresh multi-megabyte buffer per frame.

use std::sync::Arc;

/// How many handed-out buffers are remembered for reuse.
const KEEP: usize = 4;

pub(crate) struct BufferPool {
    len: usize,
    out: Vec<Arc<Vec<u8>>>,
}

impl BufferPool {
    /// A pool of buffers of `len` bytes.
    pub(crate) fn new(len: usize) -> Self {
        Self { len, out: Vec::new() }
    }

    /// A buffer of `len` bytes with unspecified content: a recycled one if a
    /// handed-out buffer is no longer shared, else a new one.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        for i in 0..self.out.len() {
            if self.out.get(i).is_some_and(|a| Arc::strong_count(a) == 1 && Arc::weak_count(a) == 0) {
                let arc = self.out.swap_remove(i);
                match Arc::try_unwrap(arc) {
                    Ok(v) if v.len() == self.len => return v,
                    Ok(_) => break,
                    Err(arc) => self.out.push(arc),
                }
            }
        }
        vec![0; self.len]
    }

    /// Share `buf` and remember it, to take it back when it is free again.
    pub(crate) fn share(&mut self, buf: Vec<u8>) -> Arc<Vec<u8>> {
        let arc = Arc::new(buf);
        if self.out.len() >= KEEP {
            self.out.remove(0);
        }
        self.out.push(Arc::clone(&arc));
        arc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_only_when_nobody_holds_them() {
        let mut pool = BufferPool::new(16);
        let v = pool.take();
        let a = pool.share(v);
        let pa = a.as_ptr();
        // Still held: a fresh buffer.
        let b = pool.take();
        assert_ne!(b.as_ptr(), pa);
        drop(a);
        let c = pool.take();
        assert_eq!(c.as_ptr(), pa);
        assert_eq!(c.len(), 16);
    }
}
