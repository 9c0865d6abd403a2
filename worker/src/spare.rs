//! Runtime threads lent to guests.
//!
//! Handing a connection to tokio's blocking pool costs a futex wake and
//! two context switches, as much as the guest's own work for a small
//! function. So while fewer than all but one of the runtime's threads are
//! running a guest, a connection's next step runs on the runtime thread
//! that has it ([`SpareThreads::lend`]); the others go to the pool. One
//! runtime thread is never lent: a guest that spins until its deadline, or
//! a client that does not read its answer, holds at most the lent threads,
//! and accepting, the admin endpoints and every waiting connection go on,
//! on the rest.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many runtime threads may run a guest at once, and how many do.
pub struct SpareThreads {
    lent: AtomicUsize,
    most: usize,
}

/// A runtime thread lent to a guest until this is dropped.
pub struct Lent<'a>(&'a SpareThreads);

impl SpareThreads {
    /// For a runtime of `workers` threads: all but one may be lent.
    pub fn new(workers: usize) -> Self {
        Self {
            lent: AtomicUsize::new(0),
            most: workers.saturating_sub(1),
        }
    }

    /// This thread, when another is left unlent.
    pub fn lend(&self) -> Option<Lent<'_>> {
        if self.lent.fetch_add(1, Ordering::AcqRel) < self.most {
            Some(Lent(self))
        } else {
            self.lent.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.0.lent.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_threads_but_one_are_lent() {
        let spare = SpareThreads::new(3);
        let first = spare.lend().expect("first");
        let second = spare.lend().expect("second");
        assert!(spare.lend().is_none(), "the third thread is kept");
        drop(first);
        assert!(spare.lend().is_some(), "a thread given back is lent again");
        drop(second);
        assert!(
            SpareThreads::new(1).lend().is_none(),
            "a single thread is never lent"
        );
    }
}
