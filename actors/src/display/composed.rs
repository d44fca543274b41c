//! The last picture the display composed, shared with whoever shows or
//! records it (window, snapshot, tests). Latest wins: the sink replaces it
//! every frame and a waiting reader is woken through a sequence watch.

use std::sync::Mutex;
use tokio::sync::watch;

/// A composed picture (camera frame plus overlay), RGBA8.
#[derive(Debug, Clone, Default)]
pub struct ComposedFrame {
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    pub renderer: &'static str,
}

pub struct ComposedSlot {
    frame: Mutex<Option<ComposedFrame>>,
    seq: watch::Sender<u64>,
}

impl Default for ComposedSlot {
    fn default() -> Self {
        Self { frame: Mutex::new(None), seq: watch::channel(0).0 }
    }
}

impl ComposedSlot {
    /// Swap `rgba` in as the newest picture (the previous buffer comes back
    /// in `rgba`, for reuse) and wake the readers.
    pub fn publish(&self, seq: u64, width: u32, height: u32, renderer: &'static str, rgba: &mut Vec<u8>) {
        {
            let mut slot = self.frame.lock().unwrap_or_else(|p| p.into_inner());
            let f = slot.get_or_insert_with(ComposedFrame::default);
            std::mem::swap(&mut f.rgba, rgba);
            (f.seq, f.width, f.height, f.renderer) = (seq, width, height, renderer);
        }
        self.seq.send_replace(seq);
    }

    /// A copy of the newest picture.
    pub fn latest(&self) -> Option<ComposedFrame> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Look at the newest picture without copying it.
    pub fn with_latest<R>(&self, f: impl FnOnce(&ComposedFrame) -> R) -> Option<R> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(f)
    }

    /// Changes whenever a picture is published (its value is the frame seq).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seq.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_replaces_the_picture_hands_back_the_old_buffer_and_wakes_readers() {
        let slot = ComposedSlot::default();
        let mut rx = slot.subscribe();
        assert!(slot.latest().is_none());
        let mut buf = vec![1u8; 16];
        slot.publish(7, 2, 2, "cpu", &mut buf);
        assert!(buf.is_empty(), "the slot's empty default buffer comes back");
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 7);
        let mut next = vec![2u8; 16];
        slot.publish(8, 2, 2, "cpu", &mut next);
        assert_eq!(next, vec![1u8; 16]);
        assert_eq!(slot.with_latest(|f| (f.seq, f.rgba[0])), Some((8, 2)));
    }
}
