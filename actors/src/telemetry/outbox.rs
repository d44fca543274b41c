//! The bounded telemetry outbox: batches wait here while the broker is away.
//! When full, the oldest batch is dropped and counted; the count goes out
//! with every later batch. Alarms and events never pass through here (they
//! go through the journal, which never drops them).

use std::collections::VecDeque;

pub struct Outbox<T> {
    queue: VecDeque<T>,
    capacity: usize,
    dropped: u64,
}

impl<T> Outbox<T> {
    pub fn new(capacity: usize) -> Self {
        Self { queue: VecDeque::with_capacity(capacity.min(1024)), capacity: capacity.max(1), dropped: 0 }
    }

    /// Queue an item; drops (and counts) the oldest when full.
    pub fn push(&mut self, item: T) {
        if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(item);
    }

    pub fn pop(&mut self) -> Option<T> {
        self.queue.pop_front()
    }

    /// Put an item back at the head (it could not be sent).
    pub fn unpop(&mut self, item: T) {
        if self.queue.len() >= self.capacity {
            self.dropped += 1;
            return;
        }
        self.queue.push_front(item);
    }

    /// Count an item lost outside the queue (the client's channel was full).
    pub fn count_drop(&mut self) {
        self.dropped += 1;
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_it() {
        let mut o = Outbox::new(3);
        for i in 0..5 {
            o.push(i);
        }
        assert_eq!(o.dropped(), 2);
        assert_eq!(std::iter::from_fn(|| o.pop()).collect::<Vec<_>>(), vec![2, 3, 4]);
    }
}
