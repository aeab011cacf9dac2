//! A counter that threads add to without sharing a cache line: each thread adds to a slot of its
//! own (of [`SLOTS`], chosen once per thread), and a read sums the slots. For counts bumped on the
//! hot path by every worker thread (token checks answered from memory), where one shared atomic
//! makes each add wait for the line to come from the other core.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots per counter: threads beyond this share slots (still correct, a little slower).
pub const SLOTS: usize = 16;

/// One slot on a cache line of its own (128 bytes: adjacent lines are fetched in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

#[derive(Default)]
pub struct Striped([Slot; SLOTS]);

/// The next slot index to hand to a thread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MINE: Cell<usize> = Cell::new(NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS);
}

/// The calling thread's slot, in `0..SLOTS`: the same for every striped value it adds to.
pub fn slot() -> usize {
    MINE.with(Cell::get)
}

impl Striped {
    pub fn add(&self, n: u64) {
        self.0[slot()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of every thread's adds so far.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Striped;
    use std::sync::Arc;

    #[test]
    fn adds_from_many_threads_are_all_counted() {
        let c = Arc::new(Striped::default());
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        c.add(5);
        assert_eq!(c.get(), 40_005);
    }
}
